//! Spool, sender, backoff, cooldown, `--queue`, `flush` and `status` against the fake API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{FakeApi, Reply, TestEnv, epoch_now, run_command};

const WAIT: Duration = Duration::from_secs(60);

fn ip(n: usize) -> String {
    format!("45.155.{}.{}", n / 250, n % 250 + 1)
}

/// A fake whose health the test switches: up (documented API), or answering `down`.
fn switchable(down: Reply) -> (FakeApi, Arc<AtomicBool>) {
    let up = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&up);
    let api = FakeApi::start_with(move |req, index| {
        if flag.load(Ordering::SeqCst) {
            support::fake_api::documented_api(req, index)
        } else {
            down.clone()
        }
    });
    (api, up)
}

/// How many times the fake accepted each IP.
fn accepted_per_ip(api: &FakeApi) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for req in api.accepted_reports() {
        *counts.entry(req.field("ip")).or_default() += 1;
    }
    counts
}

#[test]
fn outage_then_recovery_delivers_every_report_once() {
    let (api, up) = switchable(Reply::json(
        500,
        "{\"code\":\"down\",\"message\":\"maintenance\"}",
    ));
    let env = TestEnv::with_api("outage", api);
    for n in 0..20 {
        let run = env.run(&["report", "--categories", "18", "--strict", "--", &ip(n)]);
        assert_eq!(run.code, 1, "{n}: {}", run.stderr);
        assert!(run.stderr.contains("queued"), "{}", run.stderr);
    }
    assert_eq!(
        env.api.requests().len(),
        1,
        "backoff: one request, the rest spooled at once"
    );
    assert_eq!(env.spooled(), 20);
    let status = env.run(&["status", "--json"]).json();
    assert_eq!(status["waiting"], 20);
    assert_eq!(status["backoff"]["active"], true);
    assert!(
        status["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 500 down: maintenance")
    );

    up.store(true, Ordering::SeqCst);
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}{}", flush.stdout, flush.stderr);
    assert!(
        flush
            .stdout
            .contains("flush: 20 sent, 0 rejected, 0 set aside, 0 dropped; 0 waiting"),
        "{}",
        flush.stdout
    );
    let counts = accepted_per_ip(&env.api);
    assert_eq!(counts.len(), 20);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let sent_order: Vec<String> = env
        .api
        .accepted_reports()
        .iter()
        .map(|r| r.field("ip"))
        .collect();
    assert_eq!(
        sent_order,
        (0..20).map(ip).collect::<Vec<_>>(),
        "oldest first"
    );
    assert_eq!(env.spooled(), 0);
    let status = env.run(&["status", "--json"]).json();
    assert_eq!(status["backoff"]["active"], false);
}

#[test]
fn queued_burst_is_delivered_once_over_few_connections() {
    let env = TestEnv::new("burst");
    for n in 0..200 {
        let run = env.run(&[
            "report",
            "--queue",
            "--jail",
            "sshd",
            "--failures",
            "3",
            "--strict",
            "--",
            &ip(n),
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert!(
        env.api.wait_until(WAIT, |reqs| reqs.len() >= 200),
        "only {} of 200 delivered",
        env.api.requests().len()
    );
    env.wait_delivered();
    let counts = accepted_per_ip(&env.api);
    assert_eq!(counts.len(), 200);
    assert!(counts.values().all(|n| *n == 1), "a report was sent twice");
    let connections = env.api.connections();
    let _ = writeln!(
        std::io::stderr(),
        "{connections} TCP connections for 200 queued reports"
    );
    assert!(
        connections <= 20,
        "{connections} TCP connections for 200 reports"
    );
    assert_eq!(env.spooled(), 0);
    let first = &env.api.requests()[0];
    assert_eq!(first.field("comment"), "fail2ban sshd: 3 failed attempts");
    assert_eq!(first.field("categories"), "18,22");
}

#[test]
fn queued_reports_return_promptly_while_the_api_blackholes() {
    let (api, up) = switchable(Reply::Hang);
    let env = TestEnv::with_api("blackhole", api);
    for n in 0..10 {
        let run = env.queue(&ip(n));
        assert_eq!(run.code, 0);
        // The ban path must not wait for the configured timeout.
        assert!(
            run.elapsed < support::well_under_timeout(),
            "ban path took {:?}",
            run.elapsed
        );
    }
    env.wait_status("in backoff with no sender", |status| {
        status["backoff"]["active"] == true && status["sender_running"] == false
    });
    assert!(env.api.accepted_reports().is_empty());
    assert_eq!(env.spooled(), 10, "nothing lost while the API hangs");
    up.store(true, Ordering::SeqCst);
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}", flush.stdout);
    let counts = accepted_per_ip(&env.api);
    assert_eq!(counts.len(), 10);
    assert!(counts.values().all(|n| *n == 1));
}

#[test]
fn retry_after_holds_further_sends() {
    let (api, up) = switchable(
        Reply::wp_error(429, "rate_limit", "Too many reports").with_header("Retry-After", "300"),
    );
    let env = TestEnv::with_api("retryafter", api);
    let first = env.run(&["report", "--categories", "18", "--", &ip(1)]);
    assert!(first.stderr.contains("HTTP 429"), "{}", first.stderr);
    up.store(true, Ordering::SeqCst);
    for n in 2..6 {
        let run = env.run(&["report", "--categories", "18", "--strict", "--", &ip(n)]);
        assert_eq!(run.code, 1);
        assert!(run.stderr.contains("API backoff for"), "{}", run.stderr);
        let queued = env.queue(&ip(n + 100));
        assert_eq!(queued.code, 0);
    }
    env.wait_sender_idle();
    assert_eq!(
        env.api.requests().len(),
        1,
        "nothing sent before Retry-After"
    );
    let status = env.run(&["status", "--json"]).json();
    assert_eq!(status["backoff"]["active"], true);
    let until = status["backoff"]["until_epoch"].as_u64().unwrap();
    let now = epoch_now();
    assert!(until > now + 250 && until <= now + 300, "{until} vs {now}");
    assert_eq!(status["waiting"], 9);

    env.end_backoff();
    let run = env.run(&["report", "--categories", "18", "--", &ip(50)]);
    assert!(run.stderr.contains("reported"), "{}", run.stderr);
    assert!(
        env.api.wait_until(WAIT, |reqs| reqs.len() >= 11),
        "sender drains after the window"
    );
    assert_eq!(accepted_per_ip(&env.api).len(), 10);
}

#[test]
fn refused_key_keeps_reports_until_fixed() {
    let (api, up) = switchable(Reply::wp_error(401, "invalid_key", "Invalid API key"));
    let env = TestEnv::with_api("key401", api);
    for n in 0..3 {
        let run = env.run(&["report", "--categories", "18", "--strict", "--", &ip(n)]);
        assert!(matches!(run.code, 1 | 4), "{}", run.stderr);
    }
    assert_eq!(env.spooled(), 3);
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 4, "{}", flush.stdout);
    assert!(flush.stdout.contains("API key refused"), "{}", flush.stdout);
    assert_eq!(env.spooled(), 3, "nothing lost while the key is wrong");
    up.store(true, Ordering::SeqCst);
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0);
    assert_eq!(accepted_per_ip(&env.api).len(), 3);
}

#[test]
fn concurrent_reports_and_flushes_deliver_each_report_exactly_once() {
    // Every third request fails: senders, flushes and backoff all get exercised.
    let api = FakeApi::start_with(|req, index| {
        if index % 3 == 2 {
            Reply::json(503, "")
        } else {
            support::fake_api::documented_api(req, index)
        }
    });
    let env = TestEnv::with_api("concurrent", api);
    let mut children = Vec::new();
    for n in 0..30 {
        let cmd = env.command(&["report", "--queue", "--categories", "18", "--", &ip(n)]);
        children.push(std::thread::spawn(move || run_command(cmd)));
        if n % 15 == 0 {
            let cmd = env.command(&["flush"]);
            children.push(std::thread::spawn(move || run_command(cmd)));
        }
    }
    for child in children {
        let run = child.join().unwrap();
        assert!(matches!(run.code, 0 | 1), "{}", run.stderr);
    }
    for _ in 0..40 {
        env.wait_sender_idle();
        if env.spooled() == 0 {
            break;
        }
        env.end_backoff();
        env.run(&["flush"]);
    }
    assert_eq!(env.spooled(), 0);
    let counts = accepted_per_ip(&env.api);
    assert_eq!(counts.len(), 30, "{counts:?} {}", env.status());
    assert!(counts.values().all(|n| *n == 1), "sent twice: {counts:?}");
}

#[test]
fn garbage_spool_files_are_set_aside_not_sent() {
    let env = TestEnv::new("garbage");
    env.run(&["status"]);
    std::fs::create_dir_all(env.spool_dir()).unwrap();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let truncated = format!("{stamp:020}-1-0.json");
    std::fs::write(env.spool_dir().join(&truncated), "{\"ip\":\"45.15").unwrap();
    std::fs::write(
        env.spool_dir().join(format!("{stamp:020}-1-1.json")),
        [0xff, 0x00, 0x12],
    )
    .unwrap();
    let good = env.run(&["report", "--categories", "18", "--strict", "--", &ip(7)]);
    assert_eq!(good.code, 0);
    env.wait_sender_idle();
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0);
    let status = env.run(&["status", "--json"]).json();
    assert_eq!(status["set_aside"], 2, "{status}");
    assert_eq!(status["waiting"], 0);
    assert_eq!(env.api.requests().len(), 1, "only the good report was sent");
    assert!(env.state_dir().join("set-aside").join(truncated).exists());
}

#[test]
fn spool_limits_drop_oldest_and_count_it() {
    let (api, _up) = switchable(Reply::json(500, ""));
    let env = TestEnv::with_api("limits", api);
    env.write_config("spool_max = 5");
    for n in 0..8 {
        env.run(&["report", "--categories", "18", "--", &ip(n)]);
    }
    assert_eq!(env.spooled(), 5);
    let status = env.run(&["status", "--json"]).json();
    assert_eq!(status["dropped"], 3);
    // Age: a report queued "two days ago" goes at the next delivery attempt.
    std::fs::create_dir_all(env.spool_dir()).unwrap();
    std::fs::write(
        env.spool_dir().join("00000000001000000000-1-0.json"),
        format!(
            "{{\"ip\":\"{}\",\"categories\":\"18\",\"comment\":\"c\",\"queued_at\":1}}",
            ip(99)
        ),
    )
    .unwrap();
    env.run(&["flush"]);
    let status = env.run(&["status", "--json"]).json();
    assert_eq!(status["dropped"], 4, "{status}");
    assert_eq!(status["waiting"], 5);
    assert!(
        env.api.requests().iter().all(|r| r.field("ip") != ip(99)),
        "too old to send"
    );
    let text = env.run(&["status"]);
    assert!(text.stdout.contains("dropped:      4"), "{}", text.stdout);
}

#[test]
fn unusable_state_dir_falls_back_to_direct_sending() {
    let env = TestEnv::new("nostate");
    let blocker = env.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let text = std::fs::read_to_string(env.config_path()).unwrap().replace(
        &env.state_dir().display().to_string(),
        &format!("{}/sub", blocker.display()),
    );
    env.write_raw_config(&text, 0o600);
    let run = env.run(&[
        "report",
        "--queue",
        "--categories",
        "18",
        "--strict",
        "--",
        &ip(1),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("warning: state_dir"), "{}", run.stderr);
    assert!(run.stderr.contains("reported 45.155.0.2"), "{}", run.stderr);
    assert_eq!(run.stderr.matches("warning").count(), 1, "{}", run.stderr);
    assert_eq!(env.api.accepted_reports().len(), 1);
}

#[test]
fn a_success_starts_a_sender_for_waiting_reports() {
    let (api, up) = switchable(Reply::json(502, ""));
    let env = TestEnv::with_api("kick", api);
    for n in 0..3 {
        env.run(&["report", "--categories", "18", "--", &ip(n)]);
    }
    assert_eq!(env.spooled(), 3);
    up.store(true, Ordering::SeqCst);
    env.end_backoff();
    let run = env.run(&["report", "--categories", "18", "--", &ip(10)]);
    assert!(run.stderr.contains("reported"), "{}", run.stderr);
    assert!(env.api.wait_until(
        WAIT,
        |reqs| reqs.iter().filter(|r| r.answered == 200).count() >= 4
    ));
    env.wait_delivered();
    assert_eq!(env.spooled(), 0);
    assert_eq!(accepted_per_ip(&env.api).len(), 4);
}

#[test]
fn used_up_quota_stops_the_sender_until_reset() {
    let reset = epoch_now() + 3600;
    let api = FakeApi::start_with(move |req, index| {
        let remaining = if index == 0 { "1" } else { "0" };
        match support::fake_api::documented_api(req, index) {
            reply @ Reply::Http { .. } => reply
                .with_header("X-RateLimit-Limit", "50")
                .with_header("X-RateLimit-Remaining", remaining)
                .with_header("X-RateLimit-Reset", &reset.to_string()),
            other => other,
        }
    });
    let env = TestEnv::with_api("quota", api);
    // Two reports wait while a backoff holds the sender; then the window ends.
    env.set_backoff_until(reset);
    for n in 0..3 {
        env.queue(&ip(n));
    }
    assert_eq!(env.spooled(), 3);
    env.end_backoff();
    env.queue(&ip(3));
    assert!(env.api.wait_until(WAIT, |reqs| reqs.len() >= 2));
    env.wait_status("held by the quota with no sender", |status| {
        status["backoff"]["active"] == true && status["sender_running"] == false
    });
    assert_eq!(
        env.api.requests().len(),
        2,
        "the sender stopped when the quota was used up"
    );
    let status = env.run(&["status", "--json"]).json();
    assert_eq!(status["backoff"]["until_epoch"], reset);
    assert_eq!(status["backoff"]["reason"], "daily report quota used up");
    assert_eq!(status["waiting"], 2);
}

#[test]
fn a_new_sender_outlasts_a_brief_probe_of_its_lock() {
    let env = TestEnv::new("probe");
    // Queued during a backoff, so no sender starts; then the window ends.
    env.set_backoff_until(epoch_now() + 3600);
    let run = env.queue(&ip(1));
    assert_eq!(run.code, 0, "{}", run.stderr);
    env.end_backoff();
    assert_eq!(env.spooled(), 1);
    // Another process (a `status`, a starting report) holds the sender lock for a moment,
    // just as the new sender starts.
    let lock = std::fs::File::open(env.state_dir()).unwrap();
    lock.lock().unwrap();
    let sender = std::thread::spawn({
        let cmd = env.command(&["send-spool"]);
        move || run_command(cmd)
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(lock);
    assert_eq!(sender.join().unwrap().code, 0);
    assert_eq!(env.api.accepted_reports().len(), 1, "the sender gave up");
    assert_eq!(env.spooled(), 0);
}
