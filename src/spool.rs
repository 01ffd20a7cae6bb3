//! The spool: one JSON file per report waiting for delivery, named so that a directory
//! listing sorted by name is oldest first. Files are written atomically (temp, fsync, rename).

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::fsio;
use crate::report::Report;

/// Largest spool file read: a report is a few hundred bytes.
const MAX_REPORT_BYTES: u64 = 64 * 1024;

#[derive(Debug, Error)]
pub enum SpoolError {
    /// Gone since it was listed (delivered by another process, or dropped by the limits).
    #[error("no longer in the spool")]
    Gone,
    #[error("cannot be read: {0}")]
    Unreadable(io::Error),
    #[error("is not a valid report: {0}")]
    Invalid(serde_json::Error),
    /// Readable, but the API fails on it alone.
    #[error("{0}")]
    Suspect(String),
}

/// A spool file found on disk, not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    /// When it was written, from its name (UNIX seconds).
    pub written_at: u64,
}

pub struct Spool {
    dir: PathBuf,
    set_aside_dir: PathBuf,
}

impl Spool {
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
        fsio::write_atomic(&path, &bytes)?;
        Ok(path)
    }

    /// Waiting reports, oldest first.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut entries: Vec<Entry> = fs::read_dir(&self.dir)?
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

    /// Reads a spooled report; serde applies the checks of a new one, so that a damaged or
    /// forged file is never half-sent.
    pub fn read(&self, entry: &Entry) -> Result<Report, SpoolError> {
        let bytes =
            fsio::read_own_file(&entry.path, MAX_REPORT_BYTES).map_err(|err| match err.kind() {
                io::ErrorKind::NotFound => SpoolError::Gone,
                _ => SpoolError::Unreadable(err),
            })?;
        serde_json::from_slice(&bytes).map_err(SpoolError::Invalid)
    }

    /// Removes a delivered (or finally rejected) report. Gone already is fine.
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

    /// Moves the queue time in every waiting report's name by `by` seconds (the clock was
    /// set while they waited), keeping their order.
    pub fn shift_queue_times(&self, by: i64) {
        let Ok(entries) = self.entries() else {
            return;
        };
        let by_nanos = i128::from(by) * 1_000_000_000;
        for entry in entries {
            let Some(name) = entry.path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(nanos) = name
                .get(..20)
                .and_then(|digits| digits.parse::<i128>().ok())
            else {
                continue;
            };
            let moved = (nanos + by_nanos).max(0);
            let _ = fs::rename(
                &entry.path,
                self.dir.join(format!("{moved:020}{}", &name[20..])),
            );
        }
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

    /// Drops reports beyond `max` files or older than `max_age` seconds, oldest first;
    /// returns how many went and how many are left (one listing serves both).
    pub fn enforce_limits(&self, max: usize, max_age: u64, now: u64) -> io::Result<(u64, usize)> {
        let entries = self.entries()?;
        let excess = entries.len().saturating_sub(max);
        let mut dropped = 0;
        for (index, entry) in entries.iter().enumerate() {
            let too_old = now.saturating_sub(entry.written_at) > max_age;
            if index >= excess && !too_old {
                break;
            }
            if fs::remove_file(&entry.path).is_ok() {
                dropped += 1;
            }
        }
        let left = entries.len() - usize::try_from(dropped).unwrap_or(entries.len());
        Ok((dropped, left))
    }

    /// Age in seconds of the oldest waiting report.
    pub fn oldest_age(&self, now: u64) -> Option<u64> {
        let entries = self.entries().ok()?;
        entries.first().map(|e| now.saturating_sub(e.written_at))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn set_aside_count(&self) -> usize {
        fs::read_dir(&self.set_aside_dir).map_or(0, |d| d.count())
    }
}

/// Spool files end in `.json`; temp files start with a dot.
fn is_report_name(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(".json")
}

/// The name starts with the write time in nanoseconds; a foreign name counts as written now
/// (age 0) rather than as ancient, so it is never silently dropped for age.
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

    fn temp_spool() -> (tempfile::TempDir, Spool) {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("spool")).unwrap();
        let spool = Spool::new(root.path().join("spool"), root.path().join("set-aside"));
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
        let (_root, spool) = temp_spool();
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
        let (_root, spool) = temp_spool();
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
            Err(SpoolError::Invalid(_))
        ));
        let err = spool.read(&entries[1]).unwrap_err().to_string();
        assert!(err.contains("private"), "{err}");
        fs::remove_file(&entries[1].path).unwrap();
        assert!(matches!(spool.read(&entries[1]), Err(SpoolError::Gone)));
        spool.set_aside(&entries[0]).unwrap();
        assert_eq!(spool.entries().unwrap().len(), 0);
        assert_eq!(spool.set_aside_count(), 1);
    }

    #[test]
    fn limits_drop_the_oldest() {
        let (_root, spool) = temp_spool();
        for n in 1..=5u64 {
            let name = format!("{:020}-1-0.json", n * 1_000_000_000);
            fs::write(
                spool.dir().join(name),
                serde_json::to_vec(&report("45.1.1.1")).unwrap(),
            )
            .unwrap();
        }
        assert_eq!(spool.enforce_limits(3, 1000, 5).unwrap(), (2, 3));
        let left: Vec<u64> = spool
            .entries()
            .unwrap()
            .iter()
            .map(|e| e.written_at)
            .collect();
        assert_eq!(left, [3, 4, 5]);
        assert_eq!(spool.enforce_limits(10, 1, 6).unwrap(), (2, 1));
        assert_eq!(spool.entries().unwrap().len(), 1);
    }
}
