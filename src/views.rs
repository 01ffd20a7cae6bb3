//! What `status` and `verify-key` show: one struct each, serialized as is for `--json` and
//! displayed as aligned text, so that both forms always carry the same fields.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::api::{CheckInfo, Domains, KeyInfo, Limits};
use crate::clock::{format_span, format_utc};
use crate::prometheus::{Kind, Metrics};
use crate::state::{Event, State};

#[derive(Debug, Default, Serialize)]
pub struct StatusView {
    pub state_dir: PathBuf,
    /// Whether the state could be read; every other field is zero when it could not.
    pub state_readable: bool,
    /// Reports waiting: in the spool, and in the inbox for the next sender to import.
    pub waiting: u64,
    /// Of those, the reports in the inbox (written while the store was held too long).
    pub inbox: u64,
    pub oldest_age_secs: Option<u64>,
    pub backoff: BackoffView,
    pub sender_running: bool,
    pub last_success: Option<EventView>,
    pub last_error: Option<EventView>,
    /// Running totals since the state began.
    pub sent: u64,
    pub rejected: u64,
    pub dropped: u64,
    /// Reports now set aside (rows of the `set_aside` table and files in `set-aside/`).
    pub set_aside: u64,
    /// Reports set aside since the state began.
    pub set_aside_total: u64,
    /// Temp files left by interrupted writes, cleaned up so far.
    pub stale_temps_removed: u64,
    /// Bans that arrived while the config could not be used, waiting for a working one.
    pub held: u64,
    /// The config error when the latest of them arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_because: Option<String>,
    /// Reports the API fails on alone, retried apart from the others.
    pub suspects: u64,
    pub cooldown_entries: u64,
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

#[derive(Debug, Default, Serialize)]
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
    pub at_epoch: u64,
    pub message: String,
}

impl From<&Event> for EventView {
    fn from(event: &Event) -> Self {
        Self {
            at: format_utc(event.at),
            at_epoch: event.at,
            // Stored text may hold what a server said: shown only with control, bidi and
            // escape characters replaced.
            message: crate::validate::sanitize_comment(&event.message),
        }
    }
}

impl StatusView {
    /// node_exporter textfile-collector metrics: one `# HELP`, `# TYPE` and sample each.
    pub fn prometheus(&self) -> String {
        let mut metrics = Metrics::new();
        let mut metric = |name: &str, kind: Kind, help: &str, value: Option<u64>| {
            if let Some(value) = value {
                metrics.add(&format!("reportedip_{name}"), kind, help, value);
            }
        };
        let gauge = Kind::Gauge;
        let counter = Kind::Counter;
        metric(
            "state_readable",
            gauge,
            "Whether the state could be read (1) or not (0: every other value is unknown).",
            Some(u64::from(self.state_readable)),
        );
        metric(
            "reports_waiting",
            gauge,
            "Reports waiting for delivery (spool and inbox).",
            Some(self.waiting),
        );
        metric(
            "oldest_waiting_age_seconds",
            gauge,
            "Age of the oldest waiting report (0 when none wait).",
            Some(self.oldest_age_secs.unwrap_or(0)),
        );
        metric(
            "backoff_until_timestamp_seconds",
            gauge,
            "End of the backoff window, UNIX time (0 when none).",
            Some(self.backoff.until_epoch.unwrap_or(0)),
        );
        metric(
            "sender_running",
            gauge,
            "Whether a background sender is at work (1) or not (0).",
            Some(u64::from(self.sender_running)),
        );
        metric(
            "last_success_timestamp_seconds",
            gauge,
            "When the API last accepted a report, UNIX time (0: never).",
            Some(self.last_success.as_ref().map_or(0, |e| e.at_epoch)),
        );
        metric(
            "last_error_timestamp_seconds",
            gauge,
            "When delivery last failed, UNIX time (0: never).",
            Some(self.last_error.as_ref().map_or(0, |e| e.at_epoch)),
        );
        metric(
            "reports_sent_total",
            counter,
            "Reports the API accepted.",
            Some(self.sent),
        );
        metric(
            "reports_rejected_total",
            counter,
            "Reports the API refused for good (400/422).",
            Some(self.rejected),
        );
        metric(
            "reports_dropped_total",
            counter,
            "Spooled reports dropped by spool_max or spool_max_age.",
            Some(self.dropped),
        );
        metric(
            "reports_set_aside_total",
            counter,
            "Spooled reports set aside (unreadable, or failing alone).",
            Some(self.set_aside_total),
        );
        metric(
            "held_bans",
            gauge,
            "Bans kept while the config could not be used, waiting for a working one.",
            Some(self.held),
        );
        metric(
            "suspect_reports",
            gauge,
            "Waiting reports the API fails on alone, retried apart.",
            Some(self.suspects),
        );
        if let Some(quota) = self.quota.as_ref().filter(|q| !q.stale) {
            metric(
                "quota_limit",
                gauge,
                "Daily report quota, from the last answer.",
                quota.limit,
            );
            metric(
                "quota_remaining",
                gauge,
                "Reports the daily quota still allows.",
                quota.remaining,
            );
            metric(
                "quota_reset_timestamp_seconds",
                gauge,
                "When the daily quota resets, UNIX time.",
                quota.reset_epoch,
            );
        }
        metrics.into_text()
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
        let inbox = match self.inbox {
            0 => String::new(),
            n => format!(" ({n} in the inbox)"),
        };
        writeln!(f, "spool:        {} waiting{inbox}{oldest}", self.waiting)?;
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
        if self.held > 0 {
            writeln!(
                f,
                "held:         {} ban(s) from while the config was broken ({}); sent with the next delivery",
                self.held,
                self.held_because.as_deref().unwrap_or("-")
            )?;
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
            "set aside:    {} report(s) that cannot be sent",
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

/// What `check` shows about one address.
#[derive(Debug, Serialize)]
pub struct CheckView {
    pub ip: String,
    pub confidence: Option<i64>,
    pub total_reports: Option<i64>,
    pub last_reported_at: Option<serde_json::Value>,
    pub is_tor: Option<serde_json::Value>,
    pub is_whitelisted: Option<serde_json::Value>,
    /// The rest of a verbose answer, as the API gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl CheckView {
    pub fn new(ip: std::net::IpAddr, info: CheckInfo, verbose: bool) -> Self {
        let mut details = info.details;
        details.remove("ipAddress");
        Self {
            ip: ip.to_string(),
            confidence: info.abuse_confidence_percentage,
            total_reports: info.total_reports,
            last_reported_at: info.last_reported_at.filter(|v| !v.is_null()),
            is_tor: info.is_tor,
            is_whitelisted: info.is_whitelisted,
            details: (verbose && !details.is_empty()).then_some(details),
        }
    }
}

/// A JSON value for people: text as is, `true`/`false` as yes/no, others compact.
fn plain(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => "-".to_string(),
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Bool(yes)) => if *yes { "yes" } else { "no" }.to_string(),
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(1) => "yes".to_string(),
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(0) => "no".to_string(),
        Some(other) => other.to_string(),
    }
}

impl fmt::Display for CheckView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = |n: Option<i64>| n.map_or("-".to_string(), |n| n.to_string());
        writeln!(f, "ip:          {}", self.ip)?;
        let confidence = self.confidence.map_or("-".to_string(), |c| format!("{c}%"));
        writeln!(f, "confidence:  {confidence}")?;
        writeln!(f, "reports:     {}", number(self.total_reports))?;
        writeln!(f, "last report: {}", plain(self.last_reported_at.as_ref()))?;
        writeln!(f, "tor:         {}", plain(self.is_tor.as_ref()))?;
        write!(f, "whitelisted: {}", plain(self.is_whitelisted.as_ref()))?;
        for (key, value) in self.details.iter().flatten() {
            let mut text = plain(Some(value));
            if text.chars().count() > 200 {
                text = text.chars().take(200).collect::<String>() + "…";
            }
            let text: String = text
                .chars()
                .map(|c| {
                    if crate::validate::is_unsafe_char(c) {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
            write!(f, "\n{key}: {text}")?;
        }
        Ok(())
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

    /// Compares `actual` with the snapshot file `tests/golden/NAME`; with
    /// `UPDATE_SNAPSHOTS=1` it rewrites the file instead (then review the diff).
    fn assert_snapshot(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            expected == actual,
            "{} differs (UPDATE_SNAPSHOTS=1 cargo test rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }

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
            state_readable: true,
            waiting: 12,
            inbox: 0,
            oldest_age_secs: Some(1500),
            backoff: BackoffView::of(&state, now),
            sender_running: false,
            last_success: state.last_success.as_ref().map(EventView::from),
            last_error: state.last_error.as_ref().map(EventView::from),
            sent: 120,
            rejected: 2,
            dropped: state.dropped,
            set_aside: 1,
            set_aside_total: 1,
            stale_temps_removed: state.stale_temps_removed,
            held: 0,
            held_because: None,
            suspects: 1,
            cooldown_entries: 3,
            quota: QuotaView::of(&state, now),
        };
        assert_snapshot("status.txt", &format!("{view}\n"));
        let idle = StatusView {
            waiting: 0,
            oldest_age_secs: None,
            backoff: BackoffView::of(&State::default(), now),
            last_success: None,
            last_error: None,
            quota: None,
            ..view
        };
        assert_snapshot("status-idle.txt", &format!("{idle}\n"));
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
        assert_snapshot("verify-key.txt", &format!("{view}\n"));
        let bare = KeyView {
            valid: false,
            key: KeyInfo::default(),
            source: "(no file; key from the environment)".into(),
            ..view
        };
        assert_snapshot("verify-key-bare.txt", &format!("{bare}\n"));
    }
}
