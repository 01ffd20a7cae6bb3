//! The one-time import of 0.1's state: `state.json` (backoff, counters, quota, cooldown,
//! suspects) and the spool files, in one transaction, after which the 0.1 files are moved
//! aside (`*.v0.1-imported`), never deleted. Run by the package's postinst
//! (`upgrade-state`) and by any run that still finds the files.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use serde::Deserialize;

use crate::delivery::Quota;
use crate::fsio;
use crate::inbox::Inbox;
use crate::state::{Event, State};
use crate::store::{Store, StoreError};

const STATE_FILE: &str = "state.json";
const SPOOL_DIR: &str = "spool";
const MOVED_SUFFIX: &str = ".v0.1-imported";
/// 0.1 wiped its state past 4 MiB; a file this large is not one of its states.
const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// `state.json` as 0.1 wrote it; what the new store has no place for is left out.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StateV01 {
    backoff_until: u64,
    backoff_secs: u64,
    backoff_reason: Option<String>,
    backoff_granted: u64,
    last_success: Option<Event>,
    last_error: Option<Event>,
    sent: u64,
    rejected: u64,
    dropped: u64,
    set_aside: u64,
    stale_temps_removed: u64,
    quota: Option<Quota>,
    /// Per IP: `{"18": t, …}`, or the older `t` for the IP as a whole.
    cooldown: BTreeMap<String, CooldownV01>,
    /// Spool file name → its own failures.
    suspects: BTreeMap<String, SuspectV01>,
    /// Seconds the clock was set by while reports waited, not yet applied to their queue
    /// times (0.1's sender did that when it next ran).
    spool_shift: i64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CooldownV01 {
    Categories(BTreeMap<String, u64>),
    WholeIp(u64),
}

#[derive(Debug, Deserialize)]
struct SuspectV01 {
    attempts: u32,
    first_failed: u64,
    next_try: u64,
}

/// Imports 0.1's files under the store's directory, if there are any; says what it did in
/// [`Store::notes`]. A damaged `state.json` is said and moved aside; its spool still counts.
pub fn import_v01(store: &mut Store, now: u64) -> Result<(), StoreError> {
    let dir = store.dir().to_path_buf();
    let state_file = dir.join(STATE_FILE);
    let spool_dir = dir.join(SPOOL_DIR);
    let has_state = fs::symlink_metadata(&state_file).is_ok();
    let has_spool = fs::symlink_metadata(&spool_dir).is_ok_and(|meta| meta.is_dir());
    if !has_state && !has_spool {
        return Ok(());
    }
    let (old, problem) = read_state(&state_file, has_state);
    let spool = Inbox::new(spool_dir.clone(), dir.join("set-aside"));
    let mut notes: Vec<String> = problem.into_iter().collect();
    let imported = store.write(|tx| {
        if tx.imported_v01()? {
            return Ok(None);
        }
        let mut state = tx.state()?;
        merge(&mut state, &old);
        for (ip, seen) in &old.cooldown {
            match seen {
                CooldownV01::WholeIp(at) => {
                    tx.put_cooldown(ip, crate::cooldown::ANY_CATEGORY, (*at).min(now))?
                }
                CooldownV01::Categories(seen) => {
                    for (id, at) in seen {
                        if let Ok(id) = id.parse() {
                            tx.put_cooldown(ip, id, (*at).min(now))?;
                        }
                    }
                }
            }
        }
        let files = spool.import_up_to(tx, &mut state, u64::MAX, now, usize::MAX)?;
        if old.spool_shift != 0 {
            for entry in &files.files {
                let name = entry.path.file_name().map(|n| n.to_string_lossy());
                tx.conn().execute(
                    "UPDATE spool SET queued_at = max(0, min(queued_at + ?2, ?3)) WHERE origin = ?1",
                    rusqlite::params![
                        name.unwrap_or_default(),
                        old.spool_shift,
                        crate::store::sql_int(now)
                    ],
                )?;
            }
        }
        // The inbox import counts what came through the inbox; these came from the spool.
        state.inbox_imported = state
            .inbox_imported
            .saturating_sub(files.files.len() as u64);
        for (name, suspect) in &old.suspects {
            tx.conn().execute(
                "UPDATE spool SET suspect_attempts = ?2, first_failed = ?3, next_try = ?4 \
                 WHERE origin = ?1",
                rusqlite::params![
                    name,
                    suspect.attempts,
                    crate::store::sql_int(suspect.first_failed.min(now)),
                    crate::store::sql_int(suspect.next_try)
                ],
            )?;
        }
        tx.mark_imported_v01()?;
        tx.save(&state)?;
        Ok(Some((files.files.len(), old.cooldown.len(), files.notes)))
    })?;
    if imported.is_some() {
        // The old files are moved aside only once what they held is on disk in the store.
        store.sync()?;
    }
    if let Some((reports, ips, file_notes)) = imported {
        notes.extend(file_notes);
        notes.push(format!(
            "imported 0.1 state from {}: {reports} waiting report(s), cooldown of {ips} IP(s), \
             backoff and counters; the old files are kept as *{MOVED_SUFFIX}",
            dir.display()
        ));
    }
    for path in [state_file, spool_dir] {
        if let Err(err) = move_aside(&path) {
            notes.push(format!(
                "cannot move {} aside after its import: {err}",
                path.display()
            ));
        }
    }
    store.notes.extend(notes);
    Ok(())
}

/// The 0.1 state, and what was wrong with it if it could not be read.
fn read_state(file: &Path, exists: bool) -> (StateV01, Option<String>) {
    if !exists {
        return (StateV01::default(), None);
    }
    let problem = match fsio::read_own_file(file, MAX_STATE_BYTES) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(state) => return (state, None),
            Err(err) => format!("is damaged ({err})"),
        },
        Err(err) => err.to_string(),
    };
    let note = format!(
        "0.1 state file {} {problem}; its backoff, cooldown and counters are not imported \
         (the file is kept as *{MOVED_SUFFIX})",
        file.display()
    );
    (StateV01::default(), Some(note))
}

/// The 0.1 backoff, quota and counters added to what the store holds.
fn merge(state: &mut State, old: &StateV01) {
    if old.backoff_until > state.backoff_until {
        state.backoff_until = old.backoff_until;
        state.backoff_secs = old.backoff_secs;
        state.backoff_granted = old.backoff_granted;
        state.backoff_reason.clone_from(&old.backoff_reason);
    }
    state.sent += old.sent;
    state.rejected += old.rejected;
    state.dropped += old.dropped;
    state.set_aside += old.set_aside;
    state.stale_temps_removed += old.stale_temps_removed;
    if state.quota.is_none() {
        state.quota = old.quota;
    }
    if state.last_success.is_none() {
        state.last_success.clone_from(&old.last_success);
    }
    if state.last_error.is_none() {
        state.last_error.clone_from(&old.last_error);
    }
}

fn move_aside(path: &Path) -> io::Result<()> {
    let mut target = path.as_os_str().to_owned();
    target.push(MOVED_SUFFIX);
    match fs::rename(path, target) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
