//! The man page and shell completions are generated from the clap definition. The committed
//! copies under `dist/` must match; `UPDATE_GENERATED=1 cargo test --test generated` rewrites
//! them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;
use reportedip_report::cli::Cli;

const NAME: &str = "reportedip-report";

fn check(relative: &str, generated: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    if std::env::var("UPDATE_GENERATED").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{relative} is stale: run `UPDATE_GENERATED=1 cargo test --test generated` and commit"
    );
}

fn section(roff: &mut String, title: &str, body: &str) {
    roff.push_str(&format!(".SH \"{title}\"\n{body}\n"));
}

fn command_section(roff: &mut String, name: &str, command: &clap::Command) {
    let about = command
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default();
    roff.push_str(&format!(".SS \"{name}\"\n{about}\n"));
    let mut options = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render_options_section(&mut options)
        .unwrap();
    let options = String::from_utf8(options).unwrap();
    roff.push_str(&options.replacen(".SH OPTIONS\n", "", 1));
}

fn man_page() -> Vec<u8> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone()).date("2026-11-30");
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    man.render_name_section(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    man.render_description_section(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    // One section lists every command with its options, instead of pointing to per-command
    // pages that are not shipped.
    let mut roff = String::from(".SH COMMANDS\n");
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        command_section(&mut roff, sub.get_name(), sub);
        // `blocklist update`, `blocklist apply`, …: each with its own options.
        for nested in sub
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            let name = format!("{} {}", sub.get_name(), nested.get_name());
            command_section(&mut roff, &name, nested);
        }
    }
    section(
        &mut roff,
        "EXIT STATUS",
        "\\fBreport\\fR exits 0 in every case unless \\fB\\-\\-strict\\fR is given, so that a \
         failed report never delays or repeats a fail2ban ban. With \\fB\\-\\-strict\\fR, and for \
         the other commands:\n.TP\n0\nsent, deliberately skipped (cooldown, non\\-global address, \
         ignore list), or done\n.TP\n1\nnot delivered now: kept in the spool for retry\n.TP\n2\n\
         usage error or invalid input\n.TP\n3\nthe API rejected the report (HTTP 400/422); \\fBsetup\\fR: the drop\\-in would make \
         fail2ban's configuration test fail (nothing changed)\n.TP\n4\n\
         the key was refused or may not report\n.TP\n5\nconfiguration error\n.TP\n6\n\\fBsetup\\fR: fail2ban did not restart or confirm the action \
         (the previous files are back); \\fBblocklist\\fR: nft refused the script (the set in force \
         is unchanged)\n.TP\n7\n\
         \\fBstatus\\fR cannot read the state (\\fBstatus \\-\\-prometheus\\fR still exits 0 and \
         prints reportedip_state_readable 0)\n.TP\n8\n\\fBblocklist update\\fR refused the new list \
         (empty, shrunk, too large, checksum, parse); the set in force is unchanged\n.TP\n9\n\
         \\fBblocklist update\\fR could not download the feed; the set in force is unchanged",
    );
    section(
        &mut roff,
        "CONFIGURATION",
        "One TOML file (see FILES). Unknown keys are errors. Keys:\n\
         .TP\napi_key\nThe ReportedIP API key (required to send).\n\
         .TP\napi_url\nAPI base, https:// only (http:// for loopback); default \
         https://reportedip.com/wp\\-json/reportedip/v2.\n\
         .TP\ntimeout\nSeconds for one request, DNS and body included, 1\\-60; default 10.\n\
         .TP\ncategories\nLast\\-resort categories, \"18,22\" or [18, \"ssh\"].\n\
         .TP\ncomment\nComment template with {ip}, {jail}, {failures}; default \
         \"fail2ban {jail}: {failures} failed attempts\".\n\
         .TP\nignore\nNetworks never reported, e.g. [\"198.51.100.0/24\"].\n\
         .TP\nstate_dir\nThe state database; default /var/lib/reportedip\\-report.\n\
         .TP\ncooldown\nSeconds before one IP is reported again with the same categories; \
         default 86400.\n\
         .TP\nspool_max\nReports kept at most; default 10000.\n\
         .TP\nspool_max_age\nSeconds a report may wait; default 86400.\n\
         .TP\nsyslog\nAlso log to syslog; default true.\n\
         .TP\nca_file\nExtra trusted CA certificates (PEM).\n\
         .TP\nmetrics_file\nWhere flush writes the status \\-\\-prometheus metrics.\n\
         .TP\n[jail_categories]\nPer\\-jail categories, e.g. my\\-webapp = \"18,21\".\n\
         .TP\n[blocklist]\nThe community blocklist in nftables; nothing is fetched or blocked \
         without this section. Its keys: source (the feed's base URL, https://), lists \
         ([\"all\"] or thematic names), min_confidence (0\\-100, from the CSV), ipv6 (true), \
         table (\"reportedip\"; a table of that name that reportedip\\-report did not make is \
         never changed or deleted), hooks ([\"input\"], add \"forward\"), allow (networks \
         never blocked), max_age_days (7), max_shrink_percent (50), max_entries (500000).",
    );
    section(
        &mut roff,
        "FILES",
        ".TP\n/etc/reportedip/reportedip.toml\nConfiguration with the API key; must be mode 0600 \
         (not group\\- or world\\-accessible) and owned by the user or root.\n.TP\n\
         /var/lib/reportedip\\-report\nDefault state_dir: state.db (SQLite: spool, backoff, \
         cooldown, counters; readable with sqlite3 \\-readonly), inbox/, set\\-aside/.\n.TP\n\
         /etc/fail2ban/action.d/reportedip.conf\n\
         The fail2ban action.\n.TP\nstate_dir/blocklist\nThe last good blocklist, the \
         feed's validators, what is in force and the last attempt.\n.TP\n\
         reportedip\\-report\\-blocklist.timer, reportedip\\-report\\-blocklist\\-apply.service\n\
         The daily update, and the apply at boot and after every nftables.service restart.",
    );
    section(
        &mut roff,
        "ENVIRONMENT",
        ".TP\nREPORTEDIP_CONFIG\nConfiguration file, as \\fB\\-\\-config\\fR.\n.TP\n\
         REPORTEDIP_API_KEY\nOverrides api_key for one\\-off shell use. There is no option that \
         takes the key.\n.TP\nREPORTEDIP_SYSLOG_SOCKET\nSyslog socket instead of /dev/log.\n.TP\n\
         REPORTEDIP_RUNTIME_DIR\nWhere the backoff is kept while state_dir cannot be written \
         (default /run/reportedip\\-report).\n.TP\nSSL_CERT_FILE, SSL_CERT_DIR\nCA certificates \
         to trust instead of the system bundle; ca_file in the config adds to them.\n.TP\n\
         HTTPS_PROXY\nA proxy for the API, reached with CONNECT; the key travels inside TLS.",
    );
    section(
        &mut roff,
        "EXAMPLES",
        "Show what would be sent, without config or network:\n.PP\n.RS\n\
         reportedip\\-report report \\-\\-dry\\-run \\-\\-jail sshd \\-\\-failures 5 \\-\\- 45.155.205.233\n\
         .RE\n.PP\nWhat the fail2ban action runs:\n.PP\n.RS\n\
         reportedip\\-report report \\-\\-queue \\-\\-categories \"\" \\-\\-jail sshd \\-\\-failures 5 \
         \\-\\- 45.155.205.233\n.RE\n.PP\nCheck the key, then the spool:\n.PP\n.RS\n\
         reportedip\\-report verify\\-key\n.br\nreportedip\\-report status\n.RE\n.PP\n\
         Look an address up, and write metrics for node_exporter:\n.PP\n.RS\n\
         reportedip\\-report check \\-\\- 45.155.205.233\n.br\n\
         reportedip\\-report status \\-\\-prometheus > reportedip.prom.tmp\n.RE",
    );
    out.extend_from_slice(roff.as_bytes());
    man.render_version_section(&mut out).unwrap();
    out
}

#[test]
fn man_page_is_current() {
    let page = man_page();
    let text = String::from_utf8(page.clone()).unwrap();
    for heading in [
        "EXIT STATUS",
        "CONFIGURATION",
        "FILES",
        "ENVIRONMENT",
        "EXAMPLES",
    ] {
        assert!(
            text.contains(&format!(".SH \"{heading}\"")),
            "{heading} missing"
        );
    }
    assert!(text.contains(".SS \"report\"") && text.contains("\\-\\-dry\\-run"));
    check("dist/reportedip-report.1", &page);
}

/// The command as people use it: the hidden commands (run by the tool itself and by the
/// package) are not offered.
fn visible(cmd: clap::Command) -> clap::Command {
    let shown: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    clap::Command::new(NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned())
        .subcommands(shown)
}

#[test]
fn completions_are_current() {
    for (shell, file) in [
        (Shell::Bash, "dist/completions/reportedip-report.bash"),
        (Shell::Zsh, "dist/completions/_reportedip-report"),
        (Shell::Fish, "dist/completions/reportedip-report.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut visible(Cli::command()), NAME, &mut out);
        check(file, &out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("verify-key") && text.contains("dry-run"),
            "{shell}"
        );
        for hidden in ["send-spool", "upgrade-state"] {
            assert!(!text.contains(hidden), "{shell} offers the hidden {hidden}");
        }
    }
}
