//! `jocky cat DIR PATH [--tenant T]`: one virtual file's raw bytes on stdout.

use std::io::Write;
use std::path::Path;

use tantivy::{Directory, HasLen};

use crate::fail::{error, Fail};
use crate::Outcome;

/// Bytes read and written at a time.
const CHUNK: u64 = 1 << 20;

/// Writes the file `path` of `tenant` (the plain index without one) to stdout.
pub fn run(dir: &Path, path: &Path, tenant: Option<&str>) -> Outcome {
    let directory = crate::open::read_only_dir(dir, tenant)?;
    let name = || match tenant {
        Some(t) => format!("{t}/{}", path.display()),
        None => path.display().to_string(),
    };
    match directory.exists(path) {
        Ok(true) => {}
        Ok(false) => return error(format!("{}: no file {} in it", dir.display(), name())),
        Err(e) => return error(format!("{}: {}: {e}", dir.display(), name())),
    }
    let slice = directory
        .open_read(path)
        .map_err(|e| Fail::Error(format!("{}: cannot open {}: {e}", dir.display(), name())))?;
    let len = slice.len() as u64;
    let mut out = std::io::stdout().lock();
    let mut at = 0;
    while at < len {
        let end = (at + CHUNK).min(len);
        let bytes = slice
            .read_bytes_slice(at as usize..end as usize)
            .map_err(|e| Fail::Error(format!("{}: reading {}: {e}", dir.display(), name())))?;
        out.write_all(bytes.as_slice())?;
        at = end;
    }
    out.flush()?;
    Ok(())
}
