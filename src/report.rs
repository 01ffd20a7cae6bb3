//! The `report` pipeline: validate, apply policy and cooldown, then deliver directly or hand
//! the report to the spool, always ending in one [`Outcome`].

use std::cell::OnceCell;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::{Client, Delivery};
use crate::categories::Categories;
use crate::cli::ReportArgs;
use crate::clock::{self, Clock};
use crate::config::{Config, ConfigError};
use crate::log::Logger;
use crate::outcome::{Outcome, Status, exit, sent_line, waiting_suffix};
use crate::secret::SecretString;
use crate::sender;
use crate::spool::SpooledReport;
use crate::state::{Locked, StateDir};
use crate::validate::{non_global_reason, parse_ip, sanitize_comment};

/// A validated report, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub ip: IpAddr,
    pub categories: Categories,
    pub comment: String,
    pub jail: Option<String>,
}

impl Prepared {
    fn spooled(&self, now: u64) -> SpooledReport {
        SpooledReport {
            ip: self.ip.to_string(),
            categories: self.categories.to_string(),
            comment: self.comment.clone(),
            jail: self.jail.clone(),
            queued_at: now,
        }
    }

    fn outcome(&self, status: Status, message: String) -> Outcome {
        Outcome::new(status, message).for_ip(&self.ip.to_string(), &self.categories.to_string())
    }
}

/// Turns the arguments for `ip` into a report, or says what is wrong with them.
pub fn prepare(ip: IpAddr, args: &ReportArgs, config: &Config) -> Result<Prepared, String> {
    let jail = args
        .jail
        .as_deref()
        .map(sanitize_comment)
        .filter(|jail| !jail.trim().is_empty());
    let categories = resolve_categories(args.categories.as_deref(), jail.as_deref(), config)?;
    let comment = match &args.comment {
        Some(text) => sanitize_comment(text),
        None => {
            let failures = args
                .failures
                .map_or_else(|| "?".to_string(), |n| n.to_string());
            let jail = jail.as_deref().unwrap_or("manual");
            sanitize_comment(&config.render_comment(&ip.to_string(), jail, &failures))
        }
    };
    Ok(Prepared {
        ip,
        categories,
        comment,
        jail,
    })
}

/// `--categories`, else the jail in the config, else the built-in jail table, else the
/// config default. An empty `--categories ""` (what the action passes) counts as absent.
fn resolve_categories(
    given: Option<&str>,
    jail: Option<&str>,
    config: &Config,
) -> Result<Categories, String> {
    if let Some(list) = given.filter(|list| !list.trim().is_empty()) {
        return Categories::parse(list).map_err(|err| err.to_string());
    }
    let from_jail = jail.and_then(|jail| {
        config
            .jail_categories
            .get(jail)
            .cloned()
            .or_else(|| Categories::for_jail(jail))
    });
    from_jail
        .or_else(|| config.categories.clone())
        .ok_or_else(|| {
            "no categories: pass --categories, use a jail from the built-in table, or set \
         categories in the config"
                .to_string()
        })
}

/// Why `ip` must never be reported (not globally routable, or on the ignore list), if so.
fn policy_skip(ip: IpAddr, config: &Config) -> Option<String> {
    let why = non_global_reason(ip)
        .map(|why| format!("{why}, never reported"))
        .or_else(|| {
            config
                .ignore
                .iter()
                .any(|net| net.contains(ip))
                .then(|| "on the ignore list".to_string())
        })?;
    Some(format!("skipped {ip}: {why}"))
}

/// Runs `report` from start to end. Never panics on bad input; the caller maps the outcome
/// to an exit code (0 unless `--strict`).
pub fn run(config: Result<Config, ConfigError>, args: &ReportArgs, clock: Clock) -> Outcome {
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            let outcome = Outcome::new(Status::ConfigError, format!("not reported: {err}"));
            return emit(&Logger::new(true, !args.dry_run), outcome);
        }
    };
    let log = Logger::new(true, config.syslog && !args.dry_run);
    let invalid = |why: String| Outcome::new(Status::Invalid, format!("not reported: {why}"));
    let ip = match parse_ip(&args.ip) {
        Ok(ip) => ip,
        Err(err) => return emit(&log, invalid(err.to_string())),
    };
    if let Some(why) = policy_skip(ip, &config) {
        let mut outcome = Outcome::new(Status::Skipped, why);
        outcome.ip = Some(ip.to_string());
        return emit(&log, outcome);
    }
    let report = match prepare(ip, args, &config) {
        Ok(report) => report,
        Err(why) => return emit(&log, invalid(why)),
    };
    if args.dry_run {
        return dry_run(&report, &config);
    }
    let key = match config.require_key() {
        Ok(key) => key.clone(),
        Err(err) => {
            let outcome = report.outcome(Status::ConfigError, format!("not reported: {err}"));
            return emit(&log, outcome);
        }
    };
    let state = match StateDir::open(&config.state_dir) {
        Ok(state) => Some(state),
        Err(err) => {
            log.warn(&err.to_string());
            None
        }
    };
    let pipeline = Pipeline {
        config: &config,
        log: &log,
        state,
        key,
        client: OnceCell::new(),
        clock,
        pending: Arc::new(Mutex::new(None)),
    };
    pipeline.arm_watchdog(if args.strict { exit::KEPT } else { exit::OK });
    let outcome = pipeline.deliver(&report, args.queue);
    emit(&log, outcome)
}

/// `45.155.205.233 queued: API backoff for 45 s more (HTTP 503); 3 reports waiting`
fn queued_outcome(
    report: &Prepared,
    queue: bool,
    backoff: Option<&str>,
    waiting: usize,
) -> Outcome {
    let status = if queue { Status::Queued } else { Status::Kept };
    let message = format!(
        "{} queued{}{}",
        report.ip,
        backoff.unwrap_or(""),
        waiting_suffix(waiting)
    );
    report.outcome(status, message).with_waiting(Some(waiting))
}

fn emit(log: &Logger, outcome: Outcome) -> Outcome {
    if outcome.status.is_failure() {
        log.error(&outcome.message);
    } else {
        log.info(&outcome.message);
    }
    outcome
}

fn dry_run(report: &Prepared, config: &Config) -> Outcome {
    let url = format!("{}/report", config.api_url);
    let key = if config.api_key.is_some() {
        "(set)"
    } else {
        "(missing)"
    };
    let ip = report.ip.to_string();
    let categories = report.categories.to_string();
    let request = serde_json::json!({
        "method": "POST",
        "url": url,
        "headers": {
            "X-Key": key,
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        "form": { "ip": ip, "categories": categories, "comment": report.comment },
    });
    let message = format!(
        "POST {url}\nX-Key: {key}\nAccept: application/json\n\
         Content-Type: application/x-www-form-urlencoded\n\n\
         ip={ip}\ncategories={categories}\ncomment={}",
        report.comment
    );
    let mut outcome = report.outcome(Status::DryRun, message);
    outcome.request = Some(request);
    outcome
}

struct Pipeline<'a> {
    config: &'a Config,
    log: &'a Logger,
    state: Option<StateDir>,
    key: SecretString,
    /// Built on the first request: skipped and queued reports need no HTTP client.
    client: OnceCell<Client>,
    clock: Clock,
    /// The report while it is in flight, for the watchdog to keep if the request hangs.
    pending: Arc<Mutex<Option<SpooledReport>>>,
}

impl Pipeline<'_> {
    fn client(&self) -> &Client {
        self.client.get_or_init(|| {
            Client::new(&self.config.api_url, self.key.clone(), self.config.timeout)
        })
    }

    fn deliver(&self, report: &Prepared, queue: bool) -> Outcome {
        let now = (self.clock)();
        let Some(state) = &self.state else {
            return self.send_without_state(report, now);
        };
        let mut locked = match state.lock() {
            Ok(locked) => locked,
            Err(err) => {
                self.log.warn(&err.to_string());
                return self.send_without_state(report, now);
            }
        };
        let ip = report.ip.to_string();
        if let Some(since) = locked.state.cooling_since(&ip, now, self.config.cooldown) {
            let message = format!(
                "skipped {ip}: already reported {} ago (cooldown {})",
                clock::format_span(now.saturating_sub(since)),
                clock::format_span(self.config.cooldown)
            );
            return report.outcome(Status::Skipped, message);
        }
        locked.state.note_reported(&ip, now, self.config.cooldown);
        let in_backoff = locked.state.in_backoff(now);
        let backoff_note = in_backoff.then(|| {
            format!(
                ": API backoff for {} more ({})",
                clock::format_span(locked.state.backoff_until.saturating_sub(now)),
                locked
                    .state
                    .backoff_reason
                    .as_deref()
                    .unwrap_or("earlier failure")
            )
        });
        if queue || in_backoff {
            match self.spool(&mut locked, report, now) {
                Ok(waiting) => {
                    drop(locked);
                    if !in_backoff {
                        sender::ensure_running(state, &self.config.path);
                    }
                    return queued_outcome(report, queue, backoff_note.as_deref(), waiting);
                }
                Err(err) if in_backoff => {
                    return report.outcome(
                        Status::NotDelivered,
                        format!("{ip} not delivered: API in backoff and {err}"),
                    );
                }
                Err(err) => self.log.warn(&format!("{err}; sending {ip} directly")),
            }
        }
        self.save(&locked);
        drop(locked);
        self.send_direct(state, report)
    }

    /// Writes the report to the spool under the held state lock, applying the spool limits.
    fn spool(&self, locked: &mut Locked, report: &Prepared, now: u64) -> Result<usize, String> {
        let Some(state) = &self.state else {
            return Err("no state_dir".into());
        };
        let spool = state.spool();
        spool.add(&report.spooled(now)).map_err(|err| {
            format!(
                "cannot write to the spool in {}: {err}",
                spool.dir().display()
            )
        })?;
        let (_, waiting) = sender::apply_limits(self.config, &spool, locked, now, self.log);
        self.save(locked);
        Ok(waiting)
    }

    fn save(&self, locked: &Locked) {
        if let Err(err) = locked.save() {
            self.log.warn(&err.to_string());
        }
    }

    fn send_direct(&self, state: &StateDir, report: &Prepared) -> Outcome {
        let now = (self.clock)();
        let delivery = self.post(report, now);
        let Ok(mut locked) = state.lock() else {
            return self.classify_without_state(report, delivery);
        };
        let ip = report.ip.to_string();
        let categories = report.categories.to_string();
        let outcome = match delivery {
            Delivery::Sent(receipt) => {
                let line = sent_line(&ip, report.jail.as_deref(), &categories, &receipt);
                locked.state.record_success(now, line.clone());
                if let Some(until) = receipt.quota_exhausted_until {
                    locked.state.hold_until(until, "daily report quota used up");
                }
                report.outcome(Status::Sent, line).with_receipt(&receipt)
            }
            Delivery::Rejected(msg) => {
                let line = format!("{ip} rejected by the API, not retried: {msg}");
                locked.state.record_error(now, line.clone());
                report.outcome(Status::Rejected, line)
            }
            failure => {
                let (status, reason, retry_at) = self.describe_failure(&failure);
                locked.state.start_backoff(now, retry_at, &reason);
                match self.spool(&mut locked, report, now) {
                    Ok(waiting) => report
                        .outcome(
                            status,
                            format!("{ip} queued: {reason}{}", waiting_suffix(waiting)),
                        )
                        .with_waiting(Some(waiting)),
                    Err(err) => {
                        self.save(&locked);
                        report.outcome(status, format!("{ip} not delivered: {reason}; {err}"))
                    }
                }
            }
        };
        self.save(&locked);
        drop(locked);
        if outcome.status == Status::Sent && !state.spool().is_empty() {
            sender::ensure_running(state, &self.config.path);
        }
        outcome
    }

    fn send_without_state(&self, report: &Prepared, now: u64) -> Outcome {
        let delivery = self.post(report, now);
        self.classify_without_state(report, delivery)
    }

    fn classify_without_state(&self, report: &Prepared, delivery: Delivery) -> Outcome {
        let ip = report.ip.to_string();
        match delivery {
            Delivery::Sent(receipt) => {
                let categories = report.categories.to_string();
                let line = sent_line(&ip, report.jail.as_deref(), &categories, &receipt);
                report.outcome(Status::Sent, line).with_receipt(&receipt)
            }
            Delivery::Rejected(msg) => report.outcome(
                Status::Rejected,
                format!("{ip} rejected by the API, not retried: {msg}"),
            ),
            failure => {
                let (status, reason, _) = self.describe_failure(&failure);
                let status = if status == Status::Kept {
                    Status::NotDelivered
                } else {
                    status
                };
                report.outcome(
                    status,
                    format!("{ip} not delivered, and lost (no usable state_dir): {reason}"),
                )
            }
        }
    }

    /// The status, operator-facing reason and retry time of an undelivered report.
    fn describe_failure(&self, failure: &Delivery) -> (Status, String, Option<u64>) {
        let config = &self.config.path.display();
        match failure {
            Delivery::KeyRejected(msg) => (
                Status::KeyRejected,
                format!(
                    "API key refused ({msg}); fix api_key in {config}, then run reportedip-report flush"
                ),
                None,
            ),
            Delivery::WrongUrl(msg) => (
                Status::WrongUrl,
                format!(
                    "{} not found ({msg}); check api_url in {config}",
                    self.client().report_url()
                ),
                None,
            ),
            Delivery::Transient(t) => (Status::Kept, t.reason.clone(), t.retry_at),
            Delivery::Sent(_) | Delivery::Rejected(_) => (Status::Kept, String::new(), None),
        }
    }

    fn post(&self, report: &Prepared, now: u64) -> Delivery {
        if let Ok(mut pending) = self.pending.lock() {
            *pending = Some(report.spooled(now));
        }
        let delivery = self.client().send_report(
            &report.ip.to_string(),
            &report.categories.to_string(),
            &report.comment,
            now,
        );
        if let Ok(mut pending) = self.pending.lock() {
            *pending = None;
        }
        delivery
    }

    /// Ends the process at `timeout` + 1 s whatever hangs (DNS included), keeping the report
    /// in flight in the spool first so that nothing is lost.
    fn arm_watchdog(&self, code: u8) {
        let deadline = self.config.timeout + Duration::from_secs(1);
        let pending = Arc::clone(&self.pending);
        let spool = self.state.as_ref().map(StateDir::spool);
        let log = self.log.clone();
        let spawned = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                std::thread::sleep(deadline);
                let report = pending.lock().ok().and_then(|mut p| p.take());
                let kept = match (report, spool) {
                    (Some(report), Some(spool)) => spool.add(&report).is_ok(),
                    _ => false,
                };
                log.error(&format!(
                    "gave up after {} s{}",
                    deadline.as_secs(),
                    if kept { "; report queued" } else { "" }
                ));
                std::process::exit(i32::from(code));
            });
        if let Err(err) = spawned {
            self.log.warn(&format!("no watchdog thread: {err}"));
        }
    }
}
