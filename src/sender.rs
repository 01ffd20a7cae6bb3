//! The spool sender: delivers spooled reports over one kept-alive connection, holding the
//! sender lock so that no report is ever sent by two processes. Runs detached in the
//! background (started by `report`) or in the foreground (`flush`). What it decides is
//! [`crate::drain`]; this is the I/O around it: one short transaction to pick and claim a
//! report, the request, one to settle it.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::Client;
use crate::clock::{Clock, format_span};
use crate::config::Config;
use crate::delivery::{Delivery, describe};
use crate::drain::{self, Next, Suspect};
use crate::log::Logger;
use crate::outcome::Status;
use crate::report::Report;
use crate::state::State;
use crate::store::{self, Store, StoreError, Txn};

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
pub fn ensure_running(state_dir: &Path, config_path: &Path) {
    let Ok(Some(lock)) = store::sender_lock_within(state_dir, Duration::ZERO) else {
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

pub struct Sender<'a> {
    pub config: &'a Config,
    pub store: std::cell::RefCell<Store>,
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
    /// Reports still waiting at the end.
    pub waiting: u64,
    /// Why delivery stopped before the spool was empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Exit status for the stop reason (0 when the spool was emptied).
    #[serde(skip)]
    pub status: Option<Status>,
}

/// Why a drain ends before the spool is empty.
struct Stop {
    status: Status,
    reason: String,
}

impl From<StoreError> for Stop {
    fn from(err: StoreError) -> Self {
        Stop {
            status: Status::NotDelivered,
            reason: err.to_string(),
        }
    }
}

/// A report whose send failed transiently, not yet judged: if the next report fails too,
/// the API is down; if it goes through, this report is suspect.
struct Held {
    id: i64,
    report: Report,
    delivery: Delivery,
    line: String,
    now: u64,
}

/// A report picked and claimed for sending.
enum Pick {
    Send(i64, Report),
    /// Gone, waiting for its own next try, or set aside: nothing to send.
    Skip,
    /// The quota changed the order: start a new round.
    Reorder,
}

impl Sender<'_> {
    /// The detached sender's life: drain, release the lock, and look again, so that a report
    /// spooled while the lock was held is never left waiting without a sender.
    pub fn run_background(&self) {
        let linger = linger();
        for _ in 0..MAX_ROUNDS {
            let dir = self.store.borrow().dir().to_path_buf();
            let Ok(Some(lock)) = store::sender_lock_within(&dir, FRESH_LOCK_WAIT) else {
                return;
            };
            // Reports a drain leaves behind on purpose (suspects waiting for their own next
            // try): only more than these is new work.
            let mut left;
            loop {
                let summary = self.drain(false, &mut |_, _| {});
                if summary.stopped.is_some() {
                    return;
                }
                left = summary.waiting;
                if !self.wait_for_more(linger, left) {
                    break;
                }
            }
            drop(lock);
            let now = (self.clock)();
            let held = self
                .store
                .borrow_mut()
                .read(|tx| tx.state())
                .map_or(true, |state| state.in_backoff(now));
            if !self.more_than(left) || held {
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
    pub fn flush(&self, progress: &mut dyn FnMut(u64, u64)) -> Summary {
        let lock = self.store.borrow().wait_sender_lock();
        match lock {
            Ok(_lock) => self.drain(true, progress),
            Err(err) => Summary {
                stopped: Some(format!("cannot take the sender lock: {err}")),
                status: Some(Status::NotDelivered),
                waiting: self.waiting().unwrap_or_default(),
                ..Summary::default()
            },
        }
    }

    /// Reports waiting: in the spool and in the inbox.
    fn waiting(&self) -> Result<u64, StoreError> {
        let mut store = self.store.borrow_mut();
        let inbox = store.inbox().len() as u64;
        Ok(store.read(|tx| tx.spool_len())? + inbox)
    }

    /// Delivers spooled reports until the spool is empty or a failure (or, unless
    /// `ignore_backoff`, the backoff window) stops it. The caller holds the sender lock.
    fn drain(&self, ignore_backoff: bool, progress: &mut dyn FnMut(u64, u64)) -> Summary {
        let mut summary = Summary::default();
        if let Err(stop) = self.drain_rounds(ignore_backoff, progress, &mut summary) {
            summary.stopped = Some(stop.reason);
            summary.status = Some(stop.status);
        }
        match self.waiting() {
            Ok(waiting) => summary.waiting = waiting,
            // Never a silent 0: the count is unknown, and said.
            Err(err) if summary.stopped.is_none() => {
                summary.stopped = Some(format!("cannot count what waits: {err}"));
                summary.status = Some(Status::NotDelivered);
            }
            Err(_) => {}
        }
        summary
    }

    fn drain_rounds(
        &self,
        ignore_backoff: bool,
        progress: &mut dyn FnMut(u64, u64),
        summary: &mut Summary,
    ) -> Result<(), Stop> {
        let mut tried = HashSet::new();
        loop {
            let (ids, newest_first) = self.plan(ignore_backoff, summary)?;
            let batch: Vec<i64> = ids.into_iter().filter(|id| !tried.contains(id)).collect();
            if batch.is_empty() {
                return Ok(());
            }
            let total = batch.len() as u64;
            let mut held: Option<Held> = None;
            for (index, id) in batch.into_iter().enumerate() {
                tried.insert(id);
                progress(summary.sent + summary.rejected, total - index as u64);
                let (id, report) = match self.pick(id, ignore_backoff, newest_first, summary)? {
                    Pick::Send(id, report) => (id, report),
                    Pick::Skip => continue,
                    Pick::Reorder => {
                        tried.remove(&id);
                        break;
                    }
                };
                let now = (self.clock)();
                let delivery = self.client.send_report(&report, now);
                let line = describe(&report, &delivery, &self.config.path);
                match drain::next(&delivery, held.is_some()) {
                    Next::Done => {
                        self.settle(id, &delivery, &line, now, summary)?;
                        if let Some(failed) = held.take() {
                            self.suspect(failed, summary)?;
                        }
                    }
                    Next::Hold => {
                        held = Some(Held {
                            id,
                            report,
                            delivery,
                            line,
                            now,
                        });
                    }
                    Next::Outage | Next::Stop => {
                        return Err(self.stop(&delivery, line, now));
                    }
                }
            }
            if let Some(failed) = held {
                return Err(self.stop(&failed.delivery, failed.line, failed.now));
            }
        }
    }

    /// The start of a round: waiting files imported, the limits applied, the backoff
    /// checked, and the waiting reports in delivery order.
    fn plan(&self, ignore_backoff: bool, summary: &mut Summary) -> Result<(Vec<i64>, bool), Stop> {
        let now = (self.clock)();
        let config = self.config;
        let mut store = self.store.borrow_mut();
        let inbox = store.inbox();
        let mut notes = Vec::new();
        let planned = store.write(|tx| {
            let (mut state, clock_notes) = tx.load(now)?;
            notes.extend(clock_notes);
            if state.note_api_url(&config.api_url, now) {
                notes.push("api_url changed: the backoff the old one earned has ended".into());
            }
            let imported = inbox.import(tx, &mut state, config.cooldown, now)?;
            notes.extend(imported.notes);
            notes.extend(admit_held(tx, config, now)?);
            let dropped = tx.spool_limit(config.spool_max as u64, config.spool_max_age, now)?;
            state.dropped += dropped;
            tx.save(&state)?;
            let waiting = tx.spool_len()?;
            let newest = drain::newest_first(waiting, state.quota_left(now));
            let ids = match drain::held(&state, now, ignore_backoff) {
                Some(note) => Err(note),
                None => Ok(tx.spool_ids(newest)?),
            };
            Ok((imported.files, dropped, ids, newest))
        })?;
        let (files, dropped, ids, newest) = planned;
        // The imported files go only once their reports are on disk in the store.
        if !files.is_empty() {
            store.sync()?;
        }
        for file in &files {
            let _ = inbox.remove(file);
        }
        for note in notes {
            self.log.warn(&note);
        }
        if dropped > 0 {
            summary.dropped += dropped;
            self.log.warn(&format!(
                "dropped {dropped} spooled report(s), oldest first (spool_max {}, spool_max_age {} s)",
                config.spool_max, config.spool_max_age
            ));
        }
        let ids = ids.map_err(|note| Stop {
            status: Status::Kept,
            reason: note,
        })?;
        Ok((ids, newest))
    }

    /// Reads and claims one report, unless the backoff now holds sending, the quota now
    /// wants the other order, it waits for its own next try, or it cannot be sent (then it
    /// is set aside).
    fn pick(
        &self,
        id: i64,
        ignore_backoff: bool,
        newest_first: bool,
        summary: &mut Summary,
    ) -> Result<Pick, Stop> {
        let now = (self.clock)();
        let mut held = None;
        let mut set_aside = None;
        let pick = self.store.borrow_mut().write(|tx| {
            let (state, _) = tx.load(now)?;
            if let Some(note) = drain::held(&state, now, ignore_backoff) {
                held = Some(note);
                return Ok(Pick::Skip);
            }
            if drain::newest_first(tx.spool_len()?, state.quota_left(now)) != newest_first {
                return Ok(Pick::Reorder);
            }
            let Some(row) = tx.spool_row(id)? else {
                return Ok(Pick::Skip);
            };
            if drain::waits(row.next_try, now, ignore_backoff) {
                return Ok(Pick::Skip);
            }
            match row.report {
                Ok(report) => {
                    tx.spool_claim(id, now)?;
                    Ok(Pick::Send(id, report))
                }
                Err(why) => {
                    let why = format!("not a valid report: {why}");
                    set_aside_row(tx, state, id, &why, now)?;
                    set_aside = Some(why);
                    Ok(Pick::Skip)
                }
            }
        })?;
        if let Some(note) = held {
            return Err(Stop {
                status: Status::Kept,
                reason: note,
            });
        }
        if let Some(why) = set_aside {
            summary.set_aside += 1;
            self.log.error(&format!(
                "spooled report {id} set aside, not sent ({why}); see the set_aside table"
            ));
        }
        Ok(pick)
    }

    /// Records a report that is done with: sent or refused for good.
    fn settle(
        &self,
        id: i64,
        delivery: &Delivery,
        line: &str,
        now: u64,
        summary: &mut Summary,
    ) -> Result<(), Stop> {
        let mut store = self.store.borrow_mut();
        store.write(|tx| {
            let (mut state, _) = tx.load(now)?;
            state.record(delivery, line, now);
            tx.spool_remove(id)?;
            tx.save(&state)
        })?;
        // A removal lost to a power cut would send the report again.
        store.sync()?;
        drop(store);
        if delivery.is_ok() {
            self.log.info(line);
            summary.sent += 1;
        } else {
            self.log.error(line);
            summary.rejected += 1;
        }
        Ok(())
    }

    /// A failure that ends the drain: recorded (it starts the backoff), and the report kept.
    fn stop(&self, delivery: &Delivery, line: String, now: u64) -> Stop {
        let recorded = self.store.borrow_mut().write(|tx| {
            let (mut state, _) = tx.load(now)?;
            state.record(delivery, &line, now);
            tx.save(&state)
        });
        if let Err(err) = recorded {
            self.log.warn(&err.to_string());
        }
        self.log.error(&format!("spooled reports kept: {line}"));
        let status = delivery
            .as_ref()
            .err()
            .map_or(Status::Kept, |failure| failure.status());
        Stop {
            status,
            reason: line,
        }
    }

    /// A report that failed while the next one went through: it keeps its own attempt
    /// count and next try, and after [`drain::SUSPECT_ATTEMPTS`] attempts over at least
    /// [`drain::SUSPECT_SPAN`] it is set aside, so that it never holds up the others.
    fn suspect(&self, failed: Held, summary: &mut Summary) -> Result<(), Stop> {
        let now = failed.now;
        let verdict = self.store.borrow_mut().write(|tx| {
            let Some(row) = tx.spool_row(failed.id)? else {
                return Ok(None);
            };
            let verdict = drain::suspect(row.suspect_attempts, row.first_failed, now);
            match verdict {
                Suspect::Retry {
                    attempts,
                    first_failed,
                    next_try,
                } => tx.spool_suspect(failed.id, attempts, first_failed, next_try)?,
                Suspect::SetAside { attempts, span } => {
                    let why = format!(
                        "failed {attempts} times over {} while other reports went through \
                         (last: {})",
                        format_span(span),
                        failed.line
                    );
                    let (state, _) = tx.load(now)?;
                    set_aside_row(tx, state, failed.id, &why, now)?;
                }
            }
            Ok(Some(verdict))
        })?;
        match verdict {
            Some(Suspect::Retry {
                attempts, next_try, ..
            }) => self.log.warn(&format!(
                "{} failed alone ({}) while other reports went through; attempt {attempts}, \
                 next try in {}",
                failed.report.ip,
                failed.line,
                format_span(next_try.saturating_sub(now))
            )),
            Some(Suspect::SetAside { attempts, span }) => {
                summary.set_aside += 1;
                self.log.error(&format!(
                    "{} set aside, not sent: failed {attempts} times over {} while other \
                     reports went through (last: {}); see the set_aside table",
                    failed.report.ip,
                    format_span(span),
                    failed.line
                ));
            }
            None => {}
        }
        Ok(())
    }

    /// Whether more than `left` reports wait (spool or inbox). A store that cannot be read
    /// ends this sender; the reports stay for the next one (or `flush`), which says why.
    fn more_than(&self, left: u64) -> bool {
        self.waiting().is_ok_and(|waiting| waiting > left)
    }

    /// Whether more than `left` reports wait within `linger`.
    fn wait_for_more(&self, linger: Duration, left: u64) -> bool {
        let deadline = Instant::now() + linger;
        while Instant::now() < deadline {
            if self.more_than(left) {
                return true;
            }
            std::thread::sleep(LINGER_POLL);
        }
        self.more_than(left)
    }
}

/// Bans kept while the config could not be used, decided again now that it works: the ignore
/// list, the categories and the cooldown of this config apply. What became of each, said.
fn admit_held(tx: &Txn, config: &Config, now: u64) -> rusqlite::Result<Vec<String>> {
    let mut notes = Vec::new();
    for held in tx.held()? {
        tx.unhold(held.id)?;
        let request = crate::pipeline::Request {
            ip: held.ip.clone(),
            ban: held.ban,
            queue: true,
            dry_run: false,
        };
        let report = match crate::pipeline::admit(config, &request, held.queued_at.min(now)) {
            Ok(report) => report,
            Err(outcome) => {
                notes.push(format!(
                    "ban held while the config was broken: {}",
                    outcome.message
                ));
                continue;
            }
        };
        let ip = report.ip.to_string();
        let seen = tx.cooldown_of(&ip)?;
        if crate::cooldown::covered_since(&seen, &report.categories, now, config.cooldown).is_some()
        {
            notes.push(format!(
                "ban of {ip} held while the config was broken: already reported within the cooldown"
            ));
            continue;
        }
        tx.spool_add(&report)?;
        tx.note_cooldown(&ip, &report.categories, now, config.cooldown)?;
        notes.push(format!(
            "ban of {ip} held while the config was broken is queued now ({})",
            report.categories
        ));
    }
    Ok(notes)
}

/// Moves a spooled report to the `set_aside` table, counted.
fn set_aside_row(tx: &Txn, mut state: State, id: i64, why: &str, now: u64) -> rusqlite::Result<()> {
    tx.spool_set_aside(id, why, now)?;
    state.set_aside += 1;
    tx.save(&state)
}

fn linger() -> Duration {
    std::env::var(LINGER_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(LINGER, Duration::from_millis)
}
