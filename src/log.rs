//! Outcome lines: to stderr for the caller, and to syslog (ident `reportedip-report`) so that
//! failures fail2ban hides at its default log level still reach the journal.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use crate::validate::is_unsafe_char;

pub const SYSLOG_IDENT: &str = "reportedip-report";
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";
/// Overrides the syslog socket path (used by the tests).
pub const SYSLOG_SOCKET_ENV: &str = "REPORTEDIP_SYSLOG_SOCKET";

/// Facility `daemon`.
const FACILITY: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error = 3,
    Warning = 4,
    Info = 6,
}

#[derive(Debug, Clone, Default)]
pub struct Logger {
    to_stderr: bool,
    syslog: Option<PathBuf>,
}

impl Logger {
    /// `to_stderr` is off for the detached sender, whose stderr is /dev/null.
    pub fn new(to_stderr: bool, syslog: bool) -> Self {
        let socket = std::env::var_os(SYSLOG_SOCKET_ENV)
            .map_or_else(|| PathBuf::from(DEFAULT_SYSLOG_SOCKET), PathBuf::from);
        Self {
            to_stderr,
            syslog: syslog.then_some(socket),
        }
    }

    pub fn info(&self, line: &str) {
        self.emit(Level::Info, line);
    }

    pub fn warn(&self, line: &str) {
        self.emit(Level::Warning, line);
    }

    pub fn error(&self, line: &str) {
        self.emit(Level::Error, line);
    }

    pub fn emit(&self, level: Level, line: &str) {
        // Whatever went into the line, it stays one line, read as written.
        let line: String = line
            .chars()
            .map(|c| if is_unsafe_char(c) { ' ' } else { c })
            .collect();
        let line = line.as_str();
        if self.to_stderr {
            let prefix = match level {
                Level::Warning => "warning: ",
                Level::Error | Level::Info => "",
            };
            // A closed stderr must not turn into a failure of the report.
            let _ = writeln!(std::io::stderr().lock(), "{prefix}{line}");
        }
        if let Some(socket) = &self.syslog {
            send_syslog(socket, level, line);
        }
    }
}

/// Best effort: no syslog daemon, or a full socket buffer, is not an error.
fn send_syslog(socket: &PathBuf, level: Level, line: &str) {
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let _ = sock.set_nonblocking(true);
    let message = format_syslog(level, std::process::id(), line);
    let _ = sock.send_to(message.as_bytes(), socket);
}

/// The local /dev/log form (RFC 3164 without a timestamp, which the daemon adds).
fn format_syslog(level: Level, pid: u32, line: &str) -> String {
    let priority = FACILITY * 8 + level as u8;
    format!("<{priority}>{SYSLOG_IDENT}[{pid}]: {line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_carry_facility_severity_and_ident() {
        assert_eq!(
            format_syslog(Level::Info, 42, "reported 1.2.3.4"),
            "<30>reportedip-report[42]: reported 1.2.3.4"
        );
        assert_eq!(
            format_syslog(Level::Error, 1, "x"),
            "<27>reportedip-report[1]: x"
        );
        assert_eq!(
            format_syslog(Level::Warning, 1, "x"),
            "<28>reportedip-report[1]: x"
        );
    }
}
