//! `jocky tenants DIR [--json]`: the tenants of a store, one per line, sorted.

use std::io::Write;
use std::path::Path;

use crate::Outcome;

/// Prints the tenants of the store in `dir` (read-only): names one per line, or
/// with `json` an array of `{name, files, bytes}`.
pub fn run(dir: &Path, json: bool) -> Outcome {
    crate::open::check(dir)?;
    let spinner = crate::progress::spinner(format!("reading {}", dir.display()));
    let inspection = jocky::inspect::inspect(dir);
    spinner.finish_and_clear();
    let inspection = inspection.map_err(|e| crate::open::open_error(dir, e))?;
    let tenants = inspection.tenants.iter().filter(|t| !t.name.is_empty());
    let mut out = crate::out::stdout();
    if json {
        let list: Vec<_> = tenants
            .map(|t| serde_json::json!({"name": t.name, "files": t.files, "bytes": t.bytes}))
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
    } else {
        for t in tenants {
            writeln!(out, "{}", t.name)?;
        }
    }
    out.flush()?;
    Ok(())
}
