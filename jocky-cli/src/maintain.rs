//! `jocky export DIR` and `jocky reclaim DIR`: run a maintenance pass now.

use std::io::Write;
use std::path::Path;

use crate::fail::Fail;
use crate::out::bytes;
use crate::Outcome;

/// Exports every committed segment of every tenant still in the container.
pub fn export(dir: &Path) -> Outcome {
    let store = crate::open::writer_store(dir)?;
    let spinner = crate::progress::spinner(format!("exporting in {}", dir.display()));
    let report = store.export_committed();
    spinner.finish_and_clear();
    let report = report.map_err(|e| Fail::Error(format!("export in {}: {e}", dir.display())))?;
    let mut out = crate::out::stdout();
    writeln!(
        out,
        "exported {} file(s), {}, into {} new segment file(s)",
        report.files,
        bytes(report.bytes),
        report.segment_files
    )?;
    out.flush()?;
    Ok(())
}

/// Removes dead container and segment files (copying live files forward).
pub fn reclaim(dir: &Path) -> Outcome {
    let store = crate::open::writer_store(dir)?;
    let spinner = crate::progress::spinner(format!("reclaiming in {}", dir.display()));
    let report = store.reclaim();
    spinner.finish_and_clear();
    let report = report.map_err(|e| Fail::Error(format!("reclaim in {}: {e}", dir.display())))?;
    let mut out = crate::out::stdout();
    writeln!(
        out,
        "removed {} container file(s) and {} segment file(s); copied {} live file(s), {}, forward",
        report.container_files_removed,
        report.segment_files_removed,
        report.files_copied_forward,
        bytes(report.bytes_copied_forward)
    )?;
    out.flush()?;
    Ok(())
}
