//! `check` against the loopback fake API, and `status --prometheus` through promtool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::fake_api::API_PATH;
use support::{KEY, Reply, TestEnv, epoch_now};

const IP: &str = "45.155.205.233";

fn check(env: &TestEnv, args: &[&str]) -> support::Run {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let run = env.run(&all);
    assert!(!run.all_output().contains(KEY), "key leaked");
    run
}

#[test]
fn check_shows_the_standing_of_an_address() {
    let env = TestEnv::new("check-ok");
    let run = check(&env, &["--", IP]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = env.api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, format!("{API_PATH}/check?ip={IP}"));
    assert_eq!(requests[0].header("x-key"), Some(KEY));
    assert_eq!(
        run.stdout,
        format!(
            "ip:          {IP}\nconfidence:  39%\nreports:     12\n\
             last report: 2026-11-30T07:55:02+00:00\ntor:         no\nwhitelisted: no\n"
        )
    );
    let json = check(&env, &["--json", "--", IP]).json();
    assert_eq!(json["ip"], IP);
    assert_eq!(json["confidence"], 39);
    assert_eq!(json["total_reports"], 12);
    assert_eq!(json["last_reported_at"], "2026-11-30T07:55:02+00:00");
    assert_eq!(json["is_tor"], false);
    assert_eq!(json["is_whitelisted"], false);
    assert!(json.get("details").is_none());
}

#[test]
fn verbose_asks_for_and_shows_the_details() {
    let env = TestEnv::new("check-verbose");
    let run = check(&env, &["--verbose", "--json", "--", IP]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.api.requests()[0].query("verbose"), "true");
    assert_eq!(run.json()["details"]["reports"][0]["categories"][1], 22);
    let text = check(&env, &["--verbose", "--", IP]);
    assert!(text.stdout.contains("\nreports: [{"), "{}", text.stdout);
}

#[test]
fn addresses_report_refuses_are_not_checked() {
    let env = TestEnv::new("check-local");
    env.write_config("ignore = [\"45.155.205.0/24\"]");
    for (ip, why) in [
        ("192.168.1.10", "a private address"),
        ("2001:db8::1", "a documentation address"),
        (IP, "on the ignore list"),
    ] {
        let run = check(&env, &["--", ip]);
        assert_eq!(run.code, 2, "{ip}: {}", run.stderr);
        assert!(run.stderr.contains(why), "{ip}: {}", run.stderr);
    }
    let run = check(&env, &["--", "not-an-ip"]);
    assert_eq!(run.code, 2);
    assert!(env.api.requests().is_empty(), "a check was spent");
}

#[test]
fn a_refused_key_exits_4() {
    let env = TestEnv::answering(
        "check-401",
        Reply::wp_error(401, "invalid_api_key", "Invalid API key"),
    );
    let run = check(&env, &["--json", "--", IP]);
    assert_eq!(run.code, 4, "{}", run.stdout);
    assert!(
        run.json()["error"]
            .as_str()
            .unwrap()
            .contains("API key refused")
    );
}

#[test]
fn a_429_starts_the_backoff_and_the_next_check_stays_off_the_network() {
    let env = TestEnv::answering(
        "check-429",
        Reply::wp_error(429, "rate_limited", "Too many checks").with_header("Retry-After", "600"),
    );
    let run = check(&env, &["--", IP]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let until = env.status()["backoff"]["until_epoch"].as_u64().unwrap();
    assert!(until >= epoch_now() + 500, "{until}");
    let again = check(&env, &["--", "45.155.205.234"]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("not checked: API backoff"),
        "{}",
        again.stderr
    );
    assert_eq!(env.api.requests().len(), 1);
}

#[test]
fn a_silent_api_ends_the_check_at_the_deadline() {
    let env = TestEnv::answering("check-hang", Reply::Hang);
    let run = check(&env, &["--", IP]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("timeout after 2 s"), "{}", run.stderr);
    assert!(
        run.elapsed < support::deadline() + support::well_under_timeout(),
        "{:?}",
        run.elapsed
    );
}
