//! Segments built in place: the bytes of a large segment's files go straight
//! into the segment file that will hold the segment, instead of into the
//! container first and into a segment file again at export. On a file system
//! without shared blocks (ext4) that is the difference between writing the
//! final index twice and once.
//!
//! A segment (the `<uuid>.<ext>` files of one namespace) is built in place
//! once the bytes its files wrote reach the export policy's minimum: from
//! then on chunks a writer hands over (a whole number of pages, but the last)
//! are written into segment file N with `pwrite`, through a descriptor opened
//! for that write, and a `Placed` record in the container says where each is.
//! One file at a time owns the end of N, from its first chunk there to its
//! last: its chunks follow each other, so it is one range of N, and the bytes
//! it wrote before (in the container) get a hole of their size in front of
//! it, which the export fills. A chunk of another file while the end is owned
//! goes to the container as before (tantivy writes a segment's postings,
//! positions and terms side by side: one of them is built in place, the
//! others are copied by the export, as every file was before). So no file in
//! N is ever in pieces, the export never moves a byte of N, and no byte of N
//! is rewritten while anyone — this process or a read-only one beside it —
//! may have it mapped.
//!
//! Order, so that a crash at any point leaves nothing an open trusts half
//! made: `ExportBegin(N)` appended and synced, N created and the folder
//! synced, then chunks and their records. `sync_directory` (and a durable
//! atomic write) syncs every segment file being built that has unsynced
//! chunks before it syncs the container, so a record it makes durable never
//! names bytes that are not. A record made durable otherwise (by a sync for
//! another file) may name bytes a power loss then took: such a file was
//! never synced through tantivy, so no commit names it; reading it fails its
//! chunk's CRC (reported, never served), and tantivy deletes it.
//!
//! The export of such a segment writes into N (the holes, the files that
//! are in the container at its end, then table and trailer) and logs the
//! `Export` record as any export does. A segment whose files are all deleted
//! first (merged away) leaves N dead, and reclamation drops it
//! (`SegmentDrop`). While a file is being built in place no snapshot is
//! written (its image has no place for chunks), and the container files
//! holding its records are not reclaimed.
//!
//! Lock order: `creating` → the container's (append, sync) → `io`; an
//! export holds `io` while it writes and maps a segment file (and takes the
//! container's read locks under it), so that one descriptor of a segment
//! file being written is open at a time (the fd bound: 2 plus 1); `state`
//! is taken alone, for in-memory updates only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::engine::Engine;
use crate::format::segment_file::{
    block_count, segment_file_name, BlockHasher, HotRange, SegEntry, SegTable, BLOCK_LOG2, PAGE,
};
use crate::io::{Storage, StorageFile};
use crate::sync::lock;
use crate::table::{runs, Location};

/// The file types of a segment tantivy writes once and that are exported;
/// delete bitsets (`.del`) and temporary files stay in the container.
const BUILT_TYPES: [&str; 6] = ["idx", "pos", "term", "store", "fast", "fieldnorm"];

/// A segment of a namespace: `(namespace, segment id)`.
pub(crate) type SegKey = (Arc<str>, Arc<str>);

/// The segment a file belongs to, if it is a file a segment is built of:
/// `<32 hex digits>.<type>`.
pub(crate) fn segment_of(path: &str) -> Option<&str> {
    let (id, ext) = path.split_once('.')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && BUILT_TYPES.contains(&ext))
        .then_some(id)
}

/// Where a chunk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Into the container, as always.
    Container,
    /// Nowhere: the file has chunks in a segment file being built and this
    /// one cannot follow them (a write before it failed).
    Refuse,
    /// The segment just became large enough: its segment file is to be
    /// created first, then the chunk planned again.
    Create,
    /// At `offset` of segment file `no` (reserved; [`Builds::done`] or
    /// [`Builds::abandon`] must follow).
    Place { no: u64, offset: u64 },
}

/// The segments being built in place.
#[derive(Default)]
pub(crate) struct Builds {
    state: Mutex<State>,
    /// Held while a segment file is created (its `ExportBegin` appended and
    /// synced, the file made): creations one at a time, placements go on.
    pub creating: Mutex<()>,
    /// Held around each write or sync of a segment file being built (with
    /// the descriptor it opens): at most one such descriptor at a time.
    pub io: Mutex<()>,
    /// Held by a sync of the files being built from taking the dirty ones to
    /// the end of their syncs: a second sync waits, then finds them clean,
    /// instead of returning while the first one's syncs are under way.
    pub syncing: Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Segments with a writer open, by key.
    segments: HashMap<SegKey, Seg>,
    /// Segment files being built, by number.
    files: HashMap<u64, Build>,
}

/// A file's CRC and its blocks' CRCs, computed as its writer handed its
/// bytes over (what the segment file's table needs, without reading them back).
pub(crate) type FileCrcs = (u32, Vec<u32>);

/// Whether `crcs` can stand for a file of `len` bytes: one block CRC per
/// block of the segment file's table.
pub(crate) fn crcs_fit(crcs: &FileCrcs, len: u64) -> bool {
    crcs.1.len() as u64 == block_count(len, BLOCK_LOG2)
}

#[derive(Default)]
struct Seg {
    /// CRCs of its files whose writers finished, by file id.
    crcs: HashMap<u64, FileCrcs>,
    writers: usize,
    /// Bytes its files handed over so far.
    bytes: u64,
    /// The segment file it is built in, once it is.
    no: Option<u64>,
}

struct Build {
    /// Where the next run starts (past every reserved byte).
    end: u64,
    /// The file whose run ends at `end` and that is still being written:
    /// only it may place chunks (its next one goes right after its last).
    owner: Option<u64>,
    /// Chunks reserved and not yet in the table.
    pending: usize,
    /// Written since the last sync.
    dirty: bool,
    /// A chunk of it is in the table (its `Placed` record names the file:
    /// evidence an open needs, besides the `ExportBegin`).
    placed: bool,
    /// The segment built in it.
    key: SegKey,
    /// File id to the end of its last chunk: a chunk that starts there
    /// continues the file's run.
    last_end: HashMap<u64, u64>,
}

impl Build {
    /// Nothing reserved in it yet; `placed`: chunks of it are in the table.
    fn new(key: SegKey, placed: bool) -> Build {
        Build {
            end: 0,
            owner: None,
            pending: 0,
            dirty: false,
            placed,
            key,
            last_end: HashMap::new(),
        }
    }
}

impl Builds {
    /// A writer of a file of segment `key` opened.
    pub fn writer_opened(&self, key: &SegKey) {
        lock(&self.state)
            .segments
            .entry(key.clone())
            .or_default()
            .writers += 1;
    }

    /// A writer of a file of segment `key` went. A segment that is not
    /// being built is forgotten with its last writer; one that is stays
    /// known (so that a file opened later joins the same segment file) until
    /// its file is finished or dropped.
    pub fn writer_closed(&self, key: &SegKey) {
        let mut s = lock(&self.state);
        let Some(seg) = s.segments.get_mut(key) else {
            return;
        };
        seg.writers -= 1;
        if seg.writers == 0 && seg.no.is_none() {
            s.segments.remove(key);
        }
    }

    /// Where chunk `file_offset..+len` of file `id` of segment `key` goes,
    /// when the segment is built in place once its files handed over
    /// `min_bytes`. `whole`: the chunk is the whole file (it stays in the
    /// container: one record, nothing to place); `last`: the file ends with it.
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &self,
        key: &SegKey,
        id: u64,
        file_offset: u64,
        len: u64,
        whole: bool,
        last: bool,
        min_bytes: u64,
    ) -> Plan {
        let mut s = lock(&self.state);
        let State {
            segments, files, ..
        } = &mut *s;
        let Some(seg) = segments.get_mut(key) else {
            return Plan::Container;
        };
        let build = seg.no.and_then(|no| Some((no, files.get_mut(&no)?)));
        let Some((no, b)) = build else {
            seg.bytes += len;
            if whole || seg.bytes < min_bytes || !file_offset.is_multiple_of(PAGE) {
                return Plan::Container;
            }
            // Counted again when planned after the creation.
            seg.bytes -= len;
            return Plan::Create;
        };
        seg.bytes += len;
        let offset = match (b.owner, b.last_end.get(&id)) {
            // The owner's next chunk, right after its last one.
            (Some(owner), Some(&last)) if owner == id && last == b.end => last,
            // A file built here that lost the end: a write of its failed (the
            // end was given up with it). It cannot go on in the container
            // (its chunks are here) nor here (it would be in pieces).
            (_, Some(_)) => return Plan::Refuse,
            // The end is someone else's, or this chunk cannot follow a hole:
            // the container, as before.
            (Some(_), None) => return Plan::Container,
            (None, None) if whole || !file_offset.is_multiple_of(PAGE) => return Plan::Container,
            // Its first chunk here: a hole in front for the bytes it has in
            // the container, so that the export can make it one range.
            (None, None) => b.end.next_multiple_of(PAGE) + file_offset,
        };
        b.end = offset + len;
        b.last_end.insert(id, b.end);
        b.owner = (!last).then_some(id);
        b.pending += 1;
        Plan::Place { no, offset }
    }

    /// The writer of file `id` of segment `key` went (terminated or not): if
    /// it owned the end of its segment file, another file may take it.
    pub fn file_closed(&self, key: &SegKey, id: u64) {
        let mut s = lock(&self.state);
        let Some(no) = s.segments.get(key).and_then(|seg| seg.no) else {
            return;
        };
        if let Some(b) = s.files.get_mut(&no) {
            if b.owner == Some(id) {
                b.owner = None;
            }
        }
    }

    /// File `id` of segment `key` was written whole, with these CRCs.
    pub fn record_crcs(&self, key: &SegKey, id: u64, crcs: FileCrcs) {
        if let Some(seg) = lock(&self.state).segments.get_mut(key) {
            seg.crcs.insert(id, crcs);
        }
    }

    /// The segment file of segment `key`, if it has one being built.
    pub fn file_of(&self, key: &SegKey) -> Option<u64> {
        let s = lock(&self.state);
        s.segments
            .get(key)?
            .no
            .filter(|no| s.files.contains_key(no))
    }

    /// Ends the building of segment file `no` for its export, if no chunk
    /// can come any more: none is on its way and no writer of its segment is
    /// open (else `false`, and the export waits for a later pass). Checked
    /// and done under one lock, so no chunk is planned there after it.
    /// Returns the CRCs its files' writers computed (none for a file not
    /// built by this process: an open after a crash).
    pub fn try_finish(&self, no: u64) -> Option<HashMap<u64, FileCrcs>> {
        let mut s = lock(&self.state);
        let Some(b) = s.files.get(&no) else {
            return Some(HashMap::new());
        };
        let open = s.segments.get(&b.key).is_some_and(|seg| seg.writers > 0);
        if b.pending > 0 || open {
            return None;
        }
        let key = b.key.clone();
        s.files.remove(&no);
        Some(
            s.segments
                .remove(&key)
                .map(|seg| seg.crcs)
                .unwrap_or_default(),
        )
    }

    /// Segment file `no` was created for segment `key`.
    pub fn created(&self, key: &SegKey, no: u64) {
        let mut s = lock(&self.state);
        s.segments.entry(key.clone()).or_default().no = Some(no);
        s.files.insert(no, Build::new(key.clone(), false));
    }

    /// The CRCs the writers of the files built in segment file `no`
    /// computed so far, by file id (none for a file this process did not
    /// build).
    pub fn crcs_of(&self, no: u64) -> HashMap<u64, FileCrcs> {
        let s = lock(&self.state);
        s.files
            .get(&no)
            .and_then(|b| s.segments.get(&b.key))
            .map(|seg| seg.crcs.clone())
            .unwrap_or_default()
    }

    /// Takes over segment file `no`, found being built by an open (a crash
    /// ended the process that built it): nothing is placed in it any more
    /// (no writer's segment names it), but it is in the books, so that
    /// reclamation drops it (`SegmentDrop`) once every file with chunks in
    /// it is deleted, and an export finishes it otherwise. Without this, a
    /// segment merged away after the open would leave its file with no record
    /// once the container files holding its `ExportBegin` and `Placed`
    /// records went: the next open refused the folder.
    pub fn adopt(&self, no: u64) {
        // A key no writer has (segment ids are 32 hex digits).
        let key: SegKey = (Arc::from("\0adopted"), Arc::from(no.to_string()));
        lock(&self.state).files.insert(no, Build::new(key, true));
    }

    /// A chunk reserved in `no` is written and in the table.
    pub fn done(&self, no: u64) {
        if let Some(b) = lock(&self.state).files.get_mut(&no) {
            b.pending -= 1;
            b.dirty = true;
            b.placed = true;
        }
    }

    /// Whether a segment file being built may have no live record naming it
    /// but its `ExportBegin`: no chunk of it in the table yet, or none of a
    /// live file (`is_live` says which have some) while it cannot be dropped
    /// yet. The container files holding such records must stay.
    pub fn needs_its_evidence(&self, is_live: impl Fn(u64) -> bool) -> bool {
        lock(&self.state)
            .files
            .iter()
            .any(|(no, b)| !b.placed || !is_live(*no))
    }

    /// A chunk reserved in `no` failed: its bytes were not (all) written.
    /// The file stays dirty (a sync covers whatever did reach it).
    pub fn abandon(&self, no: u64) {
        if let Some(b) = lock(&self.state).files.get_mut(&no) {
            b.pending -= 1;
            b.dirty = true;
        }
    }

    /// The segment files with chunks written since their last sync, now
    /// counted as synced (put back with [`Self::mark_dirty`] if that fails).
    pub fn take_dirty(&self) -> Vec<u64> {
        let mut s = lock(&self.state);
        let mut v = Vec::new();
        for (no, b) in s.files.iter_mut() {
            if std::mem::take(&mut b.dirty) {
                v.push(*no);
            }
        }
        v
    }

    pub fn mark_dirty(&self, no: u64) {
        if let Some(b) = lock(&self.state).files.get_mut(&no) {
            b.dirty = true;
        }
    }

    /// The segment files being built that no chunk can reach any more and
    /// `is_dead` says hold no live file: no writer of their segment is open
    /// and no chunk is on its way to the table.
    ///
    /// They are taken out of the books at once (under the same lock): a
    /// writer of their segment opened from now on starts a new file.
    pub fn take_dead(&self, is_dead: impl Fn(u64) -> bool) -> Vec<u64> {
        let mut s = lock(&self.state);
        let mut v: Vec<u64> = s
            .files
            .iter()
            .filter(|(no, b)| {
                b.pending == 0
                    && s.segments.get(&b.key).is_none_or(|seg| seg.writers == 0)
                    && is_dead(**no)
            })
            .map(|(no, _)| *no)
            .collect();
        v.sort_unstable();
        for no in &v {
            if let Some(b) = s.files.remove(no) {
                s.segments.remove(&b.key);
            }
        }
        v
    }
}

/// What an export in place knows of a segment's files before it opens its
/// file: the bytes of those built in place (mapped, checked) and the CRCs
/// their writers computed.
pub(super) struct Known<'a> {
    pub placed: &'a super::Placed,
    pub crcs: &'a HashMap<u64, FileCrcs>,
}

/// A segment file an export wrote: the open file, its length, its table and
/// the bytes copied into it.
pub(super) struct Finished {
    pub file: Arc<dyn StorageFile>,
    pub len: u64,
    pub table: SegTable,
    pub copied: u64,
}

/// Finishes segment file `no`, in which `group`'s segment was built in
/// place: each file that is one run of chunks stays where it is, its bytes
/// from the container written into the hole left for them in front; the
/// others (files written side by side, files all in the container) are
/// copied to the end; then the table (entries in offset order) and the
/// trailer, synced.
/// A failure leaves the file as it is: chunks of live files are in it.
///
/// A file in pieces (which building never makes: one file owns the end of
/// the file at a time) would be copied to the end, its pieces left as dead
/// bytes: nothing here rewrites a byte someone may have mapped.
pub(super) fn finish_in_place(
    engine: &Engine,
    storage: &dyn Storage,
    no: u64,
    group: &super::Group,
    known: Known<'_>,
    mut hot: Vec<HotRange>,
    sync: bool,
) -> std::io::Result<Finished> {
    let Known { placed, crcs } = known;
    let file = storage.open(&segment_file_name(no))?;
    // Past every chunk (all were written: the files are terminated), and past
    // whatever an export a crash cut short left.
    let mut tail = file.len()?.next_multiple_of(PAGE);
    let mut smooth = crate::container::Smoother::default();
    let mut entries = Vec::with_capacity(group.files.len());
    let mut copied = 0;
    for (path, entry) in &group.files {
        let (prefix_parts, stays) = match &entry.loc {
            Location::Placed {
                prefix,
                export_no,
                chunks,
                ..
            } if *export_no == no => {
                let before: u64 = prefix.iter().map(|x| x.len).sum();
                let one_run = runs(chunks).len() == 1;
                let start = chunks
                    .first()
                    .and_then(|c| c.seg_offset.checked_sub(before))
                    .filter(|s| one_run && s.is_multiple_of(PAGE));
                (prefix.len(), start)
            }
            _ => (0, None),
        };
        // Chunks this process did not write were checked as they were read
        // (by the caller): damaged bytes never get a fresh checksum. Files in
        // the container are read from its mappings (no descriptor).
        let read;
        let parts: &[ownedbytes::OwnedBytes] = match placed.get(&entry.id) {
            Some(parts) => parts,
            None => {
                read = engine.read_entry(entry)?;
                &read
            }
        };
        let mut crc = BlockHasher::new(BLOCK_LOG2);
        let offset = stays.unwrap_or(tail);
        // CRCs its writer computed, for a file that stays: its chunks are not
        // read again (under memory pressure they would come from the disk).
        let known = crcs
            .get(&entry.id)
            .filter(|c| stays.is_some() && crcs_fit(c, entry.len));
        let mut at = offset;
        for (i, part) in parts.iter().enumerate() {
            if stays.is_none() || i < prefix_parts {
                file.write_at(at, part.as_slice())?;
                smooth.wrote(&*file, no, at, at + part.len() as u64);
                copied += part.len() as u64;
            } else if known.is_some() {
                break;
            }
            if known.is_none() {
                crc.update(part.as_slice());
                if stays.is_some() && i >= prefix_parts {
                    // Read only to be hashed (not copied).
                    crate::engine::MaintenanceCounters::add(
                        &engine.counters().bytes_read_to_checksum,
                        part.len() as u64,
                    );
                }
            }
            at += part.len() as u64;
        }
        if stays.is_none() {
            tail = at.next_multiple_of(PAGE);
        }
        let crcs = match known {
            Some((crc, blocks)) => (*crc, blocks.clone()),
            None => crc.finish(),
        };
        entries.push(super::seg_entry(path, entry, offset, crcs));
    }
    // The table lists files in offset order; hot ranges name entries by
    // their index in it.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| (entries[i].offset, entries[i].len));
    let mut new_index = vec![0u32; entries.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new as u32;
    }
    for h in &mut hot {
        h.entry = new_index[h.entry as usize];
    }
    hot.sort_by_key(|h| (h.entry, h.offset));
    let mut slots: Vec<Option<SegEntry>> = entries.into_iter().map(Some).collect();
    let entries: Vec<SegEntry> = order.iter().filter_map(|&i| slots[i].take()).collect();
    let table = SegTable {
        export_no: no,
        namespace: group.ns.clone(),
        block_log2: BLOCK_LOG2,
        entries,
        hot,
    };
    let len = super::write_table(&*file, tail, &table, sync)?;
    Ok(Finished {
        file,
        len,
        table,
        copied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SegKey {
        (Arc::from(""), Arc::from(s))
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn only_segment_files_are_built() {
        assert_eq!(segment_of(&format!("{ID}.store")), Some(ID));
        assert_eq!(segment_of(&format!("{ID}.pos")), Some(ID));
        assert_eq!(segment_of(&format!("{ID}.12.del")), None);
        assert_eq!(segment_of(&format!("{ID}.store.temp")), None);
        assert_eq!(segment_of("meta.json"), None);
        assert_eq!(segment_of("0123.idx"), None);
    }

    #[test]
    fn a_segment_is_built_in_place_once_large_enough() {
        let b = Builds::default();
        let k = key(ID);
        const MIN: u64 = 1 << 20;
        b.writer_opened(&k);
        b.writer_opened(&k);
        // Below the minimum: the container.
        assert_eq!(
            b.plan(&k, 1, 0, 64 << 10, false, false, MIN),
            Plan::Container
        );
        // A whole small file never is placed.
        assert_eq!(b.plan(&k, 2, 0, 2 << 20, true, true, MIN), Plan::Container);
        assert_eq!(
            b.plan(&k, 1, 64 << 10, 1 << 20, false, false, MIN),
            Plan::Create
        );
        b.created(&k, 7);
        // The first placed chunk leaves a hole for the 64 KiB in the container.
        let p = b.plan(&k, 1, 64 << 10, 1 << 20, false, false, MIN);
        assert_eq!(
            p,
            Plan::Place {
                no: 7,
                offset: 64 << 10
            }
        );
        b.done(7);
        // While file 1 owns the end, another file's chunks go to the container.
        assert_eq!(b.plan(&k, 3, 0, 4096, false, false, MIN), Plan::Container);
        // File 1's next chunk follows its last; its last one frees the end.
        let next = (64 << 10) + (1 << 20);
        assert_eq!(
            b.plan(&k, 1, next, 1 << 20, false, false, MIN),
            Plan::Place {
                no: 7,
                offset: next
            }
        );
        b.done(7);
        let end = next + (1 << 20);
        assert_eq!(
            b.plan(&k, 1, end - (64 << 10), 100, false, true, MIN),
            Plan::Place { no: 7, offset: end }
        );
        b.done(7);
        // File 3 takes the end now, on the next page, after a hole for the
        // 4 KiB it has in the container.
        let hole_at = (end + 100).next_multiple_of(PAGE);
        assert_eq!(
            b.plan(&k, 3, 4096, 4096, false, false, MIN),
            Plan::Place {
                no: 7,
                offset: hole_at + 4096
            }
        );
        b.done(7);
        // A writer dropped without its last chunk gives the end up too.
        b.file_closed(&k, 3);
        assert!(matches!(
            b.plan(&k, 4, 0, 4096, false, false, MIN),
            Plan::Place { no: 7, .. }
        ));
        b.done(7);
        assert_eq!(b.take_dirty(), vec![7]);
        assert!(b.take_dirty().is_empty());
        b.writer_closed(&k);
        assert!(b.take_dead(|_| true).is_empty(), "one writer still open");
        b.writer_closed(&k);
        // A file of the segment opened after every writer went joins it.
        b.writer_opened(&k);
        b.file_closed(&k, 4);
        assert!(matches!(
            b.plan(&k, 5, 0, 4096, false, false, MIN),
            Plan::Place { no: 7, .. }
        ));
        assert!(b.take_dead(|_| true).is_empty(), "a chunk is on its way");
        assert!(b.try_finish(7).is_none(), "a chunk is on its way");
        b.done(7);
        assert!(b.try_finish(7).is_none(), "a writer is open");
        b.writer_closed(&k);
        assert!(b.take_dead(|_| false).is_empty());
        assert_eq!(b.take_dead(|_| true), vec![7]);
        assert!(b.take_dead(|_| true).is_empty(), "taken once");
        assert!(
            lock(&b.state).segments.is_empty(),
            "forgotten with its file"
        );
        assert_eq!(b.file_of(&k), None);
    }
}
