//! The ReportedIP category table, category lists, and the built-in jail table.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use thiserror::Error;

/// ID and name of every category the API accepts (1–23 match AbuseIPDB).
pub const CATEGORIES: &[(u8, &str)] = &[
    (1, "DNS Compromise"),
    (2, "DNS Poisoning"),
    (3, "Fraud Orders"),
    (4, "DDoS Attack"),
    (5, "FTP Brute-Force"),
    (6, "Ping of Death"),
    (7, "Phishing"),
    (8, "Fraud VoIP"),
    (9, "Open Proxy"),
    (10, "Web Spam"),
    (11, "Email Spam"),
    (12, "Blog Spam"),
    (13, "VPN IP"),
    (14, "Port Scan"),
    (15, "Hacking"),
    (16, "SQL Injection"),
    (17, "Spoofing"),
    (18, "Brute-Force"),
    (19, "Bad Web Bot"),
    (20, "Exploited Host"),
    (21, "Web App Attack"),
    (22, "SSH"),
    (23, "IoT Targeted"),
    (24, "Cryptocurrency Mining"),
    (25, "Ransomware C&C"),
    (26, "Banking Trojan"),
    (27, "Mobile Malware"),
    (28, "Supply Chain Attack"),
    (29, "Zero-Day Exploit"),
    (30, "Nation State"),
    (31, "WP Login Brute Force"),
    (32, "WP Admin Brute Force"),
    (33, "WP XML-RPC Brute Force"),
    (34, "WP REST API Abuse"),
    (35, "WP Plugin Exploit"),
    (36, "WP Theme Exploit"),
    (37, "WP Core Exploit"),
    (38, "WP Zero-Day Exploit"),
    (39, "WP Comment Spam"),
    (40, "WP Contact Form Spam"),
    (41, "WP Registration Spam"),
    (42, "WP Trackback Spam"),
    (43, "WP File Upload Malware"),
    (44, "WP Code Injection"),
    (45, "WP Database Injection"),
    (46, "WP Backdoor Installation"),
    (47, "WP SEO Spam"),
    (48, "WP Content Scraping"),
    (49, "WP Fake SEO Bot"),
    (50, "WP Redirect Hijacking"),
    (51, "WP Resource Exhaustion"),
    (52, "WP Media Library Abuse"),
    (53, "WP Search Abuse"),
    (54, "WP Cron Abuse"),
    (55, "WP User Enumeration"),
    (56, "WP Version Scanning"),
    (57, "WP Plugin Scanning"),
    (58, "WP Config Exposure"),
    (59, "Honeytoken Triggered"),
    (60, "Webshell Access"),
    (61, "Indiscriminate Scan"),
    (62, "Source Code Disclosure"),
    (63, "Spider Trap"),
];

/// Categories for common fail2ban jails, from the ReportedIP fail2ban guide.
pub const JAIL_CATEGORIES: &[(&str, &[u8])] = &[
    ("sshd", &[18, 22]),
    ("postfix-sasl", &[11, 18]),
    ("dovecot", &[11, 18]),
    ("proftpd", &[5]),
    ("vsftpd", &[5]),
    ("nginx-http-auth", &[18, 21]),
    ("apache-auth", &[18, 21]),
    ("nginx-badbots", &[14, 19]),
    ("apache-badbots", &[14, 19]),
    ("apache-sqli", &[16, 21]),
    ("wordpress", &[18, 21]),
    ("recidive", &[15, 18]),
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CategoryError {
    #[error("unknown category {0:?}; run `reportedip-report categories` for the list")]
    Unknown(String),
    #[error("empty category list")]
    Empty,
}

/// Categories added to the API recently; an older deployment refuses a report that holds
/// any of them.
pub const RECENT: std::ops::RangeInclusive<u8> = 59..=63;

/// A non-empty, duplicate-free list of valid category IDs, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Categories(Vec<u8>);

impl Categories {
    /// Parses `18,22`, `ssh, Brute-Force` or a mix; names are matched case-insensitively
    /// with any run of spaces or punctuation treated as one hyphen.
    ///
    /// ```
    /// use reportedip_report::categories::Categories;
    ///
    /// let cats = Categories::parse("ssh, Brute-Force, 18").unwrap();
    /// assert_eq!(cats.to_string(), "22,18");
    /// assert!(Categories::parse("18,99").is_err());
    /// ```
    pub fn parse(list: &str) -> Result<Self, CategoryError> {
        Self::from_items(list.split(',').map(str::trim).filter(|s| !s.is_empty()))
    }

    pub fn from_items<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, CategoryError> {
        let mut ids = Vec::new();
        for item in items {
            let id = lookup(item).ok_or_else(|| CategoryError::Unknown(item.to_string()))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Err(CategoryError::Empty);
        }
        Ok(Self(ids))
    }

    pub fn for_jail(jail: &str) -> Option<Self> {
        JAIL_CATEGORIES
            .iter()
            .find(|(name, _)| *name == jail)
            .map(|(_, ids)| Self(ids.to_vec()))
    }

    pub fn ids(&self) -> &[u8] {
        &self.0
    }

    /// This list without the recently added categories ([`RECENT`]) and those left out,
    /// when it holds both kinds; else `None`.
    pub fn split_recent(&self) -> Option<(Self, Self)> {
        let (recent, older): (Vec<u8>, Vec<u8>) = self.0.iter().partition(|id| RECENT.contains(id));
        (!recent.is_empty() && !older.is_empty()).then_some((Self(older), Self(recent)))
    }
}

impl fmt::Display for Categories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

/// Kept in its text form (`18,22`), as the API takes it.
impl Serialize for Categories {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Read back through [`Categories::parse`], so a stored list is checked like a typed one.
impl<'de> Deserialize<'de> for Categories {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn lookup(item: &str) -> Option<u8> {
    if let Ok(id) = item.parse::<u8>() {
        return CATEGORIES
            .iter()
            .any(|(known, _)| *known == id)
            .then_some(id);
    }
    let wanted = normalize(item);
    CATEGORIES
        .iter()
        .find(|(_, name)| normalize(name) == wanted)
        .map(|(id, _)| *id)
}

fn normalize(name: &str) -> String {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join("-")
}

pub fn name_of(id: u8) -> Option<&'static str> {
    CATEGORIES
        .iter()
        .find(|(known, _)| *known == id)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_mix_case_insensitively() {
        let cats = Categories::parse("ssh, BRUTE-force,18, 22").unwrap();
        assert_eq!(cats.ids(), &[22, 18]);
        assert_eq!(cats.to_string(), "22,18");
    }

    #[test]
    fn names_with_spaces_and_symbols_match() {
        assert_eq!(Categories::parse("sql injection").unwrap().ids(), &[16]);
        assert_eq!(Categories::parse("ransomware-c&c").unwrap().ids(), &[25]);
        assert_eq!(
            Categories::parse("wp_login_brute_force").unwrap().ids(),
            &[31]
        );
    }

    #[test]
    fn unknown_ids_and_names_are_rejected() {
        assert_eq!(
            Categories::parse("0"),
            Err(CategoryError::Unknown("0".into()))
        );
        assert_eq!(
            Categories::parse("64"),
            Err(CategoryError::Unknown("64".into()))
        );
        assert_eq!(
            Categories::parse("18,sshh"),
            Err(CategoryError::Unknown("sshh".into()))
        );
        assert_eq!(Categories::parse(" , "), Err(CategoryError::Empty));
    }

    #[test]
    fn table_is_complete_and_ordered() {
        let ids: Vec<u8> = CATEGORIES.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, (1..=63).collect::<Vec<u8>>());
    }

    #[test]
    fn jail_table_uses_known_categories() {
        for (jail, ids) in JAIL_CATEGORIES {
            assert!(ids.iter().all(|id| (1..=63).contains(id)), "{jail}");
        }
        assert_eq!(Categories::for_jail("sshd").unwrap().to_string(), "18,22");
        assert!(Categories::for_jail("nope").is_none());
    }
}
