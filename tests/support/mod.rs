//! Shared harness: a temp dir with a 0600 config pointing at a fresh fake API, and a runner
//! for the real binary with a hard time limit.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod fake_api;
pub mod tls;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use fake_api::{FakeApi, Reply, Request};

pub const BIN: &str = env!("CARGO_BIN_EXE_reportedip-report");
pub const KEY: &str = "test-key-4f1c9a7e2b";
/// The `timeout` of the test config, in seconds.
pub const TIMEOUT_SECS: u64 = 2;

/// The longest a request may take: `timeout`, and the 1 s watchdog beyond it.
pub fn deadline() -> Duration {
    Duration::from_secs(TIMEOUT_SECS + 1)
}

/// A bound well under `timeout`, for what must never wait for the network.
pub fn well_under_timeout() -> Duration {
    Duration::from_secs(TIMEOUT_SECS) / 2
}
/// No command of the binary may take longer than this in any test.
const RUN_LIMIT: Duration = Duration::from_secs(30);
/// How long a background sender waits for more reports in tests (the product waits 1 s).
pub const TEST_LINGER_MS: &str = "200";
const STATUS_POLL: Duration = Duration::from_millis(20);

/// A directory removed when dropped.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("reportedip-test-{tag}-"))
            .tempdir()
            .unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

pub struct Run {
    /// The command line, for failure messages.
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Asserts the exit code; on failure, shows the command, its output and the code.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert!(
            self.code == code,
            "expected exit {code}, got {}\ncommand: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.command,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts that stdout and stderr together contain `text`, showing both if not.
    #[track_caller]
    pub fn expect_said(&self, text: &str) -> &Self {
        assert!(
            self.all_output().contains(text),
            "wanted {text:?}\ncommand: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    pub fn all_output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

pub struct TestEnv {
    pub dir: TempDir,
    pub api: FakeApi,
    extra_env: Vec<(String, String)>,
}

impl TestEnv {
    /// A config with the test key, the fake's URL and a private state dir.
    pub fn new(tag: &str) -> Self {
        Self::with_api(tag, FakeApi::start())
    }

    pub fn with_api(tag: &str, api: FakeApi) -> Self {
        let env = Self {
            dir: TempDir::new(tag),
            api,
            extra_env: Vec::new(),
        };
        env.write_config("");
        env
    }

    /// A fake that gives every request the same answer.
    pub fn answering(tag: &str, reply: Reply) -> Self {
        Self::with_api(tag, FakeApi::start_with(move |_, _| reply.clone()))
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("reportedip.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The state_dir of a config that names none, and where bans wait while no config can
    /// be read.
    pub fn default_state_dir(&self) -> PathBuf {
        self.dir.path().join("default-state")
    }

    /// Where report files wait for the next sender to import them (the inbox).
    pub fn spool_dir(&self) -> PathBuf {
        self.state_dir().join("inbox")
    }

    /// The state database, created (as any run creates it) if it is not there yet.
    pub fn db(&self) -> rusqlite::Connection {
        if !self.state_dir().join("state.db").exists() {
            let run = self.run(&["upgrade-state"]);
            assert_eq!(run.code, 0, "upgrade-state: {}", run.all_output());
        }
        let conn = rusqlite::Connection::open(self.state_dir().join("state.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn
    }

    /// Runs SQL statements on the state database.
    pub fn sql(&self, statements: &str) {
        self.db().execute_batch(statements).unwrap();
    }

    /// One number from the state database.
    pub fn sql_count(&self, query: &str) -> u64 {
        if !self.state_dir().join("state.db").exists() {
            return 0;
        }
        self.db().query_row(query, [], |row| row.get(0)).unwrap()
    }

    /// The standard config plus `extra` lines (which may override nothing already set).
    pub fn write_config(&self, extra: &str) {
        let text = format!(
            "api_key = \"{KEY}\"\napi_url = \"{}\"\nstate_dir = \"{}\"\nsyslog = false\ntimeout = {TIMEOUT_SECS}\n{extra}\n",
            self.api.url(),
            self.state_dir().display()
        );
        self.write_raw_config(&text, 0o600);
    }

    pub fn write_raw_config(&self, text: &str, mode: u32) {
        let path = self.config_path();
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.to_string(), value.to_string()));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(self.config_path()).args(args);
        cmd.env_remove("REPORTEDIP_API_KEY")
            .env_remove("REPORTEDIP_CONFIG")
            .env_remove("REPORTEDIP_SYSLOG_SOCKET")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env("REPORTEDIP_SENDER_LINGER_MS", TEST_LINGER_MS)
            .env("REPORTEDIP_RUNTIME_DIR", self.dir.path().join("run"))
            .env("REPORTEDIP_STATE_DIR", self.default_state_dir());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_command(self.command(args))
    }

    /// `report --queue --categories 18 -- IP`: a ban as the shipped action reports it.
    pub fn queue(&self, ip: &str) -> Run {
        self.run(&["report", "--queue", "--categories", "18", "--", ip])
    }

    /// Reports waiting: rows of the spool and files in the inbox.
    pub fn spooled(&self) -> usize {
        let files = fs::read_dir(self.spool_dir()).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    name.ends_with(".json") && !name.starts_with('.')
                })
                .count()
        });
        files + self.sql_count("SELECT count(*) FROM spool") as usize
    }

    /// The state row as a JSON object, with the cooldown table as `{ip: {category: at}}`.
    pub fn state(&self) -> serde_json::Value {
        if !self.state_dir().join("state.db").exists() {
            return serde_json::Value::Null;
        }
        let db = self.db();
        let mut stmt = db.prepare("SELECT * FROM state").unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|n| n.to_string()).collect();
        let mut state = stmt
            .query_row([], |row| {
                let mut object = serde_json::Map::new();
                for (index, name) in names.iter().enumerate() {
                    let value = match row.get_ref(index)? {
                        rusqlite::types::ValueRef::Integer(n) => serde_json::json!(n),
                        rusqlite::types::ValueRef::Text(t) => {
                            serde_json::json!(String::from_utf8_lossy(t))
                        }
                        _ => serde_json::Value::Null,
                    };
                    object.insert(name.clone(), value);
                }
                Ok(serde_json::Value::Object(object))
            })
            .unwrap();
        let mut cooldown = serde_json::Map::new();
        let mut stmt = db.prepare("SELECT ip, category, at FROM cooldown").unwrap();
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, u8>(1)?,
                    row.get::<_, u64>(2)?,
                ))
            })
            .unwrap();
        for row in rows {
            let (ip, category, at) = row.unwrap();
            cooldown.entry(ip).or_insert_with(|| serde_json::json!({}))[category.to_string()] =
                at.into();
        }
        state["cooldown"] = serde_json::Value::Object(cooldown);
        state
    }

    /// Ends the backoff window, as if its time had passed.
    pub fn end_backoff(&self) {
        self.set_backoff_until(0);
    }

    /// Moves the end of the backoff window (UNIX seconds), as the clock would.
    pub fn set_backoff_until(&self, at: u64) {
        self.sql(&format!(
            "UPDATE state SET backoff_until = {at}, backoff_granted = 3600, \
             backoff_reason = coalesce(backoff_reason, 'test')"
        ));
    }

    /// What `status --json` says now.
    pub fn status(&self) -> serde_json::Value {
        self.run(&["status", "--json"]).json()
    }

    /// Waits (bounded) until `status --json` satisfies `done`, and returns that status.
    pub fn wait_status(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + RUN_LIMIT;
        loop {
            let status = self.status();
            if done(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "never {what}: {status}");
            std::thread::sleep(STATUS_POLL);
        }
    }

    /// Waits (bounded) until no background sender is at work, as `status` reports it.
    pub fn wait_sender_idle(&self) -> serde_json::Value {
        self.wait_status("idle", |status| status["sender_running"] == false)
    }

    /// Waits (bounded) until the spool is empty and no sender is at work.
    pub fn wait_delivered(&self) -> serde_json::Value {
        self.wait_status("delivered", |status| {
            status["sender_running"] == false && status["waiting"] == 0
        })
    }
}

/// Runs a command with `input` on its standard input (a pipe, not a terminal).
pub fn run_with_input(mut cmd: Command, input: &str) -> Run {
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), input).unwrap();
    cmd.stdin(fs::File::open(file.path()).unwrap());
    run_inner(cmd)
}

/// Runs a command with no stdin and a hard limit; a run that overstays is killed and fails.
pub fn run_command(mut cmd: Command) -> Run {
    cmd.stdin(Stdio::null());
    run_inner(cmd)
}

fn run_inner(mut cmd: Command) -> Run {
    let command = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn binary");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output: Output = match rx.recv_timeout(RUN_LIMIT) {
        Ok(result) => result.expect("wait for binary"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("binary ran longer than {RUN_LIMIT:?}");
        }
    };
    Run {
        command,
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// Whether a real fail2ban is installed for the end-to-end tests; panics when `REPORTEDIP_E2E=1`
/// (set by `.ci/run`) says they must run and it is missing, else says SKIPPED.
pub fn fail2ban_available(test: &str) -> bool {
    const SERVER: &str = "/usr/bin/fail2ban-server";
    if Path::new(SERVER).exists() && Path::new("/usr/bin/fail2ban-client").exists() {
        return true;
    }
    if std::env::var("REPORTEDIP_E2E").as_deref() == Ok("1") {
        panic!("REPORTEDIP_E2E=1 but {SERVER} is missing: apt-get install fail2ban");
    }
    // Straight to stderr: libtest hides eprintln! output of passing tests.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {SERVER} not installed (apt-get install fail2ban)"
    );
    false
}

/// Waits up to 15 s for a process that was asked to stop (a fail2ban server) to be gone,
/// then kills it: no test leaves a server behind.
pub fn wait_exit_or_kill(pid: u32) {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while proc_dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if proc_dir.exists() {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
}

/// A private fail2ban configuration tree under `t` (as shared/fail2ban-testing.md describes):
/// `run/` for the socket and pidfile, `conf/fail2ban.conf` with its own log and `dbfile`
/// (`:memory:`, or a file name under `t`), Debian's filters, the `dummy` action and this
/// repository's action. The caller writes the jails.
pub fn fail2ban_tree(t: &Path, dbfile: &str) {
    fs::create_dir_all(t.join("run")).unwrap();
    fs::create_dir_all(t.join("conf/action.d")).unwrap();
    fs::create_dir_all(t.join("conf/filter.d")).unwrap();
    let db = match dbfile {
        ":memory:" => dbfile.to_string(),
        file => t.join(file).display().to_string(),
    };
    fs::write(
        t.join("conf/fail2ban.conf"),
        format!(
            "[DEFAULT]\nloglevel = INFO\nlogtarget = {t}/f2b.log\nsocket = {t}/run/f2b.sock\n\
             pidfile = {t}/run/f2b.pid\ndbfile = {db}\n\n[Definition]\nallowipv6 = auto\n\
             syslogsocket = auto\n",
            t = t.display()
        ),
    )
    .unwrap();
    for entry in fs::read_dir("/etc/fail2ban/filter.d").unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(
                entry.path(),
                t.join("conf/filter.d").join(entry.file_name()),
            )
            .unwrap();
        }
    }
    fs::copy(
        "/etc/fail2ban/action.d/dummy.conf",
        t.join("conf/action.d/dummy.conf"),
    )
    .unwrap();
    fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/action.d/reportedip.conf"),
        t.join("conf/action.d/reportedip.conf"),
    )
    .unwrap();
}

/// UNIX seconds now, to compare against timestamps the binary writes.
pub fn epoch_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
