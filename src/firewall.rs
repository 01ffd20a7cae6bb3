//! The kernel's side of the blocklist: loading a script with `nft -f -` (one transaction),
//! reading our table's drop counter, deleting our table, and the host's own addresses. Only
//! our table is ever touched.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::validate::Network;

const NFT: &str = "nft";

fn nft(args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(NFT)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run nft ({err}); install nftables"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|err| format!("cannot feed nft: {err}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|err| format!("nft did not finish: {err}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let last: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(last[last.len().saturating_sub(4)..].join("\n"))
}

/// Loads `script` as one transaction: all of it, or nothing.
pub fn apply(script: &str) -> Result<(), String> {
    nft(&["-f", "-"], Some(script)).map(drop)
}

/// Whether a table of this name is loaded, and whether we made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableState {
    Absent,
    Ours,
    /// Someone else's: never changed, never deleted.
    Foreign,
}

/// Whose the table is, without making nft fetch the elements of its sets.
pub fn table_state(table: &str) -> Result<TableState, String> {
    let sets = nft(&["-j", "-t", "list", "sets", "inet"], None)?;
    match crate::blocklist::sets_made_by_us(&sets, table) {
        Some(true) => return Ok(TableState::Ours),
        Some(false) => return Ok(TableState::Foreign),
        None => {}
    }
    // No set in a table of that name, so listing it is cheap.
    match nft(&["-t", "list", "table", "inet", table], None) {
        Ok(listing) if crate::blocklist::table_comment_is_ours(&listing) => Ok(TableState::Ours),
        Ok(_) => Ok(TableState::Foreign),
        Err(why) if why.contains("No such file") => Ok(TableState::Absent),
        Err(why) => Err(why),
    }
}

/// Deletes our table; one that is not there is fine.
pub fn remove(table: &str) -> Result<bool, String> {
    match nft(&["delete", "table", "inet", table], None) {
        Ok(_) => Ok(true),
        Err(why) if why.contains("No such file") => Ok(false),
        Err(why) => Err(why),
    }
}

/// Packets and bytes the table's rules dropped so far; `None` when the table is not loaded.
pub fn dropped(table: &str) -> Option<(u64, u64)> {
    let json = nft(&["-j", "list", "counter", "inet", table, "dropped"], None).ok()?;
    let value: serde_json::Value = serde_json::from_str(&json).ok()?;
    value["nftables"].as_array()?.iter().find_map(|item| {
        let counter = item.get("counter")?;
        Some((counter["packets"].as_u64()?, counter["bytes"].as_u64()?))
    })
}

/// The host's own addresses, read from the kernel (`ip -o addr`): never blocked.
pub fn own_addresses() -> Result<Vec<Network>, String> {
    let out = Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .map_err(|err| format!("cannot run ip ({err}); install iproute2"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(parse_addresses(&String::from_utf8_lossy(&out.stdout)))
}

/// `2: eth0    inet 203.0.113.5/24 brd …` → 203.0.113.5 (the address, not its network: the
/// neighbours on the link are not the host).
pub fn parse_addresses(text: &str) -> Vec<Network> {
    let mut own = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word == "inet" || word == "inet6" {
                let addr = words.next().unwrap_or_default();
                let addr = addr.split('/').next().unwrap_or_default();
                if let Ok(net) = addr.parse::<Network>() {
                    own.push(net);
                }
            }
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_addresses_are_the_hosts_not_its_networks() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\n\
                    2: eth0    inet 203.0.113.5/24 brd 203.0.113.255 scope global eth0\n\
                    2: eth0    inet6 2001:db8::5/64 scope global\n";
        let own: Vec<String> = parse_addresses(text)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(own, ["127.0.0.1", "203.0.113.5", "2001:db8::5"]);
    }
}
