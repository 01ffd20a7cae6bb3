//! `setup` against a real fail2ban with a private configuration tree (as
//! `shared/fail2ban-testing.md` describes), started by the test, and the loopback fake API.
//!
//! Without /usr/bin/fail2ban-server these tests print SKIPPED and pass, unless
//! `REPORTEDIP_E2E=1` (set by `.ci/run`) makes a missing fail2ban a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{BIN, FakeApi, Reply, Run, TempDir, fail2ban_available, run_with_input};

const CLIENT: &str = "/usr/bin/fail2ban-client";
const KEY: &str = "setup-key-5e2a9c71";

/// A private fail2ban tree: `sshd` and `webapp` enabled (each with the `dummy` action),
/// `recidive` disabled, our action file in `action.d/`, and a config with the packaged
/// placeholder key pointing at the fake API.
struct Tree {
    dir: TempDir,
    api: FakeApi,
    pid: Option<u32>,
}

impl Tree {
    fn new(tag: &str, api: FakeApi) -> Self {
        let dir = TempDir::new(tag);
        let t = dir.path();
        support::fail2ban_tree(t, ":memory:");
        let mut jails = String::from("[DEFAULT]\nbackend = polling\nusedns = no\nbantime = 1h\n");
        for (name, enabled) in [("sshd", true), ("webapp", true), ("recidive", false)] {
            fs::write(t.join(format!("{name}.log")), "").unwrap();
            jails.push_str(&format!(
                "\n[{name}]\nenabled = {enabled}\nfilter = sshd\nlogpath = {t}/{name}.log\n\
                 action = dummy[target=\"{t}/dummy-{name}.txt\"]\n",
                t = t.display()
            ));
        }
        fs::write(t.join("conf/jail.conf"), jails).unwrap();
        let config = format!(
            "# reportedip-report configuration\napi_key = \"PASTE-YOUR-API-KEY-HERE\"\n\n\
             api_url = \"{}\"\nstate_dir = \"{}/state\"\nsyslog = false\n",
            api.url(),
            t.display()
        );
        fs::write(t.join("reportedip.toml"), config).unwrap();
        fs::set_permissions(
            t.join("reportedip.toml"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        Self {
            dir,
            api,
            pid: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn client(&self, args: &[&str]) -> Output {
        Command::new(CLIENT)
            .arg("-c")
            .arg(self.path("conf"))
            .args(args)
            .output()
            .unwrap()
    }

    fn start(&mut self) {
        let started = self.client(&["start"]);
        assert!(started.status.success(), "start: {}", text(&started));
        self.pid = fs::read_to_string(self.path("run/f2b.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse().ok());
    }

    fn actions(&self, jail: &str) -> String {
        let out = self.client(&["get", jail, "actions"]);
        text(&out).lines().last().unwrap_or_default().to_string()
    }

    /// `setup` with `input` on standard input (a pipe, as from `echo KEY |`).
    fn setup(&self, args: &[&str], input: &str) -> Run {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(self.path("reportedip.toml"))
            .arg("setup")
            .arg("--fail2ban-dir")
            .arg(self.path("conf"))
            .args(args)
            .env("REPORTEDIP_RUNTIME_DIR", self.path("run-reportedip"))
            .env("REPORTEDIP_STATE_DIR", self.path("default-state"));
        run_with_input(cmd, input)
    }

    /// Every file of the configuration tree and the config, with its bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut dirs = vec![self.path("conf")];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.insert(path.clone(), fs::read(&path).unwrap());
                }
            }
        }
        let config = self.path("reportedip.toml");
        files.insert(config.clone(), fs::read(&config).unwrap());
        files
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let _ = self.client(&["stop"]);
        support::wait_exit_or_kill(pid);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn one_command_wires_the_jails_keeping_their_actions() {
    if !fail2ban_available("one_command_wires_the_jails_keeping_their_actions") {
        return;
    }
    let mut tree = Tree::new("setup-wire", FakeApi::start());
    tree.start();
    let config_before = fs::read_to_string(tree.path("reportedip.toml")).unwrap();
    // Watch every process's command line while setup runs (fail2ban-client included).
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = std::sync::Arc::clone(&watching);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while watching.load(std::sync::atomic::Ordering::SeqCst) {
                for entry in fs::read_dir("/proc").unwrap().flatten() {
                    let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
                    if String::from_utf8_lossy(&cmdline).contains(KEY) {
                        seen.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
                    }
                }
            }
            seen
        })
    };
    let started = Instant::now();
    let run = tree.setup(&[], &format!("{KEY}\n"));
    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    let seen = watcher.join().unwrap();
    assert!(seen.is_empty(), "the key in a process list: {seen:?}");
    let _ = writeln!(
        std::io::stderr(),
        "setup took {:?}, fail2ban's restart included",
        started.elapsed()
    );
    run.expect_code(0)
        .expect_said("key verified")
        .expect_said("sshd: dummy, reportedip")
        .expect_said("webapp = \"18,21\"");
    assert_eq!(tree.actions("sshd"), "dummy, reportedip");
    assert_eq!(
        tree.actions("webapp"),
        "dummy",
        "a jail without categories is skipped"
    );
    // Only the key line changed.
    let config_after = fs::read_to_string(tree.path("reportedip.toml")).unwrap();
    assert_eq!(
        config_after,
        config_before.replace("PASTE-YOUR-API-KEY-HERE", KEY)
    );
    let mode = fs::metadata(tree.path("reportedip.toml"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    // The key was checked (GET verify-key), never reported with, and is nowhere but the config.
    let requests = tree.api.requests();
    assert!(
        requests.iter().all(|r| r.path.ends_with("/verify-key")),
        "nothing reported"
    );
    assert_eq!(requests[0].header("x-key"), Some(KEY));
    let drop_in = fs::read_to_string(tree.path("conf/jail.d/reportedip.local")).unwrap();
    assert!(drop_in.contains("action = %(known/action)s"), "{drop_in}");
    for (what, content) in [
        ("the drop-in", drop_in.clone()),
        (
            "fail2ban's log",
            fs::read_to_string(tree.path("f2b.log")).unwrap_or_default(),
        ),
        ("setup's output", run.all_output()),
    ] {
        assert!(!content.contains(KEY), "the key is in {what}");
    }
    // A second run changes nothing.
    let before = tree.snapshot();
    let again = tree.setup(&[], "");
    again.expect_code(0).expect_said("nothing changed");
    assert_eq!(tree.snapshot(), before);
    // After another jail gets categories, a run adds just it.
    let with_webapp = format!("{config_after}\n[jail_categories]\nwebapp = \"18,21\"\n");
    fs::write(tree.path("reportedip.toml"), with_webapp).unwrap();
    tree.setup(&["--yes"], "").expect_code(0);
    assert_eq!(tree.actions("sshd"), "dummy, reportedip");
    assert_eq!(tree.actions("webapp"), "dummy, reportedip");
}

#[test]
fn dry_run_and_a_refused_key_change_nothing() {
    if !fail2ban_available("dry_run_and_a_refused_key_change_nothing") {
        return;
    }
    let tree = Tree::new("setup-dry", FakeApi::start());
    let before = tree.snapshot();
    let dry = tree.setup(&["--dry-run"], "");
    dry.expect_code(0)
        .expect_said("would be")
        .expect_said("[sshd]\naction = %(known/action)s");
    assert_eq!(tree.snapshot(), before, "--dry-run changed a file");
    assert_eq!(tree.api.requests().len(), 0, "--dry-run asked the API");
    // A key the API refuses.
    let refusing = Tree::new(
        "setup-refused",
        FakeApi::start_with(|_, _| Reply::wp_error(401, "invalid_key", "Invalid API key")),
    );
    let before = refusing.snapshot();
    refusing
        .setup(&[], &format!("{KEY}\n"))
        .expect_code(4)
        .expect_said("nothing was changed");
    assert_eq!(refusing.snapshot(), before);
    // A key that may not report (daily report limit 0), judged as verify-key judges it.
    let no_reports = Tree::new(
        "setup-noreport",
        FakeApi::start_with(|_, _| {
            Reply::json(
                200,
                r#"{"data":{"valid":true,"keyName":"ro","limits":{"dailyReportLimit":0}}}"#,
            )
        }),
    );
    let before = no_reports.snapshot();
    no_reports
        .setup(&[], &format!("{KEY}\n"))
        .expect_code(4)
        .expect_said("may not report");
    assert_eq!(no_reports.snapshot(), before);
}

#[test]
fn a_broken_tree_or_a_breaking_drop_in_is_refused_with_every_file_unchanged() {
    if !fail2ban_available(
        "a_broken_tree_or_a_breaking_drop_in_is_refused_with_every_file_unchanged",
    ) {
        return;
    }
    // jail.local names a filter that does not exist: fails fail2ban's own test already.
    let tree = Tree::new("setup-broken", FakeApi::start());
    fs::write(
        tree.path("conf/jail.local"),
        "[sshd]\nfilter = no-such-filter\n",
    )
    .unwrap();
    let before = tree.snapshot();
    tree.setup(&[], &format!("{KEY}\n"))
        .expect_code(3)
        .expect_said("fails its own test already");
    assert_eq!(tree.snapshot(), before);
    // A tree without our action file: the drop-in would break it.
    let tree = Tree::new("setup-noaction", FakeApi::start());
    fs::remove_file(tree.path("conf/action.d/reportedip.conf")).unwrap();
    let before = tree.snapshot();
    tree.setup(&[], &format!("{KEY}\n"))
        .expect_code(3)
        .expect_said("nothing was changed");
    assert_eq!(tree.snapshot(), before);
}

#[test]
fn undo_leaves_the_tree_as_it_was_and_a_stopped_fail2ban_stays_stopped() {
    if !fail2ban_available("undo_leaves_the_tree_as_it_was_and_a_stopped_fail2ban_stays_stopped") {
        return;
    }
    // Stopped: wired, said, and not started.
    let tree = Tree::new("setup-stopped", FakeApi::start());
    tree.setup(&[], &format!("{KEY}\n"))
        .expect_code(0)
        .expect_said("not running: left stopped");
    assert!(
        !tree.path("run/f2b.sock").exists(),
        "setup started fail2ban"
    );
    // Running: undo restores the tree byte for byte (the config keeps its new key).
    let mut tree = Tree::new("setup-undo", FakeApi::start());
    tree.start();
    let before = tree.snapshot();
    tree.setup(&["--jails", "sshd"], &format!("{KEY}\n"))
        .expect_code(0);
    assert_eq!(tree.actions("sshd"), "dummy, reportedip");
    tree.setup(&["--undo", "--yes"], "")
        .expect_code(0)
        .expect_said("fail2ban restarted");
    assert_eq!(tree.actions("sshd"), "dummy");
    let mut after = tree.snapshot();
    let config = tree.path("reportedip.toml");
    after.insert(config.clone(), before[&config].clone());
    assert_eq!(after, before);
    // An unknown jail is named.
    tree.setup(&["--jails", "nginx-http-auth"], "")
        .expect_code(2)
        .expect_said("nginx-http-auth is not enabled");
}

#[test]
fn on_a_terminal_the_key_is_prompted_for_and_the_change_confirmed() {
    if !fail2ban_available("on_a_terminal_the_key_is_prompted_for_and_the_change_confirmed") {
        return;
    }
    use std::io::Read;
    let tree = Tree::new("setup-tty", FakeApi::start());
    // script(1) gives setup a terminal; what it shows comes back on script's stdout.
    let command = format!(
        "{BIN} --config {} setup --fail2ban-dir {}",
        tree.path("reportedip.toml").display(),
        tree.path("conf").display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("REPORTEDIP_RUNTIME_DIR", tree.path("run-reportedip"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let mut shown = String::new();
    let wait_for = |text: &str, shown: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !shown.contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => shown.push_str(&chunk),
                Err(_) => panic!("never showed {text:?}:\n{shown}"),
            }
        }
    };
    // Typed once the prompt is there, as a person would. (Whether the terminal echoes it is
    // rpassword's part, and not asserted here: a key typed the instant the prompt appears may
    // arrive before echo is off, and telling that apart would take a sleep.)
    wait_for("API key", &mut shown);
    stdin.write_all(format!("{KEY}\n").as_bytes()).unwrap();
    wait_for("[y/N]", &mut shown);
    stdin.write_all(b"y\n").unwrap();
    wait_for("wrote", &mut shown);
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{shown}");
    let config = fs::read_to_string(tree.path("reportedip.toml")).unwrap();
    assert!(config.contains(&format!("api_key = \"{KEY}\"")), "{config}");
}
