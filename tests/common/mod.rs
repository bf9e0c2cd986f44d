//! Helpers shared by the integration tests.
//!
//! Every test binary that needs them declares `mod common;` at its crate root.
#![allow(dead_code)]

pub mod contract;
pub mod exporting;
pub mod fd_bound;

use std::collections::BTreeMap;
use std::sync::Arc;

use jocky::testing::{SimStorage, Storage};
use jocky::JockyDirectory;

/// A directory over simulated storage, with container files small enough (1 MiB)
/// that tests rotate through several, and small write buffers.
pub fn open_sim(s: &SimStorage) -> jocky::Result<JockyDirectory> {
    JockyDirectory::builder("/sim")
        .storage(Arc::new(s.clone()))
        .container_file_size(1 << 20)
        .preallocate(64 << 10)
        .write_buffer(4 << 10, 64 << 10)
        // Nothing in the background: crash tests replay exact histories.
        .export_policy(jocky::ExportPolicy::Manual)
        .write_mode(jocky::WriteMode::Inline)
        .open()
}

/// Runs the `#[ignore]`d entry point `name` of this test binary as a child
/// process with `env` set, and returns its standard output.
pub fn run_child(name: &str, env: (&str, &std::path::Path)) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env.0, env.1)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a whole file in 3,000-byte writes and terminates it.
pub fn write_file(dir: &dyn tantivy::Directory, name: &str, data: &[u8]) {
    use std::io::Write;
    use tantivy::directory::TerminatingWrite;
    let mut w = dir.open_write(std::path::Path::new(name)).unwrap();
    for chunk in data.chunks(3000) {
        w.write_all(chunk).unwrap();
    }
    w.terminate().unwrap();
}

/// The whole content of a file.
pub fn read(dir: &dyn tantivy::Directory, name: &str) -> Vec<u8> {
    dir.open_read(std::path::Path::new(name))
        .unwrap()
        .read_bytes()
        .unwrap()
        .as_slice()
        .to_vec()
}

/// Every file of a simulated folder with its written bytes: what a killed
/// process leaves (the page cache survives), or a folder after a clean close.
pub fn files_of(s: &SimStorage) -> BTreeMap<String, Vec<u8>> {
    s.list()
        .unwrap()
        .into_iter()
        .map(|n| {
            let b = s.file_bytes(&n).unwrap();
            (n, b)
        })
        .collect()
}

/// A simulated folder holding `files`.
pub fn disk_of(files: &BTreeMap<String, Vec<u8>>) -> SimStorage {
    let s = SimStorage::new();
    for (name, bytes) in files {
        s.set_file_bytes(name, bytes.clone());
    }
    s
}

/// A schema of an `id` (indexed, stored, fast) and a `body` (text, stored).
pub fn id_body_schema() -> tantivy::schema::Schema {
    use tantivy::schema::{FAST, INDEXED, STORED, TEXT};
    let mut b = tantivy::schema::Schema::builder();
    b.add_u64_field("id", INDEXED | STORED | FAST);
    b.add_text_field("body", TEXT | STORED);
    b.build()
}

/// SplitMix64: well-spread pseudo-random words from document numbers.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
