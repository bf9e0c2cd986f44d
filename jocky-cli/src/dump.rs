//! `jocky dump DIR [--json]`: every record of the log, one line each.

use std::io::Write;
use std::path::Path;

use crate::Outcome;

/// Prints the log's records in log order: `FILE OFFSET SEQUENCE KIND FIELDS`
/// in aligned columns, or one JSON object per line. A record that does not
/// verify ends the dump with an error (after the records before it).
pub fn run(dir: &Path, json: bool) -> Outcome {
    crate::open::check(dir)?;
    let mut out = crate::out::stdout();
    if !json {
        writeln!(
            out,
            "{:>10}  {:>12}  {:>10}  {:<11}  FIELDS",
            "FILE", "OFFSET", "SEQUENCE", "KIND"
        )?;
    }
    let mut write_error = None;
    let result = jocky::inspect::dump(dir, |rec| {
        if write_error.is_some() {
            return;
        }
        let written = if json {
            let line = serde_json::json!({
                "file_no": rec.file_no,
                "offset": rec.offset,
                "sequence": rec.sequence,
                "kind": rec.kind,
                "summary": rec.summary,
            });
            writeln!(out, "{line}")
        } else {
            let line = format!(
                "{:>10}  {:>12}  {:>10}  {:<11}  {}",
                rec.file_no, rec.offset, rec.sequence, rec.kind, rec.summary
            );
            writeln!(out, "{}", line.trim_end())
        };
        if let Err(e) = written {
            write_error = Some(e);
        }
    });
    if let Some(e) = write_error {
        return Err(e.into());
    }
    out.flush()?;
    result.map_err(|e| crate::Fail::Error(format!("{}: {e}", dir.display())))
}
