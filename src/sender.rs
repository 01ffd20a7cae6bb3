//! The spool sender: delivers spooled reports oldest first (newest first when more wait than
//! the daily quota has left) over one kept-alive connection,
//! holding the sender lock so that no report is ever sent by two processes. Runs detached
//! in the background (started by `report`) or in the foreground (`flush`).

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::Client;
use crate::clock::Clock;
use crate::clock::format_span;
use crate::config::Config;
use crate::delivery::{Delivery, Failure, describe};
use crate::log::Logger;
use crate::outcome::Status;
use crate::spool::{Entry, Spool, SpoolError};
use crate::state::{Locked, State, StateDir, Suspect};

/// Upper bound on lock-drain-recheck rounds of one background sender, so that a spool that
/// keeps refilling cannot keep one process alive forever (the next report starts another).
const MAX_ROUNDS: usize = 1000;
/// How long an idle sender waits for more reports before it exits: a burst of bans is then
/// delivered by one process over one kept-alive connection.
const LINGER: Duration = Duration::from_secs(1);
/// Test knob: the linger in milliseconds, so that test suites need not wait a second for
/// every sender to end. Not for production use.
pub const LINGER_ENV: &str = "REPORTEDIP_SENDER_LINGER_MS";
const LINGER_POLL: Duration = Duration::from_millis(20);
/// How long a new sender tries for the sender lock: long enough to outlast a probe, short
/// enough that a sender finding another one at work leaves at once.
const FRESH_LOCK_WAIT: Duration = Duration::from_millis(250);

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
    locked.state.waiting = left as u64;
    (dropped, left)
}

/// Temp files older than this were left by a writer that died (`kill -9` mid-write).
const STALE_TEMP: Duration = Duration::from_secs(60);

pub struct Sender<'a> {
    pub config: &'a Config,
    pub state: &'a StateDir,
    pub log: &'a Logger,
    pub client: Client,
    pub clock: Clock,
    /// Entries that could be neither read, set aside nor removed: passed over for the rest
    /// of this process's life instead of retried in a loop.
    pub stuck: RefCell<HashSet<PathBuf>>,
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

/// What one delivery came to, for the drain.
enum Step {
    /// Sent (`delivered`), or rejected, set aside or gone: nothing left to decide.
    Done { delivered: bool },
    /// A transient failure, not yet recorded.
    Failed(Box<Pending>),
}

/// A report whose send failed transiently, not yet judged: if the next report fails too,
/// the API is down; if it goes through, this report is suspect.
struct Pending {
    entry: Entry,
    ip: IpAddr,
    delivery: Delivery,
    line: String,
    now: u64,
}

/// A suspect is set aside after this many attempts of its own ...
pub const SUSPECT_ATTEMPTS: u32 = 5;
/// ... spread over at least this long (seconds).
pub const SUSPECT_SPAN: u64 = 3600;
/// Its first retry waits this long, doubling after each attempt, up to [`SUSPECT_SPAN`].
const SUSPECT_FIRST_WAIT: u64 = 60;

fn entry_name(entry: &Entry) -> String {
    entry
        .path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Why a drain ends before the spool is empty.
struct Stop {
    status: Status,
    reason: String,
}

impl Sender<'_> {
    /// The detached sender's life: drain, release the lock, and look again, so that a report
    /// spooled while the lock was held is never left waiting without a sender.
    pub fn run_background(&self) {
        let spool = self.state.spool();
        let linger = linger();
        for _ in 0..MAX_ROUNDS {
            let Ok(Some(lock)) = self.state.sender_lock_within(FRESH_LOCK_WAIT) else {
                return;
            };
            // Reports a drain leaves behind on purpose (suspects waiting for their own next
            // try, entries that cannot be touched): only more than these is new work.
            let mut left;
            loop {
                let summary = self.drain(false, &mut |_, _| {});
                if summary.stopped.is_some() {
                    return;
                }
                left = summary.waiting;
                if !wait_for_more(&spool, linger, left) {
                    break;
                }
            }
            drop(lock);
            if !more_than(&spool, left) || self.state.peek().in_backoff((self.clock)()) {
                return;
            }
        }
    }

    /// Delivers what waits now, honouring the backoff window, as one round of a background
    /// sender does; the caller holds the sender lock (or, in a simulation, needs none).
    pub fn deliver_waiting(&self) -> Summary {
        self.drain(false, &mut |_, _| {})
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
        if let Err(stop) = self.drain_rounds(&spool, ignore_backoff, progress, &mut summary) {
            summary.stopped = Some(stop.reason);
            summary.status = Some(stop.status);
        }
        summary.waiting = spool.len();
        summary
    }

    fn drain_rounds(
        &self,
        spool: &Spool,
        ignore_backoff: bool,
        progress: &mut dyn FnMut(u64, usize),
        summary: &mut Summary,
    ) -> Result<(), Stop> {
        let stale = spool.remove_stale_temps(STALE_TEMP);
        if stale > 0 {
            self.log.warn(&format!(
                "removed {stale} temp file(s) in {} left by an interrupted write",
                spool.dir().display()
            ));
            let mut locked = self.lock()?;
            locked.state.stale_temps_removed += stale;
            let _ = locked.save();
        }
        let mut tried = HashSet::new();
        loop {
            let now = (self.clock)();
            let mut locked = self.lock()?;
            if locked.state.spool_shift != 0 {
                // Queue times follow the clock that was set, so no report ages out for it.
                spool.shift_queue_times(locked.state.spool_shift);
                locked.state.spool_shift = 0;
                let _ = locked.save();
            }
            let (dropped, _) = apply_limits(self.config, spool, &mut locked, now, self.log);
            if dropped > 0 {
                summary.dropped += dropped;
                let _ = locked.save();
            }
            check_backoff(&locked.state, now, ignore_backoff)?;
            let quota_left = locked.state.quota_left(now);
            locked
                .state
                .suspects
                .retain(|name, _| spool.dir().join(name).exists());
            let suspects = locked.state.suspects.clone();
            drop(locked);
            let mut batch = spool.entries().unwrap_or_default();
            batch.retain(|entry| !self.stuck.borrow().contains(&entry.path));
            if batch.is_empty() {
                return Ok(());
            }
            // More waiting than today's quota allows: fresh attacks are worth it most, and
            // the stale ones age out through spool_max_age.
            if quota_left.is_some_and(|left| batch.len() as u64 > left) {
                batch.reverse();
            }
            let total = batch.len();
            let mut progressed = false;
            let mut pending: Option<Box<Pending>> = None;
            for (index, entry) in batch.iter().enumerate() {
                // A suspect waits for its own next try, except for `flush`, which was asked
                // to deliver everything now.
                let waits = suspects
                    .get(&entry_name(entry))
                    .is_some_and(|s| s.next_try > now);
                // Each report is tried once per drain; later rounds are for new arrivals.
                if (waits && !ignore_backoff) || !tried.insert(entry.path.clone()) {
                    continue;
                }
                progressed = true;
                progress(summary.sent + summary.rejected, total - index);
                match self.deliver_one(spool, entry, ignore_backoff, summary)? {
                    Step::Done { delivered: true } => {
                        if let Some(failed) = pending.take() {
                            self.suspect(spool, failed, summary)?;
                        }
                    }
                    Step::Done { delivered: false } => {}
                    // Two in a row: the API is down, not this report.
                    Step::Failed(failed) if pending.is_some() => return Err(self.outage(failed)),
                    Step::Failed(failed) => pending = Some(failed),
                }
            }
            if let Some(failed) = pending {
                return Err(self.outage(failed));
            }
            // Everything left waits for its own next try.
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Two transient failures in a row, or one with no report after it to tell: the API is
    /// down. The backoff starts, and the drain stops.
    fn outage(&self, failed: Box<Pending>) -> Stop {
        if let Ok(mut locked) = self.lock() {
            locked
                .state
                .record(&failed.delivery, &failed.line, failed.now);
            let _ = locked.save();
        }
        self.log
            .error(&format!("spooled reports kept: {}", failed.line));
        Stop {
            status: Status::Kept,
            reason: failed.line,
        }
    }

    /// A report that failed while the next one went through: it keeps its own attempt
    /// count and next try, and after [`SUSPECT_ATTEMPTS`] attempts over at least
    /// [`SUSPECT_SPAN`] it is set aside, so that it never holds up the others.
    fn suspect(
        &self,
        spool: &Spool,
        failed: Box<Pending>,
        summary: &mut Summary,
    ) -> Result<(), Stop> {
        let mut locked = self.lock()?;
        let now = failed.now;
        let name = entry_name(&failed.entry);
        let record = locked
            .state
            .suspects
            .entry(name.clone())
            .or_insert(Suspect {
                attempts: 0,
                first_failed: now,
                next_try: now,
            });
        record.attempts += 1;
        let wait = (SUSPECT_FIRST_WAIT << record.attempts.min(6)).min(SUSPECT_SPAN);
        record.next_try = now + wait;
        let (attempts, span) = (record.attempts, now.saturating_sub(record.first_failed));
        if attempts >= SUSPECT_ATTEMPTS && span >= SUSPECT_SPAN {
            locked.state.suspects.remove(&name);
            let _ = locked.save();
            drop(locked);
            let why = format!(
                "failed {attempts} times over {} while other reports went through (last: {})",
                format_span(span),
                failed.line
            );
            self.set_aside(spool, &failed.entry, &SpoolError::Suspect(why));
            summary.set_aside += 1;
            return Ok(());
        }
        let _ = locked.save();
        self.log.warn(&format!(
            "{} failed alone ({}) while other reports went through; attempt {attempts}, next \
             try in {}",
            failed.ip,
            failed.line,
            format_span(wait)
        ));
        Ok(())
    }

    fn lock(&self) -> Result<Locked, Stop> {
        let locked = self.state.lock().map_err(|err| Stop {
            status: Status::NotDelivered,
            reason: err.to_string(),
        })?;
        if let Some(problem) = &locked.problem {
            self.log.warn(problem);
        }
        let mut locked = locked;
        for note in locked.state.check_clock((self.clock)()) {
            self.log.warn(&note);
        }
        Ok(locked)
    }

    /// Sends one spooled report and records what became of it; `Err` stops the drain. A
    /// transient failure is handed back unrecorded: the next report decides what it means.
    fn deliver_one(
        &self,
        spool: &Spool,
        entry: &Entry,
        ignore_backoff: bool,
        summary: &mut Summary,
    ) -> Result<Step, Stop> {
        let report = match spool.read(entry) {
            Ok(report) => report,
            Err(SpoolError::Gone) => return Ok(Step::Done { delivered: false }),
            Err(why) => {
                self.set_aside(spool, entry, &why);
                summary.set_aside += 1;
                return Ok(Step::Done { delivered: false });
            }
        };
        let now = (self.clock)();
        let delivery = self.client.send_report(&report, now);
        let line = describe(&report, &delivery, &self.config.path);
        if let Err(Failure::Transient { .. }) = &delivery {
            return Ok(Step::Failed(Box::new(Pending {
                entry: entry.clone(),
                ip: report.ip,
                delivery,
                line,
                now,
            })));
        }
        let mut locked = self.lock()?;
        locked.state.record(&delivery, &line, now);
        let result = match &delivery {
            Err(failure) if failure.keeps_report() => {
                self.log.error(&format!("spooled reports kept: {line}"));
                Err(Stop {
                    status: failure.status(),
                    reason: line,
                })
            }
            done => {
                if done.is_ok() {
                    self.log.info(&line);
                    summary.sent += 1;
                } else {
                    self.log.error(&line);
                    summary.rejected += 1;
                }
                locked.state.waiting = locked.state.waiting.saturating_sub(1);
                locked.state.suspects.remove(&entry_name(entry));
                spool.remove(entry).map_err(|err| Stop {
                    status: Status::NotDelivered,
                    reason: format!(
                        "cannot remove delivered report {}: {err}",
                        entry.path.display()
                    ),
                })
            }
        };
        let _ = locked.save();
        result?;
        check_backoff(&locked.state, now, ignore_backoff)?;
        Ok(Step::Done {
            delivered: delivery.is_ok(),
        })
    }

    fn set_aside(&self, spool: &Spool, entry: &Entry, why: &SpoolError) {
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
        if moved.is_err() && spool.discard(entry).is_err() {
            // Neither moved nor removed: leave it be for this run rather than loop on it.
            self.stuck.borrow_mut().insert(entry.path.clone());
        }
    }
}

/// Stops a drain while the backoff window is open, unless it ignores the window (`flush`);
/// a used-up quota holds even `flush`, since every request would be refused and counted.
fn check_backoff(state: &State, now: u64, ignore_backoff: bool) -> Result<(), Stop> {
    match state.backoff_note(now) {
        Some(note) if !ignore_backoff || state.quota_held(now) => Err(Stop {
            status: Status::Kept,
            reason: note,
        }),
        _ => Ok(()),
    }
}

fn linger() -> Duration {
    std::env::var(LINGER_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(LINGER, Duration::from_millis)
}

/// Whether the spool holds more than `left` reports; cheap when `left` is 0.
fn more_than(spool: &Spool, left: usize) -> bool {
    match left {
        0 => !spool.is_empty(),
        _ => spool.len() > left,
    }
}

/// Whether more than `left` reports wait within `linger`.
fn wait_for_more(spool: &Spool, linger: Duration, left: usize) -> bool {
    let deadline = Instant::now() + linger;
    while Instant::now() < deadline {
        if more_than(spool, left) {
            return true;
        }
        std::thread::sleep(LINGER_POLL);
    }
    more_than(spool, left)
}
