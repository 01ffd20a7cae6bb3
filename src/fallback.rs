//! Where the backoff is kept while `state_dir` cannot be written (a full or read-only /var):
//! the runtime directory, on a tmpfs that has room when /var has none. Without it, every ban
//! during an outage would wait the full timeout again. One file per `state_dir`, so that a
//! config on a full disk never holds back another, healthy one.

use std::fs::{self, DirBuilder};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::fsio;
use crate::state::{MAX_HOLD_SECS, State};

/// Overrides the runtime directory (`/run/reportedip-report`); for tests and for systems
/// without /run.
pub const RUNTIME_DIR_ENV: &str = "REPORTEDIP_RUNTIME_DIR";
const DEFAULT_RUNTIME_DIR: &str = "/run/reportedip-report";

pub struct Fallback {
    file: PathBuf,
}

impl Fallback {
    /// The fallback of the store at `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        let dir = std::env::var_os(RUNTIME_DIR_ENV)
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_RUNTIME_DIR), PathBuf::from);
        Self {
            file: dir.join(format!("backoff-{:016x}.json", path_hash(state_dir))),
        }
    }

    /// The backoff kept here, as a state that holds only it; clamped like any stored time.
    pub fn state(&self, now: u64) -> State {
        let mut state: State = fsio::read_own_file(&self.file, 4096)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        state.backoff_until = state.backoff_until.min(now.saturating_add(MAX_HOLD_SECS));
        state
    }

    /// Keeps `state`'s backoff window; says why it could not.
    pub fn remember(&self, state: &State) -> Result<(), String> {
        let Some(dir) = self.file.parent() else {
            return Err("no runtime directory".into());
        };
        let _ = DirBuilder::new().recursive(true).mode(0o700).create(dir);
        if let Some(why) = fsio::untrusted_dir(dir) {
            return Err(format!("runtime directory not used: {why}"));
        }
        let kept = State {
            backoff_until: state.backoff_until,
            backoff_secs: state.backoff_secs,
            backoff_reason: state.backoff_reason.clone(),
            ..State::default()
        };
        let bytes = serde_json::to_vec(&kept).map_err(|err| err.to_string())?;
        fsio::write_atomic(&self.file, &bytes)
            .map_err(|err| format!("cannot write {}: {err}", self.file.display()))
    }

    pub fn clear(&self) {
        let _ = fs::remove_file(&self.file);
    }
}

/// A stable name for a path: the same `state_dir` finds its own file in every process.
fn path_hash(path: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish()
}
