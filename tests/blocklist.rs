//! The blocklist against the real nft and real packets, never the host's firewall: two
//! private network namespaces joined by a veth pair (within one namespace every address is
//! the host's own, so nothing would be blocked). The protected host `A` serves the feed on its
//! own loopback; `B` holds the senders: 45.155.205.1 (listed), .2 (not listed) and .3 (listed
//! but allowed).
//!
//! Where namespaces cannot be made (not root, no nft or ip), these tests print SKIPPED, which
//! `REPORTEDIP_E2E=1` (set by `.ci/run`) turns into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{BIN, Run, TempDir, run_command};

const HOST: &str = "45.155.205.254";
const LISTED: &str = "45.155.205.1";
const UNLISTED: &str = "45.155.205.2";
const ALLOWED: &str = "45.155.205.3";
const HOST6: &str = "2a01:4f8:0:1::fe";
const LISTED6: &str = "2a01:4f8:0:1::1";
const UNLISTED6: &str = "2a01:4f8:0:1::2";

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two namespaces joined by a veth pair; removed on drop.
struct Net {
    a: String,
    b: String,
    dir: TempDir,
    server: Option<Child>,
    listener: Option<Child>,
}

impl Net {
    fn new(test: &str) -> Option<Self> {
        let tag = format!("{}-{}", std::process::id(), test.len() % 97);
        let (a, b) = (format!("ripa-{tag}"), format!("ripb-{tag}"));
        if !(sh(&["ip", "netns", "add", &a]) && sh(&["ip", "netns", "add", &b])) {
            let _ = sh(&["ip", "netns", "del", &a]);
            if std::env::var("REPORTEDIP_E2E").as_deref() == Ok("1") {
                panic!("REPORTEDIP_E2E=1 but network namespaces cannot be made here");
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: no network namespaces (root, iproute2 and nftables needed)"
            );
            return None;
        }
        let net = Self {
            a: a.clone(),
            b: b.clone(),
            dir: TempDir::new("blocklist"),
            server: None,
            listener: None,
        };
        let va = format!("va{}", std::process::id() % 100_000);
        let vb = format!("vb{}", std::process::id() % 100_000);
        assert!(sh(&[
            "ip", "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vb, "netns", &b
        ]));
        for (ns, dev, addrs) in [
            (&a, &va, vec![format!("{HOST}/24"), format!("{HOST6}/64")]),
            (
                &b,
                &vb,
                vec![
                    format!("{LISTED}/24"),
                    format!("{UNLISTED}/24"),
                    format!("{ALLOWED}/24"),
                    format!("{LISTED6}/64"),
                    format!("{UNLISTED6}/64"),
                ],
            ),
        ] {
            for addr in addrs {
                // nodad: an IPv6 address is usable at once, without waiting for detection.
                let mut args = vec!["ip", "-n", ns, "addr", "add", &addr, "dev", dev];
                if addr.contains(':') {
                    args.push("nodad");
                }
                assert!(sh(&args));
            }
            assert!(sh(&["ip", "-n", ns, "link", "set", dev, "up"]));
            assert!(sh(&["ip", "-n", ns, "link", "set", "lo", "up"]));
        }
        Some(net)
    }

    fn in_a(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.a]).args(args);
        cmd
    }

    /// Runs `nft ARGS` in A with `script` on its standard input; whether nft accepted it.
    fn nft_with(&self, args: &[&str], script: &str) -> bool {
        let mut nft = self.in_a(&[&["nft"], args].concat());
        let mut child = nft.stdin(Stdio::piped()).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        child.wait().unwrap().success()
    }

    /// The feed, served by a plain HTTP server on A's loopback.
    fn serve_feed(&mut self, port: u16) {
        fs::create_dir_all(self.dir.path().join("feed/lists")).unwrap();
        let child = self
            .in_a(&[
                "python3",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(self.dir.path().join("feed"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .in_a(&[
                "python3",
                "-c",
                &format!("import socket; socket.create_connection(('127.0.0.1', {port}), 1)"),
            ])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            assert!(Instant::now() < deadline, "the feed server did not start");
        }
    }

    fn stop_feed(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A TCP service on A that answers every connection.
    fn listen(&mut self) {
        let code = "import socket\ns = socket.socket(socket.AF_INET6)\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\ns.bind(('::', 9000))\ns.listen(64)\nwhile True:\n    c, _ = s.accept()\n    c.sendall(b'ok')\n    c.close()\n";
        self.listener = Some(self.in_a(&["python3", "-c", code]).spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(15);
        // IPv6 on a fresh link may take a moment longer (neighbour discovery).
        while !(self.reaches(UNLISTED) && self.reaches(UNLISTED6)) {
            if Instant::now() > deadline {
                let show = |ns: &str| {
                    let out = Command::new("ip")
                        .args(["-n", ns, "addr"])
                        .output()
                        .unwrap();
                    String::from_utf8_lossy(&out.stdout).into_owned()
                };
                panic!(
                    "the listener is not reachable over IPv4 and IPv6:\n{}\n{}",
                    show(&self.a),
                    show(&self.b)
                );
            }
        }
    }

    /// Whether a new connection from `source` in B reaches A's service (a dropped SYN times
    /// out after a second).
    fn reaches(&self, source: &str) -> bool {
        Self::probe(&self.b, source)
    }

    fn probe(b: &str, source: &str) -> bool {
        let host = if source.contains(':') { HOST6 } else { HOST };
        let code = format!(
            "import socket\ntry:\n    s = socket.create_connection(('{host}', 9000), timeout=1, source_address=('{source}', 0))\n    print(s.recv(2).decode())\nexcept OSError:\n    print('dropped')\n"
        );
        let out = Command::new("ip")
            .args(["netns", "exec", b, "python3", "-c", &code])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "ok"
    }

    /// Writes the feed's files and a metadata.json with their checksums (or a wrong one).
    fn publish(&self, addresses: &[&str], version: &str, wrong_checksum: bool) {
        let feed = self.dir.path().join("feed");
        let mut list = String::from("# ReportedIP Blacklist\n# CC BY 4.0\n#\n\n");
        for address in addresses {
            list.push_str(address);
            list.push('\n');
        }
        fs::write(feed.join("blacklist-all.txt"), &list).unwrap();
        let sum = Command::new("sha256sum")
            .arg(feed.join("blacklist-all.txt"))
            .output()
            .unwrap();
        let mut sum = String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        if wrong_checksum {
            sum = "0".repeat(64);
        }
        let metadata = format!(
            r#"{{"version":"{version}","generatedAt":"{version}","totalIPs":{},"checksums":{{"blacklist-all.txt":"{sum}"}}}}"#,
            addresses.len()
        );
        fs::write(feed.join("metadata.json"), metadata).unwrap();
        // Each day's metadata has its own time, as the server's Last-Modified shows it.
        let day: u64 = version.rsplit('-').next().unwrap().parse().unwrap();
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_796_000_000 + day * 86_400);
        fs::File::options()
            .write(true)
            .open(feed.join("metadata.json"))
            .unwrap()
            .set_modified(at)
            .unwrap();
    }

    fn config(&self, port: u16) -> std::path::PathBuf {
        config_in(
            self.dir.path(),
            &format!(
                "syslog = false\n\n[blocklist]\nsource = \"http://127.0.0.1:{port}\"\nallow = [\"{ALLOWED}\"]\n"
            ),
        )
    }

    fn run(&self, config: &Path, args: &[&str]) -> Run {
        let mut cmd = self.in_a(&[BIN]);
        cmd.arg("--config").arg(config).args(args);
        cmd.env("REPORTEDIP_RUNTIME_DIR", self.dir.path().join("run"));
        run_command(cmd)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_feed();
        if let Some(mut child) = self.listener.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = sh(&["ip", "netns", "del", &self.a]);
        let _ = sh(&["ip", "netns", "del", &self.b]);
    }
}

/// A day's list: the listed sender and the allowed one, hostile lines, and filler that keeps
/// the hostile share of lines under 1%.
fn day(extra: &[&str]) -> Vec<String> {
    let mut list: Vec<String> = vec![
        LISTED.into(),
        LISTED6.into(),
        ALLOWED.into(),
        "0.0.0.0/0".into(),
        "::/0".into(),
        "10.0.0.0/8".into(),
        "192.168.1.1".into(),
        HOST.into(),
        "2a01:4f8::1".into(),
    ];
    list.extend(extra.iter().map(|s| s.to_string()));
    list.extend((0..300).map(|n| format!("46.{}.{}.{}", n / 250, n % 250, 1)));
    list
}

#[test]
fn listed_sources_are_dropped_and_everything_else_passes() {
    let Some(mut net) = Net::new("listed_sources_are_dropped_and_everything_else_passes") else {
        return;
    };
    net.serve_feed(8000);
    net.listen();
    let config = net.config(8000);
    let list = day(&["not-an-address"]);
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    net.publish(&refs, "2026-12-01", false);
    assert!(net.reaches(LISTED), "before anything is loaded");
    assert!(net.reaches(UNLISTED6), "IPv6 before anything is loaded");

    net.run(&config, &["blocklist", "update"])
        .expect_code(0)
        .expect_said("blocklist in force");
    assert!(!net.reaches(LISTED), "a listed source passed");
    assert!(net.reaches(UNLISTED), "an unlisted source was dropped");
    assert!(net.reaches(ALLOWED), "an allowed source was dropped");
    assert!(!net.reaches(LISTED6), "a listed IPv6 source passed");
    assert!(
        net.reaches(UNLISTED6),
        "an unlisted IPv6 source was dropped"
    );
    let status = net.run(&config, &["blocklist", "status", "--json"]);
    status.expect_code(0);
    let status = status.json();
    assert_eq!(status["loaded"], true, "{status}");
    assert_eq!(status["entries_v4"], 301, "{status}");
    assert_eq!(status["entries_v6"], 2, "{status}");
    for (why, count) in [
        ("too_wide", 3),
        ("non_global", 1),
        ("own", 1),
        ("allow", 1),
        ("invalid", 1),
    ] {
        assert_eq!(status["left_out"][why], count, "{why}: {status}");
    }
    assert!(status["dropped_packets"].as_u64().unwrap() > 0, "{status}");
    let metrics = net.run(&config, &["blocklist", "status", "--prometheus"]);
    metrics
        .expect_code(0)
        .expect_said("reportedip_blocklist_loaded 1")
        .expect_said("reportedip_blocklist_entries_v6 2")
        .expect_said("reportedip_blocklist_left_out{reason=\"too_wide\"} 3")
        .expect_said("reportedip_blocklist_left_out{reason=\"invalid\"} 1")
        .expect_said("reportedip_blocklist_left_out{reason=\"fail2ban_ignoreip\"} 0")
        .expect_said("reportedip_blocklist_last_attempt_success 1");
    if Path::new("/usr/bin/promtool").exists() {
        let mut check = Command::new("/usr/bin/promtool");
        check.args(["check", "metrics"]).stdin(Stdio::piped());
        let mut child = check.stdout(Stdio::null()).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{}\n", metrics.stdout.trim_end()).as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "promtool: {}",
            metrics.stdout
        );
    }
    // nft accepts what print shows.
    let print = net.run(&config, &["blocklist", "print"]);
    print.expect_code(0);
    assert!(
        net.nft_with(&["-c", "-f", "-"], &print.stdout),
        "nft -c refused the printed script"
    );

    // An unchanged feed is not downloaded again.
    net.run(&config, &["blocklist", "update"])
        .expect_code(0)
        .expect_said("unchanged");

    // Every refusal keeps the set in force.
    net.publish(&refs, "2026-12-02", true);
    net.run(&config, &["blocklist", "update"])
        .expect_code(8)
        .expect_said("checksum");
    assert!(!net.reaches(LISTED));
    net.publish(&[], "2026-12-03", false);
    net.run(&config, &["blocklist", "update"])
        .expect_code(8)
        .expect_said("empty");
    assert!(!net.reaches(LISTED));
    net.publish(&refs[10..40], "2026-12-04", false);
    net.run(&config, &["blocklist", "update"])
        .expect_code(8)
        .expect_said("shrink");
    assert!(!net.reaches(LISTED));
    // A server that accepts and never answers: the download ends at its deadline.
    let slow = "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', 8001))\ns.listen(8)\nkept = []\nwhile True:\n    kept.append(s.accept())\n";
    let mut silent = net.in_a(&["python3", "-c", slow]).spawn().unwrap();
    let slow_config = net.config(8001);
    let text = fs::read_to_string(&slow_config).unwrap().replacen(
        "syslog = false\n",
        "syslog = false\ntimeout = 1\n",
        1,
    );
    fs::write(&slow_config, text).unwrap();
    let run = net.run(&slow_config, &["blocklist", "update"]);
    let _ = silent.kill();
    let _ = silent.wait();
    run.expect_code(9);
    assert!(run.elapsed < Duration::from_secs(20), "{:?}", run.elapsed);
    assert!(!net.reaches(LISTED));
    let config = net.config(8000);
    net.stop_feed();
    net.run(&config, &["blocklist", "update"]).expect_code(9);
    assert!(!net.reaches(LISTED));
    assert!(net.reaches(UNLISTED));

    // apply restores offline, after remove and after a flushed ruleset.
    net.run(&config, &["blocklist", "remove"]).expect_code(0);
    assert!(net.reaches(LISTED), "remove left the table");
    net.run(&config, &["blocklist", "apply"]).expect_code(0);
    assert!(!net.reaches(LISTED));
    assert!(
        net.in_a(&["nft", "flush", "ruleset"])
            .status()
            .unwrap()
            .success()
    );
    assert!(net.reaches(LISTED));
    net.run(&config, &["blocklist", "apply"]).expect_code(0);
    assert!(!net.reaches(LISTED));
    assert!(net.reaches(UNLISTED));
}

/// A config (mode 0600) in `dir` with its state under `dir/state`, then `rest`.
fn config_in(dir: &Path, rest: &str) -> std::path::PathBuf {
    let config = dir.join("reportedip.toml");
    let state = dir.join("state");
    fs::write(
        &config,
        format!("state_dir = \"{}\"\n{rest}", state.display()),
    )
    .unwrap();
    fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    config
}

#[test]
fn without_a_blocklist_section_nothing_is_fetched_or_blocked() {
    let dir = TempDir::new("no-blocklist");
    let config = config_in(dir.path(), "");
    for command in ["update", "apply", "status", "remove", "print"] {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&config)
            .args(["blocklist", command]);
        run_command(cmd)
            .expect_code(0)
            .expect_said("no [blocklist] section");
    }
}

#[test]
fn thematic_lists_and_min_confidence_select_what_is_loaded() {
    let Some(mut net) = Net::new("thematic_lists_and_min_confidence_select_what_is_loaded") else {
        return;
    };
    net.serve_feed(8002);
    net.listen();
    let feed = net.dir.path().join("feed");
    let files = [
        (
            "lists/brute-force.txt",
            format!("# brute-force\n{LISTED}\n46.1.1.1\n"),
        ),
        ("lists/spam.txt", format!("# spam\n{UNLISTED}\n")),
        (
            "blacklist-all.csv",
            format!(
                "ip,confidence,categories,last_reported\n\"{LISTED}\",95,\"18;22\",\"2026-12-01 01:02:03\"\n\"{UNLISTED}\",80,\"11\",\"2026-12-01 01:02:03\"\n"
            ),
        ),
    ];
    let mut checksums = Vec::new();
    for (name, text) in &files {
        fs::write(feed.join(name), text).unwrap();
        let sum = Command::new("sha256sum")
            .arg(feed.join(name))
            .output()
            .unwrap();
        let sum = String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        checksums.push(format!("\"{name}\":\"{sum}\""));
    }
    fs::write(
        feed.join("metadata.json"),
        format!(
            r#"{{"version":"t","generatedAt":"2026-12-01","checksums":{{{}}}}}"#,
            checksums.join(",")
        ),
    )
    .unwrap();
    let config = net.dir.path().join("reportedip.toml");
    let write = |section: &str| {
        config_in(
            net.dir.path(),
            &format!(
                "syslog = false\n\n[blocklist]\nsource = \"http://127.0.0.1:8002\"\n{section}"
            ),
        )
    };
    // The brute-force list only: the spam list's sender passes.
    write("lists = [\"brute-force\"]\n");
    net.run(&config, &["blocklist", "update"]).expect_code(0);
    assert!(!net.reaches(LISTED));
    assert!(net.reaches(UNLISTED));
    // Confidence 90 or more, from the CSV: a smaller list, but another selection, not a shrink.
    write("min_confidence = 90\n");
    net.run(&config, &["blocklist", "update"]).expect_code(0);
    let status = net.run(&config, &["blocklist", "status", "--json"]).json();
    assert_eq!(status["entries_v4"], 1, "{status}");
    assert!(!net.reaches(LISTED));
    assert!(net.reaches(UNLISTED));
}

/// fail2ban's `ignoreip` is read from a private fail2ban tree at every `update`, also when the
/// feed is unchanged; a tree that cannot be read keeps what was read before.
#[test]
fn fail2bans_ignoreip_is_never_blocked() {
    let test = "fail2bans_ignoreip_is_never_blocked";
    if !support::fail2ban_available(test) {
        return;
    }
    let Some(mut net) = Net::new(test) else {
        return;
    };
    net.serve_feed(8003);
    net.listen();
    let config = net.config(8003);
    let list = day(&[]);
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    net.publish(&refs, "2026-12-01", false);
    let tree = net.dir.path().join("f2b");
    support::fail2ban_tree(&tree, ":memory:");
    fs::write(tree.join("sshd.log"), "").unwrap();
    let jails = |ignoreip: &str| {
        fs::write(
            tree.join("conf/jail.conf"),
            format!(
                "[DEFAULT]\nbackend = polling\nignoreip = {ignoreip}\n\n[sshd]\nenabled = true\n\
                 filter = sshd\nlogpath = {}/sshd.log\naction = dummy\n",
                tree.display()
            ),
        )
        .unwrap();
    };
    let update = |net: &Net| {
        let conf = tree.join("conf");
        net.run(
            &config,
            &[
                "blocklist",
                "update",
                "--fail2ban-dir",
                conf.to_str().unwrap(),
            ],
        )
    };

    jails(&format!(
        "127.0.0.1/8 ::1 {LISTED} {LISTED6} gateway.example"
    ));
    update(&net)
        .expect_code(0)
        .expect_said("ignoreip names gateway.example");
    assert!(net.reaches(LISTED), "an address in ignoreip was dropped");
    assert!(
        net.reaches(LISTED6),
        "an IPv6 address in ignoreip was dropped"
    );
    assert!(net.reaches(UNLISTED));
    let status = net.run(&config, &["blocklist", "status", "--json"]).json();
    assert_eq!(status["left_out"]["fail2ban_ignoreip"], 2, "{status}");

    // A jail file that does not parse: what was read before stays exempt.
    fs::write(tree.join("conf/jail.local"), "[sshd\nbroken\n").unwrap();
    update(&net)
        .expect_code(0)
        .expect_said("cannot read fail2ban's ignoreip")
        .expect_said("the 5 entries read at the last update stay exempt");
    assert!(net.reaches(LISTED), "a broken jail file unblocked nothing");

    // The address leaves ignoreip: the next update, with the feed unchanged, blocks it.
    fs::remove_file(tree.join("conf/jail.local")).unwrap();
    jails("127.0.0.1/8 ::1");
    update(&net).expect_code(0).expect_said("unchanged");
    assert!(!net.reaches(LISTED), "left ignoreip but still passes");
    assert!(!net.reaches(LISTED6));
    // apply, offline, uses what update read.
    net.run(&config, &["blocklist", "apply"]).expect_code(0);
    assert!(!net.reaches(LISTED));
}

/// A table of the configured name that someone else made is neither changed nor deleted.
#[test]
fn a_table_of_the_same_name_made_by_someone_else_is_never_touched() {
    let Some(mut net) = Net::new("a_table_of_the_same_name_made_by_someone_else_is_never_touched")
    else {
        return;
    };
    net.serve_feed(8004);
    let list = day(&[]);
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    net.publish(&refs, "2026-12-01", false);
    let theirs = "table inet filter {\n\tset trusted {\n\t\ttype ipv4_addr\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tct state established accept\n\t}\n}\n";
    assert!(net.nft_with(&["-f", "-"], theirs));
    let listing = || {
        let out = net.in_a(&["nft", "list", "ruleset"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = listing();
    let config = net.config(8004);
    let text = fs::read_to_string(&config).unwrap().replace(
        "[blocklist]\n",
        "[blocklist]\ntable = \"filter\"\nhooks = [\"input\", \"forward\"]\n",
    );
    fs::write(&config, text).unwrap();

    for command in ["update", "remove"] {
        net.run(&config, &["blocklist", command])
            .expect_code(5)
            .expect_said("table inet filter exists and was not made by reportedip-report");
        assert_eq!(listing(), before, "blocklist {command} changed their table");
    }
    let status = net.run(&config, &["blocklist", "status", "--json"]).json();
    assert_eq!(status["loaded"], false, "{status}");

    // Under a name of its own, the list loads beside their table, which stays as it was.
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("table = \"filter\"", "table = \"reportedip\"");
    fs::write(&config, text).unwrap();
    net.run(&config, &["blocklist", "update"]).expect_code(0);
    let after = listing();
    assert!(after.starts_with(before.trim_end()), "{after}");
    assert!(after.contains("table inet reportedip"), "{after}");
    net.run(&config, &["blocklist", "remove"]).expect_code(0);
    assert_eq!(listing(), before);
}

/// At boot before the first update, `apply` has nothing to restore: no failed unit. `print`
/// still says there is nothing to print.
#[test]
fn apply_before_the_first_update_has_nothing_to_load() {
    let dir = TempDir::new("blocklist-first-boot");
    let config = config_in(dir.path(), "syslog = false\n\n[blocklist]\n");
    let run = |command: &str| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&config)
            .args(["blocklist", command]);
        run_command(cmd)
    };
    run("apply")
        .expect_code(0)
        .expect_said("no saved blocklist yet");
    run("print")
        .expect_code(8)
        .expect_said("run reportedip-report blocklist update first");
}

/// After `[blocklist] table` changes, the next load moves the list into the new table and
/// deletes the old one in the same transaction; `remove` takes both.
#[test]
fn a_new_table_name_replaces_the_old_table() {
    let Some(mut net) = Net::new("a_new_table_name_replaces_the_old_table") else {
        return;
    };
    net.serve_feed(8005);
    net.listen();
    let list = day(&[]);
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    net.publish(&refs, "2026-12-01", false);
    let config = net.config(8005);
    let tables = || {
        let out = net.in_a(&["nft", "list", "tables"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    net.run(&config, &["blocklist", "update"]).expect_code(0);
    assert_eq!(tables(), "table inet reportedip\n");
    let rename = |name: &str| {
        let text = fs::read_to_string(&config).unwrap();
        let text = match text.find("table = ") {
            Some(at) => format!("{}table = \"{name}\"\n", &text[..at]),
            None => format!("{text}table = \"{name}\"\n"),
        };
        fs::write(&config, text).unwrap();
    };
    rename("rip_two");
    net.run(&config, &["blocklist", "update"])
        .expect_code(0)
        .expect_said(
            "table inet reportedip removed: the blocklist now lives in table inet rip_two",
        );
    assert_eq!(tables(), "table inet rip_two\n");
    assert!(
        !net.reaches(LISTED),
        "the listed source passed after the move"
    );
    assert!(net.reaches(UNLISTED));
    // A rename that is then removed before any load: remove takes the table in force.
    rename("rip_three");
    net.run(&config, &["blocklist", "remove"])
        .expect_code(0)
        .expect_said("table inet rip_two removed");
    assert_eq!(tables(), "");
    assert!(net.reaches(LISTED));
}
