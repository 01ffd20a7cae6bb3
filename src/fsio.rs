//! Files the tool keeps: written atomically and durably, one way for all of them; opened
//! only when they are what they should be (regular, ours, not a link, of bounded size), in
//! directories nobody else can write to, the way OpenSSH treats `~/.ssh`.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// The effective uid: the kernel makes /proc/self owned by it, which spares an FFI call.
pub fn effective_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|meta| meta.uid())
}

/// Owned by root or by us.
pub fn owned_by_us(meta: &Metadata) -> bool {
    meta.uid() == 0 || Some(meta.uid()) == effective_uid()
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

/// Why the directory `dir` cannot be trusted to hold reports and state, if it cannot: it
/// and every parent must be a directory owned by root or us that no one else can write to;
/// a world-writable parent passes only with the sticky bit (like /tmp), where nobody else
/// can replace what we own. `dir` itself must not be a symbolic link.
pub fn untrusted_dir(dir: &Path) -> Option<String> {
    let own = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(err) => return Some(format!("{}: {err}", dir.display())),
    };
    if own.file_type().is_symlink() {
        return Some(format!("{} is a symbolic link", dir.display()));
    }
    if own.mode() & 0o022 != 0 {
        return Some(format!(
            "{} is mode {:04o}, writable by other users",
            dir.display(),
            own.mode() & 0o7777
        ));
    }
    untrusted_parents(dir)
}

/// Why `path` or one of its parents would let another user replace what lies below it, if
/// so: each must be a directory owned by root or us, writable by no one else unless sticky.
pub fn untrusted_parents(path: &Path) -> Option<String> {
    for path in path.ancestors() {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(err) => return Some(format!("{}: {err}", path.display())),
        };
        if !meta.is_dir() {
            return Some(format!("{} is not a directory", path.display()));
        }
        if !owned_by_us(&meta) {
            return Some(format!(
                "{} is owned by uid {}, not by root or you",
                path.display(),
                meta.uid()
            ));
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && !sticky {
            return Some(format!(
                "{} is mode {:04o}, writable by other users",
                path.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    None
}

/// Why `meta` is not a file we may read or lock, if it is not.
fn unfit_file(meta: &Metadata) -> Option<&'static str> {
    if meta.file_type().is_symlink() {
        Some("a symbolic link")
    } else if !meta.is_file() {
        Some("not a regular file")
    } else if !owned_by_us(meta) {
        Some("owned by another user")
    } else {
        None
    }
}

/// Reads a file we wrote: regular, ours, not a link, at most `cap` bytes. A FIFO, a device
/// or a link (to /dev/zero, say) is refused before it is opened, so nothing blocks or
/// floods.
pub fn read_own_file(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let meta = fs::symlink_metadata(path)?;
    if let Some(why) = unfit_file(&meta) {
        return Err(refused(format!("is {why}")));
    }
    if meta.len() > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than {cap} bytes"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than {cap} bytes"),
        ));
    }
    Ok(bytes)
}

/// Why a file that others may read but must not change (a CA file) cannot be trusted, if it
/// cannot, in words that do not repeat its path: it must be a regular file (not a link) owned
/// by root or us, writable by no one else, in directories that pass [`untrusted_parents`].
pub fn untrusted_file(path: &Path) -> Option<String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Some("it is missing".into()),
        Err(err) => return Some(format!("it cannot be examined ({})", err.kind())),
    };
    if let Some(why) = unfit_shared_file(&meta) {
        return Some(format!("it is {why}"));
    }
    untrusted_parents(path.parent().unwrap_or(Path::new("/")))
        .map(|_| "a directory above it is owned by another user or writable by other users".into())
}

fn unfit_shared_file(meta: &Metadata) -> Option<String> {
    if let Some(why) = unfit_file(meta) {
        return Some(why.to_string());
    }
    (meta.mode() & 0o022 != 0)
        .then(|| format!("mode {:04o}, writable by other users", meta.mode() & 0o7777))
}

/// Reads a file that others may read but must not change, at most `cap` bytes: opened
/// without following a link and without blocking (a FIFO swapped in never hangs the run), and
/// checked on the open descriptor, so that nothing can be swapped between check and read.
pub fn read_trusted_file(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    if let Some(why) = untrusted_parents(path.parent().unwrap_or(Path::new("/"))) {
        return Err(refused(why));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => refused("is a symbolic link".into()),
            _ => err,
        })?;
    let meta = file.metadata()?;
    if let Some(why) = unfit_shared_file(&meta) {
        return Err(refused(format!("is {why}")));
    }
    if meta.len() > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than {cap} bytes"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Opens (creating if needed, mode 0600) a lock file: never through a link, and only a
/// regular file of ours.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => refused(format!("{} is a symbolic link", path.display())),
            _ => err,
        })?;
    match unfit_file(&file.metadata()?) {
        Some(why) => Err(refused(format!("{} is {why}", path.display()))),
        None => Ok(file),
    }
}

/// Whether `file` is still the one at `path` (a lock file deleted or replaced since it was
/// opened locks nothing).
pub fn is_still_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(held), Ok(there)) => held.dev() == there.dev() && held.ino() == there.ino(),
        _ => false,
    }
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A number no other call in this process has had; with the pid, a name nobody else uses.
pub fn next_sequence() -> u32 {
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the new one, never a
/// part, and a crash after the return keeps the new one: temp file, fsync, rename, fsync of
/// the directory. The temp name starts with a dot and ends in `.tmp`; it is created with
/// `O_EXCL`, so nothing planted at that name (a symlink, say) is ever written through.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

/// [`write_atomic`] for a file others may read (mode `mode`), like a metrics file.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        ));
    };
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        next_sequence()
    ));
    let written = write_new(&tmp, bytes, mode).and_then(|()| fs::rename(&tmp, path));
    if let Err(err) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    // The rename is only durable once the directory itself reaches the disk. Opened as a
    // directory only, never through a link and without blocking: a FIFO swapped in for it
    // must not hang the run.
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir)?
        .sync_all()
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask must not make a metrics file unreadable for node_exporter.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn only_our_regular_files_are_read_and_only_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.json");
        fs::write(&file, b"12345").unwrap();
        assert_eq!(read_own_file(&file, 5).unwrap(), b"12345");
        assert!(read_own_file(&file, 4).is_err());
        let link = dir.path().join("l.json");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_own_file(&link, 1 << 20).is_err());
        assert!(open_lock_file(&link).is_err());
        assert!(read_own_file(dir.path(), 1 << 20).is_err());
    }

    #[test]
    fn directories_others_can_write_to_are_untrusted() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(untrusted_dir(dir.path()), None, "a 0700 dir under /tmp");
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let why = untrusted_dir(&open).unwrap();
        assert!(why.contains("mode 0777"), "{why}");
        assert!(untrusted_dir(&open.join("state")).is_some(), "under it too");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(untrusted_dir(&link).unwrap().contains("symbolic link"));
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old").unwrap();
        // A directory cannot be renamed over a file: the write fails after the temp exists.
        let target = dir.path().join("sub");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"").unwrap();
        assert!(write_atomic(&target, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
