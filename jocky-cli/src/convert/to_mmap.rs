//! A jocky folder (or one tenant of a store) into a plain tantivy folder.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use jocky::JockyDirectory;
use tantivy::{Directory, HasLen};

use super::{check_dst, check_index, is_lock_file, undo, write_order, CHUNK};
use crate::fail::{error, Fail};
use crate::out::bytes;
use crate::Outcome;

/// Writes every file of the index in `src` (`tenant` of a store, or the plain
/// index) into the new tantivy folder `dst`. `src` is opened read-only.
pub fn to_mmap(src: &Path, dst: &Path, tenant: Option<&str>) -> Outcome {
    let directory = crate::open::read_only_dir(src, tenant)?;
    let what = match tenant {
        Some(t) => format!("tenant {t:?} of {}", src.display()),
        None => src.display().to_string(),
    };
    let files = list(&directory, &what, src, tenant)?;
    let source = directory.clone();
    check_index(&format!("source {what}"), move || {
        tantivy::Index::open(source)
    })?;
    let dest = check_dst(dst)?;
    let total: u64 = files.iter().map(|f| f.1).sum();
    let bar = crate::progress::bytes(total, "copying");
    let written = write_all(&directory, dst, &files, &bar);
    bar.finish_and_clear();
    let checked = written.and_then(|()| {
        check_index(&format!("the converted folder {}", dst.display()), || {
            tantivy::Index::open_in_dir(dst)
        })
    });
    if let Err(Fail::Error(message)) = checked {
        return error(format!("{message}; {}", undo(dst, dest)));
    }
    checked?;
    let mut out = crate::out::stdout();
    writeln!(
        out,
        "converted {what} ({} files, {}) into {}",
        files.len(),
        bytes(total),
        dst.display()
    )?;
    out.flush()?;
    Ok(())
}

/// The index's files with their lengths, in writing order; an error when it
/// holds no tantivy index.
fn list(
    directory: &JockyDirectory,
    what: &str,
    src: &Path,
    tenant: Option<&str>,
) -> Result<Vec<(PathBuf, u64)>, Fail> {
    // Files a writer beside us is still writing: not part of any commit. Read
    // after `directory` was opened, so no file complete there is missed here
    // (files only go from being written to complete).
    let writing: Vec<PathBuf> = jocky::inspect::inspect(src)
        .map_err(|e| crate::open::open_error(src, e))?
        .virtual_files
        .into_iter()
        .filter(|f| !f.complete && f.tenant == tenant.unwrap_or_default())
        .map(|f| PathBuf::from(f.path))
        .collect();
    let mut files = Vec::new();
    for path in directory.list_files() {
        if is_lock_file(&path) || writing.contains(&path) {
            continue;
        }
        let len = directory
            .open_read(&path)
            .map_err(|e| Fail::Error(format!("{what}: cannot open {}: {e}", path.display())))?
            .len() as u64;
        files.push((path, len));
    }
    if !files.iter().any(|(p, _)| p == Path::new("meta.json")) {
        let mut message = format!("{what} holds no tantivy index (no meta.json)");
        if tenant.is_none() {
            if let Ok(store) = jocky::Store::open_read_only(src) {
                if !store.tenants().is_empty() {
                    message.push_str("; it is a store: pick a tenant with --tenant");
                }
            }
        }
        return error(message);
    }
    write_order(&mut files);
    Ok(files)
}

/// Creates `dst` if needed and writes every file (`meta.json` last), each
/// fsynced, then the folder.
fn write_all(
    directory: &JockyDirectory,
    dst: &Path,
    files: &[(PathBuf, u64)],
    bar: &indicatif::ProgressBar,
) -> Result<(), Fail> {
    let failed =
        |p: &Path, e: &dyn std::fmt::Display| Fail::Error(format!("writing {}: {e}", p.display()));
    fs::create_dir_all(dst).map_err(|e| failed(dst, &e))?;
    for (name, len) in files {
        let target = dst.join(name);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| failed(parent, &e))?;
        }
        let slice = directory.open_read(name).map_err(|e| failed(&target, &e))?;
        let mut file = File::create_new(&target).map_err(|e| failed(&target, &e))?;
        let mut at = 0usize;
        let len = *len as usize;
        while at < len {
            let end = (at + CHUNK).min(len);
            let bytes = slice
                .read_bytes_slice(at..end)
                .map_err(|e| failed(&target, &e))?;
            file.write_all(bytes.as_slice())
                .map_err(|e| failed(&target, &e))?;
            bar.inc((end - at) as u64);
            at = end;
        }
        file.sync_all().map_err(|e| failed(&target, &e))?;
    }
    File::open(dst)
        .and_then(|d| d.sync_all())
        .map_err(|e| failed(dst, &e))?;
    if let Some(parent) = dst.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The new folder's own entry.
        let _ = File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}
