//! Every path and every server text trusted like `state_dir`: metrics_file, ca_file, the
//! runtime fallback, views of API answers; and the first hour of a new administrator: bans
//! under a broken config, an old api_url, absurd times, two reports of one IP at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::fake_api::documented_api;
use support::{FakeApi, Reply, TestEnv, epoch_now, run_command};

const IP: &str = "45.155.205.233";
const NOBODY: u32 = 65534;

/// Whether the test runs as root, as the tests that switch users need; otherwise it says
/// SKIPPED, which `REPORTEDIP_E2E=1` (set by `.ci/run`) turns into a failure.
fn root_for(test: &str) -> bool {
    if fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0) {
        return true;
    }
    assert!(
        std::env::var("REPORTEDIP_E2E").as_deref() != Ok("1"),
        "REPORTEDIP_E2E=1 but {test} needs root"
    );
    // Straight to stderr: libtest hides eprintln! output of passing tests.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: needs root");
    false
}

fn chown(path: &std::path::Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

/// Points `env` at a state_dir under a directory every user can write to: unusable.
fn use_unsafe_state_dir(env: &TestEnv) {
    let open = env.dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let text = format!(
        "api_key = \"{}\"\napi_url = \"{}\"\nstate_dir = \"{}\"\nsyslog = false\ntimeout = 2\n",
        support::KEY,
        env.api.url(),
        open.join("state").display()
    );
    env.write_raw_config(&text, 0o600);
}

#[test]
fn a_ca_file_others_can_change_is_refused_and_the_ban_kept() {
    if !root_for("a_ca_file_others_can_change_is_refused_and_the_ban_kept") {
        return;
    }
    let env = TestEnv::new("ca-foreign");
    let ca = env.dir.path().join("ca.pem");
    fs::write(&ca, support::tls::TestCa::new("test CA").pem()).unwrap();
    fs::set_permissions(&ca, fs::Permissions::from_mode(0o666)).unwrap();
    chown(&ca, NOBODY);
    env.write_config(&format!("ca_file = \"{}\"", ca.display()));
    let run = env.run(&["report", "--strict", "--categories", "18", "--", IP]);
    run.expect_code(5).expect_said("ca_file cannot be trusted");
    run.expect_said("kept in");
    assert!(
        !run.all_output().contains(&ca.display().to_string()),
        "names no value"
    );
    assert_eq!(env.api.requests().len(), 0);
    // A FIFO in its place never hangs the ban.
    fs::remove_file(&ca).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&ca)
        .status()
        .unwrap();
    assert!(made.success());
    let run = env.run(&["report", "--strict", "--categories", "18", "--", IP]);
    run.expect_code(5);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}

#[test]
fn an_unusable_ca_file_keeps_the_report_instead_of_losing_it() {
    let env = TestEnv::new("ca-garbage");
    let ca = env.dir.path().join("ca.pem");
    fs::write(&ca, "not a certificate\n").unwrap();
    // HTTPS to a closed loopback port: nothing is ever sent.
    let text = format!(
        "api_key = \"{}\"\napi_url = \"https://127.0.0.1:9/v2\"\nstate_dir = \"{}\"\n\
         syslog = false\ntimeout = 2\nca_file = \"{}\"\n",
        support::KEY,
        env.state_dir().display(),
        ca.display()
    );
    env.write_raw_config(&text, 0o600);
    let run = env.run(&["report", "--strict", "--categories", "18", "--", IP]);
    run.expect_code(1)
        .expect_said("holds no PEM certificate")
        .expect_said("queued");
    assert_eq!(env.spooled(), 1, "kept for when ca_file is fixed");
}

#[test]
fn absurd_times_from_the_api_or_the_store_never_end_a_run() {
    for reset in ["253402300800", "18446744073709551615"] {
        let body = format!(
            r#"{{"data":{{"valid":true,"keyName":"k","limits":{{"dailyReportLimit":50,"remainingReports":5,"resetTime":{reset}}}}}}}"#
        );
        let env = TestEnv::answering("vk-time", Reply::json(200, &body));
        let run = env.run(&["verify-key"]);
        run.expect_code(0).expect_said("resets");
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    // A backoff stored at year 10000 and beyond.
    let env = TestEnv::new("store-time");
    env.sql(
        "UPDATE state SET backoff_until = 253402300800, backoff_granted = 253402300800, \
             backoff_reason = 'x', quota_known = 1, quota_reset = 9223372036854775807",
    );
    let run = env.queue(IP);
    run.expect_code(0).expect_said("queued");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(env.spooled(), 1, "the ban was kept");
    let status = env.run(&["status"]);
    status.expect_code(0);
    assert!(!status.stderr.contains("panicked"), "{}", status.stderr);
}

/// Text a hostile server might send: terminal escapes, a hyperlink, a carriage return, a
/// forged line, a right-to-left override and marks.
const HOSTILE: &str = "a\\u001b[2J\\u001b]0;owned\\u0007\\u001b]8;;http://x\\u0007b\\rc\\nforged: yes\\u202ed\\u200ee\\u200ff";

fn assert_clean(text: &str) {
    for bad in ['\u{1b}', '\r', '\u{7}', '\u{202e}', '\u{200e}', '\u{200f}'] {
        assert!(!text.contains(bad), "{bad:?} shown raw in {text:?}");
    }
    assert!(
        !text.lines().any(|l| l.starts_with("forged")),
        "a forged line: {text}"
    );
}

#[test]
fn server_text_is_shown_only_with_escapes_replaced() {
    let key = format!(
        r#"{{"data":{{"valid":true,"keyName":"{HOSTILE}","userRole":"{HOSTILE}","permissions":["{HOSTILE}"],"limits":{{"dailyReportLimit":50,"resetTime":"{HOSTILE}"}},"domains":{{"used":1,"limit":2,"status":"{HOSTILE}"}}}}}}"#
    );
    let check = format!(
        r#"{{"data":{{"ipAddress":"{IP}","abuseConfidencePercentage":5,"lastReportedAt":"{HOSTILE}","isTor":"{HOSTILE}","isWhitelisted":"{HOSTILE}","reports":[{{"{HOSTILE}":1}}],"{HOSTILE}":2}}}}"#
    );
    let api = FakeApi::start_with(move |req, _| {
        if req.path.ends_with("/verify-key") {
            Reply::json(200, &key)
        } else {
            Reply::json(200, &check)
        }
    });
    let env = TestEnv::with_api("hostile-text", api);
    for args in [
        vec!["verify-key"],
        vec!["verify-key", "--json"],
        vec!["check", "--verbose", "--", IP],
        vec!["check", "--verbose", "--json", "--", IP],
    ] {
        let run = env.run(&args);
        run.expect_code(0);
        assert_clean(&run.stdout);
        // JSON escapes would hide them from the eye but not from a terminal that prints
        // the decoded value: the decoded strings are clean too.
        if args.contains(&"--json") {
            assert_clean(&run.json().to_string().replace("\\n", "\n"));
            assert!(!run.stdout.contains("\\u001b") && !run.stdout.contains("\\r"));
        }
    }
}

#[test]
fn the_backoff_of_a_broken_state_dir_is_its_own() {
    // Config A: state_dir unusable (a parent others can write to), API down.
    let down = TestEnv::answering("fallback-down", Reply::json(503, ""));
    use_unsafe_state_dir(&down);
    let shared_run = down.dir.path().join("run");
    down.run(&["report", "--categories", "18", "--", "45.155.205.1"])
        .expect_said("not safe to use")
        .expect_said("not delivered");
    // Config B, healthy, on the same host (the same runtime directory).
    let mut healthy = TestEnv::new("fallback-healthy");
    healthy.env("REPORTEDIP_RUNTIME_DIR", shared_run.to_str().unwrap());
    let run = healthy.run(&["report", "--strict", "--categories", "18", "--", IP]);
    run.expect_code(0).expect_said("reported");
    assert_eq!(healthy.api.accepted_reports().len(), 1);
}

#[test]
fn two_direct_reports_of_one_ip_at_the_same_moment_send_one_request() {
    let api = FakeApi::start_with(|req, index| {
        std::thread::sleep(Duration::from_millis(700));
        documented_api(req, index)
    });
    let env = TestEnv::with_api("same-moment", api);
    env.db();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let cmd = env.command(&["report", "--categories", "18", "--", IP]);
            std::thread::spawn(move || run_command(cmd))
        })
        .collect();
    let outputs: Vec<String> = runs
        .into_iter()
        .map(|r| r.join().unwrap().all_output())
        .collect();
    assert_eq!(env.api.requests().len(), 1, "{outputs:?}");
    assert!(
        outputs
            .iter()
            .any(|o| o.contains("another process is reporting it")),
        "{outputs:?}"
    );
}

#[test]
fn check_is_not_held_by_a_used_up_report_quota() {
    let env = TestEnv::new("check-quota");
    let reset = epoch_now() + 3600;
    env.sql(&format!(
        "UPDATE state SET backoff_until = {reset}, backoff_granted = 3600, \
         backoff_reason = 'daily report quota used up'"
    ));
    env.run(&["check", "--", IP])
        .expect_code(0)
        .expect_said("confidence");
    assert_eq!(env.api.requests().len(), 1);
}

#[test]
fn a_runtime_dir_of_another_user_is_said_not_silently_unused() {
    if !root_for("a_runtime_dir_of_another_user_is_said_not_silently_unused") {
        return;
    }
    let mut env = TestEnv::answering("runtime-foreign", Reply::json(503, ""));
    let run_dir = env.dir.path().join("foreign-run");
    fs::create_dir(&run_dir).unwrap();
    chown(&run_dir, NOBODY);
    env.env("REPORTEDIP_RUNTIME_DIR", run_dir.to_str().unwrap());
    use_unsafe_state_dir(&env);
    env.run(&["report", "--categories", "18", "--", IP])
        .expect_said("runtime directory not used")
        .expect_said("owned by uid 65534");
}

#[test]
fn bans_under_a_broken_config_are_sent_once_it_is_fixed() {
    let env = TestEnv::new("held");
    // The admin's config, too open: refused, but the bans are kept.
    let good = fs::read_to_string(env.config_path()).unwrap();
    let with_ignore = format!("{good}ignore = [\"45.155.205.0/28\"]\n");
    env.write_raw_config(&with_ignore, 0o644);
    for ip in [IP, "45.155.205.1"] {
        env.run(&[
            "report",
            "--queue",
            "--jail",
            "sshd",
            "--failures",
            "4",
            "--",
            ip,
        ])
        .expect_code(0)
        .expect_said("kept in");
    }
    assert_eq!(env.api.requests().len(), 0);
    let status = env.run(&["status"]);
    status
        .expect_code(5)
        .expect_said("2 ban(s) that arrived meanwhile");
    // Fixed: everything is decided again under it. 45.155.205.1 is on the ignore list now.
    fs::set_permissions(env.config_path(), fs::Permissions::from_mode(0o600)).unwrap();
    env.run(&["flush"]).expect_code(0);
    let sent = env.api.fields("ip");
    assert_eq!(sent, [IP], "the ignored one never reaches the public list");
    let form = &env.api.accepted_reports()[0];
    assert_eq!(form.field("categories"), "18,22");
    assert_eq!(form.field("comment"), "fail2ban sshd: 4 failed attempts");
    assert_eq!(env.status()["held"], 0);
}

#[test]
fn the_placeholder_key_holds_bans_in_the_configs_state_dir() {
    let env = TestEnv::new("held-placeholder");
    let text = fs::read_to_string(env.config_path())
        .unwrap()
        .replace(support::KEY, "PASTE-YOUR-API-KEY-HERE");
    env.write_raw_config(&text, 0o600);
    // Before any ban, the timer's flush has nothing at stake: no failure over the missing key.
    env.run(&["flush"])
        .expect_code(0)
        .expect_said("nothing waiting; no API key is set yet");
    env.run(&["report", "--queue", "--jail", "sshd", "--", IP])
        .expect_code(0)
        .expect_said("placeholder")
        .expect_said(&env.state_dir().display().to_string());
    let status = env.status();
    assert_eq!(status["held"], 1, "{status}");
    assert!(
        status["held_because"]
            .as_str()
            .unwrap()
            .contains("placeholder"),
        "{status}"
    );
    // Now a ban waits for the key: the timer's flush fails, and says why.
    env.run(&["flush"])
        .expect_code(5)
        .expect_said("placeholder");
    env.write_config("");
    env.run(&["flush"]).expect_code(0);
    assert_eq!(env.api.fields("ip"), [IP]);
}

#[test]
fn an_old_api_url_is_said_by_every_command_and_verify_key_ends_its_backoff() {
    let env = TestEnv::new("old-url");
    // The old domain is mended at load; here a loopback URL with /report stands for it.
    let url = format!("{}/report", env.api.url());
    let text = fs::read_to_string(env.config_path())
        .unwrap()
        .replace(&env.api.url(), &url);
    env.write_raw_config(&text, 0o600);
    for args in [
        vec!["verify-key"],
        vec!["flush"],
        vec!["status"],
        vec!["check", "--", IP],
    ] {
        env.run(&args).expect_said("ends in /report");
    }
    // A backoff that the old address earned ends once the key verifies.
    env.set_backoff_until(epoch_now() + 3600);
    env.run(&["verify-key"]).expect_code(0);
    assert_eq!(env.status()["backoff"]["active"], false);
}

#[test]
fn a_new_api_url_ends_the_backoff_of_the_old_one() {
    let env = TestEnv::new("new-url");
    env.queue("45.155.205.1");
    env.wait_delivered();
    env.set_backoff_until(epoch_now() + 3600);
    env.sql("UPDATE state SET api_url = 'https://old.example/v2'");
    env.run(&["report", "--strict", "--categories", "18", "--", IP])
        .expect_code(0)
        .expect_said("api_url changed");
    assert_eq!(env.api.fields("ip"), ["45.155.205.1", IP]);
}

/// The binary run as nobody (uid and gid 65534, no groups) with `config`.
fn as_nobody(env: &TestEnv, config: &std::path::Path, args: &[&str]) -> support::Run {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"]);
    cmd.arg(support::BIN).arg("--config").arg(config).args(args);
    cmd.env("REPORTEDIP_RUNTIME_DIR", env.dir.path().join("run-nobody"));
    run_command(cmd)
}

#[test]
fn a_user_who_cannot_read_the_config_is_told_to_run_as_root() {
    if !root_for("a_user_who_cannot_read_the_config_is_told_to_run_as_root") {
        return;
    }
    let env = TestEnv::new("not-root");
    // The config is root's, mode 0600, in a directory others may enter.
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let config = env.config_path();
    let as_nobody = |args: &[&str]| as_nobody(&env, &config, args);
    as_nobody(&["verify-key"])
        .expect_code(5)
        .expect_said("run the command as root");
    // A dry run needs no key: it shows what the defaults would send.
    as_nobody(&["report", "--dry-run", "--jail", "sshd", "--", IP])
        .expect_code(0)
        .expect_said("categories=18,22");
}

#[test]
fn status_as_another_user_says_it_cannot_read_roots_state() {
    if !root_for("status_as_another_user_says_it_cannot_read_roots_state") {
        return;
    }
    let env = TestEnv::new("status-not-root");
    env.run(&["report", "--strict", "--categories", "18", "--", IP])
        .expect_code(0);
    // nobody's own config (0600, owned by nobody) naming root's state_dir (0700).
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let config = env.dir.path().join("nobody.toml");
    fs::copy(env.config_path(), &config).unwrap();
    std::os::unix::fs::chown(&config, Some(65534), Some(65534)).unwrap();
    let as_nobody = |args: &[&str]| as_nobody(&env, &config, args);
    as_nobody(&["status"])
        .expect_code(7)
        .expect_said("run status as the user that reports (root)");
    as_nobody(&["status", "--json"]).expect_code(7);
    // Monitoring sees an unreadable state, never a healthy zero.
    as_nobody(&["status", "--prometheus"])
        .expect_code(0)
        .expect_said("reportedip_state_readable 0");
    // root still reads it.
    assert_eq!(env.status()["sent"], 1);
}
