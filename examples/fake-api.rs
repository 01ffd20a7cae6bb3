//! The tests' fake ReportedIP API as a standalone server, for the benchmark and the package
//! smoke test: `fake-api [--mode up|slow|blackhole] [--port-file FILE] [--seconds N]`.
//! Prints its base URL on stdout (and into FILE), serves until N seconds pass (default 600),
//! then exits. `--count-file FILE` gets the number of accepted reports whenever it changes.
//! `--tls-ca FILE` serves HTTPS with a certificate for 127.0.0.1 from a CA made at start,
//! whose PEM goes into FILE (to trust it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/fake_api.rs"]
mod fake_api;
#[path = "../tests/support/tls.rs"]
mod tls;

use std::time::Duration;

use fake_api::{FakeApi, Reply, documented_api};

fn main() {
    let mut mode = "up".to_string();
    let mut port_file = None;
    let mut count_file = None;
    let mut seconds = 600u64;
    let mut tls_ca = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--mode" => mode = value,
            "--port-file" => port_file = Some(value),
            "--count-file" => count_file = Some(value),
            "--seconds" => seconds = value.parse().expect("--seconds N"),
            "--tls-ca" => tls_ca = Some(value),
            other => panic!("unknown argument {other}"),
        }
    }
    let api = match (mode.as_str(), tls_ca) {
        ("up", Some(ca_file)) => {
            let ca = tls::TestCa::new("fake-api benchmark CA");
            std::fs::write(&ca_file, ca.pem()).expect("write CA file");
            FakeApi::start_tls(ca.server_config(tls::Leaf::Good), documented_api)
        }
        (_, Some(_)) => panic!("--tls-ca goes with --mode up"),
        ("up", None) => FakeApi::start(),
        ("slow", None) => FakeApi::start_with(|req, index| {
            std::thread::sleep(Duration::from_secs(1));
            documented_api(req, index)
        }),
        ("blackhole", None) => FakeApi::start_with(|_, _| Reply::Hang),
        (other, None) => panic!("unknown mode {other}"),
    };
    println!("{}", api.url());
    if let Some(file) = port_file {
        std::fs::write(&file, api.url()).expect("write port file");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let mut requests_seen = 0;
    let mut accepted_written = None;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        // Wakes on every request (or once a second) to publish the count.
        api.wait_until(left.min(Duration::from_secs(1)), |reqs| {
            reqs.len() != requests_seen
        });
        requests_seen = api.request_count();
        let accepted = api.accepted_count();
        if let Some(file) = &count_file
            && accepted_written != Some(accepted)
        {
            let tmp = format!("{file}.tmp");
            std::fs::write(&tmp, accepted.to_string()).expect("write count file");
            std::fs::rename(&tmp, file).expect("rename count file");
            accepted_written = Some(accepted);
        }
    }
}
