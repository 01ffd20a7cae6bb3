//! The state store: one SQLite database (`state.db`, WAL) under `state_dir`, the way fail2ban
//! keeps its own bans. Tables: `state` (one row: backoff, quota, counters, last outcomes),
//! `spool` (one row per waiting report), `cooldown` (IP, category, time; expired by an indexed
//! delete), `claims` (direct reports in flight) and `set_aside` (reports never to be sent).
//! Every event is one short transaction; SQLite's locking replaces lock files, and a writer
//! that holds the database longer than [`BUSY_WAIT`] sends the ban to the inbox instead.
//!
//! The directory is trusted only like OpenSSH trusts `~/.ssh`; the database and its `-wal`
//! and `-shm` files must be regular files of ours, and are never opened through a link.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;

use crate::categories::Categories;
use crate::clock::Mark;
use crate::cooldown::Seen;
use crate::delivery::Quota;
use crate::fsio;
use crate::inbox::Inbox;
use crate::report::Report;
use crate::state::{Event, State};

/// The database file under `state_dir`.
pub const DB_FILE: &str = "state.db";
/// Longest a ban waits for another writer: every writer holds the store for a few
/// milliseconds, so a longer hold means something is stuck (hung, stopped), and the ban
/// goes to the inbox instead.
pub const BUSY_WAIT: Duration = Duration::from_secs(2);
/// Schema version in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;
/// How often a waiting process tries the sender lock that another one holds.
const LOCK_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "state_dir {path} is not usable ({source}){}; reports are sent directly and cannot be kept for retry",
        read_only_hint(source, path)
    )]
    Unusable { path: PathBuf, source: io::Error },
    #[error(
        "state_dir {path} is not safe to use: {why}; reports are sent directly and cannot be kept \
         for retry. Fix: use a directory that only root can write to, e.g. chown root: {path} && \
         chmod 700 {path} (and its parents not group- or world-writable)"
    )]
    Untrusted { path: PathBuf, why: String },
    #[error("state in {path} is held by another process for more than {} s", BUSY_WAIT.as_secs())]
    Busy { path: PathBuf },
    #[error("cannot use the state database {path}: {source}")]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state in {path} cannot be read: {why}")]
    Unreadable { path: PathBuf, why: String },
}

/// What to do about a state_dir on a read-only file system: under the flush service's
/// `ProtectSystem=strict` only the package's own directories are writable.
fn read_only_hint(source: &io::Error, path: &Path) -> String {
    match source.raw_os_error() {
        Some(libc::EROFS) => format!(
            " (read-only here: for the flush service, add ReadWritePaths={} with systemctl \
             edit reportedip-report-flush.service)",
            path.display()
        ),
        _ => String::new(),
    }
}

impl StoreError {
    /// Whether another process held the store too long (a hung or stopped writer).
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Busy { .. })
    }
}

/// A waiting report as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRow {
    pub id: i64,
    /// The report, or why the row cannot be sent (it is then set aside).
    pub report: Result<Report, String>,
    /// Failures of this report alone while others went through.
    pub suspect_attempts: u32,
    pub first_failed: Option<u64>,
    pub next_try: u64,
}

/// A ban that arrived while the config could not be used, as it was asked for: everything
/// about it is decided again once the config works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBan {
    pub id: i64,
    pub ip: String,
    pub ban: crate::report::Ban,
    pub queued_at: u64,
}

/// An open state store.
pub struct Store {
    conn: Connection,
    dir: PathBuf,
    /// What opening found and mended (a corrupt database moved aside, 0.1 files imported),
    /// for the caller to log.
    pub notes: Vec<String>,
    writable: bool,
}

/// Longest the write-ahead log may grow before a run folds it into the database: every new
/// process reads the whole log to rebuild its index, so its length is paid on every ban.
const WAL_LIMIT_BYTES: u64 = 128 * 1024;

impl Drop for Store {
    /// Folds a long log into the database and truncates it, without waiting for anyone: the
    /// run that finds it long pays one checkpoint, the next bans read a short log. (SQLite's
    /// own automatic checkpoint cannot do this here: a process that rebuilt the index never
    /// reaches the next transaction that would restart the log.)
    fn drop(&mut self) {
        if !self.writable {
            return;
        }
        let [_, wal, _] = db_files(&self.dir.join(DB_FILE));
        if fs::symlink_metadata(&wal).map_or(true, |meta| meta.len() <= WAL_LIMIT_BYTES) {
            return;
        }
        let _ = self.conn.busy_timeout(Duration::ZERO);
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

/// `u64` times and counters as SQLite integers; absurd values are clamped, never wrapped.
pub fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn opt_from_sql(value: Option<i64>) -> Option<u64> {
    value.map(from_sql)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    backoff_until INTEGER NOT NULL DEFAULT 0,
    backoff_secs INTEGER NOT NULL DEFAULT 0,
    backoff_granted INTEGER NOT NULL DEFAULT 0,
    backoff_reason TEXT,
    quota_known INTEGER NOT NULL DEFAULT 0,
    quota_limit INTEGER,
    quota_remaining INTEGER,
    quota_reset INTEGER,
    last_success_at INTEGER,
    last_success TEXT,
    last_error_at INTEGER,
    last_error TEXT,
    sent INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0,
    set_aside INTEGER NOT NULL DEFAULT 0,
    stale_temps_removed INTEGER NOT NULL DEFAULT 0,
    inbox_imported INTEGER NOT NULL DEFAULT 0,
    corrupt_moved_aside INTEGER NOT NULL DEFAULT 0,
    clock_boot_id TEXT,
    clock_uptime INTEGER,
    clock_wall INTEGER,
    imported_v01 INTEGER NOT NULL DEFAULT 0,
    api_url TEXT
);
INSERT OR IGNORE INTO state (id) VALUES (1);
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ip TEXT NOT NULL,
    categories TEXT NOT NULL,
    comment TEXT NOT NULL,
    jail TEXT,
    queued_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_at INTEGER,
    suspect_attempts INTEGER NOT NULL DEFAULT 0,
    first_failed INTEGER,
    next_try INTEGER NOT NULL DEFAULT 0,
    origin TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS spool_by_age ON spool (queued_at, id);
CREATE TABLE IF NOT EXISTS cooldown (
    ip TEXT NOT NULL,
    category INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (ip, category)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cooldown_by_time ON cooldown (at);
CREATE TABLE IF NOT EXISTS claims (
    ip TEXT PRIMARY KEY,
    until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS held (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ip TEXT NOT NULL,
    jail TEXT,
    failures INTEGER,
    categories TEXT,
    comment TEXT,
    queued_at INTEGER NOT NULL,
    config_error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS set_aside (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    why TEXT NOT NULL,
    ip TEXT,
    categories TEXT,
    comment TEXT,
    jail TEXT,
    queued_at INTEGER
);
";

impl Store {
    /// Opens (creating if needed) the store under `dir`: the directory is checked before
    /// anything is created, made mode 0700, and the database file pre-created mode 0600 (its
    /// `-wal` and `-shm` files take its mode). A database that is not one, or is damaged, is
    /// moved aside (named, logged, counted) and a fresh one started. 0.1 state found there
    /// is imported once.
    pub fn open(dir: &Path, now: u64) -> Result<Self, StoreError> {
        prepare_dir(dir)?;
        let db = dir.join(DB_FILE);
        let mut notes = Vec::new();
        let mut store = match Self::connect(dir, &db, false) {
            Ok(store) => store,
            Err(StoreError::Database { source, .. }) if is_corrupt(&source) => {
                let moved = move_aside(&db, now).map_err(|source| StoreError::Unusable {
                    path: db.clone(),
                    source,
                })?;
                notes.push(format!(
                    "state database {} was damaged ({source}); moved to {} and started afresh: \
                     waiting reports, backoff, cooldown and counters in it are not used",
                    db.display(),
                    moved.display()
                ));
                let mut store = Self::connect(dir, &db, false)?;
                store.write(|tx| {
                    tx.0.execute(
                        "UPDATE state SET corrupt_moved_aside = corrupt_moved_aside + 1",
                        [],
                    )?;
                    Ok(())
                })?;
                store
            }
            Err(err) => return Err(err),
        };
        store.notes = notes;
        crate::migrate::import_v01(&mut store, now)?;
        Ok(store)
    }

    /// Opens an existing store for reading only (`status`): creates nothing, changes nothing.
    /// `Ok(None)` when there is no store yet.
    pub fn open_existing(dir: &Path) -> Result<Option<Self>, StoreError> {
        let unreadable = |why: String| StoreError::Unreadable {
            path: dir.to_path_buf(),
            why,
        };
        match fs::symlink_metadata(dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(unreadable(err.to_string())),
            Ok(_) => {}
        }
        if let Some(why) = fsio::untrusted_dir(dir) {
            return Err(unreadable(why));
        }
        let db = dir.join(DB_FILE);
        match fs::symlink_metadata(&db) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // The directory may still be unreadable to us, which an empty view would hide.
                return match fs::read_dir(dir) {
                    Ok(_) => Ok(None),
                    Err(err) => Err(unreadable(err.to_string())),
                };
            }
            Err(err) => return Err(unreadable(err.to_string())),
            Ok(_) => {}
        }
        Self::connect(dir, &db, true).map(Some)
    }

    fn connect(dir: &Path, db: &Path, read_only: bool) -> Result<Self, StoreError> {
        let database = |source| StoreError::Database {
            path: db.to_path_buf(),
            source,
        };
        for file in db_files(db) {
            check_own_file(&file).map_err(|why| StoreError::Untrusted {
                path: dir.to_path_buf(),
                why,
            })?;
        }
        if !read_only {
            precreate(db).map_err(|source| StoreError::Unusable {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let access = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn = Connection::open_with_flags(db, flags).map_err(database)?;
        conn.busy_timeout(BUSY_WAIT).map_err(database)?;
        // Each ban is a process of its own: a checkpoint whenever one closes would cost every
        // ban two more fsyncs and a new log. The log stays between runs, and is kept short
        // (see `Drop`): the first connection of a process reads all of it to rebuild its index.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(database)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(database)?;
        if !read_only {
            // Commits are atomic and survive a crash of the process either way; the ones that
            // keep a report are made durable against a power cut by [`Store::sync`], so that
            // a ban that only reads (cooldown) or a direct report's claim costs no fsync.
            conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 64")
                .map_err(database)?;
            if version < SCHEMA_VERSION {
                create_schema(&conn).map_err(|err| busy_or(err, dir, database))?;
            }
            // SQLite made them just now, if they were missing: they must be ours and regular.
            for file in db_files(db) {
                check_own_file(&file).map_err(|why| StoreError::Untrusted {
                    path: dir.to_path_buf(),
                    why,
                })?;
            }
        } else if version < SCHEMA_VERSION {
            return Err(StoreError::Unreadable {
                path: db.to_path_buf(),
                why: "it has no tables yet".into(),
            });
        }
        Ok(Self {
            conn,
            dir: dir.to_path_buf(),
            notes: Vec::new(),
            writable: !read_only,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn inbox(&self) -> Inbox {
        Inbox::new(self.dir.join("inbox"), self.dir.join("set-aside"))
    }

    /// Runs `job` in one write transaction (taken at once, so two writers never deadlock);
    /// commits if it returns `Ok`.
    pub fn write<T>(
        &mut self,
        job: impl FnOnce(&Txn) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        self.transaction(TransactionBehavior::Immediate, true, job)
    }

    /// Runs `job` in one read transaction: one consistent view, no lock on writers.
    pub fn read<T>(
        &mut self,
        job: impl FnOnce(&Txn) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        self.transaction(TransactionBehavior::Deferred, false, job)
    }

    fn transaction<T>(
        &mut self,
        behavior: TransactionBehavior,
        commit: bool,
        job: impl FnOnce(&Txn) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let dir = self.dir.clone();
        let fail = |err| {
            busy_or(err, &dir, |source| StoreError::Database {
                path: dir.join(DB_FILE),
                source,
            })
        };
        let txn = Txn(self
            .conn
            .transaction_with_behavior(behavior)
            .map_err(fail)?);
        let value = job(&txn).map_err(fail)?;
        if commit {
            txn.0.commit().map_err(fail)?;
        } else {
            txn.0.rollback().map_err(fail)?;
        }
        Ok(value)
    }

    /// Makes every commit so far durable (the write-ahead log reaches the disk), as
    /// `synchronous = FULL` would for each: called after a commit that keeps a report.
    pub fn sync(&self) -> Result<(), StoreError> {
        let [db, wal, _] = db_files(&self.dir.join(DB_FILE));
        let sync = |path: &Path| {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path)
                .and_then(|file| file.sync_data())
        };
        // The log is empty right after a checkpoint, which wrote and synced the database.
        match sync(&wal) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => sync(&db),
            other => other,
        }
        .map_err(|source| StoreError::Unusable { path: db, source })
    }

    /// The sender lock, if it comes free within `wait`: a lock on the state directory
    /// itself, which no one can delete or swap under a running sender the way a lock file
    /// can be. A probe by `status` or a starting report holds it for microseconds.
    pub fn sender_lock_within(&self, wait: Duration) -> io::Result<Option<File>> {
        sender_lock_within(&self.dir, wait)
    }

    /// The sender lock, waiting for a running sender to finish (`flush`).
    pub fn wait_sender_lock(&self) -> io::Result<File> {
        let dir = File::open(&self.dir)?;
        dir.lock()?;
        Ok(dir)
    }
}

/// Makes a new database: WAL, the tables, the version. Processes that find it new at the same
/// moment may each be told "busy" by SQLite's journal-mode switch, which does not wait:
/// they try again until [`BUSY_WAIT`] has passed.
fn create_schema(conn: &Connection) -> Result<(), rusqlite::Error> {
    let deadline = Instant::now() + BUSY_WAIT;
    loop {
        let created = conn
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .and_then(|()| {
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
            });
        match created {
            Err(err)
                if Instant::now() < deadline
                    && matches!(
                        err.sqlite_error_code(),
                        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    ) =>
            {
                let _ = conn.execute_batch("ROLLBACK");
                std::thread::sleep(LOCK_POLL);
            }
            other => return other,
        }
    }
}

/// See [`Store::sender_lock_within`].
pub fn sender_lock_within(dir: &Path, wait: Duration) -> io::Result<Option<File>> {
    let file = File::open(dir)?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(LOCK_POLL);
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(err)) => return Err(err),
        }
    }
}

/// Busy (another writer past [`BUSY_WAIT`]) is its own error; the rest go through `other`.
fn busy_or(
    err: rusqlite::Error,
    dir: &Path,
    other: impl FnOnce(rusqlite::Error) -> StoreError,
) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy {
            path: dir.to_path_buf(),
        },
        _ => other(err),
    }
}

fn is_corrupt(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// The database and the files SQLite keeps beside it.
fn db_files(db: &Path) -> [PathBuf; 3] {
    let name = db.as_os_str().to_owned();
    let with = |suffix: &str| {
        let mut path = name.clone();
        path.push(suffix);
        PathBuf::from(path)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

/// A file of the store must be missing, or a regular file of ours: never a link, a FIFO
/// (which would hang the ban path) or another user's file.
fn check_own_file(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(format!("{}: {err}", path.display())),
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(format!("{} is a symbolic link", path.display()))
        }
        Ok(meta) if !meta.is_file() => Err(format!("{} is not a regular file", path.display())),
        Ok(meta) if !fsio::owned_by_us(&meta) => Err(format!(
            "{} is owned by uid {}, not by root or you",
            path.display(),
            meta.uid()
        )),
        Ok(_) => Ok(()),
    }
}

/// Creates the database file mode 0600 if it is missing, so that SQLite never makes it (or
/// its `-wal` and `-shm` files, which copy its mode) readable by others.
fn precreate(db: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(db)
    {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(drop),
    }
}

/// Renames a damaged database (and its `-wal` and `-shm` files) aside; returns the new name.
fn move_aside(db: &Path, now: u64) -> io::Result<PathBuf> {
    let mut target = PathBuf::new();
    for (index, file) in db_files(db).iter().enumerate() {
        let mut name = file.as_os_str().to_owned();
        name.push(format!(".damaged-{now}"));
        let name = PathBuf::from(name);
        match fs::rename(file, &name) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        if index == 0 {
            target = name;
        }
    }
    Ok(target)
}

/// Checks `root` like OpenSSH checks `~/.ssh` before anything is created, then creates it
/// (mode 0700) and checks it again.
pub fn prepare_dir(root: &Path) -> Result<(), StoreError> {
    let unusable = |source| StoreError::Unusable {
        path: root.to_path_buf(),
        source,
    };
    let refuse = |why| StoreError::Untrusted {
        path: root.to_path_buf(),
        why,
    };
    let check = |dir: &Path| fsio::untrusted_dir(dir).map_or(Ok(()), |why| Err(refuse(why)));
    match root
        .ancestors()
        .find(|dir| fs::symlink_metadata(dir).is_ok())
    {
        Some(existing) if existing == root => check(root)?,
        Some(parent) => {
            if let Some(why) = fsio::untrusted_parents(parent) {
                return Err(refuse(why));
            }
        }
        None => {}
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(unusable)?;
    check(root)
}

/// One transaction on the store.
pub struct Txn<'a>(rusqlite::Transaction<'a>);

type Sql<T> = Result<T, rusqlite::Error>;

impl Txn<'_> {
    pub fn conn(&self) -> &Connection {
        &self.0
    }

    /// The state row, with the stored times made to agree with the clock
    /// ([`State::check_clock`]): a clock that was set moves the cooldown and the spool with
    /// it, in this same transaction, and the new clock mark is saved with them, so that a
    /// shift is applied exactly once.
    pub fn load(&self, now: u64) -> Sql<(State, Vec<String>)> {
        let mut state = self.state()?;
        let check = state.check_clock(now, Mark::now(now));
        if check.shift != 0 {
            self.0.execute(
                "UPDATE cooldown SET at = max(0, at + ?1)",
                params![check.shift],
            )?;
            self.0.execute(
                "UPDATE spool SET queued_at = max(0, queued_at + ?1), \
                 next_try = max(0, next_try + ?1), first_failed = max(0, first_failed + ?1)",
                params![check.shift],
            )?;
        }
        let clamped = self.0.execute(
            "UPDATE cooldown SET at = ?1 WHERE at > ?1",
            params![sql_int(now)],
        )?;
        let mut notes = check.notes;
        if clamped > 0 {
            notes.push("cooldown times after now (was the clock ahead?) clamped to now".into());
        }
        // Saved at once: a shift applied above must never be applied again.
        self.save(&state)?;
        Ok((state, notes))
    }

    /// The state row as stored.
    pub fn state(&self) -> Sql<State> {
        self.0.query_row(
            "SELECT backoff_until, backoff_secs, backoff_granted, backoff_reason, quota_known, \
             quota_limit, quota_remaining, quota_reset, last_success_at, last_success, \
             last_error_at, last_error, sent, rejected, dropped, set_aside, \
             stale_temps_removed, inbox_imported, corrupt_moved_aside, clock_boot_id, \
             clock_uptime, clock_wall, api_url FROM state WHERE id = 1",
            [],
            |row| {
                let event = |at: Option<i64>, message: Option<String>| {
                    Some(Event {
                        at: from_sql(at?),
                        message: message?,
                    })
                };
                let quota_known: bool = row.get(4)?;
                let boot_id: Option<String> = row.get(19)?;
                Ok(State {
                    backoff_until: from_sql(row.get(0)?),
                    backoff_secs: from_sql(row.get(1)?),
                    backoff_granted: from_sql(row.get(2)?),
                    backoff_reason: row.get(3)?,
                    quota: quota_known
                        .then(|| -> Sql<Quota> {
                            Ok(Quota {
                                limit: opt_from_sql(row.get(5)?),
                                remaining: opt_from_sql(row.get(6)?),
                                reset: opt_from_sql(row.get(7)?),
                            })
                        })
                        .transpose()?,
                    last_success: event(row.get(8)?, row.get(9)?),
                    last_error: event(row.get(10)?, row.get(11)?),
                    sent: from_sql(row.get(12)?),
                    rejected: from_sql(row.get(13)?),
                    dropped: from_sql(row.get(14)?),
                    set_aside: from_sql(row.get(15)?),
                    stale_temps_removed: from_sql(row.get(16)?),
                    inbox_imported: from_sql(row.get(17)?),
                    corrupt_moved_aside: from_sql(row.get(18)?),
                    clock_mark: boot_id
                        .map(|boot_id| -> Sql<Mark> {
                            Ok(Mark {
                                boot_id,
                                uptime: from_sql(row.get(20)?),
                                wall: from_sql(row.get(21)?),
                            })
                        })
                        .transpose()?,
                    api_url: row.get(22)?,
                })
            },
        )
    }

    /// Writes the state row back.
    pub fn save(&self, state: &State) -> Sql<()> {
        let quota = state.quota.unwrap_or_default();
        let mark = state.clock_mark.as_ref();
        self.0.execute(
            "UPDATE state SET backoff_until = ?1, backoff_secs = ?2, backoff_granted = ?3, \
             backoff_reason = ?4, quota_known = ?5, quota_limit = ?6, quota_remaining = ?7, \
             quota_reset = ?8, last_success_at = ?9, last_success = ?10, last_error_at = ?11, \
             last_error = ?12, sent = ?13, rejected = ?14, dropped = ?15, set_aside = ?16, \
             stale_temps_removed = ?17, inbox_imported = ?18, corrupt_moved_aside = ?19, \
             clock_boot_id = ?20, clock_uptime = ?21, clock_wall = ?22, api_url = ?23 WHERE id = 1",
            params![
                sql_int(state.backoff_until),
                sql_int(state.backoff_secs),
                sql_int(state.backoff_granted),
                state.backoff_reason,
                state.quota.is_some(),
                quota.limit.map(sql_int),
                quota.remaining.map(sql_int),
                quota.reset.map(sql_int),
                state.last_success.as_ref().map(|e| sql_int(e.at)),
                state.last_success.as_ref().map(|e| &e.message),
                state.last_error.as_ref().map(|e| sql_int(e.at)),
                state.last_error.as_ref().map(|e| &e.message),
                sql_int(state.sent),
                sql_int(state.rejected),
                sql_int(state.dropped),
                sql_int(state.set_aside),
                sql_int(state.stale_temps_removed),
                sql_int(state.inbox_imported),
                sql_int(state.corrupt_moved_aside),
                mark.map(|m| &m.boot_id),
                mark.map(|m| sql_int(m.uptime)),
                mark.map(|m| sql_int(m.wall)),
                state.api_url,
            ],
        )?;
        Ok(())
    }

    /// What the cooldown holds for `ip`: category and time, every row (expired ones too;
    /// [`crate::cooldown::covered_since`] decides).
    pub fn cooldown_of(&self, ip: &str) -> Sql<Seen> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT category, at FROM cooldown WHERE ip = ?1")?;
        let rows = stmt.query_map(params![ip], |row| {
            Ok((row.get::<_, u8>(0)?, from_sql(row.get(1)?)))
        })?;
        rows.collect()
    }

    /// Starts the cooldown of `categories` for `ip` at `now`, and forgets what has expired
    /// (an indexed delete: the cost does not grow with the table).
    pub fn note_cooldown(
        &self,
        ip: &str,
        categories: &Categories,
        now: u64,
        window: u64,
    ) -> Sql<()> {
        self.0.execute(
            "DELETE FROM cooldown WHERE at <= ?1",
            params![sql_int(now.saturating_sub(window))],
        )?;
        if window == 0 {
            return Ok(());
        }
        let mut stmt = self.0.prepare_cached(
            "INSERT INTO cooldown (ip, category, at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (ip, category) DO UPDATE SET at = excluded.at",
        )?;
        for id in categories.ids() {
            stmt.execute(params![ip, id, sql_int(now)])?;
        }
        Ok(())
    }

    /// IPs with at least one category still in the window.
    pub fn cooldown_entries(&self, now: u64, window: u64) -> Sql<u64> {
        self.0
            .query_row(
                "SELECT count(DISTINCT ip) FROM cooldown WHERE at > ?1",
                params![sql_int(now.saturating_sub(window))],
                |row| row.get(0),
            )
            .map(from_sql)
    }

    /// Takes the claim on a direct report of `ip` unless a live one exists: two direct
    /// reports of one IP at the same moment send one request. Whether it was taken.
    pub fn claim_ip(&self, ip: &str, now: u64, until: u64) -> Sql<bool> {
        self.0.execute(
            "DELETE FROM claims WHERE until <= ?1",
            params![sql_int(now)],
        )?;
        let taken = self.0.execute(
            "INSERT OR IGNORE INTO claims (ip, until) VALUES (?1, ?2)",
            params![ip, sql_int(until)],
        )?;
        Ok(taken == 1)
    }

    pub fn release_ip(&self, ip: &str) -> Sql<()> {
        self.0
            .execute("DELETE FROM claims WHERE ip = ?1", params![ip])
            .map(drop)
    }

    /// Adds a report to the spool.
    pub fn spool_add(&self, report: &Report) -> Sql<()> {
        self.spool_add_from(report, None).map(drop)
    }

    /// Adds a report that came as a file (`origin`, its name) unless that file was imported
    /// already; whether it was added.
    pub fn spool_add_from(&self, report: &Report, origin: Option<&str>) -> Sql<bool> {
        let mut stmt = self.0.prepare_cached(
            "INSERT OR IGNORE INTO spool (ip, categories, comment, jail, queued_at, origin) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let added = stmt.execute(params![
            report.ip.to_string(),
            report.categories.to_string(),
            report.comment,
            report.jail,
            sql_int(report.queued_at),
            origin
        ])?;
        Ok(added == 1)
    }

    /// Whether the inbox file `origin` is in the spool already (imported, not yet removed).
    pub fn spooled_from(&self, origin: &str) -> Sql<bool> {
        self.0
            .query_row(
                "SELECT count(*) FROM spool WHERE origin = ?1",
                params![origin],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n > 0)
    }

    pub fn spool_len(&self) -> Sql<u64> {
        self.0
            .query_row("SELECT count(*) FROM spool", [], |row| row.get(0))
            .map(from_sql)
    }

    /// When the oldest waiting report was queued.
    pub fn spool_oldest(&self) -> Sql<Option<u64>> {
        self.0
            .query_row("SELECT min(queued_at) FROM spool", [], |row| row.get(0))
            .map(opt_from_sql)
    }

    /// Reports that failed alone while others went through.
    pub fn suspects(&self) -> Sql<u64> {
        self.0
            .query_row(
                "SELECT count(*) FROM spool WHERE suspect_attempts > 0",
                [],
                |row| row.get(0),
            )
            .map(from_sql)
    }

    /// Drops reports older than `max_age` seconds, then the oldest beyond `max`; returns how
    /// many went. Both deletes walk the age index only as far as they drop.
    pub fn spool_limit(&self, max: u64, max_age: u64, now: u64) -> Sql<u64> {
        let aged = self.0.execute(
            "DELETE FROM spool WHERE queued_at < ?1",
            params![sql_int(now.saturating_sub(max_age))],
        )?;
        let excess = self.spool_len()?.saturating_sub(max);
        let over = if excess > 0 {
            self.0.execute(
                "DELETE FROM spool WHERE id IN \
                 (SELECT id FROM spool ORDER BY queued_at, id LIMIT ?1)",
                params![sql_int(excess)],
            )?
        } else {
            0
        };
        Ok((aged + over) as u64)
    }

    /// Ids of the waiting reports in delivery order; `newest_first` under quota pressure.
    pub fn spool_ids(&self, newest_first: bool) -> Sql<Vec<i64>> {
        let sql = if newest_first {
            "SELECT id FROM spool ORDER BY queued_at DESC, id DESC"
        } else {
            "SELECT id FROM spool ORDER BY queued_at, id"
        };
        let mut stmt = self.0.prepare_cached(sql)?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        rows.collect()
    }

    /// One waiting report, read through the same checks as a new one.
    pub fn spool_row(&self, id: i64) -> Sql<Option<SpoolRow>> {
        self.0
            .query_row(
                "SELECT ip, categories, comment, jail, queued_at, suspect_attempts, \
                 first_failed, next_try FROM spool WHERE id = ?1",
                params![id],
                |row| {
                    let report = Report::from_stored(
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        from_sql(row.get(4)?),
                    );
                    Ok(SpoolRow {
                        id,
                        report,
                        suspect_attempts: row.get(5)?,
                        first_failed: opt_from_sql(row.get(6)?),
                        next_try: from_sql(row.get(7)?),
                    })
                },
            )
            .optional()
    }

    /// Marks a report as being sent now: a sender that dies before it settles leaves the
    /// mark (and the attempt count) behind, and the next sender sends it again (at most one
    /// duplicate per crash).
    pub fn spool_claim(&self, id: i64, now: u64) -> Sql<()> {
        self.0
            .execute(
                "UPDATE spool SET attempts = attempts + 1, claimed_at = ?2 WHERE id = ?1",
                params![id, sql_int(now)],
            )
            .map(drop)
    }

    /// Removes a delivered (or finally rejected) report; whether it was still there.
    pub fn spool_remove(&self, id: i64) -> Sql<bool> {
        self.0
            .execute("DELETE FROM spool WHERE id = ?1", params![id])
            .map(|n| n == 1)
    }

    /// Records a failure of this report alone.
    pub fn spool_suspect(
        &self,
        id: i64,
        attempts: u32,
        first_failed: u64,
        next_try: u64,
    ) -> Sql<()> {
        self.0
            .execute(
                "UPDATE spool SET suspect_attempts = ?2, first_failed = ?3, next_try = ?4, \
                 claimed_at = NULL WHERE id = ?1",
                params![id, attempts, sql_int(first_failed), sql_int(next_try)],
            )
            .map(drop)
    }

    /// Moves a report that must never be sent out of the spool, keeping it for the operator
    /// (`SELECT * FROM set_aside`).
    pub fn spool_set_aside(&self, id: i64, why: &str, now: u64) -> Sql<()> {
        self.0.execute(
            "INSERT INTO set_aside (at, why, ip, categories, comment, jail, queued_at) \
             SELECT ?2, ?3, ip, categories, comment, jail, queued_at FROM spool WHERE id = ?1",
            params![id, sql_int(now), why],
        )?;
        self.0
            .execute("DELETE FROM spool WHERE id = ?1", params![id])
            .map(drop)
    }

    /// Reports kept in the `set_aside` table.
    pub fn set_aside_len(&self) -> Sql<u64> {
        self.0
            .query_row("SELECT count(*) FROM set_aside", [], |row| row.get(0))
            .map(from_sql)
    }

    /// Keeps a ban that arrived while the config could not be used, with the reason.
    pub fn hold(
        &self,
        ip: &str,
        ban: &crate::report::Ban,
        now: u64,
        config_error: &str,
    ) -> Sql<()> {
        self.0
            .execute(
                "INSERT INTO held (ip, jail, failures, categories, comment, queued_at, config_error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    ip,
                    ban.jail,
                    ban.failures.map(sql_int),
                    ban.categories,
                    ban.comment,
                    sql_int(now),
                    config_error
                ],
            )
            .map(drop)
    }

    /// The bans held while the config was broken, oldest first.
    pub fn held(&self) -> Sql<Vec<HeldBan>> {
        let mut stmt = self.0.prepare(
            "SELECT id, ip, jail, failures, categories, comment, queued_at FROM held ORDER BY id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(HeldBan {
                id: row.get(0)?,
                ip: row.get(1)?,
                ban: crate::report::Ban {
                    jail: row.get(2)?,
                    failures: opt_from_sql(row.get(3)?),
                    categories: row.get(4)?,
                    comment: row.get(5)?,
                },
                queued_at: from_sql(row.get(6)?),
            })
        })?;
        rows.collect()
    }

    pub fn unhold(&self, id: i64) -> Sql<()> {
        self.0
            .execute("DELETE FROM held WHERE id = ?1", params![id])
            .map(drop)
    }

    /// How many bans are held, and the config error of the latest.
    pub fn held_summary(&self) -> Sql<(u64, Option<String>)> {
        self.0.query_row(
            "SELECT count(*), (SELECT config_error FROM held ORDER BY id DESC LIMIT 1) FROM held",
            [],
            |row| Ok((from_sql(row.get(0)?), row.get(1)?)),
        )
    }

    /// Whether the 0.1 files were imported already.
    pub fn imported_v01(&self) -> Sql<bool> {
        self.0
            .query_row("SELECT imported_v01 FROM state WHERE id = 1", [], |row| {
                row.get(0)
            })
    }

    pub fn mark_imported_v01(&self) -> Sql<()> {
        self.0
            .execute("UPDATE state SET imported_v01 = 1 WHERE id = 1", [])
            .map(drop)
    }

    /// Sets a cooldown stamp as 0.1 kept it (category 0 covers every category).
    pub fn put_cooldown(&self, ip: &str, category: u8, at: u64) -> Sql<()> {
        self.0
            .execute(
                "INSERT INTO cooldown (ip, category, at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (ip, category) DO UPDATE SET at = max(at, excluded.at)",
                params![ip, category, sql_int(at)],
            )
            .map(drop)
    }
}
