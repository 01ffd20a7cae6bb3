//! `check` against the loopback fake API, and `status --prometheus` through promtool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

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
    assert!(run.elapsed < Duration::from_secs(4), "{:?}", run.elapsed);
}

/// promtool from Debian's `prometheus`; CI (REPORTEDIP_E2E=1) requires it.
fn promtool() -> Option<&'static str> {
    let path = "/usr/bin/promtool";
    if std::path::Path::new(path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("REPORTEDIP_E2E").is_none(),
        "promtool is required here: apt-get install prometheus"
    );
    eprintln!("SKIPPED status_prometheus_passes_promtool: no {path} (apt-get install prometheus)");
    None
}

#[test]
fn status_prometheus_passes_promtool() {
    let reset = support::fake_api::tomorrow();
    let api = support::FakeApi::start_with(move |req, index| {
        support::fake_api::documented_api(req, index)
            .with_header("X-RateLimit-Limit", "50")
            .with_header("X-RateLimit-Remaining", "13")
            .with_header("X-RateLimit-Reset", &reset.to_string())
    });
    let env = TestEnv::with_api("prometheus", api);
    env.run(&["report", "--jail", "sshd", "--", IP]);
    let run = env.run(&["status", "--prometheus"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for line in [
        "reportedip_reports_waiting 0",
        "reportedip_reports_sent_total 1",
        "reportedip_quota_limit 50",
        "reportedip_quota_remaining 13",
        &format!("reportedip_quota_reset_timestamp_seconds {reset}"),
        "# TYPE reportedip_reports_sent_total counter",
    ] {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "{line} missing:\n{}",
            run.stdout
        );
    }
    let Some(promtool) = promtool() else {
        return;
    };
    let file = env.dir.path().join("reportedip.prom");
    std::fs::write(&file, &run.stdout).unwrap();
    let checked = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn flush_refreshes_the_metrics_file_when_configured() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new("metrics-file");
    let file = env.dir.path().join("reportedip.prom");
    env.write_config(&format!("metrics_file = \"{}\"", file.display()));
    env.run(&["report", "--jail", "sshd", "--", IP]);
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}{}", flush.stdout, flush.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines().any(|l| l == "reportedip_reports_sent_total 1"),
        "{text}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "node_exporter must be able to read it");
    let temps = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(temps, 0);
}
