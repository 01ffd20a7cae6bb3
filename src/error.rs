//! The one error type of the binary: every command returns `Result<u8, Error>`, and `main`
//! prints the error once, in the form the command's output has (a line on stderr, or a JSON
//! object on stdout with `--json`), and exits with its code.

use std::io::Write;

use serde_json::json;
use thiserror::Error;

use crate::config::ConfigError;
use crate::outcome::exit;
use crate::store::StoreError;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state store could not be opened or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state could not be read (`status`).
    #[error("{0}")]
    StateUnreadable(String),
    /// Invalid input on the command line.
    #[error("{0}")]
    Usage(String),
    /// A request that did not work; `code` is its exit status (SPEC §5).
    #[error("{message}")]
    Failed { message: String, code: u8 },
}

/// A request that did not work, with its exit status.
pub fn failed(message: impl Into<String>, code: u8) -> Error {
    Error::Failed {
        message: message.into(),
        code,
    }
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::Store(StoreError::Untrusted { .. } | StoreError::Unusable { .. }) => {
                exit::CONFIG
            }
            Error::Store(StoreError::Unreadable { .. }) | Error::StateUnreadable(_) => exit::STATE,
            Error::Store(_) => exit::KEPT,
            Error::Usage(_) => exit::USAGE,
            Error::Failed { code, .. } => *code,
        }
    }

    /// The error as the command shows it: a JSON object for `--json`, else the message.
    pub fn render(&self, json: bool) -> String {
        if json {
            json!({ "error": self.to_string(), "exit_code": self.exit_code() }).to_string()
        } else {
            self.to_string()
        }
    }

    /// Prints the error where its form goes (JSON to stdout, text to stderr).
    pub fn print(&self, json: bool) {
        let text = self.render(json);
        let _ = if json {
            writeln!(std::io::stdout().lock(), "{text}")
        } else {
            writeln!(std::io::stderr().lock(), "{text}")
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn each_error_has_its_exit_code_and_both_forms() {
        let cases = [
            (
                Error::Config(ConfigError::MissingKey {
                    path: PathBuf::from("/c"),
                }),
                exit::CONFIG,
            ),
            (Error::Usage("bad".into()), exit::USAGE),
            (Error::StateUnreadable("no".into()), exit::STATE),
            (
                Error::Store(StoreError::Busy {
                    path: PathBuf::from("/s"),
                }),
                exit::KEPT,
            ),
            (
                Error::Failed {
                    message: "x".into(),
                    code: exit::KEY,
                },
                exit::KEY,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error:?}");
            let json: serde_json::Value = serde_json::from_str(&error.render(true)).unwrap();
            assert_eq!(json["exit_code"], code);
            assert_eq!(json["error"], error.to_string());
            assert_eq!(error.render(false), error.to_string());
        }
    }
}
