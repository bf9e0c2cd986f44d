//! Opening a folder: read-only for looking, with the lock for maintenance.

use std::path::Path;

use jocky::{Error, ExportPolicy, JockyDirectory, Store};

use crate::fail::{error, Fail};

/// Whether `dir` holds a container file (`jocky-NNNNNNNNNN.log`, docs/format.md).
/// `Ok(false)` for an existing folder without one; an error when `dir` cannot be
/// read as a folder.
pub fn has_container(dir: &Path) -> Result<bool, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let name = entry
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .file_name();
        let name = name.to_string_lossy();
        if name.starts_with("jocky-") && name.ends_with(".log") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checks that `dir` is an existing folder holding a jocky container: opening a
/// folder for writing creates it and its first container file when missing,
/// which a command on an existing folder must not do.
pub fn check(dir: &Path) -> Result<(), Fail> {
    if !has_container(dir)? {
        return error(format!(
            "{} holds no jocky container (no jocky-*.log file)",
            dir.display()
        ));
    }
    Ok(())
}

/// A library error on opening `dir`, for people.
pub fn open_error(dir: &Path, e: Error) -> Fail {
    match e {
        Error::Locked { .. } => Fail::Error(format!(
            "{} is held by a writer (another process has it open): stop it first; \
             read-only commands (inspect, verify, ls, cat, dump, tenants) work beside it",
            dir.display()
        )),
        e => Fail::Error(format!("cannot open {}: {e}", dir.display())),
    }
}

/// Opens `tenant` of `dir` read-only, or the plain index when `tenant` is `None`.
/// A tenant that holds no file is an error.
pub fn read_only_dir(dir: &Path, tenant: Option<&str>) -> Result<JockyDirectory, Fail> {
    check(dir)?;
    match tenant {
        None => JockyDirectory::open_read_only(dir).map_err(|e| open_error(dir, e)),
        Some(t) => {
            let store = Store::open_read_only(dir).map_err(|e| open_error(dir, e))?;
            if !store.tenants().iter().any(|n| n == t) {
                return error(format!("{} has no tenant {t:?}", dir.display()));
            }
            store
                .directory(t)
                .map_err(|e| Fail::Error(format!("tenant {t:?}: {e}")))
        }
    }
}

/// Opens the store in `dir` for maintenance: takes the folder's lock (fails
/// clearly when a writer holds it), runs recovery, exports only when asked.
pub fn writer_store(dir: &Path) -> Result<Store, Fail> {
    check(dir)?;
    JockyDirectory::builder(dir)
        .export_policy(ExportPolicy::Manual)
        .open_store()
        .map_err(|e| open_error(dir, e))
}
