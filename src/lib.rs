//! Report fail2ban bans to the ReportedIP community blacklist without blocking a ban or
//! losing a report.
//!
//! Modules, one concern each: [`cli`] (arguments), [`config`] (the TOML file),
//! [`validate`] (IP, networks, comment), [`categories`], [`report`] (one typed report),
//! [`api`] (HTTP client), [`delivery`] (the failure model: what each answer means),
//! [`pipeline`] (the `report` command), [`spool`], [`state`] and [`cooldown`] (what is kept on disk),
//! [`fsio`] (atomic writes), [`trust`] (TLS roots), [`sender`] (background and `flush` delivery), [`commands`] and
//! [`views`] (the other subcommands and what they show), [`outcome`] (statuses and exit
//! codes), [`log`] (stderr and syslog).

pub mod api;
pub mod categories;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod cooldown;
pub mod delivery;
pub mod fsio;
pub mod log;
pub mod outcome;
pub mod pipeline;
pub mod report;
pub mod secret;
pub mod sender;
pub mod spool;
pub mod state;
pub mod trust;
pub mod validate;
pub mod views;

use std::io::Write;

use cli::{Cli, Command};
use clock::Clock;

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli, clock: Clock) -> u8 {
    let env_key = config::env_key();
    match cli.command {
        Command::Report(args) => {
            let config = config::load(&cli.config, env_key, args.dry_run);
            let outcome = pipeline::run(config, &args, pipeline::Runtime::new(clock));
            let mut stdout = std::io::stdout().lock();
            if args.json {
                let json = serde_json::to_string(&outcome).unwrap_or_default();
                let _ = writeln!(stdout, "{json}");
            } else if outcome.status == outcome::Status::DryRun {
                let _ = writeln!(stdout, "{}", outcome.message);
            }
            if args.strict {
                outcome.exit_code
            } else {
                outcome::exit::OK
            }
        }
        Command::VerifyKey { json } => {
            commands::verify_key(config::load(&cli.config, env_key, false), json, clock)
        }
        Command::Flush => commands::flush(config::load(&cli.config, env_key, false), clock),
        Command::Status { json, prometheus } => {
            let format = match (json, prometheus) {
                (true, _) => commands::StatusFormat::Json,
                (_, true) => commands::StatusFormat::Prometheus,
                _ => commands::StatusFormat::Text,
            };
            commands::status(config::load(&cli.config, env_key, true), format, clock)
        }
        Command::Check(args) => {
            commands::check(config::load(&cli.config, env_key, false), &args, clock)
        }
        Command::Categories => commands::categories(),
        Command::SendSpool => {
            commands::send_spool(config::load(&cli.config, env_key, false), clock)
        }
    }
}
