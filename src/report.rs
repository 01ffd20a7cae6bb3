//! One report, typed: built from the command line, kept as is in the spool, and read back
//! through the same checks, so that nothing unchecked is ever sent.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use crate::categories::{Categories, CategoryError};
use crate::config::Config;
use crate::validate::{non_global_reason, parse_ip, sanitize_comment};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Globally routable, in canonical form.
    #[serde(deserialize_with = "global_ip")]
    pub ip: IpAddr,
    pub categories: Categories,
    /// Free of control characters and at most [`crate::validate::COMMENT_MAX_BYTES`].
    #[serde(deserialize_with = "clean_text")]
    pub comment: String,
    #[serde(default, deserialize_with = "clean_jail")]
    pub jail: Option<String>,
    /// When the ban asked for the report (UNIX seconds).
    pub queued_at: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("{0}")]
    Categories(#[from] CategoryError),
    #[error(
        "no categories: pass --categories, use a jail from the built-in table, or set \
         categories in the config"
    )]
    NoCategories,
}

/// What a ban asks to report, as fail2ban's tags (or a person) gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ban {
    pub categories: Option<String>,
    pub jail: Option<String>,
    pub failures: Option<u64>,
    pub comment: Option<String>,
}

impl Report {
    /// The report that `ban` asks for about `ip` (already parsed and allowed by policy).
    pub fn from_ban(ip: IpAddr, ban: &Ban, config: &Config, now: u64) -> Result<Self, ReportError> {
        let jail = ban
            .jail
            .as_deref()
            .map(sanitize_comment)
            .filter(|jail| !jail.trim().is_empty());
        let categories = resolve_categories(ban.categories.as_deref(), jail.as_deref(), config)?;
        let comment = match &ban.comment {
            Some(text) => sanitize_comment(text),
            None => {
                let jail = jail.as_deref().unwrap_or("manual");
                sanitize_comment(&config.render_comment(&ip.to_string(), jail, ban.failures))
            }
        };
        Ok(Self {
            ip,
            categories,
            comment,
            jail,
            queued_at: now,
        })
    }
}

impl Report {
    /// A report as the store keeps it, read back through the same checks as a new one, so
    /// that a damaged or forged row is never sent; the error says why it cannot be.
    pub fn from_stored(
        ip: String,
        categories: String,
        comment: String,
        jail: Option<String>,
        queued_at: u64,
    ) -> Result<Self, String> {
        let stored = serde_json::json!({
            "ip": ip,
            "categories": categories,
            "comment": comment,
            "jail": jail,
            "queued_at": queued_at,
        });
        serde_json::from_value(stored).map_err(|err| err.to_string())
    }
}

/// `--categories`, else the jail in the config, else the built-in jail table, else the
/// config default. An empty `--categories ""` (what the action passes) counts as absent.
fn resolve_categories(
    given: Option<&str>,
    jail: Option<&str>,
    config: &Config,
) -> Result<Categories, ReportError> {
    if let Some(list) = given.filter(|list| !list.trim().is_empty()) {
        return Ok(Categories::parse(list)?);
    }
    let from_jail = jail.and_then(|jail| {
        config
            .jail_categories
            .get(jail)
            .cloned()
            .or_else(|| Categories::for_jail(jail))
    });
    from_jail
        .or_else(|| config.categories.clone())
        .ok_or(ReportError::NoCategories)
}

fn global_ip<'de, D: Deserializer<'de>>(de: D) -> Result<IpAddr, D::Error> {
    let text = String::deserialize(de)?;
    let ip = parse_ip(&text).map_err(serde::de::Error::custom)?;
    match non_global_reason(ip) {
        Some(why) => Err(serde::de::Error::custom(format!("{ip} is {why}"))),
        None => Ok(ip),
    }
}

fn clean_text<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    String::deserialize(de).map(|text| sanitize_comment(&text))
}

fn clean_jail<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let jail = Option::<String>::deserialize(de)?;
    Ok(jail.map(|text| sanitize_comment(&text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<Report, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_report_survives_the_spool_unchanged() {
        let report = Report {
            ip: "2a01:4f8::1".parse().unwrap(),
            categories: Categories::parse("22,18").unwrap(),
            comment: "fail2ban sshd: 5 failed attempts".into(),
            jail: Some("sshd".into()),
            queued_at: 1_796_083_200,
        };
        let text = serde_json::to_string(&report).unwrap();
        assert_eq!(
            text,
            r#"{"ip":"2a01:4f8::1","categories":"22,18","comment":"fail2ban sshd: 5 failed attempts","jail":"sshd","queued_at":1796083200}"#
        );
        assert_eq!(read(&text), Ok(report));
    }

    #[test]
    fn rows_of_the_store_pass_the_same_checks() {
        let report = Report::from_stored(
            "45.1.1.1".into(),
            "ssh".into(),
            "a\u{1b}[2Jb".into(),
            Some("sshd".into()),
            7,
        )
        .unwrap();
        assert_eq!(report.categories.to_string(), "22");
        assert_eq!(report.comment, "a [2Jb");
        let err = Report::from_stored("10.0.0.1".into(), "18".into(), String::new(), None, 1)
            .unwrap_err();
        assert!(err.contains("private"), "{err}");
    }

    #[test]
    fn stored_reports_pass_the_same_checks_as_new_ones() {
        let ok = r#"{"ip":" ::ffff:45.1.1.1","categories":"ssh","comment":"a\nb","queued_at":1}"#;
        let report = read(ok).unwrap();
        assert_eq!(report.ip.to_string(), "45.1.1.1");
        assert_eq!(report.categories.to_string(), "22");
        assert_eq!(report.comment, "a b");
        assert_eq!(report.jail, None);
        for (bad, why) in [
            (
                r#"{"ip":"10.0.0.1","categories":"18","comment":"","queued_at":1}"#,
                "private",
            ),
            (
                r#"{"ip":"45.1","categories":"18","comment":"","queued_at":1}"#,
                "not an IPv4",
            ),
            (
                r#"{"ip":"45.1.1.1","categories":"99","comment":"","queued_at":1}"#,
                "unknown category",
            ),
            (
                r#"{"ip":"45.1.1.1","categories":"18","comment":"","queued_at":1,"x":1}"#,
                "unknown field",
            ),
            (
                r#"{"ip":"45.1.1.1","categories":"18","queued_at":1}"#,
                "missing field",
            ),
        ] {
            let err = read(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
