//! `verify-key` and `categories` against the loopback fake API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::fake_api::API_PATH;
use support::{KEY, Reply, TestEnv};

#[test]
fn valid_key_shows_name_role_permissions_and_usage() {
    let env = TestEnv::new("vk-ok");
    let run = env.run(&["verify-key"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = env.api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, format!("{API_PATH}/verify-key"));
    assert_eq!(requests[0].header("x-key"), Some(KEY));
    assert_eq!(requests[0].header("accept"), Some("application/json"));
    for line in [
        "key valid:   yes",
        "key name:    web1",
        "role:        free",
        "permissions: report, check",
        "reports:     12 used of 50 today, 38 remaining, resets 2026-12-01T00:00:00Z",
        "api calls:   990 remaining of 1000 today",
        "sites:       1 of 3 used (active)",
        "TLS roots:   none needed (plain http to loopback)",
    ] {
        assert!(
            run.stdout.contains(line),
            "missing {line:?} in\n{}",
            run.stdout
        );
    }
    assert!(!run.all_output().contains(KEY));
}

#[test]
fn json_output_carries_the_fields() {
    let env = TestEnv::new("vk-json");
    let run = env.run(&["verify-key", "--json"]);
    assert_eq!(run.code, 0);
    let json = run.json();
    assert_eq!(json["valid"], true);
    assert_eq!(json["can_report"], true);
    assert_eq!(json["key"]["keyName"], "web1");
    assert_eq!(json["key"]["limits"]["dailyReportUsage"], 12);
    assert_eq!(json["key"]["limits"]["dailyReportLimit"], 50);
    assert_eq!(json["key"]["limits"]["resetTime"], 1_796_083_200u64);
    assert_eq!(json["key"]["domains"]["limit"], 3);
    assert_eq!(json["roots"], "none needed (plain http to loopback)");
}

#[test]
fn may_report_is_judged_by_the_report_limit_not_permission_names() {
    // Permission names are undocumented: a key whose list lacks "report" but whose daily
    // report limit is 200 may report; any resetTime type is read.
    for reset in ["\"tomorrow\"", "null", "{\"at\":1}", "[1]", "true"] {
        let env = TestEnv::answering(
            "vk-perm",
            Reply::json(
                200,
                &format!(
                    r#"{{"data":{{"valid":true,"userRole":"reportedip_contributor","permissions":["submit_data"],"limits":{{"dailyReportLimit":200,"dailyReportUsage":3,"resetTime":{reset}}}}}}}"#
                ),
            ),
        );
        let run = env.run(&["verify-key"]);
        assert_eq!(run.code, 0, "{reset}: {}", run.stderr);
        assert!(
            run.stdout.contains("role:        contributor"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("3 used of 200 today"), "{}", run.stdout);
        assert!(run.stderr.is_empty(), "{}", run.stderr);
    }
}

#[test]
fn key_with_report_limit_zero_is_warned_about() {
    let env = TestEnv::answering(
        "vk-zero",
        Reply::json(
            200,
            r#"{"data":{"valid":true,"keyName":"ro","userRole":"viewer","permissions":["check"],"limits":{"dailyReportLimit":0,"dailyReportUsage":0}}}"#,
        ),
    );
    let run = env.run(&["verify-key"]);
    assert_eq!(run.code, 4);
    assert!(
        run.stderr.contains("daily report limit is 0"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("0 used of 0 today"), "{}", run.stdout);
}

#[test]
fn unlimited_key_reads_naturally() {
    let env = TestEnv::answering(
        "vk-unlimited",
        Reply::json(
            200,
            r#"{"data":{"valid":true,"permissions":["report"],"limits":{"dailyReportLimit":-1,"dailyReportUsage":7}}}"#,
        ),
    );
    let run = env.run(&["verify-key"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("7 used today (no daily limit)"),
        "{}",
        run.stdout
    );
}

#[test]
fn refused_key_exits_4() {
    let env = TestEnv::answering(
        "vk-401",
        Reply::wp_error(401, "invalid_api_key", "Invalid API key"),
    );
    let run = env.run(&["verify-key"]);
    assert_eq!(run.code, 4);
    assert!(
        run.stderr
            .contains("API key refused: HTTP 401 invalid_api_key: Invalid API key"),
        "{}",
        run.stderr
    );
}

#[test]
fn unreachable_api_exits_1() {
    let env = TestEnv::answering("vk-500", Reply::json(503, ""));
    let run = env.run(&["verify-key", "--json"]);
    assert_eq!(run.code, 1);
    assert!(run.json()["error"].as_str().unwrap().contains("HTTP 503"));
}

#[test]
fn config_errors_exit_5_without_a_request() {
    let env = TestEnv::new("vk-cfg");
    env.write_config("colour = \"blue\"");
    let run = env.run(&["verify-key"]);
    assert_eq!(run.code, 5);
    assert!(run.stderr.contains("colour"), "{}", run.stderr);
    assert!(env.api.requests().is_empty());
}

#[test]
fn categories_lists_the_whole_table() {
    let env = TestEnv::new("cats");
    let run = env.run(&["categories"]);
    assert_eq!(run.code, 0);
    let table = include_str!("data/reportedip-categories.tsv");
    for line in table.lines().skip(1) {
        let (id, name) = line.split_once('\t').unwrap();
        assert!(run.stdout.contains(&format!("{id:>2}  {name}\n")), "{line}");
    }
    assert!(run.stdout.contains("sshd             18,22"));
}

#[test]
fn usage_errors_of_other_commands_exit_2() {
    let env = TestEnv::new("usage");
    assert_eq!(env.run(&["verify-key", "--bogus"]).code, 2);
    assert_eq!(env.run(&["no-such-command"]).code, 2);
    assert_eq!(env.run(&["--version"]).code, 0);
}
