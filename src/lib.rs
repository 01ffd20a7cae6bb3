//! Report fail2ban bans to the ReportedIP community blacklist without blocking a ban or
//! losing a report.
//!
//! Modules, one concern each: [`cli`] (arguments), [`config`] (the TOML file),
//! [`validate`] (IP, networks, comment), [`categories`], [`report`] (one typed report),
//! [`api`] (HTTP client), [`delivery`] (the failure model: what each answer means),
//! [`route`] (where one report goes) and [`pipeline`] (the `report` command around it),
//! [`drain`] (how the spool is worked through) and [`sender`] (background and `flush`
//! delivery around it), [`store`] (the SQLite state), [`state`] (backoff, quota and counters
//! as pure decisions), [`cooldown`], [`inbox`] (reports written while the store is held),
//! [`migrate`] (0.1's files), [`setup`] (wiring fail2ban), [`blocklist`] (the community
//! blocklist's decisions) with [`feed`], [`firewall`] and [`blocking`] (its commands), [`fallback`] (the backoff when `state_dir` cannot be written),
//! [`fsio`] (atomic writes, trusted files), [`trust`] (TLS roots), [`commands`] and
//! [`views`] (the other subcommands and what they show), [`outcome`] (statuses and exit
//! codes), [`error`] (the one error type), [`log`] (stderr and syslog).

pub mod api;
pub mod blocking;
pub mod blocklist;
pub mod categories;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod cooldown;
pub mod delivery;
pub mod drain;
pub mod error;
pub mod fallback;
pub mod feed;
pub mod firewall;
pub mod fsio;
pub mod inbox;
pub mod log;
pub mod migrate;
pub mod outcome;
pub mod pipeline;
pub mod prometheus;
pub mod report;
pub mod route;
pub mod secret;
pub mod sender;
pub mod setup;
pub mod state;
pub mod store;
pub mod trust;
pub mod validate;
pub mod views;

use std::io::Write;

use cli::{Cli, Command};
use clock::Clock;

/// Runs a parsed command line; the exit code, or the one error to print.
pub fn run(cli: Cli, clock: Clock) -> Result<u8, error::Error> {
    let env_key = config::env_key();
    match cli.command {
        Command::Report(args) => {
            let config = config::load(&cli.config, env_key, args.dry_run);
            let request = pipeline::Request {
                ip: args.ip,
                ban: report::Ban {
                    categories: args.categories,
                    jail: args.jail,
                    failures: args.failures,
                    comment: args.comment,
                },
                queue: args.queue,
                dry_run: args.dry_run,
            };
            let outcome = pipeline::run(config, &request, pipeline::Runtime::new(clock));
            let mut stdout = std::io::stdout().lock();
            if args.json {
                let json = serde_json::to_string(&outcome).unwrap_or_default();
                let _ = writeln!(stdout, "{json}");
            } else if outcome.status == outcome::Status::DryRun {
                let _ = writeln!(stdout, "{}", outcome.message);
            }
            Ok(if args.strict {
                outcome.exit_code
            } else {
                outcome::exit::OK
            })
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
        Command::Blocklist(command) => {
            let config = config::load(&cli.config, env_key, true)?;
            match command {
                cli::BlocklistCommand::Update {
                    force,
                    fail2ban_dir,
                } => blocking::update(
                    &config,
                    force,
                    fail2ban_dir.as_deref(),
                    config.timeout * 6,
                    clock,
                ),
                cli::BlocklistCommand::Apply => blocking::apply(&config, clock),
                cli::BlocklistCommand::Status { json, prometheus } => {
                    let format = match (json, prometheus) {
                        (true, _) => commands::StatusFormat::Json,
                        (_, true) => commands::StatusFormat::Prometheus,
                        _ => commands::StatusFormat::Text,
                    };
                    blocking::status(&config, format, clock)
                }
                cli::BlocklistCommand::Remove => blocking::remove(&config),
                cli::BlocklistCommand::Print => blocking::print(&config),
            }
        }
        Command::Setup(args) => setup::run(
            &setup::Options {
                config_path: cli.config.clone(),
                fail2ban_dir: args.fail2ban_dir,
                jails: args.jails,
                dry_run: args.dry_run,
                undo: args.undo,
                yes: args.yes,
                force: args.force,
            },
            clock,
        ),
        Command::SendSpool => {
            commands::send_spool(config::load(&cli.config, env_key, false), clock)
        }
        Command::UpgradeState => {
            commands::upgrade_state(config::load(&cli.config, env_key, true), clock)
        }
    }
}
