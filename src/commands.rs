//! The commands other than `report`: `verify-key`, `flush`, `status`, `categories`, and the
//! hidden background sender. Each returns its exit code.

use std::io::{IsTerminal, Write};

use serde_json::json;

use crate::api::{Client, Delivery, KeyInfo};
use crate::categories::{CATEGORIES, JAIL_CATEGORIES};
use crate::clock::{self, Clock};
use crate::config::{Config, ConfigError};
use crate::log::Logger;
use crate::outcome::{Status, exit};
use crate::sender::{Sender, Summary};
use crate::state::StateDir;

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
    Ok(Client::new(&config.api_url, key, config.timeout))
}

pub fn verify_key(config: Result<Config, ConfigError>, json: bool, clock: Clock) -> u8 {
    let report_error = |message: String, code: u8| {
        if json {
            out(&json!({ "error": message, "exit_code": code }).to_string());
            code
        } else {
            fail(&message, code)
        }
    };
    let config = match config {
        Ok(config) => config,
        Err(err) => return report_error(err.to_string(), exit::CONFIG),
    };
    let client = match client(&config) {
        Ok(client) => client,
        Err(err) => return report_error(err.to_string(), exit::CONFIG),
    };
    let info = match client.verify_key(clock()) {
        Ok(info) => info,
        Err(failure) => {
            let (message, code) = match failure {
                Delivery::KeyRejected(msg) | Delivery::Rejected(msg) => {
                    (format!("API key refused: {msg}"), exit::KEY)
                }
                Delivery::WrongUrl(msg) => (
                    format!(
                        "{}/verify-key not found ({msg}); check api_url in {}",
                        config.api_url,
                        config.path.display()
                    ),
                    exit::CONFIG,
                ),
                Delivery::Transient(t) => {
                    (format!("cannot verify the key: {}", t.reason), exit::KEPT)
                }
                Delivery::Sent(_) => ("unexpected answer".to_string(), exit::KEPT),
            };
            return report_error(message, code);
        }
    };
    let problems = key_problems(&info);
    let code = if problems.is_empty() {
        exit::OK
    } else {
        exit::KEY
    };
    if json {
        out(&json!({
            "config": config.path,
            "api_url": config.api_url,
            "valid": info.valid.unwrap_or(false),
            "can_report": problems.is_empty(),
            "problems": problems,
            "key": info,
            "exit_code": code,
        })
        .to_string());
        return code;
    }
    let source = if config.file_found {
        config.path.display().to_string()
    } else {
        "(no file; key from the environment)".to_string()
    };
    out(&format!("config:      {source}"));
    out(&format!("api_url:     {}", config.api_url));
    out(&format!(
        "key valid:   {}",
        if info.valid == Some(true) {
            "yes"
        } else {
            "no"
        }
    ));
    out(&format!(
        "key name:    {}",
        info.key_name.as_deref().unwrap_or("-")
    ));
    out(&format!(
        "role:        {}",
        info.user_role.as_deref().unwrap_or("-")
    ));
    out(&format!(
        "permissions: {}",
        info.permissions
            .as_ref()
            .map_or("-".to_string(), |p| p.join(", "))
    ));
    if let Some(limits) = &info.limits {
        out(&format!("reports:     {}", report_usage(limits)));
        if let Some(remaining) = limits.remaining_api_calls {
            let of = limits
                .daily_api_limit
                .filter(|l| *l >= 0)
                .map_or(String::new(), |l| format!(" of {l}"));
            out(&format!("api calls:   {remaining} remaining{of} today"));
        }
    }
    for problem in &problems {
        let _ = writeln!(std::io::stderr().lock(), "warning: {problem}");
    }
    code
}

/// `12 used of 50 today, 38 remaining, resets 2026-12-01T00:00:00+00:00`
fn report_usage(limits: &crate::api::Limits) -> String {
    let used = limits
        .daily_report_usage
        .map_or("?".to_string(), |u| u.to_string());
    let mut text = match limits.daily_report_limit {
        Some(limit) if limit >= 0 => format!("{used} used of {limit} today"),
        _ => format!("{used} used today (no daily limit)"),
    };
    if let Some(remaining) = limits.remaining_reports.filter(|r| *r >= 0) {
        text.push_str(&format!(", {remaining} remaining"));
    }
    if let Some(reset) = &limits.reset_time {
        text.push_str(&format!(", resets {reset}"));
    }
    text
}

/// Reasons this key cannot report, empty when it can.
fn key_problems(info: &KeyInfo) -> Vec<String> {
    let mut problems = Vec::new();
    if info.valid != Some(true) {
        problems.push("the API says this key is not valid".to_string());
    }
    if let Some(permissions) = &info.permissions
        && !permissions
            .iter()
            .any(|p| p.to_ascii_lowercase().contains("report"))
    {
        problems.push("this key has no report permission".to_string());
    }
    if info.limits.as_ref().and_then(|l| l.daily_report_limit) == Some(0) {
        problems.push("this key's daily report limit is 0: it may not report".to_string());
    }
    problems
}

fn open_state(config: &Config) -> Result<StateDir, u8> {
    StateDir::open(&config.state_dir).map_err(|err| fail(&err.to_string(), exit::CONFIG))
}

pub fn flush(config: Result<Config, ConfigError>, clock: Clock) -> u8 {
    let config = match config {
        Ok(config) => config,
        Err(err) => return fail(&err.to_string(), exit::CONFIG),
    };
    let client = match client(&config) {
        Ok(client) => client,
        Err(err) => return fail(&err.to_string(), exit::CONFIG),
    };
    let state = match open_state(&config) {
        Ok(state) => state,
        Err(code) => return code,
    };
    // Per-report lines go to syslog only; the terminal gets a bar and the totals.
    let log = Logger::new(false, config.syslog);
    let sender = Sender {
        config: &config,
        state: &state,
        log: &log,
        client,
        clock,
    };
    let summary = if std::io::stderr().is_terminal() {
        let summary = sender.flush(&mut progress_bar);
        let _ = write!(std::io::stderr(), "\r{:60}\r", "");
        summary
    } else {
        sender.flush(&mut |_, _| {})
    };
    out(&flush_line(&summary));
    summary.status.map_or(exit::OK, Status::exit_code)
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
    let Ok(config) = config else {
        return exit::CONFIG;
    };
    let Ok(client) = client(&config) else {
        return exit::CONFIG;
    };
    let Ok(state) = StateDir::open(&config.state_dir) else {
        return exit::CONFIG;
    };
    let log = Logger::new(false, config.syslog);
    Sender {
        config: &config,
        state: &state,
        log: &log,
        client,
        clock,
    }
    .run_background();
    exit::OK
}

pub fn status(config: Result<Config, ConfigError>, json: bool, clock: Clock) -> u8 {
    let config = match config {
        Ok(config) => config,
        Err(err) => return fail(&err.to_string(), exit::CONFIG),
    };
    let now = clock();
    let state_dir = StateDir::existing(&config.state_dir);
    let state = state_dir.peek();
    let spool = state_dir.spool();
    let waiting = spool.len();
    let oldest = spool.oldest_age(now);
    let sender_running = matches!(state_dir.try_sender_lock(), Ok(None));
    let in_backoff = state.in_backoff(now);
    let cooldown = state.cooldown_entries(now, config.cooldown);
    let set_aside = spool.set_aside_count();
    if json {
        out(&json!({
            "state_dir": config.state_dir,
            "waiting": waiting,
            "oldest_age_secs": oldest,
            "backoff": {
                "active": in_backoff,
                "until": in_backoff.then(|| clock::format_utc(state.backoff_until)),
                "until_epoch": in_backoff.then_some(state.backoff_until),
                "reason": state.backoff_reason.as_ref().filter(|_| in_backoff),
            },
            "sender_running": sender_running,
            "last_success": state.last_success.as_ref().map(|e| json!({"at": clock::format_utc(e.at), "message": e.message})),
            "last_error": state.last_error.as_ref().map(|e| json!({"at": clock::format_utc(e.at), "message": e.message})),
            "dropped": state.dropped,
            "set_aside": set_aside,
            "cooldown_entries": cooldown,
        })
        .to_string());
        return exit::OK;
    }
    out(&format!("state_dir:    {}", config.state_dir.display()));
    let oldest = oldest.map_or(String::new(), |age| {
        format!(", oldest {} old", clock::format_span(age))
    });
    out(&format!("spool:        {waiting} waiting{oldest}"));
    if in_backoff {
        out(&format!(
            "backoff:      until {} (in {}): {}",
            clock::format_utc(state.backoff_until),
            clock::format_span(state.backoff_until - now),
            state.backoff_reason.as_deref().unwrap_or("-")
        ));
    } else {
        out("backoff:      none");
    }
    out(&format!(
        "sender:       {}",
        if sender_running {
            "running"
        } else {
            "not running"
        }
    ));
    for (label, event) in [
        ("last success", &state.last_success),
        ("last error", &state.last_error),
    ] {
        let text = event.as_ref().map_or("-".to_string(), |e| {
            format!("{} {}", clock::format_utc(e.at), e.message)
        });
        out(&format!("{label:<13} {text}"));
    }
    out(&format!(
        "dropped:      {} (spool_max / spool_max_age)",
        state.dropped
    ));
    out(&format!(
        "set aside:    {set_aside} unreadable spool file(s)"
    ));
    out(&format!("cooldown:     {cooldown} IP(s)"));
    exit::OK
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
