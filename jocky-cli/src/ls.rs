//! `jocky ls DIR [--tenant T] [--json]`: the virtual files. Read-only.

use std::io::Write;
use std::path::Path;

use crate::fail::error;
use crate::out::{size, tenant_label, Table};
use crate::Outcome;

/// Lists the files of `tenant`; without one, of the plain index, or of every
/// tenant (with a tenant column) when the folder is a store.
pub fn run(dir: &Path, tenant: Option<&str>, json: bool) -> Outcome {
    let inspection = crate::inspect::read(dir)?;
    let store = inspection.tenants.iter().any(|t| !t.name.is_empty());
    if let Some(t) = tenant {
        if !inspection.tenants.iter().any(|i| i.name == t) {
            return error(format!("{} has no tenant {t:?}", dir.display()));
        }
    }
    let files: Vec<_> = inspection
        .virtual_files
        .iter()
        .filter(|f| match tenant {
            Some(t) => f.tenant == t,
            // A plain index: its own files; a store: every tenant's.
            None => store || f.tenant.is_empty(),
        })
        .collect();
    let mut out = crate::out::stdout();
    if json {
        let list: Vec<_> = files.iter().map(|f| crate::inspect::file_json(f)).collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
    } else {
        let with_tenant = tenant.is_none() && store;
        let mut columns = vec![("PATH", false), ("BYTES", true), ("WHERE", false)];
        if with_tenant {
            columns.insert(0, ("TENANT", false));
        }
        let mut table = Table::new(&columns);
        for f in files {
            let mut row = vec![f.path.clone(), size(f.len), crate::inspect::location(f)];
            if !f.complete {
                row[2].push_str(" (writing)");
            }
            if with_tenant {
                row.insert(0, tenant_label(&f.tenant));
            }
            table.row(row);
        }
        table.write(&mut out, 0)?;
    }
    out.flush()?;
    Ok(())
}
