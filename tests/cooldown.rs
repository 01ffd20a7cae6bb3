//! The cooldown: the same IP with the same categories is reported once per window; new
//! categories go through; 0.1's whole-IP entries are kept until they expire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{TestEnv, epoch_now};

const IP: &str = "45.155.205.233";

fn ip(n: usize) -> String {
    format!("45.155.{}.{}", n / 250, n % 250 + 1)
}

fn run(env: &TestEnv, args: &[&str]) -> support::Run {
    let run = env.run(args);
    run.expect_code(0);
    run
}

#[test]
fn cooldown_skips_a_repeat_report() {
    let env = TestEnv::new("cooldown");
    let first = env.run(&["report", "--categories", "18", "--", &ip(1)]);
    assert!(first.stderr.contains("reported"));
    let again = env.run(&[
        "report",
        "--queue",
        "--categories",
        "18",
        "--strict",
        "--",
        &ip(1),
    ]);
    assert_eq!(again.code, 0);
    assert!(
        again.stderr.contains("already reported"),
        "{}",
        again.stderr
    );
    assert_eq!(env.api.requests().len(), 1);
    let status = env.run(&["status", "--json"]).json();
    assert_eq!(status["cooldown_entries"], 1);

    env.write_config("cooldown = 0");
    env.run(&["report", "--categories", "18", "--", &ip(1)]);
    assert_eq!(env.api.requests().len(), 2, "cooldown = 0 turns it off");
}

#[test]
fn the_same_ip_is_reported_again_only_for_new_categories_within_24_hours() {
    let env = TestEnv::new("cooldown-cats");
    run(&env, &["report", "--jail", "sshd", "--", IP]);
    let again = run(&env, &["report", "--jail", "sshd", "--", IP]);
    assert!(
        again
            .stderr
            .contains("skipped 45.155.205.233 (18,22): already reported"),
        "{}",
        again.stderr
    );
    assert!(
        again.stderr.contains("(cooldown 24 h)"),
        "the default is a day: {}",
        again.stderr
    );
    // recidive adds category 15: worth a report of its own.
    run(&env, &["report", "--jail", "recidive", "--", IP]);
    let sent = env.api.fields("categories");
    assert_eq!(sent, ["18,22", "15,18"]);
    let again = run(&env, &["report", "--categories", "15,22", "--", IP]);
    assert!(
        again.stderr.contains("already reported"),
        "{}",
        again.stderr
    );
    assert_eq!(env.api.requests().len(), 2);
    assert_eq!(env.status()["cooldown_entries"], 1);
}

#[test]
fn cooldown_entries_of_the_old_form_are_migrated() {
    let env = TestEnv::new("cooldown-migrate");
    std::fs::create_dir_all(env.spool_dir()).unwrap();
    let then = epoch_now() - 600;
    std::fs::write(
        env.state_dir().join("state.json"),
        format!(
            r#"{{"cooldown":{{"{IP}":{then},"45.155.205.1":{}}}}}"#,
            then - 2 * 86_400
        ),
    )
    .unwrap();
    // The old entry covered the IP as a whole: any categories wait out its window.
    let skipped = run(&env, &["report", "--jail", "recidive", "--", IP]);
    assert!(
        skipped.stderr.contains("already reported 10 min ago"),
        "{}",
        skipped.stderr
    );
    // An expired old entry holds nothing.
    run(&env, &["report", "--jail", "sshd", "--", "45.155.205.1"]);
    assert_eq!(env.api.requests().len(), 1);
    let state = env.state();
    assert_eq!(state["cooldown"][IP]["0"], then, "{state}");
    assert!(state["cooldown"]["45.155.205.1"]["18"].is_u64(), "{state}");
}
