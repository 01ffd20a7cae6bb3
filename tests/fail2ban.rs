//! End to end under a real fail2ban: a private config tree whose jails use
//! `action.d/reportedip.conf` from this repository, against the loopback fake API.
//!
//! Without /usr/bin/fail2ban-server these tests print SKIPPED and pass, unless
//! `REPORTEDIP_E2E=1` (set by `.ci/run`) makes a missing fail2ban a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{BIN, FakeApi, Reply, TempDir, fail2ban_available};

const CLIENT: &str = "/usr/bin/fail2ban-client";
const WAIT: Duration = Duration::from_secs(30);
const KEY: &str = "e2e-key-93b1d0";

/// One jail of the private config: its name, its filter and the reportedip action arguments.
struct Jail<'a> {
    name: &'a str,
    filter: &'a str,
    action_args: &'a str,
}

/// A fail2ban server with its own socket, pidfile, log and database in a temp dir.
struct Fail2ban {
    dir: TempDir,
    api: FakeApi,
    pid: Option<u32>,
}

impl Fail2ban {
    fn start(tag: &str, api: FakeApi, jails: &[Jail], dbfile: &str) -> Self {
        let dir = TempDir::new(tag);
        let t = dir.path();
        support::fail2ban_tree(t, dbfile);
        write(
            &t.join("conf/filter.d/webapp.conf"),
            "[Definition]\nfailregex = ^login failed for <F-USER>.*</F-USER> from <HOST>$\n\
             datepattern = ^%%Y-%%m-%%d %%H:%%M:%%S\n",
        );
        let mut jail_conf = String::from(
            "[DEFAULT]\nbackend = polling\nusedns = no\nbantime = 1h\nfindtime = 1h\nmaxretry = 3\n",
        );
        for jail in jails {
            fs::write(t.join(format!("{}.log", jail.name)), "").unwrap();
            jail_conf.push_str(&format!(
                "\n[{name}]\nenabled = true\nfilter = {filter}\nlogpath = {t}/{name}.log\n\
                 action = dummy[target=\"{t}/dummy-{name}.txt\"]\n         \
                 reportedip[reportedip_bin=\"{BIN}\", reportedip_config=\"{t}/reportedip.toml\"{args}]\n",
                name = jail.name,
                filter = jail.filter,
                t = t.display(),
                args = jail.action_args,
            ));
        }
        write(&t.join("conf/jail.conf"), &jail_conf);
        let config = t.join("reportedip.toml");
        write(
            &config,
            &format!(
                "api_key = \"{KEY}\"\napi_url = \"{}\"\nstate_dir = \"{}/state\"\nsyslog = false\n\
                 timeout = 2\ncooldown = 0\n",
                api.url(),
                t.display()
            ),
        );
        fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let mut server = Self {
            dir,
            api,
            pid: None,
        };
        let test = server.client(&["-t"]);
        assert!(test.status.success(), "config test failed: {}", text(&test));
        let started = server.client(&["start"]);
        assert!(started.status.success(), "start failed: {}", text(&started));
        server.pid = server.read_pid();
        server
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read_pid(&self) -> Option<u32> {
        fs::read_to_string(self.path("run/f2b.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn client(&self, args: &[&str]) -> Output {
        let t = self.dir.path();
        Command::new(CLIENT)
            .arg("-c")
            .arg(t.join("conf"))
            .arg("-s")
            .arg(t.join("run/f2b.sock"))
            .arg("-p")
            .arg(t.join("run/f2b.pid"))
            .args(args)
            .output()
            .unwrap()
    }

    /// Appends `count` sshd failure lines for `ip` with `user`, stamped now.
    fn sshd_failures(&self, ip: &str, user: &str, count: usize) {
        let stamp = command_text(Command::new("date").arg("+%b %e %H:%M:%S"));
        let mut log = fs::OpenOptions::new()
            .append(true)
            .open(self.path("sshd.log"))
            .unwrap();
        for n in 0..count {
            writeln!(
                log,
                "{} web1 sshd[{}]: Failed password for invalid user {user} from {ip} port {} ssh2",
                stamp.trim(),
                4000 + n,
                50_000 + n
            )
            .unwrap();
        }
    }

    fn dummy_bans(&self, jail: &str) -> Vec<String> {
        fs::read_to_string(self.path(&format!("dummy-{jail}.txt")))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix('+'))
            .map(str::to_string)
            .collect()
    }

    fn wait_for_reports(&self, count: usize) -> bool {
        self.api.wait_until(WAIT, |reqs| {
            reqs.iter().filter(|r| r.path.ends_with("/report")).count() >= count
        })
    }

    fn stop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let _ = self.client(&["stop"]);
        support::wait_exit_or_kill(pid);
    }

    fn restart(&mut self) {
        self.stop();
        let started = self.client(&["start"]);
        assert!(
            started.status.success(),
            "restart failed: {}",
            text(&started)
        );
        self.pid = self.read_pid();
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn command_text(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
}

fn sshd_jail() -> Jail<'static> {
    Jail {
        name: "sshd",
        filter: "sshd",
        action_args: "",
    }
}

#[test]
fn log_failures_ban_and_report_once_with_jail_categories() {
    if !fail2ban_available("log_failures_ban_and_report_once_with_jail_categories") {
        return;
    }
    let f2b = Fail2ban::start("f2b-log", FakeApi::start(), &[sshd_jail()], ":memory:");
    f2b.sshd_failures("45.155.205.233", "admin", 3);
    assert!(
        f2b.wait_for_reports(1),
        "no report; fail2ban log:\n{}",
        fs::read_to_string(f2b.path("f2b.log")).unwrap_or_default()
    );
    let reports = f2b.api.requests();
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report.header("x-key"), Some(KEY));
    assert_eq!(report.field("ip"), "45.155.205.233");
    assert_eq!(report.field("categories"), "18,22");
    assert_eq!(report.field("comment"), "fail2ban sshd: 3 failed attempts");
    assert_eq!(f2b.dummy_bans("sshd"), ["45.155.205.233"]);
    let log = fs::read_to_string(f2b.path("f2b.log")).unwrap();
    assert!(!log.contains(KEY), "key in fail2ban's log");
}

#[test]
fn per_jail_categories_override_the_table() {
    if !fail2ban_available("per_jail_categories_override_the_table") {
        return;
    }
    let jails = [
        sshd_jail(),
        Jail {
            name: "webapp",
            filter: "webapp",
            action_args: ", categories=\"16,21\"",
        },
    ];
    let f2b = Fail2ban::start("f2b-jails", FakeApi::start(), &jails, ":memory:");
    let out = f2b.client(&["set", "webapp", "banip", "45.155.205.10"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = f2b.client(&["set", "sshd", "banip", "45.155.205.11"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(f2b.wait_for_reports(2));
    let mut got: Vec<(String, String, String)> = f2b
        .api
        .requests()
        .iter()
        .map(|r| (r.field("ip"), r.field("categories"), r.field("comment")))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "45.155.205.10".into(),
                "16,21".into(),
                "fail2ban webapp: banned".into()
            ),
            (
                "45.155.205.11".into(),
                "18,22".into(),
                "fail2ban sshd: banned".into()
            ),
        ]
    );
}

#[test]
fn banip_reports_and_actions_are_listed() {
    if !fail2ban_available("banip_reports_and_actions_are_listed") {
        return;
    }
    let f2b = Fail2ban::start("f2b-banip", FakeApi::start(), &[sshd_jail()], ":memory:");
    let actions = text(&f2b.client(&["get", "sshd", "actions"]));
    assert!(actions.contains("reportedip"), "{actions}");
    assert!(actions.contains("dummy"), "{actions}");
    let out = f2b.client(&["set", "sshd", "banip", "2a01:4f8::77"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(f2b.wait_for_reports(1));
    assert_eq!(f2b.api.requests()[0].field("ip"), "2a01:4f8::77");
}

#[test]
fn restored_bans_are_not_reported_again() {
    if !fail2ban_available("restored_bans_are_not_reported_again") {
        return;
    }
    let mut f2b = Fail2ban::start(
        "f2b-restore",
        FakeApi::start(),
        &[sshd_jail()],
        "f2b.sqlite3",
    );
    f2b.sshd_failures("45.155.205.50", "root", 3);
    assert!(f2b.wait_for_reports(1));
    f2b.restart();
    // dummy's actionstop removes its file, so the IP reappears only when the ban is restored.
    // Actions of restored bans run in order: once a later ban is reported, the restored
    // one has had its turn.
    let deadline = Instant::now() + WAIT;
    while f2b.dummy_bans("sshd").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(f2b.dummy_bans("sshd"), ["45.155.205.50"], "ban restored");
    let out = f2b.client(&["set", "sshd", "banip", "45.155.205.51"]);
    assert!(out.status.success());
    assert!(f2b.wait_for_reports(2));
    let ips = f2b.api.fields("ip");
    assert_eq!(
        ips,
        ["45.155.205.50", "45.155.205.51"],
        "restored ban reported again"
    );
}

#[test]
fn blackholed_api_never_holds_up_bans() {
    if !fail2ban_available("blackholed_api_never_holds_up_bans") {
        return;
    }
    let api = FakeApi::start_with(|_, _| Reply::Hang);
    let f2b = Fail2ban::start("f2b-blackhole", api, &[sshd_jail()], ":memory:");
    let ips: Vec<String> = (1..=5).map(|n| format!("45.155.206.{n}")).collect();
    let started = Instant::now();
    for ip in &ips {
        let out = f2b.client(&["set", "sshd", "banip", ip]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let elapsed = started.elapsed();
    let _ = writeln!(
        std::io::stderr(),
        "fail2ban applied 5 bans in {elapsed:?} with the API blackholed"
    );
    assert_eq!(f2b.dummy_bans("sshd"), ips, "every ban applied");
    // The sender's one attempt times out (2 s) and opens the backoff window.
    let last_error = || -> String {
        let Ok(db) = rusqlite::Connection::open(f2b.path("state/state.db")) else {
            return String::new();
        };
        db.query_row("SELECT coalesce(last_error, '') FROM state", [], |row| {
            row.get(0)
        })
        .unwrap_or_default()
    };
    let deadline = Instant::now() + WAIT;
    while !last_error().contains("timeout") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(last_error().contains("timeout"), "{}", last_error());
    assert!(
        f2b.api.connections() <= 1,
        "{} connections",
        f2b.api.connections()
    );
    let db = rusqlite::Connection::open(f2b.path("state/state.db")).unwrap();
    let spooled: u64 = db
        .query_row("SELECT count(*) FROM spool", [], |row| row.get(0))
        .unwrap();
    assert_eq!(spooled, 5, "all five kept for later");
}

#[test]
fn hostile_user_names_never_become_options_or_commands() {
    if !fail2ban_available("hostile_user_names_never_become_options_or_commands") {
        return;
    }
    let f2b = Fail2ban::start("f2b-hostile", FakeApi::start(), &[sshd_jail()], ":memory:");
    let pwned = f2b.path("pwned");
    let users = [
        format!("$(touch {})", pwned.display()),
        format!("`touch {}`", pwned.display()),
        "--strict".to_string(),
        "--dry-run --comment=x".to_string(),
        format!("x\";touch {};\"", pwned.display()),
        "-- 8.8.8.8".to_string(),
    ];
    let ips: Vec<String> = (1..=users.len())
        .map(|n| format!("45.155.207.{n}"))
        .collect();
    for (ip, user) in ips.iter().zip(&users) {
        f2b.sshd_failures(ip, user, 3);
    }
    assert!(
        f2b.wait_for_reports(ips.len()),
        "got {:?}",
        f2b.api.requests().len()
    );
    let mut reported = f2b.api.fields("ip");
    reported.sort();
    assert_eq!(reported, ips);
    for req in f2b.api.requests() {
        assert_eq!(req.field("categories"), "18,22");
        assert_eq!(req.field("comment"), "fail2ban sshd: 3 failed attempts");
    }
    let mut banned = f2b.dummy_bans("sshd");
    banned.sort();
    assert_eq!(banned, ips);
    assert!(!pwned.exists(), "a user name ran as a command");
}
