//! `setup`: from an installed package to a wired, verified fail2ban in one command. The key
//! is checked before anything is written; one drop-in that we own, `jail.d/reportedip.local`,
//! adds the action to each chosen jail after its own (`%(known/action)s`); fail2ban's config
//! test runs before and after, and anything that fails puts the previous files back.
//!
//! The decisions (which jails, what the drop-in says, how the config's key line changes) are
//! pure functions here; [`Fail2ban`] is the thin layer that runs `fail2ban-client`.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::api::Client;
use crate::categories::Categories;
use crate::clock::Clock;
use crate::commands::out as say;
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::error::{Error, failed};
use crate::outcome::exit;
use crate::secret::SecretString;

/// The drop-in we own under the fail2ban directory.
pub const DROP_IN: &str = "jail.d/reportedip.local";
/// The action file the drop-in names.
pub const ACTION_FILE: &str = "action.d/reportedip.conf";
/// Where the package installs the binary; another one is named in the drop-in.
pub const PACKAGED_BIN: &str = "/usr/bin/reportedip-report";
const HEADER: &str = "# Written by `reportedip-report setup`; `reportedip-report setup --undo` removes it.\n\
# Each jail keeps its own actions (%(known/action)s) and gains reportedip.\n";

/// An enabled jail as fail2ban's configuration dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jail {
    pub name: String,
    pub actions: Vec<String>,
}

impl Jail {
    pub fn has_reportedip(&self) -> bool {
        self.actions.iter().any(|a| a == "reportedip")
    }
}

/// The enabled jails and their actions, from `fail2ban-client --dp` (lines such as
/// `['add', 'sshd', 'auto']` and `['set', 'sshd', 'addaction', 'dummy']`).
pub fn parse_dump(dump: &str) -> Vec<Jail> {
    let mut jails: Vec<Jail> = Vec::new();
    for line in dump.lines().map(str::trim) {
        let Some(fields) = line.strip_prefix("['").and_then(|l| l.strip_suffix("']")) else {
            continue;
        };
        let fields: Vec<&str> = fields.split("', '").collect();
        match fields.as_slice() {
            ["add", name, ..] => jails.push(Jail {
                name: (*name).to_string(),
                actions: Vec::new(),
            }),
            ["set", name, "addaction", action] => {
                if let Some(jail) = jails.iter_mut().find(|j| j.name == *name) {
                    jail.actions.push((*action).to_string());
                }
            }
            _ => {}
        }
    }
    jails
}

/// Every `ignoreip` entry of every jail in a configuration dump
/// (`['set', 'sshd', 'addignoreip', '127.0.0.1/8', '::1']`).
pub fn parse_ignoreip(dump: &str) -> Vec<String> {
    dump.lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("['set', '")?.strip_suffix("']"))
        .filter_map(|fields| {
            fields
                .split_once("', 'addignoreip', '")
                .map(|(_, rest)| rest)
        })
        .flat_map(|rest| rest.split("', '").map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Which jails to wire: `--jails all`, `--jails a,b`, or (none given) every enabled jail
/// that has categories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    All,
    Named(Vec<String>),
}

impl Choice {
    pub fn parse(text: Option<&str>) -> Self {
        match text.map(str::trim) {
            None | Some("") | Some("all") => Choice::All,
            Some(list) => Choice::Named(
                list.split(',')
                    .map(|name| name.trim().to_string())
                    .filter(|name| !name.is_empty())
                    .collect(),
            ),
        }
    }
}

/// What `setup` will do with each jail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Jails in our drop-in, with their categories: the ones wired before and the new ones.
    pub wire: Vec<(String, Categories)>,
    /// Jails that have the action from elsewhere (a hand-made `jail.local`): left alone.
    pub wired_by_hand: Vec<String>,
    /// Enabled jails without categories, with the config line that would give them some.
    pub no_categories: Vec<String>,
}

/// Decides the drop-in's jails. A jail named on the command line that is not enabled, or has
/// no categories, is an error naming it.
pub fn plan(
    jails: &[Jail],
    choice: &Choice,
    config: &Config,
    ours: &BTreeSet<String>,
) -> Result<Plan, String> {
    let categories_of = |name: &str| {
        config
            .jail_categories
            .get(name)
            .cloned()
            .or_else(|| Categories::for_jail(name))
    };
    if let Choice::Named(names) = choice {
        for name in names {
            let Some(jail) = jails.iter().find(|j| &j.name == name) else {
                return Err(format!("jail {name} is not enabled in fail2ban"));
            };
            if categories_of(&jail.name).is_none() {
                return Err(no_categories_hint(name));
            }
        }
    }
    let mut plan = Plan::default();
    for jail in jails {
        let chosen = match choice {
            Choice::All => true,
            Choice::Named(names) => names.contains(&jail.name),
        };
        let already_ours = ours.contains(&jail.name);
        if jail.has_reportedip() && !already_ours {
            plan.wired_by_hand.push(jail.name.clone());
            continue;
        }
        if !(chosen || already_ours) {
            continue;
        }
        match categories_of(&jail.name) {
            Some(categories) => plan.wire.push((jail.name.clone(), categories)),
            None => plan.no_categories.push(jail.name.clone()),
        }
    }
    Ok(plan)
}

/// The line that gives `jail` categories, for the operator to add.
pub fn no_categories_hint(jail: &str) -> String {
    format!(
        "jail {jail} has no categories: add them to the config first, e.g.\n  [jail_categories]\n  \
         {jail} = \"18,21\"\n(reportedip-report categories lists them)"
    )
}

/// The drop-in for `plan`: each jail keeps what earlier files set and gains `reportedip`,
/// with the binary and the config named when they are not the packaged ones.
pub fn render_drop_in(plan: &Plan, bin: &Path, config: &Path) -> String {
    let mut args = Vec::new();
    if bin != Path::new(PACKAGED_BIN) {
        args.push(format!("reportedip_bin=\"{}\"", bin.display()));
    }
    if config != Path::new(DEFAULT_CONFIG_PATH) {
        args.push(format!("reportedip_config=\"{}\"", config.display()));
    }
    let action = match args.is_empty() {
        true => "reportedip".to_string(),
        false => format!("reportedip[{}]", args.join(", ")),
    };
    let mut text = String::from(HEADER);
    for (jail, _) in &plan.wire {
        text.push_str(&format!(
            "\n[{jail}]\naction = %(known/action)s\n         {action}\n"
        ));
    }
    text
}

/// The jails a drop-in of ours configures (its section names).
pub fn drop_in_jails(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix('[')?.strip_suffix(']'))
        .map(str::to_string)
        .collect()
}

/// The config with its key set to `key`, every other byte kept: the top-level `api_key`
/// line is replaced, or one is added before the first table.
pub fn with_key(config: &str, key: &str) -> String {
    let line = format!(
        "api_key = \"{}\"",
        key.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let mut out = String::with_capacity(config.len() + line.len() + 1);
    let mut done = false;
    let mut in_table = false;
    for piece in config.split_inclusive('\n') {
        let trimmed = piece.trim_start();
        if trimmed.starts_with('[') {
            if !done {
                out.push_str(&line);
                out.push('\n');
                done = true;
            }
            in_table = true;
        }
        let is_key_line = !in_table
            && trimmed
                .strip_prefix("api_key")
                .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_key_line && !done {
            out.push_str(&line);
            out.push_str(if piece.ends_with('\n') { "\n" } else { "" });
            done = true;
            continue;
        }
        out.push_str(piece);
    }
    if !done {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `fail2ban-client` for one configuration tree.
pub struct Fail2ban {
    pub client: PathBuf,
    pub dir: PathBuf,
}

/// What a `fail2ban-client` run said.
pub struct Said {
    pub ok: bool,
    pub output: String,
}

impl Fail2ban {
    pub fn new(dir: &Path) -> Self {
        Self {
            client: PathBuf::from("/usr/bin/fail2ban-client"),
            dir: dir.to_path_buf(),
        }
    }

    /// Whether there is a fail2ban to ask: its client and this configuration directory.
    pub fn installed(&self) -> bool {
        self.client.is_file() && self.dir.is_dir()
    }

    fn run(&self, args: &[&str]) -> Said {
        let output = Command::new(&self.client)
            .arg("-c")
            .arg(&self.dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output();
        match output {
            Ok(out) => Said {
                ok: out.status.success(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            },
            Err(err) => Said {
                ok: false,
                output: format!("cannot run {}: {err}", self.client.display()),
            },
        }
    }

    /// `fail2ban-client -t`: whether the configuration loads, and its last words if not.
    pub fn test(&self) -> Result<(), String> {
        let said = self.run(&["-t"]);
        match said.ok {
            true => Ok(()),
            false => Err(last_lines(&said.output, 3)),
        }
    }

    /// The enabled jails, from the configuration (works whether or not the server runs).
    pub fn jails(&self) -> Result<Vec<Jail>, String> {
        self.dump().map(|dump| parse_dump(&dump))
    }

    /// The configuration dump (`--dp`).
    pub fn dump(&self) -> Result<String, String> {
        let said = self.run(&["--dp"]);
        match said.ok {
            true => Ok(said.output),
            false => Err(last_lines(&said.output, 3)),
        }
    }

    pub fn running(&self) -> bool {
        self.run(&["ping"]).ok
    }

    /// Restarts the server the way the host does: systemd for the system's own tree where
    /// systemd runs, else the client.
    pub fn restart(&self) -> Result<(), String> {
        let system_tree = self.dir == Path::new("/etc/fail2ban");
        let said = if system_tree && Path::new("/run/systemd/system").exists() {
            let out = Command::new("systemctl")
                .args(["restart", "fail2ban"])
                .output();
            match out {
                Ok(out) => Said {
                    ok: out.status.success(),
                    output: String::from_utf8_lossy(&out.stderr).into_owned(),
                },
                Err(err) => Said {
                    ok: false,
                    output: err.to_string(),
                },
            }
        } else {
            self.run(&["restart"])
        };
        match said.ok {
            true => Ok(()),
            false => Err(last_lines(&said.output, 3)),
        }
    }

    /// The actions of a running jail.
    pub fn actions(&self, jail: &str) -> Result<Vec<String>, String> {
        let said = self.run(&["get", jail, "actions"]);
        if !said.ok {
            return Err(last_lines(&said.output, 2));
        }
        Ok(said
            .output
            .lines()
            .last()
            .unwrap_or_default()
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect())
    }
}

/// How `setup` was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    pub fail2ban_dir: PathBuf,
    pub jails: Option<String>,
    pub dry_run: bool,
    pub undo: bool,
    pub yes: bool,
    pub force: bool,
}

/// `setup`: key, jails, drop-in, test, restart, confirm; or `--undo`.
pub fn run(options: &Options, clock: Clock) -> Result<u8, Error> {
    // fail2ban runs the action from its own directory: the config is named absolutely.
    let options = &Options {
        config_path: std::path::absolute(&options.config_path)
            .unwrap_or_else(|_| options.config_path.clone()),
        ..options.clone()
    };
    let f2b = Fail2ban::new(&options.fail2ban_dir);
    let drop_in = options.fail2ban_dir.join(DROP_IN);
    let previous = read_drop_in(&drop_in)?;
    if options.undo {
        return undo(&f2b, &drop_in, previous);
    }
    let config = crate::config::load(&options.config_path, Ok(None), true)?;
    let new_key = match options.dry_run {
        true => None,
        false => read_key(&options.config_path)?,
    };
    if !options.dry_run {
        let key = new_key
            .clone()
            .or_else(|| config.api_key.clone())
            .ok_or_else(|| {
                failed(
                    format!(
                        "no API key: give it on standard input (echo KEY | reportedip-report \
                         setup), or set api_key in {}",
                        options.config_path.display()
                    ),
                    exit::CONFIG,
                )
            })?;
        verify(&config, key, clock)?;
    }
    if let Err(why) = f2b.test()
        && !options.force
    {
        return Err(failed(
            format!(
                "fail2ban's configuration in {} fails its own test already, before any change:\n{why}\n\
                 Fix it (or run setup --force to wire the jails anyway)",
                options.fail2ban_dir.display()
            ),
            exit::REJECTED,
        ));
    }
    let jails = f2b.jails().map_err(|why| {
        failed(
            format!("cannot read fail2ban's configuration: {why}"),
            exit::SYSTEM,
        )
    })?;
    let ours = previous.as_deref().map(drop_in_jails).unwrap_or_default();
    let choice = Choice::parse(options.jails.as_deref());
    let plan = plan(&jails, &choice, &config, &ours).map_err(|why| failed(why, exit::USAGE))?;
    show_plan(&plan, &jails);
    let bin = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(PACKAGED_BIN));
    let text = render_drop_in(&plan, &bin, &options.config_path);
    if options.dry_run {
        say(&format!("\n{} would be:\n\n{text}", drop_in.display()));
        return Ok(exit::OK);
    }
    if plan.wire.is_empty() {
        say("no jail to wire; nothing changed");
        return Ok(exit::OK);
    }
    let key_changes = new_key
        .as_ref()
        .is_some_and(|key| config.api_key.as_ref().map(SecretString::expose) != Some(key.expose()));
    if previous.as_deref() == Some(text.as_str()) && !key_changes {
        say("fail2ban is wired already; nothing changed");
        return Ok(exit::OK);
    }
    if !confirmed(options)? {
        say("nothing changed");
        return Ok(exit::OK);
    }
    write_drop_in(&drop_in, &text)?;
    if let Err(why) = f2b.test() {
        restore(&drop_in, previous.as_deref())?;
        return Err(failed(
            format!(
                "with the drop-in, fail2ban's configuration test fails; nothing was changed:\n{why}"
            ),
            exit::REJECTED,
        ));
    }
    if let Some(key) = &new_key {
        write_key(&options.config_path, key)?;
        say(&format!(
            "API key written to {}",
            options.config_path.display()
        ));
    }
    let wired: Vec<String> = plan.wire.iter().map(|(jail, _)| jail.clone()).collect();
    if let Err(why) = restart_and_confirm(&f2b, &wired, true) {
        restore(&drop_in, previous.as_deref())?;
        let again = restart_and_confirm(&f2b, &[], true).map_or_else(
            |e| format!("; restarting it again failed too: {e}"),
            |()| String::new(),
        );
        return Err(failed(
            format!("{why}; the previous jail files are back{again}"),
            exit::SYSTEM,
        ));
    }
    say(&format!("wrote {}", drop_in.display()));
    Ok(exit::OK)
}

/// Shows each enabled jail and what becomes of it.
fn show_plan(plan: &Plan, jails: &[Jail]) {
    for jail in jails {
        let line = if let Some((_, categories)) = plan.wire.iter().find(|(j, _)| j == &jail.name) {
            format!("  {:<20} categories {categories}", jail.name)
        } else if plan.wired_by_hand.contains(&jail.name) {
            format!(
                "  {:<20} has the reportedip action already (set by hand); left alone",
                jail.name
            )
        } else if plan.no_categories.contains(&jail.name) {
            format!(
                "  {:<20} skipped: {}",
                jail.name,
                no_categories_hint(&jail.name)
            )
        } else {
            format!("  {:<20} not chosen", jail.name)
        };
        say(&line);
    }
}

/// Restarts fail2ban when it runs and checks that every jail of `wired` lists the action; a
/// fail2ban that is not running is left stopped, and said.
fn restart_and_confirm(
    f2b: &Fail2ban,
    wired: &[String],
    quiet_if_stopped: bool,
) -> Result<(), String> {
    if !f2b.running() {
        if quiet_if_stopped {
            say("fail2ban is not running: left stopped; the jails get the action when it starts");
        }
        return Ok(());
    }
    f2b.restart()
        .map_err(|why| format!("fail2ban did not restart: {why}"))?;
    for jail in wired {
        let actions = f2b
            .actions(jail)
            .map_err(|why| format!("fail2ban does not confirm jail {jail}: {why}"))?;
        if !actions.iter().any(|a| a == "reportedip") {
            return Err(format!(
                "after the restart, jail {jail} has the actions {} but not reportedip",
                actions.join(", ")
            ));
        }
        say(&format!("  {jail}: {}", actions.join(", ")));
    }
    Ok(())
}

/// `setup --undo`: our drop-in goes, fail2ban is tested and restarted (if it runs).
fn undo(f2b: &Fail2ban, drop_in: &Path, previous: Option<String>) -> Result<u8, Error> {
    let Some(previous) = previous else {
        say(&format!(
            "{} is not there; nothing to undo",
            drop_in.display()
        ));
        return Ok(exit::OK);
    };
    std::fs::remove_file(drop_in).map_err(|err| {
        failed(
            format!("cannot remove {}: {err}", drop_in.display()),
            exit::SYSTEM,
        )
    })?;
    if let Err(why) = f2b.test() {
        say(&format!(
            "warning: fail2ban's configuration test fails without the drop-in: {why}"
        ));
    }
    if !f2b.running() {
        say(&format!(
            "removed {}; fail2ban is not running: left stopped",
            drop_in.display()
        ));
        return Ok(exit::OK);
    }
    f2b.restart().map_err(|why| {
        failed(
            format!(
                "removed {}, but fail2ban did not restart: {why}",
                drop_in.display()
            ),
            exit::SYSTEM,
        )
    })?;
    for jail in drop_in_jails(&previous) {
        if let Ok(actions) = f2b.actions(&jail)
            && actions.iter().any(|a| a == "reportedip")
        {
            say(&format!(
                "  {jail} still has reportedip (set elsewhere, by hand)"
            ));
        }
    }
    say(&format!(
        "removed {}; fail2ban restarted",
        drop_in.display()
    ));
    Ok(exit::OK)
}

fn read_drop_in(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(failed(
            format!("cannot read {}: {err}", path.display()),
            exit::SYSTEM,
        )),
    }
}

fn write_drop_in(path: &Path, text: &str) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|err| {
            failed(
                format!("cannot create {}: {err}", dir.display()),
                exit::SYSTEM,
            )
        })?;
    }
    crate::fsio::write_atomic_mode(path, text.as_bytes(), 0o644).map_err(|err| {
        failed(
            format!("cannot write {}: {err}", path.display()),
            exit::SYSTEM,
        )
    })
}

/// Puts the drop-in back as it was (or removes it, if there was none).
fn restore(path: &Path, previous: Option<&str>) -> Result<(), Error> {
    match previous {
        Some(text) => write_drop_in(path, text),
        None => match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(failed(
                format!("cannot remove {}: {err}", path.display()),
                exit::SYSTEM,
            )),
            _ => Ok(()),
        },
    }
}

/// The key from standard input when it is not a terminal, else from a prompt without echo;
/// `None` when none was given (the configured one stays). Never from an argument.
fn read_key(config_path: &Path) -> Result<Option<SecretString>, Error> {
    let stdin = std::io::stdin();
    let text = if stdin.is_terminal() {
        rpassword::prompt_password("ReportedIP API key (Enter keeps the configured one): ")
            .map_err(|err| failed(format!("cannot read the key: {err}"), exit::USAGE))?
    } else {
        let mut text = String::new();
        stdin
            .lock()
            .take(4096)
            .read_to_string(&mut text)
            .map_err(|err| failed(format!("cannot read the key: {err}"), exit::USAGE))?;
        text
    };
    let key = text.trim();
    if key.is_empty() {
        return Ok(None);
    }
    crate::config::checked_key(config_path, key.to_string())
        .map(Some)
        .map_err(Error::Config)
}

/// The key must be valid and allowed to report, judged as `verify-key` judges it.
fn verify(config: &Config, key: SecretString, clock: Clock) -> Result<(), Error> {
    let client = Client::new(config, key);
    let info = client.verify_key(clock()).map_err(|failure| {
        failed(
            format!(
                "the key could not be verified; nothing was changed: {}",
                failure.reason(&config.path)
            ),
            failure.status().exit_code(),
        )
    })?;
    let problems = crate::views::KeyView::problems(&info);
    if !problems.is_empty() {
        return Err(failed(
            format!("{}; nothing was changed", problems.join("; ")),
            exit::KEY,
        ));
    }
    say(&format!(
        "key verified: {}",
        info.key_name.as_deref().unwrap_or("(no name)")
    ));
    Ok(())
}

/// Writes the key into the config, changing only its `api_key` line; mode 0600.
fn write_key(path: &Path, key: &SecretString) -> Result<(), Error> {
    let current = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => {
            return Err(failed(
                format!("cannot read {}: {err}", path.display()),
                exit::CONFIG,
            ));
        }
    };
    crate::fsio::write_atomic(path, with_key(&current, key.expose()).as_bytes()).map_err(|err| {
        failed(
            format!("cannot write {}: {err}", path.display()),
            exit::CONFIG,
        )
    })
}

/// Asks before changing anything when a person is there to answer.
fn confirmed(options: &Options) -> Result<bool, Error> {
    if options.yes || !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    let _ = write!(
        std::io::stdout().lock(),
        "Write {} and restart fail2ban? [y/N] ",
        options.fail2ban_dir.join(DROP_IN).display()
    );
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|err| failed(format!("cannot read the answer: {err}"), exit::USAGE))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "['set', 'loglevel', 'INFO']\n['add', 'sshd', 'polling']\n\
        ['set', 'sshd', 'addaction', 'dummy']\n['multi-set', 'sshd', 'action', 'dummy', []]\n\
        ['add', 'webapp', 'auto']\n['add', 'nginx-http-auth', 'auto']\n\
        ['set', 'nginx-http-auth', 'addaction', 'iptables-multiport']\n\
        ['set', 'nginx-http-auth', 'addaction', 'reportedip']\n['start', 'sshd']\n";

    fn config() -> Config {
        Config::defaults(Path::new(DEFAULT_CONFIG_PATH))
    }

    #[test]
    fn the_dump_gives_enabled_jails_and_their_actions() {
        let jails = parse_dump(DUMP);
        let names: Vec<&str> = jails.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["sshd", "webapp", "nginx-http-auth"]);
        assert_eq!(jails[0].actions, ["dummy"]);
        assert!(jails[2].has_reportedip());
    }

    #[test]
    fn the_plan_table() {
        let jails = parse_dump(DUMP);
        let none = BTreeSet::new();
        // All: sshd has categories, webapp none, nginx-http-auth wired by hand.
        let plan = plan(&jails, &Choice::All, &config(), &none).unwrap();
        assert_eq!(plan.wire.len(), 1);
        assert_eq!(plan.wire[0].0, "sshd");
        assert_eq!(plan.wire[0].1.to_string(), "18,22");
        assert_eq!(plan.no_categories, ["webapp"]);
        assert_eq!(plan.wired_by_hand, ["nginx-http-auth"]);
        // Named: an unknown jail and one without categories are refused by name.
        let err = super::plan(&jails, &Choice::parse(Some("recidive")), &config(), &none);
        assert!(err.unwrap_err().contains("recidive is not enabled"));
        let err = super::plan(&jails, &Choice::parse(Some("webapp")), &config(), &none);
        assert!(err.unwrap_err().contains("webapp = \"18,21\""));
        // A jail of our drop-in stays in it when another is added.
        let ours = BTreeSet::from(["sshd".to_string()]);
        let mut with_ours = jails.clone();
        with_ours[0].actions.push("reportedip".into());
        let mut cfg = config();
        cfg.jail_categories
            .insert("webapp".into(), Categories::parse("21").unwrap());
        let plan = super::plan(&with_ours, &Choice::parse(Some("webapp")), &cfg, &ours).unwrap();
        let wired: Vec<&str> = plan.wire.iter().map(|(j, _)| j.as_str()).collect();
        assert_eq!(wired, ["sshd", "webapp"]);
    }

    #[test]
    fn the_drop_in_keeps_each_jails_actions_and_names_what_is_not_packaged() {
        let plan = Plan {
            wire: vec![("sshd".into(), Categories::parse("18,22").unwrap())],
            ..Plan::default()
        };
        let packaged = render_drop_in(
            &plan,
            Path::new(PACKAGED_BIN),
            Path::new(DEFAULT_CONFIG_PATH),
        );
        assert!(packaged.ends_with("\n[sshd]\naction = %(known/action)s\n         reportedip\n"));
        let other = render_drop_in(&plan, Path::new("/opt/r"), Path::new("/etc/r.toml"));
        assert!(
            other.contains(
                "reportedip[reportedip_bin=\"/opt/r\", reportedip_config=\"/etc/r.toml\"]"
            )
        );
        assert_eq!(drop_in_jails(&other), BTreeSet::from(["sshd".to_string()]));
    }

    #[test]
    fn the_key_line_is_replaced_and_nothing_else_changes() {
        let cases = [
            (
                "# mine\napi_key = \"PASTE-YOUR-API-KEY-HERE\"\n\n# api_url = \"x\"\ntimeout = 5\n",
                "# mine\napi_key = \"k-1\"\n\n# api_url = \"x\"\ntimeout = 5\n",
            ),
            ("timeout = 5\n", "timeout = 5\napi_key = \"k-1\"\n"),
            (
                "timeout = 5\n[jail_categories]\napi_key = \"18\"\n",
                "timeout = 5\napi_key = \"k-1\"\n[jail_categories]\napi_key = \"18\"\n",
            ),
            ("", "api_key = \"k-1\"\n"),
            (
                "# api_key = \"old\"\napi_key=\"old\"",
                "# api_key = \"old\"\napi_key = \"k-1\"",
            ),
        ];
        for (before, after) in cases {
            assert_eq!(with_key(before, "k-1"), after, "{before:?}");
        }
    }

    #[test]
    fn every_jails_ignoreip_comes_from_the_dump() {
        let dump = "['set', 'sshd', 'addignoreip', '127.0.0.1/8', '::1']\n\
                    ['set', 'webapp', 'addignoreip', '203.0.113.7']\n['add', 'x', 'auto']\n";
        assert_eq!(parse_ignoreip(dump), ["127.0.0.1/8", "::1", "203.0.113.7"]);
    }

    #[test]
    fn jails_argument() {
        assert_eq!(Choice::parse(None), Choice::All);
        assert_eq!(Choice::parse(Some("all")), Choice::All);
        assert_eq!(
            Choice::parse(Some("sshd, recidive")),
            Choice::Named(vec!["sshd".into(), "recidive".into()])
        );
    }
}
