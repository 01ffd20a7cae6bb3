//! What became of a report: its status (which fixes the exit code), the log line, and the
//! `--json` object.

use std::net::IpAddr;

use serde::Serialize;

use crate::delivery::Receipt;
use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The API has the report.
    Sent,
    /// Deliberately not sent: cooldown, a non-global address, the ignore list.
    Skipped,
    /// Handed to the spool and the background sender (`--queue`).
    Queued,
    /// Not delivered now, kept in the spool for retry.
    Kept,
    /// Not delivered and could not be kept (no usable state_dir).
    NotDelivered,
    /// The API refused this report for good (400/422).
    Rejected,
    /// The key was refused or may not report; the report is kept.
    KeyRejected,
    /// The account has more sites than its plan allows; the report is kept.
    AccountLimit,
    /// `api_url` leads nowhere (404); the report is kept.
    WrongUrl,
    /// The arguments do not describe a valid report.
    Invalid,
    /// The configuration is missing or wrong.
    ConfigError,
    /// `--dry-run`: nothing was sent.
    DryRun,
}

/// Exit codes of SPEC §5.
pub mod exit {
    pub const OK: u8 = 0;
    pub const KEPT: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const REJECTED: u8 = 3;
    pub const KEY: u8 = 4;
    pub const CONFIG: u8 = 5;
    pub const SYSTEM: u8 = 6;
    pub const STATE: u8 = 7;
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Sent | Status::Skipped | Status::Queued | Status::DryRun => exit::OK,
            Status::Kept | Status::NotDelivered => exit::KEPT,
            Status::Invalid => exit::USAGE,
            Status::Rejected => exit::REJECTED,
            Status::KeyRejected | Status::AccountLimit => exit::KEY,
            Status::WrongUrl | Status::ConfigError => exit::CONFIG,
        }
    }

    /// Whether the outcome line is worth an error in syslog rather than an info line.
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            Status::Sent | Status::Skipped | Status::Queued | Status::DryRun
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<i64>,
    /// Reports in the spool after this one was handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<u64>,
    pub message: String,
    pub exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
}

impl Outcome {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            ip: None,
            categories: None,
            report_id: None,
            confidence: None,
            waiting: None,
            message: message.into(),
            exit_code: status.exit_code(),
            request: None,
        }
    }

    pub fn about(mut self, report: &Report) -> Self {
        self.ip = Some(report.ip.to_string());
        self.categories = Some(report.categories.to_string());
        self
    }

    pub fn with_receipt(mut self, receipt: &Receipt) -> Self {
        self.report_id.clone_from(&receipt.report_id);
        self.confidence = receipt.confidence;
        self
    }

    pub fn with_waiting(mut self, waiting: Option<u64>) -> Self {
        self.waiting = waiting;
        self
    }
}

/// `45.155.205.233 queued: HTTP 503; 12 reports waiting`, or without a reason for a report
/// queued on purpose.
pub fn queued_line(ip: IpAddr, reason: Option<&str>, waiting: u64) -> String {
    let reason = reason.map_or(String::new(), |reason| format!(": {reason}"));
    let waiting = match waiting {
        1 => "1 report waiting".to_string(),
        n => format!("{n} reports waiting"),
    };
    format!("{ip} queued{reason}; {waiting}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_table() {
        let expected = [
            (Status::Sent, 0),
            (Status::Skipped, 0),
            (Status::Queued, 0),
            (Status::DryRun, 0),
            (Status::Kept, 1),
            (Status::NotDelivered, 1),
            (Status::Invalid, 2),
            (Status::Rejected, 3),
            (Status::KeyRejected, 4),
            (Status::AccountLimit, 4),
            (Status::WrongUrl, 5),
            (Status::ConfigError, 5),
        ];
        for (status, code) in expected {
            assert_eq!(status.exit_code(), code, "{status:?}");
        }
    }
}
