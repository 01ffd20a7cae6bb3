//! The `report` pipeline, straight through: parse, policy (non-global, ignore list,
//! cooldown), route (direct, spool, or no state dir, decided once), deliver; always ending
//! in one [`Outcome`].

use std::cell::RefCell;
use std::net::IpAddr;

use crate::api::Client;
use crate::cli::ReportArgs;
use crate::clock::{self, Clock};
use crate::config::{Config, ConfigError};
use crate::delivery::{Delivery, describe};
use crate::log::Logger;
use crate::outcome::{Outcome, Status, queued_line};
use crate::report::Report;
use crate::secret::SecretString;
use crate::sender;
use crate::state::{Fallback, Locked, State, StateDir};
use crate::validate::{non_global_reason, parse_ip};

/// What the pipeline takes from its surroundings; a simulation brings its own.
#[derive(Clone, Copy)]
pub struct Runtime {
    pub clock: Clock,
    /// Makes sure a sender will deliver the spool ([`sender::ensure_running`]).
    pub start_sender: fn(&StateDir, &std::path::Path),
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

/// Runs `report` from start to end. Never panics on bad input; the caller maps the outcome
/// to an exit code (0 unless `--strict`).
pub fn run(config: Result<Config, ConfigError>, args: &ReportArgs, runtime: Runtime) -> Outcome {
    let clock = runtime.clock;
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            let outcome = Outcome::new(Status::ConfigError, format!("not reported: {err}"));
            return emit(&Logger::new(runtime.stderr, !args.dry_run), outcome);
        }
    };
    let log = Logger::new(runtime.stderr, config.syslog && !args.dry_run);
    for warning in &config.warnings {
        log.warn(warning);
    }
    let report = match admit(&config, args, clock()) {
        Ok(report) => report,
        Err(outcome) => return emit(&log, *outcome),
    };
    if args.dry_run {
        return dry_run(&report, &config);
    }
    let key = match config.require_key() {
        Ok(key) => key.clone(),
        Err(err) => {
            let outcome =
                Outcome::new(Status::ConfigError, format!("not reported: {err}")).about(&report);
            return emit(&log, outcome);
        }
    };
    let pipeline = Pipeline {
        config: &config,
        log: &log,
        key,
        clock,
        start_sender: runtime.start_sender,
        fallback: Fallback::new(),
        warnings: RefCell::default(),
    };
    let outcome = pipeline.deliver(&report, args.queue);
    let warnings = pipeline.warnings.take();
    if !warnings.is_empty() {
        log.warn(&warnings.join("; "));
    }
    emit(&log, outcome)
}

/// Parse and policy: the report worth sending, or the outcome that says why there is none.
fn admit(config: &Config, args: &ReportArgs, now: u64) -> Result<Report, Box<Outcome>> {
    let invalid = |why: String| {
        Box::new(Outcome::new(
            Status::Invalid,
            format!("not reported: {why}"),
        ))
    };
    let ip = parse_ip(&args.ip).map_err(|err| invalid(err.to_string()))?;
    if let Some(why) = policy_skip(ip, config) {
        let mut outcome = Outcome::new(Status::Skipped, why);
        outcome.ip = Some(ip.to_string());
        return Err(Box::new(outcome));
    }
    Report::from_args(ip, args, config, now).map_err(|err| invalid(err.to_string()))
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

struct Pipeline<'a> {
    config: &'a Config,
    log: &'a Logger,
    key: SecretString,
    clock: Clock,
    start_sender: fn(&StateDir, &std::path::Path),
    /// The backoff while `state_dir` cannot be written.
    fallback: Fallback,
    /// What went wrong around the report, said in one line at the end of the run.
    warnings: RefCell<Vec<String>>,
}

impl Pipeline<'_> {
    /// Routes the report once: skipped by the cooldown, to the spool (`--queue`, or the API
    /// in backoff), or straight to the API.
    fn deliver(&self, report: &Report, queue: bool) -> Outcome {
        let state = match StateDir::open(&self.config.state_dir) {
            Ok(state) => state,
            Err(err) => {
                self.warn(err.to_string());
                return self.send(None, report);
            }
        };
        let now = (self.clock)();
        let mut locked = self.lock(&state);
        if let Some(outcome) = locked.as_ref().and_then(|l| self.cooling(l, report, now)) {
            // Saved all the same: reading the state may have mended it (clock checks).
            self.save(locked);
            return outcome;
        }
        let backoff = locked
            .as_ref()
            .and_then(|l| l.state.backoff_note(now))
            .or_else(|| self.fallback.state(now).backoff_note(now));
        if queue || backoff.is_some() {
            match self.spool(&state, locked.as_mut(), report, now) {
                Ok(waiting) => {
                    self.save(locked);
                    if backoff.is_none() {
                        (self.start_sender)(&state, &self.config.path);
                    }
                    let status = if queue { Status::Queued } else { Status::Kept };
                    let line = queued_line(report.ip, backoff.as_deref(), waiting);
                    return Outcome::new(status, line)
                        .about(report)
                        .with_waiting(Some(waiting));
                }
                Err(why) if backoff.is_some() => {
                    let note = backoff.unwrap_or_default();
                    return lost(report, Status::NotDelivered, &note, &why);
                }
                Err(why) => self.warn(format!("{why}; sending {} directly", report.ip)),
            }
        }
        // Nothing to save before the request: the cooldown starts only once the report is
        // sent or spooled, and settling re-reads and mends the state anyway. One atomic
        // write less on the direct path.
        drop(locked);
        self.send(Some(&state), report)
    }

    /// The outcome for a report that the cooldown holds back, if it does.
    fn cooling(&self, locked: &Locked, report: &Report, now: u64) -> Option<Outcome> {
        let cooldown = self.config.cooldown;
        let since = locked.state.cooldown.covered_since(
            &report.ip.to_string(),
            &report.categories,
            now,
            cooldown,
        )?;
        let message = format!(
            "skipped {} ({}): already reported {} ago (cooldown {})",
            report.ip,
            report.categories,
            clock::format_span(now.saturating_sub(since)),
            clock::format_span(cooldown)
        );
        Some(Outcome::new(Status::Skipped, message).about(report))
    }

    /// One POST, bounded by the client's deadline, then its consequences. Without a state,
    /// the fallback's backoff spares the network (and the ban its timeout).
    fn send(&self, state: Option<&StateDir>, report: &Report) -> Outcome {
        let now = (self.clock)();
        if state.is_none()
            && let Some(note) = self.fallback.state(now).backoff_note(now)
        {
            return lost(report, Status::NotDelivered, &note, "no usable state_dir");
        }
        let client = Client::new(self.config, self.key.clone()).interruptible();
        let delivery = client.send_report(report, (self.clock)());
        self.settle(state, report, &delivery)
    }

    /// Records the delivery in the state, keeps the report if the failure says so, and
    /// starts a sender when a success shows the API is back for reports still waiting.
    fn settle(&self, state: Option<&StateDir>, report: &Report, delivery: &Delivery) -> Outcome {
        let now = (self.clock)();
        let line = describe(report, delivery, &self.config.path);
        let mut locked = state.and_then(|state| self.lock(state));
        if let Some(locked) = &mut locked {
            locked.state.record(delivery, &line, now);
            // Sent, or refused for good: either way, done with for the cooldown.
            if delivery
                .as_ref()
                .map_or_else(|f| !f.keeps_report(), |_| true)
            {
                self.note_cooldown(locked, report, now);
            }
        }
        let outcome = match delivery {
            Ok(receipt) => Outcome::new(Status::Sent, line.clone())
                .about(report)
                .with_receipt(receipt),
            Err(failure) if !failure.keeps_report() => {
                Outcome::new(failure.status(), line.clone()).about(report)
            }
            Err(failure) => {
                let kept = state
                    .ok_or_else(|| "no usable state_dir".to_string())
                    .and_then(|state| self.spool(state, locked.as_mut(), report, now));
                match kept {
                    Ok(waiting) => Outcome::new(
                        failure.status(),
                        queued_line(report.ip, Some(&line), waiting),
                    )
                    .about(report)
                    .with_waiting(Some(waiting)),
                    Err(why) => lost(report, failure.status_if_lost(), &line, &why),
                }
            }
        };
        self.keep_backoff(locked, delivery, &line, now);
        if let Some(state) = state
            && outcome.status == Status::Sent
            && !state.spool().is_empty()
        {
            (self.start_sender)(state, &self.config.path);
        }
        outcome
    }

    /// Writes the report to the spool, which needs no lock. With the state lock held, its
    /// cooldown starts, and the count of waiting reports comes from the state (the ban path
    /// never lists the spool); past `spool_max`, the limits are applied. Returns how many
    /// reports wait.
    fn spool(
        &self,
        state: &StateDir,
        locked: Option<&mut Locked>,
        report: &Report,
        now: u64,
    ) -> Result<usize, String> {
        let spool = state.spool();
        spool.add(report).map_err(|err| {
            format!(
                "cannot write to the spool in {}: {err}",
                spool.dir().display()
            )
        })?;
        let Some(locked) = locked else {
            return Ok(spool.len());
        };
        self.note_cooldown(locked, report, now);
        locked.state.waiting += 1;
        // Trimming means listing the whole spool: the ban path lets it run 1% over
        // spool_max first, so that a full spool costs one listing per 1% of bans, not one
        // per ban. The sender trims to spool_max exactly.
        let max = self.config.spool_max as u64;
        if locked.state.waiting > max + max / 100 {
            sender::apply_limits(self.config, &spool, locked, now, self.log);
        }
        Ok(usize::try_from(locked.state.waiting).unwrap_or(usize::MAX))
    }

    /// The cooldown starts once a report is sent or safely spooled, never before: a report
    /// lost to a crash or a full disk leaves no cooldown to block the next one.
    fn note_cooldown(&self, locked: &mut Locked, report: &Report, now: u64) {
        let ip = report.ip.to_string();
        let window = self.config.cooldown;
        locked
            .state
            .cooldown
            .note(&ip, &report.categories, now, window);
    }

    fn lock(&self, state: &StateDir) -> Option<Locked> {
        let mut locked = state
            .lock()
            .map_err(|err| self.warn(err.to_string()))
            .ok()?;
        if let Some(problem) = locked.problem.take() {
            self.warn(problem);
        }
        for note in locked.state.check_clock((self.clock)()) {
            self.warn(note);
        }
        Some(locked)
    }

    /// Saves and releases the state; whether that worked.
    fn save(&self, locked: Option<Locked>) -> bool {
        match locked.map(|locked| locked.save()) {
            Some(Err(err)) => {
                self.warn(err.to_string());
                false
            }
            Some(Ok(())) => true,
            None => false,
        }
    }

    /// Saves the state after a delivery; where it cannot be saved (or there is none), the
    /// backoff goes to the fallback, so that the next ban does not wait the full timeout.
    fn keep_backoff(&self, locked: Option<Locked>, delivery: &Delivery, line: &str, now: u64) {
        let mut unsaved = locked
            .as_ref()
            .map_or_else(State::default, |l| l.state.clone());
        if locked.is_none() {
            unsaved.record(delivery, line, now);
        }
        if self.save(locked) {
            return;
        }
        match delivery {
            Ok(_) => self.fallback.clear(),
            Err(_) if unsaved.in_backoff(now) => self.fallback.remember(&unsaved),
            Err(_) => {}
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
