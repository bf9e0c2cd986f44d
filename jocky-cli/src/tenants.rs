//! `jocky tenants DIR`: the tenants of a store, one per line, sorted.

use std::path::Path;

/// Prints the tenants of the store in `dir`.
pub fn run(dir: &Path) -> Result<(), String> {
    let store = crate::open::builder(dir)?
        .open_store()
        .map_err(|e| format!("cannot open {} as a store: {e}", dir.display()))?;
    for tenant in store.tenants() {
        println!("{tenant}");
    }
    Ok(())
}
