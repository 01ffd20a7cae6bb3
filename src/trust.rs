//! Which CA roots TLS trusts, the way administrators expect: the system store
//! (`SSL_CERT_FILE`, else `SSL_CERT_DIR`, else the distribution's bundle that
//! `update-ca-certificates` maintains) plus the config's `ca_file`. The Mozilla roots compiled
//! into the binary serve only a system with no store at all.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::fsio;

use ureq::tls::{Certificate, PemItem, RootCerts, parse_pem};

/// Bundles of the common distributions, first match wins (Debian/Ubuntu, Fedora/RHEL,
/// openSUSE, Alpine/Arch).
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];
/// A trust file larger than this is not a CA bundle (Debian's is about 200 KiB).
const MAX_BUNDLE_BYTES: u64 = 16 * 1024 * 1024;

pub struct Trust {
    pub roots: RootCerts,
    /// For people: `system store /etc/ssl/certs/ca-certificates.crt (146 certificates)`.
    pub description: String,
}

/// The roots for a client: the system store plus `ca_file`; a `ca_file` that cannot be used
/// (unsafe, unreadable, no certificate in it) is an error, so that nothing is sent trusting
/// less, or other, than the operator asked for.
pub fn load(ca_file: Option<&Path>) -> Result<Trust, String> {
    let extra = match ca_file {
        Some(path) => Some((path, read_ca_file(path)?)),
        None => None,
    };
    Ok(load_with(extra))
}

/// The certificates of `ca_file`, read under the trust rules of [`fsio::read_trusted_file`].
fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let fail = |why: String| format!("ca_file {} cannot be used: {why}", path.display());
    let pem =
        fsio::read_trusted_file(path, MAX_BUNDLE_BYTES).map_err(|err| fail(err.to_string()))?;
    let certs = certificates(&pem);
    if certs.is_empty() {
        return Err(fail("it holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn load_with(ca_file: Option<(&Path, Vec<Certificate<'static>>)>) -> Trust {
    let (mut certs, mut description) = match system_roots() {
        Some((certs, source)) => {
            let text = format!("system store {source} ({} certificates)", certs.len());
            (certs, text)
        }
        None if ca_file.is_none() => {
            return Trust {
                roots: RootCerts::WebPki,
                description: "Mozilla roots built into this binary (no system store found)"
                    .to_string(),
            };
        }
        None => (Vec::new(), "no system store found".to_string()),
    };
    if let Some((path, extra)) = ca_file {
        description.push_str(&format!(
            " + ca_file {} ({} certificates)",
            path.display(),
            extra.len()
        ));
        certs.extend(extra);
    }
    Trust {
        roots: RootCerts::from(certs),
        description,
    }
}

/// The certificates of the system store and where they came from, or `None` without one.
fn system_roots() -> Option<(Vec<Certificate<'static>>, String)> {
    if let Some(file) = env_path("SSL_CERT_FILE") {
        let certs = read_certificates(&file).unwrap_or_default();
        return Some((certs, format!("SSL_CERT_FILE={}", file.display())));
    }
    if let Some(dirs) = std::env::var_os("SSL_CERT_DIR").filter(|v| !v.is_empty()) {
        let certs = std::env::split_paths(&dirs)
            .flat_map(|dir| fs::read_dir(dir).into_iter().flatten())
            .filter_map(Result::ok)
            .filter_map(|entry| read_certificates(&entry.path()).ok())
            .flatten()
            .collect();
        return Some((certs, format!("SSL_CERT_DIR={}", dirs.to_string_lossy())));
    }
    BUNDLES.iter().map(Path::new).find_map(|bundle| {
        let certs = read_certificates(bundle).ok()?;
        Some((certs, bundle.display().to_string()))
    })
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// Every certificate in a PEM file of the system store; other PEM sections (keys) are passed
/// over. Opened without blocking, so that a FIFO never hangs the run.
pub fn read_certificates(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| err.to_string())?;
    let meta = file.metadata().map_err(|err| err.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_BUNDLE_BYTES {
        return Err(format!("larger than {MAX_BUNDLE_BYTES} bytes"));
    }
    let mut pem = Vec::new();
    file.take(MAX_BUNDLE_BYTES)
        .read_to_end(&mut pem)
        .map_err(|err| err.to_string())?;
    Ok(certificates(&pem))
}

fn certificates(pem: &[u8]) -> Vec<Certificate<'static>> {
    parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_certificates_of_a_pem_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        assert!(read_certificates(&path).is_err());
        fs::write(&path, "no pem here").unwrap();
        assert_eq!(read_certificates(&path).unwrap().len(), 0);
        assert!(read_certificates(dir.path()).is_err(), "a directory");
    }
}
