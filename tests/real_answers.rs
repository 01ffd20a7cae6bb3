//! The answer shapes the real service gives (SPEC §1), and the old domain, against the fake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::fake_api::{API_PATH, documented_api};
use support::{FakeApi, KEY, Reply, TestEnv, epoch_now};

const IP: &str = "45.155.205.233";

fn report(env: &TestEnv, args: &[&str]) -> support::Run {
    let mut all = vec!["report", "--strict", "--json"];
    all.extend_from_slice(args);
    let run = env.run(&all);
    assert!(!run.all_output().contains(KEY), "key leaked");
    run
}

#[test]
fn created_with_meta_envelope_and_numeric_id_is_sent() {
    let env = TestEnv::answering("created", Reply::success(4_316_026, IP).with_status(201));
    let run = report(&env, &["--jail", "sshd", "--", IP]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    assert_eq!(json["status"], "sent");
    assert_eq!(json["report_id"], "4316026");
    assert_eq!(json["confidence"], 39);
    assert!(
        run.stderr.contains("report 4316026, confidence 39%"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("unreadable"), "{}", run.stderr);
}

#[test]
fn unlimited_rate_limit_headers_hold_nothing() {
    let env = TestEnv::new("unlimited");
    for n in 1..=3 {
        let run = report(
            &env,
            &["--categories", "18", "--", &format!("45.155.205.{n}")],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert_eq!(env.api.accepted_reports().len(), 3);
    assert_eq!(env.status()["backoff"]["active"], false);
}

#[test]
fn recent_categories_refused_by_an_older_deployment_are_dropped_once() {
    let api = FakeApi::start_with(|req, index| {
        let cats = req.field("categories");
        if cats
            .split(',')
            .any(|c| (59..=63).contains(&c.parse::<u8>().unwrap_or(0)))
        {
            Reply::wp_error(
                400,
                "rest_invalid_param",
                "Invalid parameter(s): categories",
            )
        } else {
            documented_api(req, index)
        }
    });
    let env = TestEnv::with_api("recentcats", api);
    let run = report(&env, &["--categories", "18,59,22,63", "--", IP]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sent = env.api.fields("categories");
    assert_eq!(sent, ["18,59,22,63", "18,22"]);
    assert!(
        run.stderr
            .contains("sent without categories 59,63, which this API does not know yet"),
        "{}",
        run.stderr
    );
    // Only recent categories: nothing left to send, so the refusal stands.
    let run = report(&env, &["--categories", "59", "--", "45.155.205.234"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(env.api.requests().len(), 3);
}

#[test]
fn invalid_param_about_something_else_is_not_retried() {
    let env = TestEnv::answering(
        "otherparam",
        Reply::wp_error(400, "rest_invalid_param", "Invalid parameter(s): ip"),
    );
    let run = report(&env, &["--categories", "18,59", "--", IP]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(env.api.requests().len(), 1);
}

#[test]
fn client_closed_request_is_transient() {
    let env = TestEnv::answering("499", Reply::json(499, ""));
    let run = report(&env, &["--categories", "18", "--", IP]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.json()["status"], "kept");
    assert_eq!(env.spooled(), 1);
    assert_eq!(env.status()["backoff"]["active"], true);
}

#[test]
fn retry_after_as_an_http_date_in_every_form_sets_the_window() {
    // 2 days ahead, in the three spellings RFC 9110 requires a recipient to read.
    let at = epoch_now() + 2 * 86_400;
    let date = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at));
    let (weekday, rest) = date.split_once(", ").unwrap();
    let mut parts = rest.split(' ');
    let (day, month, year, time) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let long_weekday = match weekday {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    };
    let rfc850 = format!("{long_weekday}, {day}-{month}-{} {time} GMT", &year[2..]);
    let asctime = format!(
        "{weekday} {month} {:>2} {time} {year}",
        day.trim_start_matches('0')
    );
    for form in [date.clone(), rfc850, asctime] {
        let env = TestEnv::answering(
            "retrydate",
            Reply::wp_error(429, "rate_limited", "Daily report limit reached")
                .with_header("Retry-After", &form),
        );
        let run = report(&env, &["--categories", "18", "--", IP]);
        assert_eq!(run.code, 1, "{form}: {}", run.stderr);
        // A Retry-After beyond a day is capped at a day.
        let until = env.status()["backoff"]["until_epoch"].as_u64().unwrap();
        let now = epoch_now();
        assert!(
            (now + 86_000..=now + 86_400).contains(&until),
            "{form}: {until} vs {now}"
        );
    }
}

#[test]
fn an_api_url_ending_in_report_is_trimmed_with_a_warning() {
    let env = TestEnv::new("trimreport");
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace(&env.api.url(), &format!("{}/report", env.api.url()));
    env.write_raw_config(&text, 0o600);
    let run = report(&env, &["--categories", "18", "--", IP]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.api.requests()[0].path, format!("{API_PATH}/report"));
    assert_eq!(run.stderr.matches("warning:").count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("ends in /report"), "{}", run.stderr);
}

#[test]
fn the_old_domain_is_used_as_the_new_one_with_a_warning() {
    let env = TestEnv::new("olddomain");
    env.write_raw_config(
        &format!(
            "api_key = \"{KEY}\"\napi_url = \"https://reportedip.de/wp-json/reportedip/v2/report\"\nsyslog = false\n"
        ),
        0o600,
    );
    let run = env.run(&["report", "--dry-run", "--jail", "sshd", "--", IP]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("POST https://reportedip.com/wp-json/reportedip/v2/report\n"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stderr.matches("warning:").count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("moved to reportedip.com")
            && run
                .stderr
                .contains("api_url = \"https://reportedip.com/wp-json/reportedip/v2\""),
        "{}",
        run.stderr
    );
}
