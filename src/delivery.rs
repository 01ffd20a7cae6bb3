//! The failure model: what one request to the API came to, and everything that follows from
//! it. Each answer class decides here, once, whether the report is kept, the exit status and
//! the operator's words; [`crate::state::State::record`] makes the matching state change.

use std::fmt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::categories::Categories;
use crate::outcome::Status;
use crate::report::Report;

/// The API has the report, or it does not and [`Failure`] says why.
pub type Delivery = Result<Receipt, Failure>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Receipt {
    pub report_id: Option<String>,
    pub confidence: Option<i64>,
    /// The report quota as the answer's rate-limit headers gave it.
    pub quota: Option<Quota>,
    /// Set when the 2xx body could not be read as the documented JSON.
    pub body_problem: Option<String>,
    /// Categories left out after the API refused them as unknown (see
    /// [`crate::api::Client::send_report`]).
    pub dropped_categories: Option<Categories>,
}

/// The daily report quota from `X-RateLimit-Limit/Remaining/Reset`; `None` counts are
/// `unlimited` (or not given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Quota {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// When the quota resets (UNIX seconds).
    pub reset: Option<u64>,
}

impl Quota {
    /// Nothing may be sent until [`Quota::reset`].
    pub fn used_up(&self) -> bool {
        self.remaining == Some(0)
    }

    /// When sending may start again after the quota is used up: its reset, or in an hour
    /// when the API did not say.
    pub fn hold_until(&self, now: u64) -> u64 {
        self.reset.filter(|at| *at > now).unwrap_or(now + 3600)
    }

    /// `37 of 50 used, 13 left, resets 2026-12-01T00:00:00Z`
    pub fn describe(&self) -> String {
        let mut text = match (self.limit, self.remaining) {
            (Some(limit), Some(left)) => {
                format!(
                    "{} of {limit} used, {left} left",
                    limit.saturating_sub(left)
                )
            }
            (None, Some(left)) => format!("{left} left"),
            (None, None) => "unlimited".to_string(),
            (Some(limit), None) => format!("limit {limit}"),
        };
        if let Some(reset) = self.reset {
            text.push_str(&format!(", resets {}", crate::clock::format_utc(reset)));
        }
        text
    }
}

/// The API's own words about an error: status, and code and message where it gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiMessage {
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
}

impl fmt::Display for ApiMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => write!(f, " {code}: {message}"),
            (Some(code), None) => write!(f, " {code}"),
            (None, Some(message)) => write!(f, ": {message}"),
            (None, None) => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 400/422 (and other client errors): the API will never take this report.
    Rejected(ApiMessage),
    /// 401/403: the key is wrong or may not report; the report is worth keeping.
    KeyRefused(ApiMessage),
    /// 403 `domain_limit_exceeded`: the key is fine, but its account has more sites than
    /// its plan allows; the report is worth keeping.
    AccountLimit(ApiMessage),
    /// 429 with `X-RateLimit-Remaining: 0`: today's report quota is spent; the report waits
    /// for the reset. Not a fault of the API, so no growing backoff.
    QuotaUsedUp { answer: ApiMessage, quota: Quota },
    /// A signal (TERM, HUP, INT) ended the wait for the API; the report is kept. Not the
    /// API's fault: no backoff.
    Interrupted(&'static str),
    /// The API's TLS certificate was refused before anything was sent.
    Certificate { host: String, problem: CertProblem },
    /// 404: `api_url` leads nowhere; `url` is what was asked for.
    WrongUrl { url: String, answer: ApiMessage },
    /// Worth retrying later: network failure, timeout, redirect, 408/425/429/5xx.
    Transient {
        reason: String,
        /// When the API asked us to come back (UNIX seconds), from `Retry-After` or the
        /// rate limit.
        retry_at: Option<u64>,
    },
}

/// Why a TLS certificate was refused, as far as the operator can act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProblem {
    UnknownIssuer,
    WrongName,
    Expired,
    NotYetValid,
    Other(String),
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Self {
        Failure::Transient {
            reason: reason.into(),
            retry_at: None,
        }
    }

    /// Whether the report stays in the spool for a later try.
    pub fn keeps_report(&self) -> bool {
        !matches!(self, Failure::Rejected(_))
    }

    pub fn status(&self) -> Status {
        match self {
            Failure::Rejected(_) => Status::Rejected,
            Failure::KeyRefused(_) => Status::KeyRejected,
            Failure::AccountLimit(_) => Status::AccountLimit,
            Failure::WrongUrl { .. } => Status::WrongUrl,
            Failure::Transient { .. }
            | Failure::Certificate { .. }
            | Failure::QuotaUsedUp { .. }
            | Failure::Interrupted(_) => Status::Kept,
        }
    }

    /// The status when the report should have been kept but could not be.
    pub fn status_if_lost(&self) -> Status {
        match self.status() {
            Status::Kept => Status::NotDelivered,
            status => status,
        }
    }

    pub fn retry_at(&self) -> Option<u64> {
        match self {
            Failure::Transient { retry_at, .. } => *retry_at,
            _ => None,
        }
    }

    /// What went wrong and how to mend it, in the operator's words. `config` is the file
    /// that holds the setting to fix.
    pub fn reason(&self, config: &Path) -> String {
        let config = config.display();
        match self {
            Failure::Rejected(answer) => format!("rejected by the API, not retried: {answer}"),
            Failure::KeyRefused(answer) => format!(
                "API key refused: {answer}; fix api_key in {config}, then run \
                 reportedip-report flush"
            ),
            Failure::AccountLimit(answer) => format!(
                "the account's site limit is reached ({answer}); the key is fine, but its \
                 account has more sites than its plan allows: remove a site or upgrade the plan \
                 at reportedip.com, then run reportedip-report flush"
            ),
            Failure::WrongUrl { url, answer } => {
                format!("{url} not found ({answer}); check api_url in {config}")
            }
            Failure::Transient { reason, .. } => reason.clone(),
            Failure::Interrupted(signal) => {
                format!("interrupted by {signal} before the API answered")
            }
            Failure::QuotaUsedUp { answer, quota } => format!(
                "daily report quota used up ({}; {answer}); reports wait for the reset",
                quota.describe()
            ),
            Failure::Certificate { host, problem } => {
                let (what, fix) = match problem {
                    CertProblem::UnknownIssuer => (
                        "is signed by a CA this system does not trust".to_string(),
                        format!(
                            "if a proxy or private CA signs it, set ca_file in {config} or add \
                             the CA with update-ca-certificates"
                        ),
                    ),
                    CertProblem::WrongName => (
                        format!("is not valid for {host}"),
                        format!("check api_url in {config} and any HTTPS proxy"),
                    ),
                    CertProblem::Expired => (
                        "has expired".to_string(),
                        "check the system clock (date -u)".to_string(),
                    ),
                    CertProblem::NotYetValid => (
                        "is not valid yet".to_string(),
                        "check the system clock (date -u)".to_string(),
                    ),
                    CertProblem::Other(why) => (
                        format!("was refused ({why})"),
                        format!("check api_url and ca_file in {config}"),
                    ),
                };
                format!("TLS certificate of {host} {what}; nothing was sent; {fix}")
            }
        }
    }
}

/// The one line that says what a delivery did for `report`: the sent line, the rejection
/// (naming the address, since the report is gone), or the reason it is kept.
pub fn describe(report: &Report, delivery: &Delivery, config: &Path) -> String {
    match delivery {
        Ok(receipt) => sent_line(report, receipt),
        Err(failure) if !failure.keeps_report() => {
            format!("{} {}", report.ip, failure.reason(config))
        }
        Err(failure) => failure.reason(config),
    }
}

/// `reported 45.155.205.233 (sshd, 18,22): report 4316026, confidence 39%`
pub fn sent_line(report: &Report, receipt: &Receipt) -> String {
    let what = match &report.jail {
        Some(jail) => format!("{jail}, {}", report.categories),
        None => report.categories.to_string(),
    };
    let mut line = format!("reported {} ({what})", report.ip);
    let mut details = Vec::new();
    if let Some(id) = &receipt.report_id {
        details.push(format!("report {id}"));
    }
    if let Some(confidence) = receipt.confidence {
        details.push(format!("confidence {confidence}%"));
    }
    if let Some(problem) = &receipt.body_problem {
        details.push(format!("answer unreadable: {problem}"));
    }
    if let Some(quota) = receipt.quota.filter(Quota::used_up) {
        details.push(format!(
            "daily report quota now used up ({}); the next reports wait for the reset",
            quota.describe()
        ));
    }
    if let Some(dropped) = &receipt.dropped_categories {
        details.push(format!(
            "sent without categories {dropped}, which this API does not know yet"
        ));
    }
    if !details.is_empty() {
        line.push_str(": ");
        line.push_str(&details.join(", "));
    }
    line
}

/// Runs one request on a worker thread and gives up waiting at `limit`, whatever hangs
/// (DNS, a peer that never answers): the caller then keeps the report like any other
/// transient failure. With `interruptible`, SIGTERM, SIGHUP and SIGINT end the wait the
/// same way, so that the report is kept instead of lost with the process. The abandoned
/// thread ends with the process.
pub fn within<T: Send + 'static>(
    limit: Duration,
    interruptible: bool,
    request: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let (tx, rx) = mpsc::sync_channel(2);
    let signals = if interruptible {
        watch_signals(tx.clone())
    } else {
        None
    };
    let spawned = std::thread::Builder::new()
        .name("request".into())
        .spawn(move || {
            let _ = tx.send(request());
        });
    let answer = match spawned {
        Err(err) => Err(Failure::transient(format!(
            "cannot start the request ({err})"
        ))),
        Ok(_) => rx.recv_timeout(limit).unwrap_or_else(|_| {
            Err(Failure::transient(format!(
                "API unreachable (no answer within {} s)",
                limit.as_secs()
            )))
        }),
    };
    if let Some(signals) = signals {
        signals.close();
    }
    answer
}

/// Turns the first of the signals that would end the process by default (TERM, HUP, INT,
/// USR1, USR2, ALRM) into an interrupted delivery on `tx`, so that the report is kept.
fn watch_signals<T: Send + 'static>(
    tx: mpsc::SyncSender<Result<T, Failure>>,
) -> Option<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGALRM, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT, SIGUSR1, SIGUSR2, SIGALRM])
            .ok()?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let name = match signal {
                    SIGTERM => "SIGTERM",
                    SIGHUP => "SIGHUP",
                    SIGUSR1 => "SIGUSR1",
                    SIGUSR2 => "SIGUSR2",
                    SIGALRM => "SIGALRM",
                    _ => "SIGINT",
                };
                let _ = tx.send(Err(Failure::Interrupted(name)));
            }
        })
        .ok()?;
    Some(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            ip: "45.155.205.233".parse().unwrap(),
            categories: Categories::parse("18,22").unwrap(),
            comment: "c".into(),
            jail: Some("sshd".into()),
            queued_at: 0,
        }
    }

    #[test]
    fn a_quota_without_a_limit_says_what_is_left() {
        let quota = |limit, remaining| Quota {
            limit,
            remaining,
            reset: None,
        };
        assert_eq!(quota(None, Some(0)).describe(), "0 left");
        assert_eq!(quota(None, None).describe(), "unlimited");
        assert_eq!(
            quota(Some(50), Some(13)).describe(),
            "37 of 50 used, 13 left"
        );
    }

    #[test]
    fn sent_line_matches_the_documented_form() {
        let receipt = Receipt {
            report_id: Some("4316026".into()),
            confidence: Some(39),
            ..Receipt::default()
        };
        assert_eq!(
            sent_line(&report(), &receipt),
            "reported 45.155.205.233 (sshd, 18,22): report 4316026, confidence 39%"
        );
        let bare = Report {
            jail: None,
            categories: Categories::parse("18").unwrap(),
            ..report()
        };
        assert_eq!(
            sent_line(&bare, &Receipt::default()),
            "reported 45.155.205.233 (18)"
        );
    }

    #[test]
    fn each_class_decides_keeping_and_status() {
        let answer = ApiMessage {
            status: 400,
            code: Some("ip_whitelisted".into()),
            message: None,
        };
        let cases = [
            (Failure::Rejected(answer.clone()), false, Status::Rejected),
            (
                Failure::KeyRefused(answer.clone()),
                true,
                Status::KeyRejected,
            ),
            (
                Failure::WrongUrl {
                    url: "u".into(),
                    answer,
                },
                true,
                Status::WrongUrl,
            ),
            (Failure::transient("x"), true, Status::Kept),
        ];
        for (failure, keeps, status) in cases {
            assert_eq!(failure.keeps_report(), keeps, "{failure:?}");
            assert_eq!(failure.status(), status, "{failure:?}");
        }
        assert_eq!(
            Failure::transient("x").status_if_lost(),
            Status::NotDelivered
        );
    }

    #[test]
    fn rejection_names_the_address() {
        let failure = Failure::Rejected(ApiMessage {
            status: 400,
            code: Some("ip_whitelisted".into()),
            message: Some("whitelisted".into()),
        });
        assert_eq!(
            describe(&report(), &Err(failure), Path::new("/c")),
            "45.155.205.233 rejected by the API, not retried: HTTP 400 ip_whitelisted: whitelisted"
        );
    }

    #[test]
    fn a_request_that_hangs_ends_at_the_limit_as_transient() {
        let (release, hold) = mpsc::channel::<()>();
        let delivery = within(Duration::from_millis(50), false, move || {
            let _ = hold.recv();
            Ok(Receipt::default())
        });
        drop(release);
        let Err(failure) = delivery else {
            panic!("a hanging request counted as sent")
        };
        assert!(failure.keeps_report());
        assert!(failure.reason(Path::new("/c")).contains("no answer within"));
        assert_eq!(
            within(Duration::from_secs(5), false, || Ok(Receipt::default())),
            Ok(Receipt::default())
        );
    }
}
