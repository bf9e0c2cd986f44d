//! `jocky stats DIR`: the counters of an index folder.

use std::path::Path;

/// Prints the [`jocky::Stats`] of the folder `dir` right after opening it.
pub fn run(dir: &Path) -> Result<(), String> {
    let directory = crate::open::builder(dir)?
        .open()
        .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    println!("{:#?}", directory.stats());
    Ok(())
}
