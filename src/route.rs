//! Where one report goes, decided as pure functions over what the store and the clock say:
//! skipped (and why), to the spool, straight to the API, or lost (and why). The I/O around
//! them is [`crate::pipeline`].

use crate::delivery::{Delivery, Failure};

/// What is known about a report when it is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts<'a> {
    /// When the cooldown last saw all of its categories, if it did within the window.
    pub cooled_since: Option<u64>,
    /// Another direct report of this IP is being sent right now.
    pub in_flight: bool,
    /// The open backoff window, as said to the operator.
    pub backoff: Option<&'a str>,
    /// `report --queue`.
    pub queue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Reported (or queued) within the cooldown already.
    Cooling { since: u64 },
    /// Another process is sending this very report now.
    InFlight,
    /// To the spool; a sender is started unless the backoff holds all sending.
    Spool { start_sender: bool },
    /// One POST now.
    Send,
}

/// The route of a report while the store works.
pub fn route(facts: &Facts) -> Route {
    if let Some(since) = facts.cooled_since {
        return Route::Cooling { since };
    }
    if facts.in_flight {
        return Route::InFlight;
    }
    match (facts.queue, facts.backoff) {
        (_, Some(_)) => Route::Spool {
            start_sender: false,
        },
        (true, None) => Route::Spool { start_sender: true },
        (false, None) => Route::Send,
    }
}

/// The route of a report when the store cannot be used: nothing can be kept, so it is sent
/// unless the fallback's backoff says the API is down, in which case it is lost (said, and
/// why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unstored {
    Send,
    Lost { why: String },
}

pub fn route_unstored(backoff: Option<&str>) -> Unstored {
    match backoff {
        Some(note) => Unstored::Lost {
            why: format!("no usable state_dir; {note}"),
        },
        None => Unstored::Send,
    }
}

/// What a delivery means for the report and its cooldown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// Done with for the cooldown: sent, or refused for good.
    pub start_cooldown: bool,
    /// Worth keeping for a later try.
    pub keep: bool,
}

pub fn settle(delivery: &Delivery) -> Settlement {
    let keep = delivery.as_ref().err().is_some_and(Failure::keeps_report);
    Settlement {
        start_cooldown: !keep,
        keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{ApiMessage, Receipt};

    fn facts(
        cooled: Option<u64>,
        in_flight: bool,
        backoff: Option<&str>,
        queue: bool,
    ) -> Facts<'_> {
        Facts {
            cooled_since: cooled,
            in_flight,
            backoff,
            queue,
        }
    }

    #[test]
    fn the_route_table() {
        let down = Some("API backoff for 45 s more (HTTP 503)");
        let cases = [
            (
                facts(Some(7), false, None, false),
                Route::Cooling { since: 7 },
            ),
            (
                facts(Some(7), true, down, true),
                Route::Cooling { since: 7 },
            ),
            (facts(None, true, None, false), Route::InFlight),
            (
                facts(None, false, down, false),
                Route::Spool {
                    start_sender: false,
                },
            ),
            (
                facts(None, false, down, true),
                Route::Spool {
                    start_sender: false,
                },
            ),
            (
                facts(None, false, None, true),
                Route::Spool { start_sender: true },
            ),
            (facts(None, false, None, false), Route::Send),
        ];
        for (facts, expected) in cases {
            assert_eq!(route(&facts), expected, "{facts:?}");
        }
    }

    #[test]
    fn without_a_store_a_backoff_loses_the_report_and_says_why() {
        assert_eq!(route_unstored(None), Unstored::Send);
        let Unstored::Lost { why } = route_unstored(Some("API backoff for 1 min more")) else {
            panic!("sent during a backoff")
        };
        assert!(why.contains("no usable state_dir"), "{why}");
    }

    #[test]
    fn the_settlement_table() {
        let answer = ApiMessage {
            status: 400,
            code: None,
            message: None,
        };
        let cases = [
            (Ok(Receipt::default()), true, false),
            (Err(Failure::Rejected(answer.clone())), true, false),
            (Err(Failure::KeyRefused(answer)), false, true),
            (Err(Failure::transient("timeout")), false, true),
            (Err(Failure::Interrupted("SIGTERM")), false, true),
        ];
        for (delivery, cooldown, keep) in cases {
            let settlement = settle(&delivery);
            assert_eq!(settlement.start_cooldown, cooldown, "{delivery:?}");
            assert_eq!(settlement.keep, keep, "{delivery:?}");
        }
    }
}
