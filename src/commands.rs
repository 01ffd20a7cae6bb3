//! The commands other than `report`: `verify-key`, `flush`, `status`, `categories`, and the
//! hidden background sender. Each returns its exit code.

use std::io::{IsTerminal, Write};

use serde_json::json;

use crate::api::Client;
use crate::categories::{CATEGORIES, JAIL_CATEGORIES};
use crate::cli::CheckArgs;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::delivery::Failure;
use crate::log::Logger;
use crate::outcome::{Status, exit};
use crate::pipeline::policy_skip;
use crate::sender::{Sender, Summary};
use crate::state::{Fallback, StateDir};
use crate::validate::parse_ip;
use crate::views::{BackoffView, CheckView, EventView, KeyView, QuotaView, StatusView};

/// Writes to stdout, ignoring a closed pipe (`| head` must not turn into a panic).
fn out(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn fail(message: &str, code: u8) -> u8 {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
    code
}

fn client(config: &Config) -> Result<Client, ConfigError> {
    let key = config.require_key()?.clone();
    Ok(Client::new(config, key))
}

/// An error as the command's output form has it: a JSON object on stdout, or a line on
/// stderr; returns `code`.
fn error_out(json: bool, message: &str, code: u8) -> u8 {
    if json {
        out(&json!({ "error": message, "exit_code": code }).to_string());
        code
    } else {
        fail(message, code)
    }
}

/// The config and a client for its API.
fn with_client(config: Result<Config, ConfigError>) -> Result<(Config, Client), ConfigError> {
    let config = config?;
    let client = client(&config)?;
    Ok((config, client))
}

pub fn verify_key(config: Result<Config, ConfigError>, json: bool, clock: Clock) -> u8 {
    let report_error = |message: String, code: u8| error_out(json, &message, code);
    let (config, client) = match with_client(config) {
        Ok(both) => both,
        Err(err) => return report_error(err.to_string(), exit::CONFIG),
    };
    let key = match client.verify_key(clock()) {
        Ok(key) => key,
        Err(failure) => {
            let message = format!("cannot verify the key: {}", failure.reason(&config.path));
            return report_error(message, failure.status().exit_code());
        }
    };
    let problems = KeyView::problems(&key);
    let view = KeyView {
        config: config.path.clone(),
        api_url: config.api_url.clone(),
        valid: key.valid == Some(true),
        can_report: problems.is_empty(),
        exit_code: if problems.is_empty() {
            exit::OK
        } else {
            exit::KEY
        },
        problems,
        key,
        roots: client.roots().to_string(),
        source: if config.file_found {
            config.path.display().to_string()
        } else {
            "(no file; key from the environment)".to_string()
        },
    };
    if json {
        out(&serde_json::to_string(&view).unwrap_or_default());
        return view.exit_code;
    }
    out(&view.to_string());
    for problem in &view.problems {
        let _ = writeln!(std::io::stderr().lock(), "warning: {problem}");
    }
    view.exit_code
}

/// Runs `job` with a sender for the configured state dir, or says what is missing.
fn with_sender(
    config: Result<Config, ConfigError>,
    clock: Clock,
    job: impl FnOnce(&Sender) -> u8,
) -> Result<u8, String> {
    let config = config.map_err(|err| err.to_string())?;
    let client = client(&config).map_err(|err| err.to_string())?;
    let state = StateDir::open(&config.state_dir).map_err(|err| err.to_string())?;
    // Per-report lines go to syslog only: `flush` shows a bar and the totals, and the
    // background sender's stderr is /dev/null.
    let log = Logger::new(false, config.syslog);
    Ok(job(&Sender {
        config: &config,
        state: &state,
        log: &log,
        client,
        clock,
        stuck: Default::default(),
    }))
}

pub fn flush(config: Result<Config, ConfigError>, clock: Clock) -> u8 {
    let flushed = with_sender(config, clock, |sender| {
        let summary = if std::io::stderr().is_terminal() {
            let summary = sender.flush(&mut progress_bar);
            let _ = write!(std::io::stderr(), "\r{:60}\r", "");
            summary
        } else {
            sender.flush(&mut |_, _| {})
        };
        out(&flush_line(&summary));
        if let Some(file) = &sender.config.metrics_file {
            write_metrics(sender.config, file, clock());
        }
        summary.status.map_or(exit::OK, Status::exit_code)
    });
    flushed.unwrap_or_else(|err| fail(&err, exit::CONFIG))
}

fn progress_bar(done: u64, remaining: usize) {
    const WIDTH: u64 = 30;
    let total = done + remaining as u64;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let bar = format!(
        "{}{}",
        "#".repeat(filled as usize),
        " ".repeat((WIDTH - filled) as usize)
    );
    let _ = write!(std::io::stderr(), "\r[{bar}] {done}/{total}");
}

fn flush_line(summary: &Summary) -> String {
    let mut line = format!(
        "flush: {} sent, {} rejected, {} set aside, {} dropped; {} waiting",
        summary.sent, summary.rejected, summary.set_aside, summary.dropped, summary.waiting
    );
    if let Some(why) = &summary.stopped {
        line.push_str(&format!("; stopped: {why}"));
    }
    line
}

/// The detached sender; its outcomes go to syslog and the state file.
pub fn send_spool(config: Result<Config, ConfigError>, clock: Clock) -> u8 {
    let sent = with_sender(config, clock, |sender| {
        sender.run_background();
        exit::OK
    });
    sent.unwrap_or(exit::CONFIG)
}

/// How `status` shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    Text,
    Json,
    /// node_exporter textfile-collector metrics.
    Prometheus,
}

pub fn status(config: Result<Config, ConfigError>, format: StatusFormat, clock: Clock) -> u8 {
    let config = match config {
        Ok(config) => config,
        Err(err) => return fail(&err.to_string(), exit::CONFIG),
    };
    let view = status_view(&config, clock());
    out(&match format {
        StatusFormat::Text => view.to_string(),
        StatusFormat::Json => serde_json::to_string(&view).unwrap_or_default(),
        StatusFormat::Prometheus => view.prometheus(),
    });
    exit::OK
}

/// What `status` shows, read without waiting for any lock.
pub fn status_view(config: &Config, now: u64) -> StatusView {
    let state_dir = StateDir::existing(&config.state_dir);
    let state = state_dir.peek();
    let spool = state_dir.spool();
    StatusView {
        state_dir: config.state_dir.clone(),
        waiting: spool.len(),
        oldest_age_secs: spool.oldest_age(now),
        backoff: BackoffView::of(&state, now),
        sender_running: matches!(state_dir.try_sender_lock(), Ok(None)),
        last_success: state.last_success.as_ref().map(EventView::from),
        last_error: state.last_error.as_ref().map(EventView::from),
        sent: state.sent,
        rejected: state.rejected,
        dropped: state.dropped,
        set_aside: spool.set_aside_count(),
        set_aside_total: state.set_aside,
        stale_temps_removed: state.stale_temps_removed,
        suspects: state.suspects.len(),
        cooldown_entries: state.cooldown.entries(now, config.cooldown),
        quota: QuotaView::of(&state, now),
    }
}

/// Replaces the metrics file whole (node_exporter must never read half of it), readable by
/// node_exporter; a failure is said, and changes nothing else.
fn write_metrics(config: &Config, file: &std::path::Path, now: u64) {
    let metrics = status_view(config, now).prometheus();
    if let Err(err) = crate::fsio::write_atomic_mode(file, metrics.as_bytes(), 0o644) {
        let _ = writeln!(
            std::io::stderr().lock(),
            "warning: cannot write metrics_file {}: {err}",
            file.display()
        );
    }
}

/// `check`: the IP's standing at ReportedIP. Addresses `report` would refuse are refused
/// here without spending a check, and a backoff window keeps it off the network.
pub fn check(config: Result<Config, ConfigError>, args: &CheckArgs, clock: Clock) -> u8 {
    let report_error = |message: String, code: u8| error_out(args.json, &message, code);
    let (config, client) = match with_client(config) {
        Ok(both) => both,
        Err(err) => return report_error(err.to_string(), exit::CONFIG),
    };
    let ip = match parse_ip(&args.ip) {
        Ok(ip) => ip,
        Err(err) => return report_error(format!("not checked: {err}"), exit::USAGE),
    };
    if let Some(why) = policy_skip(ip, &config) {
        let message = format!("not checked ({why}; report never sends it)");
        return report_error(message, exit::USAGE);
    }
    let now = clock();
    let state_dir = StateDir::existing(&config.state_dir);
    let backoff = state_dir
        .peek()
        .backoff_note(now)
        .or_else(|| Fallback::new().state(now).backoff_note(now));
    if let Some(note) = backoff {
        return report_error(format!("not checked: {note}"), exit::KEPT);
    }
    match client.check(ip, args.verbose, now) {
        Ok(info) => {
            let view = CheckView::new(ip, info, args.verbose);
            if args.json {
                out(&serde_json::to_string(&view).unwrap_or_default());
            } else {
                out(&view.to_string());
            }
            exit::OK
        }
        Err(failure) => {
            if matches!(
                failure,
                Failure::Transient { .. } | Failure::Certificate { .. }
            ) {
                record_failure(&config, &failure, now);
            }
            let message = format!("cannot check {ip}: {}", failure.reason(&config.path));
            report_error(message, failure.status().exit_code())
        }
    }
}

/// A check that found the API unreachable starts the backoff, as a report would.
fn record_failure(config: &Config, failure: &Failure, now: u64) {
    let Ok(state) = StateDir::open(&config.state_dir) else {
        return;
    };
    if let Ok(mut locked) = state.lock() {
        locked
            .state
            .start_backoff(now, failure.retry_at(), &failure.reason(&config.path));
        let _ = locked.save();
    }
}

pub fn categories() -> u8 {
    out("ID  NAME");
    for (id, name) in CATEGORIES {
        out(&format!("{id:>2}  {name}"));
    }
    out("\nJAIL             DEFAULT CATEGORIES");
    for (jail, ids) in JAIL_CATEGORIES {
        let ids: Vec<String> = ids.iter().map(u8::to_string).collect();
        out(&format!("{jail:<16} {}", ids.join(",")));
    }
    exit::OK
}
