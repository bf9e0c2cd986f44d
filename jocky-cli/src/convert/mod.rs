//! `jocky convert SRC DST [--tenant T]` and `jocky convert --to-mmap SRC DST
//! [--tenant T]`: between a plain tantivy folder (MmapDirectory) and jocky.
//!
//! Both ways: the source is checked first (a tantivy index whose footers
//! verify), the destination must not exist or be an empty folder, files are
//! written with `meta.json` last (a crash mid-way leaves no index), and the
//! result is opened and its footers checked again. On any error after the
//! destination was touched, everything written is removed again.

mod to_jocky;
mod to_mmap;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::fail::{error, Fail};

pub use to_jocky::to_jocky;
pub use to_mmap::to_mmap;

/// tantivy's lock files: never copied.
const LOCK_FILES: [&str; 2] = [".tantivy-meta.lock", ".tantivy-writer.lock"];

/// Bytes copied at a time.
const CHUNK: usize = 1 << 20;

/// What the destination was before the conversion touched it: what to undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    /// It did not exist: remove the folder.
    Missing,
    /// An empty folder: empty it again.
    Empty,
}

/// Checks that `dst` does not exist or is an empty folder.
fn check_dst(dst: &Path) -> Result<Dest, Fail> {
    match fs::symlink_metadata(dst) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Dest::Missing),
        Err(e) => error(format!("{}: {e}", dst.display())),
        Ok(m) if !m.is_dir() => error(format!(
            "destination {} exists and is not a folder",
            dst.display()
        )),
        Ok(_) => {
            let mut entries =
                fs::read_dir(dst).map_err(|e| Fail::Error(format!("{}: {e}", dst.display())))?;
            if entries.next().is_some() {
                return error(format!(
                    "destination {} exists and is not empty; nothing was written",
                    dst.display()
                ));
            }
            Ok(Dest::Empty)
        }
    }
}

/// Removes what the conversion wrote into `dst` (best effort: the error that
/// got us here is the one worth reporting). Returns a note for the message.
fn undo(dst: &Path, dest: Dest) -> String {
    let result = match dest {
        Dest::Missing => fs::remove_dir_all(dst),
        Dest::Empty => fs::read_dir(dst).and_then(|entries| {
            for entry in entries {
                let path = entry?.path();
                if path.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => format!("{} was left as it was before", dst.display()),
        Err(e) => format!("removing what was written to {} failed: {e}", dst.display()),
    }
}

/// Writing order: everything else by name, then `.managed.json`, then `meta.json`.
fn write_order(files: &mut [(PathBuf, u64)]) {
    files.sort_by_key(|(p, _)| {
        let rank = match p.to_str() {
            Some("meta.json") => 2,
            Some(".managed.json") => 1,
            _ => 0,
        };
        (rank, p.clone())
    });
}

/// Whether `p` is one of tantivy's lock files.
fn is_lock_file(p: &Path) -> bool {
    p.to_str().is_some_and(|s| LOCK_FILES.contains(&s))
}

/// Opens the index over `dir` and checks tantivy's footer checksums of its
/// segments' files; `what` names it in errors. A panic of tantivy on damaged
/// bytes is an error too.
fn check_index(
    what: &str,
    open: impl FnOnce() -> tantivy::Result<tantivy::Index>,
) -> Result<(), Fail> {
    let spinner = crate::progress::spinner(format!("checking the footers of {what}"));
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let index = open()?;
        index.validate_checksum()
    }));
    spinner.finish_and_clear();
    match checked {
        Ok(Ok(bad)) if bad.is_empty() => Ok(()),
        Ok(Ok(bad)) => {
            let mut bad: Vec<String> = bad.iter().map(|p| p.display().to_string()).collect();
            bad.sort();
            error(format!(
                "{what}: tantivy's footer checksum does not match in {}",
                bad.join(", ")
            ))
        }
        Ok(Err(e)) => error(format!("{what} is not a usable tantivy index: {e}")),
        Err(_) => error(format!("{what}: tantivy panicked while checking the index")),
    }
}
