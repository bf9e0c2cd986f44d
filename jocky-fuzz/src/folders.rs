//! Real folders built in memory (a tantivy index, a 3-tenant store, a folder of
//! raw files), their mutation, and the `open` execution over a mutated copy.

use std::path::Path;
use std::sync::Arc;

use jocky::testing::{SimStorage, Storage};
use jocky::{Builder, ExportPolicy, JockyDirectory, WriteMode};
use rand::rngs::StdRng;
use rand::Rng;
use tantivy::directory::{Directory, TerminatingWrite};
use tantivy::indexer::NoMergePolicy;
use tantivy::schema::{Schema, FAST, INDEXED, STORED, TEXT};
use tantivy::{doc, Index, IndexWriter};

use crate::mutate::{self, FILE_HEADER_LEN};

/// How a folder is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// One tantivy index: `JockyDirectory`.
    Index = 0,
    /// A multi-tenant `Store`.
    Store = 1,
    /// Raw files, some deleted, some exported: `JockyDirectory`.
    Plain = 2,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        [Kind::Index, Kind::Store, Kind::Plain]
            .get(v as usize)
            .copied()
    }
}

/// A folder: its kind and its files, sorted by name.
#[derive(Clone, Debug)]
pub struct Folder {
    pub kind: Kind,
    pub name: &'static str,
    pub files: Vec<(String, Vec<u8>)>,
}

impl Folder {
    /// Total bytes of its files.
    pub fn bytes(&self) -> usize {
        self.files.iter().map(|f| f.1.len()).sum()
    }

    /// Serialized (the `open` target's input): `JFZF`, kind u8, count u32, then
    /// per file `name_len u16, name, len u64, bytes`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes() + 64 * self.files.len() + 9);
        out.extend_from_slice(b"JFZF");
        out.push(self.kind as u8);
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for (n, b) in &self.files {
            out.extend_from_slice(&(n.len() as u16).to_le_bytes());
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    /// The inverse of [`Folder::encode`]; `None` for bytes it did not make.
    pub fn decode(b: &[u8]) -> Option<Folder> {
        let mut r = b.strip_prefix(b"JFZF")?;
        let kind = Kind::from_u8(*r.first()?)?;
        r = &r[1..];
        let count = u32::from_le_bytes(r.get(..4)?.try_into().ok()?);
        r = &r[4..];
        let mut files = Vec::new();
        for _ in 0..count {
            let nl = u16::from_le_bytes(r.get(..2)?.try_into().ok()?) as usize;
            let name = std::str::from_utf8(r.get(2..2 + nl)?).ok()?.to_string();
            r = &r[2 + nl..];
            let len = u64::from_le_bytes(r.get(..8)?.try_into().ok()?);
            let len = usize::try_from(len).ok()?;
            files.push((name, r.get(8..8 + len)?.to_vec()));
            r = &r[8 + len..];
        }
        Some(Folder {
            kind,
            name: "decoded",
            files,
        })
    }
}

/// The builder every folder is made and opened with (as the crash tests do):
/// 1 MiB container files, small buffers, nothing in the background.
pub fn builder(s: &SimStorage) -> Builder {
    JockyDirectory::builder("/sim")
        .storage(Arc::new(s.clone()))
        .container_file_size(1 << 20)
        .preallocate(64 << 10)
        .write_buffer(4 << 10, 64 << 10)
        .write_mode(WriteMode::Inline)
        .export_policy(ExportPolicy::Manual)
}

fn snapshot(s: &SimStorage) -> Vec<(String, Vec<u8>)> {
    let mut names = s.list().expect("list");
    names.sort();
    names
        .into_iter()
        .filter_map(|n| s.file_bytes(&n).map(|b| (n, b)))
        .collect()
}

/// `jocky-NNNNNNNNNN.log`
pub fn is_container(name: &str) -> bool {
    name.starts_with("jocky-") && name.ends_with(".log")
}

/// `jocky-seg-NNNNNNNNNN.seg`
pub fn is_segment(name: &str) -> bool {
    name.starts_with("jocky-seg-") && name.ends_with(".seg")
}

fn schema() -> Schema {
    let mut b = Schema::builder();
    b.add_u64_field("id", INDEXED | STORED | FAST);
    b.add_text_field("body", TEXT | STORED);
    b.build()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn add_docs(writer: &IndexWriter, schema: &Schema, from: u64, count: u64, words: u64) {
    let id = schema.get_field("id").unwrap();
    let body = schema.get_field("body").unwrap();
    for i in from..from + count {
        let mut text = String::from("alpha");
        for k in 0..words {
            text.push_str(&format!(" w{:x}", splitmix(i * 64 + k) % 200_000));
        }
        writer.add_document(doc!(id => i, body => text)).unwrap();
    }
}

fn writer(index: &Index) -> IndexWriter {
    let w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    w.set_merge_policy(Box::new(NoMergePolicy));
    w
}

fn containers(s: &SimStorage) -> usize {
    s.list().unwrap().iter().filter(|n| is_container(n)).count()
}

/// One tantivy index: commits, an export of the first ones, a reclamation, then
/// commits until the log spans at least two container files, and deletes.
pub fn build_index() -> Folder {
    let s = SimStorage::new();
    {
        let dir = builder(&s).open().expect("open");
        let schema = schema();
        let index = Index::create(dir.clone(), schema.clone(), Default::default()).unwrap();
        let mut w = writer(&index);
        let mut next = 0;
        for _ in 0..2 {
            add_docs(&w, &schema, next, 150, 8);
            next += 150;
            w.commit().unwrap();
        }
        dir.export_committed().unwrap();
        dir.reclaim().unwrap();
        for _ in 0..40 {
            add_docs(&w, &schema, next, 600, 30);
            next += 600;
            w.commit().unwrap();
            if containers(&s) >= 2 {
                break;
            }
        }
        let id = schema.get_field("id").unwrap();
        for i in 0..20 {
            w.delete_term(tantivy::Term::from_field_u64(id, i));
        }
        w.commit().unwrap();
        w.garbage_collect_files().wait().unwrap();
        w.wait_merging_threads().unwrap();
        dir.verify_segments().unwrap();
    }
    Folder {
        kind: Kind::Index,
        name: "index",
        files: snapshot(&s),
    }
}

/// A store of three tenants, each a small tantivy index; the first two exported.
pub fn build_store() -> Folder {
    let s = SimStorage::new();
    {
        let store = builder(&s).open_store().expect("open_store");
        let schema = schema();
        for (t, tenant) in ["alpha", "beta", "gamma"].into_iter().enumerate() {
            let dir = store.directory(tenant).unwrap();
            let index = Index::create(dir, schema.clone(), Default::default()).unwrap();
            let mut w = writer(&index);
            for c in 0..2u64 {
                add_docs(&w, &schema, (t as u64 * 10 + c) * 100, 60, 6);
                w.commit().unwrap();
            }
            w.wait_merging_threads().unwrap();
            if t < 2 {
                store.export_committed().unwrap();
            }
        }
        store.reclaim().unwrap();
    }
    Folder {
        kind: Kind::Store,
        name: "store",
        files: snapshot(&s),
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed as u32 * 40503) as u8
                ^ seed
        })
        .collect()
}

fn write_file(dir: &JockyDirectory, name: &str, data: &[u8]) {
    use std::io::Write;
    let mut w = dir.open_write(Path::new(name)).unwrap();
    for chunk in data.chunks(3000) {
        w.write_all(chunk).unwrap();
    }
    w.terminate().unwrap();
}

/// Raw files: written, atomically written, deleted, exported, reclaimed, over
/// two container files.
pub fn build_plain() -> Folder {
    let s = SimStorage::new();
    {
        let dir = builder(&s).open().expect("open");
        write_file(&dir, "a.bin", &pattern(1, 5_000));
        write_file(&dir, "b.bin", &pattern(2, 40_000));
        write_file(&dir, "c.bin", &pattern(3, 700_000));
        dir.atomic_write(Path::new("x.json"), b"{\"x\":1}").unwrap();
        write_file(&dir, "e.bin", &pattern(5, 9_000));
        dir.export_files(&[Path::new("b.bin"), Path::new("e.bin")])
            .unwrap();
        dir.delete(Path::new("a.bin")).unwrap();
        write_file(&dir, "d.bin", &pattern(4, 400_000));
        dir.delete(Path::new("c.bin")).unwrap();
        dir.atomic_write(Path::new("x.json"), b"{\"x\":2}").unwrap();
        dir.reclaim().unwrap();
        write_file(&dir, "f.bin", &pattern(6, 3_000));
        dir.sync_directory().unwrap();
    }
    Folder {
        kind: Kind::Plain,
        name: "plain",
        files: snapshot(&s),
    }
}

/// The three folders.
pub fn build_all() -> Vec<Folder> {
    vec![build_index(), build_store(), build_plain()]
}

fn file_no(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix("jocky-seg-")
        .or_else(|| name.strip_prefix("jocky-"))?;
    digits.get(..10)?.parse().ok()
}

fn renumber(name: &str, no: u64) -> String {
    if is_segment(name) {
        format!("jocky-seg-{no:010}.seg")
    } else {
        format!("jocky-{no:010}.log")
    }
}

fn another_number(rng: &mut StdRng, name: &str) -> u64 {
    let n = file_no(name).unwrap_or(0);
    match rng.random_range(0..4) {
        0 => n + 1,
        1 => n.saturating_sub(1),
        2 => n + rng.random_range(2..20),
        _ => *[9_999_999_999, 0, 1, 2, 3]
            .get(rng.random_range(0..5))
            .unwrap_or(&0),
    }
}

/// Mutates one file's bytes: for a container file, usually one record (then
/// its CRC fixed, mostly), else the whole file; for a segment file, the whole
/// file with its trailer and table CRCs fixed half of the time.
fn mutate_bytes(rng: &mut StdRng, name: &str, data: &mut Vec<u8>, other: &[u8]) {
    let max_len = data.len() + (64 << 10);
    if is_container(name) && data.len() > FILE_HEADER_LEN && rng.random_bool(0.6) {
        let frames = mutate::record_frames(data, FILE_HEADER_LEN);
        if !frames.is_empty() {
            // Records near the end (the tail recovery looks at) a little more often.
            let i = if rng.random_bool(0.3) {
                frames.len() - 1 - rng.random_range(0..frames.len().min(4))
            } else {
                rng.random_range(0..frames.len())
            };
            let (pos, framed, _) = frames[i];
            let end = (pos + framed).min(data.len());
            let mut rec = data[pos..end].to_vec();
            // Header fields are what recovery reasons about: hit them half the time.
            if rng.random_bool(0.5) && rec.len() >= 32 {
                let mut head = rec[..32].to_vec();
                mutate::mutate_once(rng, &mut head, &[], 32);
                head.resize(32, 0);
                rec[..32].copy_from_slice(&head);
            } else {
                mutate::mutate(rng, &mut rec, other, framed + 4096);
            }
            data.splice(pos..end, rec);
            if rng.random_bool(0.75) {
                mutate::fix_container(data);
            }
            return;
        }
    }
    mutate::mutate(rng, data, other, max_len);
    if is_container(name) {
        if rng.random_bool(0.5) {
            mutate::fix_container(data);
        }
    } else if is_segment(name) && rng.random_bool(0.5) {
        mutate::fix_segment(data, rng.random_bool(0.5));
    }
}

/// Applies 1 to 3 mutations to a copy of `base`; `donors` are the other folders
/// (a file may be taken from one). Returns what was done, for the report.
pub fn mutate_folder(rng: &mut StdRng, folder: &mut Folder, donors: &[Folder]) {
    let n = rng.random_range(1..=3);
    for _ in 0..n {
        let files = &mut folder.files;
        if files.is_empty() {
            files.push(("jocky-0000000000.log".into(), vec![0; 64]));
        }
        let i = rng.random_range(0..files.len());
        match rng.random_range(0..20) {
            0..=11 => {
                // Container files more often than segment files: more goes on there.
                let i = if rng.random_bool(0.6) {
                    let c: Vec<usize> = (0..files.len())
                        .filter(|&k| is_container(&files[k].0))
                        .collect();
                    if c.is_empty() {
                        i
                    } else {
                        c[rng.random_range(0..c.len())]
                    }
                } else {
                    i
                };
                let other = files[rng.random_range(0..files.len())].1.clone();
                let (name, data) = &mut files[i];
                mutate_bytes(rng, name, data, &other);
            }
            12 => {
                files.remove(i);
            }
            13 => {
                let name = files[i].0.clone();
                let no = another_number(rng, &name);
                files[i].0 = renumber(&name, no);
            }
            14 => {
                let name = files[i].0.clone();
                let no = another_number(rng, &name);
                let copy = (renumber(&name, no), files[i].1.clone());
                files.push(copy);
            }
            15 => {
                // A stray file.
                let stray = match rng.random_range(0..4) {
                    0 => ("notes.txt".to_string(), b"hello".to_vec()),
                    1 => {
                        let mut h = files[i].1.get(..64).unwrap_or(&[]).to_vec();
                        h.resize(64, 0);
                        let no = file_no(&files[i].0).unwrap_or(0) + 1;
                        (format!("jocky-{no:010}.log"), h)
                    }
                    2 => {
                        let len = rng.random_range(0..8192);
                        let mut b = vec![0u8; len];
                        rng.fill(&mut b[..]);
                        let no = rng.random_range(0..5u64);
                        (format!("jocky-seg-{no:010}.seg"), b)
                    }
                    _ => ("jocky-0000000000.log.tmp".to_string(), vec![]),
                };
                files.push(stray);
            }
            16 if is_container(&files[i].0) => {
                // Cut at a record boundary (or inside the header).
                let frames = mutate::record_frames(&files[i].1, FILE_HEADER_LEN);
                let cut = if frames.is_empty() || rng.random_bool(0.2) {
                    rng.random_range(0..=FILE_HEADER_LEN.min(files[i].1.len()))
                } else {
                    let f = frames[rng.random_range(0..frames.len())];
                    f.0 + if rng.random_bool(0.7) { 0 } else { f.1 / 2 }
                };
                files[i].1.truncate(cut);
            }
            17 => {
                let j = rng.random_range(0..files.len());
                let (a, b) = (files[i].1.clone(), files[j].1.clone());
                files[i].1 = b;
                files[j].1 = a;
            }
            18 if !donors.is_empty() => {
                // A file of the same name from another folder (another history).
                let d = &donors[rng.random_range(0..donors.len())];
                if let Some(f) = d.files.iter().find(|f| f.0 == files[i].0) {
                    files[i].1 = f.1.clone();
                } else if let Some(f) = d.files.first() {
                    files[i].1 = f.1.clone();
                }
            }
            _ => {
                // A container file that ends in the middle of a record, as a torn
                // write leaves it: truncation anywhere.
                let len = files[i].1.len();
                let cut = len.saturating_sub(rng.random_range(1..=4096.min(len.max(1))));
                files[i].1.truncate(cut);
            }
        }
    }
    folder.files.sort();
}

/// What one open did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpenOutcome {
    /// The folder opened.
    pub opened: bool,
    /// Files read to their end.
    pub files_read: u64,
    /// Files whose reading failed (an error, which is fine).
    pub read_errors: u64,
    /// `verify_segments` succeeded (for every tenant of a store).
    pub verified: bool,
    /// After a write, the folder was reopened.
    pub reopened: bool,
}

/// The full text of the last error [`error_name`] named (for `repro`).
pub static LAST_ERROR: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// The error's variant name, for counting.
pub fn error_name(e: &jocky::Error) -> String {
    if let Ok(mut l) = LAST_ERROR.lock() {
        *l = format!("{e}");
    }
    let s = format!("{e:?}");
    s.chars().take_while(|c| c.is_alphanumeric()).collect()
}

fn read_all(dir: &JockyDirectory, out: &mut OpenOutcome) {
    for p in dir.list_files() {
        match dir.open_read(&p).map(|f| f.read_bytes()) {
            Ok(Ok(b)) => {
                std::hint::black_box(b.as_slice());
                out.files_read += 1;
            }
            _ => out.read_errors += 1,
        }
    }
}

/// Opens `folder` (copied onto a fresh `SimStorage`); if it opens, reads every
/// listed file and verifies the segment files; with `write`, then also writes a
/// file, closes and opens again. `Err` carries the error's variant name.
pub fn open_folder(folder: &Folder, write: bool) -> Result<OpenOutcome, String> {
    let s = SimStorage::new();
    for (n, b) in &folder.files {
        s.set_file_bytes(n, b.clone());
    }
    let mut out = OpenOutcome::default();
    match folder.kind {
        Kind::Index | Kind::Plain => {
            let dir = builder(&s).open().map_err(|e| error_name(&e))?;
            out.opened = true;
            read_all(&dir, &mut out);
            out.verified = dir.verify_segments().is_ok();
            if write {
                let w = dir.atomic_write(Path::new("fuzz.json"), b"{}");
                let e = dir.export_committed();
                let r = dir.reclaim();
                drop(dir);
                if w.is_ok() && e.is_ok() && r.is_ok() {
                    let dir = builder(&s)
                        .open()
                        .map_err(|e| format!("reopen:{}", error_name(&e)))?;
                    out.reopened = true;
                    read_all(&dir, &mut out);
                }
            }
        }
        Kind::Store => {
            let store = builder(&s).open_store().map_err(|e| error_name(&e))?;
            out.opened = true;
            out.verified = true;
            for t in store.tenants() {
                match store.directory(&t) {
                    Ok(dir) => {
                        read_all(&dir, &mut out);
                        out.verified &= dir.verify_segments().is_ok();
                    }
                    Err(_) => out.read_errors += 1,
                }
            }
            if write {
                let w = store
                    .directory("delta")
                    .map(|d| d.atomic_write(Path::new("x"), b"1").is_ok())
                    .unwrap_or(false);
                let r = store.reclaim();
                drop(store);
                if w && r.is_ok() {
                    let store = builder(&s)
                        .open_store()
                        .map_err(|e| format!("reopen:{}", error_name(&e)))?;
                    out.reopened = true;
                    for t in store.tenants() {
                        if let Ok(dir) = store.directory(&t) {
                            read_all(&dir, &mut out);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}
