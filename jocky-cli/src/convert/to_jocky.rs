//! A tantivy index folder (MmapDirectory) into a new jocky folder or tenant.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use jocky::{ExportPolicy, JockyDirectory, Store};
use tantivy::directory::TerminatingWrite;
use tantivy::{Directory, HasLen};

use super::{check_dst, check_index, is_lock_file, undo, write_order, Dest, CHUNK};
use crate::fail::{error, Fail};
use crate::out::bytes;
use crate::Outcome;

/// Where the files go, and how to take them back out on failure.
enum Target {
    /// A new plain index (a folder that did not exist or was empty).
    Plain(Dest),
    /// A new tenant of a new store (a folder that did not exist or was empty).
    NewStore(Dest),
    /// A new tenant of an existing store: remove the tenant again.
    ExistingStore,
}

/// Converts the tantivy index in `src` into `dst` (a new folder, or `tenant` of
/// a new or existing store).
pub fn to_jocky(src: &Path, dst: &Path, tenant: Option<&str>) -> Outcome {
    let files = check_source(src)?;
    let target = match tenant {
        None => Target::Plain(check_dst(dst)?),
        Some(_) if dst.is_dir() && crate::open::has_container(dst)? => {
            check_is_store(dst, tenant.unwrap_or_default())?;
            Target::ExistingStore
        }
        Some(_) => Target::NewStore(check_dst(dst)?),
    };
    let (directory, store) = open_target(dst, tenant, &target)?;
    let total: u64 = files.iter().map(|f| f.1).sum();
    match fill(src, &directory, &files, total) {
        Ok(exported) => {
            let mut out = crate::out::stdout();
            writeln!(
                out,
                "converted {} ({} files, {}) into {}{}; {} segment file(s) exported",
                src.display(),
                files.len(),
                bytes(total),
                dst.display(),
                tenant.map_or(String::new(), |t| format!(" tenant {t:?}")),
                exported
            )?;
            out.flush()?;
            Ok(())
        }
        Err(Fail::Error(message)) => {
            let note = match target {
                Target::ExistingStore => {
                    let t = tenant.unwrap_or_default();
                    drop(directory);
                    match store.map(|s| s.remove_tenant(t)) {
                        Some(Ok(_)) => format!("tenant {t:?} was removed again"),
                        Some(Err(e)) => format!("removing tenant {t:?} again failed: {e}"),
                        None => String::new(),
                    }
                }
                Target::Plain(dest) | Target::NewStore(dest) => {
                    drop(directory);
                    drop(store);
                    undo(dst, dest)
                }
            };
            error(format!("{message}; {note}"))
        }
        Err(other) => Err(other),
    }
}

/// Checks that `src` is a tantivy index whose footers verify, and lists the
/// files to copy (all but tantivy's lock files) with their sizes, in writing
/// order.
fn check_source(src: &Path) -> Result<Vec<(PathBuf, u64)>, Fail> {
    if !src.is_dir() {
        return error(format!("source {} is not a folder", src.display()));
    }
    if crate::open::has_container(src)? {
        return error(format!(
            "source {} is a jocky folder; use --to-mmap to convert it to a tantivy folder",
            src.display()
        ));
    }
    if !src.join("meta.json").is_file() {
        return error(format!(
            "source {} is not a tantivy index (no meta.json)",
            src.display()
        ));
    }
    check_index(&format!("source {}", src.display()), || {
        tantivy::Index::open_in_dir(src)
    })?;
    let mut files = Vec::new();
    let entries = fs::read_dir(src).map_err(|e| Fail::Error(format!("{}: {e}", src.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| Fail::Error(format!("{}: {e}", src.display())))?;
        let name = PathBuf::from(entry.file_name());
        if is_lock_file(&name) {
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| Fail::Error(format!("{}: {e}", entry.path().display())))?;
        if !meta.is_file() {
            return error(format!(
                "source {} holds {}, which is not a regular file; a tantivy index folder holds only files",
                src.display(),
                entry.path().display()
            ));
        }
        if name.to_str().is_none() {
            return error(format!(
                "{}: file name is not UTF-8",
                entry.path().display()
            ));
        }
        files.push((name, meta.len()));
    }
    write_order(&mut files);
    Ok(files)
}

/// Checks, read-only, that the existing jocky folder `dst` is a store (not a
/// plain index) without `tenant` yet: a refusal writes nothing, not even what
/// a writer's open and close would.
fn check_is_store(dst: &Path, tenant: &str) -> Result<(), Fail> {
    let inspection = jocky::inspect::inspect(dst).map_err(|e| crate::open::open_error(dst, e))?;
    if inspection.tenants.iter().any(|t| t.name.is_empty()) {
        return error(format!(
            "destination {} holds a plain index, not a store of tenants; nothing was written",
            dst.display()
        ));
    }
    if inspection.tenants.iter().any(|t| t.name == tenant) {
        return error(format!(
            "{} already has a tenant {tenant:?}; nothing was written",
            dst.display()
        ));
    }
    Ok(())
}

/// Opens (creating) the destination directory; the store too when there is a
/// tenant (to remove it again on failure).
fn open_target(
    dst: &Path,
    tenant: Option<&str>,
    target: &Target,
) -> Result<(JockyDirectory, Option<Store>), Fail> {
    let builder = JockyDirectory::builder(dst).export_policy(ExportPolicy::Manual);
    let Some(t) = tenant else {
        let directory = builder
            .open()
            .map_err(|e| crate::open::open_error(dst, e))?;
        return Ok((directory, None));
    };
    let opened = builder
        .open_store()
        .map_err(|e| crate::open::open_error(dst, e));
    let checked = opened.and_then(|store| {
        if store.tenants().iter().any(|n| n == t) {
            return error(format!(
                "{} already has a tenant {t:?}; nothing was written",
                dst.display()
            ));
        }
        let directory = store.directory(t).map_err(|e| Fail::Error(e.to_string()))?;
        Ok((directory, Some(store)))
    });
    match (checked, target) {
        (Err(Fail::Error(message)), Target::NewStore(dest)) => {
            // The store was made just now: take it away again.
            let note = undo(dst, *dest);
            error(format!("{message}; {note}"))
        }
        (result, _) => result,
    }
}

/// Copies the files, checks the copy and exports its segments. Returns the
/// number of segment files written.
fn fill(
    src: &Path,
    directory: &JockyDirectory,
    files: &[(PathBuf, u64)],
    total: u64,
) -> Result<usize, Fail> {
    let bar = crate::progress::bytes(total, "copying");
    let copied = copy_files(src, directory, files, &bar);
    bar.finish_and_clear();
    copied?;
    directory
        .sync_directory()
        .map_err(|e| Fail::Error(format!("syncing the destination: {e}")))?;
    for (name, len) in files {
        let got = directory
            .open_read(name)
            .map_err(|e| Fail::Error(format!("reading back {}: {e}", name.display())))?
            .len() as u64;
        if got != *len {
            return error(format!(
                "{} is {got} bytes in the destination, {len} in the source",
                name.display()
            ));
        }
    }
    let copy = directory.clone();
    check_index("the converted index", move || tantivy::Index::open(copy))?;
    let spinner = crate::progress::spinner("exporting segments");
    let report = directory.export_committed();
    spinner.finish_and_clear();
    let report = report.map_err(|e| Fail::Error(format!("exporting segments: {e}")))?;
    Ok(report.segment_files)
}

/// Copies each file: large ones as a stream, `meta.json` and `.managed.json`
/// with `atomic_write` (in that order: `meta.json` last).
fn copy_files(
    src: &Path,
    directory: &JockyDirectory,
    files: &[(PathBuf, u64)],
    bar: &indicatif::ProgressBar,
) -> Result<(), Fail> {
    let mut buf = vec![0u8; CHUNK];
    for (name, _) in files {
        let path = src.join(name);
        let failed =
            |e: &dyn std::fmt::Display| Fail::Error(format!("copying {}: {e}", path.display()));
        if matches!(name.to_str(), Some("meta.json" | ".managed.json")) {
            let bytes = fs::read(&path).map_err(|e| failed(&e))?;
            directory
                .atomic_write(name, &bytes)
                .map_err(|e| failed(&e))?;
            bar.inc(bytes.len() as u64);
            continue;
        }
        let mut input = File::open(&path).map_err(|e| failed(&e))?;
        let mut output = directory.open_write(name).map_err(|e| failed(&e))?;
        loop {
            let n = input.read(&mut buf).map_err(|e| failed(&e))?;
            if n == 0 {
                break;
            }
            output.write_all(&buf[..n]).map_err(|e| failed(&e))?;
            bar.inc(n as u64);
        }
        output.terminate().map_err(|e| failed(&e))?;
    }
    Ok(())
}
