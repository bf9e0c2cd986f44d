//! `jocky inspect DIR [--json]`: what a folder holds. Read-only.

use std::io::Write;
use std::path::Path;

use jocky::inspect::{Inspection, VirtualFileInfo};
use serde_json::{json, Value};

use crate::out::{bytes, size, tenant_label, Table};
use crate::Outcome;

/// Reads the folder `dir` read-only (a spinner meanwhile: replaying a large log
/// takes a while).
pub fn read(dir: &Path) -> Result<Inspection, crate::Fail> {
    crate::open::check(dir)?;
    let spinner = crate::progress::spinner(format!("reading {}", dir.display()));
    let inspection = jocky::inspect::inspect(dir);
    spinner.finish_and_clear();
    inspection.map_err(|e| crate::open::open_error(dir, e))
}

/// Prints what `dir` holds, as tables or (`json`) one JSON object.
pub fn run(dir: &Path, json: bool) -> Outcome {
    let inspection = read(dir)?;
    let mut out = crate::out::stdout();
    if json {
        writeln!(out, "{}", to_json(&inspection))?;
    } else {
        write_human(&mut out, &inspection)?;
    }
    out.flush()?;
    Ok(())
}

/// One virtual file as JSON.
pub fn file_json(f: &VirtualFileInfo) -> Value {
    json!({
        "tenant": f.tenant,
        "path": f.path,
        "len": f.len,
        "segment_file": f.segment_file,
        "complete": f.complete,
    })
}

/// Where a virtual file's bytes are, for people.
pub fn location(f: &VirtualFileInfo) -> String {
    match f.segment_file {
        Some(no) => format!("segment {no}"),
        None => "container".to_string(),
    }
}

fn to_json(i: &Inspection) -> Value {
    json!({
        "path": i.path.display().to_string(),
        "format_version": i.format_version,
        "container_files": i.container_files.iter().map(|c| json!({
            "number": c.number,
            "name": c.name,
            "bytes": c.bytes,
            "live_bytes": c.live_bytes,
            "dead_bytes": c.dead_bytes,
        })).collect::<Vec<_>>(),
        "segment_files": i.segment_files.iter().map(|s| json!({
            "number": s.number,
            "name": s.name,
            "bytes": s.bytes,
            "live_files": s.live_files,
            "live_bytes": s.live_bytes,
        })).collect::<Vec<_>>(),
        "virtual_files": i.virtual_files.iter().map(file_json).collect::<Vec<_>>(),
        "tenants": i.tenants.iter().map(|t| json!({
            "name": t.name,
            "files": t.files,
            "bytes": t.bytes,
        })).collect::<Vec<_>>(),
    })
}

fn write_human(out: &mut impl Write, i: &Inspection) -> std::io::Result<()> {
    writeln!(out, "folder:         {}", i.path.display())?;
    writeln!(out, "format version: {}", i.format_version)?;

    let total: u64 = i.container_files.iter().map(|c| c.bytes).sum();
    let dead: u64 = i.container_files.iter().map(|c| c.dead_bytes).sum();
    writeln!(
        out,
        "\ncontainer files: {}, {}, dead {}",
        i.container_files.len(),
        bytes(total),
        bytes(dead)
    )?;
    let mut t = Table::new(&[
        ("NAME", false),
        ("BYTES", true),
        ("LIVE", true),
        ("DEAD", true),
    ]);
    for c in &i.container_files {
        t.row(vec![
            c.name.clone(),
            size(c.bytes),
            size(c.live_bytes),
            size(c.dead_bytes),
        ]);
    }
    t.write(out, 2)?;

    let total: u64 = i.segment_files.iter().map(|s| s.bytes).sum();
    writeln!(
        out,
        "\nsegment files: {}, {}",
        i.segment_files.len(),
        bytes(total)
    )?;
    if !i.segment_files.is_empty() {
        let mut t = Table::new(&[
            ("NAME", false),
            ("BYTES", true),
            ("LIVE FILES", true),
            ("LIVE BYTES", true),
        ]);
        for s in &i.segment_files {
            t.row(vec![
                s.name.clone(),
                size(s.bytes),
                s.live_files.to_string(),
                size(s.live_bytes),
            ]);
        }
        t.write(out, 2)?;
    }

    writeln!(out, "\ntenants: {}", i.tenants.len())?;
    if !i.tenants.is_empty() {
        let mut t = Table::new(&[("TENANT", false), ("FILES", true), ("BYTES", true)]);
        for tenant in &i.tenants {
            t.row(vec![
                tenant_label(&tenant.name),
                tenant.files.to_string(),
                size(tenant.bytes),
            ]);
        }
        t.write(out, 2)?;
    }

    writeln!(out, "\nvirtual files: {}", i.virtual_files.len())?;
    if !i.virtual_files.is_empty() {
        let mut t = Table::new(&[
            ("TENANT", false),
            ("PATH", false),
            ("BYTES", true),
            ("WHERE", false),
            ("STATE", false),
        ]);
        for f in &i.virtual_files {
            t.row(vec![
                tenant_label(&f.tenant),
                f.path.clone(),
                size(f.len),
                location(f),
                if f.complete { "complete" } else { "writing" }.to_string(),
            ]);
        }
        t.write(out, 2)?;
    }
    Ok(())
}
