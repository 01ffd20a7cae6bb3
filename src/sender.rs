//! The spool sender: delivers spooled reports oldest first over one kept-alive connection,
//! holding the sender lock so that no report is ever sent by two processes. Runs detached
//! in the background (started by `report`) or in the foreground (`flush`).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::{Client, Delivery};
use crate::clock::Clock;
use crate::config::Config;
use crate::log::Logger;
use crate::outcome::{Status, sent_line};
use crate::spool::{Entry, Spool};
use crate::state::{Locked, StateDir};

/// Upper bound on lock-drain-recheck rounds of one background sender, so that a spool that
/// keeps refilling cannot keep one process alive forever (the next report starts another).
const MAX_ROUNDS: usize = 1000;
/// How long an idle sender waits for more reports before it exits: a burst of bans is then
/// delivered by one process over one kept-alive connection.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_POLL: Duration = Duration::from_millis(50);

/// Starts a background sender unless one is running. Best effort: if it cannot start, the
/// report stays in the spool for the next sender or `flush`.
pub fn ensure_running(state: &StateDir, config_path: &Path) {
    let Ok(Some(lock)) = state.try_sender_lock() else {
        return;
    };
    drop(lock);
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // Own process group and no inherited stdio: fail2ban neither waits for the sender nor
    // kills it with the action's process group.
    let _ = Command::new(exe)
        .arg("--config")
        .arg(config_path)
        .arg("send-spool")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}

/// Drops spooled reports beyond the configured limits, counting them in the held state;
/// returns how many were dropped and how many wait.
pub fn apply_limits(
    config: &Config,
    spool: &Spool,
    locked: &mut Locked,
    now: u64,
    log: &Logger,
) -> (u64, usize) {
    let (dropped, left) = spool
        .enforce_limits(config.spool_max, config.spool_max_age, now)
        .unwrap_or((0, 0));
    if dropped > 0 {
        locked.state.dropped += dropped;
        log.warn(&format!(
            "dropped {dropped} spooled report(s), oldest first (spool_max {}, spool_max_age {} s)",
            config.spool_max, config.spool_max_age
        ));
    }
    (dropped, left)
}

pub struct Sender<'a> {
    pub config: &'a Config,
    pub state: &'a StateDir,
    pub log: &'a Logger,
    pub client: Client,
    pub clock: Clock,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub sent: u64,
    pub rejected: u64,
    pub set_aside: u64,
    pub dropped: u64,
    /// Reports still in the spool at the end.
    pub waiting: usize,
    /// Why delivery stopped before the spool was empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Exit status for the stop reason (0 when the spool was emptied).
    #[serde(skip)]
    pub status: Option<Status>,
}

impl Sender<'_> {
    /// The detached sender's life: drain, release the lock, and look again, so that a report
    /// spooled while the lock was held is never left waiting without a sender.
    pub fn run_background(&self) {
        let spool = self.state.spool();
        for _ in 0..MAX_ROUNDS {
            let Ok(Some(lock)) = self.state.try_sender_lock() else {
                return;
            };
            loop {
                let summary = self.drain(false, &mut |_, _| {});
                if summary.stopped.is_some() {
                    return;
                }
                if !wait_for_more(&spool) {
                    break;
                }
            }
            drop(lock);
            if spool.is_empty() {
                return;
            }
            if self.state.peek().in_backoff((self.clock)()) {
                return;
            }
        }
    }

    /// `flush`: waits for a running sender, then delivers everything now, ignoring the
    /// backoff window, and stops at the first failure.
    pub fn flush(&self, progress: &mut dyn FnMut(u64, usize)) -> Summary {
        match self.state.wait_sender_lock() {
            Ok(_lock) => self.drain(true, progress),
            Err(err) => Summary {
                stopped: Some(err.to_string()),
                status: Some(Status::NotDelivered),
                waiting: self.state.spool().len(),
                ..Summary::default()
            },
        }
    }

    /// Delivers spooled reports until the spool is empty or a failure (or, unless
    /// `ignore_backoff`, the backoff window) stops it. The caller holds the sender lock.
    fn drain(&self, ignore_backoff: bool, progress: &mut dyn FnMut(u64, usize)) -> Summary {
        let spool = self.state.spool();
        let mut summary = Summary::default();
        'rounds: loop {
            let now = (self.clock)();
            match self.state.lock() {
                Ok(mut locked) => {
                    let (dropped, _) =
                        apply_limits(self.config, &spool, &mut locked, now, self.log);
                    if dropped > 0 {
                        summary.dropped += dropped;
                        let _ = locked.save();
                    }
                    if !ignore_backoff && locked.state.in_backoff(now) {
                        summary.stopped = Some(format!(
                            "API backoff ({})",
                            locked
                                .state
                                .backoff_reason
                                .as_deref()
                                .unwrap_or("earlier failure")
                        ));
                        summary.status = Some(Status::Kept);
                        break;
                    }
                }
                Err(err) => {
                    self.stop(&mut summary, Status::NotDelivered, err.to_string());
                    break;
                }
            }
            let batch = spool.entries().unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            let total = batch.len();
            for (index, entry) in batch.iter().enumerate() {
                progress(summary.sent + summary.rejected, total - index);
                if let Err(reason) = self.deliver_one(&spool, entry, ignore_backoff, &mut summary) {
                    self.stop(&mut summary, reason.0, reason.1);
                    break 'rounds;
                }
            }
        }
        summary.waiting = spool.len();
        summary
    }

    fn stop(&self, summary: &mut Summary, status: Status, reason: String) {
        summary.stopped = Some(reason);
        summary.status = Some(status);
    }

    /// Sends one spooled report and records what became of it; `Err` stops the drain.
    fn deliver_one(
        &self,
        spool: &Spool,
        entry: &Entry,
        ignore_backoff: bool,
        summary: &mut Summary,
    ) -> Result<(), (Status, String)> {
        let report = match spool.read(entry) {
            Ok(report) => report,
            // Dropped by the spool limits since the listing: nothing to do.
            Err(_) if !entry.path.exists() => return Ok(()),
            Err(why) => {
                self.set_aside(spool, entry, &why);
                summary.set_aside += 1;
                return Ok(());
            }
        };
        let now = (self.clock)();
        let delivery =
            self.client
                .send_report(&report.ip, &report.categories, &report.comment, now);
        let mut locked = self
            .state
            .lock()
            .map_err(|err| (Status::NotDelivered, err.to_string()))?;
        let result = match delivery {
            Delivery::Sent(receipt) => {
                let line = sent_line(
                    &report.ip,
                    report.jail.as_deref(),
                    &report.categories,
                    &receipt,
                );
                self.log.info(&line);
                locked.state.record_success(now, line);
                summary.sent += 1;
                let removed = spool.remove(entry);
                match (removed, receipt.quota_exhausted_until) {
                    (Err(err), _) => Err((
                        Status::NotDelivered,
                        format!(
                            "cannot remove delivered report {}: {err}",
                            entry.path.display()
                        ),
                    )),
                    (Ok(()), Some(until)) if !ignore_backoff => {
                        locked.state.hold_until(until, "daily report quota used up");
                        Err((Status::Kept, "daily report quota used up".to_string()))
                    }
                    (Ok(()), _) => Ok(()),
                }
            }
            Delivery::Rejected(msg) => {
                let line = format!("{} rejected by the API, not retried: {msg}", report.ip);
                self.log.error(&line);
                locked.state.record_error(now, line);
                summary.rejected += 1;
                spool
                    .remove(entry)
                    .map_err(|err| (Status::NotDelivered, err.to_string()))
            }
            Delivery::KeyRejected(msg) => {
                let reason = format!(
                    "API key refused ({msg}); fix api_key in {}, then run reportedip-report flush",
                    self.config.path.display()
                );
                self.fail(&mut locked, now, None, &reason);
                Err((Status::KeyRejected, reason))
            }
            Delivery::WrongUrl(msg) => {
                let reason = format!(
                    "{} not found ({msg}); check api_url in {}",
                    self.client.report_url(),
                    self.config.path.display()
                );
                self.fail(&mut locked, now, None, &reason);
                Err((Status::WrongUrl, reason))
            }
            Delivery::Transient(t) => {
                self.fail(&mut locked, now, t.retry_at, &t.reason);
                Err((Status::Kept, t.reason))
            }
        };
        let _ = locked.save();
        result
    }

    fn fail(&self, locked: &mut Locked, now: u64, retry_at: Option<u64>, reason: &str) {
        self.log.error(&format!("spooled reports kept: {reason}"));
        locked.state.start_backoff(now, retry_at, reason);
    }

    fn set_aside(&self, spool: &Spool, entry: &Entry, why: &str) {
        let moved = spool.set_aside(entry);
        let target = moved.as_ref().map_or_else(
            |err| format!("could not be moved: {err}"),
            |path| format!("moved to {}", path.display()),
        );
        self.log.error(&format!(
            "unreadable spool file {} ({why}) not sent; {target}",
            entry.path.display()
        ));
        if let Ok(mut locked) = self.state.lock() {
            locked.state.set_aside += 1;
            let _ = locked.save();
        }
        if moved.is_err() {
            // Never retry a file that cannot be moved: remove it rather than loop on it.
            let _ = spool.remove(entry);
        }
    }
}

/// Whether a report arrives in the spool within [`LINGER`].
fn wait_for_more(spool: &Spool) -> bool {
    let deadline = Instant::now() + LINGER;
    while Instant::now() < deadline {
        if !spool.is_empty() {
            return true;
        }
        std::thread::sleep(LINGER_POLL);
    }
    !spool.is_empty()
}
