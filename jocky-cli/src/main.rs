//! `jocky`: look into a jocky folder from the shell.
//!
//! Each subcommand lives in its own module; `main` only parses the command line,
//! runs the subcommand and turns an error into a message and exit code 1.

mod open;
mod stats;
mod tenants;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Look into a jocky folder (a tantivy index kept in one append-only container).
#[derive(Debug, Parser)]
#[command(name = "jocky", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the tenants of a multi-tenant store, one per line.
    Tenants {
        /// The store's folder.
        dir: PathBuf,
    },
    /// Print the counters of an index folder (files, bytes, fsyncs, fds).
    Stats {
        /// The index folder.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Tenants { dir } => tenants::run(dir),
        Command::Stats { dir } => stats::run(dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jocky: {e}");
            ExitCode::FAILURE
        }
    }
}
