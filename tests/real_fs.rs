//! Real file systems: a size-limited tmpfs and a loop-mounted ext4 image.
//!
//! The disk fills up while indexing (with exports and reclamation after every
//! commit), during an export, and during a reclamation pass: the error comes
//! back, nothing acknowledged is lost, and once space is freed the folder
//! reopens and indexing goes on. tmpfs also checks the default write mode
//! (direct I/O) on a file system that may refuse it.
//!
//! Mounting needs root and the `mount` tool (and `mkfs.ext4` for ext4); where
//! that is impossible each test prints why and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

use jocky::{ExportPolicy, JockyDirectory};
use tantivy::collector::Count;
use tantivy::query::AllQuery;
use tantivy::schema::{Schema, STORED, TEXT};
use tantivy::{doc, Index, IndexWriter};

const DOCS: usize = 300;

/// A mounted file system, unmounted (and its image removed) on drop.
struct Mount {
    _dir: tempfile::TempDir,
    path: PathBuf,
    image: Option<PathBuf>,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        if let Some(img) = &self.image {
            let _ = std::fs::remove_file(img);
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{cmd:?}: {e}")),
    }
}

fn tmpfs(mib: u64) -> Result<Mount, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().to_path_buf();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(&path))?;
    Ok(Mount {
        _dir: dir,
        path,
        image: None,
    })
}

fn ext4(mib: u64) -> Result<Mount, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("mnt");
    std::fs::create_dir(&path).map_err(|e| e.to_string())?;
    let image = dir.path().join("fs.img");
    let f = std::fs::File::create(&image).map_err(|e| e.to_string())?;
    f.set_len(mib << 20).map_err(|e| e.to_string())?;
    // No blocks reserved for root: the tests run as root and must see ENOSPC.
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0"])
        .arg(&image))?;
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&image)
        .arg(&path))?;
    Ok(Mount {
        _dir: dir,
        path,
        image: Some(image),
    })
}

/// Free bytes on the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Fills the file system until about `leave` bytes are free; returns the filler.
fn fill(m: &Mount, leave: u64) -> PathBuf {
    use std::io::Write;
    let filler = m.path.join("filler");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&filler)
        .unwrap();
    let chunk = vec![0x5Au8; 64 << 10];
    while free_bytes(&m.path) > leave + chunk.len() as u64 {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    filler
}

fn schema() -> (Schema, tantivy::schema::Field) {
    let mut b = Schema::builder();
    let body = b.add_text_field("body", TEXT | STORED);
    (b.build(), body)
}

fn open(path: &Path, export: ExportPolicy) -> jocky::Result<JockyDirectory> {
    JockyDirectory::builder(path)
        .container_file_size(2 << 20)
        .preallocate(256 << 10)
        .export_policy(export)
        .open()
}

/// One commit of `DOCS` documents (~100 KB of stored text); any error counts
/// as the disk being full.
fn commit(w: &mut IndexWriter, body: tantivy::schema::Field, n: usize) -> tantivy::Result<()> {
    for i in 0..DOCS {
        let text: String = (0..50)
            .map(|k| format!("w{} ", (n * 7919 + i * 104_729 + k * 613) % 20_000))
            .collect();
        w.add_document(doc!(body => text))?;
    }
    w.commit().map(|_| ())
}

fn docs(dir: JockyDirectory) -> usize {
    let index = Index::open(dir).unwrap();
    index
        .reader()
        .unwrap()
        .searcher()
        .search(&AllQuery, &Count)
        .unwrap()
}

/// Reopens after space was freed: every acknowledged commit is there (and at
/// most the one in flight besides), whole; tantivy's checksums hold; indexing
/// and export go on.
fn check_recovers(path: &Path, acknowledged: usize, what: &str) {
    let dir = open(path, ExportPolicy::Manual).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    let n = docs(dir.clone());
    assert_eq!(n % DOCS, 0, "{what}: half a commit ({n} docs)");
    assert!(
        n >= acknowledged && n <= acknowledged + DOCS,
        "{what}: {n} docs, {acknowledged} acknowledged"
    );
    let index = Index::open(dir.clone()).unwrap();
    assert!(index.validate_checksum().unwrap().is_empty(), "{what}");
    dir.verify_segments()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let (_, body) = schema();
    let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    commit(&mut w, body, 999).unwrap_or_else(|e| panic!("{what}: commit after freeing: {e}"));
    drop(w);
    dir.export_committed().unwrap();
    dir.reclaim().unwrap();
    assert_eq!(docs(dir), n + DOCS, "{what}");
}

/// Waits until the engine of the failed run closed: a writer killed by an
/// I/O error returns from `wait_merging_threads` before its merges end, and
/// their threads hold the directory, so an open in this process would share
/// the poisoned engine (which refuses every write) until they let go.
fn wait_until_closed(path: &Path, what: &str) {
    let start = std::time::Instant::now();
    while open(path, ExportPolicy::Manual)
        .unwrap_or_else(|e| panic!("{what}: reopen: {e}"))
        .stats()
        .poisoned
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "{what}: the failed engine never closed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Indexing (exporting and reclaiming after every commit) until the disk is full.
fn indexing_fills_the_disk(m: &Mount, what: &str) {
    let path = m.path.join("index");
    let filler = fill(m, 6 << 20);
    let mut acknowledged = 0;
    let mut failed = None;
    {
        let dir = open(
            &path,
            ExportPolicy::OnCommit {
                min_segment_bytes: 0,
            },
        )
        .unwrap();
        let (schema, body) = schema();
        let index = Index::open_or_create(dir.clone(), schema).unwrap();
        let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for n in 0..400 {
            match commit(&mut w, body, n) {
                Ok(()) => acknowledged += DOCS,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
            dir.wait_for_background_work();
        }
        // Merges still running hold the directory (and so the poisoned
        // engine, which a reopen in this process would share): wait for them.
        let _ = w.wait_merging_threads();
    }
    let failed = failed.unwrap_or_else(|| panic!("{what}: the disk never filled up"));
    eprintln!("{what}: full after {acknowledged} docs: {failed}");
    assert!(acknowledged > 0, "{what}: not even one commit fitted");
    std::fs::remove_file(filler).unwrap();
    wait_until_closed(&path, what);
    check_recovers(&path, acknowledged, what);
}

/// An export, then a reclamation pass, on a full disk.
fn maintenance_on_a_full_disk(m: &Mount, what: &str) {
    let path = m.path.join("maint");
    let (schema, body) = schema();
    let acknowledged;
    {
        let dir = open(&path, ExportPolicy::Manual).unwrap();
        let index = Index::open_or_create(dir.clone(), schema).unwrap();
        let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for n in 0..6 {
            commit(&mut w, body, n).unwrap();
        }
        acknowledged = 6 * DOCS;
        // A merge (with space) makes the container's copies of its inputs dead:
        // on the full disk, export has a new segment to write and reclamation
        // files to remove and live files to copy forward.
        let ids = index.searchable_segment_ids().unwrap();
        w.merge(&ids).wait().unwrap();
        w.garbage_collect_files().wait().unwrap();
        let filler = fill(m, 16 << 10);
        let export = dir.export_committed();
        assert!(export.is_err(), "{what}: export on a full disk: {export:?}");
        eprintln!("{what}: export on a full disk: {}", export.unwrap_err());
        let reclaim = dir.reclaim();
        eprintln!("{what}: reclaim on a full disk: {reclaim:?}");
        drop(w);
        drop(index);
        drop(dir);
        std::fs::remove_file(filler).unwrap();
    }
    check_recovers(&path, acknowledged, what);
}

fn with_mount(
    make: fn(u64) -> Result<Mount, String>,
    mib: u64,
    test: fn(&Mount, &str),
    what: &str,
) {
    match make(mib) {
        Ok(m) => test(&m, what),
        Err(e) => eprintln!("skipped {what}: cannot mount ({e})"),
    }
}

#[test]
fn tmpfs_indexing_until_full_loses_nothing() {
    with_mount(tmpfs, 24, indexing_fills_the_disk, "tmpfs indexing");
}

#[test]
fn ext4_indexing_until_full_loses_nothing() {
    with_mount(ext4, 40, indexing_fills_the_disk, "ext4 indexing");
}

#[test]
fn tmpfs_export_and_reclaim_on_a_full_disk_lose_nothing() {
    with_mount(tmpfs, 24, maintenance_on_a_full_disk, "tmpfs maintenance");
}

#[test]
fn ext4_export_and_reclaim_on_a_full_disk_lose_nothing() {
    with_mount(ext4, 40, maintenance_on_a_full_disk, "ext4 maintenance");
}

/// What a crash leaves on a tmpfs: the active container file grown ahead of
/// its records (`set_len`, no memory behind it), then the disk full. An open
/// reads past the last record to find the end; through a mapping, a page of
/// that hole needs memory the full tmpfs does not have (SIGBUS, the process
/// gone). It must open, serve what was committed, refuse a write with an
/// error and accept it once there is room.
fn open_a_crashed_folder_on_a_full_disk(m: &Mount, what: &str) {
    let path = m.path.join("crashed");
    let (schema, body) = schema();
    {
        let dir = open(&path, ExportPolicy::Manual).unwrap();
        let index = Index::open_or_create(dir.clone(), schema).unwrap();
        let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        commit(&mut w, body, 0).unwrap();
        w.wait_merging_threads().unwrap();
    }
    let active = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max()
        .unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap();
    f.set_len(f.metadata().unwrap().len() + (1 << 20)).unwrap();
    drop(f);
    let filler = fill(m, 0);
    let dir = open(&path, ExportPolicy::Manual).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    assert_eq!(docs(dir.clone()), DOCS, "{what}");
    let index = Index::open(dir.clone()).unwrap();
    let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    assert!(
        commit(&mut w, body, 1).is_err(),
        "{what}: a commit on a full disk"
    );
    drop(w);
    drop(index);
    drop(dir);
    std::fs::remove_file(filler).unwrap();
    wait_until_closed(&path, what);
    check_recovers(&path, DOCS, what);
}

#[test]
fn tmpfs_a_crashed_folder_opens_on_a_full_disk() {
    with_mount(
        tmpfs,
        16,
        open_a_crashed_folder_on_a_full_disk,
        "tmpfs crashed, full",
    );
}

/// Bytes of the files in `dir` resident in the page cache (`fincore`).
fn cached_bytes(dir: &Path) -> Result<u64, String> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .map(|e| e.unwrap().path())
        .collect();
    let out = Command::new("fincore")
        .args(["-b", "-n", "-o", "RES"])
        .args(&files)
        .output()
        .map_err(|e| format!("fincore: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse::<u64>().unwrap())
        .sum())
}

/// A deleted file's pages leave the page cache even where its chunks sat
/// between a live file's in the container. Linux caches what one write brings
/// in as folios up to 2 MiB and drops a folio only whole: written with one
/// write per stage, the chunks of two files written side by side shared
/// folios, and the dead one's pages stayed cached as long as the live one.
fn a_deleted_file_leaves_the_page_cache(m: &Mount, what: &str) {
    use std::io::Write;
    use tantivy::directory::{Directory, TerminatingWrite};
    const CHUNK: usize = 64 << 10;
    const CHUNKS: usize = 32;
    let path = m.path.join("idx");
    let dir = open(&path, ExportPolicy::Manual).unwrap();
    let mut a = dir.open_write(Path::new("a.bin")).unwrap();
    let mut b = dir.open_write(Path::new("b.bin")).unwrap();
    for i in 0..CHUNKS {
        a.write_all(&vec![i as u8; CHUNK]).unwrap();
        a.flush().unwrap();
        b.write_all(&vec![!(i as u8); CHUNK]).unwrap();
        b.flush().unwrap();
    }
    a.terminate().unwrap();
    b.terminate().unwrap();
    // Durable, so the pages are clean and may be dropped.
    dir.sync_directory().unwrap();
    let each = (CHUNK * CHUNKS) as u64;
    let before = match cached_bytes(&path) {
        Ok(n) => n,
        Err(e) => return eprintln!("skipped {what}: {e}"),
    };
    assert!(
        before >= 2 * each,
        "{what}: {before} bytes cached after writing"
    );
    dir.delete(Path::new("a.bin")).unwrap();
    let after = cached_bytes(&path).unwrap();
    // b.bin, the records' headers and the file header stay.
    assert!(
        after <= each + each / 8,
        "{what}: {after} bytes cached after deleting a.bin ({before} before; b.bin is {each})"
    );
    let mut back = Vec::new();
    std::io::Read::read_to_end(
        &mut &dir
            .open_read(Path::new("b.bin"))
            .unwrap()
            .read_bytes()
            .unwrap()[..],
        &mut back,
    )
    .unwrap();
    assert!(back
        .chunks(CHUNK)
        .enumerate()
        .all(|(i, c)| c.iter().all(|x| *x == !(i as u8))));
}

#[test]
fn ext4_a_deleted_file_leaves_the_page_cache() {
    with_mount(
        ext4,
        40,
        a_deleted_file_leaves_the_page_cache,
        "ext4 page cache",
    );
}
