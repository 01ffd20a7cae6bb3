//! The command line, as clap derives it; the man page and completions are generated from it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

#[derive(Debug, Parser)]
#[command(
    name = "reportedip-report",
    version,
    about = "Report fail2ban bans to the ReportedIP community blacklist",
    long_about = "Report fail2ban bans to the ReportedIP community blacklist.\n\n\
        Called from fail2ban's actionban (action.d/reportedip.conf) or by hand. The API key is \
        read from a mode 0600 config file, never from the command line. `report` always exits 0 \
        unless --strict is given, so a failed report never blocks a ban; reports that cannot be \
        delivered now are kept in a spool and sent later.",
    after_help = "Exit status: 0 done or skipped, 1 kept for retry, 2 invalid input, \
        3 rejected by the API (setup: the drop-in would break fail2ban's test), 4 key rejected, \
        5 configuration error, 6 fail2ban did not restart or confirm (nft refused the blocklist), \
        7 state unreadable, 8 blocklist refused, 9 blocklist download failed."
)]
pub struct Cli {
    /// Configuration file
    #[arg(
        short,
        long,
        global = true,
        value_name = "FILE",
        env = "REPORTEDIP_CONFIG",
        default_value = DEFAULT_CONFIG_PATH
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report an attacking IP address (what fail2ban's actionban runs)
    Report(ReportArgs),
    /// Check the config and the API key; show the key's permissions and daily report usage
    VerifyKey {
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Deliver spooled reports now, oldest first, in the foreground
    Flush,
    /// Show the spool, backoff, quota and last outcomes
    Status {
        /// Print one JSON object instead of text
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Print node_exporter textfile-collector metrics (reportedip_*) instead of text
        #[arg(long)]
        prometheus: bool,
    },
    /// Look an IP address up at ReportedIP (costs one of the day's checks)
    Check(CheckArgs),
    /// List the category IDs and names
    Categories,
    /// Check the key (from standard input, or a prompt) and add the action to fail2ban's jails
    Setup(SetupArgs),
    /// Block with community data: the ReportedIP blocklist in nftables
    #[command(subcommand)]
    Blocklist(BlocklistCommand),
    /// Deliver the spool in the background (started by `report`)
    #[command(hide = true)]
    SendSpool,
    /// Import 0.1's state files into the state database (run by the package on upgrade)
    #[command(hide = true)]
    UpgradeState,
}

impl Cli {
    /// Whether the command's output is JSON, so that an error is printed as JSON too.
    pub fn wants_json(&self) -> bool {
        match &self.command {
            Command::VerifyKey { json } | Command::Status { json, .. } => *json,
            Command::Check(args) => args.json,
            Command::Blocklist(BlocklistCommand::Status { json, .. }) => *json,
            Command::Report(args) => args.json,
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BlocklistCommand {
    /// Download the feed, verify, filter and load it (exit 8 refused, 9 download failed)
    Update {
        /// Load a list that shrank by more than max_shrink_percent
        #[arg(long)]
        force: bool,
        /// fail2ban's configuration directory, whose jails' ignoreip are never blocked
        /// [default: /etc/fail2ban]
        #[arg(long, value_name = "DIR")]
        fail2ban_dir: Option<PathBuf>,
    },
    /// Load the saved list again, without the network (boot; after a firewall reload)
    Apply,
    /// Show what is in force, what was left out and why, and what was dropped
    Status {
        /// Print one JSON object instead of text
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Print node_exporter textfile-collector metrics
        #[arg(long)]
        prometheus: bool,
    },
    /// Delete the blocklist's table; the saved list stays
    Remove,
    /// Print the nft script that apply would load
    Print,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Jails to wire: `all` (every enabled jail that has categories) or `NAME,NAME`
    #[arg(long, value_name = "all|NAME,…")]
    pub jails: Option<String>,
    /// Show the drop-in and what each jail would get; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Remove the drop-in, test and restart fail2ban
    #[arg(long)]
    pub undo: bool,
    /// Do not ask before writing
    #[arg(long)]
    pub yes: bool,
    /// Wire the jails even when fail2ban's configuration fails its test already
    #[arg(long)]
    pub force: bool,
    /// fail2ban's configuration directory
    #[arg(long, value_name = "DIR", default_value = "/etc/fail2ban")]
    pub fail2ban_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// IPv4 or IPv6 address to look up
    #[arg(value_name = "IP")]
    pub ip: String,

    /// Ask for the detailed answer (recent reports)
    #[arg(long)]
    pub verbose: bool,

    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// IPv4 or IPv6 address to report (put `--` before it when it comes from elsewhere)
    #[arg(value_name = "IP")]
    pub ip: String,

    /// Comma-separated category IDs or names, e.g. `18,22` or `ssh,brute-force`
    /// [default: the jail's categories, then `categories` in the config]
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub categories: Option<String>,

    /// fail2ban jail name (picks default categories and fills the comment)
    #[arg(long, value_name = "NAME", allow_hyphen_values = true, value_parser = lossy_text())]
    pub jail: Option<String>,

    /// Number of failures that led to the ban (fills the comment)
    #[arg(long, value_name = "N")]
    pub failures: Option<u64>,

    /// Comment sent with the report instead of the config's template
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true, value_parser = lossy_text())]
    pub comment: Option<String>,

    /// Queue the report and return at once; a background sender delivers it
    #[arg(long)]
    pub queue: bool,

    /// Validate and print what would be sent; no network, no state change
    #[arg(long)]
    pub dry_run: bool,

    /// Exit with a non-zero status when the report was not delivered (for scripts)
    #[arg(long)]
    pub strict: bool,

    /// Print one JSON object describing the outcome on stdout
    #[arg(long)]
    pub json: bool,
}

/// Text that may come from the attacker (a user name in a fail2ban tag) and so may not be
/// UTF-8: taken with invalid bytes replaced, rather than losing the ban's report over it.
fn lossy_text() -> impl clap::builder::TypedValueParser<Value = String> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().map(|text| text.to_string_lossy().into_owned())
}

/// Whether raw arguments ask for a `report` and whether `--strict` is among them. Used only
/// when clap itself rejects the arguments, to keep `report`'s exit-0 promise to fail2ban.
pub fn report_invocation(args: &[std::ffi::OsString]) -> Option<bool> {
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    let mut command = None;
    while let Some(word) = words.next() {
        if word == "-c" || word == "--config" {
            words.next();
            continue;
        }
        if word.starts_with('-') {
            continue;
        }
        command = Some(word);
        break;
    }
    if command.as_deref() != Some("report") {
        return None;
    }
    let strict = words.take_while(|w| w != "--").any(|w| w == "--strict");
    Some(strict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
        args.iter().map(Into::into).collect()
    }

    #[test]
    fn report_invocations_are_recognised() {
        assert_eq!(
            report_invocation(&os(&["x", "report", "--bogus"])),
            Some(false)
        );
        assert_eq!(
            report_invocation(&os(&["x", "-c", "f", "report", "--strict"])),
            Some(true)
        );
        assert_eq!(
            report_invocation(&os(&["x", "report", "--", "--strict"])),
            Some(false)
        );
        assert_eq!(
            report_invocation(&os(&["x", "-c", "report", "flush"])),
            None
        );
        assert_eq!(
            report_invocation(&os(&["x", "verify-key", "--bogus"])),
            None
        );
    }
}
