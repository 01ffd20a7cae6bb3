use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use reportedip_report::cli::{self, Cli};
use reportedip_report::log::Logger;
use reportedip_report::outcome::exit;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // `report` promises fail2ban exit 0 whatever happens, unless --strict asks otherwise.
    let report_strict = cli::report_invocation(&args);
    if let Some(strict) = report_strict {
        let code = if strict { exit::KEPT } else { exit::OK };
        std::panic::set_hook(Box::new(move |info| {
            eprintln!("reportedip-report: internal error, report not sent: {info}");
            std::process::exit(i32::from(code));
        }));
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                return ExitCode::SUCCESS;
            }
            if report_strict.is_some() {
                // fail2ban hides a report's output at its default log level: say in syslog
                // why this ban was not reported.
                let why = err.kind().as_str().unwrap_or("invalid arguments");
                Logger::new(false, true).error(&format!("ban not reported: {why}"));
            }
            return match report_strict {
                Some(false) => ExitCode::SUCCESS,
                _ => ExitCode::from(exit::USAGE),
            };
        }
    };
    let json = cli.wants_json();
    match reportedip_report::run(cli, reportedip_report::clock::now) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            err.print(json);
            ExitCode::from(err.exit_code())
        }
    }
}
