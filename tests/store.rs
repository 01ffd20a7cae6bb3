//! The state store: the upgrade from 0.1's files, a damaged database, and what `status`
//! says when it cannot read the state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use support::{FakeApi, Reply, TestEnv, epoch_now};

/// A 0.1 state directory: `state.json` with a backoff, counters, a quota and cooldown
/// entries in both of 0.1's forms, a suspect, and three spool files (one of them the
/// suspect, one damaged).
fn plant_v01(env: &TestEnv, backoff_until: u64) {
    let state_dir = env.state_dir();
    let spool = state_dir.join("spool");
    fs::create_dir_all(&spool).unwrap();
    fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let now = epoch_now();
    let names: Vec<String> = (1..=3)
        .map(|n| {
            format!(
                "{:020}-1-{n}.json",
                u128::from(now - 600 + n) * 1_000_000_000
            )
        })
        .collect();
    for (n, name) in names.iter().enumerate().take(2) {
        fs::write(
            spool.join(name),
            format!(
                r#"{{"ip":"45.155.205.{}","categories":"18,22","comment":"fail2ban sshd: 5 failed attempts","jail":"sshd","queued_at":{}}}"#,
                n + 1,
                now - 600
            ),
        )
        .unwrap();
    }
    fs::write(spool.join(&names[2]), b"{\"ip\":\"45.1").unwrap();
    let state = serde_json::json!({
        "backoff_until": backoff_until,
        "backoff_secs": 120,
        "backoff_granted": 120,
        "backoff_reason": "HTTP 503",
        "sent": 12345,
        "rejected": 7,
        "dropped": 3,
        "set_aside": 1,
        "waiting": 3,
        "quota": {"limit": 50, "remaining": 20, "reset": now + 3600},
        "cooldown": {
            "45.155.205.1": {"18": now - 600, "22": now - 600},
            "45.155.205.2": {"18": now - 600, "22": now - 600},
            "45.155.205.9": now - 300,
        },
        "suspects": {
            names[1].clone(): {"attempts": 2, "first_failed": now - 900, "next_try": 0}
        },
        // The clock was set 500 s ahead while the reports waited; 0.1's sender had not yet
        // moved their queue times.
        "spool_shift": 500,
    });
    fs::write(state_dir.join("state.json"), state.to_string()).unwrap();
}

#[test]
fn a_v01_state_is_imported_once_with_nothing_lost_or_sent_twice() {
    let env = TestEnv::new("upgrade");
    plant_v01(&env, epoch_now() + 3600);
    // The package's postinst.
    let upgrade = env.run(&["upgrade-state"]);
    assert_eq!(upgrade.code, 0, "{}", upgrade.all_output());
    assert!(
        upgrade.stdout.contains("imported 0.1 state") && upgrade.stdout.contains("2 waiting"),
        "{}",
        upgrade.stdout
    );
    assert!(
        upgrade.stdout.contains("unreadable report file"),
        "{}",
        upgrade.stdout
    );
    let dir = env.state_dir();
    assert!(
        dir.join("state.json.v0.1-imported").is_file(),
        "moved aside, not deleted"
    );
    assert!(
        dir.join("spool.v0.1-imported").is_dir(),
        "moved aside, not deleted"
    );
    assert!(!dir.join("state.json").exists() && !dir.join("spool").exists());
    let status = env.status();
    assert_eq!(status["waiting"], 2, "{status}");
    assert_eq!(status["sent"], 12345, "{status}");
    assert_eq!(status["rejected"], 7, "{status}");
    assert_eq!(status["dropped"], 3, "{status}");
    assert_eq!(status["set_aside_total"], 2, "{status}");
    assert_eq!(status["suspects"], 1, "{status}");
    assert_eq!(status["backoff"]["active"], true, "{status}");
    assert_eq!(status["backoff"]["reason"], "HTTP 503", "{status}");
    assert_eq!(status["quota"]["remaining"], 20, "{status}");
    assert_eq!(status["cooldown_entries"], 3, "{status}");
    // Queued 600 s ago by the old clock, 100 s ago by the new one.
    let age = status["oldest_age_secs"].as_u64().unwrap();
    assert!((100..200).contains(&age), "{status}");
    // Running it again (a second upgrade, any later run) imports nothing more.
    let again = env.run(&["upgrade-state"]);
    assert_eq!(again.code, 0);
    assert!(again.stdout.is_empty(), "{}", again.stdout);
    // The cooldown came along: a repeat ban of an imported IP is not queued again.
    let repeat = env.run(&["report", "--queue", "--jail", "sshd", "--", "45.155.205.9"]);
    assert!(
        repeat.stderr.contains("already reported"),
        "{}",
        repeat.stderr
    );
    // Once the backoff ends, each waiting report is sent exactly once.
    env.end_backoff();
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}", flush.stdout);
    let mut sent = env.api.fields("ip");
    sent.sort();
    assert_eq!(sent, ["45.155.205.1", "45.155.205.2"]);
    assert_eq!(env.status()["waiting"], 0);
}

#[test]
fn a_run_that_finds_v01_files_imports_them_itself() {
    let env = TestEnv::new("upgrade-by-run");
    plant_v01(&env, 0);
    // A ban arrives before any postinst ran: the files are imported first, then it is
    // queued, and the sender delivers all three.
    let run = env.run(&["report", "--queue", "--jail", "sshd", "--", "45.155.205.50"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("imported 0.1 state"), "{}", run.stderr);
    let status = env.wait_delivered();
    assert_eq!(status["sent"], 12345 + 3, "{status}");
    let mut sent = env.api.fields("ip");
    sent.sort();
    assert_eq!(sent, ["45.155.205.1", "45.155.205.2", "45.155.205.50"]);
}

#[test]
fn a_damaged_database_is_moved_aside_named_and_counted() {
    let env = TestEnv::new("damaged");
    assert_eq!(env.queue("45.155.205.1").code, 0);
    env.wait_delivered();
    let db = env.state_dir().join("state.db");
    // Not a database any more (a disk error, a stray write), its log checkpointed away.
    fs::write(&db, vec![0x5a; 64 * 1024]).unwrap();
    for log in ["state.db-wal", "state.db-shm"] {
        fs::remove_file(env.state_dir().join(log)).unwrap();
    }
    let run = env.run(&["report", "--categories", "18", "--", "45.155.205.2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("was damaged") && run.stderr.contains("started afresh"),
        "{}",
        run.stderr
    );
    assert_eq!(
        env.api.accepted_reports().len(),
        2,
        "the ban was still reported"
    );
    let moved: Vec<String> = fs::read_dir(env.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("state.db.damaged-"))
        .collect();
    assert_eq!(moved.len(), 1, "kept for inspection: {moved:?}");
    assert_eq!(env.state()["corrupt_moved_aside"], 1);
    // The fresh store works: the next ban is no crash loop.
    let next = env.run(&["report", "--categories", "18", "--", "45.155.205.3"]);
    assert!(!next.stderr.contains("damaged"), "{}", next.stderr);
    assert_eq!(env.api.accepted_reports().len(), 3);
}

#[test]
fn status_says_when_it_cannot_read_the_state() {
    // A FIFO where the database should be: nothing may hang, and nothing reads as zero.
    let env = TestEnv::with_api("status-fifo", FakeApi::start());
    fs::create_dir_all(env.state_dir()).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(env.state_dir().join("state.db"))
        .status()
        .unwrap();
    assert!(made.success());
    let text = env.run(&["status"]);
    assert_eq!(text.code, 7, "{}", text.all_output());
    assert!(
        text.stderr.contains("cannot read the state"),
        "{}",
        text.stderr
    );
    let json = env.run(&["status", "--json"]);
    assert_eq!(json.code, 7, "{}", json.all_output());
    assert_eq!(json.json()["exit_code"], 7);
    let metrics = env.run(&["status", "--prometheus"]);
    assert_eq!(metrics.code, 0, "{}", metrics.all_output());
    assert!(
        metrics.stdout.contains("reportedip_state_readable 0"),
        "{}",
        metrics.stdout
    );
    // A readable state says so.
    let ok = TestEnv::answering("readable", Reply::json(200, r#"{"data":{"reportId":1}}"#));
    ok.run(&["report", "--categories", "18", "--", "45.155.205.1"]);
    let metrics = ok.run(&["status", "--prometheus"]);
    assert!(
        metrics.stdout.contains("reportedip_state_readable 1"),
        "{}",
        metrics.stdout
    );
}

#[test]
fn the_write_ahead_log_stays_short_over_many_bans() {
    let env = TestEnv::new("wal-bounded");
    env.set_backoff_until(epoch_now() + 3600);
    let mut largest = 0;
    for n in 0..80 {
        env.queue(&format!("45.155.{}.{}", n / 200, n % 200 + 1))
            .expect_code(0);
        let wal = fs::metadata(env.state_dir().join("state.db-wal")).map_or(0, |m| m.len());
        largest = largest.max(wal);
    }
    // Each new process reads the whole log: it is folded into the database once it passes
    // 128 KiB, so it never holds more than that and one ban's pages.
    assert!(largest < 192 * 1024, "the log grew to {largest} bytes");
    assert_eq!(env.spooled(), 80, "nothing lost to the folding");
}
