//! The state that is not a table: backoff window, quota, counters and last outcomes, as one
//! row of the store, and every decision about them as a pure function over plain data. One
//! doubling schedule ([`backoff_window`]) serves the API's backoff and a suspect report's
//! own retries.

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::delivery::{Delivery, Failure, Quota};

/// First backoff window after a transient failure; it doubles up to [`BACKOFF_MAX_SECS`].
pub const BACKOFF_START_SECS: u64 = 60;
pub const BACKOFF_MAX_SECS: u64 = 3600;
/// Why sending is held when the API's rate-limit headers say nothing is left today.
pub const QUOTA_USED_UP: &str = "daily report quota used up";
/// A clock set by less than this is drift, not a jump.
const CLOCK_SLACK_SECS: u64 = 300;
/// Longest anything may hold sending: the API's own retry time is capped at a day.
pub const MAX_HOLD_SECS: u64 = 86_400;

/// The window after the `attempt`th failure in a row (1 for the first): `start`, doubling,
/// at most `max`. The one schedule for the API's backoff and a suspect's retries.
pub fn backoff_window(attempt: u32, start: u64, max: u64) -> u64 {
    let doublings = attempt.saturating_sub(1).min(32);
    start.saturating_mul(1 << doublings).min(max)
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
    /// Reports set aside as unsendable, in all.
    pub set_aside: u64,
    /// Temp files of interrupted inbox writes, cleaned up.
    pub stale_temps_removed: u64,
    /// Reports that came through the inbox (the store was held too long by another process).
    #[serde(skip)]
    pub inbox_imported: u64,
    /// Damaged databases moved aside.
    #[serde(skip)]
    pub corrupt_moved_aside: u64,
    /// The report quota as the last answer to a report gave it.
    pub quota: Option<Quota>,
    /// Length of the backoff window when it was set, so that a stored end further away
    /// (a clock that was ahead) is recognised.
    pub backoff_granted: u64,
    /// Wall clock against time since boot at the last save, to see the clock being set.
    pub clock_mark: Option<clock::Mark>,
    /// The API the backoff is about.
    #[serde(skip)]
    pub api_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    pub at: u64,
    pub message: String,
}

/// What [`State::check_clock`] found: what to say, and how far every stored time moves.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClockCheck {
    pub notes: Vec<String>,
    /// Seconds the wall clock was set by since the last run (0 for drift).
    pub shift: i64,
}

impl State {
    pub fn in_backoff(&self, now: u64) -> bool {
        now < self.backoff_until
    }

    /// Starts (or lengthens) the backoff window. `retry_at` is the API's own word on when to
    /// come back (429), which wins over the doubling schedule.
    pub fn start_backoff(&mut self, now: u64, retry_at: Option<u64>, reason: &str) {
        let attempt = match self.backoff_secs / BACKOFF_START_SECS {
            0 => 1,
            windows => windows.ilog2() + 2,
        };
        self.backoff_secs = backoff_window(attempt, BACKOFF_START_SECS, BACKOFF_MAX_SECS);
        self.backoff_until = match retry_at {
            Some(at) if at > now => at.min(now.saturating_add(MAX_HOLD_SECS)),
            _ => now.saturating_add(self.backoff_secs),
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
    /// set while the machine ran (`mark`, against the time since boot) moves the stored
    /// times with it; the caller moves the cooldown and the spool by [`ClockCheck::shift`]
    /// in the same transaction. Whatever is still in the future beyond what was granted (a
    /// backoff longer than its window, a quota reset days away) is clamped: a clock that was
    /// ahead must not hold anything for days.
    pub fn check_clock(&mut self, now: u64, mark: Option<clock::Mark>) -> ClockCheck {
        let mut check = ClockCheck::default();
        let shift = match (&mark, &self.clock_mark) {
            (Some(mark), Some(earlier)) => mark.clock_shift_since(earlier).unwrap_or(0),
            _ => 0,
        };
        if shift.unsigned_abs() > CLOCK_SLACK_SECS {
            let way = if shift > 0 { "forward" } else { "back" };
            check.notes.push(format!(
                "the system clock was set {way} by {} since the last run; stored times \
                 moved with it",
                clock::format_span(shift.unsigned_abs())
            ));
            if self.backoff_until > 0 {
                self.backoff_until = clock::shifted(self.backoff_until, shift);
            }
            check.shift = shift;
        }
        self.clock_mark = mark;
        let granted = match self.backoff_granted {
            0 => BACKOFF_MAX_SECS,
            secs => secs.min(MAX_HOLD_SECS),
        };
        if self.backoff_until > now.saturating_add(granted) {
            check.notes.push(format!(
                "backoff stored until {} is further ahead than its {} window (was the clock \
                 ahead?); clamped",
                clock::format_utc(self.backoff_until),
                clock::format_span(granted)
            ));
            self.backoff_until = now + granted;
        }
        if self.quota.is_some_and(|q| {
            q.reset
                .is_some_and(|r| r > now.saturating_add(MAX_HOLD_SECS * 2))
        }) {
            self.quota = None;
        }
        check
    }

    /// Notes which API this state speaks to; a backoff that another `api_url` earned (the old
    /// domain, a typo) ends when it changes. Whether it ended one.
    pub fn note_api_url(&mut self, url: &str, now: u64) -> bool {
        let changed = self.api_url.as_deref().is_some_and(|old| old != url);
        self.api_url = Some(url.to_string());
        if changed && self.in_backoff(now) && !self.quota_held(now) {
            self.end_backoff();
            return true;
        }
        false
    }

    /// Ends the backoff window: the API answered (`verify-key`), or it is another API now.
    pub fn end_backoff(&mut self) {
        self.backoff_secs = 0;
        self.backoff_until = 0;
        self.backoff_granted = 0;
        self.backoff_reason = None;
    }

    pub fn record_error(&mut self, now: u64, message: String) {
        self.last_error = Some(Event { at: now, message });
    }
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
    fn one_schedule_doubles_from_start_to_max() {
        let cases = [
            (1, 60, 3600, 60),
            (2, 60, 3600, 120),
            (7, 60, 3600, 3600),
            (40, 60, 3600, 3600),
            (0, 60, 3600, 60),
            (u32::MAX, 60, 3600, 3600),
            (3, 60, 100, 100),
        ];
        for (attempt, start, max, window) in cases {
            assert_eq!(
                backoff_window(attempt, start, max),
                window,
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn an_absurd_retry_time_holds_a_day_at_most() {
        let mut state = State::default();
        state.start_backoff(1000, Some(u64::MAX), "HTTP 429");
        assert_eq!(state.backoff_until, 1000 + MAX_HOLD_SECS);
        state.backoff_until = u64::MAX;
        state.backoff_granted = u64::MAX;
        let check = state.check_clock(2000, None);
        assert_eq!(state.backoff_until, 2000 + MAX_HOLD_SECS);
        assert_eq!(check.notes.len(), 1, "{:?}", check.notes);
        assert!(state.backoff_note(2000).is_some());
    }

    #[test]
    fn a_clock_set_forward_moves_the_stored_times() {
        let earlier = clock::Mark {
            boot_id: "b".into(),
            uptime: 100,
            wall: 10_000,
        };
        let mut state = State {
            backoff_until: 10_060,
            backoff_granted: 60,
            clock_mark: Some(earlier.clone()),
            ..State::default()
        };
        // 10 s of uptime later the wall clock reads a day on.
        let later = clock::Mark {
            boot_id: "b".into(),
            uptime: 110,
            wall: 10_010 + 86_400,
        };
        let check = state.check_clock(later.wall, Some(later.clone()));
        assert_eq!(check.shift, 86_400);
        assert_eq!(state.backoff_until, 10_060 + 86_400);
        assert_eq!(state.clock_mark, Some(later));
        // Drift is not a jump; another boot says nothing.
        let drift = clock::Mark {
            boot_id: "b".into(),
            uptime: 120,
            wall: 10_010 + 86_400 + 20,
        };
        assert_eq!(state.check_clock(drift.wall, Some(drift)).shift, 0);
        let reboot = clock::Mark {
            boot_id: "c".into(),
            uptime: 5,
            wall: 1,
        };
        assert_eq!(state.check_clock(1, Some(reboot)).shift, 0);
    }

    #[test]
    fn a_new_api_url_ends_the_backoff_the_old_one_earned() {
        let mut state = State::default();
        assert!(!state.note_api_url("https://a/v2", 1000), "first sight");
        state.start_backoff(1000, None, "HTTP 301");
        assert!(!state.note_api_url("https://a/v2", 1000), "same URL");
        assert!(state.in_backoff(1000));
        assert!(state.note_api_url("https://b/v2", 1000));
        assert!(!state.in_backoff(1000));
        // A used-up quota is the account's, whatever the URL.
        state.hold_until(5000, QUOTA_USED_UP, 1000);
        assert!(!state.note_api_url("https://c/v2", 1000));
        assert!(state.quota_held(1000));
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
