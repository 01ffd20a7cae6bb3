//! `report` end to end: the real binary against the loopback fake API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::fake_api::API_PATH;
use support::{FakeApi, KEY, Reply, Run, TestEnv, epoch_now};

const IP: &str = "45.155.205.233";

/// Every run of every test: the key never shows in any output.
fn checked(run: Run) -> Run {
    assert!(
        !run.all_output().contains(KEY),
        "key leaked: {}",
        run.all_output()
    );
    run
}

fn report(env: &TestEnv, args: &[&str]) -> Run {
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    checked(env.run(&all))
}

#[test]
fn success_sends_the_documented_request() {
    let env = TestEnv::new("success");
    let run = report(
        &env,
        &["--jail", "sshd", "--failures", "5", "--strict", "--", IP],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("reported 45.155.205.233 (sshd, 18,22): report 4316026, confidence 39%"),
        "{}",
        run.stderr
    );
    let requests = env.api.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, format!("{API_PATH}/report"));
    assert_eq!(req.header("x-key"), Some(KEY));
    assert_eq!(req.header("accept"), Some("application/json"));
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(req.field("ip"), IP);
    assert_eq!(req.field("categories"), "18,22");
    assert_eq!(req.field("comment"), "fail2ban sshd: 5 failed attempts");
    assert_eq!(req.form().len(), 3, "exactly ip, categories, comment");
}

#[test]
fn ipv6_and_non_ascii_comment_are_form_encoded() {
    let env = TestEnv::new("encoding");
    let comment = "Grüße & ünïcödé = 100% +plus ssh";
    let run = report(
        &env,
        &[
            "--categories",
            "ssh,brute-force",
            "--comment",
            comment,
            "--",
            "2A01:4F8::0001",
        ],
    );
    assert_eq!(run.code, 0);
    let req = &env.api.requests()[0];
    let raw = String::from_utf8_lossy(&req.body).to_string();
    assert!(raw.contains("ip=2a01%3A4f8%3A%3A1"), "{raw}");
    assert!(
        !raw.contains("ü"),
        "non-ASCII must be percent-encoded: {raw}"
    );
    assert_eq!(req.field("ip"), "2a01:4f8::1");
    assert_eq!(req.field("categories"), "22,18");
    assert_eq!(req.field("comment"), comment);
}

#[test]
fn mapped_ipv4_is_reported_as_ipv4() {
    let env = TestEnv::new("mapped");
    report(&env, &["--categories", "18", "--", "::ffff:45.155.205.233"]);
    assert_eq!(env.api.requests()[0].field("ip"), IP);
}

#[test]
fn json_outcome_describes_the_report() {
    let env = TestEnv::new("json");
    let run = report(&env, &["--jail", "sshd", "--json", "--", IP]);
    let json = run.json();
    assert_eq!(json["status"], "sent");
    assert_eq!(json["ip"], IP);
    assert_eq!(json["categories"], "18,22");
    assert_eq!(json["report_id"], "4316026");
    assert_eq!(json["confidence"], 39);
    assert_eq!(json["exit_code"], 0);
}

#[test]
fn categories_come_from_config_jail_table_then_default() {
    let env = TestEnv::new("catsource");
    env.write_config(
        "categories = \"15\"\n[jail_categories]\nmy-webapp = \"18,21\"\nsshd = \"22\"",
    );
    report(&env, &["--jail", "my-webapp", "--", "45.155.205.1"]);
    report(&env, &["--jail", "sshd", "--", "45.155.205.2"]);
    report(&env, &["--jail", "recidive", "--", "45.155.205.3"]);
    report(
        &env,
        &[
            "--jail",
            "unknown-jail",
            "--categories",
            "",
            "--",
            "45.155.205.4",
        ],
    );
    let got = env.api.fields("categories");
    assert_eq!(got, ["18,21", "22", "15,18", "15"]);
}

#[test]
fn ip_whitelisted_is_rejected_not_retried() {
    let env = TestEnv::answering(
        "whitelisted",
        Reply::wp_error(400, "ip_whitelisted", "This IP address is whitelisted"),
    );
    let run = report(&env, &["--categories", "18", "--strict", "--", IP]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr
            .contains("ip_whitelisted: This IP address is whitelisted"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("not retried"));
    assert_eq!(env.spooled(), 0, "a rejected report is not kept");
    let lenient = report(&env, &["--categories", "18", "--", "45.155.205.234"]);
    assert_eq!(lenient.code, 0, "without --strict report always exits 0");
}

#[test]
fn invalid_param_is_rejected() {
    let env = TestEnv::answering(
        "invalidparam",
        Reply::wp_error(
            400,
            "rest_invalid_param",
            "Invalid parameter(s): categories",
        ),
    );
    let run = report(
        &env,
        &["--categories", "18", "--strict", "--json", "--", IP],
    );
    assert_eq!(run.code, 3);
    assert_eq!(run.json()["status"], "rejected");
    assert!(run.stderr.contains("rest_invalid_param"));
}

#[test]
fn unprocessable_is_rejected() {
    let env = TestEnv::answering("422", Reply::json(422, "{}"));
    assert_eq!(
        report(&env, &["--categories", "18", "--strict", "--", IP]).code,
        3
    );
}

#[test]
fn key_problems_keep_the_report() {
    for (status, code, said) in [
        (401, "rest_forbidden", "API key refused"),
        (403, "rest_forbidden", "API key refused"),
        (
            403,
            "domain_limit_exceeded",
            "the account's site limit is reached",
        ),
    ] {
        let env = TestEnv::answering("key", Reply::wp_error(status, code, "Not allowed"));
        let run = report(&env, &["--categories", "18", "--strict", "--", IP]);
        assert_eq!(run.code, 4, "{status}: {}", run.stderr);
        assert!(run.stderr.contains(said), "{}", run.stderr);
        assert!(run.stderr.contains(code));
        assert!(
            run.stderr.contains("flush"),
            "says how to recover: {}",
            run.stderr
        );
        assert_eq!(
            env.spooled(),
            1,
            "{status}: kept for after the key is fixed"
        );
    }
}

#[test]
fn not_found_means_wrong_api_url_and_keeps_the_report() {
    let env = TestEnv::answering("404", Reply::wp_error(404, "rest_no_route", "No route"));
    let run = report(&env, &["--categories", "18", "--strict", "--", IP]);
    assert_eq!(run.code, 5);
    assert!(run.stderr.contains("check api_url"), "{}", run.stderr);
    assert_eq!(env.spooled(), 1);
}

#[test]
fn too_many_requests_keeps_the_report_until_retry_after() {
    let env = TestEnv::answering(
        "429",
        Reply::wp_error(429, "rate_limited", "Daily report limit reached")
            .with_header("Retry-After", "120"),
    );
    let before = epoch_now();
    let run = report(&env, &["--categories", "18", "--strict", "--", IP]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("queued: HTTP 429 rate_limited"),
        "{}",
        run.stderr
    );
    assert_eq!(env.spooled(), 1);
    let until = env.state()["backoff_until"].as_u64().unwrap();
    assert!(
        (before + 120..=epoch_now() + 120).contains(&until),
        "{until} vs {before}"
    );
}

#[test]
fn server_error_keeps_the_report() {
    let env = TestEnv::answering(
        "500",
        Reply::json(500, "{\"code\":\"internal\",\"message\":\"oops\"}"),
    );
    let run = report(
        &env,
        &["--categories", "18", "--strict", "--json", "--", IP],
    );
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["status"], "kept");
    assert_eq!(run.json()["waiting"], 1);
    assert!(
        run.stderr
            .contains("45.155.205.233 queued: HTTP 500 internal: oops; 1 report waiting"),
        "{}",
        run.stderr
    );
    assert_eq!(env.spooled(), 1);
}

#[test]
fn redirect_is_not_followed_and_the_key_stays_home() {
    let elsewhere = FakeApi::start_on("127.0.0.2:0", support::fake_api::documented_api);
    let location = format!("{}/report", elsewhere.url());
    let env = TestEnv::answering(
        "redirect",
        Reply::json(301, "").with_header("Location", &location),
    );
    let run = report(&env, &["--categories", "18", "--strict", "--", IP]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&location),
        "Location shown: {}",
        run.stderr
    );
    assert!(run.stderr.contains("update api_url"), "{}", run.stderr);
    assert_eq!(env.api.requests().len(), 1);
    assert_eq!(elsewhere.connections(), 0, "redirect followed");
    assert_eq!(env.spooled(), 1);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn connection_refused_is_kept_quickly() {
    let env = TestEnv::new("refused");
    // The standard config already sets api_url; write a full one pointing at a closed port.
    env.write_raw_config(
        &format!(
            "api_key = \"{KEY}\"\napi_url = \"http://127.0.0.1:{}/v2\"\nstate_dir = \"{}\"\nsyslog = false\ntimeout = 2\n",
            free_port(),
            env.state_dir().display()
        ),
        0o600,
    );
    let run = report(&env, &["--categories", "18", "--strict", "--", IP]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("API unreachable (connection refused)"),
        "{}",
        run.stderr
    );
    assert!(run.elapsed < support::deadline(), "{:?}", run.elapsed);
    assert_eq!(env.spooled(), 1);
}

#[test]
fn silent_server_ends_within_the_deadline() {
    let env = TestEnv::answering("hang", Reply::Hang);
    let run = report(&env, &["--categories", "18", "--strict", "--", IP]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("timeout after 2 s"), "{}", run.stderr);
    assert!(
        run.elapsed < support::deadline(),
        "timeout + 1 s: {:?}",
        run.elapsed
    );
    assert_eq!(env.spooled(), 1);
}

#[test]
fn trickling_server_ends_within_the_deadline() {
    let env = TestEnv::answering("trickle", Reply::Trickle);
    let run = report(&env, &["--categories", "18", "--", IP]);
    assert_eq!(run.code, 0);
    assert!(run.stderr.contains("timeout after 2 s"), "{}", run.stderr);
    assert!(run.elapsed < support::deadline(), "{:?}", run.elapsed);
    assert_eq!(env.spooled(), 1);
}

#[test]
fn malformed_success_body_still_counts_as_sent() {
    let env = TestEnv::answering("malformed", Reply::json(200, "<html>oops</html>"));
    let run = report(&env, &["--categories", "18", "--strict", "--", IP]);
    assert_eq!(
        run.code, 0,
        "the API took it; sending again would duplicate it"
    );
    assert!(run.stderr.contains("answer unreadable"), "{}", run.stderr);
    assert_eq!(env.spooled(), 0);
}

#[test]
fn oversized_body_is_cut_off() {
    let huge = format!(
        "{{\"data\":{{\"reportId\":\"{}\"}}}}",
        "9".repeat(3 * 1024 * 1024)
    );
    let env = TestEnv::answering("huge", Reply::json(200, &huge));
    let run = report(&env, &["--categories", "18", "--strict", "--", IP]);
    assert_eq!(run.code, 0);
    assert!(
        run.stderr.contains("larger than 1048576 bytes"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.len() < 4096,
        "huge body echoed: {} bytes",
        run.stderr.len()
    );
}

#[test]
fn huge_error_body_is_not_echoed() {
    let huge = "x".repeat(2 * 1024 * 1024);
    let env = TestEnv::answering("hugeerr", Reply::json(400, &huge));
    let run = report(&env, &["--categories", "18", "--strict", "--", IP]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.len() < 4096, "{} bytes", run.stderr.len());
}

fn assert_config_refused(env: &TestEnv, needle: &str) {
    let strict = report(env, &["--categories", "18", "--strict", "--", IP]);
    assert_eq!(strict.code, 5, "{}", strict.stderr);
    assert!(
        strict.stderr.contains(needle),
        "wanted {needle:?} in {}",
        strict.stderr
    );
    let lenient = report(env, &["--categories", "18", "--", IP]);
    assert_eq!(lenient.code, 0);
    assert!(
        env.api.requests().is_empty(),
        "no request with a bad config"
    );
}

#[test]
fn missing_config_is_refused() {
    let env = TestEnv::new("cfgmissing");
    std::fs::remove_file(env.config_path()).unwrap();
    assert_config_refused(&env, "not found");
}

#[test]
fn unreadable_config_is_refused() {
    let env = TestEnv::new("cfgunreadable");
    std::fs::remove_file(env.config_path()).unwrap();
    std::fs::create_dir(env.config_path()).unwrap();
    std::fs::set_permissions(
        env.config_path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    assert_config_refused(&env, "cannot read config");
}

#[test]
fn world_readable_config_is_refused_with_the_fix() {
    let env = TestEnv::new("cfgmode");
    std::fs::set_permissions(
        env.config_path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let path = env.config_path().display().to_string();
    assert_config_refused(
        &env,
        &format!("is mode 0644, so other users can read the API key; run chmod 600 {path}"),
    );
}

#[test]
fn bad_toml_is_refused_without_echoing_the_key() {
    let env = TestEnv::new("cfgtoml");
    env.write_raw_config(&format!("api_key = \"{KEY}\ntimeout = 3\n"), 0o600);
    assert_config_refused(&env, "line 1");
}

#[test]
fn unknown_key_is_named() {
    let env = TestEnv::new("cfgunknown");
    env.write_config("time_out = 5");
    assert_config_refused(&env, "time_out");
}

#[test]
fn missing_api_key_is_refused() {
    let env = TestEnv::new("cfgnokey");
    env.write_raw_config(
        &format!("api_url = \"{}\"\nsyslog = false\n", env.api.url()),
        0o600,
    );
    assert_config_refused(&env, "has no api_key");
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let env = TestEnv::new("cfghttp");
    env.write_raw_config(
        &format!("api_key = \"{KEY}\"\napi_url = \"http://reportedip.com/v2\"\n"),
        0o600,
    );
    assert_config_refused(&env, "would send the key unencrypted");
}

#[test]
fn environment_key_overrides_the_file() {
    let mut env = TestEnv::new("envkey");
    env.env("REPORTEDIP_API_KEY", "env-key-7d3a");
    let run = report(&env, &["--categories", "18", "--", IP]);
    assert!(!run.all_output().contains("env-key-7d3a"));
    assert_eq!(env.api.requests()[0].header("x-key"), Some("env-key-7d3a"));
}

#[test]
fn addresses_that_must_not_be_reported_make_no_request() {
    let env = TestEnv::new("badips");
    env.write_config("ignore = [\"45.155.205.0/24\"]");
    let cases = [
        ("1.2.3", 2, "not an IPv4 or IPv6 address"),
        ("45.155.205.233.1", 2, "not an IPv4 or IPv6 address"),
        ("-1.2.3.4", 2, "not an IPv4 or IPv6 address"),
        ("192.168.1.10", 0, "a private address"),
        ("127.0.0.1", 0, "a loopback address"),
        ("203.0.113.45", 0, "a documentation address"),
        ("2001:db8::1", 0, "a documentation address"),
        ("fe80::1", 0, "a link-local address"),
        ("45.155.205.99", 0, "on the ignore list"),
    ];
    for (ip, code, needle) in cases {
        let run = report(&env, &["--categories", "18", "--strict", "--", ip]);
        assert_eq!(run.code, code, "{ip}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{ip}: {}", run.stderr);
    }
    assert!(env.api.requests().is_empty());
}

#[test]
fn unknown_category_is_never_sent() {
    let env = TestEnv::new("badcat");
    for list in ["18,99", "ssh,bruteforce", "0"] {
        let run = report(&env, &["--categories", list, "--strict", "--", IP]);
        assert_eq!(run.code, 2, "{list}");
        assert!(run.stderr.contains("unknown category"), "{}", run.stderr);
    }
    let run = report(&env, &["--jail", "no-such-jail", "--strict", "--", IP]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no categories"));
    assert!(env.api.requests().is_empty());
}

#[test]
fn huge_comment_with_control_characters_is_cleaned_and_cut() {
    let env = TestEnv::new("comment");
    let comment = "evil\nFeb 1 sshd: forged\r\x1b[31m".repeat(4000);
    assert!(comment.len() > 100_000);
    let run = report(
        &env,
        &["--categories", "18", "--comment", &comment, "--", IP],
    );
    assert_eq!(run.code, 0);
    let sent = env.api.requests()[0].field("comment");
    assert!(sent.len() <= 1024 && sent.len() > 1000, "{}", sent.len());
    assert!(!sent.chars().any(char::is_control), "{sent:?}");
    assert!(sent.starts_with("evil Feb 1 sshd: forged"));
}

#[test]
fn option_like_values_stay_values() {
    let env = TestEnv::new("optlike");
    let run = report(
        &env,
        &[
            "--jail",
            "--dry-run",
            "--comment",
            "--strict",
            "--categories",
            "18",
            "--",
            IP,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = env.api.requests();
    assert_eq!(
        requests.len(),
        1,
        "--dry-run must not have been taken as a flag"
    );
    assert_eq!(requests[0].field("comment"), "--strict");
    let run = report(&env, &["--categories", "18", "--strict", "--", "--help"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("\"--help\" is not an IPv4 or IPv6 address"),
        "{}",
        run.stderr
    );
    assert_eq!(env.api.requests().len(), 1);
}

#[test]
fn argument_errors_exit_zero_unless_strict() {
    let env = TestEnv::new("argerr");
    let lenient = report(&env, &["--bogus", IP]);
    assert_eq!(lenient.code, 0);
    assert!(lenient.stderr.contains("--bogus"), "{}", lenient.stderr);
    let strict = report(&env, &["--strict", "--bogus", IP]);
    assert_eq!(strict.code, 2);
    let missing = report(&env, &[]);
    assert_eq!(missing.code, 0);
    let bad_number = report(&env, &["--failures", "many", "--", IP]);
    assert_eq!(bad_number.code, 0);
    assert!(env.api.requests().is_empty());
}

#[test]
fn dry_run_prints_the_request_and_sends_nothing() {
    let env = TestEnv::new("dryrun");
    let run = report(
        &env,
        &["--dry-run", "--jail", "sshd", "--failures", "3", "--", IP],
    );
    assert_eq!(run.code, 0);
    let expected = format!(
        "POST {}/report\nX-Key: (set)\nAccept: application/json\nContent-Type: application/x-www-form-urlencoded\n\nip={IP}\ncategories=18,22\ncomment=fail2ban sshd: 3 failed attempts\n",
        env.api.url()
    );
    assert_eq!(run.stdout, expected);
    assert!(env.api.requests().is_empty());
    assert!(!env.state_dir().exists(), "dry run changes no state");
}

#[test]
fn dry_run_works_without_any_config() {
    let env = TestEnv::new("drynocfg");
    std::fs::remove_file(env.config_path()).unwrap();
    let run = report(&env, &["--dry-run", "--json", "--jail", "sshd", "--", IP]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    assert_eq!(
        json["request"]["url"],
        "https://reportedip.com/wp-json/reportedip/v2/report"
    );
    assert_eq!(json["request"]["headers"]["X-Key"], "(missing)");
    assert_eq!(json["request"]["form"]["categories"], "18,22");
}

#[test]
fn closed_stdout_does_not_change_the_exit_code() {
    let env = TestEnv::new("closedout");
    let mut cmd = env.command(&[
        "report",
        "--json",
        "--strict",
        "--categories",
        "18",
        "--",
        IP,
    ]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(env.api.requests().len(), 1);
}
