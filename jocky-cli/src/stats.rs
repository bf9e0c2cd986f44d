//! `jocky stats DIR`: the counters of an index folder.

use std::io::Write;
use std::path::Path;

use crate::Outcome;

/// Prints the [`jocky::Stats`] of the folder `dir`, opened read-only.
pub fn run(dir: &Path) -> Outcome {
    let directory = crate::open::read_only_dir(dir, None)?;
    let mut out = crate::out::stdout();
    writeln!(out, "{:#?}", directory.stats())?;
    out.flush()?;
    Ok(())
}
