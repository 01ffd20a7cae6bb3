//! Prometheus metrics: `status --prometheus` as promtool reads it, the metrics file the flush
//! timer writes, and the trust rules of its directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::TestEnv;

const IP: &str = "45.155.205.233";

/// promtool from Debian's `prometheus`; CI (REPORTEDIP_E2E=1) requires it.
fn promtool() -> Option<&'static str> {
    let path = "/usr/bin/promtool";
    if std::path::Path::new(path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("REPORTEDIP_E2E").is_none(),
        "promtool is required here: apt-get install prometheus"
    );
    eprintln!("SKIPPED status_prometheus_passes_promtool: no {path} (apt-get install prometheus)");
    None
}

#[test]
fn status_prometheus_passes_promtool() {
    let reset = support::fake_api::tomorrow();
    let api = support::FakeApi::start_with(move |req, index| {
        support::fake_api::documented_api(req, index)
            .with_header("X-RateLimit-Limit", "50")
            .with_header("X-RateLimit-Remaining", "13")
            .with_header("X-RateLimit-Reset", &reset.to_string())
    });
    let env = TestEnv::with_api("prometheus", api);
    env.run(&["report", "--jail", "sshd", "--", IP]);
    let run = env.run(&["status", "--prometheus"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for line in [
        "reportedip_reports_waiting 0",
        "reportedip_reports_sent_total 1",
        "reportedip_quota_limit 50",
        "reportedip_quota_remaining 13",
        &format!("reportedip_quota_reset_timestamp_seconds {reset}"),
        "# TYPE reportedip_reports_sent_total counter",
    ] {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "{line} missing:\n{}",
            run.stdout
        );
    }
    let Some(promtool) = promtool() else {
        return;
    };
    let file = env.dir.path().join("reportedip.prom");
    std::fs::write(&file, &run.stdout).unwrap();
    let checked = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn flush_refreshes_the_metrics_file_when_configured() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new("metrics-file");
    let file = env.dir.path().join("reportedip.prom");
    env.write_config(&format!("metrics_file = \"{}\"", file.display()));
    env.run(&["report", "--jail", "sshd", "--", IP]);
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}{}", flush.stdout, flush.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines().any(|l| l == "reportedip_reports_sent_total 1"),
        "{text}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "node_exporter must be able to read it");
    let temps = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(temps, 0);
}

#[test]
fn a_metrics_directory_swapped_for_a_link_or_a_fifo_is_not_written() {
    let env = TestEnv::new("metrics-swap");
    let dir = env.dir.path().join("metrics");
    let file = dir.join("reportedip.prom");
    fs::create_dir(&dir).unwrap();
    env.write_config(&format!("metrics_file = \"{}\"", file.display()));
    env.run(&["flush"]).expect_code(0);
    assert!(file.is_file(), "written where it is safe");
    // Swapped for a link into a place only root should write to.
    fs::remove_dir_all(&dir).unwrap();
    let private = env.dir.path().join("private");
    fs::create_dir(&private).unwrap();
    std::os::unix::fs::symlink(&private, &dir).unwrap();
    env.run(&["flush"])
        .expect_code(0)
        .expect_said("not written")
        .expect_said("symbolic link");
    assert_eq!(
        fs::read_dir(&private).unwrap().count(),
        0,
        "written through the link"
    );
    // Swapped for a FIFO: flush must end, and say why.
    fs::remove_file(&dir).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(made.success());
    let run = env.run(&["flush"]);
    run.expect_code(0).expect_said("not written");
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    // A directory whose parent others can write to.
    fs::remove_file(&dir).unwrap();
    let open = env.dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    fs::create_dir(open.join("metrics")).unwrap();
    let file = open.join("metrics/reportedip.prom");
    env.write_config(&format!("metrics_file = \"{}\"", file.display()));
    env.run(&["flush"]).expect_said("writable by other users");
    assert!(!file.exists());
}
