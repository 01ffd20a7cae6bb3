//! The `report` command, straight through: parse, policy (non-global, ignore list), then one
//! transaction that decides the route ([`crate::route`]) and, for a queued report, spools it
//! with its cooldown; a direct report is sent outside any transaction and settled in a second
//! one. Always ends in one [`Outcome`].

use std::cell::RefCell;
use std::net::IpAddr;
use std::path::Path;

use crate::api::Client;
use crate::clock::{self, Clock};
use crate::config::{Config, ConfigError};
use crate::cooldown::covered_since;
use crate::delivery::{Delivery, describe};
use crate::fallback::Fallback;
use crate::log::Logger;
use crate::outcome::{Outcome, Status, queued_line};
use crate::report::{Ban, Report};
use crate::route::{self, Facts, Route, Unstored};
use crate::secret::SecretString;
use crate::sender;
use crate::state::State;
use crate::store::{Store, StoreError, Txn};
use crate::validate::{non_global_reason, parse_ip};

/// What the pipeline takes from its surroundings; a simulation brings its own.
#[derive(Clone, Copy)]
pub struct Runtime {
    pub clock: Clock,
    /// Makes sure a sender will deliver the spool ([`sender::ensure_running`]).
    pub start_sender: fn(&Path, &Path),
    /// Whether outcome lines go to stderr (syslog follows the config either way).
    pub stderr: bool,
}

impl Runtime {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            start_sender: sender::ensure_running,
            stderr: true,
        }
    }
}

/// How a report was asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub ip: String,
    pub ban: Ban,
    pub queue: bool,
    pub dry_run: bool,
}

/// Runs `report` from start to end. Never panics on bad input; the caller maps the outcome
/// to an exit code (0 unless `--strict`).
pub fn run(config: Result<Config, ConfigError>, request: &Request, runtime: Runtime) -> Outcome {
    let clock = runtime.clock;
    let config = match config {
        Ok(config) => config,
        Err(err) if request.dry_run && err.is_unreadable() => {
            // A dry run shows what would be sent; it needs no key, so a config it cannot
            // read only means the defaults are shown, and said.
            let log = Logger::new(runtime.stderr, false);
            log.warn(&format!("{err}; showing what the defaults would send"));
            Config::defaults(path_of(&err))
        }
        Err(err) => {
            let log = Logger::new(runtime.stderr, !request.dry_run);
            if request.dry_run {
                return emit(
                    &log,
                    Outcome::new(Status::ConfigError, format!("not reported: {err}")),
                );
            }
            let dir = crate::config::state_dir_hint(path_of(&err));
            return emit(&log, hold(request, &dir, &err.to_string(), clock()));
        }
    };
    let log = Logger::new(runtime.stderr, config.syslog && !request.dry_run);
    for warning in &config.warnings {
        log.warn(warning);
    }
    let report = match admit(&config, request, clock()) {
        Ok(report) => report,
        Err(outcome) => return emit(&log, *outcome),
    };
    if request.dry_run {
        return dry_run(&report, &config);
    }
    let key = match config.require_key() {
        Ok(key) => key.clone(),
        Err(err) => {
            return emit(
                &log,
                hold(request, &config.state_dir, &err.to_string(), clock()),
            );
        }
    };
    let pipeline = Pipeline {
        config: &config,
        key,
        clock,
        start_sender: runtime.start_sender,
        fallback: Fallback::new(&config.state_dir),
        warnings: RefCell::default(),
    };
    let outcome = pipeline.deliver(&report, request.queue);
    let warnings = pipeline.warnings.take();
    if !warnings.is_empty() {
        log.warn(&warnings.join("; "));
    }
    emit(&log, outcome)
}

/// The config file an error is about (the default path when it names none).
fn path_of(err: &ConfigError) -> &Path {
    err.path()
        .unwrap_or(Path::new(crate::config::DEFAULT_CONFIG_PATH))
}

/// A ban that arrives while the config cannot be used is kept in `dir` when its address is one
/// that could ever be reported, and sent once the config is fixed: everything about it (the
/// ignore list, the categories, the cooldown) is decided again then. Said either way.
fn hold(request: &Request, dir: &Path, config_error: &str, now: u64) -> Outcome {
    let not_reported = |why: String| Outcome::new(Status::ConfigError, why);
    let ip = match parse_ip(&request.ip) {
        Ok(ip) if non_global_reason(ip).is_none() => ip,
        _ => return not_reported(format!("not reported: {config_error}")),
    };
    let held = Store::open(dir, now).and_then(|mut store| {
        store.write(|tx| tx.hold(&ip.to_string(), &request.ban, now, config_error))?;
        store.sync()
    });
    let mut outcome = match held {
        Ok(()) => not_reported(format!(
            "{ip} not reported yet: {config_error}; the ban is kept in {} and sent once the \
             config is fixed",
            dir.display()
        )),
        Err(err) => not_reported(format!(
            "{ip} not reported, and lost ({err}): {config_error}"
        )),
    };
    outcome.ip = Some(ip.to_string());
    outcome
}

/// Parse and policy: the report worth sending, or the outcome that says why there is none.
pub fn admit(config: &Config, request: &Request, now: u64) -> Result<Report, Box<Outcome>> {
    let invalid = |why: String| {
        Box::new(Outcome::new(
            Status::Invalid,
            format!("not reported: {why}"),
        ))
    };
    let ip = parse_ip(&request.ip).map_err(|err| invalid(err.to_string()))?;
    if let Some(why) = policy_skip(ip, config) {
        let mut outcome = Outcome::new(Status::Skipped, why);
        outcome.ip = Some(ip.to_string());
        return Err(Box::new(outcome));
    }
    Report::from_ban(ip, &request.ban, config, now).map_err(|err| invalid(err.to_string()))
}

/// Why `ip` must never be reported (not globally routable, or on the ignore list), if so.
pub fn policy_skip(ip: IpAddr, config: &Config) -> Option<String> {
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

fn emit(log: &Logger, outcome: Outcome) -> Outcome {
    if outcome.status.is_failure() {
        log.error(&outcome.message);
    } else {
        log.info(&outcome.message);
    }
    outcome
}

fn dry_run(report: &Report, config: &Config) -> Outcome {
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
    let mut outcome = Outcome::new(Status::DryRun, message).about(report);
    outcome.request = Some(request);
    outcome
}

/// What the routing transaction decided.
struct Routed {
    route: Route,
    backoff: Option<String>,
    /// Reports waiting after this one was spooled.
    waiting: u64,
}

struct Pipeline<'a> {
    config: &'a Config,
    key: SecretString,
    clock: Clock,
    start_sender: fn(&Path, &Path),
    /// The backoff while `state_dir` cannot be written.
    fallback: Fallback,
    /// What went wrong around the report, said in one line at the end of the run.
    warnings: RefCell<Vec<String>>,
}

impl Pipeline<'_> {
    fn deliver(&self, report: &Report, queue: bool) -> Outcome {
        let now = (self.clock)();
        let mut store = match Store::open(&self.config.state_dir, now) {
            Ok(store) => store,
            Err(err) => {
                self.warn(err.to_string());
                return self.send_unstored(report);
            }
        };
        for note in std::mem::take(&mut store.notes) {
            self.warn(note);
        }
        let routed = match store.write(|tx| self.route(tx, report, queue, now)) {
            Ok(routed) => routed,
            Err(err) if err.is_busy() => return self.to_inbox(&store, report, &err),
            Err(err) => {
                self.warn(format!("{err}; sending {} directly", report.ip));
                return self.send_unstored(report);
            }
        };
        match routed.route {
            Route::Cooling { since } => Outcome::new(
                Status::Skipped,
                format!(
                    "skipped {} ({}): already reported {} ago (cooldown {})",
                    report.ip,
                    report.categories,
                    clock::format_span(now.saturating_sub(since)),
                    clock::format_span(self.config.cooldown)
                ),
            )
            .about(report),
            Route::InFlight => Outcome::new(
                Status::Skipped,
                format!(
                    "skipped {} ({}): another process is reporting it right now",
                    report.ip, report.categories
                ),
            )
            .about(report),
            Route::Spool { start_sender } => {
                if let Err(err) = store.sync() {
                    self.warn(err.to_string());
                }
                if start_sender {
                    (self.start_sender)(store.dir(), &self.config.path);
                }
                let status = if queue { Status::Queued } else { Status::Kept };
                let line = queued_line(report.ip, routed.backoff.as_deref(), routed.waiting);
                Outcome::new(status, line)
                    .about(report)
                    .with_waiting(Some(routed.waiting))
            }
            Route::Send => self.send(&mut store, report),
        }
    }

    /// The routing transaction: the clock check, the cooldown, the backoff, the claim of a
    /// direct report, and for a spooled one its row, its cooldown and the spool's limits.
    fn route(&self, tx: &Txn, report: &Report, queue: bool, now: u64) -> rusqlite::Result<Routed> {
        let (mut state, notes) = tx.load(now)?;
        for note in notes {
            self.warn(note);
        }
        if state.note_api_url(&self.config.api_url, now) {
            self.warn("api_url changed: the backoff the old one earned has ended".into());
        }
        let ip = report.ip.to_string();
        let seen = tx.cooldown_of(&ip)?;
        let cooled_since = covered_since(&seen, &report.categories, now, self.config.cooldown);
        let backoff = state
            .backoff_note(now)
            .or_else(|| self.fallback.state(now).backoff_note(now));
        let in_flight = cooled_since.is_none()
            && backoff.is_none()
            && !queue
            && !tx.claim_ip(&ip, now, now + self.config.timeout.as_secs() + 1)?;
        let route = route::route(&Facts {
            cooled_since,
            in_flight,
            backoff: backoff.as_deref(),
            queue,
        });
        let waiting = match route {
            Route::Spool { .. } => self.spool(tx, &mut state, report, now)?,
            _ => 0,
        };
        tx.save(&state)?;
        Ok(Routed {
            route,
            backoff,
            waiting,
        })
    }

    /// Spools a report with its cooldown and applies the spool's limits; how many wait.
    fn spool(
        &self,
        tx: &Txn,
        state: &mut State,
        report: &Report,
        now: u64,
    ) -> rusqlite::Result<u64> {
        tx.spool_add(report)?;
        tx.note_cooldown(
            &report.ip.to_string(),
            &report.categories,
            now,
            self.config.cooldown,
        )?;
        let config = self.config;
        let dropped = tx.spool_limit(config.spool_max as u64, config.spool_max_age, now)?;
        if dropped > 0 {
            state.dropped += dropped;
            self.warn(format!(
                "dropped {dropped} spooled report(s), oldest first (spool_max {}, spool_max_age {} s)",
                config.spool_max, config.spool_max_age
            ));
        }
        tx.spool_len()
    }

    /// Another process holds the store too long: the report goes to the inbox, which the
    /// next sender imports.
    fn to_inbox(&self, store: &Store, report: &Report, busy: &StoreError) -> Outcome {
        let inbox = store.inbox();
        match inbox.add(report) {
            Ok(_) => {
                (self.start_sender)(store.dir(), &self.config.path);
                let line = format!("{} queued in the inbox ({busy})", report.ip);
                Outcome::new(Status::Queued, line).about(report)
            }
            Err(err) => {
                let why = format!("{busy}, and the inbox {}: {err}", inbox.dir().display());
                self.warn(why);
                self.send_unstored(report)
            }
        }
    }

    /// One POST with a working store, then its consequences in a second transaction.
    fn send(&self, store: &mut Store, report: &Report) -> Outcome {
        let delivery = self.post(report);
        let now = (self.clock)();
        let line = describe(report, &delivery, &self.config.path);
        let settled = store.write(|tx| self.settle(tx, report, &delivery, &line, now));
        if route::settle(&delivery).keep
            && let Err(err) = store.sync()
        {
            self.warn(err.to_string());
        }
        let waiting = match settled {
            Ok(waiting) => Ok(waiting),
            Err(err) => {
                self.remember_backoff(&delivery, &line, now);
                Err(format!("{err}"))
            }
        };
        let outcome = self.outcome(report, &delivery, &line, waiting);
        if outcome.status == Status::Sent && store.read(|tx| tx.spool_len()).is_ok_and(|n| n > 0) {
            (self.start_sender)(store.dir(), &self.config.path);
        }
        outcome
    }

    /// Records the delivery: the state, the cooldown once the report is done with, the
    /// report kept when the failure says so; the claim is released. How many wait.
    fn settle(
        &self,
        tx: &Txn,
        report: &Report,
        delivery: &Delivery,
        line: &str,
        now: u64,
    ) -> rusqlite::Result<u64> {
        let (mut state, notes) = tx.load(now)?;
        for note in notes {
            self.warn(note);
        }
        state.record(delivery, line, now);
        let ip = report.ip.to_string();
        tx.release_ip(&ip)?;
        let settlement = route::settle(delivery);
        if settlement.start_cooldown {
            tx.note_cooldown(&ip, &report.categories, now, self.config.cooldown)?;
        }
        let waiting = if settlement.keep {
            self.spool(tx, &mut state, report, now)?
        } else {
            0
        };
        tx.save(&state)?;
        if delivery.is_ok() {
            self.fallback.clear();
        }
        Ok(waiting)
    }

    /// Without a store nothing can be kept: the fallback's backoff spares the network (and
    /// the ban its timeout), and a failure is said as a loss.
    fn send_unstored(&self, report: &Report) -> Outcome {
        let now = (self.clock)();
        let backoff = self.fallback.state(now).backoff_note(now);
        if let Unstored::Lost { why } = route::route_unstored(backoff.as_deref()) {
            return lost(report, Status::NotDelivered, "not sent", &why);
        }
        let delivery = self.post(report);
        let now = (self.clock)();
        let line = describe(report, &delivery, &self.config.path);
        self.remember_backoff(&delivery, &line, now);
        let outcome = self.outcome(report, &delivery, &line, Err("no usable state_dir".into()));
        if delivery.is_ok() {
            self.fallback.clear();
        }
        outcome
    }

    fn post(&self, report: &Report) -> Delivery {
        let client = Client::new(self.config, self.key.clone()).interruptible();
        client.send_report(report, (self.clock)())
    }

    /// Keeps the backoff a failure starts where the store cannot, so that the next ban does
    /// not wait the full timeout.
    fn remember_backoff(&self, delivery: &Delivery, line: &str, now: u64) {
        let mut state = self.fallback.state(now);
        state.record(delivery, line, now);
        if state.in_backoff(now)
            && let Err(why) = self.fallback.remember(&state)
        {
            self.warn(why);
        }
    }

    /// The outcome of a delivery; `kept` is how many wait after the report was kept, or why
    /// it could not be.
    fn outcome(
        &self,
        report: &Report,
        delivery: &Delivery,
        line: &str,
        kept: Result<u64, String>,
    ) -> Outcome {
        match delivery {
            Ok(receipt) => Outcome::new(Status::Sent, line)
                .about(report)
                .with_receipt(receipt),
            Err(failure) if !failure.keeps_report() => {
                Outcome::new(failure.status(), line).about(report)
            }
            Err(failure) => match kept {
                Ok(waiting) => Outcome::new(
                    failure.status(),
                    queued_line(report.ip, Some(line), waiting),
                )
                .about(report)
                .with_waiting(Some(waiting)),
                Err(why) => lost(report, failure.status_if_lost(), line, &why),
            },
        }
    }

    /// Keeps a warning for the run's one warning line.
    fn warn(&self, warning: String) {
        let mut warnings = self.warnings.borrow_mut();
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
}

/// `45.155.205.233 not delivered, and lost (no usable state_dir): HTTP 503`
fn lost(report: &Report, status: Status, reason: &str, why: &str) -> Outcome {
    let line = format!("{} not delivered, and lost ({why}): {reason}", report.ip);
    Outcome::new(status, line).about(report)
}
