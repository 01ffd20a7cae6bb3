//! The TOML configuration: read in two stages (serde `RawConfig`, then a validated [`Config`]),
//! refusing files that other users could read and keys nobody defined.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::categories::Categories;
use crate::secret::SecretString;
use crate::validate::Network;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/reportedip/reportedip.toml";
pub const DEFAULT_API_URL: &str = "https://reportedip.com/wp-json/reportedip/v2";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/reportedip-report";
/// Overrides [`DEFAULT_STATE_DIR`], the state_dir of a config that names none (and where bans
/// wait while no config can be read); for systems with another layout, and for tests.
pub const STATE_DIR_ENV: &str = "REPORTEDIP_STATE_DIR";

/// [`DEFAULT_STATE_DIR`], or [`STATE_DIR_ENV`] when it names an absolute path.
pub fn default_state_dir() -> PathBuf {
    std::env::var_os(STATE_DIR_ENV)
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

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
    #[error("cannot read config {path}: {source}{}", unreadable_hint(source))]
    Unreadable { path: PathBuf, source: io::Error },
    #[error(
        "config {path} is mode {mode:04o}, so other users can read the API key; run chmod 600 {path}"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("config {path} is owned by uid {owner}, not by you or root; run chown root: {path}")]
    Owner { path: PathBuf, owner: u32 },
    #[error("config {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config {path}: line {line}: {key} {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        reason: String,
    },
    #[error("config {path} has no api_key; add api_key = \"…\" (or set {KEY_ENV} for one-off use)")]
    MissingKey { path: PathBuf },
    #[error("config {path}: api_key is still the placeholder; paste your key from reportedip.com")]
    Placeholder { path: PathBuf },
    #[error(
        "config {path}: api_key is empty or contains spaces or control characters; paste the key \
         exactly as your ReportedIP account shows it"
    )]
    BadKey { path: PathBuf },
    #[error("{KEY_ENV} is not valid UTF-8; set it to the key exactly as your account shows it")]
    KeyEnvNotUnicode,
    #[error("{message}")]
    Misplaced { message: String },
}

/// What to do about a config that cannot be read.
fn unreadable_hint(source: &io::Error) -> &'static str {
    match source.kind() {
        io::ErrorKind::PermissionDenied => {
            "; it is root's: run the command as root (sudo), or point --config at a config you own"
        }
        _ => "",
    }
}

impl ConfigError {
    /// The config file the error is about, if it names one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigError::NotFound { path }
            | ConfigError::Unreadable { path, .. }
            | ConfigError::Permissions { path, .. }
            | ConfigError::Owner { path, .. }
            | ConfigError::Syntax { path, .. }
            | ConfigError::Invalid { path, .. }
            | ConfigError::MissingKey { path }
            | ConfigError::Placeholder { path }
            | ConfigError::BadKey { path } => Some(path),
            ConfigError::KeyEnvNotUnicode | ConfigError::Misplaced { .. } => None,
        }
    }

    /// Whether the file could not be read at all (as opposed to read and found wrong).
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            ConfigError::Unreadable { .. }
                | ConfigError::Permissions { .. }
                | ConfigError::Owner { .. }
        )
    }
}

/// Where reports wait while the config at `path` cannot be used: its `state_dir` if the file
/// can be read and names an absolute one (a file of the wrong mode still tells where its
/// state lives; its key is not used), else the default. Everything about such a report is
/// decided again under the fixed config.
pub fn state_dir_hint(path: &Path) -> PathBuf {
    // Only a file of root's or ours may say where root keeps state.
    let ours = fs::metadata(path)
        .is_ok_and(|meta| meta.uid() == 0 || Some(meta.uid()) == crate::fsio::effective_uid());
    ours.then(|| read_regular(path).ok())
        .flatten()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| table.get("state_dir")?.as_str().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(default_state_dir)
}

/// The file as written; every value keeps its place so that an error can name the line
/// without quoting the value (which may be the key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api_key: Option<Spanned<String>>,
    api_url: Option<Spanned<String>>,
    timeout: Option<Spanned<i64>>,
    categories: Option<Spanned<RawCategories>>,
    comment: Option<Spanned<String>>,
    ignore: Option<Vec<Spanned<String>>>,
    state_dir: Option<Spanned<PathBuf>>,
    cooldown: Option<Spanned<i64>>,
    spool_max: Option<Spanned<i64>>,
    spool_max_age: Option<Spanned<i64>>,
    syslog: Option<bool>,
    ca_file: Option<Spanned<PathBuf>>,
    metrics_file: Option<Spanned<PathBuf>>,
    jail_categories: Option<BTreeMap<Spanned<String>, Spanned<RawCategories>>>,
    blocklist: Option<Spanned<RawBlocklist>>,
}

/// `[blocklist]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBlocklist {
    source: Option<String>,
    lists: Option<Vec<String>>,
    min_confidence: Option<i64>,
    ipv6: Option<bool>,
    table: Option<String>,
    hooks: Option<Vec<String>>,
    allow: Option<Vec<String>>,
    max_age_days: Option<i64>,
    max_shrink_percent: Option<i64>,
    max_entries: Option<i64>,
}

/// The community blocklist's settings; present only when the config has `[blocklist]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocklist {
    /// Base URL of the feed (or a mirror of it).
    pub source: String,
    /// `["all"]`, or thematic list names.
    pub lists: Vec<String>,
    pub min_confidence: Option<u8>,
    pub ipv6: bool,
    pub table: String,
    pub hooks: Vec<String>,
    pub allow: Vec<Network>,
    pub max_age_days: u64,
    pub max_shrink_percent: u8,
    pub max_entries: u64,
}

/// The public feed (CC BY 4.0).
pub const DEFAULT_FEED: &str =
    "https://raw.githubusercontent.com/reportedip/reportedip-blacklist/main";

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
    /// Extra trusted CA certificates (PEM), on top of the system store.
    pub ca_file: Option<PathBuf>,
    /// Where `flush` writes the `status --prometheus` metrics, for node_exporter.
    pub metrics_file: Option<PathBuf>,
    pub jail_categories: BTreeMap<String, Categories>,
    /// Things worth fixing that did not stop the config from loading; each run logs them.
    pub warnings: Vec<String>,
    /// `[blocklist]`, when the config opts in.
    pub blocklist: Option<Blocklist>,
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
            state_dir: default_state_dir(),
            cooldown: 86_400,
            spool_max: 10_000,
            spool_max_age: 86_400,
            syslog: true,
            ca_file: None,
            metrics_file: None,
            jail_categories: BTreeMap::new(),
            warnings: Vec::new(),
            blocklist: None,
        }
    }

    /// The key, or the error that tells the operator where to put it.
    pub fn require_key(&self) -> Result<&SecretString, ConfigError> {
        if let Some(key) = &self.api_key {
            return Ok(key);
        }
        if self.key_is_placeholder {
            return Err(ConfigError::Placeholder {
                path: self.path.clone(),
            });
        }
        Err(ConfigError::MissingKey {
            path: self.path.clone(),
        })
    }

    /// Fills the comment template; unknown placeholders were refused at load time. The
    /// comment is public: a ban with no failure count (a manual `banip` gives 0) says
    /// `fail2ban <jail>: banned` instead of a count of "0" or "?".
    pub fn render_comment(&self, ip: &str, jail: &str, failures: Option<u64>) -> String {
        match failures.filter(|n| *n > 0) {
            Some(n) => self
                .comment
                .replace("{ip}", ip)
                .replace("{jail}", jail)
                .replace("{failures}", &n.to_string()),
            None if self.comment.contains("{failures}") => format!("fail2ban {jail}: banned"),
            None => self.comment.replace("{ip}", ip).replace("{jail}", jail),
        }
    }
}

/// Reads and validates the config at `path`. A missing file is an error unless `missing_ok`
/// (dry runs) or a key comes from the environment (`env_key`, which also overrides the file).
pub fn load(
    path: &Path,
    env_key: Result<Option<String>, ConfigError>,
    missing_ok: bool,
) -> Result<Config, ConfigError> {
    let env_key = env_key?
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

/// `REPORTEDIP_API_KEY`, if set; a value that is not UTF-8 is an error, not "unset".
pub fn env_key() -> Result<Option<String>, ConfigError> {
    match std::env::var(KEY_ENV) {
        Ok(key) => Ok(Some(key)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::KeyEnvNotUnicode),
    }
}

/// Largest config file read; a real one is a few hundred bytes.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The text of a regular file, at most [`MAX_CONFIG_BYTES`]: opened without blocking and
/// checked on the open file, so that a FIFO swapped in after any earlier check never hangs a
/// ban.
fn read_regular(path: &Path) -> io::Result<String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(file, MAX_CONFIG_BYTES), &mut text)?;
    Ok(text)
}

fn read_checked(path: &Path) -> Result<String, ConfigError> {
    let unreadable = |source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ConfigError::NotFound {
            path: path.to_path_buf(),
        },
        _ => unreadable(source),
    })?;
    // A FIFO or device would block the ban path or never end.
    if !meta.is_file() {
        return Err(unreadable(io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(unreadable(io::Error::other(format!(
            "larger than {MAX_CONFIG_BYTES} bytes"
        ))));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if let Some(me) = crate::fsio::effective_uid()
        && meta.uid() != me
        && meta.uid() != 0
    {
        return Err(ConfigError::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
        });
    }
    read_regular(path).map_err(unreadable)
}

/// Parses config text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|err| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: describe_toml_error(text, &err),
    })?;
    Checker { path, text }.validate(raw)
}

/// 1-based line of a byte offset in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// toml's messages quote the offending value, which may be the key: say the line and what
/// kind of problem it is, and name keys, but never show a value.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = plain_words(&redact_values(err.message().trim_end()));
    match err.span() {
        Some(span) => format!("line {}: {message}", line_of(text, span.start)),
        None => message,
    }
}

/// toml's and serde's words for what TOML wants, said the way an administrator writes the
/// file: no Rust type names, and the quoting rule where a value was left bare.
fn plain_words(message: &str) -> String {
    const BARE: &str = "a value that is text must be in double quotes, e.g. api_key = \"…\"";
    if message.starts_with("invalid float")
        || message.starts_with("invalid number")
        || message.starts_with("string values must be quoted")
    {
        return BARE.to_string();
    }
    let wants = [
        (
            "expected i64",
            "expected a whole number without quotes, e.g. timeout = 10",
        ),
        (
            "expected u64",
            "expected a whole number without quotes, e.g. timeout = 10",
        ),
        (
            "expected a boolean",
            "expected true or false without quotes",
        ),
        ("expected a string", "expected text in double quotes"),
    ];
    let mut out = message.to_string();
    for (rust, plain) in wants {
        out = out.replace(rust, plain);
    }
    out.replace("invalid type: ", "wrong kind of value: ")
        .replace("floating point", "a decimal number")
}

/// Keeps toml's words and the key names it cites (`unknown field `x``), drops every quoted
/// or backticked value (`invalid type: string "…"`).
fn redact_values(message: &str) -> String {
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len());
    let mut quote = None;
    for c in message.chars() {
        match quote {
            Some(open) if c == open => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '"' || c == '`' || c == '\'' => {
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    if quote.is_some() {
        out.push('…');
    }
    out
}

/// Checks raw values in the context of their file, for messages that point at a line.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn invalid<T>(&self, value: &Spanned<T>, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: line_of(self.text, value.span().start),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let mut config = Config::defaults(self.path);
        config.file_found = true;
        self.check_misplaced_key(&raw, &mut config)?;
        match raw.api_key {
            Some(key) if key.get_ref().trim() == PLACEHOLDER_KEY => {
                config.key_is_placeholder = true;
            }
            Some(key) => config.api_key = Some(check_key(self.path, key.into_inner())?),
            None => {}
        }
        if let Some(url) = raw.api_url {
            let (checked, warning) = check_api_url(url.get_ref())
                .map_err(|reason| self.invalid(&url, "api_url", reason))?;
            config.api_url = checked;
            config.warnings.extend(warning.map(|warning| {
                format!(
                    "config {}: line {}: api_url {warning}",
                    self.path.display(),
                    line_of(self.text, url.span().start)
                )
            }));
        }
        if let Some(secs) = raw.timeout {
            let value = *secs.get_ref();
            if !(1..=60).contains(&value) {
                return Err(self.invalid(&secs, "timeout", "must be 1 to 60 seconds"));
            }
            config.timeout = Duration::from_secs(value.unsigned_abs());
        }
        if let Some(cats) = raw.categories {
            config.categories = Some(self.categories(&cats, "categories")?);
        }
        if let Some(template) = raw.comment {
            check_template(template.get_ref())
                .map_err(|reason| self.invalid(&template, "comment", reason))?;
            config.comment = template.into_inner();
        }
        for entry in raw.ignore.unwrap_or_default() {
            let net = entry.get_ref().parse::<Network>().map_err(|_| {
                self.invalid(
                    &entry,
                    "ignore",
                    "has an entry that is not an address or a network like 198.51.100.0/24 \
                     or 2001:db8::/32",
                )
            })?;
            config.ignore.push(net);
        }
        if let Some(dir) = raw.state_dir {
            if !dir.get_ref().is_absolute() {
                return Err(self.invalid(&dir, "state_dir", "must be an absolute path"));
            }
            config.state_dir = dir.into_inner();
        }
        if let Some(secs) = raw.cooldown {
            config.cooldown = u64::try_from(*secs.get_ref())
                .map_err(|_| self.invalid(&secs, "cooldown", "must not be negative"))?;
        }
        if let Some(max) = raw.spool_max {
            config.spool_max = usize::try_from(*max.get_ref())
                .ok()
                .filter(|max| *max >= 1)
                .ok_or_else(|| self.invalid(&max, "spool_max", "must be at least 1"))?;
        }
        if let Some(secs) = raw.spool_max_age {
            config.spool_max_age = u64::try_from(*secs.get_ref())
                .ok()
                .filter(|secs| *secs >= 1)
                .ok_or_else(|| self.invalid(&secs, "spool_max_age", "must be at least 1 second"))?;
        }
        if let Some(syslog) = raw.syslog {
            config.syslog = syslog;
        }
        if let Some(file) = raw.ca_file {
            // Checked here for who may change it (a few stat calls); its certificates are
            // read only when an HTTPS connection needs them.
            if let Some(why) = crate::fsio::untrusted_file(file.get_ref()) {
                let why = format!(
                    "cannot be trusted: {why}; whoever can change it can read the key in \
                     transit. Fix: chown root: FILE && chmod 644 FILE"
                );
                return Err(self.invalid(&file, "ca_file", why));
            }
            config.ca_file = Some(file.into_inner());
        }
        if let Some(file) = raw.metrics_file {
            if !file.get_ref().is_absolute() {
                return Err(self.invalid(&file, "metrics_file", "must be an absolute path"));
            }
            config.metrics_file = Some(file.into_inner());
        }
        if let Some(section) = &raw.blocklist {
            config.blocklist = Some(self.blocklist(section)?);
        }
        for (jail, cats) in raw.jail_categories.unwrap_or_default() {
            // Dealt with by `check_misplaced_key`: never a jail, never to be quoted.
            if jail.get_ref() == "api_key" {
                continue;
            }
            let key = format!("jail_categories.{}", jail.get_ref());
            let cats = self.categories(&cats, &key)?;
            config.jail_categories.insert(jail.into_inner(), cats);
        }
        Ok(config)
    }

    fn blocklist(&self, section: &Spanned<RawBlocklist>) -> Result<Blocklist, ConfigError> {
        let raw = section.get_ref();
        let bad =
            |key: &str, reason: String| self.invalid(section, &format!("blocklist.{key}"), reason);
        let source = raw
            .source
            .clone()
            .unwrap_or_else(|| DEFAULT_FEED.to_string())
            .trim_end_matches('/')
            .to_string();
        let scheme_ok = source.starts_with("https://")
            || source
                .strip_prefix("http://")
                .and_then(|rest| rest.split(['/', ':']).next())
                .is_some_and(is_loopback_host);
        if !scheme_ok {
            return Err(bad(
                "source",
                "must be an https:// URL (http:// only for loopback)".into(),
            ));
        }
        let lists = raw.lists.clone().unwrap_or_else(|| vec!["all".into()]);
        let known =
            |name: &String| name == "all" || crate::blocklist::THEMATIC.contains(&name.as_str());
        if lists.is_empty()
            || !lists.iter().all(known)
            || (lists.len() > 1 && lists.contains(&"all".into()))
        {
            return Err(bad(
                "lists",
                format!(
                    "must be [\"all\"] or names from {}",
                    crate::blocklist::THEMATIC.join(", ")
                ),
            ));
        }
        let min_confidence = raw
            .min_confidence
            .map(|c| u8::try_from(c).ok().filter(|c| *c <= 100))
            .map(|c| c.ok_or_else(|| bad("min_confidence", "must be 0 to 100".into())))
            .transpose()?;
        let table = raw.table.clone().unwrap_or_else(|| "reportedip".into());
        if let Some(why) = crate::blocklist::table_name_problem(&table) {
            return Err(bad("table", why));
        }
        let hooks = raw.hooks.clone().unwrap_or_else(|| vec!["input".into()]);
        if hooks.is_empty() || !hooks.iter().all(|h| h == "input" || h == "forward") {
            return Err(bad(
                "hooks",
                "must be [\"input\"], [\"forward\"] or both".into(),
            ));
        }
        let allow = raw
            .allow
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|net| net.parse::<Network>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| bad("allow", err.to_string()))?;
        let positive = |key: &str, value: Option<i64>, default: u64| -> Result<u64, ConfigError> {
            value.map_or(Ok(default), |v| {
                u64::try_from(v)
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| bad(key, "must be a positive whole number".into()))
            })
        };
        let max_shrink_percent = raw
            .max_shrink_percent
            .map_or(Ok(50), |v| {
                u8::try_from(v).ok().filter(|v| *v <= 100).ok_or(())
            })
            .map_err(|()| bad("max_shrink_percent", "must be 0 to 100".into()))?;
        Ok(Blocklist {
            source,
            lists,
            min_confidence,
            ipv6: raw.ipv6.unwrap_or(true),
            table,
            hooks,
            allow,
            max_age_days: positive("max_age_days", raw.max_age_days, 7)?,
            max_shrink_percent,
            max_entries: positive("max_entries", raw.max_entries, 500_000)?,
        })
    }

    /// An `api_key` line after a `[table]` header lands inside that table: the most likely
    /// way to publish the key in an error message, so it gets its own.
    fn check_misplaced_key(&self, raw: &RawConfig, config: &mut Config) -> Result<(), ConfigError> {
        let Some(tables) = &raw.jail_categories else {
            return Ok(());
        };
        let Some((name, _)) = tables.iter().find(|(name, _)| name.get_ref() == "api_key") else {
            return Ok(());
        };
        let line = line_of(self.text, name.span().start);
        let advice = format!(
            "config {}: line {line}: api_key is inside [jail_categories], so it is not the API \
             key; move the api_key line above the first [table] line",
            self.path.display()
        );
        if raw.api_key.is_some() {
            config.warnings.push(advice);
            return Ok(());
        }
        Err(ConfigError::Misplaced { message: advice })
    }

    /// A category list; the message names the key and line, never the list.
    fn categories(
        &self,
        raw: &Spanned<RawCategories>,
        key: &str,
    ) -> Result<Categories, ConfigError> {
        let parsed = match raw.get_ref() {
            RawCategories::List(list) => Categories::parse(list),
            RawCategories::Items(items) => {
                let texts: Vec<String> = items
                    .iter()
                    .map(|item| match item {
                        RawCategory::Id(id) => id.to_string(),
                        RawCategory::Name(name) => name.clone(),
                    })
                    .collect();
                Categories::from_items(texts.iter().map(String::as_str))
            }
        };
        parsed.map_err(|_| {
            self.invalid(
                raw,
                key,
                "has an unknown or empty category; run `reportedip-report categories` for the list",
            )
        })
    }
}

/// A key as the config would take it: trimmed, visible ASCII only.
pub fn checked_key(path: &Path, key: String) -> Result<SecretString, ConfigError> {
    check_key(path, key)
}

fn check_key(path: &Path, key: String) -> Result<SecretString, ConfigError> {
    let key = key.trim().to_string();
    // The key goes into an HTTP header: anything but visible ASCII would corrupt the request.
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::BadKey {
            path: path.to_path_buf(),
        });
    }
    Ok(SecretString::new(key))
}

fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| {
            "has an unclosed '{'; placeholders are {ip}, {jail} and {failures}".to_string()
        })?;
        let name = &after[..close];
        if !matches!(name, "ip" | "jail" | "failures") {
            return Err("has an unknown placeholder; use {ip}, {jail} or {failures}".into());
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// The service's old home: its API now lives at the same path on reportedip.com.
const OLD_HOSTS: &[&str] = &["reportedip.de", "www.reportedip.de"];

/// Checks `api_url` and returns it without a trailing slash, plus a warning when it had to
/// be mended (old domain, the curl line's `/report` URL). Plain http is allowed only for
/// loopback hosts, so the key never crosses a network in clear text. Messages never quote
/// the value.
pub fn check_api_url(url: &str) -> Result<(String, Option<String>), String> {
    let mut url = url.trim().trim_end_matches('/').to_string();
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    if url.contains('\\') {
        return Err(format!(
            "must not contain a backslash (\\); write it like {DEFAULT_API_URL}"
        ));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("is not a URL like {DEFAULT_API_URL}"))?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("").to_string();
    if authority.contains('@') {
        return Err("must not contain a user name or password".into());
    }
    if url.contains(['?', '#']) {
        return Err("must not contain a query or fragment".into());
    }
    let host = check_authority(&authority)?;
    let mut mended = Vec::new();
    if OLD_HOSTS.iter().any(|old| host.eq_ignore_ascii_case(old)) {
        let path = &rest[authority.len()..];
        // An explicit port after the host stays.
        let port = authority.get(host.len()..).unwrap_or("");
        url = format!("{scheme}://reportedip.com{port}{path}");
        mended.push("points at reportedip.de, which moved to reportedip.com; using reportedip.com");
    }
    if let Some(base) = url.strip_suffix("/report") {
        url = base.to_string();
        mended.push("ends in /report (the curl line's URL); using the base URL without it");
    }
    let warning = (!mended.is_empty()).then(|| {
        format!(
            "{}; set api_url = \"{url}\" to silence this",
            mended.join(", and ")
        )
    });
    match scheme.as_str() {
        "https" => Ok((url, warning)),
        "http" if is_loopback_host(&host) => Ok((url, warning)),
        "http" => Err(format!(
            "uses plain http, which would send the key unencrypted; use https:// (http is only \
             allowed for 127.0.0.1, [::1] and localhost), e.g. {DEFAULT_API_URL}"
        )),
        _ => Err("has an unsupported scheme; use https://".into()),
    }
}

/// The host of `host[:port]` or `[v6][:port]`; refuses what no client could connect to.
fn check_authority(authority: &str) -> Result<String, String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("has an unclosed [ in its host")?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "has a bracketed host that is not an IPv6 address")?;
        match after {
            "" => (host, None),
            port => (
                host,
                Some(port.strip_prefix(':').ok_or("has text after its [host]")?),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !host.starts_with(|c: char| c.is_ascii_hexdigit() || c.is_ascii_alphanumeric())
        && !authority.starts_with('[')
    {
        return Err("has a host that is not a name or an address".into());
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|port| port > 0)
    {
        return Err("has a port that is not a number from 1 to 65535".into());
    }
    Ok(host.to_string())
}

fn is_loopback_host(host: &str) -> bool {
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
        assert!(config.warnings.is_empty());
        assert_eq!(config.timeout, Duration::from_secs(5));
        assert_eq!(config.categories.unwrap().to_string(), "18,22");
        assert_eq!(config.ignore.len(), 2);
        assert_eq!(config.cooldown, 0);
        assert_eq!(config.spool_max, 5);
        assert!(!config.syslog);
        assert_eq!(config.jail_categories["my-webapp"].to_string(), "18,21");
    }

    #[test]
    fn the_blocklist_section_has_defaults_and_each_bad_value_is_named() {
        let config = parse_text("api_key = \"k\"\n[blocklist]\n").unwrap();
        let blocklist = config.blocklist.unwrap();
        assert_eq!(blocklist.source, DEFAULT_FEED);
        assert_eq!(
            (blocklist.lists, blocklist.hooks),
            (vec!["all".to_string()], vec!["input".to_string()])
        );
        assert_eq!(blocklist.table, "reportedip");
        assert_eq!(
            (blocklist.max_age_days, blocklist.max_shrink_percent),
            (7, 50)
        );
        assert_eq!(blocklist.max_entries, 500_000);
        assert!(blocklist.ipv6);
        let cases = [
            ("source = \"http://mirror.example\"", "blocklist.source"),
            ("lists = [\"all\", \"spam\"]", "blocklist.lists"),
            ("lists = [\"nope\"]", "blocklist.lists"),
            ("min_confidence = 101", "blocklist.min_confidence"),
            ("table = \"rt\"", "is an nft keyword"),
            ("table = \"my table\"", "must start with a letter"),
            ("hooks = [\"output\"]", "blocklist.hooks"),
            ("allow = [\"not-a-net\"]", "blocklist.allow"),
            ("max_age_days = 0", "blocklist.max_age_days"),
            ("max_shrink_percent = 101", "blocklist.max_shrink_percent"),
            ("max_entries = -1", "blocklist.max_entries"),
            ("tabel = \"x\"", "tabel"),
        ];
        for (line, said) in cases {
            let err = parse_text(&format!("api_key = \"k\"\n[blocklist]\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(said), "{line}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse_text("api_kye = \"x\"").unwrap_err().to_string();
        assert!(err.contains("api_kye"), "{err}");
    }

    #[test]
    fn toml_errors_are_said_in_plain_words() {
        let cases = [
            ("api_key = 4e5f-abc", "must be in double quotes"),
            ("api_key = abc-def", "must be in double quotes"),
            (
                "api_key = \"k\"\ntimeout = \"10\"",
                "a whole number without quotes",
            ),
            (
                "api_key = \"k\"\nsyslog = \"yes\"",
                "true or false without quotes",
            ),
            (
                "api_key = \"k\"\nspool_max = 1.5",
                "a whole number without quotes",
            ),
        ];
        for (text, said) in cases {
            let err = parse_text(text).unwrap_err().to_string();
            assert!(err.contains(said), "{text}: {err}");
            for rust in ["i64", "u64", "invalid float", "floating point"] {
                assert!(!err.contains(rust), "{text}: {err}");
            }
        }
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
    fn a_malformed_key_is_refused_without_showing_it() {
        let err = parse_text("api_key = \"two words\"").unwrap_err();
        assert!(matches!(err, ConfigError::BadKey { .. }), "{err:?}");
        assert!(!err.to_string().contains("words"), "{err}");
    }

    #[test]
    fn no_message_quotes_a_value_but_each_names_key_and_line() {
        // Each value carries a marker that would show if a message quoted it.
        let cases = [
            ("timeout = 77001", "line 2: timeout"),
            ("categories = \"18,SECRETCAT\"", "line 2: categories"),
            ("comment = \"{SECRETPH}\"", "line 2: comment"),
            ("ignore = [\"SECRETNET/40\"]", "line 2: ignore"),
            ("state_dir = \"SECRETDIR\"", "line 2: state_dir"),
            ("cooldown = -77001", "line 2: cooldown"),
            ("api_url = \"SECRETURL\"", "line 2: api_url"),
            ("api_url = \"http://SECRETHOST/v2\"", "line 2: api_url"),
            ("ca_file = \"/SECRETCA\"", "line 2: ca_file"),
            ("timeout = \"SECRETTYPE\"", "line 2"),
            ("syslog = \"SECRETBOOL\"", "line 2"),
            (
                "[jail_categories]\nsshd = \"SECRETJAIL\"",
                "line 3: jail_categories.sshd",
            ),
        ];
        for (line, wanted) in cases {
            let err = parse_text(&format!("# settings\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(wanted), "{line}: {err}");
            for marker in ["SECRET", "77001"] {
                assert!(!err.contains(marker), "{line}: value shown in {err}");
            }
        }
    }

    #[test]
    fn an_api_key_inside_a_table_is_called_out_without_showing_it() {
        // The shipped example with [jail_categories] uncommented and the key appended.
        let text = "[jail_categories]\nmy-webapp = \"18,21\"\napi_key = \"k-3f9a1c\"\n";
        let err = parse_text(text).unwrap_err().to_string();
        assert!(
            err.contains("line 3: api_key is inside [jail_categories]"),
            "{err}"
        );
        assert!(err.contains("move the api_key line above"), "{err}");
        assert!(!err.contains("k-3f9a1c"), "{err}");
        // With a real key at the top too, it loads and warns.
        let config = parse_text(&format!("api_key = \"abc\"\n{text}")).unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert!(!config.warnings[0].contains("k-3f9a1c"));
        assert!(!config.jail_categories.contains_key("api_key"));
    }

    #[test]
    fn impossible_ports_and_authorities_are_refused() {
        for bad in [
            "https://reportedip.com:99999/x",
            "https://reportedip.com:443:80/x",
            "https://reportedip.com:0/x",
            "https://reportedip.com:/x",
            "https://:443/x",
            "https://[::1/x",
            "https://[not-v6]/x",
        ] {
            assert!(check_api_url(bad).is_err(), "{bad}");
        }
        for good in [
            "https://reportedip.com:8443/x",
            "http://[::1]:9/v2",
            "https://[2001:db8::1]/v2",
        ] {
            assert!(check_api_url(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn the_old_domain_and_the_curl_url_are_mended_with_a_warning() {
        let cases = [
            (
                "https://reportedip.de/wp-json/reportedip/v2/report",
                "points at reportedip.de",
            ),
            (
                "https://www.reportedip.de/wp-json/reportedip/v2",
                "points at reportedip.de",
            ),
            (
                "https://reportedip.com/wp-json/reportedip/v2/report/",
                "ends in /report",
            ),
        ];
        for (given, why) in cases {
            let (url, warning) = check_api_url(given).unwrap();
            assert_eq!(url, DEFAULT_API_URL, "{given}");
            let warning = warning.unwrap();
            assert!(warning.contains(why), "{warning}");
            assert!(
                warning.contains(DEFAULT_API_URL),
                "says what to write: {warning}"
            );
        }
        assert_eq!(
            check_api_url(DEFAULT_API_URL).unwrap(),
            (DEFAULT_API_URL.to_string(), None)
        );
        // An explicit port stays with the new host.
        let (url, _) = check_api_url("https://reportedip.de:8443/wp-json/reportedip/v2").unwrap();
        assert_eq!(url, "https://reportedip.com:8443/wp-json/reportedip/v2");
        let config =
            parse_text("api_url = \"https://reportedip.de/wp-json/reportedip/v2\"").unwrap();
        assert_eq!(config.api_url, DEFAULT_API_URL);
        assert!(config.warnings[0].contains("line 1: api_url points at reportedip.de"));
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
            "https://reportedip.com\\wp-json\\reportedip\\v2",
        ] {
            assert!(check_api_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn comment_template_fills_placeholders() {
        let config = Config::defaults(Path::new("/x"));
        let cases = [
            (Some(5), "fail2ban sshd: 5 failed attempts"),
            // A manual banip (0) or no count: never "0" or "?" on the public record.
            (Some(0), "fail2ban sshd: banned"),
            (None, "fail2ban sshd: banned"),
        ];
        for (failures, comment) in cases {
            assert_eq!(config.render_comment("1.2.3.4", "sshd", failures), comment);
        }
        let custom = Config {
            comment: "{jail} saw {ip}".into(),
            ..Config::defaults(Path::new("/x"))
        };
        assert_eq!(
            custom.render_comment("1.2.3.4", "sshd", None),
            "sshd saw 1.2.3.4"
        );
    }

    #[test]
    fn debug_output_redacts_the_key() {
        let config = parse_text("api_key = \"very-secret-key\"").unwrap();
        assert!(!format!("{config:?}").contains("very-secret"));
    }
}
