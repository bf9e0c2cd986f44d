//! `jocky`: look into, check, maintain and convert a jocky folder from the shell.
//!
//! Each subcommand lives in its own module; `main` only parses the command line,
//! runs the subcommand and turns its outcome into an exit code:
//! 0 success, 1 error (message on stderr), 2 bad arguments (clap),
//! 3 `verify` found damage.

mod cat;
mod convert;
mod dump;
mod fail;
mod inspect;
mod ls;
mod maintain;
mod open;
mod out;
mod progress;
mod rm_tenant;
mod stats;
mod tenants;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use fail::{Fail, Outcome};

/// Look into, check, maintain and convert a jocky folder (a tantivy index, or a
/// store of many, kept in one append-only container).
///
/// Read-only commands (inspect, verify, ls, cat, dump, tenants, stats) take no
/// lock and write nothing: they work on the folder of a running server.
///
/// Exit codes: 0 success, 1 error, 2 bad arguments, 3 `verify` found damage.
#[derive(Debug, Parser)]
#[command(name = "jocky", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a folder holds: format version, container files (live and dead
    /// bytes), segment files, virtual files and tenants. Read-only.
    Inspect {
        /// The jocky folder.
        dir: PathBuf,
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Check every container record, every segment file and tantivy's footer
    /// checksums of every index or tenant; name each damaged file and offset.
    /// Exits 3 on any damage. Read-only; drops what it read from the page cache afterwards.
    Verify {
        /// The jocky folder.
        dir: PathBuf,
        /// Print one JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// List the virtual files (the files tantivy wrote). Read-only.
    Ls {
        /// The jocky folder.
        dir: PathBuf,
        /// Only this tenant's files (default: the plain index, or every tenant
        /// of a store with a tenant column).
        #[arg(long, short)]
        tenant: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write one virtual file's raw bytes to stdout. Read-only.
    Cat {
        /// The jocky folder.
        dir: PathBuf,
        /// The file's path inside the index (as `ls` shows it).
        path: PathBuf,
        /// The tenant holding it (default: the plain index).
        #[arg(long, short)]
        tenant: Option<String>,
    },
    /// Print every record of the log in log order, one line each (every
    /// record's checksum is verified on the way). Read-only.
    Dump {
        /// The jocky folder.
        dir: PathBuf,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Export every committed segment still in the container now, and print
    /// what was done. Needs the folder's lock (no writer may hold it).
    Export {
        /// The jocky folder.
        dir: PathBuf,
    },
    /// Reclaim space now: passes (remove dead container and segment files,
    /// copying live files forward where that pays; at most 64 MiB copied per
    /// pass) until none is left, and print what was done. Needs the folder's
    /// lock.
    Reclaim {
        /// The jocky folder.
        dir: PathBuf,
    },
    /// Convert a tantivy index folder (MmapDirectory) into a new jocky folder
    /// or a new tenant of a store, or back with --to-mmap. Footers are checked
    /// on the way; on any error nothing is left behind.
    Convert {
        /// The source folder: a tantivy index (or, with --to-mmap, a jocky folder).
        src: PathBuf,
        /// The destination folder: must not exist or be empty (with --tenant and
        /// without --to-mmap it may also be an existing store without that tenant).
        dst: PathBuf,
        /// Convert from a jocky folder into a plain tantivy (MmapDirectory) folder.
        #[arg(long)]
        to_mmap: bool,
        /// The tenant of the jocky side (default: a plain index).
        #[arg(long, short)]
        tenant: Option<String>,
    },
    /// List the tenants of a multi-tenant store, one per line. Read-only.
    Tenants {
        /// The store's folder.
        dir: PathBuf,
        /// Print a JSON array of {name, files, bytes}.
        #[arg(long)]
        json: bool,
    },
    /// Remove every file of one tenant of a store, durably. Needs the folder's
    /// lock; the space comes back at the next reclamation.
    RmTenant {
        /// The store's folder.
        dir: PathBuf,
        /// The tenant to remove.
        tenant: String,
    },
    /// Print the counters of an index folder (files, bytes, fds). Read-only.
    Stats {
        /// The index folder.
        dir: PathBuf,
    },
}

fn run(command: &Command) -> Outcome {
    match command {
        Command::Inspect { dir, json } => inspect::run(dir, *json),
        Command::Verify { dir, json } => verify::run(dir, *json),
        Command::Ls { dir, tenant, json } => ls::run(dir, tenant.as_deref(), *json),
        Command::Cat { dir, path, tenant } => cat::run(dir, path, tenant.as_deref()),
        Command::Dump { dir, json } => dump::run(dir, *json),
        Command::Export { dir } => maintain::export(dir),
        Command::Reclaim { dir } => maintain::reclaim(dir),
        Command::Convert {
            src,
            dst,
            to_mmap,
            tenant,
        } => {
            if *to_mmap {
                convert::to_mmap(src, dst, tenant.as_deref())
            } else {
                convert::to_jocky(src, dst, tenant.as_deref())
            }
        }
        Command::Tenants { dir, json } => tenants::run(dir, *json),
        Command::RmTenant { dir, tenant } => rm_tenant::run(dir, tenant),
        Command::Stats { dir } => stats::run(dir),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fail::exit_code(run(&cli.command))
}
