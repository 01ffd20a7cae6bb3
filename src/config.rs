//! The TOML configuration: read in two stages (serde `RawConfig`, then a validated [`Config`]),
//! refusing files that other users could read and keys nobody defined.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::categories::{Categories, CategoryError};
use crate::secret::SecretString;
use crate::validate::Network;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/reportedip/reportedip.toml";
pub const DEFAULT_API_URL: &str = "https://reportedip.com/wp-json/reportedip/v2";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/reportedip-report";
pub const DEFAULT_COMMENT: &str = "fail2ban {jail}: {failures} failed attempts";
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// The key in the packaged example config; it means "not configured yet".
pub const PLACEHOLDER_KEY: &str = "PASTE-YOUR-API-KEY-HERE";
/// Environment variable that overrides `api_key` for one-off shell use.
pub const KEY_ENV: &str = "REPORTEDIP_API_KEY";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config {path} not found; create it with your api_key and run chmod 600 {path}")]
    NotFound { path: PathBuf },
    #[error("cannot read config {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error(
        "config {path} is mode {mode:04o}, so other users can read the API key; run chmod 600 {path}"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("config {path} is owned by uid {owner}, not by you or root; run chown root: {path}")]
    Owner { path: PathBuf, owner: u32 },
    #[error("config {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config {path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("config {path} has no api_key; add api_key = \"…\" (or set {KEY_ENV} for one-off use)")]
    MissingKey { path: PathBuf },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api_key: Option<String>,
    api_url: Option<String>,
    timeout: Option<i64>,
    categories: Option<RawCategories>,
    comment: Option<String>,
    ignore: Option<Vec<String>>,
    state_dir: Option<PathBuf>,
    cooldown: Option<i64>,
    spool_max: Option<i64>,
    spool_max_age: Option<i64>,
    syslog: Option<bool>,
    jail_categories: Option<BTreeMap<String, RawCategories>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCategories {
    List(String),
    Items(Vec<RawCategory>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCategory {
    Id(i64),
    Name(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// Whether `path` existed; without it every setting is a default.
    pub file_found: bool,
    pub api_key: Option<SecretString>,
    /// The packaged example's placeholder is still there: no key, but a clearer message.
    pub key_is_placeholder: bool,
    pub api_url: String,
    pub timeout: Duration,
    pub categories: Option<Categories>,
    pub comment: String,
    pub ignore: Vec<Network>,
    pub state_dir: PathBuf,
    pub cooldown: u64,
    pub spool_max: usize,
    pub spool_max_age: u64,
    pub syslog: bool,
    pub jail_categories: BTreeMap<String, Categories>,
}

impl Config {
    /// The settings used when no file exists (dry runs, or a key from the environment).
    pub fn defaults(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            file_found: false,
            api_key: None,
            key_is_placeholder: false,
            api_url: DEFAULT_API_URL.to_string(),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            categories: None,
            comment: DEFAULT_COMMENT.to_string(),
            ignore: Vec::new(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            cooldown: 900,
            spool_max: 10_000,
            spool_max_age: 86_400,
            syslog: true,
            jail_categories: BTreeMap::new(),
        }
    }

    /// The key, or the error that tells the operator where to put it.
    pub fn require_key(&self) -> Result<&SecretString, ConfigError> {
        if let Some(key) = &self.api_key {
            return Ok(key);
        }
        if self.key_is_placeholder {
            return Err(ConfigError::Invalid {
                path: self.path.clone(),
                key: "api_key".into(),
                reason: "is still the placeholder; paste your key from reportedip.com".into(),
            });
        }
        Err(ConfigError::MissingKey {
            path: self.path.clone(),
        })
    }

    /// Fills the comment template; unknown placeholders were refused at load time.
    pub fn render_comment(&self, ip: &str, jail: &str, failures: &str) -> String {
        self.comment
            .replace("{ip}", ip)
            .replace("{jail}", jail)
            .replace("{failures}", failures)
    }
}

/// Reads and validates the config at `path`. A missing file is an error unless `missing_ok`
/// (dry runs) or a key comes from the environment (`env_key`, which also overrides the file).
pub fn load(path: &Path, env_key: Option<String>, missing_ok: bool) -> Result<Config, ConfigError> {
    let env_key = env_key
        .filter(|key| !key.is_empty())
        .map(|key| check_key(path, key))
        .transpose()?;
    let mut config = match read_checked(path) {
        Ok(text) => parse(path, &text)?,
        Err(ConfigError::NotFound { .. }) if missing_ok || env_key.is_some() => {
            Config::defaults(path)
        }
        Err(err) => return Err(err),
    };
    if env_key.is_some() {
        config.api_key = env_key;
    }
    Ok(config)
}

fn read_checked(path: &Path) -> Result<String, ConfigError> {
    let meta = fs::metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ConfigError::NotFound {
            path: path.to_path_buf(),
        },
        _ => ConfigError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if let Some(me) = effective_uid()
        && meta.uid() != me
        && meta.uid() != 0
    {
        return Err(ConfigError::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
        });
    }
    fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// The kernel makes /proc/self owned by the process's effective uid; this avoids an FFI call.
fn effective_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|meta| meta.uid())
}

/// Parses config text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|err| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: describe_toml_error(text, &err),
    })?;
    validate(path, raw)
}

/// toml's own message quotes the offending source line, which may be the key itself: show
/// the line number and the bare message instead, and nothing at all about an api_key line.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let Some(span) = err.span() else {
        return err.message().to_string();
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    if line.trim_start().starts_with("api_key") {
        return format!("line {line_no}: api_key must be a quoted string, e.g. api_key = \"…\"");
    }
    format!("line {line_no}: {}", err.message().trim_end())
}

fn validate(path: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
    let invalid = |key: &str, reason: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let mut config = Config::defaults(path);
    config.file_found = true;
    match raw.api_key {
        Some(key) if key.trim() == PLACEHOLDER_KEY => config.key_is_placeholder = true,
        Some(key) => config.api_key = Some(check_key(path, key)?),
        None => {}
    }
    if let Some(url) = raw.api_url {
        config.api_url = check_api_url(&url).map_err(|reason| invalid("api_url", reason))?;
    }
    if let Some(secs) = raw.timeout {
        if !(1..=60).contains(&secs) {
            return Err(invalid(
                "timeout",
                format!("{secs} is out of range 1..=60 seconds"),
            ));
        }
        config.timeout = Duration::from_secs(secs.unsigned_abs());
    }
    if let Some(cats) = raw.categories {
        config.categories =
            Some(categories(cats).map_err(|err| invalid("categories", err.to_string()))?);
    }
    if let Some(template) = raw.comment {
        check_template(&template).map_err(|reason| invalid("comment", reason))?;
        config.comment = template;
    }
    for entry in raw.ignore.unwrap_or_default() {
        let net = entry
            .parse::<Network>()
            .map_err(|err| invalid("ignore", err.to_string()))?;
        config.ignore.push(net);
    }
    if let Some(dir) = raw.state_dir {
        if !dir.is_absolute() {
            return Err(invalid(
                "state_dir",
                format!("{} is not an absolute path", dir.display()),
            ));
        }
        config.state_dir = dir;
    }
    if let Some(secs) = raw.cooldown {
        config.cooldown = non_negative(secs).ok_or_else(|| invalid("cooldown", negative(secs)))?;
    }
    if let Some(max) = raw.spool_max {
        config.spool_max = usize::try_from(max)
            .ok()
            .filter(|max| *max >= 1)
            .ok_or_else(|| invalid("spool_max", format!("{max} must be at least 1")))?;
    }
    if let Some(secs) = raw.spool_max_age {
        config.spool_max_age = non_negative(secs)
            .filter(|secs| *secs >= 1)
            .ok_or_else(|| invalid("spool_max_age", format!("{secs} must be at least 1 second")))?;
    }
    if let Some(syslog) = raw.syslog {
        config.syslog = syslog;
    }
    for (jail, cats) in raw.jail_categories.unwrap_or_default() {
        let key = format!("jail_categories.{jail}");
        let cats = categories(cats).map_err(|err| invalid(&key, err.to_string()))?;
        config.jail_categories.insert(jail, cats);
    }
    Ok(config)
}

fn non_negative(value: i64) -> Option<u64> {
    u64::try_from(value).ok()
}

fn negative(value: i64) -> String {
    format!("{value} must not be negative")
}

fn check_key(path: &Path, key: String) -> Result<SecretString, ConfigError> {
    let key = key.trim().to_string();
    // The key goes into an HTTP header: anything but visible ASCII would corrupt the request.
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            key: "api_key".into(),
            reason: "is empty or contains spaces or control characters; paste the key exactly \
                     as your ReportedIP account shows it"
                .into(),
        });
    }
    Ok(SecretString::new(key))
}

fn categories(raw: RawCategories) -> Result<Categories, CategoryError> {
    match raw {
        RawCategories::List(list) => Categories::parse(&list),
        RawCategories::Items(items) => {
            let texts: Vec<String> = items
                .into_iter()
                .map(|item| match item {
                    RawCategory::Id(id) => id.to_string(),
                    RawCategory::Name(name) => name,
                })
                .collect();
            Categories::from_items(texts.iter().map(String::as_str))
        }
    }
}

fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| {
            "unclosed '{'; placeholders are {ip}, {jail} and {failures}".to_string()
        })?;
        let name = &after[..close];
        if !matches!(name, "ip" | "jail" | "failures") {
            return Err(format!(
                "unknown placeholder {{{name}}}; use {{ip}}, {{jail}} or {{failures}}"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Checks `api_url` and returns it without a trailing slash. Plain http is allowed only for
/// loopback hosts, so the key never crosses a network in clear text.
pub fn check_api_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL like {DEFAULT_API_URL}"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if authority.contains('@') {
        return Err("must not contain a user name or password".into());
    }
    if url.contains(['?', '#']) {
        return Err("must not contain a query or fragment".into());
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(url.to_string()),
        "http" if is_loopback_host(authority) => Ok(url.to_string()),
        "http" => Err(format!(
            "plain http would send the key unencrypted; use https:// (http is only allowed for \
             127.0.0.1, [::1] and localhost), e.g. {DEFAULT_API_URL}"
        )),
        other => Err(format!("unsupported scheme {other:?}; use https://")),
    }
}

fn is_loopback_host(authority: &str) -> bool {
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or("")
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/t/reportedip.toml"), text)
    }

    #[test]
    fn full_schema_parses() {
        let config = parse_text(
            r#"
api_key = "abc123"
api_url = "https://example.net/wp-json/reportedip/v2/"
timeout = 5
categories = [18, "ssh"]
comment = "{jail} saw {ip} fail {failures}x"
ignore = ["198.51.100.0/24", "2001:db8:1::/48"]
state_dir = "/tmp/state"
cooldown = 0
spool_max = 5
spool_max_age = 60
syslog = false
[jail_categories]
my-webapp = "18,21"
"#,
        )
        .unwrap();
        assert_eq!(config.api_key.unwrap().expose(), "abc123");
        assert_eq!(config.api_url, "https://example.net/wp-json/reportedip/v2");
        assert_eq!(config.timeout, Duration::from_secs(5));
        assert_eq!(config.categories.unwrap().to_string(), "18,22");
        assert_eq!(config.ignore.len(), 2);
        assert_eq!(config.cooldown, 0);
        assert_eq!(config.spool_max, 5);
        assert!(!config.syslog);
        assert_eq!(config.jail_categories["my-webapp"].to_string(), "18,21");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse_text("api_kye = \"x\"").unwrap_err().to_string();
        assert!(err.contains("api_kye"), "{err}");
    }

    #[test]
    fn syntax_errors_never_echo_the_key_line() {
        let err = parse_text("api_key = \"s3cr3t-value\ntimeout = 3\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        let err = parse_text("api_key = 123456789\n").unwrap_err().to_string();
        assert!(!err.contains("123456789"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let cases = [
            ("timeout = 0", "timeout"),
            ("timeout = 61", "timeout"),
            ("categories = \"18,99\"", "categories"),
            ("comment = \"{user} failed\"", "comment"),
            ("ignore = [\"10.0.0.0/40\"]", "ignore"),
            ("state_dir = \"relative\"", "state_dir"),
            ("cooldown = -1", "cooldown"),
            ("spool_max = 0", "spool_max"),
            ("api_url = \"http://reportedip.com/v2\"", "api_url"),
            ("api_url = \"ftp://x/v2\"", "api_url"),
            ("api_url = \"https://user:pw@x/v2\"", "api_url"),
            ("api_key = \"two words\"", "api_key"),
            (
                "[jail_categories]\nsshd = \"bogus\"",
                "jail_categories.sshd",
            ),
        ];
        for (text, key) in cases {
            match parse_text(text) {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn placeholder_key_counts_as_missing_with_its_own_message() {
        let config = parse_text("api_key = \"PASTE-YOUR-API-KEY-HERE\"").unwrap();
        assert!(config.api_key.is_none());
        let err = config.require_key().unwrap_err().to_string();
        assert!(err.contains("still the placeholder"), "{err}");
    }

    #[test]
    fn http_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080/v2",
            "http://localhost/v2",
            "http://[::1]:9/v2",
        ] {
            assert!(check_api_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/v2",
            "http://127.0.0.1.evil.com/v2",
            "http://localhost.evil/v2",
        ] {
            assert!(check_api_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn comment_template_fills_placeholders() {
        let config = Config::defaults(Path::new("/x"));
        assert_eq!(
            config.render_comment("1.2.3.4", "sshd", "5"),
            "fail2ban sshd: 5 failed attempts"
        );
    }

    #[test]
    fn debug_output_redacts_the_key() {
        let config = parse_text("api_key = \"very-secret-key\"").unwrap();
        assert!(!format!("{config:?}").contains("very-secret"));
    }
}
