//! Opening a folder for inspection.

use std::path::Path;

use jocky::ExportPolicy;

/// Checks that `dir` is an existing folder (opening a jocky folder creates it when
/// missing, which an inspection command must not do) and returns the options every
/// subcommand opens it with: no background export, so that looking does not start
/// exporting or reclaiming. Recovery on open still runs, as for any open.
pub fn builder(dir: &Path) -> Result<jocky::Builder, String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a folder", dir.display())),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    Ok(jocky::JockyDirectory::builder(dir).export_policy(ExportPolicy::Manual))
}
