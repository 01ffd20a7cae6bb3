//! The state directory: backoff window, cooldown table, counters and last outcomes in one
//! JSON file, changed only under an exclusive file lock; plus the sender lock.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::clock;
use crate::cooldown::Cooldown;
use crate::delivery::{Delivery, Failure, Quota};
use crate::fsio;
use crate::spool::Spool;

/// First backoff window after a transient failure; it doubles up to [`BACKOFF_MAX_SECS`].
pub const BACKOFF_START_SECS: u64 = 60;
pub const BACKOFF_MAX_SECS: u64 = 3600;
/// Why sending is held when the API's rate-limit headers say nothing is left today.
pub const QUOTA_USED_UP: &str = "daily report quota used up";
/// A clock set by less than this is drift, not a jump.
const CLOCK_SLACK_SECS: u64 = 300;
/// Longest anything may hold sending: the API's own retry time is capped at a day.
const MAX_HOLD_SECS: u64 = 86_400;
/// How often a waiting process tries a lock that another one holds.
const LOCK_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Error)]
pub enum StateError {
    #[error(
        "state_dir {path} is not usable ({source}); reports are sent directly and cannot be kept for retry"
    )]
    Unusable { path: PathBuf, source: io::Error },
    #[error(
        "state_dir {path} is not safe to use: {why}; reports are sent directly and cannot be kept \
         for retry. Fix: use a directory that only root can write to, e.g. chown root: {path} && \
         chmod 700 {path} (and its parents not group- or world-writable)"
    )]
    Untrusted { path: PathBuf, why: String },
    #[error("cannot save state in {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("state in {path} is locked by another process for more than {} s", waited.as_secs())]
    Busy { path: PathBuf, waited: Duration },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct State {
    /// No process touches the network before this instant (UNIX seconds).
    pub backoff_until: u64,
    /// Length of the current backoff window; 0 when the last request succeeded.
    pub backoff_secs: u64,
    /// Why the current backoff window started.
    pub backoff_reason: Option<String>,
    pub last_success: Option<Event>,
    pub last_error: Option<Event>,
    /// Reports the API accepted, in all.
    pub sent: u64,
    /// Reports the API refused for good, in all.
    pub rejected: u64,
    /// Spooled reports dropped by `spool_max` or `spool_max_age`.
    pub dropped: u64,
    /// Unreadable spool files moved aside.
    pub set_aside: u64,
    /// Temp files of interrupted spool writes, cleaned up.
    pub stale_temps_removed: u64,
    /// Reports in the spool, as counted when it was last listed and changed since: the ban
    /// path reads this instead of listing a spool that may hold thousands.
    pub waiting: u64,
    /// Per IP and category, when it was last reported or queued.
    pub cooldown: Cooldown,
    /// The report quota as the last answer to a report gave it.
    pub quota: Option<Quota>,
    /// Spool files (by name) that failed while others went through, retried apart.
    pub suspects: BTreeMap<String, Suspect>,
    /// Length of the backoff window when it was set, so that a stored end further away
    /// (a clock that was ahead) is recognised.
    pub backoff_granted: u64,
    /// Wall clock against time since boot at the last save, to see the clock being set.
    pub clock_mark: Option<clock::Mark>,
    /// Seconds the clock was set by while reports waited; the sender moves the spool's
    /// queue times by it.
    pub spool_shift: i64,
}

/// A spooled report the API fails on alone.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Suspect {
    pub attempts: u32,
    pub first_failed: u64,
    pub next_try: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    pub at: u64,
    pub message: String,
}

impl State {
    pub fn in_backoff(&self, now: u64) -> bool {
        now < self.backoff_until
    }

    /// Starts (or lengthens) the backoff window. `retry_at` is the API's own word on when to
    /// come back (429), which wins over the doubling schedule.
    pub fn start_backoff(&mut self, now: u64, retry_at: Option<u64>, reason: &str) {
        self.backoff_secs = match self.backoff_secs {
            0 => BACKOFF_START_SECS,
            secs => (secs * 2).min(BACKOFF_MAX_SECS),
        };
        self.backoff_until = match retry_at {
            Some(at) if at > now => at,
            _ => now + self.backoff_secs,
        };
        self.backoff_granted = self.backoff_until - now;
        self.backoff_reason = Some(reason.to_string());
        self.last_error = Some(Event {
            at: now,
            message: reason.to_string(),
        });
    }

    /// The one state change for each delivery: a success ends the backoff (and holds sending
    /// when the quota is used up), a rejection is remembered, and a failure that keeps the
    /// report opens or lengthens the backoff window. `line` is what [`crate::delivery::describe`]
    /// said of it.
    pub fn record(&mut self, delivery: &Delivery, line: &str, now: u64) {
        match delivery {
            Ok(receipt) => {
                self.sent += 1;
                self.record_success(now, line.to_string());
                if let Some(quota) = receipt.quota {
                    self.note_quota(quota, now);
                }
            }
            Err(failure) if !failure.keeps_report() => {
                self.rejected += 1;
                self.record_error(now, line.to_string());
            }
            Err(Failure::QuotaUsedUp { quota, .. }) => {
                self.record_error(now, line.to_string());
                self.note_quota(*quota, now);
            }
            // Nothing was learnt about the API.
            Err(Failure::Interrupted(_)) => {}
            Err(failure) => self.start_backoff(now, failure.retry_at(), line),
        }
    }

    /// Keeps the last quota seen; a used-up quota holds all sending until its reset.
    fn note_quota(&mut self, quota: Quota, now: u64) {
        self.quota = Some(quota);
        if quota.used_up() {
            self.hold_until(quota.hold_until(now), QUOTA_USED_UP, now);
        }
    }

    /// Whether sending is held because the day's quota is used up.
    pub fn quota_held(&self, now: u64) -> bool {
        self.in_backoff(now) && self.backoff_reason.as_deref() == Some(QUOTA_USED_UP)
    }

    /// How many reports the quota still allows today, when the last answer said so and its
    /// reset has not passed.
    pub fn quota_left(&self, now: u64) -> Option<u64> {
        let quota = self.quota?;
        match quota.reset {
            Some(reset) if reset <= now => None,
            _ => quota.remaining,
        }
    }

    /// `API backoff for 45 s more (HTTP 503)`, while the window is open.
    pub fn backoff_note(&self, now: u64) -> Option<String> {
        self.in_backoff(now).then(|| {
            format!(
                "API backoff for {} more ({})",
                clock::format_span(self.backoff_until.saturating_sub(now)),
                self.backoff_reason.as_deref().unwrap_or("earlier failure")
            )
        })
    }

    pub fn record_success(&mut self, now: u64, message: String) {
        self.backoff_secs = 0;
        self.backoff_until = 0;
        self.backoff_reason = None;
        self.last_success = Some(Event { at: now, message });
    }

    /// Holds all sending until `until` without counting it as a failure (quota used up).
    pub fn hold_until(&mut self, until: u64, reason: &str, now: u64) {
        self.backoff_until = self.backoff_until.max(until);
        self.backoff_granted = self.backoff_until.saturating_sub(now);
        self.backoff_reason = Some(reason.to_string());
    }

    /// Makes the stored times agree with the clock, and says what it changed. A wall clock
    /// set while the machine ran (measured against the time since boot) moves every stored
    /// time with it, the spool's included (left in [`State::spool_shift`] for the sender).
    /// Whatever is still in the future beyond what was granted (a backoff longer than its
    /// window, a cooldown stamp after now) is clamped: a clock that was ahead must not hold
    /// anything for days.
    pub fn check_clock(&mut self, now: u64) -> Vec<String> {
        let mut notes = Vec::new();
        let mark = clock::Mark::now(now);
        let shift = match (&mark, &self.clock_mark) {
            (Some(mark), Some(earlier)) => mark.clock_shift_since(earlier).unwrap_or(0),
            _ => 0,
        };
        if shift.unsigned_abs() > CLOCK_SLACK_SECS {
            let way = if shift > 0 { "forward" } else { "back" };
            notes.push(format!(
                "the system clock was set {way} by {} since the last run; stored times \
                 moved with it",
                clock::format_span(shift.unsigned_abs())
            ));
            if self.backoff_until > 0 {
                self.backoff_until = clock::shifted(self.backoff_until, shift);
            }
            self.cooldown.shift(shift);
            for suspect in self.suspects.values_mut() {
                suspect.first_failed = clock::shifted(suspect.first_failed, shift);
                suspect.next_try = clock::shifted(suspect.next_try, shift);
            }
            self.spool_shift += shift;
        }
        self.clock_mark = mark;
        let granted = match self.backoff_granted {
            0 => BACKOFF_MAX_SECS,
            secs => secs.min(MAX_HOLD_SECS),
        };
        if self.backoff_until > now + granted {
            notes.push(format!(
                "backoff stored until {} is further ahead than its {} window (was the clock \
                 ahead?); clamped",
                clock::format_utc(self.backoff_until),
                clock::format_span(granted)
            ));
            self.backoff_until = now + granted;
        }
        if self.cooldown.clamp_future(now) {
            notes.push("cooldown times after now (was the clock ahead?) clamped to now".into());
        }
        if self
            .quota
            .is_some_and(|q| q.reset.is_some_and(|r| r > now + MAX_HOLD_SECS * 2))
        {
            self.quota = None;
        }
        notes
    }

    pub fn record_error(&mut self, now: u64, message: String) {
        self.last_error = Some(Event { at: now, message });
    }
}

/// Where the backoff is kept while `state_dir` cannot be written (a full or read-only
/// /var): the runtime directory, on a tmpfs that has room when /var has none. Without it,
/// every ban during an outage would wait the full timeout again.
pub struct Fallback {
    file: PathBuf,
}

/// Overrides the runtime directory (`/run/reportedip-report`); for tests and for systems
/// without /run.
pub const RUNTIME_DIR_ENV: &str = "REPORTEDIP_RUNTIME_DIR";
const DEFAULT_RUNTIME_DIR: &str = "/run/reportedip-report";

impl Fallback {
    pub fn new() -> Self {
        let dir = std::env::var_os(RUNTIME_DIR_ENV)
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_RUNTIME_DIR), PathBuf::from);
        Self {
            file: dir.join("backoff.json"),
        }
    }

    /// The backoff kept here, as a state that holds only it; clamped like any stored time.
    pub fn state(&self, now: u64) -> State {
        let mut state: State = fsio::read_own_file(&self.file, 4096)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        state.backoff_until = state.backoff_until.min(now + MAX_HOLD_SECS);
        state
    }

    /// Keeps `state`'s backoff window, best effort.
    pub fn remember(&self, state: &State) {
        let Some(dir) = self.file.parent() else {
            return;
        };
        let _ = DirBuilder::new().recursive(true).mode(0o700).create(dir);
        if fsio::untrusted_dir(dir).is_some() {
            return;
        }
        let kept = State {
            backoff_until: state.backoff_until,
            backoff_secs: state.backoff_secs,
            backoff_reason: state.backoff_reason.clone(),
            ..State::default()
        };
        if let Ok(bytes) = serde_json::to_vec(&kept) {
            let _ = fsio::write_atomic(&self.file, &bytes);
        }
    }

    pub fn clear(&self) {
        let _ = fs::remove_file(&self.file);
    }
}

impl Default for Fallback {
    fn default() -> Self {
        Self::new()
    }
}

/// An opened, writable state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// The state, read under the state lock; dropping it releases the lock.
pub struct Locked {
    file: PathBuf,
    _lock: File,
    pub state: State,
    /// Why the stored state could not be read, for the caller to log.
    pub problem: Option<String>,
}

impl StateDir {
    /// Longest wait for the state lock: every holder keeps it for a few file operations, so
    /// a longer hold means something is stuck, and the ban path must not wait on it.
    pub const LOCK_WAIT: Duration = Duration::from_secs(2);

    /// Creates the directory tree if needed (mode 0700), refuses it unless only root or we
    /// can write to it and its parents, and proves it writable by opening the lock file.
    pub fn open(root: &Path) -> Result<Self, StateError> {
        let unusable = |source| StateError::Unusable {
            path: root.to_path_buf(),
            source,
        };
        let refuse = |why| StateError::Untrusted {
            path: root.to_path_buf(),
            why,
        };
        let check = |dir: &Path| fsio::untrusted_dir(dir).map_or(Ok(()), |why| Err(refuse(why)));
        // Checked before anything is created: the directory itself, or where it would go.
        match root
            .ancestors()
            .find(|dir| fs::symlink_metadata(dir).is_ok())
        {
            Some(existing) if existing == root => check(root)?,
            Some(parent) => {
                if let Some(why) = fsio::untrusted_parents(parent) {
                    return Err(refuse(why));
                }
            }
            None => {}
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join("spool"))
            .map_err(unusable)?;
        check(root)?;
        check(&root.join("spool"))?;
        fsio::open_lock_file(&root.join("state.lock")).map_err(unusable)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// A handle for reading only (`status`): creates nothing and may point nowhere yet.
    pub fn existing(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub fn spool(&self) -> Spool {
        Spool::new(self.root.join("spool"), self.root.join("set-aside"))
    }

    /// Takes the state lock, waiting at most [`Self::LOCK_WAIT`] for other processes, and
    /// reads the state.
    pub fn lock(&self) -> Result<Locked, StateError> {
        let lock = self
            .lock_within("state.lock", Self::LOCK_WAIT)?
            .ok_or(StateError::Busy {
                path: self.root.clone(),
                waited: Self::LOCK_WAIT,
            })?;
        let file = self.root.join("state.json");
        let (state, problem) = read_state(&file);
        Ok(Locked {
            file,
            _lock: lock,
            state,
            problem,
        })
    }

    /// Reads the state without waiting for the lock (for `status`).
    pub fn peek(&self) -> State {
        read_state(&self.root.join("state.json")).0
    }

    /// The sender lock, if no other process holds it now.
    pub fn try_sender_lock(&self) -> Result<Option<File>, StateError> {
        self.sender_lock_within(Duration::ZERO)
    }

    /// The sender lock, if it comes free within `wait`: a probe by `status` or by a starting
    /// report holds it for microseconds, and must not turn a new sender away. It is a lock
    /// on the spool directory itself, which no one can delete or swap under a running
    /// sender the way a lock file can be.
    pub fn sender_lock_within(&self, wait: Duration) -> Result<Option<File>, StateError> {
        let dir = File::open(self.root.join("spool")).map_err(|source| self.write_error(source))?;
        self.try_for(dir, wait, |_| true)
    }

    fn lock_within(&self, name: &str, wait: Duration) -> Result<Option<File>, StateError> {
        let path = self.root.join(name);
        let file = fsio::open_lock_file(&path).map_err(|source| self.write_error(source))?;
        // A lock file deleted or replaced while we waited locks nothing: call it busy.
        self.try_for(file, wait, |file| fsio::is_still_at(file, &path))
    }

    /// Tries `file`'s lock until `wait` passes; `valid` says whether a lock taken still
    /// guards what it should.
    fn try_for(
        &self,
        file: File,
        wait: Duration,
        valid: impl Fn(&File) -> bool,
    ) -> Result<Option<File>, StateError> {
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) if valid(&file) => return Ok(Some(file)),
                Ok(()) => return Ok(None),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(LOCK_POLL);
                }
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(source)) => return Err(self.write_error(source)),
            }
        }
    }

    /// The sender lock, waiting for a running sender to finish.
    pub fn wait_sender_lock(&self) -> Result<File, StateError> {
        let dir = File::open(self.root.join("spool")).map_err(|source| self.write_error(source))?;
        dir.lock().map_err(|source| self.write_error(source))?;
        Ok(dir)
    }

    fn write_error(&self, source: io::Error) -> StateError {
        StateError::Write {
            path: self.root.clone(),
            source,
        }
    }
}

impl Locked {
    /// Writes the state atomically; the lock is still held afterwards.
    pub fn save(&self) -> Result<(), StateError> {
        serde_json::to_vec(&self.state)
            .map_err(io::Error::other)
            .and_then(|bytes| fsio::write_atomic(&self.file, &bytes))
            .map_err(|source| StateError::Write {
                path: self.file.clone(),
                source,
            })
    }
}

/// Largest state file read: a day's cooldown of a busy host is well under 1 MiB.
const MAX_STATE_BYTES: u64 = 4 * 1024 * 1024;

/// The state in `file`, and what was wrong with it if it could not be used. A missing file
/// is a fresh start; a damaged, oversized or foreign one must not stop reporting, so the
/// counters start over, and the caller says so.
fn read_state(file: &Path) -> (State, Option<String>) {
    let problem = match fsio::read_own_file(file, MAX_STATE_BYTES) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(state) => return (state, None),
            Err(err) => format!("is damaged ({err})"),
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => return (State::default(), None),
        Err(err) => err.to_string(),
    };
    let message = format!(
        "state file {} {problem}; backoff, cooldown and counters start over",
        file.display()
    );
    (State::default(), Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour_and_success_resets_it() {
        let mut state = State::default();
        let mut windows = Vec::new();
        for _ in 0..8 {
            state.start_backoff(1000, None, "HTTP 500");
            windows.push(state.backoff_until - 1000);
        }
        assert_eq!(windows, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert!(state.in_backoff(1000 + 3599));
        assert!(!state.in_backoff(1000 + 3600));
        state.record_success(5000, "ok".into());
        assert!(!state.in_backoff(5000));
        state.start_backoff(5000, None, "HTTP 500");
        assert_eq!(state.backoff_until, 5060);
    }

    #[test]
    fn retry_after_sets_the_window_end() {
        let mut state = State::default();
        state.start_backoff(1000, Some(1500), "HTTP 429");
        assert_eq!(state.backoff_until, 1500);
        state.start_backoff(2000, Some(1500), "HTTP 429");
        assert!(state.backoff_until > 2000);
    }
}
