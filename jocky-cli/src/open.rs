//! Opening a folder for inspection.

use std::path::Path;

use jocky::ExportPolicy;

/// Checks that `dir` is an existing folder holding a jocky container (opening a
/// folder creates it and its first container file when missing, which an
/// inspection command must not do) and returns the options every subcommand opens
/// it with: no background export, so that looking does not start exporting or
/// reclaiming. Recovery on open still runs, as for any open.
pub fn builder(dir: &Path) -> Result<jocky::Builder, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut has_container = false;
    for entry in entries {
        let name = entry
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .file_name();
        // Container files are named `jocky-NNNNNNNNNN.log` (docs/format.md).
        let name = name.to_string_lossy();
        if name.starts_with("jocky-") && name.ends_with(".log") {
            has_container = true;
            break;
        }
    }
    if !has_container {
        return Err(format!(
            "{} holds no jocky container (no jocky-*.log file)",
            dir.display()
        ));
    }
    Ok(jocky::JockyDirectory::builder(dir).export_policy(ExportPolicy::Manual))
}
