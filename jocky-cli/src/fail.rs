//! How a subcommand ends, and the exit code for it.

use std::process::ExitCode;

/// What a subcommand returns.
pub type Outcome = Result<(), Fail>;

/// Why a subcommand did not succeed.
#[derive(Debug)]
pub enum Fail {
    /// An error: printed as `jocky: MESSAGE` on stderr, exit code 1.
    Error(String),
    /// `verify` found damage (already reported on stdout): exit code 3.
    Damaged,
    /// Whoever read stdout went away (`jocky dump DIR | head`): exit code 1,
    /// nothing more printed.
    BrokenPipe,
}

impl From<String> for Fail {
    fn from(message: String) -> Fail {
        Fail::Error(message)
    }
}

impl From<std::io::Error> for Fail {
    /// An error writing to stdout.
    fn from(e: std::io::Error) -> Fail {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Fail::BrokenPipe
        } else {
            Fail::Error(format!("cannot write to stdout: {e}"))
        }
    }
}

/// Shorthand for an error message.
pub fn error<T>(message: impl Into<String>) -> Result<T, Fail> {
    Err(Fail::Error(message.into()))
}

/// The exit code of an outcome (printing the error, if any).
pub fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Error(message)) => {
            eprintln!("jocky: {message}");
            ExitCode::from(1)
        }
        Err(Fail::Damaged) => ExitCode::from(3),
        Err(Fail::BrokenPipe) => ExitCode::from(1),
    }
}
