//! The community blocklist, decided as pure functions: reading the feed's files, what is
//! never blocked (and why), whether a new list may replace the one in force, and the one nft
//! transaction that loads it. The I/O around them is [`crate::firewall`] (nft, the host's
//! addresses) and [`crate::feed`] (the download).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::validate::{Network, non_global_reason};

/// Words nft's scanner takes as keywords anywhere in a script (nftables' `scanner.l`, rules
/// without a start condition, up to 1.1): a table named like one of them makes every script
/// fail to parse, and nft 1.0 accepts no quoted table name.
const NFT_KEYWORDS: &str = "\
    accept add ah all and arp auto-merge bridge cgroup chain comment comp constant continue \
    counter cpu create ct day dccp define delete describe destroy device devices dnat drop \
    dst dup dynamic ecn element elements eq esp ether exists expires export exthdr fib \
    flags flow flowtable flush frag fwd gc-interval ge geneve get goto gre gretap gt handle \
    hbh hook hour ibriport ibrname icmp icmpv6 igmp iif iifgroup iifname iiftype import \
    include index inet insert interval ip ip6 ipsec jhash jump last le limit list log \
    lshift lt map mark masquerade meta meter mh missing monitor ne netdev nftrace not \
    notrack numgen obriport obrname offload oif oifgroup oifname oiftype or osf pkttype \
    policy position priority queue quota random redefine redirect reject rename replace \
    reset return rshift rt rt0 rt2 rtclassid rule ruleset sctp secmark set size skgid skuid \
    snat socket srh symhash synproxy table tcp th time timeout tproxy tunnel type typeof \
    udp udplite undefine update vlan vmap vni vxlan xor xt";

/// The comment our table carries, so that no command ever changes or deletes a table of the
/// same name that someone else made.
pub const OWNER_MARK: &str = "reportedip-report blocklist";

/// Who made the table named `table`, judged from `nft -j -t list sets inet` (which, unlike
/// listing the table, its counter or even all tables, does not make nft 1.0 fetch every
/// element: 7 ms instead of 0.5 s at 100,000 entries). `None` when no set lives in a table of
/// that name; otherwise whether one of them carries our comment.
pub fn sets_made_by_us(json: &str, table: &str) -> Option<bool> {
    let listing: serde_json::Value = serde_json::from_str(json).ok()?;
    let sets: Vec<&serde_json::Value> = listing["nftables"]
        .as_array()?
        .iter()
        .filter_map(|item| item.get("set"))
        .filter(|set| set["family"] == "inet" && set["table"] == table)
        .collect();
    if sets.is_empty() {
        return None;
    }
    Some(sets.iter().any(|set| set["comment"] == OWNER_MARK))
}

/// Whether `nft -t list table inet NAME` shows our comment as the table's own: its first line
/// inside the table, before any counter, set or chain.
pub fn table_comment_is_ours(listing: &str) -> bool {
    let marker = format!("comment \"{OWNER_MARK}\"");
    listing
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with("table inet "))
        .nth(1)
        .is_some_and(|line| line == marker)
}

/// Why `name` cannot name our nft table, if it cannot: nft reads it as a bare word, so it must
/// start with a letter, hold only letters, digits, `-` and `_`, fit nft's 256-byte limit and not
/// be one of nft's keywords.
pub fn table_name_problem(name: &str) -> Option<String> {
    let well_formed = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() < 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !well_formed {
        return Some("must start with a letter, then letters, digits, - or _".into());
    }
    let keyword = NFT_KEYWORDS
        .split_whitespace()
        .any(|keyword| keyword == name);
    keyword.then(|| {
        format!("\"{name}\" is an nft keyword; choose another name, such as \"reportedip\"")
    })
}

/// The feed's thematic lists (`lists/<name>.txt`).
pub const THEMATIC: &[&str] = &[
    "spam",
    "brute-force",
    "cms-login",
    "web-attacks",
    "malware",
    "ddos",
    "fraud",
    "infrastructure",
    "apt",
];
/// Shortest prefixes ever blocked: a "0.0.0.0/0" line must never lock the host out.
const MIN_PREFIX_V4: u8 = 16;
const MIN_PREFIX_V6: u8 = 32;
/// More invalid lines than this share refuses the file as a whole.
const MAX_INVALID_SHARE: f64 = 0.01;

/// The feed's files as parsed: the networks, and how many lines were not addresses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub nets: Vec<Network>,
    pub invalid: u64,
    pub lines: u64,
}

impl Parsed {
    /// Whether the file as a whole is fit to use: in the feed's format, and no more than 1%
    /// of its lines invalid.
    pub fn refusal(&self, file: &str) -> Option<String> {
        if self.lines > 0 && self.invalid as f64 / self.lines as f64 > MAX_INVALID_SHARE {
            return Some(format!(
                "{file}: {} of {} lines are not addresses",
                self.invalid, self.lines
            ));
        }
        None
    }
}

/// A `.txt` list: `#` comments and blank lines, then one address or prefix a line.
pub fn parse_list(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        parsed.lines += 1;
        match line.parse::<Network>() {
            Ok(net) => parsed.nets.push(net),
            Err(_) => parsed.invalid += 1,
        }
    }
    parsed
}

/// `blacklist-all.csv` (`ip,confidence,categories,last_reported`), keeping the addresses at
/// or above `min_confidence`. A file without that header is not the feed's.
pub fn parse_csv(text: &str, min_confidence: u8) -> Result<Parsed, String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().trim();
    if !header.starts_with("ip,confidence") {
        return Err("blacklist-all.csv does not start with ip,confidence,…".into());
    }
    let mut parsed = Parsed::default();
    for line in lines.map(str::trim).filter(|l| !l.is_empty()) {
        parsed.lines += 1;
        let mut fields = line.split(',');
        let ip = fields.next().unwrap_or_default().trim_matches('"');
        let confidence = fields
            .next()
            .and_then(|c| c.trim_matches('"').parse::<u8>().ok());
        match (ip.parse::<Network>(), confidence) {
            (Ok(net), Some(c)) if c >= min_confidence => parsed.nets.push(net),
            (Ok(_), Some(_)) => {}
            _ => parsed.invalid += 1,
        }
    }
    Ok(parsed)
}

/// Why an address is never blocked, whatever the feed says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LeftOut {
    /// Not globally routable (the rules of reports).
    NonGlobal,
    /// A prefix shorter than /16 (IPv4) or /32 (IPv6).
    TooWide,
    /// One of the host's own addresses.
    Own,
    /// In the config's `[blocklist] allow`.
    Allow,
    /// In the report `ignore` networks.
    Ignore,
    /// In a fail2ban jail's `ignoreip`.
    Fail2banIgnore,
    /// IPv6, with `ipv6 = false`.
    Ipv6Off,
}

impl LeftOut {
    pub const ALL: [LeftOut; 7] = [
        LeftOut::NonGlobal,
        LeftOut::TooWide,
        LeftOut::Own,
        LeftOut::Allow,
        LeftOut::Ignore,
        LeftOut::Fail2banIgnore,
        LeftOut::Ipv6Off,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LeftOut::NonGlobal => "non_global",
            LeftOut::TooWide => "too_wide",
            LeftOut::Own => "own",
            LeftOut::Allow => "allow",
            LeftOut::Ignore => "ignore",
            LeftOut::Fail2banIgnore => "fail2ban_ignoreip",
            LeftOut::Ipv6Off => "ipv6_off",
        }
    }
}

/// What must never be blocked.
#[derive(Debug, Clone, Default)]
pub struct Exempt {
    pub own: Vec<Network>,
    pub allow: Vec<Network>,
    pub ignore: Vec<Network>,
    pub fail2ban: Vec<Network>,
    pub ipv6: bool,
}

/// The list to load, and what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filtered {
    pub v4: Vec<Network>,
    pub v6: Vec<Network>,
    pub left_out: BTreeMap<&'static str, u64>,
}

impl Filtered {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why `net` must not be blocked, if so.
pub fn left_out(net: &Network, exempt: &Exempt) -> Option<LeftOut> {
    let v4 = net.addr().is_ipv4();
    if !v4 && !exempt.ipv6 {
        return Some(LeftOut::Ipv6Off);
    }
    if net.prefix() < if v4 { MIN_PREFIX_V4 } else { MIN_PREFIX_V6 } {
        return Some(LeftOut::TooWide);
    }
    if non_global_reason(net.addr()).is_some() {
        return Some(LeftOut::NonGlobal);
    }
    let hit = |list: &[Network]| list.iter().any(|other| other.overlaps(net));
    [
        (&exempt.own, LeftOut::Own),
        (&exempt.allow, LeftOut::Allow),
        (&exempt.ignore, LeftOut::Ignore),
        (&exempt.fail2ban, LeftOut::Fail2banIgnore),
    ]
    .into_iter()
    .find_map(|(list, why)| hit(list).then_some(why))
}

/// The networks to block, each once, sorted; what was left out counted by reason.
pub fn filter(nets: &[Network], exempt: &Exempt) -> Filtered {
    let mut filtered = Filtered::default();
    let mut seen = std::collections::HashSet::with_capacity(nets.len());
    for net in nets {
        if let Some(why) = left_out(net, exempt) {
            *filtered.left_out.entry(why.name()).or_default() += 1;
            continue;
        }
        if !seen.insert(net) {
            continue;
        }
        if net.addr().is_ipv4() {
            filtered.v4.push(net.clone());
        } else {
            filtered.v6.push(net.clone());
        }
    }
    filtered
}

/// Limits a new list must keep to replace the one in force.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: u64,
    pub max_shrink_percent: u8,
}

/// Whether a list of `new` entries may replace one of `applied` (`None`: nothing loaded).
/// `same_selection`: the lists and min_confidence are those of the applied one (otherwise
/// a smaller list is a choice, not a shrink); `force` overrides the shrink check only.
pub fn refusal(
    new: u64,
    applied: Option<u64>,
    same_selection: bool,
    limits: Limits,
    force: bool,
) -> Option<String> {
    if new == 0 {
        return Some("the new list is empty".into());
    }
    if new > limits.max_entries {
        return Some(format!(
            "the new list has {new} entries, more than max_entries {}",
            limits.max_entries
        ));
    }
    let applied = applied.filter(|_| same_selection && !force)?;
    let floor = applied * u64::from(100 - limits.max_shrink_percent.min(100)) / 100;
    (new < floor).then(|| {
        format!(
            "the new list has {new} entries against {applied} in force, a shrink of more than \
             max_shrink_percent {}% (run with --force if that is right)",
            limits.max_shrink_percent
        )
    })
}

/// Where the table hooks.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub hooks: Vec<String>,
}

/// The one nft transaction that puts `filtered` in force, touching our table only. The table,
/// its sets, chains and the named drop counter are declared (which changes nothing that
/// exists); then the sets are flushed and filled and the chains' rules written again, all in
/// the same transaction, so no packet meets an empty or half-filled set and the counter
/// keeps counting. Single addresses go to hash sets; prefixes to interval sets, which are
/// always replaced whole.
pub fn render(table: &Table, filtered: &Filtered, allow: &[Network]) -> String {
    let t = &table.name;
    let mut out =
        String::from("# reportedip-report blocklist: ReportedIP community data, CC BY 4.0\n");
    let _ = writeln!(
        out,
        "table inet {t} {{\n\tcomment \"{OWNER_MARK}\"\n\tcounter dropped {{\n\t}}"
    );
    for (name, kind, interval) in SETS {
        let flags = if interval {
            "\n\t\tflags interval;\n\t\tauto-merge;"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "\tset {name} {{\n\t\ttype {kind};{flags}\n\t\tcomment \"{OWNER_MARK}\";\n\t}}"
        );
    }
    for hook in HOOKS {
        let _ = writeln!(
            out,
            "\tchain {hook} {{\n\t\ttype filter hook {hook} priority -10; policy accept;\n\t}}"
        );
    }
    out.push_str("}\n");
    for hook in HOOKS {
        let _ = writeln!(out, "flush chain inet {t} {hook}");
    }
    for (name, _, _) in SETS {
        let _ = writeln!(out, "flush set inet {t} {name}");
    }
    let is_v4 = |n: &&Network| n.addr().is_ipv4();
    let allow4: Vec<&Network> = allow.iter().filter(is_v4).collect();
    let allow6: Vec<&Network> = allow.iter().filter(|n| !is_v4(n)).collect();
    fn hosts(list: &[Network], host: bool) -> Vec<&Network> {
        list.iter().filter(|n| n.is_host() == host).collect()
    }
    for (name, nets) in [
        ("allow4", allow4),
        ("allow6", allow6),
        ("block4", hosts(&filtered.v4, true)),
        ("block4net", hosts(&filtered.v4, false)),
        ("block6", hosts(&filtered.v6, true)),
        ("block6net", hosts(&filtered.v6, false)),
    ] {
        add_elements(&mut out, t, name, &nets);
    }
    for hook in table.hooks.iter().filter(|h| HOOKS.contains(&h.as_str())) {
        let rules = [
            "ct state established,related accept",
            "ip saddr @allow4 accept",
            "ip6 saddr @allow6 accept",
            "ip saddr @block4 counter name \"dropped\" drop",
            "ip saddr @block4net counter name \"dropped\" drop",
            "ip6 saddr @block6 counter name \"dropped\" drop",
            "ip6 saddr @block6net counter name \"dropped\" drop",
        ];
        for rule in rules {
            let _ = writeln!(out, "add rule inet {t} {hook} {rule}");
        }
    }
    out
}

/// Our sets: name, type, and whether it holds prefixes (interval).
const SETS: [(&str, &str, bool); 6] = [
    ("allow4", "ipv4_addr", true),
    ("allow6", "ipv6_addr", true),
    ("block4", "ipv4_addr", false),
    ("block4net", "ipv4_addr", true),
    ("block6", "ipv6_addr", false),
    ("block6net", "ipv6_addr", true),
];
/// Both chains always exist (an unused one is empty and accepts), so that a change of
/// `hooks` never leaves an old chain dropping.
const HOOKS: [&str; 2] = ["input", "forward"];

fn add_elements(out: &mut String, table: &str, set: &str, nets: &[&Network]) {
    if nets.is_empty() {
        return;
    }
    let _ = write!(out, "add element inet {table} {set} {{");
    for (index, net) in nets.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(if index % 8 == 0 { "\n\t" } else { " " });
        let _ = write!(out, "{net}");
    }
    out.push_str("\n}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Network> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn only_a_table_whose_sets_carry_our_comment_is_ours() {
        let listing = |sets: &str| {
            format!(r#"{{"nftables": [{{"metainfo": {{"version": "1.0.6"}}}}{sets}]}}"#)
        };
        let ours = format!(
            r#", {{"set": {{"family": "inet", "name": "allow4", "table": "t", "type": "ipv4_addr", "comment": "{OWNER_MARK}"}}}}"#
        );
        let theirs = r#", {"set": {"family": "inet", "name": "trusted", "table": "t", "type": "ipv4_addr"}}"#;
        let elsewhere = format!(
            r#", {{"set": {{"family": "inet", "name": "allow4", "table": "other", "type": "ipv4_addr", "comment": "{OWNER_MARK}"}}}}"#
        );
        assert_eq!(sets_made_by_us(&listing(&ours), "t"), Some(true));
        assert_eq!(sets_made_by_us(&listing(theirs), "t"), Some(false));
        // Our comment in another table says nothing of this one.
        assert_eq!(sets_made_by_us(&listing(&elsewhere), "t"), None);
        assert_eq!(sets_made_by_us(&listing(""), "t"), None);
        // A table without sets is judged by its own comment.
        assert!(table_comment_is_ours(&format!(
            "table inet t {{\n\tcomment \"{OWNER_MARK}\"\n}}\n"
        )));
        for listing in [
            "table inet t {\n}\n".to_string(),
            "table inet t {\n\tcomment \"theirs\"\n}\n".to_string(),
            format!("table inet t {{\n\tchain c {{\n\t\tcomment \"{OWNER_MARK}\"\n\t}}\n}}\n"),
            String::new(),
        ] {
            assert!(!table_comment_is_ours(&listing), "{listing}");
        }
        let script = render(
            &Table {
                name: "t".into(),
                hooks: vec!["input".into()],
            },
            &filter(&nets(&["45.155.205.1"]), &Exempt::default()),
            &[],
        );
        assert_eq!(
            script
                .matches(&format!("comment \"{OWNER_MARK}\";"))
                .count(),
            SETS.len(),
            "{script}"
        );
    }

    #[test]
    fn a_table_name_must_be_a_bare_word_that_nft_does_not_reserve() {
        // A keyword inside a name, or a name inside a keyword ("ps" in "ipsec"), is fine.
        for good in [
            "reportedip",
            "filter",
            "input",
            "blocklist_2",
            "ripe-drop",
            "rtx",
            "ps",
        ] {
            assert_eq!(table_name_problem(good), None, "{good}");
        }
        for keyword in [
            "rt", "ct", "ip", "inet", "table", "counter", "drop", "meta", "log",
        ] {
            let why = table_name_problem(keyword).expect(keyword);
            assert!(why.contains("nft keyword"), "{keyword}: {why}");
        }
        let long = "a".repeat(256);
        for malformed in [
            "",
            "1table",
            "_x",
            "-x",
            "my table",
            "t\u{202e}",
            "x;y",
            &long,
        ] {
            assert!(table_name_problem(malformed).is_some(), "{malformed:?}");
        }
    }

    #[test]
    fn the_feed_files_parse_and_garbage_is_counted() {
        let parsed = parse_list("# ReportedIP\n#\n\n1.94.245.79\n2001:db8::1\n45.0.0.0/24\nnope\n");
        assert_eq!(parsed.nets.len(), 3);
        assert_eq!((parsed.invalid, parsed.lines), (1, 4));
        assert!(parsed.refusal("x").is_some(), "25% invalid");
        let csv = "ip,confidence,categories,last_reported\n\"45.1.1.1\",90,\"18;22\",\"2026-09-12 01:02:03\"\n45.1.1.2,75,\"18\",\"x\"\n";
        assert_eq!(parse_csv(csv, 80).unwrap().nets, nets(&["45.1.1.1"]));
        assert_eq!(parse_csv(csv, 0).unwrap().nets.len(), 2);
        assert!(parse_csv("<html>", 0).is_err());
    }

    #[test]
    fn what_is_never_blocked() {
        let exempt = Exempt {
            own: nets(&["45.9.9.9"]),
            allow: nets(&["46.0.0.0/24"]),
            ignore: nets(&["47.1.1.1"]),
            fail2ban: nets(&["48.0.0.0/8"]),
            ipv6: true,
        };
        let cases = [
            ("0.0.0.0/0", Some(LeftOut::TooWide)),
            ("::/0", Some(LeftOut::TooWide)),
            ("45.0.0.0/15", Some(LeftOut::TooWide)),
            ("10.1.2.3", Some(LeftOut::NonGlobal)),
            ("192.168.0.0/16", Some(LeftOut::NonGlobal)),
            ("fd00::1", Some(LeftOut::NonGlobal)),
            ("45.9.9.9", Some(LeftOut::Own)),
            ("45.9.0.0/16", Some(LeftOut::Own)),
            ("46.0.0.7", Some(LeftOut::Allow)),
            ("47.1.1.1", Some(LeftOut::Ignore)),
            ("48.1.2.3", Some(LeftOut::Fail2banIgnore)),
            ("45.155.205.233", None),
            ("2a01:4f8::1", None),
        ];
        for (net, why) in cases {
            assert_eq!(left_out(&net.parse().unwrap(), &exempt), why, "{net}");
        }
        let no_v6 = Exempt {
            ipv6: false,
            ..exempt
        };
        assert_eq!(
            left_out(&"2a01:4f8::1".parse().unwrap(), &no_v6),
            Some(LeftOut::Ipv6Off)
        );
        let filtered = filter(
            &nets(&["45.1.1.1", "45.1.1.1", "10.0.0.1", "2a01::1"]),
            &no_v6,
        );
        assert_eq!(filtered.v4, nets(&["45.1.1.1"]));
        assert_eq!(filtered.left_out["non_global"], 1);
        assert_eq!(filtered.left_out["ipv6_off"], 1);
    }

    #[test]
    fn the_files_a_config_selects() {
        use crate::config::Blocklist;
        let config = |lists: &[&str], min_confidence| Blocklist {
            source: "https://x".into(),
            lists: lists.iter().map(|l| l.to_string()).collect(),
            min_confidence,
            ipv6: true,
            table: "reportedip".into(),
            hooks: vec!["input".into()],
            allow: Vec::new(),
            max_age_days: 7,
            max_shrink_percent: 50,
            max_entries: 500_000,
        };
        assert_eq!(
            crate::feed::files_for(&config(&["all"], None)),
            ["blacklist-all.txt"]
        );
        assert_eq!(
            crate::feed::files_for(&config(&["spam", "apt"], None)),
            ["lists/spam.txt", "lists/apt.txt"]
        );
        assert_eq!(
            crate::feed::files_for(&config(&["all"], Some(90))),
            ["blacklist-all.csv"]
        );
    }

    #[test]
    fn the_refusal_table() {
        let limits = Limits {
            max_entries: 1000,
            max_shrink_percent: 50,
        };
        let cases = [
            (0, None, true, false, true),
            (1001, None, true, false, true),
            (10, None, true, false, false),
            (400, Some(1000), true, false, true),
            (500, Some(1000), true, false, false),
            (400, Some(1000), true, true, false),
            (400, Some(1000), false, false, false),
            (0, Some(1000), true, true, true),
        ];
        for (new, applied, same, force, refused) in cases {
            assert_eq!(
                refusal(new, applied, same, limits, force).is_some(),
                refused,
                "{new} against {applied:?}, same {same}, force {force}"
            );
        }
    }

    #[test]
    fn one_transaction_for_our_table_only() {
        let table = Table {
            name: "reportedip".into(),
            hooks: vec!["input".into()],
        };
        let filtered = filter(
            &nets(&["45.1.1.1", "2a01:4f8::1"]),
            &Exempt {
                ipv6: true,
                ..Exempt::default()
            },
        );
        let script = render(&table, &filtered, &nets(&["46.0.0.0/24"]));
        assert!(script.contains("add element inet reportedip block4 {\n\t45.1.1.1\n}"));
        assert!(script.contains("add element inet reportedip allow4 {\n\t46.0.0.0/24\n}"));
        assert!(script.contains("type filter hook input priority -10; policy accept;"));
        assert!(
            script.contains("add rule inet reportedip input ct state established,related accept")
        );
        assert!(
            !script.contains("add rule inet reportedip forward"),
            "forward not asked for"
        );
        assert!(!script.contains("flush ruleset") && !script.contains("delete"));
        assert_eq!(script.matches("table inet").count(), 1, "{script}");
    }
}
