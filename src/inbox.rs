//! The inbox: where a ban goes when another process holds the store longer than a ban may
//! wait (a hung or stopped writer). One JSON file per report, written atomically (temp,
//! fsync, rename) and named so that a listing sorted by name is oldest first; the next writer
//! imports them into the spool. 0.1's spool files have the same form and are imported the
//! same way.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::fsio;
use crate::report::Report;
use crate::state::State;
use crate::store::Txn;

/// Most files one transaction imports, so that no transaction grows without bound.
const IMPORT_BATCH: usize = 1000;
/// Temp files older than this were left by a writer that died (`kill -9` mid-write).
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(60);

/// What an import took in: the files to remove once the transaction is committed, and what
/// to say.
#[derive(Debug, Default)]
pub struct Imported {
    pub files: Vec<Entry>,
    pub notes: Vec<String>,
}

/// Largest inbox file read: a report is a few hundred bytes.
const MAX_REPORT_BYTES: u64 = 64 * 1024;

#[derive(Debug, Error)]
pub enum InboxError {
    /// Gone since it was listed (imported by another process).
    #[error("no longer in the inbox")]
    Gone,
    #[error("cannot be read: {0}")]
    Unreadable(io::Error),
    #[error("is not a valid report: {0}")]
    Invalid(serde_json::Error),
}

/// An inbox file found on disk, not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    /// When it was written, from its name (UNIX seconds).
    pub written_at: u64,
}

pub struct Inbox {
    dir: PathBuf,
    set_aside_dir: PathBuf,
}

impl Inbox {
    pub fn new(dir: PathBuf, set_aside_dir: PathBuf) -> Self {
        Self { dir, set_aside_dir }
    }

    /// Writes a report durably and returns its file. The name starts with the report's
    /// queue time (from the caller's clock) in nanoseconds, so that names sort oldest first
    /// and the age needs no read of the file.
    pub fn add(&self, report: &Report) -> io::Result<PathBuf> {
        let subsec = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let nanos = u128::from(report.queued_at) * 1_000_000_000 + u128::from(subsec);
        let name = format!(
            "{nanos:020}-{}-{}.json",
            std::process::id(),
            fsio::next_sequence()
        );
        let path = self.dir.join(name);
        let bytes = serde_json::to_vec(report).map_err(io::Error::other)?;
        DirBuilder::new()
            .mode(0o700)
            .create(&self.dir)
            .or_else(|err| match err.kind() {
                io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(err),
            })?;
        if let Some(why) = fsio::untrusted_dir(&self.dir) {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
        }
        fsio::write_atomic(&path, &bytes)?;
        Ok(path)
    }

    /// Waiting reports, oldest first; none when there is no inbox.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let dir = match fs::read_dir(&self.dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        let mut entries: Vec<Entry> = dir
            .filter_map(Result::ok)
            .filter_map(|dirent| {
                let name = dirent.file_name().into_string().ok()?;
                if !is_report_name(&name) {
                    return None;
                }
                Some(Entry {
                    written_at: written_at(&name),
                    path: dirent.path(),
                })
            })
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    pub fn len(&self) -> usize {
        self.entries().map_or(0, |e| e.len())
    }

    /// Stops at the first waiting report instead of listing and sorting them all.
    pub fn is_empty(&self) -> bool {
        fs::read_dir(&self.dir).map_or(true, |dir| {
            !dir.filter_map(Result::ok).any(|dirent| {
                let name = dirent.file_name();
                let name = name.to_string_lossy();
                is_report_name(&name)
            })
        })
    }

    /// Reads a waiting report; serde applies the checks of a new one, so that a damaged or
    /// forged file is never half-sent.
    pub fn read(&self, entry: &Entry) -> Result<Report, InboxError> {
        let bytes =
            fsio::read_own_file(&entry.path, MAX_REPORT_BYTES).map_err(|err| match err.kind() {
                io::ErrorKind::NotFound => InboxError::Gone,
                _ => InboxError::Unreadable(err),
            })?;
        serde_json::from_slice(&bytes).map_err(InboxError::Invalid)
    }

    /// Removes an imported report. Gone already is fine.
    pub fn remove(&self, entry: &Entry) -> io::Result<()> {
        match fs::remove_file(&entry.path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Moves an unreadable entry out of the way, keeping it for the operator to inspect.
    pub fn set_aside(&self, entry: &Entry) -> io::Result<PathBuf> {
        DirBuilder::new()
            .mode(0o700)
            .create(&self.set_aside_dir)
            .or_else(|err| match err.kind() {
                io::ErrorKind::AlreadyExists if self.set_aside_dir.is_dir() => Ok(()),
                _ => Err(err),
            })?;
        let name = entry.path.file_name().unwrap_or_default();
        let target = self.set_aside_dir.join(name);
        fs::rename(&entry.path, &target)?;
        Ok(target)
    }

    /// Removes temp files (`.name.tmp`) older than `age`, left by a writer that died before
    /// its rename; returns how many went.
    pub fn remove_stale_temps(&self, age: std::time::Duration) -> u64 {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for dirent in dir.filter_map(Result::ok) {
            let name = dirent.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with('.') && name.ends_with(".tmp")) {
                continue;
            }
            let old = dirent
                .metadata()
                .and_then(|meta| meta.modified())
                .is_ok_and(|at| now.duration_since(at).is_ok_and(|waited| waited > age));
            if old && fs::remove_file(dirent.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Removes an entry that could not be set aside, whatever it is (a directory named like
    /// a report included), so that it is never retried.
    pub fn discard(&self, entry: &Entry) -> io::Result<()> {
        match fs::symlink_metadata(&entry.path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&entry.path),
            Ok(_) => fs::remove_file(&entry.path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Moves waiting files into the spool inside `tx` (each with its cooldown), at most
    /// [`IMPORT_BATCH`]; the caller removes [`Imported::files`] once `tx` is committed. A file
    /// imported already (a crash before its removal) is not added twice. Unreadable files are
    /// set aside, counted and said.
    pub fn import(
        &self,
        tx: &Txn,
        state: &mut State,
        cooldown: u64,
        now: u64,
    ) -> rusqlite::Result<Imported> {
        self.import_up_to(tx, state, cooldown, now, IMPORT_BATCH)
    }

    /// [`Inbox::import`] of at most `limit` files.
    pub fn import_up_to(
        &self,
        tx: &Txn,
        state: &mut State,
        cooldown: u64,
        now: u64,
        limit: usize,
    ) -> rusqlite::Result<Imported> {
        let mut imported = Imported::default();
        let stale = self.remove_stale_temps(STALE_TEMP);
        if stale > 0 {
            state.stale_temps_removed += stale;
            imported.notes.push(format!(
                "removed {stale} temp file(s) in {} left by an interrupted write",
                self.dir.display()
            ));
        }
        for entry in self.entries().unwrap_or_default().into_iter().take(limit) {
            let name = entry
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            match self.read(&entry) {
                Ok(report) => {
                    if tx.spool_add_from(&report, name.as_deref())? {
                        let ip = report.ip.to_string();
                        let at = report.queued_at.min(now);
                        tx.note_cooldown(&ip, &report.categories, at, cooldown)?;
                        state.inbox_imported += 1;
                    }
                    imported.files.push(entry);
                }
                Err(InboxError::Gone) => {}
                Err(why) => {
                    state.set_aside += 1;
                    imported.notes.push(self.put_aside(&entry, &why));
                }
            }
        }
        Ok(imported)
    }

    /// Sets an unreadable file aside (or, if it cannot be moved, removes it, so that it is
    /// never retried); the line that says so.
    fn put_aside(&self, entry: &Entry, why: &InboxError) -> String {
        let target = match self.set_aside(entry) {
            Ok(path) => format!("moved to {}", path.display()),
            Err(err) => match self.discard(entry) {
                Ok(()) => format!("could not be moved ({err}); removed"),
                Err(gone) => format!("could be neither moved ({err}) nor removed ({gone})"),
            },
        };
        format!(
            "unreadable report file {} ({why}) not sent; {target}",
            entry.path.display()
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn set_aside_count(&self) -> usize {
        fs::read_dir(&self.set_aside_dir).map_or(0, |d| d.count())
    }
}

/// Inbox files end in `.json`; temp files start with a dot.
fn is_report_name(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(".json")
}

/// The name starts with the write time in nanoseconds; a foreign name counts as written now
/// (age 0) rather than as ancient, so it is never silently dropped for age; its import uses
/// the time stored inside.
fn written_at(name: &str) -> u64 {
    name.split('-')
        .next()
        .and_then(|nanos| nanos.parse::<u128>().ok())
        .and_then(|nanos| u64::try_from(nanos / 1_000_000_000).ok())
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::categories::Categories;

    fn temp_inbox() -> (tempfile::TempDir, Inbox) {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("inbox")).unwrap();
        let spool = Inbox::new(root.path().join("inbox"), root.path().join("set-aside"));
        (root, spool)
    }

    fn report(ip: &str) -> Report {
        Report {
            ip: ip.parse().unwrap(),
            categories: Categories::parse("18,22").unwrap(),
            comment: "c".into(),
            jail: Some("sshd".into()),
            queued_at: 1,
        }
    }

    #[test]
    fn reports_come_back_oldest_first() {
        let (_root, spool) = temp_inbox();
        for ip in ["45.1.1.1", "45.1.1.2", "45.1.1.3"] {
            spool.add(&report(ip)).unwrap();
        }
        assert!(!spool.is_empty());
        let ips: Vec<String> = spool
            .entries()
            .unwrap()
            .iter()
            .map(|e| spool.read(e).unwrap().ip.to_string())
            .collect();
        assert_eq!(ips, ["45.1.1.1", "45.1.1.2", "45.1.1.3"]);
        let leftovers = fs::read_dir(spool.dir()).unwrap().count();
        assert_eq!(leftovers, 3, "no temp files left behind");
    }

    #[test]
    fn damaged_files_are_refused_and_set_aside() {
        let (_root, spool) = temp_inbox();
        fs::write(
            spool.dir().join("00000000000000000001-1-0.json"),
            b"{\"ip\":\"45.1",
        )
        .unwrap();
        fs::write(
            spool.dir().join("00000000000000000002-1-0.json"),
            br#"{"ip":"10.0.0.1","categories":"18","comment":"c","queued_at":1}"#,
        )
        .unwrap();
        let entries = spool.entries().unwrap();
        assert!(matches!(
            spool.read(&entries[0]),
            Err(InboxError::Invalid(_))
        ));
        let err = spool.read(&entries[1]).unwrap_err().to_string();
        assert!(err.contains("private"), "{err}");
        fs::remove_file(&entries[1].path).unwrap();
        assert!(matches!(spool.read(&entries[1]), Err(InboxError::Gone)));
        spool.set_aside(&entries[0]).unwrap();
        assert_eq!(spool.entries().unwrap().len(), 0);
        assert_eq!(spool.set_aside_count(), 1);
    }
}
