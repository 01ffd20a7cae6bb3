//! The daily quota: the cooldown keyed on IP and categories, quota tracking from the
//! rate-limit headers, the hold at `Remaining: 0`, and newest first under quota pressure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use support::fake_api::documented_api;
use support::{FakeApi, Reply, TestEnv, epoch_now};

const IP: &str = "45.155.205.233";

/// A fake with a daily quota of `limit`, `left` of it unused; each accepted report takes
/// one, and a report past the quota gets 429 with `Remaining: 0`.
fn quota_api(limit: u64, left: u64, reset: u64) -> FakeApi {
    let left = Arc::new(AtomicU64::new(left));
    FakeApi::start_with(move |req, index| {
        let headers = |reply: Reply, remaining: u64| {
            reply
                .with_header("X-RateLimit-Limit", &limit.to_string())
                .with_header("X-RateLimit-Remaining", &remaining.to_string())
                .with_header("X-RateLimit-Reset", &reset.to_string())
        };
        let before = left.load(Ordering::SeqCst);
        if before == 0 {
            return headers(
                Reply::wp_error(429, "rate_limit_exceeded", "Daily report limit reached"),
                0,
            );
        }
        left.store(before - 1, Ordering::SeqCst);
        headers(documented_api(req, index), before - 1)
    })
}

fn run(env: &TestEnv, args: &[&str]) -> support::Run {
    let run = env.run(args);
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    run
}

#[test]
fn status_shows_the_quota_from_the_last_answer() {
    let reset = support::fake_api::tomorrow();
    let env = TestEnv::with_api("quota-status", quota_api(50, 14, reset));
    run(&env, &["report", "--jail", "sshd", "--", IP]);
    let status = env.status();
    assert_eq!(status["quota"]["limit"], 50);
    assert_eq!(status["quota"]["remaining"], 13);
    assert_eq!(status["quota"]["used"], 37);
    assert_eq!(status["quota"]["reset_epoch"], reset);
    let text = run(&env, &["status"]).stdout;
    let line = format!(
        "reports today: 37 of 50, 13 left, resets {}",
        status["quota"]["reset"].as_str().unwrap()
    );
    assert!(text.contains(&line), "{text}");

    // The documented fake answers `unlimited`.
    let env = TestEnv::new("quota-unlimited");
    run(&env, &["report", "--jail", "sshd", "--", IP]);
    let status = env.status();
    assert!(status["quota"]["limit"].is_null(), "{status}");
    assert!(
        run(&env, &["status"])
            .stdout
            .contains("reports today: no daily limit")
    );
}

#[test]
fn a_used_up_quota_holds_every_sender_and_flush_until_the_reset() {
    let reset = epoch_now() + 5 * 3600;
    let env = TestEnv::with_api("quota-hold", quota_api(50, 1, reset));
    let first = run(&env, &["report", "--jail", "sshd", "--", IP]);
    assert!(
        first
            .stderr
            .contains("daily report quota now used up (50 of 50 used, 0 left"),
        "{}",
        first.stderr
    );
    let status = env.status();
    assert_eq!(
        status["backoff"]["until_epoch"], reset,
        "held to the reset, not 60 s"
    );
    let queued = run(
        &env,
        &["report", "--queue", "--jail", "sshd", "--", "45.155.205.1"],
    );
    assert!(
        queued.stderr.contains("daily report quota used up"),
        "the report's line says why it waits: {}",
        queued.stderr
    );
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 1, "{}", flush.stdout);
    assert!(
        flush.stdout.contains("daily report quota used up"),
        "{}",
        flush.stdout
    );
    assert_eq!(
        env.api.requests().len(),
        1,
        "no request after Remaining hit 0"
    );
    assert_eq!(env.spooled(), 1);
}

#[test]
fn a_refusal_for_quota_holds_until_the_reset_without_backoff_growth() {
    let reset = epoch_now() + 3 * 3600;
    let env = TestEnv::with_api("quota-429", quota_api(50, 0, reset));
    let run = env.run(&["report", "--strict", "--jail", "sshd", "--", IP]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("daily report quota used up"),
        "{}",
        run.stderr
    );
    let status = env.status();
    assert_eq!(status["backoff"]["until_epoch"], reset);
    assert_eq!(status["quota"]["remaining"], 0);
    assert_eq!(env.spooled(), 1);
}

#[test]
fn newest_first_when_more_wait_than_the_quota_allows() {
    let reset = epoch_now() + 6 * 3600;
    let env = TestEnv::with_api("quota-newest", quota_api(50, 2, reset));
    // The last answer left 2 reports today; 5 wait (queued while a backoff held them).
    env.sql(&format!(
        "UPDATE state SET backoff_until = {}, backoff_granted = 3600, backoff_reason = 'HTTP 503', \
         quota_known = 1, quota_limit = 50, quota_remaining = 2, quota_reset = {reset}",
        epoch_now() + 3600
    ));
    queue_sshd_bans(&env, 5);
    env.end_backoff();
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 1, "stopped by the quota: {}", flush.stdout);
    let sent = env.api.fields("ip");
    assert_eq!(sent, ["45.155.205.5", "45.155.205.4"], "newest first");
    assert_eq!(env.spooled(), 3);
}

/// Bans 45.155.205.1 to .COUNT from sshd, queued in that order.
fn queue_sshd_bans(env: &TestEnv, count: u8) {
    for n in 1..=count {
        let ip = format!("45.155.205.{n}");
        run(env, &["report", "--queue", "--jail", "sshd", "--", &ip]);
    }
}

#[test]
fn the_order_is_decided_again_once_an_answer_tells_the_quota() {
    let reset = epoch_now() + 6 * 3600;
    // Nothing known about the quota yet; the API has 3 reports left today; 8 wait.
    let env = TestEnv::with_api("quota-learned", quota_api(50, 3, reset));
    env.set_backoff_until(epoch_now() + 3600);
    queue_sshd_bans(&env, 8);
    env.end_backoff();
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 1, "stopped by the quota: {}", flush.stdout);
    // The first goes out oldest first (nothing was known); its answer says 2 are left
    // for 7 waiting, so the newest go next.
    let sent = env.api.fields("ip");
    assert_eq!(
        sent,
        ["45.155.205.1", "45.155.205.8", "45.155.205.7"],
        "{sent:?}"
    );
    assert_eq!(env.spooled(), 5);
}
