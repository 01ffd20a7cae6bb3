//! What `status` and `verify-key` show: one struct each, serialized as is for `--json` and
//! displayed as aligned text, so that both forms always carry the same fields.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::api::{Domains, KeyInfo, Limits};
use crate::clock::{format_span, format_utc};
use crate::state::{Event, State};

#[derive(Debug, Serialize)]
pub struct StatusView {
    pub state_dir: PathBuf,
    pub waiting: usize,
    pub oldest_age_secs: Option<u64>,
    pub backoff: BackoffView,
    pub sender_running: bool,
    pub last_success: Option<EventView>,
    pub last_error: Option<EventView>,
    pub dropped: u64,
    pub set_aside: usize,
    /// Temp files left by interrupted writes, cleaned up so far.
    pub stale_temps_removed: u64,
    /// Reports the API fails on alone, retried apart from the others.
    pub suspects: usize,
    pub cooldown_entries: usize,
    /// The report quota as the last answer gave it; `None` before any answer.
    pub quota: Option<QuotaView>,
}

#[derive(Debug, Serialize)]
pub struct QuotaView {
    /// `null` when unlimited.
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub used: Option<u64>,
    pub reset: Option<String>,
    pub reset_epoch: Option<u64>,
    /// Whether the reset has passed since the answer, so the counts are yesterday's.
    pub stale: bool,
}

impl QuotaView {
    pub fn of(state: &State, now: u64) -> Option<Self> {
        let quota = state.quota?;
        Some(Self {
            limit: quota.limit,
            remaining: quota.remaining,
            used: quota
                .limit
                .zip(quota.remaining)
                .map(|(limit, left)| limit.saturating_sub(left)),
            reset: quota.reset.map(format_utc),
            reset_epoch: quota.reset,
            stale: quota.reset.is_some_and(|reset| reset <= now),
        })
    }
}

impl fmt::Display for QuotaView {
    /// `37 of 50, 13 left, resets 2026-12-01T00:00:00Z`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.limit, self.used, self.remaining) {
            (None, _, _) => write!(f, "no daily limit")?,
            (Some(limit), Some(used), Some(left)) => write!(f, "{used} of {limit}, {left} left")?,
            (Some(limit), _, _) => write!(f, "limit {limit}")?,
        }
        match (&self.reset, self.stale) {
            (Some(reset), false) => write!(f, ", resets {reset}"),
            (Some(reset), true) => write!(f, " (counted before the reset at {reset})"),
            (None, _) => Ok(()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BackoffView {
    pub active: bool,
    pub until: Option<String>,
    pub until_epoch: Option<u64>,
    pub reason: Option<String>,
    /// Seconds left, for the text form.
    #[serde(skip)]
    pub left_secs: u64,
}

#[derive(Debug, Serialize)]
pub struct EventView {
    pub at: String,
    pub message: String,
}

impl From<&Event> for EventView {
    fn from(event: &Event) -> Self {
        Self {
            at: format_utc(event.at),
            message: event.message.clone(),
        }
    }
}

impl BackoffView {
    pub fn of(state: &State, now: u64) -> Self {
        let active = state.in_backoff(now);
        Self {
            active,
            until: active.then(|| format_utc(state.backoff_until)),
            until_epoch: active.then_some(state.backoff_until),
            reason: state.backoff_reason.clone().filter(|_| active),
            left_secs: state.backoff_until.saturating_sub(now),
        }
    }
}

impl fmt::Display for StatusView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "state_dir:    {}", self.state_dir.display())?;
        let oldest = self.oldest_age_secs.map_or(String::new(), |age| {
            format!(", oldest {} old", format_span(age))
        });
        writeln!(f, "spool:        {} waiting{oldest}", self.waiting)?;
        match &self.backoff {
            BackoffView {
                active: true,
                until: Some(until),
                reason,
                left_secs,
                ..
            } => writeln!(
                f,
                "backoff:      until {until} (in {}): {}",
                format_span(*left_secs),
                reason.as_deref().unwrap_or("-")
            )?,
            _ => writeln!(f, "backoff:      none")?,
        }
        let sender = if self.sender_running {
            "running"
        } else {
            "not running"
        };
        writeln!(f, "sender:       {sender}")?;
        match &self.quota {
            Some(quota) => writeln!(f, "reports today: {quota}")?,
            None => writeln!(f, "reports today: - (no answer from the API yet)")?,
        }
        for (label, event) in [
            ("last success", &self.last_success),
            ("last error", &self.last_error),
        ] {
            let text = event
                .as_ref()
                .map_or("-".to_string(), |e| format!("{} {}", e.at, e.message));
            writeln!(f, "{label:<13} {text}")?;
        }
        writeln!(
            f,
            "dropped:      {} (spool_max / spool_max_age)",
            self.dropped
        )?;
        writeln!(
            f,
            "set aside:    {} unreadable spool file(s)",
            self.set_aside
        )?;
        writeln!(
            f,
            "temp files:   {} left by interrupted writes, removed",
            self.stale_temps_removed
        )?;
        writeln!(
            f,
            "suspects:     {} report(s) failing alone, retried apart",
            self.suspects
        )?;
        write!(f, "cooldown:     {} IP(s)", self.cooldown_entries)
    }
}

#[derive(Debug, Serialize)]
pub struct KeyView {
    pub config: PathBuf,
    pub api_url: String,
    pub valid: bool,
    pub can_report: bool,
    pub problems: Vec<String>,
    pub key: KeyInfo,
    /// Which CA roots TLS trusts.
    pub roots: String,
    pub exit_code: u8,
    /// Where the key came from, for the text form.
    #[serde(skip)]
    pub source: String,
}

impl KeyView {
    /// Reasons this key cannot report, empty when it can.
    pub fn problems(info: &KeyInfo) -> Vec<String> {
        let mut problems = Vec::new();
        if info.valid != Some(true) {
            problems.push("the API says this key is not valid".to_string());
        }
        if !info.may_report() {
            problems.push("this key's daily report limit is 0: it may not report".to_string());
        }
        problems
    }
}

impl fmt::Display for KeyView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = &self.key;
        let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
        writeln!(f, "config:      {}", self.source)?;
        writeln!(f, "api_url:     {}", self.api_url)?;
        writeln!(f, "key valid:   {}", if self.valid { "yes" } else { "no" })?;
        writeln!(f, "key name:    {}", or_dash(&info.key_name))?;
        writeln!(f, "role:        {}", info.role().unwrap_or("-"))?;
        let permissions = info.permissions.as_ref().map(|p| p.join(", "));
        write!(f, "permissions: {}", or_dash(&permissions))?;
        if let Some(limits) = &info.limits {
            write!(f, "\nreports:     {}", report_usage(limits))?;
            if let Some(remaining) = limits.remaining_api_calls {
                let of = limits
                    .daily_api_limit
                    .filter(|l| *l >= 0)
                    .map_or(String::new(), |l| format!(" of {l}"));
                write!(f, "\napi calls:   {remaining} remaining{of} today")?;
            }
        }
        if let Some(domains) = &info.domains {
            write!(f, "\nsites:       {}", site_usage(domains))?;
        }
        write!(f, "\nTLS roots:   {}", self.roots)
    }
}

/// `12 used of 50 today, 38 remaining, resets 2026-12-01T00:00:00+00:00`
fn report_usage(limits: &Limits) -> String {
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
        text.push_str(&format!(", resets {}", reset_text(reset)));
    }
    text
}

/// `resetTime` as given: a string as is, a plausible UNIX time as a date, anything else raw.
fn reset_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(epoch) if epoch >= 1_000_000_000 => format_utc(epoch),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// `1 of 3 used (active)`
fn site_usage(domains: &Domains) -> String {
    let count = |n: Option<i64>| n.map_or("?".to_string(), |n| n.to_string());
    let mut text = match domains.limit {
        Some(limit) if limit >= 0 => format!("{} of {limit} used", count(domains.used)),
        _ => format!("{} used (no limit)", count(domains.used)),
    };
    if let Some(status) = &domains.status {
        let status = status
            .as_str()
            .map_or_else(|| status.to_string(), str::to_string);
        text.push_str(&format!(" ({status})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed inputs for the golden files in `tests/golden/`.
    fn busy_state() -> State {
        State {
            backoff_until: 1_796_083_200 + 2700,
            backoff_secs: 3600,
            backoff_reason: Some("HTTP 503".into()),
            last_success: Some(Event {
                at: 1_796_080_000,
                message: "reported 45.155.205.233 (sshd, 18,22): report 4316026".into(),
            }),
            last_error: Some(Event {
                at: 1_796_083_100,
                message: "HTTP 503".into(),
            }),
            dropped: 4,
            set_aside: 1,
            cooldown: Default::default(),
            quota: Some(crate::delivery::Quota {
                limit: Some(50),
                remaining: Some(13),
                reset: Some(1_796_083_200 + 86_400),
            }),
            stale_temps_removed: 2,
            ..State::default()
        }
    }

    #[test]
    fn status_text_matches_the_golden_file() {
        let now = 1_796_083_200;
        let state = busy_state();
        let view = StatusView {
            state_dir: "/var/lib/reportedip-report".into(),
            waiting: 12,
            oldest_age_secs: Some(1500),
            backoff: BackoffView::of(&state, now),
            sender_running: false,
            last_success: state.last_success.as_ref().map(EventView::from),
            last_error: state.last_error.as_ref().map(EventView::from),
            dropped: state.dropped,
            set_aside: 1,
            stale_temps_removed: state.stale_temps_removed,
            suspects: 1,
            cooldown_entries: 3,
            quota: QuotaView::of(&state, now),
        };
        assert_eq!(
            format!("{view}\n"),
            include_str!("../tests/golden/status.txt")
        );
        let idle = StatusView {
            waiting: 0,
            oldest_age_secs: None,
            backoff: BackoffView::of(&State::default(), now),
            last_success: None,
            last_error: None,
            quota: None,
            ..view
        };
        assert_eq!(
            format!("{idle}\n"),
            include_str!("../tests/golden/status-idle.txt")
        );
    }

    #[test]
    fn verify_key_text_matches_the_golden_file() {
        let key: KeyInfo = serde_json::from_str(
            r#"{"valid":true,"keyName":"web1","userRole":"reportedip_free","permissions":["report","check"],"limits":{"dailyApiLimit":1000,"remainingApiCalls":990,"dailyReportLimit":50,"remainingReports":38,"dailyReportUsage":12,"resetTime":1796083200},"domains":{"used":1,"limit":3,"status":"active"}}"#,
        )
        .unwrap();
        let view = KeyView {
            config: "/etc/reportedip/reportedip.toml".into(),
            api_url: "https://reportedip.com/wp-json/reportedip/v2".into(),
            valid: true,
            can_report: true,
            problems: KeyView::problems(&key),
            key,
            roots: "system store /etc/ssl/certs/ca-certificates.crt (146 certificates)".into(),
            exit_code: 0,
            source: "/etc/reportedip/reportedip.toml".into(),
        };
        assert!(view.problems.is_empty());
        assert_eq!(
            format!("{view}\n"),
            include_str!("../tests/golden/verify-key.txt")
        );
        let bare = KeyView {
            valid: false,
            key: KeyInfo::default(),
            source: "(no file; key from the environment)".into(),
            ..view
        };
        assert_eq!(
            format!("{bare}\n"),
            include_str!("../tests/golden/verify-key-bare.txt")
        );
    }
}
