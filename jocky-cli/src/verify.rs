//! `jocky verify DIR [--json]`: check everything; name each damaged place.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::fail::Fail;
use crate::out::{bytes, Table};
use crate::Outcome;

/// Verifies `dir` read-only (the library drops what it read from the page
/// cache afterwards). Any damage: reported on stdout, exit code 3.
pub fn run(dir: &Path, json: bool) -> Outcome {
    crate::open::check(dir)?;
    let spinner = crate::progress::spinner(format!("verifying {}", dir.display()));
    let report = jocky::verify::verify(dir);
    spinner.finish_and_clear();
    let report =
        report.map_err(|e| Fail::Error(format!("cannot verify {}: {e}", dir.display())))?;
    let mut out = crate::out::stdout();
    if json {
        let value = json!({
            "path": dir.display().to_string(),
            "clean": report.is_clean(),
            "records": report.records,
            "record_bytes": report.record_bytes,
            "torn_tail_bytes": report.torn_tail_bytes,
            "segment_files": report.segment_files,
            "indexes": report.indexes,
            "index_files": report.index_files,
            "damage": report.damage.iter().map(|d| json!({
                "file": d.file.display().to_string(),
                "offset": d.offset,
                "what": d.what,
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "verified {}", dir.display())?;
        writeln!(
            out,
            "  container records: {} ({})",
            report.records,
            bytes(report.record_bytes)
        )?;
        if report.torn_tail_bytes > 0 {
            writeln!(
                out,
                "  torn tail:         {} at the end of the newest container file (a crash mid-write, or a writer appending now; a writer's open cuts it)",
                bytes(report.torn_tail_bytes)
            )?;
        }
        writeln!(out, "  segment files:     {}", report.segment_files)?;
        writeln!(
            out,
            "  indexes:           {} ({} files' tantivy footers)",
            report.indexes, report.index_files
        )?;
        if report.is_clean() {
            writeln!(out, "clean: no damage found")?;
        } else {
            writeln!(out, "DAMAGED: {} place(s)", report.damage.len())?;
            let mut table = Table::new(&[("FILE", false), ("OFFSET", true), ("WHAT", false)]);
            for d in &report.damage {
                table.row(vec![
                    d.file.display().to_string(),
                    d.offset.map_or("-".to_string(), |o| o.to_string()),
                    d.what.clone(),
                ]);
            }
            table.write(&mut out, 2)?;
        }
    }
    out.flush()?;
    if report.is_clean() {
        Ok(())
    } else {
        Err(Fail::Damaged)
    }
}
