//! One simulated day on the free plan (50 reports a day), replayed deterministically through
//! the real report pipeline and sender with a simulated clock, against an in-process fake API
//! on 127.0.0.1 that enforces the quota with the real headers and 429.
//!
//!     cargo bench --bench quota_day
//!
//! Workload (fixed seed): 300 bans in the day. 40% of them (120) come from 20 persistent IPs,
//! each banned 6 times 15 minutes apart (banned again as soon as fail2ban's default
//! 10-minute ban ends); the other 180 come from 180 distinct IPs at random times. The API is
//! down (503) from 01:00 to 03:00, before the quota runs out. A timer runs `flush` every
//! 10 minutes. Compared: the curl line (every ban posted at once, lost on failure), the old
//! defaults (cooldown 15 minutes) and the new ones (24 hours, keyed on IP and categories),
//! both on the current code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/support/fake_api.rs"]
mod fake_api;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fake_api::{FakeApi, Reply, Request, documented_api};
use reportedip_report::api::Client;
use reportedip_report::config;
use reportedip_report::log::Logger;
use reportedip_report::outcome::Status;
use reportedip_report::pipeline::{self, Runtime};
use reportedip_report::sender::Sender;
use reportedip_report::store::Store;

/// 2026-12-01T00:00:00Z.
const DAY_START: u64 = 1_796_083_200;
const DAY: u64 = 86_400;
const QUOTA: u64 = 50;
const OUTAGE: std::ops::Range<u64> = DAY_START + 3600..DAY_START + 3 * 3600;
const FLUSH_EVERY: u64 = 600;
const SEED: u64 = 0x5EED_2026_1201;

static NOW: AtomicU64 = AtomicU64::new(DAY_START);
static SENDER_WANTED: AtomicBool = AtomicBool::new(false);

fn sim_now() -> u64 {
    NOW.load(Ordering::SeqCst)
}

/// The pipeline's request for a sender: the simulation runs one at once, in-process.
fn want_sender(_: &Path, _: &Path) {
    SENDER_WANTED.store(true, Ordering::SeqCst);
}

struct Ban {
    at: u64,
    ip: String,
}

/// xorshift64*: a fixed seed gives the same day every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn workload() -> Vec<Ban> {
    let mut rng = Rng(SEED);
    let mut bans = Vec::new();
    for n in 1..=20 {
        let start = DAY_START + rng.below(DAY - 6 * 900);
        for k in 0..6 {
            bans.push(Ban {
                at: start + k * 900,
                ip: format!("45.155.100.{n}"),
            });
        }
    }
    for n in 0..180 {
        bans.push(Ban {
            at: DAY_START + rng.below(DAY),
            ip: format!("45.156.{}.{}", n / 200, n % 200 + 1),
        });
    }
    bans.sort_by_key(|ban| ban.at);
    bans
}

/// What the API did with one request.
#[derive(Clone)]
struct Answer {
    ip: String,
    categories: String,
    banned_at: u64,
    status: u16,
    at: u64,
}

/// The quota as the service keeps it: 50 accepted reports a day, counted to midnight UTC.
struct Service {
    accepted_today: u64,
}

impl Service {
    fn answer(&mut self, now: u64) -> (u16, u64) {
        if OUTAGE.contains(&now) {
            return (503, QUOTA - self.accepted_today);
        }
        if self.accepted_today >= QUOTA {
            return (429, 0);
        }
        self.accepted_today += 1;
        (200, QUOTA - self.accepted_today)
    }
}

fn fake_api(log: Arc<Mutex<Vec<Answer>>>) -> FakeApi {
    let service = Mutex::new(Service { accepted_today: 0 });
    FakeApi::start_with(move |req: &Request, index| {
        let now = sim_now();
        let (status, remaining) = service.lock().unwrap().answer(now);
        log.lock().unwrap().push(Answer {
            ip: req.field("ip"),
            categories: req.field("categories"),
            banned_at: req.field("comment").parse().unwrap_or(now),
            status,
            at: now,
        });
        let reply = match status {
            200 => documented_api(req, index),
            429 => Reply::wp_error(429, "rate_limit_exceeded", "Daily report limit reached"),
            _ => Reply::wp_error(503, "maintenance", "Service unavailable"),
        };
        reply
            .with_header("X-RateLimit-Limit", &QUOTA.to_string())
            .with_header("X-RateLimit-Remaining", &remaining.to_string())
            .with_header("X-RateLimit-Reset", &(DAY_START + DAY).to_string())
    })
}

#[derive(Default)]
struct Tally {
    accepted: Vec<Answer>,
    refused_429: usize,
    lost: u64,
    waiting: usize,
}

/// The curl line: one POST per ban, at once; whatever fails is gone.
fn curl_line(bans: &[Ban]) -> Tally {
    let mut service = Service { accepted_today: 0 };
    let mut tally = Tally::default();
    for ban in bans {
        match service.answer(ban.at).0 {
            200 => tally.accepted.push(Answer {
                ip: ban.ip.clone(),
                categories: "18,22".into(),
                banned_at: ban.at,
                status: 200,
                at: ban.at,
            }),
            429 => {
                tally.refused_429 += 1;
                tally.lost += 1;
            }
            _ => tally.lost += 1,
        }
    }
    tally
}

/// reportedip-report as the shipped action runs it (`report --queue`), with `cooldown`.
fn ours(bans: &[Ban], cooldown: u64) -> Tally {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let api = fake_api(Arc::clone(&answers));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reportedip.toml");
    std::fs::write(
        &path,
        format!(
            "api_key = \"simulation-key\"\napi_url = \"{}\"\nstate_dir = \"{}\"\nsyslog = false\ncooldown = {cooldown}\n",
            api.url(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = config::load(&path, Ok(None), false).unwrap();
    let runtime = Runtime {
        clock: sim_now,
        start_sender: want_sender,
        stderr: false,
    };
    let store = Store::open(&config.state_dir, sim_now()).unwrap();
    let log = Logger::new(false, false);
    let key = config.require_key().unwrap().clone();
    let sender = Sender {
        config: &config,
        store: std::cell::RefCell::new(store),
        log: &log,
        client: Client::new(&config, key),
        clock: sim_now,
    };
    let mut tally = Tally::default();
    let mut next_flush = DAY_START + FLUSH_EVERY;
    for ban in bans {
        while next_flush <= ban.at {
            NOW.store(next_flush, Ordering::SeqCst);
            sender.flush(&mut |_, _| {});
            next_flush += FLUSH_EVERY;
        }
        NOW.store(ban.at, Ordering::SeqCst);
        let request = pipeline::Request {
            ip: ban.ip.clone(),
            ban: reportedip_report::report::Ban {
                jail: Some("sshd".into()),
                failures: Some(5),
                comment: Some(ban.at.to_string()),
                ..Default::default()
            },
            queue: true,
            dry_run: false,
        };
        let outcome = pipeline::run(Ok(config.clone()), &request, runtime);
        if outcome.status == Status::NotDelivered {
            tally.lost += 1;
        }
        if SENDER_WANTED.swap(false, Ordering::SeqCst) {
            sender.deliver_waiting();
        }
    }
    while next_flush < DAY_START + DAY {
        NOW.store(next_flush, Ordering::SeqCst);
        sender.flush(&mut |_, _| {});
        next_flush += FLUSH_EVERY;
    }
    let answers = answers.lock().unwrap().clone();
    tally.refused_429 = answers.iter().filter(|a| a.status == 429).count();
    tally.accepted = answers.into_iter().filter(|a| a.status == 200).collect();
    let (status, waiting) = sender
        .store
        .borrow_mut()
        .read(|tx| Ok((tx.state()?, tx.spool_len()?)))
        .unwrap();
    tally.lost += status.dropped + status.set_aside;
    tally.waiting = waiting as usize;
    tally
}

fn row(name: &str, tally: &Tally) -> String {
    let accepted = tally.accepted.len();
    let mut seen_ips = HashSet::new();
    let mut repeats = 0;
    for answer in &tally.accepted {
        if !seen_ips.insert(answer.ip.clone()) {
            repeats += 1;
        }
    }
    let pairs: BTreeSet<(String, String)> = tally
        .accepted
        .iter()
        .map(|a| (a.ip.clone(), a.categories.clone()))
        .collect();
    let mut delays: Vec<u64> = tally.accepted.iter().map(|a| a.at - a.banned_at).collect();
    delays.sort_unstable();
    let median = delays.get(delays.len() / 2).copied().unwrap_or(0);
    let distinct_share = if accepted == 0 {
        0.0
    } else {
        100.0 * pairs.len() as f64 / accepted as f64
    };
    format!(
        "| {name} | {accepted} | {} | {repeats} | {:.0}% | {} | {} | {} | {} |",
        seen_ips.len(),
        distinct_share,
        tally.refused_429,
        tally.lost,
        tally.waiting,
        reportedip_report::clock::format_span(median),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let bans = workload();
    let distinct: HashSet<&str> = bans.iter().map(|b| b.ip.as_str()).collect();
    println!("## A simulated day on the free plan (`cargo bench --bench quota_day`)");
    println!();
    println!(
        "{} bans from {} IPs, quota {QUOTA} reports a day, API down 01:00-03:00, `flush` every 10 min.",
        bans.len(),
        distinct.len()
    );
    println!();
    println!(
        "| | reports accepted | distinct IPs reported | quota spent on IPs already reported | accepted that are distinct (IP, categories) | requests answered 429 | reports lost or dropped | waiting at midnight | median delay ban → accepted |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!("{}", row("curl line", &curl_line(&bans)));
    println!(
        "{}",
        row("old defaults (cooldown 15 min)", &ours(&bans, 900))
    );
    println!(
        "{}",
        row(
            "new defaults (cooldown 24 h, IP + categories)",
            &ours(&bans, DAY)
        )
    );
}
