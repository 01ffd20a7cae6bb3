//! The client over real TLS on loopback: a CA and certificates made at test time, trusted
//! (or not) the ways an administrator would, directly and through a CONNECT proxy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;

use support::fake_api::documented_api;
use support::tls::{ConnectProxy, Leaf, TestCa};
use support::{FakeApi, KEY, TestEnv};

const IP: &str = "45.155.205.233";

/// A TLS fake presenting `leaf` from a fresh CA, and the CA's PEM file in the test dir.
fn tls_env(tag: &str, leaf: Leaf) -> (TestEnv, PathBuf) {
    let ca = TestCa::new("reportedip-report test CA");
    let env = TestEnv::with_api(
        tag,
        FakeApi::start_tls(ca.server_config(leaf), documented_api),
    );
    let ca_file = env.dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    (env, ca_file)
}

fn with_ca_file(env: &TestEnv, ca_file: &std::path::Path) {
    env.write_config(&format!("ca_file = \"{}\"", ca_file.display()));
}

fn report(env: &TestEnv) -> support::Run {
    let run = env.run(&["report", "--strict", "--categories", "18", "--", IP]);
    assert!(!run.all_output().contains(KEY), "key leaked");
    run
}

#[test]
fn a_private_ca_in_ca_file_is_trusted() {
    let (env, ca_file) = tls_env("tls-cafile", Leaf::Good);
    assert!(env.api.url().starts_with("https://127.0.0.1:"));
    with_ca_file(&env, &ca_file);
    let run = report(&env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = env.api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("x-key"), Some(KEY));
    assert_eq!(requests[0].field("ip"), IP);
}

#[test]
fn ssl_cert_file_is_honoured() {
    let (mut env, ca_file) = tls_env("tls-env", Leaf::Good);
    env.env("SSL_CERT_FILE", ca_file.to_str().unwrap());
    let run = report(&env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.api.accepted_reports().len(), 1);
}

#[test]
fn ssl_cert_dir_is_honoured() {
    let (mut env, ca_file) = tls_env("tls-dir", Leaf::Good);
    let dir = env.dir.path().join("certs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&ca_file, dir.join("test-ca.pem")).unwrap();
    env.env("SSL_CERT_DIR", dir.to_str().unwrap());
    let run = report(&env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.api.accepted_reports().len(), 1);
}

/// The certificate is refused before a request is sent, said as what it is, with the fix;
/// the report is kept.
fn assert_refused(env: &TestEnv, said: &[&str]) {
    let run = report(env);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for needle in said {
        assert!(
            run.stderr.contains(needle),
            "wanted {needle:?} in {}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("nothing was sent"), "{}", run.stderr);
    assert!(!run.stderr.contains("unreachable"), "{}", run.stderr);
    assert!(env.api.requests().is_empty(), "the fake saw a request");
    assert_eq!(env.spooled(), 1, "kept for when TLS is fixed");
}

#[test]
fn an_unknown_ca_is_refused_before_anything_is_sent() {
    let (env, _) = tls_env("tls-unknown", Leaf::Good);
    assert_refused(
        &env,
        &[
            "signed by a CA this system does not trust",
            "set ca_file in",
            "update-ca-certificates",
        ],
    );
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let (env, ca_file) = tls_env("tls-name", Leaf::WrongName);
    with_ca_file(&env, &ca_file);
    assert_refused(&env, &["is not valid for 127.0.0.1"]);
}

#[test]
fn an_expired_certificate_is_refused() {
    let (env, ca_file) = tls_env("tls-expired", Leaf::Expired);
    with_ca_file(&env, &ca_file);
    assert_refused(&env, &["has expired", "date -u"]);
}

#[test]
fn https_proxy_tunnels_and_never_sees_the_key() {
    let (mut env, ca_file) = tls_env("tls-proxy", Leaf::Good);
    with_ca_file(&env, &ca_file);
    let proxy = ConnectProxy::start();
    env.env("HTTPS_PROXY", &proxy.url());
    let run = report(&env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.api.accepted_reports().len(), 1);
    let port = env.api.port();
    assert_eq!(proxy.targets(), [format!("127.0.0.1:{port}")]);
    let seen = proxy.seen();
    assert!(seen.len() > 200, "the request went through the proxy");
    let text = String::from_utf8_lossy(&seen);
    assert!(!text.contains(KEY), "the proxy read the key");
    assert!(!text.contains(IP), "the proxy read the report");
}

#[test]
fn the_sender_reuses_one_tls_connection() {
    let (env, ca_file) = tls_env("tls-keepalive", Leaf::Good);
    with_ca_file(&env, &ca_file);
    // Queued while a backoff holds the sender, then delivered in one go.
    env.set_backoff_until(support::epoch_now() + 3600);
    for n in 1..=20 {
        let run = env.queue(&format!("45.155.205.{n}"));
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    env.end_backoff();
    let flush = env.run(&["flush"]);
    assert_eq!(flush.code, 0, "{}{}", flush.stdout, flush.stderr);
    assert_eq!(env.api.accepted_reports().len(), 20);
    let connections: std::collections::BTreeSet<usize> =
        env.api.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections.len(), 1, "one TLS connection for 20 reports");
}

#[test]
fn verify_key_says_which_roots_are_in_use() {
    let (mut env, ca_file) = tls_env("tls-verify", Leaf::Good);
    with_ca_file(&env, &ca_file);
    let run = env.run(&["verify-key"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = format!("+ ca_file {} (1 certificates)", ca_file.display());
    assert!(run.stdout.contains(&line), "{}", run.stdout);
    assert!(
        run.stdout.contains("TLS roots:   system store"),
        "{}",
        run.stdout
    );

    env.write_config("");
    env.env("SSL_CERT_FILE", ca_file.to_str().unwrap());
    let run = env.run(&["verify-key", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.json()["roots"],
        format!(
            "system store SSL_CERT_FILE={} (1 certificates)",
            ca_file.display()
        )
    );
}

/// The blocklist feed over real TLS trusts what the API trusts: the system store and
/// `ca_file`. The served list is refused as a whole (too many invalid lines), so the test
/// ends before anything would reach nft.
#[test]
fn the_feed_is_fetched_over_tls_trusting_ca_file() {
    use sha2::{Digest, Sha256};
    let list = "# ReportedIP Blacklist\n45.155.205.1\nnot-an-address\nneither\n";
    let sum: String = Sha256::digest(list.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let metadata = format!(
        r#"{{"version":"tls","generatedAt":"2026-12-01","checksums":{{"blacklist-all.txt":"{sum}"}}}}"#
    );
    let ca = TestCa::new("reportedip-report feed CA");
    let feed = FakeApi::start_tls(
        ca.server_config(Leaf::Good),
        move |request, _| match request.path.rsplit('/').next() {
            Some("metadata.json") => support::Reply::json(200, &metadata),
            Some("blacklist-all.txt") => support::Reply::json(200, list),
            _ => support::Reply::json(404, "{}"),
        },
    );
    let env = TestEnv::new("tls-feed");
    let ca_file = env.dir.path().join("feed-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let section = format!(
        "\n[blocklist]\nsource = \"https://localhost:{}/feed\"\n",
        feed.port()
    );
    let update = |env: &TestEnv| {
        let no_fail2ban = env.dir.path().join("no-fail2ban");
        env.run(&[
            "blocklist",
            "update",
            "--fail2ban-dir",
            no_fail2ban.to_str().unwrap(),
        ])
    };
    env.write_config(&section);
    update(&env)
        .expect_code(9)
        .expect_said("blocklist not downloaded")
        .expect_said("invalid peer certificate");
    env.write_config(&format!("ca_file = \"{}\"{section}", ca_file.display()));
    update(&env)
        .expect_code(8)
        .expect_said("blocklist refused")
        .expect_said("2 of 3 lines are not addresses");
    // A ca_file another user could change is refused at load, for the feed as for the API.
    std::fs::set_permissions(
        &ca_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    update(&env)
        .expect_code(5)
        .expect_said("ca_file cannot be trusted");
}
