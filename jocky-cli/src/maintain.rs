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
    // Passes until none stops at its bound on bytes copied forward.
    let mut total = jocky::ReclaimReport::default();
    let mut passes = 0;
    let report = loop {
        match store.reclaim() {
            Ok(r) => {
                passes += 1;
                total.container_files_removed += r.container_files_removed;
                total.out_of_order += r.out_of_order;
                total.segment_files_removed += r.segment_files_removed;
                total.files_copied_forward += r.files_copied_forward;
                total.bytes_copied_forward += r.bytes_copied_forward;
                let progress = r.container_files_removed > 0 || r.bytes_copied_forward > 0;
                if !r.more || !progress {
                    break Ok(total);
                }
            }
            Err(e) => break Err(e),
        }
    };
    spinner.finish_and_clear();
    let report = report.map_err(|e| Fail::Error(format!("reclaim in {}: {e}", dir.display())))?;
    let mut out = crate::out::stdout();
    writeln!(
        out,
        "removed {} container file(s) ({} ahead of older ones) and {} segment file(s); copied {} live file(s), {}, forward; {} pass(es)",
        report.container_files_removed,
        report.out_of_order,
        report.segment_files_removed,
        report.files_copied_forward,
        bytes(report.bytes_copied_forward),
        passes
    )?;
    out.flush()?;
    Ok(())
}
