//! How the sender works through the spool, decided as pure functions: the order (oldest
//! first; newest first when more wait than today's quota allows), what one answer means for
//! the drain, and when a report that fails alone is set aside.

use crate::delivery::{Delivery, Failure};
use crate::state::{State, backoff_window};

/// A suspect is set aside after this many attempts of its own ...
pub const SUSPECT_ATTEMPTS: u32 = 5;
/// ... spread over at least this long (seconds).
pub const SUSPECT_SPAN: u64 = 3600;
/// Its first retry waits this long, doubling after each attempt, up to [`SUSPECT_SPAN`].
const SUSPECT_FIRST_WAIT: u64 = 60;

/// More waiting than today's quota allows: fresh attacks are worth it most, and the stale
/// ones age out through `spool_max_age`.
pub fn newest_first(waiting: u64, quota_left: Option<u64>) -> bool {
    quota_left.is_some_and(|left| waiting > left)
}

/// Why the drain must not send now, if it must not: the backoff window (which `flush`,
/// asked to deliver now, ignores), or a used-up quota (which holds even `flush`: every
/// request would be refused and counted).
pub fn held(state: &State, now: u64, ignore_backoff: bool) -> Option<String> {
    let note = state.backoff_note(now)?;
    (!ignore_backoff || state.quota_held(now)).then_some(note)
}

/// Whether a suspect waits for its own next try (`flush` tries it now).
pub fn waits(next_try: u64, now: u64, ignore_backoff: bool) -> bool {
    !ignore_backoff && next_try > now
}

/// What one answer means for the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Sent or refused for good: remove it, go on. A failure held before it was the
    /// report's own fault (a suspect).
    Done,
    /// A transient failure with nothing to compare it with yet: hold it, try the next one.
    Hold,
    /// Two transient failures in a row: the API is down. Record it, stop.
    Outage,
    /// A failure that concerns every report (key, quota, address, certificate, a signal):
    /// keep it, record it, stop.
    Stop,
}

pub fn next(delivery: &Delivery, holding: bool) -> Next {
    match delivery {
        Ok(_) => Next::Done,
        Err(Failure::Transient { .. }) if holding => Next::Outage,
        Err(Failure::Transient { .. }) => Next::Hold,
        Err(failure) if failure.keeps_report() => Next::Stop,
        Err(_) => Next::Done,
    }
}

/// What becomes of a report that failed while the next one went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspect {
    /// Tried again at `next_try`.
    Retry {
        attempts: u32,
        first_failed: u64,
        next_try: u64,
    },
    /// Failed too often over too long: never holds up the others again.
    SetAside { attempts: u32, span: u64 },
}

/// `attempts` and `first_failed` as stored before this failure (0 and `None` for a first).
pub fn suspect(attempts: u32, first_failed: Option<u64>, now: u64) -> Suspect {
    let attempts = attempts.saturating_add(1);
    let first_failed = first_failed.unwrap_or(now).min(now);
    let span = now - first_failed;
    if attempts >= SUSPECT_ATTEMPTS && span >= SUSPECT_SPAN {
        return Suspect::SetAside { attempts, span };
    }
    let wait = backoff_window(attempts + 1, SUSPECT_FIRST_WAIT, SUSPECT_SPAN);
    Suspect::Retry {
        attempts,
        first_failed,
        next_try: now.saturating_add(wait),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{ApiMessage, Quota, Receipt};

    #[test]
    fn the_order_table() {
        let cases = [
            (8, None, false),
            (8, Some(8), false),
            (8, Some(3), true),
            (0, Some(0), false),
            (1, Some(0), true),
        ];
        for (waiting, left, newest) in cases {
            assert_eq!(
                newest_first(waiting, left),
                newest,
                "{waiting} waiting, {left:?} left"
            );
        }
    }

    #[test]
    fn the_answer_table() {
        let answer = ApiMessage {
            status: 403,
            code: None,
            message: None,
        };
        let quota = Quota {
            limit: Some(50),
            remaining: Some(0),
            reset: None,
        };
        let cases = [
            (Ok(Receipt::default()), false, Next::Done),
            (Ok(Receipt::default()), true, Next::Done),
            (Err(Failure::transient("503")), false, Next::Hold),
            (Err(Failure::transient("503")), true, Next::Outage),
            (Err(Failure::Rejected(answer.clone())), false, Next::Done),
            (Err(Failure::KeyRefused(answer.clone())), false, Next::Stop),
            (
                Err(Failure::QuotaUsedUp { answer, quota }),
                true,
                Next::Stop,
            ),
            (Err(Failure::Interrupted("SIGTERM")), false, Next::Stop),
        ];
        for (delivery, holding, expected) in cases {
            assert_eq!(
                next(&delivery, holding),
                expected,
                "{delivery:?} holding {holding}"
            );
        }
    }

    #[test]
    fn a_suspect_is_retried_on_the_one_schedule_then_set_aside() {
        let mut attempts = 0;
        let mut first = None;
        let mut now = 1000;
        let mut waits = Vec::new();
        loop {
            match suspect(attempts, first, now) {
                Suspect::Retry {
                    attempts: a,
                    first_failed,
                    next_try,
                } => {
                    waits.push(next_try - now);
                    attempts = a;
                    first = Some(first_failed);
                    now = next_try;
                }
                Suspect::SetAside { attempts, span } => {
                    assert_eq!(attempts, 6);
                    assert!(span >= SUSPECT_SPAN);
                    break;
                }
            }
        }
        assert_eq!(waits, [120, 240, 480, 960, 1920]);
    }

    #[test]
    fn the_hold_table() {
        let mut state = State::default();
        assert_eq!(held(&state, 1000, false), None);
        state.start_backoff(1000, None, "HTTP 503");
        assert!(held(&state, 1000, false).is_some());
        assert_eq!(held(&state, 1000, true), None, "flush ignores the backoff");
        state.hold_until(5000, crate::state::QUOTA_USED_UP, 1000);
        assert!(
            held(&state, 1000, true).is_some(),
            "a used-up quota holds flush too"
        );
        assert!(waits(2000, 1000, false));
        assert!(!waits(2000, 1000, true));
        assert!(!waits(1000, 1000, false));
    }
}
