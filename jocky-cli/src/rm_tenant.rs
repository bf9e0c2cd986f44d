//! `jocky rm-tenant DIR T`: remove one tenant of a store.

use std::io::Write;
use std::path::Path;

use crate::fail::{error, Fail};
use crate::Outcome;

/// Removes every file of `tenant`, durably; an unknown tenant is an error.
pub fn run(dir: &Path, tenant: &str) -> Outcome {
    let store = crate::open::writer_store(dir)?;
    if !store.tenants().iter().any(|t| t == tenant) {
        return error(format!("{} has no tenant {tenant:?}", dir.display()));
    }
    let removed = store
        .remove_tenant(tenant)
        .map_err(|e| Fail::Error(format!("removing tenant {tenant:?}: {e}")))?;
    let mut out = crate::out::stdout();
    writeln!(
        out,
        "removed tenant {tenant:?} ({removed} file(s)); `jocky reclaim` gives its space back"
    )?;
    out.flush()?;
    Ok(())
}
