//! Hostile and broken surroundings: a leaked key, an untrusted state_dir, planted spool
//! entries, held and swapped locks, interrupted writes. A second, hostile user is played by
//! chowning to `nobody`, which needs root: those tests say SKIPPED when not root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use support::{KEY, Reply, TestEnv, epoch_now, run_command};

const IP: &str = "45.155.205.233";
const NOBODY: u32 = 65_534;

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIPPED {test}: needs root to play another user");
    true
}

fn chown(path: &std::path::Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

/// `report --queue --strict` of the test address.
fn queue_strict(env: &TestEnv) -> support::Run {
    env.run(&[
        "report",
        "--queue",
        "--strict",
        "--categories",
        "18",
        "--",
        IP,
    ])
}

/// The config with `state_dir` replaced.
fn with_state_dir(env: &TestEnv, dir: &std::path::Path) {
    let text = fs::read_to_string(env.config_path()).unwrap().replace(
        &env.state_dir().display().to_string(),
        &dir.display().to_string(),
    );
    env.write_raw_config(&text, 0o600);
}

#[test]
fn a_key_misplaced_in_the_shipped_config_is_never_shown() {
    let env = TestEnv::new("misplaced-key");
    let shipped = include_str!("../dist/reportedip.toml")
        .replace("# [jail_categories]", "[jail_categories]")
        .replace("api_key = \"PASTE-YOUR-API-KEY-HERE\"", "");
    env.write_raw_config(
        &format!(
            "api_url = \"{}\"\nsyslog = false\n{shipped}\napi_key = \"{KEY}\"\n",
            env.api.url()
        ),
        0o600,
    );
    for args in [
        &["report", "--strict", "--jail", "sshd", "--", IP][..],
        &["verify-key"],
        &["status"],
        &["flush"],
    ] {
        let run = env.run(args);
        assert_eq!(run.code, 5, "{args:?}: {}", run.stderr);
        assert!(
            !run.all_output().contains(KEY),
            "{args:?} showed the key: {}",
            run.all_output()
        );
        assert!(
            run.stderr.contains("api_key is inside [jail_categories]"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert!(env.api.requests().is_empty());
}

/// A state_dir refused as untrusted: the report still goes out directly, the message names
/// the path and the fix, and nothing is written there.
fn assert_state_dir_refused(env: &TestEnv, dir: &std::path::Path, why: &str) {
    with_state_dir(env, dir);
    let run = queue_strict(env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("is not safe to use"), "{}", run.stderr);
    assert!(run.stderr.contains(why), "wanted {why:?} in {}", run.stderr);
    assert!(
        run.stderr.contains("chmod 700"),
        "says the fix: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("reported 45.155.205.233"),
        "{}",
        run.stderr
    );
    assert!(
        dir.join("spool")
            .read_dir()
            .map_or(true, |mut entries| entries.next().is_none()),
        "a report was written into the refused state_dir"
    );
}

#[test]
fn a_world_writable_state_dir_is_refused() {
    let env = TestEnv::new("state-0777");
    let dir = env.dir.path().join("shared");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    assert_state_dir_refused(&env, &dir.join("state"), "writable by other users");
    assert!(
        !dir.join("state").exists(),
        "created in a world-writable directory"
    );
}

#[test]
fn a_symlinked_state_dir_is_refused() {
    let env = TestEnv::new("state-link");
    let real = env.dir.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = env.dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert_state_dir_refused(&env, &link, "is a symbolic link");
    assert!(
        fs::read_dir(&real).unwrap().next().is_none(),
        "nothing written through it"
    );
}

#[test]
fn a_state_dir_pre_created_by_another_user_is_refused() {
    if skip_unless_root("a_state_dir_pre_created_by_another_user_is_refused") {
        return;
    }
    let env = TestEnv::new("state-foreign");
    let dir = env.dir.path().join("planted");
    fs::create_dir_all(dir.join("spool")).unwrap();
    chown(&dir, NOBODY);
    assert_state_dir_refused(&env, &dir, "owned by uid 65534");
}

#[test]
fn planted_links_in_state_dir_are_never_followed() {
    for planted in ["state.db", "state.db-wal", "state.db-shm"] {
        let env = TestEnv::new("state-planted");
        if planted != "state.db" {
            env.db();
            fs::remove_file(env.state_dir().join(planted)).ok();
        } else {
            fs::create_dir_all(env.state_dir()).unwrap();
        }
        let target = env.dir.path().join("victim");
        std::os::unix::fs::symlink(&target, env.state_dir().join(planted)).unwrap();
        let run = queue_strict(&env);
        assert_eq!(run.code, 0, "{planted}: {}", run.stderr);
        assert!(
            run.stderr.contains("symbolic link"),
            "{planted}: {}",
            run.stderr
        );
        assert!(
            !target.exists(),
            "{planted}: root created a file through a planted link"
        );
        assert_eq!(
            env.api.accepted_reports().len(),
            1,
            "{planted}: sent directly instead"
        );
    }
}

#[test]
fn a_queued_report_lands_while_another_process_holds_the_state_lock() {
    let env = TestEnv::new("held-lock");
    env.set_backoff_until(epoch_now() + 3600);
    // A writer that hangs with the store held, as a stopped process would.
    let holder = env.db();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let run = queue_strict(&env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(8), "{:?}", run.elapsed);
    assert!(
        run.stderr.contains("queued in the inbox")
            && run.stderr.contains("held by another process"),
        "{}",
        run.stderr
    );
    // status reads while the writer still holds the store.
    let status = env.status();
    assert_eq!(status["inbox"], 1, "{status}");
    assert_eq!(status["waiting"], 1, "{status}");
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(env.spooled(), 1, "the report was lost");
    // The next writer imports it and it is delivered once.
    env.end_backoff();
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}", flush.stdout);
    assert_eq!(env.api.accepted_reports().len(), 1, "{}", flush.stdout);
    assert_eq!(env.spooled(), 0);
    assert_eq!(env.state()["inbox_imported"], 1);
}

/// A planted spool entry must neither hang, flood nor loop the sender, and the good
/// report behind it is delivered.
fn assert_entry_handled(tag: &str, plant: impl Fn(&std::path::Path)) {
    let env = TestEnv::new(tag);
    env.run(&["status"]);
    fs::create_dir_all(env.spool_dir()).unwrap();
    let now_ns = u128::from(epoch_now()) * 1_000_000_000;
    plant(&env.spool_dir().join(format!("{now_ns:020}-1-0.json")));
    env.set_backoff_until(epoch_now() + 3600);
    env.queue(IP);
    env.end_backoff();
    let started = Instant::now();
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{tag}: {}{}", flush.stdout, flush.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{tag}: {:?}",
        started.elapsed()
    );
    assert_eq!(env.api.accepted_reports().len(), 1, "{tag}");
    let status = env.status();
    assert_eq!(status["waiting"], 0, "{tag}: {status}");
    assert_eq!(status["set_aside"], 1, "{tag}: {status}");
}

#[test]
fn a_fifo_in_the_spool_does_not_hang_the_sender() {
    assert_entry_handled("spool-fifo", |path| {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    });
}

#[test]
fn a_link_to_dev_zero_in_the_spool_is_not_read() {
    assert_entry_handled("spool-zero", |path| {
        std::os::unix::fs::symlink("/dev/zero", path).unwrap();
    });
}

#[test]
fn an_entry_that_cannot_be_set_aside_is_not_retried_in_a_loop() {
    let env = TestEnv::new("spool-stuck");
    env.run(&["status"]);
    fs::create_dir_all(env.spool_dir()).unwrap();
    // set-aside is a file, so nothing can be moved there; the entry is a directory.
    fs::write(env.state_dir().join("set-aside"), b"").unwrap();
    let entry = env.spool_dir().join("00000000000000000001-1-0.json");
    fs::create_dir(&entry).unwrap();
    env.set_backoff_until(epoch_now() + 3600);
    env.queue(IP);
    env.end_backoff();
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}{}", flush.stdout, flush.stderr);
    assert!(
        flush.elapsed < Duration::from_secs(5),
        "{:?}",
        flush.elapsed
    );
    assert_eq!(env.api.accepted_reports().len(), 1);
    assert!(!entry.exists(), "the unmovable entry was removed instead");
}

#[test]
fn a_deleted_sender_lock_does_not_let_a_second_sender_run() {
    // The fake hangs for the whole 2 s timeout of the test config.
    let env = TestEnv::answering("sender-lock", Reply::Hang);
    env.set_backoff_until(epoch_now() + 3600);
    env.queue(IP);
    env.queue("45.155.205.234");
    env.end_backoff();
    // The first sender hangs on the API while holding the sender lock.
    let first = std::thread::spawn({
        let cmd = env.command(&["send-spool"]);
        move || run_command(cmd)
    });
    assert!(
        env.api
            .wait_until(Duration::from_secs(10), |reqs| !reqs.is_empty())
    );
    // A careless administrator deletes what looks like a stale lock file.
    let _ = fs::remove_file(env.state_dir().join("sender.lock"));
    let second = env.run(&["send-spool"]);
    assert_eq!(second.code, 0);
    assert_eq!(
        env.api.requests().len(),
        1,
        "a second sender ran while the first held its lock"
    );
    drop(first);
}

#[test]
fn temp_files_of_killed_writers_are_removed_and_counted() {
    let env = TestEnv::new("stale-temp");
    env.run(&["status"]);
    fs::create_dir_all(env.spool_dir()).unwrap();
    let stale = env
        .spool_dir()
        .join(".00000000000000000001-9-0.json.9-0.tmp");
    fs::write(&stale, b"{\"ip\":").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fresh = env
        .spool_dir()
        .join(".00000000000000000002-9-0.json.9-1.tmp");
    fs::write(&fresh, b"{").unwrap();
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}", flush.stdout);
    assert!(!stale.exists(), "stale temp file left");
    assert!(fresh.exists(), "a write in progress was removed");
    assert_eq!(env.status()["stale_temps_removed"], 1);
    assert!(
        env.run(&["status"])
            .stdout
            .contains("temp files:   1 left by interrupted writes")
    );
}

#[test]
fn a_queued_report_killed_mid_write_leaves_at_most_a_temp_file() {
    // kill -9 of `report --queue` at a random point: the spool holds whole reports or
    // temp files, never a half report under a report name.
    let env = TestEnv::new("kill-queue");
    env.set_backoff_until(epoch_now() + 3600);
    for n in 0..20 {
        let mut cmd = env.command(&["report", "--queue", "--categories", "18", "--", IP]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(300 * n));
        let _ = child.kill();
        let _ = child.wait();
    }
    // The store holds whole transactions only; the inbox (if a kill found it in use) holds
    // whole reports or temp files.
    let check: String = env
        .db()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert!(env.spooled() <= 1, "one IP, one report: {}", env.spooled());
    for entry in fs::read_dir(env.spool_dir()).into_iter().flatten() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".json") && !name.starts_with('.') {
            let text = fs::read_to_string(entry.path()).unwrap();
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("half a report in {name}: {e}"));
        }
    }
    assert_eq!(env.run(&["status"]).code, 0);
}

/// A fake that fails on one address and takes every other.
fn poisoned_api(poison: &'static str) -> support::FakeApi {
    support::FakeApi::start_with(move |req, index| {
        if req.field("ip") == poison {
            Reply::json(500, r#"{"code":"internal","message":"oops"}"#)
        } else {
            support::fake_api::documented_api(req, index)
        }
    })
}

fn queue_during_backoff(env: &TestEnv, ips: &[&str]) {
    env.set_backoff_until(epoch_now() + 3600);
    for ip in ips {
        let run = env.queue(ip);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    env.end_backoff();
}

#[test]
fn one_poisoned_report_does_not_block_the_others() {
    let env = TestEnv::with_api("poison", poisoned_api("45.155.205.1"));
    let good = [
        "45.155.205.2",
        "45.155.205.3",
        "45.155.205.4",
        "45.155.205.5",
    ];
    let mut ips = vec!["45.155.205.1"];
    ips.extend(good);
    queue_during_backoff(&env, &ips);
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}{}", flush.stdout, flush.stderr);
    assert_eq!(
        env.api.accepted_reports().len(),
        4,
        "the others went through"
    );
    let status = env.status();
    assert_eq!(status["suspects"], 1, "{status}");
    assert_eq!(status["waiting"], 1, "{status}");
    assert_eq!(
        status["backoff"]["active"], false,
        "not an outage: {status}"
    );
    // Its next try is its own: a background sender passes it over until then.
    let before = env.api.requests().len();
    assert_eq!(env.run(&["send-spool"]).code, 0);
    assert_eq!(env.api.requests().len(), before);
}

#[test]
fn a_report_that_keeps_failing_alone_is_set_aside_after_an_hour() {
    let env = TestEnv::with_api("poison-aside", poisoned_api("45.155.205.1"));
    queue_during_backoff(&env, &["45.155.205.1", "45.155.205.2"]);
    env.run(&["flush"]);
    assert_eq!(env.status()["suspects"], 1);
    // Four attempts already made, the first two hours ago; the next try is due.
    env.sql(&format!(
        "UPDATE spool SET suspect_attempts = 4, first_failed = {}, next_try = 0 \
         WHERE ip = '45.155.205.1'",
        epoch_now() - 7200
    ));
    queue_during_backoff(&env, &["45.155.205.3"]);
    let flush = env.run(&["flush"]);
    assert!(flush.stdout.contains("1 set aside"), "{}", flush.stdout);
    let status = env.status();
    assert_eq!(status["set_aside"], 1, "{status}");
    assert_eq!(status["suspects"], 0, "{status}");
    assert_eq!(status["waiting"], 0, "{status}");
    assert_eq!(
        env.sql_count("SELECT count(*) FROM set_aside WHERE ip = '45.155.205.1'"),
        1,
        "kept for the operator"
    );
}

#[test]
fn a_signal_during_a_direct_report_keeps_it() {
    let signals = [
        ("TERM", true, 1),
        ("HUP", false, 0),
        ("INT", false, 0),
        ("USR1", false, 0),
        ("ALRM", false, 0),
    ];
    for (signal, strict, code) in signals {
        let env = TestEnv::answering("signal", Reply::Hang);
        let text = fs::read_to_string(env.config_path())
            .unwrap()
            .replace("timeout = 2", "timeout = 20");
        env.write_raw_config(&text, 0o600);
        let mut args = vec!["report", "--categories", "18"];
        if strict {
            args.push("--strict");
        }
        args.extend(["--", IP]);
        let mut cmd = env.command(&args);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap();
        assert!(
            env.api
                .wait_until(Duration::from_secs(10), |reqs| !reqs.is_empty())
        );
        let sent_at = Instant::now();
        let killed = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            sent_at.elapsed() < Duration::from_secs(5),
            "{signal}: not prompt"
        );
        assert_eq!(output.status.code(), Some(code), "{signal}: {stderr}");
        assert!(
            stderr.contains(&format!("queued: interrupted by SIG{signal}")),
            "{signal}: {stderr}"
        );
        assert_eq!(env.spooled(), 1, "{signal}: the report was lost");
        let status = env.status();
        assert_eq!(status["backoff"]["active"], false, "{signal}: {status}");
        assert_eq!(
            status["cooldown_entries"], 1,
            "{signal}: spooled, so cooling"
        );
    }
}

#[test]
fn a_report_killed_in_flight_leaves_no_cooldown_behind() {
    // kill -9 cannot be caught: the report in flight is lost, but it must not also block
    // the next report of that IP for a day.
    let env = TestEnv::answering("killed-cooldown", Reply::Hang);
    let mut cmd = env.command(&["report", "--categories", "18", "--", IP]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    assert!(
        env.api
            .wait_until(Duration::from_secs(10), |reqs| !reqs.is_empty())
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let state = env.state();
    assert!(
        state["cooldown"].as_object().is_none_or(|c| c.is_empty()),
        "a lost report blocks the next one: {state}"
    );
}

/// The state row as a run would leave it when the wall clock read `wall`.
fn set_clock_mark(env: &TestEnv, wall: u64) {
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let uptime = fs::read_to_string("/proc/uptime").unwrap();
    let uptime: u64 = uptime.split('.').next().unwrap().parse().unwrap();
    env.sql(&format!(
        "UPDATE state SET clock_boot_id = '{}', clock_uptime = {uptime}, clock_wall = {wall}",
        boot_id.trim()
    ));
}

#[test]
fn reports_queued_while_the_clock_was_days_behind_are_not_dropped_as_old() {
    let env = TestEnv::new("clock-behind");
    let now = epoch_now();
    let then = now - 5 * 86_400;
    // The last run saw the clock 5 days behind; since then it was set right.
    set_clock_mark(&env, then);
    env.sql(&format!(
        "INSERT INTO spool (ip, categories, comment, queued_at) VALUES ('{IP}', '18', 'c', {then})"
    ));
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}", flush.stdout);
    assert_eq!(env.api.accepted_reports().len(), 1, "{}", flush.stdout);
    assert_eq!(env.status()["dropped"], 0);
    // Applied once: the next run finds the clock where it left it.
    assert!(!env.run(&["flush"]).stderr.contains("was set"));
}

#[test]
fn a_backoff_stamped_while_the_clock_was_ahead_is_clamped_once() {
    let env = TestEnv::new("clock-ahead");
    let now = epoch_now();
    env.sql(&format!(
        "UPDATE state SET backoff_until = {}, backoff_reason = 'HTTP 503'",
        now + 30 * 86_400
    ));
    let run = env.queue(IP);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr.matches("clamped").count(), 1, "{}", run.stderr);
    let until = env.status()["backoff"]["until_epoch"].as_u64().unwrap();
    assert!(until <= epoch_now() + 3600, "{until} vs {now}");
    let again = env.queue("45.155.205.234");
    assert!(
        !again.stderr.contains("clamped"),
        "logged once: {}",
        again.stderr
    );
}

#[test]
fn a_cooldown_stamped_while_the_clock_was_ahead_is_clamped() {
    let env = TestEnv::new("clock-cooldown");
    let now = epoch_now();
    // A whole-IP entry (category 0, as 0.1 kept them), as a clock 30 days ahead left it.
    env.sql(&format!(
        "INSERT INTO cooldown (ip, category, at) VALUES ('{IP}', 0, {})",
        now + 30 * 86_400
    ));
    let run = env.run(&["report", "--categories", "18", "--", IP]);
    assert!(run.stderr.contains("clamped"), "{}", run.stderr);
    let stamp = env.state()["cooldown"][IP]["0"].as_u64().unwrap();
    assert!(stamp <= epoch_now(), "still {stamp}");
}

/// A small tmpfs mounted for one test, unmounted (lazily, so nothing holds it) on drop.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(at: &std::path::Path, size: &str) -> Option<Self> {
        fs::create_dir_all(at).unwrap();
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .ok()?
            .success();
        mounted.then(|| Self(at.to_path_buf()))
    }

    fn remount_read_only(&self) {
        let status = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Fills the file system to the last block.
    fn fill(&self) {
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=4096"])
            .arg(format!("of={}", self.0.join("filler").display()))
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// With the API blackholed and `state_dir` broken by `break_it`: the first ban waits for the
/// timeout, every later one returns at once, each run says in at most one warning what is
/// wrong and plainly that the report is lost.
fn assert_bounded_without_state(tag: &str, break_it: impl Fn(&Mount)) {
    if skip_unless_root(tag) {
        return;
    }
    let env = TestEnv::answering(tag, Reply::Hang);
    let Some(mount) = Mount::tmpfs(&env.dir.path().join("var"), "256k") else {
        eprintln!("SKIPPED {tag}: cannot mount a tmpfs here");
        return;
    };
    let state_dir = mount.0.join("state");
    with_state_dir(&env, &state_dir);
    assert_eq!(env.run(&["status"]).code, 0);
    env.run(&["report", "--dry-run", "--categories", "18", "--", IP]);
    fs::create_dir_all(state_dir.join("spool")).unwrap();
    fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o700)).unwrap();
    break_it(&mount);
    let first = env.queue("45.155.205.1");
    assert_eq!(first.code, 0, "{}", first.stderr);
    for n in 2..=6 {
        let run = env.queue(&format!("45.155.205.{n}"));
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.elapsed < Duration::from_secs(1),
            "{tag}: ban {n} took {:?}",
            run.elapsed
        );
        assert!(
            run.stderr.matches("warning:").count() <= 1,
            "{tag}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("not delivered, and lost"),
            "{tag}: {}",
            run.stderr
        );
        if tag == "read-only" {
            assert!(
                run.stderr.contains("ReadWritePaths="),
                "says how to allow it under the flush service: {}",
                run.stderr
            );
        }
    }
    assert_eq!(
        env.api.requests().len(),
        1,
        "{tag}: only the first ban tried the API"
    );
}

#[test]
fn a_full_state_dir_with_the_api_down_never_stalls_bans() {
    assert_bounded_without_state("full-disk", Mount::fill);
}

#[test]
fn a_read_only_state_dir_with_the_api_down_never_stalls_bans() {
    assert_bounded_without_state("read-only", Mount::remount_read_only);
}

#[test]
fn a_fifo_as_the_config_file_does_not_hang_the_ban() {
    let env = TestEnv::new("config-fifo");
    fs::remove_file(env.config_path()).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(env.config_path())
        .status()
        .unwrap();
    assert!(made.success());
    fs::set_permissions(env.config_path(), fs::Permissions::from_mode(0o600)).unwrap();
    let run = env.run(&["report", "--strict", "--categories", "18", "--", IP]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}

#[test]
fn a_huge_or_misplaced_state_file_is_bounded_and_said() {
    // (file, a huge sparse file or a directory, what the warning names)
    let cases = [
        ("state.db", true, "damaged"),
        ("state.db", false, "not a regular file"),
        ("state.json", true, "larger than"),
        ("state.json", false, "not a regular file"),
    ];
    for (name, huge, said) in cases {
        let tag = format!("{name}-{}", if huge { "huge" } else { "dir" });
        let env = TestEnv::new(&tag);
        fs::create_dir_all(env.state_dir()).unwrap();
        let file = env.state_dir().join(name);
        if huge {
            let f = fs::File::create(&file).unwrap();
            f.set_len(300 * 1024 * 1024).unwrap();
        } else {
            fs::create_dir(&file).unwrap();
        }
        let run = env.run(&["report", "--categories", "18", "--", IP]);
        assert_eq!(run.code, 0, "{tag}: {}", run.stderr);
        assert!(
            run.elapsed < Duration::from_secs(2),
            "{tag}: {:?}",
            run.elapsed
        );
        assert!(
            run.stderr.contains(name) && run.stderr.contains(said),
            "{tag}: said: {}",
            run.stderr
        );
        assert_eq!(env.api.accepted_reports().len(), 1, "{tag}");
    }
}

#[test]
fn killing_the_sender_mid_burst_duplicates_at_most_one_report_per_kill() {
    // Each answer takes 100 ms, so a kill lands while a report is in flight.
    let api = support::FakeApi::start_with(|req, index| {
        std::thread::sleep(Duration::from_millis(100));
        support::fake_api::documented_api(req, index)
    });
    let env = TestEnv::with_api("kill-sender", api);
    env.set_backoff_until(epoch_now() + 3600);
    let ips: Vec<String> = (1..=12).map(|n| format!("45.155.205.{n}")).collect();
    for ip in &ips {
        assert_eq!(env.queue(ip).code, 0);
    }
    env.end_backoff();
    let kills = 3;
    for round in 1..=kills {
        let mut cmd = env.command(&["send-spool"]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut sender = cmd.spawn().unwrap();
        let seen = env.api.request_count();
        assert!(
            env.api
                .wait_until(Duration::from_secs(10), |reqs| reqs.len() > seen + 1),
            "round {round}: the sender sent nothing"
        );
        sender.kill().unwrap();
        sender.wait().unwrap();
    }
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}", flush.stdout);
    let mut per_ip = std::collections::HashMap::new();
    for req in env.api.accepted_reports() {
        *per_ip.entry(req.field("ip")).or_insert(0) += 1;
    }
    assert_eq!(per_ip.len(), ips.len(), "every report arrived");
    let duplicates: usize = per_ip.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= kills,
        "{duplicates} duplicates for {kills} kills"
    );
}
