//! The `blocklist` commands: `update` (download, verify, filter, check, load), `apply` (the
//! saved copy, no network), `print`, `remove` and `status`. The decisions are
//! [`crate::blocklist`]; the download [`crate::feed`]; the kernel [`crate::firewall`]. What is
//! kept lives under `state_dir/blocklist/`: the last good list, the feed's validators, and
//! what was applied and when.

use std::fs::{DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::blocklist::{self, Exempt, Filtered, Limits, Table};
use crate::clock::{Clock, format_utc};
use crate::commands::{out as say, warn};
use crate::config::{Blocklist, Config};
use crate::error::{Error, failed};
use crate::feed::{self, FeedError, Fetched, Validators};
use crate::firewall;
use crate::fsio;
use crate::outcome::exit;
use crate::prometheus::{Kind, Metrics};
use crate::validate::{Network, sanitize_comment};

/// `blocklist update` refused the new list; the set in force is unchanged.
pub const REFUSED: u8 = 8;
/// `blocklist update` could not download the feed; the set in force is unchanged.
pub const DOWNLOAD_FAILED: u8 = 9;
const MAX_SAVED_BYTES: u64 = 64 * 1024 * 1024;
const DEFAULT_FAIL2BAN_DIR: &str = "/etc/fail2ban";
/// What status calls the feed's lines that were neither an address nor a prefix.
const INVALID: &str = "invalid";

/// What the lists and confidence were when a list was saved or applied: a change of them
/// makes a smaller list a choice, not a shrink.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Selection {
    pub lists: Vec<String>,
    pub min_confidence: Option<u8>,
}

/// The saved copy's description.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Saved {
    selection: Selection,
    validators: Validators,
    version: Option<String>,
    generated_at: Option<String>,
    fetched_at: u64,
    /// fail2ban's `ignoreip`, read at `update` so that `apply` runs nothing but nft.
    fail2ban_ignore: Vec<String>,
    /// Lines of the feed that were neither an address nor a prefix: skipped, and counted.
    #[serde(default)]
    invalid_lines: u64,
}

/// What is in force.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    selection: Selection,
    entries: u64,
    v4: u64,
    v6: u64,
    left_out: std::collections::BTreeMap<String, u64>,
    applied_at: u64,
    generated_at: Option<String>,
    /// The table it is in: after `[blocklist] table` changes, the old one goes.
    #[serde(default)]
    table: String,
}

/// The last attempt of `update` or `apply`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Attempt {
    at: u64,
    command: String,
    result: String,
    ok: bool,
}

/// `state_dir/blocklist`, trusted like `state_dir` itself.
struct BlocklistDir {
    dir: PathBuf,
}

impl BlocklistDir {
    fn open(config: &Config) -> Result<Self, Error> {
        let dir = config.state_dir.join("blocklist");
        crate::store::prepare_dir(&config.state_dir)?;
        match DirBuilder::new().mode(0o700).create(&dir) {
            Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(failed(
                    format!("cannot create {}: {err}", dir.display()),
                    exit::CONFIG,
                ));
            }
            _ => {}
        }
        if let Some(why) = fsio::untrusted_dir(&dir) {
            return Err(failed(
                format!("{} is not safe to use: {why}", dir.display()),
                exit::CONFIG,
            ));
        }
        Ok(Self { dir })
    }

    /// One run at a time: `update` and `apply` never interleave.
    fn lock(&self) -> Result<File, Error> {
        let file = File::open(&self.dir).map_err(|err| {
            failed(
                format!("cannot open {}: {err}", self.dir.display()),
                exit::CONFIG,
            )
        })?;
        file.lock().map_err(|err| {
            failed(
                format!("cannot lock {}: {err}", self.dir.display()),
                exit::CONFIG,
            )
        })?;
        Ok(file)
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Option<T> {
        let bytes = fsio::read_own_file(&self.dir.join(name), MAX_SAVED_BYTES).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|err| failed(err.to_string(), exit::CONFIG))?;
        self.write_bytes(name, &bytes)
    }

    fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        fsio::write_atomic(&self.dir.join(name), bytes)
            .map_err(|err| failed(format!("cannot save {name}: {err}"), exit::CONFIG))
    }

    /// Whether a list was ever saved (one that cannot be read is an error, not an absence).
    fn has_list(&self) -> bool {
        self.dir.join("list.txt").symlink_metadata().is_ok()
    }

    fn list(&self) -> Option<Vec<Network>> {
        let bytes = fsio::read_own_file(&self.dir.join("list.txt"), MAX_SAVED_BYTES).ok()?;
        Some(blocklist::parse_list(&String::from_utf8_lossy(&bytes)).nets)
    }

    fn attempt(&self, command: &str, result: &str, ok: bool, now: u64) {
        let attempt = Attempt {
            at: now,
            command: command.to_string(),
            result: result.to_string(),
            ok,
        };
        let _ = self.write("attempt.json", &attempt);
    }
}

fn section(config: &Config) -> Option<&Blocklist> {
    let blocklist = config.blocklist.as_ref();
    if blocklist.is_none() {
        say(&format!(
            "no [blocklist] section in {}; nothing is fetched or blocked",
            config.path.display()
        ));
    }
    blocklist
}

fn selection(config: &Blocklist) -> Selection {
    Selection {
        lists: config.lists.clone(),
        min_confidence: config.min_confidence,
    }
}

fn table(config: &Blocklist) -> Table {
    Table {
        name: config.table.clone(),
        hooks: config.hooks.clone(),
    }
}

/// Our table as the kernel holds it. A table of the same name that someone else made is
/// refused: no command changes or deletes it.
fn our_table(blocklist: &Blocklist) -> Result<bool, Error> {
    match firewall::table_state(&blocklist.table) {
        Ok(firewall::TableState::Absent) => Ok(false),
        Ok(firewall::TableState::Ours) => Ok(true),
        Ok(firewall::TableState::Foreign) => Err(failed(
            format!(
                "table inet {t} exists and was not made by reportedip-report; nothing was \
                 changed: set [blocklist] table to a name of its own",
                t = blocklist.table
            ),
            exit::CONFIG,
        )),
        Err(why) => Err(failed(
            format!("nft could not list table inet {}: {why}", blocklist.table),
            exit::SYSTEM,
        )),
    }
}

/// Packets and bytes dropped so far, when our table is loaded.
fn our_counter(blocklist: &Blocklist) -> Option<(u64, u64)> {
    let ours = firewall::table_state(&blocklist.table).ok()? == firewall::TableState::Ours;
    ours.then(|| firewall::dropped(&blocklist.table)).flatten()
}

/// What must never be blocked, the host's own addresses read from the kernel now.
fn exempt(config: &Config, blocklist: &Blocklist, fail2ban: &[String]) -> Result<Exempt, Error> {
    let own = firewall::own_addresses().map_err(|why| failed(why, exit::SYSTEM))?;
    Ok(Exempt {
        own,
        allow: blocklist.allow.clone(),
        ignore: config.ignore.clone(),
        fail2ban: fail2ban.iter().filter_map(|n| n.parse().ok()).collect(),
        ipv6: blocklist.ipv6,
    })
}

/// fail2ban's `ignoreip` of every jail, from its configuration dump now. Without fail2ban
/// there is none. When its configuration cannot be read, the list read at the last update
/// stays: an address the admin exempted must not become blocked over a typo in a jail file.
fn fail2ban_ignoreip(dir: Option<&Path>, previous: &[String]) -> Vec<String> {
    let explicit = dir.is_some();
    let dir = dir.unwrap_or(Path::new(DEFAULT_FAIL2BAN_DIR));
    let fail2ban = crate::setup::Fail2ban::new(dir);
    if !fail2ban.installed() {
        if explicit {
            warn(&format!(
                "no fail2ban configuration at {}: no ignoreip to exempt",
                dir.display()
            ));
        }
        return Vec::new();
    }
    let entries = match fail2ban.dump() {
        Ok(dump) => crate::setup::parse_ignoreip(&dump),
        Err(why) => {
            warn(&format!(
                "cannot read fail2ban's ignoreip from {} ({}); the {} entries read at the last \
                 update stay exempt",
                dir.display(),
                sanitize_comment(&why),
                previous.len()
            ));
            return previous.to_vec();
        }
    };
    for name in entries.iter().filter(|e| e.parse::<Network>().is_err()) {
        warn(&format!(
            "fail2ban's ignoreip names {}, which is not an address: it is not exempted from \
             the blocklist (add its addresses to [blocklist] allow)",
            sanitize_comment(name)
        ));
    }
    entries
}

/// `blocklist update [--force] [--fail2ban-dir DIR]`.
pub fn update(
    config: &Config,
    force: bool,
    fail2ban_dir: Option<&Path>,
    timeout: std::time::Duration,
    clock: Clock,
) -> Result<u8, Error> {
    let Some(blocklist) = section(config) else {
        return Ok(exit::OK);
    };
    let store = BlocklistDir::open(config)?;
    let _lock = store.lock()?;
    let now = clock();
    let saved: Option<Saved> = store.read("saved.json");
    let selection = selection(blocklist);
    let validators = saved
        .as_ref()
        .filter(|s| s.selection == selection && store.list().is_some())
        .map(|s| s.validators.clone())
        .unwrap_or_default();
    let previous_ignore = saved.as_ref().map_or(&[][..], |s| &s.fail2ban_ignore[..]);
    let fail2ban_ignore = fail2ban_ignoreip(fail2ban_dir, previous_ignore);
    let (nets, new_saved) =
        match feed::fetch(blocklist, config.ca_file.as_deref(), &validators, timeout) {
            Err(FeedError::Download(why)) => {
                store.attempt("update", &why, false, now);
                return Err(failed(
                    format!("blocklist not downloaded, the set in force is unchanged: {why}"),
                    DOWNLOAD_FAILED,
                ));
            }
            Err(FeedError::Refused(why)) => {
                store.attempt("update", &why, false, now);
                return Err(failed(
                    format!("blocklist refused, the set in force is unchanged: {why}"),
                    REFUSED,
                ));
            }
            Ok(Fetched::Unchanged) => {
                say("the feed is unchanged since the last download");
                let kept = saved.clone().unwrap_or_default();
                let refreshed = (kept.fail2ban_ignore != fail2ban_ignore).then(|| Saved {
                    fail2ban_ignore: fail2ban_ignore.clone(),
                    ..kept
                });
                (store.list().unwrap_or_default(), refreshed)
            }
            Ok(Fetched::New {
                metadata,
                validators,
                files,
            }) => {
                let mut nets = Vec::new();
                let mut invalid_lines = 0;
                for (name, text) in &files {
                    let parsed = match (name.ends_with(".csv"), blocklist.min_confidence) {
                        (true, Some(min)) => blocklist::parse_csv(text, min).map_err(|why| {
                            store.attempt("update", &why, false, now);
                            failed(
                                format!("blocklist refused, the set in force is unchanged: {why}"),
                                REFUSED,
                            )
                        })?,
                        _ => blocklist::parse_list(text),
                    };
                    if let Some(why) = parsed.refusal(name) {
                        store.attempt("update", &why, false, now);
                        return Err(failed(
                            format!("blocklist refused, the set in force is unchanged: {why}"),
                            REFUSED,
                        ));
                    }
                    nets.extend(parsed.nets);
                    invalid_lines += parsed.invalid;
                }
                let saved = Saved {
                    selection: selection.clone(),
                    validators,
                    version: metadata.version,
                    generated_at: metadata.generated_at,
                    fetched_at: now,
                    fail2ban_ignore: fail2ban_ignore.clone(),
                    invalid_lines,
                };
                (nets, Some(saved))
            }
        };
    let described = new_saved.clone().or(saved).unwrap_or_default();
    let exempt = exempt(config, blocklist, &described.fail2ban_ignore)?;
    let filtered = blocklist::filter(&nets, &exempt);
    let applied: Option<Applied> = store.read("applied.json");
    let loaded = our_table(blocklist).inspect_err(|err| {
        store.attempt("update", &err.to_string(), false, now);
    })?;
    let in_force = applied.as_ref().map(|a| a.entries).filter(|_| loaded);
    let same = applied.as_ref().is_some_and(|a| a.selection == selection);
    let limits = Limits {
        max_entries: blocklist.max_entries,
        max_shrink_percent: blocklist.max_shrink_percent,
    };
    if let Some(why) = blocklist::refusal(filtered.len() as u64, in_force, same, limits, force) {
        store.attempt("update", &why, false, now);
        return Err(failed(
            format!("blocklist refused, the set in force is unchanged: {why}"),
            REFUSED,
        ));
    }
    load(blocklist, &store, &filtered, &described, "update", now)?;
    if let Some(saved) = new_saved {
        let list: String = nets.iter().map(|n| format!("{n}\n")).collect();
        store.write_bytes("list.txt", list.as_bytes())?;
        store.write("saved.json", &saved)?;
    }
    Ok(exit::OK)
}

/// Loads `filtered` with one nft transaction and records it.
fn load(
    blocklist: &Blocklist,
    store: &BlocklistDir,
    filtered: &Filtered,
    saved: &Saved,
    command: &str,
    now: u64,
) -> Result<(), Error> {
    our_table(blocklist).inspect_err(|err| store.attempt(command, &err.to_string(), false, now))?;
    let mut script = blocklist::render(&table(blocklist), filtered, &blocklist.allow);
    // In the same transaction: never two of our tables, never a moment with none.
    let renamed_from = former_table(blocklist, store);
    if let Some(former) = &renamed_from {
        script.push_str(&format!("delete table inet {former}\n"));
    }
    if let Err(why) = firewall::apply(&script) {
        store.attempt(command, &why, false, now);
        return Err(failed(
            format!("nft refused the blocklist; the set in force is unchanged:\n{why}"),
            exit::SYSTEM,
        ));
    }
    let applied = Applied {
        selection: saved.selection.clone(),
        entries: filtered.len() as u64,
        v4: filtered.v4.len() as u64,
        v6: filtered.v6.len() as u64,
        left_out: filtered
            .left_out
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .chain((saved.invalid_lines > 0).then(|| (INVALID.to_string(), saved.invalid_lines)))
            .collect(),
        applied_at: now,
        generated_at: saved.generated_at.clone(),
        table: blocklist.table.clone(),
    };
    store.write("applied.json", &applied)?;
    if let Some(former) = renamed_from {
        say(&format!(
            "table inet {former} removed: the blocklist now lives in table inet {}",
            blocklist.table
        ));
    }
    let line = format!(
        "blocklist in force in table inet {}: {} IPv4 and {} IPv6 entries{}",
        blocklist.table,
        applied.v4,
        applied.v6,
        saved
            .generated_at
            .as_ref()
            .map_or(String::new(), |d| format!(", data of {d}"))
    );
    store.attempt(command, &line, true, now);
    say(&line);
    Ok(())
}

/// The table the list was last loaded into, when `[blocklist] table` has changed since and
/// that table is still loaded and ours.
fn former_table(blocklist: &Blocklist, store: &BlocklistDir) -> Option<String> {
    let applied: Applied = store.read("applied.json")?;
    let former = applied.table;
    let other = !former.is_empty() && former != blocklist.table;
    (other && blocklist::table_name_problem(&former).is_none())
        .then_some(former)
        .filter(|former| firewall::table_state(former) == Ok(firewall::TableState::Ours))
}

/// The saved list, filtered as it would be loaded now.
fn saved_filtered(
    config: &Config,
    blocklist: &Blocklist,
    store: &BlocklistDir,
) -> Result<(Filtered, Saved), Error> {
    let saved: Saved = store.read("saved.json").unwrap_or_default();
    let nets = store.list().ok_or_else(|| {
        failed(
            "no saved blocklist: run reportedip-report blocklist update first",
            REFUSED,
        )
    })?;
    let exempt = exempt(config, blocklist, &saved.fail2ban_ignore)?;
    Ok((blocklist::filter(&nets, &exempt), saved))
}

/// `blocklist apply`: the saved copy, no network (boot; after a firewall reload).
pub fn apply(config: &Config, clock: Clock) -> Result<u8, Error> {
    let Some(blocklist) = section(config) else {
        return Ok(exit::OK);
    };
    let store = BlocklistDir::open(config)?;
    let _lock = store.lock()?;
    // At boot before the first update there is nothing to restore, and that is no failure.
    if !store.has_list() {
        say(
            "no saved blocklist yet: nothing to load until `reportedip-report blocklist update` runs",
        );
        return Ok(exit::OK);
    }
    let (filtered, saved) = saved_filtered(config, blocklist, &store)?;
    load(blocklist, &store, &filtered, &saved, "apply", clock())?;
    Ok(exit::OK)
}

/// `blocklist print`: the exact script `apply` would load.
pub fn print(config: &Config) -> Result<u8, Error> {
    let Some(blocklist) = section(config) else {
        return Ok(exit::OK);
    };
    let store = BlocklistDir::open(config)?;
    let (filtered, _) = saved_filtered(config, blocklist, &store)?;
    let script = blocklist::render(&table(blocklist), &filtered, &blocklist.allow);
    let _ = std::io::stdout().lock().write_all(script.as_bytes());
    Ok(exit::OK)
}

/// `blocklist remove`: our table goes; the saved copy stays.
pub fn remove(config: &Config) -> Result<u8, Error> {
    let Some(blocklist) = section(config) else {
        return Ok(exit::OK);
    };
    // The table the list was loaded into before `table` changed goes too.
    let former = BlocklistDir::open(config)
        .ok()
        .and_then(|store| former_table(blocklist, &store));
    if let Some(former) = former {
        match firewall::remove(&former) {
            Ok(_) => say(&format!("table inet {former} removed")),
            Err(why) => {
                return Err(failed(
                    format!("nft could not remove table inet {former}: {why}"),
                    exit::SYSTEM,
                ));
            }
        }
    }
    if !our_table(blocklist)? {
        say(&format!("table inet {} is not loaded", blocklist.table));
        return Ok(exit::OK);
    }
    match firewall::remove(&blocklist.table) {
        Ok(true) => say(&format!(
            "table inet {} removed; the saved list stays",
            blocklist.table
        )),
        Ok(false) => say(&format!("table inet {} is not loaded", blocklist.table)),
        Err(why) => {
            return Err(failed(
                format!("nft could not remove the table: {why}"),
                exit::SYSTEM,
            ));
        }
    }
    Ok(exit::OK)
}

/// What `blocklist status` shows.
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub loaded: bool,
    pub table: String,
    pub entries_v4: u64,
    pub entries_v6: u64,
    pub left_out: std::collections::BTreeMap<String, u64>,
    pub data_date: Option<String>,
    pub data_age_days: Option<u64>,
    pub data_age_seconds: Option<u64>,
    pub stale: bool,
    pub last_attempt: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_attempt_at_epoch: Option<u64>,
    pub last_attempt_ok: Option<bool>,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub attribution: &'static str,
}

/// `blocklist status [--json | --prometheus]`.
pub fn status(
    config: &Config,
    format: crate::commands::StatusFormat,
    clock: Clock,
) -> Result<u8, Error> {
    let Some(blocklist) = section(config) else {
        return Ok(exit::OK);
    };
    let dir = config.state_dir.join("blocklist");
    // Read only what no other user can have put there.
    if dir.exists()
        && let Some(why) = fsio::untrusted_dir(&dir)
    {
        return Err(failed(
            format!("{} is not safe to read: {why}", dir.display()),
            exit::STATE,
        ));
    }
    let read = |name: &str| fsio::read_own_file(&dir.join(name), MAX_SAVED_BYTES).ok();
    let applied: Option<Applied> =
        read("applied.json").and_then(|b| serde_json::from_slice(&b).ok());
    let attempt: Option<Attempt> =
        read("attempt.json").and_then(|b| serde_json::from_slice(&b).ok());
    let counter = our_counter(blocklist);
    let now = clock();
    let age_secs = applied
        .as_ref()
        .and_then(|a| a.generated_at.as_deref())
        .and_then(|date| humantime::parse_rfc3339(&format!("{date}T00:00:00Z")).ok())
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|at| now.saturating_sub(at.as_secs()));
    let age = age_secs.map(|secs| secs / 86_400);
    let view = StatusView {
        loaded: counter.is_some(),
        table: blocklist.table.clone(),
        entries_v4: applied.as_ref().map_or(0, |a| a.v4),
        entries_v6: applied.as_ref().map_or(0, |a| a.v6),
        left_out: applied
            .as_ref()
            .map(|a| a.left_out.clone())
            .unwrap_or_default(),
        data_date: applied.as_ref().and_then(|a| a.generated_at.clone()),
        data_age_days: age,
        data_age_seconds: age_secs,
        stale: age.is_some_and(|days| days > blocklist.max_age_days),
        last_attempt: attempt
            .as_ref()
            .map(|a| crate::validate::sanitize_comment(&a.result)),
        last_attempt_at: attempt.as_ref().map(|a| format_utc(a.at)),
        last_attempt_at_epoch: attempt.as_ref().map(|a| a.at),
        last_attempt_ok: attempt.as_ref().map(|a| a.ok),
        dropped_packets: counter.map_or(0, |c| c.0),
        dropped_bytes: counter.map_or(0, |c| c.1),
        attribution: "ReportedIP community data (reportedip.com), CC BY 4.0",
    };
    let text = match format {
        crate::commands::StatusFormat::Json => serde_json::to_string(&view).unwrap_or_default(),
        crate::commands::StatusFormat::Prometheus => prometheus(&view),
        crate::commands::StatusFormat::Text => text(&view, blocklist),
    };
    say(&text);
    Ok(exit::OK)
}

fn text(view: &StatusView, blocklist: &Blocklist) -> String {
    let mut out = format!(
        "blocklist:    {} (table inet {})\nentries:      {} IPv4, {} IPv6\n",
        if view.loaded { "loaded" } else { "not loaded" },
        view.table,
        view.entries_v4,
        view.entries_v6
    );
    let left: Vec<String> = view
        .left_out
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    out.push_str(&format!(
        "left out:     {}\n",
        if left.is_empty() {
            "none".into()
        } else {
            left.join(", ")
        }
    ));
    let age = view
        .data_age_days
        .map_or(String::new(), |d| format!(" ({d} days old)"));
    let stale = if view.stale {
        format!(
            "; STALE: older than max_age_days {}",
            blocklist.max_age_days
        )
    } else {
        String::new()
    };
    out.push_str(&format!(
        "data:         {}{age}{stale}\n",
        view.data_date.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!(
        "last attempt: {} {}\n",
        view.last_attempt_at.as_deref().unwrap_or("-"),
        view.last_attempt.as_deref().unwrap_or("")
    ));
    out.push_str(&format!(
        "dropped:      {} packets, {} bytes\n{}",
        view.dropped_packets, view.dropped_bytes, view.attribution
    ));
    out
}

fn prometheus(view: &StatusView) -> String {
    let mut metrics = Metrics::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        metrics.add(
            &format!("reportedip_blocklist_{name}"),
            Kind::Gauge,
            help,
            value,
        );
    };
    gauge(
        "loaded",
        "Whether the blocklist table is loaded (1) or not (0).",
        u64::from(view.loaded),
    );
    gauge("entries_v4", "IPv4 entries in force.", view.entries_v4);
    gauge("entries_v6", "IPv6 entries in force.", view.entries_v6);
    gauge(
        "data_age_seconds",
        "Age of the data in force (from the feed's generation date).",
        view.data_age_seconds.unwrap_or(0),
    );
    gauge(
        "stale",
        "Whether the data is older than max_age_days.",
        u64::from(view.stale),
    );
    gauge(
        "last_attempt_timestamp_seconds",
        "When update or apply last ran, UNIX time (0: never).",
        view.last_attempt_at_epoch.unwrap_or(0),
    );
    gauge(
        "last_attempt_success",
        "Whether the last update or apply succeeded (1) or not (0).",
        u64::from(view.last_attempt_ok.unwrap_or(false)),
    );
    // Every reason, also at zero, so that each series exists from the first scrape.
    let reasons = blocklist::LeftOut::ALL
        .iter()
        .map(|reason| reason.name())
        .chain([INVALID]);
    metrics.labelled(
        "reportedip_blocklist_left_out",
        Kind::Gauge,
        "Feed entries not loaded, by reason.",
        "reason",
        reasons.map(|reason| (reason, view.left_out.get(reason).copied().unwrap_or(0))),
    );
    let mut counter = |name: &str, help: &str, value: u64| {
        metrics.add(
            &format!("reportedip_blocklist_{name}"),
            Kind::Counter,
            help,
            value,
        );
    };
    counter(
        "dropped_packets_total",
        "Packets dropped by the blocklist.",
        view.dropped_packets,
    );
    counter(
        "dropped_bytes_total",
        "Bytes dropped by the blocklist.",
        view.dropped_bytes,
    );
    metrics.into_text().trim_end().to_string()
}
