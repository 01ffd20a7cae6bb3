//! The commands other than `report`: `verify-key`, `flush`, `status`, `categories`, and the
//! hidden background sender. Each returns its exit code.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::api::Client;
use crate::categories::{CATEGORIES, JAIL_CATEGORIES};
use crate::cli::CheckArgs;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::delivery::Failure;
use crate::error::Error;
use crate::fallback::Fallback;
use crate::log::Logger;
use crate::outcome::{Status, exit};
use crate::pipeline::policy_skip;
use crate::sender::{Sender, Summary};
use crate::state::State;
use crate::store::Store;
use crate::validate::parse_ip;
use crate::views::{BackoffView, CheckView, EventView, KeyView, QuotaView, StatusView};

/// Writes to stdout, ignoring a closed pipe (`| head` must not turn into a panic).
pub(crate) fn out(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// A warning on stderr, ignoring a closed pipe.
pub(crate) fn warn(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "warning: {text}");
}

/// The config's warnings (an old `api_url` mended at load), said by every command.
fn warn_about(config: &Config) {
    for warning in &config.warnings {
        warn(warning);
    }
}

/// The config and a client for its API.
fn with_client(config: Result<Config, ConfigError>) -> Result<(Config, Client), Error> {
    let config = config?;
    warn_about(&config);
    let key = config.require_key()?.clone();
    let client = Client::new(&config, key);
    Ok((config, client))
}

pub fn verify_key(
    config: Result<Config, ConfigError>,
    json: bool,
    clock: Clock,
) -> Result<u8, Error> {
    let (config, client) = with_client(config)?;
    let key = client
        .verify_key(clock())
        .map_err(|failure| Error::Failed {
            message: format!("cannot verify the key: {}", failure.reason(&config.path)),
            code: failure.status().exit_code(),
        })?;
    end_backoff(&config, clock());
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
        return Ok(view.exit_code);
    }
    out(&view.to_string());
    for problem in &view.problems {
        warn(problem);
    }
    Ok(view.exit_code)
}

/// Runs `job` with a sender for the configured state dir.
fn with_sender(
    config: Result<Config, ConfigError>,
    clock: Clock,
    job: impl FnOnce(&Sender) -> u8,
) -> Result<u8, Error> {
    let (config, client) = with_client(config)?;
    let store = Store::open(&config.state_dir, clock())?;
    // Per-report lines go to syslog only: `flush` shows a bar and the totals, and the
    // background sender's stderr is /dev/null.
    let log = Logger::new(false, config.syslog);
    for note in &store.notes {
        log.warn(note);
    }
    Ok(job(&Sender {
        config: &config,
        store: std::cell::RefCell::new(store),
        log: &log,
        client,
        clock,
    }))
}

pub fn flush(config: Result<Config, ConfigError>, clock: Clock) -> Result<u8, Error> {
    if let Ok(loaded) = &config
        && nothing_waits_for_a_key(loaded, clock())
    {
        warn_about(loaded);
        out(&format!(
            "flush: nothing waiting; no API key is set yet in {} (reportedip-report setup sets it)",
            loaded.path.display()
        ));
        return Ok(exit::OK);
    }
    with_sender(config, clock, |sender| {
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
    })
}

/// A fresh install has no key yet, and its timer must not fail every ten minutes over it; once
/// a ban waits for the key, the failure is what tells the admin.
fn nothing_waits_for_a_key(config: &Config, now: u64) -> bool {
    config.require_key().is_err()
        && status_view(config, now).is_ok_and(|view| view.waiting == 0 && view.held == 0)
}

fn progress_bar(done: u64, remaining: u64) {
    const WIDTH: u64 = 30;
    let total = done + remaining;
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
pub fn send_spool(config: Result<Config, ConfigError>, clock: Clock) -> Result<u8, Error> {
    with_sender(config, clock, |sender| {
        sender.run_background();
        exit::OK
    })
}

/// How `status` shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    Text,
    Json,
    /// node_exporter textfile-collector metrics.
    Prometheus,
}

/// `status`: a state it cannot read is an error (exit 7), except for `--prometheus`, which
/// prints a full set with `reportedip_state_readable 0`, so that a textfile pipeline updates
/// and the alert fires instead of seeing a healthy zero.
pub fn status(
    config: Result<Config, ConfigError>,
    format: StatusFormat,
    clock: Clock,
) -> Result<u8, Error> {
    let config = match config {
        Ok(config) => config,
        Err(err) => return Err(with_held(err)),
    };
    warn_about(&config);
    let view = match status_view(&config, clock()) {
        Ok(view) => view,
        Err(why) if format == StatusFormat::Prometheus => {
            let _ = writeln!(std::io::stderr().lock(), "{why}");
            StatusView {
                state_dir: config.state_dir.clone(),
                ..StatusView::default()
            }
        }
        Err(why) => return Err(Error::StateUnreadable(why)),
    };
    out(&match format {
        StatusFormat::Text => view.to_string(),
        StatusFormat::Json => serde_json::to_string(&view).unwrap_or_default(),
        StatusFormat::Prometheus => view.prometheus(),
    });
    Ok(exit::OK)
}

/// A config error, with the bans kept meanwhile, if any: they wait for the fix.
fn with_held(err: ConfigError) -> Error {
    let path = err.path().map_or_else(
        || PathBuf::from(crate::config::DEFAULT_CONFIG_PATH),
        Path::to_path_buf,
    );
    let dir = crate::config::state_dir_hint(&path);
    let held = Store::open_existing(&dir)
        .ok()
        .flatten()
        .and_then(|mut store| store.read(|tx| tx.held_summary()).ok())
        .map_or(0, |(count, _)| count);
    if held == 0 {
        return Error::Config(err);
    }
    Error::Failed {
        message: format!(
            "{err}\n{held} ban(s) that arrived meanwhile are kept in {} and will be sent once \
             the config is fixed",
            dir.display()
        ),
        code: exit::CONFIG,
    }
}

/// What `status` shows, read in one read transaction without waiting for any writer; why
/// the state cannot be read, if it cannot.
pub fn status_view(config: &Config, now: u64) -> Result<StatusView, String> {
    let dir = &config.state_dir;
    let unreadable = |why: String| {
        format!(
            "cannot read the state in {}: {why}; run status as the user that reports (root), \
             or fix the directory's owner and mode",
            dir.display()
        )
    };
    let mut view = StatusView {
        state_dir: dir.clone(),
        state_readable: true,
        ..StatusView::default()
    };
    let Some(mut store) = Store::open_existing(dir).map_err(|err| unreadable(err.to_string()))?
    else {
        return Ok(view);
    };
    let inbox = store.inbox();
    let inbox_files = inbox.entries().unwrap_or_default();
    let read = store.read(|tx| {
        // A file imported a moment ago is removed just after its transaction: count it once.
        let mut waiting_files = 0;
        for entry in &inbox_files {
            let name = entry
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            if !tx.spooled_from(name.as_deref().unwrap_or_default())? {
                waiting_files += 1;
            }
        }
        Ok((
            waiting_files,
            tx.state()?,
            tx.spool_len()?,
            tx.spool_oldest()?,
            tx.set_aside_len()?,
            tx.suspects()?,
            tx.cooldown_entries(now, config.cooldown)?,
            tx.held_summary()?,
        ))
    });
    let (in_inbox, state, spooled, oldest, set_aside, suspects, cooldown, (held, held_because)) =
        read.map_err(|err| unreadable(err.to_string()))?;
    view.held = held;
    view.held_because = held_because;
    view.waiting = spooled + in_inbox;
    view.inbox = in_inbox;
    view.oldest_age_secs = oldest.map(|at| now.saturating_sub(at));
    view.backoff = BackoffView::of(&state, now);
    view.sender_running = matches!(
        store.sender_lock_within(std::time::Duration::ZERO),
        Ok(None)
    );
    view.last_success = state.last_success.as_ref().map(EventView::from);
    view.last_error = state.last_error.as_ref().map(EventView::from);
    view.sent = state.sent;
    view.rejected = state.rejected;
    view.dropped = state.dropped;
    view.set_aside = set_aside + inbox.set_aside_count() as u64;
    view.set_aside_total = state.set_aside;
    view.stale_temps_removed = state.stale_temps_removed;
    view.suspects = suspects;
    view.cooldown_entries = cooldown;
    view.quota = QuotaView::of(&state, now);
    Ok(view)
}

/// Replaces the metrics file whole (node_exporter must never read half of it), readable by
/// node_exporter; a failure is said, and changes nothing else. Its directory is trusted like
/// `state_dir`: one that another user can change (swap for a link into a root-only place, or
/// for a FIFO) is not written to.
fn write_metrics(config: &Config, file: &Path, now: u64) {
    let warn = |why: String| {
        warn(&format!(
            "metrics_file {} not written: {why}",
            file.display()
        ))
    };
    let dir = file.parent().unwrap_or(Path::new("/"));
    if let Some(why) = crate::fsio::untrusted_dir(dir) {
        return warn(format!(
            "{why}; use a directory only root can write to, e.g. chown root: {} && chmod 755 {}",
            dir.display(),
            dir.display()
        ));
    }
    let view = status_view(config, now).unwrap_or_else(|_| StatusView {
        state_dir: config.state_dir.clone(),
        ..StatusView::default()
    });
    if let Err(err) = crate::fsio::write_atomic_mode(file, view.prometheus().as_bytes(), 0o644) {
        warn(err.to_string());
    }
}

/// `check`: the IP's standing at ReportedIP. Addresses `report` would refuse are refused
/// here without spending a check, and an API backoff keeps it off the network (a used-up
/// *report* quota does not: checks have their own).
pub fn check(
    config: Result<Config, ConfigError>,
    args: &CheckArgs,
    clock: Clock,
) -> Result<u8, Error> {
    let (config, client) = with_client(config)?;
    let ip = parse_ip(&args.ip).map_err(|err| Error::Usage(format!("not checked: {err}")))?;
    if let Some(why) = policy_skip(ip, &config) {
        return Err(Error::Usage(format!(
            "not checked ({why}; report never sends it)"
        )));
    }
    let now = clock();
    let stored = Store::open_existing(&config.state_dir)
        .ok()
        .flatten()
        .and_then(|mut store| store.read(|tx| tx.state()).ok())
        .unwrap_or_default();
    let backoff = api_backoff(&stored, now)
        .or_else(|| api_backoff(&Fallback::new(&config.state_dir).state(now), now));
    if let Some(note) = backoff {
        return Err(Error::Failed {
            message: format!("not checked: {note}"),
            code: exit::KEPT,
        });
    }
    match client.check(ip, args.verbose, now) {
        Ok(info) => {
            let view = CheckView::new(ip, info, args.verbose);
            if args.json {
                out(&serde_json::to_string(&view).unwrap_or_default());
            } else {
                out(&view.to_string());
            }
            Ok(exit::OK)
        }
        Err(failure) => {
            if matches!(
                failure,
                Failure::Transient { .. } | Failure::Certificate { .. }
            ) {
                record_failure(&config, &failure, now);
            }
            Err(Error::Failed {
                message: format!("cannot check {ip}: {}", failure.reason(&config.path)),
                code: failure.status().exit_code(),
            })
        }
    }
}

/// The backoff that keeps `check` off the network: the API's, not the report quota's.
fn api_backoff(state: &State, now: u64) -> Option<String> {
    if state.quota_held(now) {
        return None;
    }
    state.backoff_note(now)
}

/// The API answered: a backoff an earlier failure started (the old address, an outage) ends,
/// so waiting reports go out with the next sender instead of an hour later. Best effort: a
/// state that cannot be written changes nothing here.
fn end_backoff(config: &Config, now: u64) {
    if !config.state_dir.exists() {
        return;
    }
    let Ok(mut store) = Store::open(&config.state_dir, now) else {
        return;
    };
    let _ = store.write(|tx| {
        let (mut state, _) = tx.load(now)?;
        if state.in_backoff(now) && !state.quota_held(now) {
            state.end_backoff();
        }
        state.api_url = Some(config.api_url.clone());
        tx.save(&state)
    });
}

/// A check that found the API unreachable starts the backoff, as a report would.
fn record_failure(config: &Config, failure: &Failure, now: u64) {
    let Ok(mut store) = Store::open(&config.state_dir, now) else {
        return;
    };
    let _ = store.write(|tx| {
        let (mut state, _) = tx.load(now)?;
        state.start_backoff(now, failure.retry_at(), &failure.reason(&config.path));
        tx.save(&state)
    });
}

/// `upgrade-state` (the package's postinst): imports 0.1's files into the store, saying
/// what it did.
pub fn upgrade_state(config: Result<Config, ConfigError>, clock: Clock) -> Result<u8, Error> {
    let config = config?;
    let store = Store::open(&config.state_dir, clock())?;
    for note in &store.notes {
        out(note);
    }
    Ok(exit::OK)
}

pub fn categories() -> Result<u8, Error> {
    out("ID  NAME");
    for (id, name) in CATEGORIES {
        out(&format!("{id:>2}  {name}"));
    }
    out("\nJAIL             DEFAULT CATEGORIES");
    for (jail, ids) in JAIL_CATEGORIES {
        let ids: Vec<String> = ids.iter().map(u8::to_string).collect();
        out(&format!("{jail:<16} {}", ids.join(",")));
    }
    Ok(exit::OK)
}
