//! Input validation: the IP address to report, ignore-list networks, and the comment text.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use thiserror::Error;

/// Longest comment sent, in bytes.
pub const COMMENT_MAX_BYTES: usize = 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IpError {
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    Malformed(String),
}

/// Parses an address as fail2ban hands it over: trimmed, IPv4-mapped IPv6 turned into IPv4,
/// so the API sees one canonical text form per host.
pub fn parse_ip(text: &str) -> Result<IpAddr, IpError> {
    let trimmed = text.trim();
    let ip = IpAddr::from_str(trimmed).map_err(|_| IpError::Malformed(shorten(trimmed)))?;
    Ok(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    })
}

fn shorten(text: &str) -> String {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Why an address is not globally routable (and so never worth reporting), if it is not.
pub fn non_global_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

const V4_RANGES: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "a \"this network\" address"),
    ([10, 0, 0, 0], 8, "a private address"),
    ([100, 64, 0, 0], 10, "a carrier-grade NAT address"),
    ([127, 0, 0, 0], 8, "a loopback address"),
    ([169, 254, 0, 0], 16, "a link-local address"),
    ([172, 16, 0, 0], 12, "a private address"),
    ([192, 0, 0, 0], 24, "an IETF protocol assignment"),
    ([192, 0, 2, 0], 24, "a documentation address"),
    ([192, 88, 99, 0], 24, "a 6to4 relay anycast address"),
    ([192, 168, 0, 0], 16, "a private address"),
    ([198, 18, 0, 0], 15, "a benchmarking address"),
    ([198, 51, 100, 0], 24, "a documentation address"),
    ([203, 0, 113, 0], 24, "a documentation address"),
    ([224, 0, 0, 0], 4, "a multicast address"),
    ([255, 255, 255, 255], 32, "the broadcast address"),
    ([240, 0, 0, 0], 4, "a reserved address"),
];

const V6_RANGES: &[(u128, u8, &str)] = &[
    (0, 128, "the unspecified address"),
    (1, 128, "the loopback address"),
    (0, 96, "an IPv4-compatible (deprecated) address"),
    (0xffff << 48, 96, "an IPv4-translated address"),
    (0x0064_ff9b_0001 << 80, 48, "a local-use NAT64 address"),
    (0x0100 << 112, 64, "a discard-only address"),
    (0x2001_0db8 << 96, 32, "a documentation address"),
    (0x2001 << 112, 23, "an IETF protocol assignment"),
    (0x3fff << 112, 20, "a documentation address"),
    (0x5f00 << 112, 16, "a segment-routing address"),
    (0xfc00 << 112, 7, "a unique local address"),
    (0xfe80 << 112, 10, "a link-local address"),
    (0xfec0 << 112, 10, "a site-local (deprecated) address"),
    (0xff00 << 112, 8, "a multicast address"),
];

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_RANGES
        .iter()
        .find(|(net, len, _)| prefix_match32(bits, u32::from_be_bytes(*net), *len))
        .map(|(_, _, why)| *why)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    // 6to4 (2002::/16) and NAT64 (64:ff9b::/96) carry an IPv4 address: what it is decides.
    let embedded =
        |shift: u32| Ipv4Addr::from(u32::try_from((bits >> shift) & 0xffff_ffff).unwrap_or(0));
    if prefix_match128(bits, 0x2002 << 112, 16) && v4_reason(embedded(80)).is_some() {
        return Some("a 6to4 address of a non-global IPv4 address");
    }
    if prefix_match128(bits, 0x0064_ff9b << 96, 96) && v4_reason(embedded(0)).is_some() {
        return Some("a NAT64 address of a non-global IPv4 address");
    }
    V6_RANGES
        .iter()
        .find(|(net, len, _)| prefix_match128(bits, *net, *len))
        .map(|(_, _, why)| *why)
}

fn prefix_match32(addr: u32, net: u32, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    addr & mask == net & mask
}

fn prefix_match128(addr: u128, net: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    addr & mask == net & mask
}

/// A network from the `ignore` list: `198.51.100.0/24`, `2001:db8:1::/48` or a bare address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0:?} is not an address or a network like 198.51.100.0/24 or 2001:db8::/32")]
pub struct NetworkError(String);

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || NetworkError(text.to_string());
        let (addr_text, prefix_text) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr = parse_ip(addr_text).map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        // The network's own address: host bits cleared, as nft wants it.
        let addr = match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        Ok(Self { addr, prefix })
    }
}

impl Network {
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether it is one address rather than a range.
    pub fn is_host(&self) -> bool {
        self.prefix == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// Whether the two share any address (one contains the other's first address).
    pub fn overlaps(&self, other: &Network) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_match32(u32::from(ip), u32::from(net), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_match128(u128::from(ip), u128::from(net), self.prefix)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.is_host() {
            true => write!(f, "{}", self.addr),
            false => write!(f, "{}/{}", self.addr, self.prefix),
        }
    }
}

/// Whether `c` could forge or disguise a log line: control characters, the Unicode line
/// and paragraph separators, and the bidirectional overrides and isolates.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
        )
}

/// Makes a comment safe to send and to log: characters that could forge log lines become
/// spaces, and the text is cut to [`COMMENT_MAX_BYTES`] on a character boundary.
pub fn sanitize_comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(COMMENT_MAX_BYTES));
    for c in text.chars() {
        let c = if is_unsafe_char(c) { ' ' } else { c };
        if out.len() + c.len_utf8() > COMMENT_MAX_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_marks_and_escapes_never_pass() {
        for c in [
            '\u{1b}', '\r', '\n', '\u{202E}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{2066}',
        ] {
            assert!(is_unsafe_char(c), "{c:?}");
        }
        assert_eq!(sanitize_comment("a\u{200F}b\u{1b}[2Jc"), "a b [2Jc");
    }

    fn reason(text: &str) -> Option<&'static str> {
        non_global_reason(parse_ip(text).unwrap())
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(
            parse_ip(" 45.155.205.233\n").unwrap().to_string(),
            "45.155.205.233"
        );
        assert_eq!(
            parse_ip("::ffff:45.155.205.233").unwrap().to_string(),
            "45.155.205.233"
        );
        assert_eq!(
            parse_ip("2A01:04F8:0000::0001").unwrap().to_string(),
            "2a01:4f8::1"
        );
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "fe80::1%eth0",
            "-h",
            "1.2.3.4/32",
        ] {
            assert!(parse_ip(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn global_addresses_pass() {
        for good in [
            "45.155.205.233",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2a01:4f8::1",
            "2606:4700::1111",
        ] {
            assert_eq!(reason(good), None, "{good}");
        }
    }

    #[test]
    fn non_global_addresses_are_named() {
        let cases = [
            ("10.1.2.3", "a private address"),
            ("172.31.255.255", "a private address"),
            ("192.168.1.1", "a private address"),
            ("127.0.0.1", "a loopback address"),
            ("169.254.1.1", "a link-local address"),
            ("100.64.0.1", "a carrier-grade NAT address"),
            ("224.0.0.1", "a multicast address"),
            ("0.0.0.0", "a \"this network\" address"),
            ("255.255.255.255", "the broadcast address"),
            ("240.0.0.1", "a reserved address"),
            ("198.19.0.1", "a benchmarking address"),
            ("192.0.2.1", "a documentation address"),
            ("198.51.100.7", "a documentation address"),
            ("203.0.113.45", "a documentation address"),
            ("::", "the unspecified address"),
            ("::1", "the loopback address"),
            ("fe80::1", "a link-local address"),
            ("fd00::1", "a unique local address"),
            ("ff02::1", "a multicast address"),
            ("2001:db8::1", "a documentation address"),
            ("3fff::1", "a documentation address"),
            ("::ffff:10.0.0.1", "a private address"),
            (
                "2002:0a00:0001::1",
                "a 6to4 address of a non-global IPv4 address",
            ),
            (
                "2002:c0a8:0101::1",
                "a 6to4 address of a non-global IPv4 address",
            ),
            ("::ffff:0:8.8.8.8", "an IPv4-translated address"),
            (
                "64:ff9b::10.0.0.1",
                "a NAT64 address of a non-global IPv4 address",
            ),
        ];
        for (ip, why) in cases {
            assert_eq!(reason(ip), Some(why), "{ip}");
        }
    }

    #[test]
    fn wrappers_of_global_addresses_stay_reportable() {
        for ip in [
            "2002:2d9b:cde9::1",
            "64:ff9b::45.155.205.233",
            "2a01:4f8::1",
            "45.155.205.233",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn separators_and_bidi_controls_are_unsafe_like_control_characters() {
        assert_eq!(
            sanitize_comment("a\u{2028}b\u{2029}c\u{202E}d\u{2066}e\u{2069}f"),
            "a b c d e f"
        );
        assert!(!is_unsafe_char('é'));
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let net: Network = "45.155.205.0/24".parse().unwrap();
        assert!(net.contains(parse_ip("45.155.205.233").unwrap()));
        assert!(!net.contains(parse_ip("45.155.206.1").unwrap()));
        assert!(!net.contains(parse_ip("2a01::1").unwrap()));
        let v6: Network = "2a01:4f8::/32".parse().unwrap();
        assert!(v6.contains(parse_ip("2a01:4f8:1::5").unwrap()));
        assert!(!v6.contains(parse_ip("2a01:4f9::5").unwrap()));
        let single: Network = "8.8.8.8".parse().unwrap();
        assert!(single.contains(parse_ip("8.8.8.8").unwrap()));
        assert!(!single.contains(parse_ip("8.8.8.9").unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(parse_ip("1.1.1.1").unwrap()));
        for bad in ["1.2.3.0/33", "2a01::/129", "nope/8", "1.2.3.0/x"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }

    #[test]
    fn comments_lose_control_characters_and_excess_bytes() {
        assert_eq!(sanitize_comment("a\nb\tc\u{1b}[31m"), "a b c [31m");
        let long = "é".repeat(600);
        let cut = sanitize_comment(&long);
        assert_eq!(cut.len(), 1024);
        assert!(cut.chars().all(|c| c == 'é'));
        let odd = format!("x{}", "é".repeat(600));
        assert_eq!(sanitize_comment(&odd).len(), 1023);
    }
}
