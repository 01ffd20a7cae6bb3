//! Outcome lines reach syslog: a datagram socket bound by the test stands in for /dev/log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use support::{FakeApi, KEY, Reply, TestEnv};

struct Syslog {
    socket: UnixDatagram,
    path: std::path::PathBuf,
}

impl Syslog {
    fn bind(env: &TestEnv) -> Self {
        let path = env.dir.path().join("log.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self { socket, path }
    }

    fn next(&self) -> Option<String> {
        let mut buf = vec![0; 8192];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Nothing arrives within a short wait.
    fn silent(&self) -> bool {
        self.socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        self.next().is_none()
    }
}

fn syslog_env(tag: &str, api: FakeApi) -> (TestEnv, Syslog) {
    let mut env = TestEnv::with_api(tag, api);
    let syslog = Syslog::bind(&env);
    env.env("REPORTEDIP_SYSLOG_SOCKET", syslog.path.to_str().unwrap());
    env.write_config("");
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("syslog = false", "syslog = true");
    env.write_raw_config(&text, 0o600);
    (env, syslog)
}

/// Splits `<PRI>ident[pid]: message`.
fn parse(line: &str) -> (u8, String, u32, String) {
    let (pri, rest) = line.strip_prefix('<').unwrap().split_once('>').unwrap();
    let (tag, message) = rest.split_once(": ").unwrap();
    let (ident, pid) = tag.trim_end_matches(']').split_once('[').unwrap();
    (
        pri.parse().unwrap(),
        ident.to_string(),
        pid.parse().unwrap(),
        message.to_string(),
    )
}

#[test]
fn success_is_logged_at_info_with_the_ident() {
    let (env, syslog) = syslog_env("syslog-ok", FakeApi::start());
    let run = env.run(&[
        "report",
        "--jail",
        "sshd",
        "--failures",
        "4",
        "--",
        "45.155.205.233",
    ]);
    assert_eq!(run.code, 0);
    let (pri, ident, pid, message) = parse(&syslog.next().expect("no syslog line"));
    assert_eq!(pri, 3 * 8 + 6, "facility daemon, severity info");
    assert_eq!(ident, "reportedip-report");
    assert!(pid > 0);
    assert_eq!(
        message,
        "reported 45.155.205.233 (sshd, 18,22): report 4316026, confidence 39%"
    );
    assert_eq!(
        run.stderr.trim(),
        message,
        "stderr and syslog carry the same line"
    );
}

#[test]
fn failures_are_logged_at_error_without_the_key() {
    let (env, syslog) = syslog_env(
        "syslog-err",
        FakeApi::start_with(|_, _| Reply::wp_error(401, "bad_key", "Invalid key")),
    );
    env.run(&["report", "--categories", "18", "--", "45.155.205.233"]);
    let line = syslog.next().expect("no syslog line");
    let (pri, _, _, message) = parse(&line);
    assert_eq!(pri, 3 * 8 + 3, "severity err: {line}");
    assert!(
        message.contains("API key refused: HTTP 401 bad_key: Invalid key"),
        "{message}"
    );
    assert!(!line.contains(KEY));
}

#[test]
fn background_sender_logs_its_deliveries() {
    let (env, syslog) = syslog_env("syslog-sender", FakeApi::start());
    let run = env.run(&[
        "report",
        "--queue",
        "--jail",
        "sshd",
        "--",
        "45.155.205.233",
    ]);
    assert_eq!(run.code, 0);
    let (_, _, reporter_pid, queued) = parse(&syslog.next().unwrap());
    assert!(queued.starts_with("45.155.205.233 queued"), "{queued}");
    let (pri, _, sender_pid, sent) = parse(&syslog.next().expect("sender logged nothing"));
    assert_eq!(pri, 30);
    assert_ne!(sender_pid, reporter_pid, "delivered by the detached sender");
    assert!(
        sent.starts_with("reported 45.155.205.233 (sshd, 18,22)"),
        "{sent}"
    );
    env.wait_sender_idle();
}

#[test]
fn syslog_off_sends_nothing() {
    let (env, syslog) = syslog_env("syslog-off", FakeApi::start());
    env.write_config("");
    let run = env.run(&["report", "--categories", "18", "--", "45.155.205.233"]);
    assert!(run.stderr.contains("reported"));
    assert!(syslog.silent());
}

#[test]
fn missing_syslog_socket_is_not_an_error() {
    let (mut env, _syslog) = syslog_env("syslog-missing", FakeApi::start());
    env.env("REPORTEDIP_SYSLOG_SOCKET", "/nonexistent/dev-log");
    let run = env.run(&[
        "report",
        "--categories",
        "18",
        "--strict",
        "--",
        "45.155.205.233",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.api.accepted_reports().len(), 1);
}

#[test]
fn version_is_the_crate_version() {
    let env = TestEnv::new("version");
    let run = env.run(&["--version"]);
    assert_eq!(
        run.stdout,
        format!("reportedip-report {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn non_utf8_jail_and_comment_are_reported_not_refused() {
    use std::os::unix::ffi::OsStrExt;
    let (env, syslog) = syslog_env("syslog-bytes", FakeApi::start());
    let mut cmd = env.command(&[]);
    cmd.arg("report")
        .arg("--jail")
        .arg(std::ffi::OsStr::from_bytes(b"ssh\xffd"))
        .arg("--comment")
        .arg(std::ffi::OsStr::from_bytes(b"user r\xe9mi\n"))
        .args(["--categories", "18", "--", "45.155.205.233"]);
    let run = support::run_command(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = env.api.requests();
    assert_eq!(requests.len(), 1, "the ban was reported");
    assert_eq!(requests[0].field("comment"), "user r\u{fffd}mi ");
    let (_, _, _, message) = parse(&syslog.next().expect("no syslog line"));
    assert!(message.contains("ssh\u{fffd}d"), "{message}");
}

#[test]
fn a_ban_refused_by_the_argument_parser_is_said_in_syslog() {
    use std::os::unix::ffi::OsStrExt;
    let (env, syslog) = syslog_env("syslog-argv", FakeApi::start());
    let mut cmd = env.command(&[]);
    cmd.arg("report")
        .args(["--categories", "18", "--"])
        .arg(std::ffi::OsStr::from_bytes(b"45.155.205.\xff"));
    let run = support::run_command(cmd);
    assert_eq!(run.code, 0, "report promises exit 0: {}", run.stderr);
    let (pri, _, _, message) = parse(&syslog.next().expect("nothing in syslog"));
    assert_eq!(pri, 3 * 8 + 3, "severity err");
    assert!(
        message.starts_with("ban not reported: invalid UTF-8"),
        "{message}"
    );
    assert!(env.api.requests().is_empty());
}
