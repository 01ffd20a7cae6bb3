//! Downloading the blocklist feed: `metadata.json` with a conditional GET (an unchanged feed
//! is not downloaded again), then each file the config selects, each verified against the
//! SHA-256 that `metadata.json` gives for it. Redirects are never followed; bodies are bounded.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ureq::Agent;

use crate::config::Blocklist;

/// Largest feed file read: the whole list is about 400 KiB today.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// What `metadata.json` says of the feed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub generated_at: Option<String>,
    #[serde(default)]
    pub checksums: BTreeMap<String, String>,
}

/// The validators of the last `metadata.json`, for the next conditional GET.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// What a download came to.
pub enum Fetched {
    /// 304: the saved copy is current.
    Unchanged,
    /// The files (relative path → text), verified, with the metadata and its validators.
    New {
        metadata: Metadata,
        validators: Validators,
        files: BTreeMap<String, String>,
    },
}

/// Why a download did not give a usable feed.
pub enum FeedError {
    /// The server could not be reached or did not answer as a feed does (exit 9).
    Download(String),
    /// What arrived is not what the metadata promises (exit 8).
    Refused(String),
}

/// The files the config selects: the CSV when `min_confidence` asks for confidences, else the
/// whole list, else the thematic lists.
pub fn files_for(config: &Blocklist) -> Vec<String> {
    if config.min_confidence.is_some() {
        return vec!["blacklist-all.csv".into()];
    }
    if config.lists.iter().any(|l| l == "all") {
        return vec!["blacklist-all.txt".into()];
    }
    config
        .lists
        .iter()
        .map(|l| format!("lists/{l}.txt"))
        .collect()
}

/// The same agent as the API's, trusting what it trusts (the system store and `ca_file`); a
/// `ca_file` that cannot be used stops the download instead of trusting less than asked.
fn agent(
    config: &Blocklist,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<Agent, FeedError> {
    let https = config.source.starts_with("https://");
    let trust = https
        .then(|| crate::trust::load(ca_file))
        .transpose()
        .map_err(FeedError::Download)?;
    Ok(crate::api::agent_builder(timeout, https, trust)
        .build()
        .into())
}

/// Downloads the feed, or learns that it is unchanged since `validators`.
pub fn fetch(
    config: &Blocklist,
    ca_file: Option<&Path>,
    validators: &Validators,
    timeout: Duration,
) -> Result<Fetched, FeedError> {
    let agent = agent(config, ca_file, timeout)?;
    let url = format!("{}/metadata.json", config.source);
    let mut request = agent.get(&url);
    if let Some(etag) = &validators.etag {
        request = request.header("If-None-Match", etag);
    }
    if let Some(date) = &validators.last_modified {
        request = request.header("If-Modified-Since", date);
    }
    let mut response = request
        .call()
        .map_err(|err| FeedError::Download(format!("{url}: {err}")))?;
    match response.status().as_u16() {
        304 => return Ok(Fetched::Unchanged),
        200 => {}
        status => return Err(FeedError::Download(format!("{url}: HTTP {status}"))),
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let new_validators = Validators {
        etag: header("etag"),
        last_modified: header("last-modified"),
    };
    let text = read_body(&mut response, &url)?;
    let metadata: Metadata = serde_json::from_str(&text)
        .map_err(|err| FeedError::Refused(format!("{url} is not the feed's metadata: {err}")))?;
    let mut files = BTreeMap::new();
    for file in files_for(config) {
        let expected = metadata.checksums.get(&file).ok_or_else(|| {
            FeedError::Refused(format!("metadata.json gives no checksum for {file}"))
        })?;
        let url = format!("{}/{file}", config.source);
        let mut response = agent
            .get(&url)
            .call()
            .map_err(|err| FeedError::Download(format!("{url}: {err}")))?;
        if response.status().as_u16() != 200 {
            return Err(FeedError::Download(format!(
                "{url}: HTTP {}",
                response.status().as_u16()
            )));
        }
        let text = read_body(&mut response, &url)?;
        let actual = hex(&Sha256::digest(text.as_bytes()));
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            return Err(FeedError::Refused(format!(
                "{file} does not match its checksum in metadata.json (got {actual}, expected {})",
                expected.trim()
            )));
        }
        files.insert(file, text);
    }
    Ok(Fetched::New {
        metadata,
        validators: new_validators,
        files,
    })
}

fn read_body(
    response: &mut ureq::http::Response<ureq::Body>,
    url: &str,
) -> Result<String, FeedError> {
    response
        .body_mut()
        .with_config()
        .limit(MAX_FILE_BYTES)
        .read_to_string()
        .map_err(|err| FeedError::Download(format!("{url}: {err}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_lowercase_hex_sha256() {
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
