//! The in-memory file table: `(namespace, path) -> entry`, rebuilt on open by
//! replaying the container's records, and kept in step with the log afterwards
//! (each change that depends on the table's state is checked, appended and
//! applied under the engine's log-order lock, so log order and table order
//! agree; the table's own lock is held only for the in-memory check and
//! update). `exists` and file lengths never touch the disk.
//!
//! The table also keeps the books reclamation needs: which container files hold
//! records a live file still depends on (its *anchors*: the records replay needs
//! to rebuild it) and how many live files each segment file serves.

use std::collections::BTreeSet;

use std::sync::Arc;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::container::{Extent, RecordRef};
use crate::format::record::{decode_export_entries, Payload};
use crate::format::snapshot::{
    decode_image_v1, decode_index, decode_section, image_version, ImageFile, ImagePlace,
    IndexedWriter, NsBooks, IMAGE_VERSION_1, STATE_ATOMIC, STATE_TERMINATED, STATE_WRITING,
};
use ownedbytes::OwnedBytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileState {
    /// Opened for writing; dropped on recovery if never terminated.
    Writing,
    Terminated,
    /// Written whole by one record (`atomic_write`, or copied forward).
    Atomic,
}

/// Where a file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// Runs of bytes in container files, in file order.
    Container(Vec<Extent>),
    /// One range of an exported segment file.
    Segment { export_no: u64, offset: u64 },
    /// In a segment file being built in place (`Placed` records): the first
    /// bytes (written before the segment was large enough) in container
    /// files, the rest in chunks of segment file `export_no`.
    Placed {
        prefix: Vec<Extent>,
        export_no: u64,
        chunks: Vec<Chunk>,
        /// Written by this process (not replayed): its bytes need no check.
        fresh: bool,
    },
}

/// A chunk of a file in a segment file being built in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub seg_offset: u64,
    pub len: u64,
    /// CRC-32 of its bytes (from its `Placed` record).
    pub crc: u32,
}

/// The runs of contiguous bytes `chunks` make in their segment file, each as
/// (its first chunk's index, one past its last, its range in the file).
pub(crate) fn runs(chunks: &[Chunk]) -> Vec<(usize, usize, std::ops::Range<u64>)> {
    let mut out: Vec<(usize, usize, std::ops::Range<u64>)> = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        match out.last_mut() {
            Some(last) if last.2.end == c.seg_offset => {
                last.1 = i + 1;
                last.2.end += c.len;
            }
            _ => out.push((i, i + 1, c.seg_offset..c.seg_offset + c.len)),
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: u64,
    pub state: FileState,
    pub len: u64,
    pub loc: Location,
    /// Container files holding records that replay needs to rebuild this entry.
    pub anchors: Vec<u64>,
}

impl Entry {
    fn extents(&self) -> &[Extent] {
        match &self.loc {
            Location::Container(x) => x,
            Location::Placed { prefix, .. } => prefix,
            Location::Segment { .. } => &[],
        }
    }
}

/// Namespace and path; the namespace's string is shared by all its files,
/// the path's by the entry and the namespace's index.
pub(crate) type Key = (Arc<str>, Arc<str>);

/// A namespace being read from a v1 image: its name, paths and books.
type LoadingNamespace = (Arc<str>, HashMap<Arc<str>, u64>, NamespaceUse);

/// What live files use of one container file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileUse {
    /// Live files anchored in it.
    pub files: usize,
    /// Bytes of live file contents in it.
    pub bytes: u64,
}

/// The books of one namespace (a store's tenant), kept as entries change, so
/// that what a tenant holds is known without looking at any other tenant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NamespaceUse {
    /// Live files.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes of them in container files.
    pub container_bytes: u64,
    /// Bytes of them in segment files.
    pub segment_bytes: u64,
    /// Files in the container that an export pass may have to move: neither
    /// whole-file writes nor delete bitsets (`.del`, which export leaves in
    /// the container). 0: the pass skips the namespace.
    pub exportable: usize,
}

#[derive(Debug, Default)]
pub(crate) struct FileTable {
    /// Namespace, then path, to id: a lookup borrows its keys, it allocates
    /// nothing, and a namespace's files are found without scanning others.
    by_ns: HashMap<Arc<str>, HashMap<Arc<str>, u64>>,
    entries: HashMap<u64, (Key, Entry)>,
    next_id: u64,
    container_use: HashMap<u64, FileUse>,
    /// Container file number to the ids of the live files anchored in it.
    anchored: HashMap<u64, HashSet<u64>>,
    segment_use: HashMap<u64, usize>,
    /// Segment files being built in place to the files with chunks in them.
    building_use: HashMap<u64, usize>,
    /// Bytes of live files' chunks in them.
    building_bytes: u64,
    ns_use: HashMap<Arc<str>, NamespaceUse>,
    live_bytes: u64,
    /// Segment files the log has a record of (`ExportBegin`, `Export`,
    /// `SegmentDrop`): only those may be removed by open when nothing live is
    /// in them.
    logged_segments: BTreeSet<u64>,
    /// Replay ignores `Snapshot` records (a full replay, for checking) but
    /// the one a log with a gap must start from (`RecordRef::base`).
    ignore_snapshots: bool,
    /// The parts of a snapshot image read so far: next part, parts, bytes.
    image: Option<(u32, u32, Vec<u8>)>,
    /// Namespaces of the snapshot image this table was loaded from whose
    /// files are not decoded yet (with their section of the image, and
    /// whether a file of theirs is being written): their books are already
    /// in the table's, their files are decoded on first use
    /// ([`FileTable::ensure_loaded`]). Every lookup by namespace requires its
    /// namespace loaded; lookups by id and `anchored_in` require all loaded.
    unloaded: HashMap<Arc<str>, (std::ops::Range<usize>, bool)>,
    /// The image those sections are in (its `next_file_id` bounds their ids).
    unloaded_image: Option<(OwnedBytes, u64)>,
}

impl FileTable {
    pub fn new() -> FileTable {
        FileTable {
            next_id: 1,
            ..Default::default()
        }
    }

    /// A table whose replay ignores `Snapshot` records: built from every record.
    pub fn full_replay() -> FileTable {
        FileTable {
            ignore_snapshots: true,
            ..FileTable::new()
        }
    }

    /// Replays one record. An error string names what is inconsistent.
    pub fn replay(&mut self, rec: RecordRef<'_>) -> Result<(), String> {
        let at = rec.file_no;
        if !self.unloaded.is_empty() {
            // What the record is about must be decoded before it applies.
            match &rec.payload {
                Payload::Create { namespace, .. }
                | Payload::AtomicWrite { namespace, .. }
                | Payload::Export { namespace, .. } => self.ensure_loaded(namespace)?,
                Payload::Data { file_id, .. }
                | Payload::Placed { file_id, .. }
                | Payload::Finish { file_id, .. }
                | Payload::Delete { file_id }
                    if !self.entries.contains_key(file_id) =>
                {
                    // Only its id says whose file it is.
                    self.ensure_all_loaded()?
                }
                _ => {}
            }
        }
        match rec.payload {
            Payload::Create {
                file_id,
                namespace,
                path,
            } => {
                self.claim_id(file_id)?;
                self.insert(
                    self.key(namespace, path),
                    Entry {
                        id: file_id,
                        state: FileState::Writing,
                        len: 0,
                        loc: Location::Container(Vec::new()),
                        anchors: vec![at],
                    },
                );
            }
            Payload::Data {
                file_id,
                file_offset,
                ..
            } => {
                let Some(extent) = rec.extent else {
                    return Err("data record without bytes".into());
                };
                match self.known(file_id)? {
                    None => {}
                    Some(e) => {
                        takes_chunk(e, file_id, file_offset)?;
                        if matches!(e.loc, Location::Placed { .. }) {
                            return Err(format!(
                                "data for file id {file_id} in the log after chunks placed in a segment file"
                            ));
                        }
                        self.add_extent(file_id, extent)
                    }
                }
            }
            Payload::Placed {
                file_id,
                file_offset,
                export_no,
                seg_offset,
                len,
                crc,
            } => match self.known(file_id)? {
                None => {}
                Some(e) => {
                    takes_chunk(e, file_id, file_offset)?;
                    if let Location::Placed { export_no: n, .. } = e.loc {
                        if n != export_no {
                            return Err(format!(
                                "file id {file_id} placed in segment files {n} and {export_no}"
                            ));
                        }
                    }
                    let chunk = Chunk {
                        seg_offset,
                        len,
                        crc,
                    };
                    self.add_placed(file_id, export_no, chunk, false, at);
                }
            },
            Payload::Finish { file_id, len } => match self.known(file_id)? {
                None => {}
                Some(e) if e.len != len => {
                    return Err(format!(
                        "file id {file_id} finished at {len} bytes but {} were written",
                        e.len
                    ))
                }
                Some(_) => self.terminate(file_id, at),
            },
            Payload::Delete { file_id } => {
                if self.known(file_id)?.is_some() {
                    self.remove_id(file_id);
                }
            }
            Payload::AtomicWrite {
                file_id,
                namespace,
                path,
                ..
            } => {
                // A copy forward reuses the id of the file it copies, and may
                // follow a newer version in the log (see `superseded`).
                self.next_id = self.next_id.max(file_id + 1);
                let extent = rec.extent.ok_or("atomic write without bytes")?;
                if !self.superseded(namespace, path, file_id) {
                    self.put_atomic(namespace, path, file_id, extent);
                }
            }
            Payload::Export {
                export_no,
                namespace,
                entries,
            } => {
                let entries = decode_export_entries(entries).map_err(|e| e.to_string())?;
                for x in entries {
                    self.next_id = self.next_id.max(x.file_id + 1);
                    if self.superseded(namespace, &x.path, x.file_id) {
                        continue;
                    }
                    self.insert(
                        self.key(namespace, &x.path),
                        Entry {
                            id: x.file_id,
                            state: FileState::Terminated,
                            len: x.len,
                            loc: Location::Segment {
                                export_no,
                                offset: x.offset,
                            },
                            anchors: vec![at],
                        },
                    );
                }
            }
            Payload::Checkpoint { next_file_id, .. } => {
                self.next_id = self.next_id.max(next_file_id);
            }
            Payload::Snapshot { part, parts, bytes } => {
                if !self.ignore_snapshots || rec.base {
                    self.snapshot_part(part, parts, bytes, rec.image)?;
                }
            }
            Payload::Reclaim { .. }
            | Payload::Padding { .. }
            | Payload::Continued { .. }
            | Payload::Seal => {}
            Payload::ExportBegin { .. } | Payload::SegmentDrop { .. } => {}
        }
        if let Payload::ExportBegin { export_no }
        | Payload::SegmentDrop { export_no }
        | Payload::Export { export_no, .. }
        | Payload::Placed { export_no, .. } = rec.payload
        {
            self.logged_segments.insert(export_no);
        }
        Ok(())
    }

    /// Takes one part of a snapshot image; the last one replaces the table
    /// with the image (which stands for every record before it).
    fn snapshot_part(
        &mut self,
        part: u32,
        parts: u32,
        bytes: &[u8],
        owned: Option<OwnedBytes>,
    ) -> Result<(), String> {
        if part == 0 && parts == 1 {
            self.image = None;
            return self.load_image(owned.unwrap_or_else(|| OwnedBytes::new(bytes.to_vec())));
        }
        match &mut self.image {
            _ if part == 0 => self.image = Some((1, parts, bytes.to_vec())),
            Some((next, n, buf)) if *next == part && *n == parts => {
                buf.extend_from_slice(bytes);
                *next += 1;
            }
            _ => return Err(format!("snapshot part {part} of {parts} out of order")),
        }
        if let Some((next, n, _)) = &self.image {
            if next == n {
                let (_, _, buf) = self.image.take().expect("just seen");
                return self.load_image(OwnedBytes::new(buf));
            }
        }
        Ok(())
    }

    /// Replaces the table with an image: a v2 image's head, books and
    /// namespace index are decoded now, each namespace's files on first use
    /// (those with a file being written at once); a v1 image is decoded whole.
    fn load_image(&mut self, b: OwnedBytes) -> Result<(), String> {
        if image_version(b.as_slice()) == Ok(IMAGE_VERSION_1) {
            return self.load_image_v1(b.as_slice());
        }
        let idx = decode_index(b.as_slice()).map_err(|e| format!("snapshot: {e}"))?;
        let mut fresh = FileTable::new();
        fresh.next_id = idx.next_file_id.max(self.next_id);
        fresh.logged_segments = idx.logged_segments.iter().copied().collect();
        fresh.live_bytes = idx.live_bytes;
        for &(no, files, bytes) in &idx.container_books {
            fresh.container_use.insert(
                no,
                FileUse {
                    files: files as usize,
                    bytes,
                },
            );
        }
        for &(no, files) in &idx.segment_books {
            fresh.segment_use.insert(no, files as usize);
        }
        fresh.ns_use.reserve(idx.namespaces.len());
        fresh.unloaded.reserve(idx.namespaces.len());
        let mut writing = Vec::new();
        for n in &idx.namespaces {
            let name: Arc<str> = Arc::from(n.ns);
            let b = n.books;
            let books = NamespaceUse {
                files: b.files as usize,
                bytes: b.bytes,
                container_bytes: b.container_bytes,
                segment_bytes: b.segment_bytes,
                exportable: b.exportable as usize,
            };
            if fresh.ns_use.insert(name.clone(), books).is_some() {
                return Err(format!("snapshot: namespace {:?} twice", n.ns));
            }
            if n.writing {
                writing.push(name.clone());
            }
            fresh.unloaded.insert(name, (n.section.clone(), n.writing));
        }
        drop(idx);
        fresh.unloaded_image = Some((b, fresh.next_id));
        for ns in writing {
            fresh.ensure_loaded(&ns)?;
        }
        *self = fresh;
        Ok(())
    }

    /// Whether namespace `ns`'s files are decoded (or it has none).
    pub fn is_loaded(&self, ns: &str) -> bool {
        self.unloaded.is_empty() || !self.unloaded.contains_key(ns)
    }

    /// A namespace not decoded yet, if any.
    pub fn first_unloaded(&self) -> Option<String> {
        self.unloaded.keys().next().map(|k| k.to_string())
    }

    /// Decodes the files of namespace `ns` from the snapshot image, if that
    /// was not done yet. Its books are the table's already.
    pub fn ensure_loaded(&mut self, ns: &str) -> Result<(), String> {
        let Some((name, (range, _))) = self.unloaded.remove_entry(ns) else {
            return Ok(());
        };
        let (bytes, next_id) = self
            .unloaded_image
            .clone()
            .expect("unloaded namespaces have their image");
        let mut files = Vec::new();
        decode_section(&bytes.as_slice()[range], next_id, |f| {
            files.push((Arc::<str>::from(f.path), image_entry(&f)));
            Ok(())
        })
        .map_err(|e| format!("snapshot, namespace {ns:?}: {e}"))?;
        let mut paths = HashMap::default();
        paths.reserve(files.len());
        self.entries.reserve(files.len());
        for (path, entry) in files {
            if paths.insert(path.clone(), entry.id).is_some() {
                return Err(format!("snapshot: path {path:?} twice in {ns:?}"));
            }
            let mut anchors = entry.anchors.clone();
            anchors.sort_unstable();
            anchors.dedup();
            for no in anchors {
                self.anchored.entry(no).or_default().insert(entry.id);
            }
            let id = entry.id;
            if self
                .entries
                .insert(id, ((name.clone(), path), entry))
                .is_some()
            {
                return Err(format!("snapshot: file id {id} twice"));
            }
        }
        if !paths.is_empty() {
            self.by_ns.insert(name, paths);
        }
        if self.unloaded.is_empty() {
            self.unloaded_image = None;
        }
        Ok(())
    }

    /// Decodes every namespace not decoded yet.
    pub fn ensure_all_loaded(&mut self) -> Result<(), String> {
        while let Some(ns) = self.first_unloaded() {
            self.ensure_loaded(&ns)?;
        }
        Ok(())
    }

    /// Panics if namespace `ns` is used before it was decoded: a lookup would
    /// answer wrongly (a programming error; every path that names a namespace
    /// makes sure of it first, see `Engine::ensure_ns`).
    fn check_loaded(&self, ns: &str) {
        assert!(
            self.is_loaded(ns),
            "namespace {ns:?} used before its files were read from the snapshot"
        );
    }

    /// Replaces the table with a decoded v1 image. A bulk load: each namespace's
    /// name is shared by its files, its books summed and stored once, and
    /// nothing is looked up twice (an id or a path seen twice is an error).
    fn load_image_v1(&mut self, b: &[u8]) -> Result<(), String> {
        let mut fresh = FileTable::new();
        // About one file per 80 bytes of image: sized once, not grown.
        fresh.entries.reserve(b.len() / 80);
        let mut cur: Option<LoadingNamespace> = None;
        let mut failed = None;
        let head = decode_image_v1(b, |ns, f| {
            if cur.as_ref().is_none_or(|(name, _, _)| &**name != ns) {
                if let Some(done) = cur.take() {
                    fresh.finish_namespace(done);
                }
                if fresh.by_ns.contains_key(ns) {
                    failed.get_or_insert(format!("namespace {ns:?} twice"));
                }
                cur = Some((Arc::from(ns), HashMap::default(), NamespaceUse::default()));
            }
            let (name, paths, books) = cur.as_mut().expect("set above");
            let path: Arc<str> = Arc::from(f.path);
            if paths.insert(path.clone(), f.id).is_some() {
                failed.get_or_insert(format!("path {:?} twice in {ns:?}", f.path));
            }
            let entry = image_entry(&f);
            books.add(&ns_share(&path, &entry));
            fresh.live_bytes += entry.len;
            fresh.book_places(&entry, true);
            if fresh
                .entries
                .insert(f.id, ((name.clone(), path), entry))
                .is_some()
            {
                failed.get_or_insert(format!("file id {} twice", f.id));
            }
            Ok(())
        })
        .map_err(|e| format!("snapshot: {e}"))?;
        if let Some(done) = cur.take() {
            fresh.finish_namespace(done);
        }
        if let Some(e) = failed {
            return Err(format!("snapshot: {e}"));
        }
        fresh.next_id = head.next_file_id.max(self.next_id);
        fresh.logged_segments = head.logged_segments.into_iter().collect();
        *self = fresh;
        Ok(())
    }

    /// Stores a namespace read from an image with its books.
    fn finish_namespace(
        &mut self,
        (name, paths, books): (Arc<str>, HashMap<Arc<str>, u64>, NamespaceUse),
    ) {
        if books.files > 0 {
            self.ns_use.insert(name.clone(), books);
            self.by_ns.insert(name, paths);
        }
    }

    /// The table as an image for a `Snapshot` record (see
    /// `format::snapshot`): the books, then namespaces and paths in sorted
    /// order; a namespace not decoded yet keeps its section as it was.
    /// `None` while a file is being built in place: an image has no place
    /// for its chunks (the export that ends the building lets the next one
    /// be written).
    pub fn image(&self) -> Option<Vec<u8>> {
        if !self.building_use.is_empty() {
            return None;
        }
        let logged: Vec<u64> = self.logged_segments.iter().copied().collect();
        let mut containers: Vec<(u64, u64, u64)> = self
            .container_use
            .iter()
            .map(|(no, u)| (*no, u.files as u64, u.bytes))
            .collect();
        containers.sort_unstable();
        let mut segments: Vec<(u64, u64)> = self
            .segment_use
            .iter()
            .map(|(no, n)| (*no, *n as u64))
            .collect();
        segments.sort_unstable();
        let mut w = IndexedWriter::new(
            self.next_id,
            &logged,
            self.live_bytes,
            &containers,
            &segments,
            self.entries.len() * 96,
        );
        let mut namespaces: Vec<&Arc<str>> = self.ns_use.keys().collect();
        namespaces.sort();
        let mut extents = Vec::new();
        for ns in namespaces {
            let u = self.ns_use[ns];
            let books = NsBooks {
                files: u.files as u64,
                bytes: u.bytes,
                container_bytes: u.container_bytes,
                segment_bytes: u.segment_bytes,
                exportable: u.exportable as u64,
            };
            if let Some((range, writing)) = self.unloaded.get(ns) {
                let (bytes, _) = self
                    .unloaded_image
                    .as_ref()
                    .expect("unloaded have an image");
                w.raw(ns, &books, *writing, &bytes.as_slice()[range.clone()]);
                continue;
            }
            let Some(paths) = self.by_ns.get(ns) else {
                continue;
            };
            let mut sorted: Vec<(&Arc<str>, &u64)> = paths.iter().collect();
            sorted.sort();
            let writing = sorted
                .iter()
                .any(|(_, id)| self.entries[*id].1.state == FileState::Writing);
            w.begin(ns, &books, writing);
            for (path, id) in sorted {
                let (_, e) = &self.entries[id];
                let state = match e.state {
                    FileState::Writing => STATE_WRITING,
                    FileState::Terminated => STATE_TERMINATED,
                    FileState::Atomic => STATE_ATOMIC,
                };
                let place = match &e.loc {
                    Location::Container(x) => {
                        extents.clear();
                        extents.extend(x.iter().map(|x| (x.file_no, x.offset, x.len)));
                        Ok(&extents[..])
                    }
                    Location::Segment { export_no, offset } => Err((*export_no, *offset)),
                    Location::Placed { .. } => return None,
                };
                w.file(path, e.id, state, e.len, place, &e.anchors);
            }
        }
        Some(w.finish())
    }

    /// Segment files the log has a record of.
    pub fn logged_segments(&self) -> &BTreeSet<u64> {
        &self.logged_segments
    }

    /// Notes a segment file's `ExportBegin` record (appended by export).
    pub fn note_segment(&mut self, export_no: u64) {
        self.logged_segments.insert(export_no);
    }

    /// Keeps the evidence only of segment files that may still be on disk
    /// (those `keep` accepts): a removed file needs none, and a file of that
    /// number appearing later (copied in) must not be taken for it.
    pub fn retain_logged_segments(&mut self, keep: impl FnMut(&u64) -> bool) {
        self.logged_segments.retain(keep);
    }

    #[cfg(any(test, feature = "testing"))]
    /// A canonical description of everything replay rebuilds (files, ids,
    /// places, anchors, the books, the logged segment files), for comparing a
    /// table built from a snapshot with one built from every record.
    pub fn describe(&self) -> String {
        assert!(self.unloaded.is_empty(), "describe needs every namespace");
        use std::fmt::Write;
        let mut rows: Vec<String> = self
            .entries
            .values()
            .map(|(k, e)| format!("{k:?} {e:?}"))
            .collect();
        rows.sort();
        // Not the logged segment files: a snapshot forgets those removed
        // since, a full replay those whose records were reclaimed.
        let mut out = format!("next_id {} live_bytes {}\n", self.next_id, self.live_bytes);
        let mut use_rows: Vec<String> = self
            .container_use
            .iter()
            .map(|(no, u)| format!("container {no} {u:?}"))
            .chain(
                self.segment_use
                    .iter()
                    .map(|(no, n)| format!("segment {no} {n}")),
            )
            .chain(self.ns_use.iter().map(|(ns, u)| format!("ns {ns:?} {u:?}")))
            .collect();
        use_rows.sort();
        for r in rows.iter().chain(&use_rows) {
            let _ = writeln!(out, "{r}");
        }
        out
    }

    /// The key of `path` in namespace `ns`, sharing the namespace's string
    /// with its other files.
    fn key(&self, ns: &str, path: &str) -> Key {
        let ns = match self.by_ns.get_key_value(ns) {
            Some((k, _)) => k.clone(),
            None => Arc::from(ns),
        };
        (ns, Arc::from(path))
    }

    /// Whether the table already holds a newer file (a higher id) at `path`. Ids
    /// grow in log order except for copies forward and re-logged `Export`
    /// records, which reuse the id of what they copy: such a copy can land after
    /// a newer version of the same path was appended (appended, not yet in the
    /// table, when the copy was made). The newer version wins, in replay as it
    /// did in the live table.
    fn superseded(&self, ns: &str, path: &str, id: u64) -> bool {
        self.id_of(ns, path).is_some_and(|cur| cur > id)
    }

    fn id_of(&self, ns: &str, path: &str) -> Option<u64> {
        self.check_loaded(ns);
        self.by_ns.get(ns)?.get(path).copied()
    }

    /// Takes a fresh id seen in the log: ids only ever grow.
    fn claim_id(&mut self, id: u64) -> Result<(), String> {
        if id < self.next_id {
            return Err(format!("file id {id} created twice"));
        }
        self.next_id = id + 1;
        Ok(())
    }

    /// The entry for `id`; `None` if it was deleted; an error if it never existed.
    fn known(&mut self, id: u64) -> Result<Option<&mut Entry>, String> {
        if id >= self.next_id {
            return Err(format!("record for file id {id}, which was never created"));
        }
        Ok(self.entries.get_mut(&id).map(|(_, e)| e))
    }

    /// Ends a replay: files that were never terminated are dropped.
    pub fn finish_replay(&mut self) -> usize {
        let unfinished: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, (_, e))| e.state == FileState::Writing)
            .map(|(id, _)| *id)
            .collect();
        for id in &unfinished {
            self.remove_id(*id);
        }
        unfinished.len()
    }

    /// Adds (`add`) or takes away the share of the books of entry `e`, of
    /// namespace `ns`.
    fn account(&mut self, key: &Key, e: &Entry, add: bool) {
        self.book_places(e, add);
        let share = ns_share(&key.1, e);
        if add {
            self.live_bytes += e.len;
            let u = match self.ns_use.get_mut(&*key.0) {
                Some(u) => u,
                None => self.ns_use.entry(key.0.clone()).or_default(),
            };
            u.add(&share);
        } else {
            self.live_bytes -= e.len;
            if let Some(u) = self.ns_use.get_mut(&*key.0) {
                u.sub(&share);
                if u.files == 0 {
                    self.ns_use.remove(&*key.0);
                }
            }
        }
    }

    /// The books of the places entry `e` uses: the container files it is
    /// anchored in (and its bytes there), the segment file it is in.
    fn book_places(&mut self, e: &Entry, add: bool) {
        let mut sorted;
        let anchors: &[u64] = if e.anchors.len() <= 1 {
            &e.anchors
        } else {
            sorted = e.anchors.clone();
            sorted.sort_unstable();
            sorted.dedup();
            &sorted
        };
        for &no in anchors {
            let bytes: u64 = e
                .extents()
                .iter()
                .filter(|x| x.file_no == no)
                .map(|x| x.len)
                .sum();
            let u = self.container_use.entry(no).or_default();
            if add {
                u.files += 1;
                u.bytes += bytes;
                self.anchored.entry(no).or_default().insert(e.id);
            } else {
                u.files -= 1;
                u.bytes -= bytes;
                if u.files == 0 {
                    self.container_use.remove(&no);
                }
                if let Some(set) = self.anchored.get_mut(&no) {
                    set.remove(&e.id);
                    if set.is_empty() {
                        self.anchored.remove(&no);
                    }
                }
            }
        }
        let (books, no) = match &e.loc {
            Location::Segment { export_no, .. } => (&mut self.segment_use, *export_no),
            Location::Placed {
                export_no, chunks, ..
            } => {
                let bytes: u64 = chunks.iter().map(|c| c.len).sum();
                if add {
                    self.building_bytes += bytes;
                } else {
                    self.building_bytes -= bytes;
                }
                (&mut self.building_use, *export_no)
            }
            Location::Container(_) => return,
        };
        let n = books.entry(no).or_default();
        if add {
            *n += 1;
        } else {
            *n -= 1;
            if *n == 0 {
                books.remove(&no);
            }
        }
    }

    fn insert(&mut self, key: Key, entry: Entry) {
        let paths = match self.by_ns.get_mut(&key.0) {
            Some(p) => p,
            None => self.by_ns.entry(key.0.clone()).or_default(),
        };
        if let Some(old) = paths.insert(key.1.clone(), entry.id) {
            if old != entry.id {
                if let Some((k, e)) = self.entries.remove(&old) {
                    self.account(&k, &e, false);
                }
            }
        }
        if let Some((k, e)) = self.entries.remove(&entry.id) {
            self.account(&k, &e, false);
        }
        self.account(&key, &entry, true);
        self.entries.insert(entry.id, (key, entry));
    }

    fn remove_id(&mut self, id: u64) -> Option<Entry> {
        let (key, entry) = self.entries.remove(&id)?;
        self.account(&key, &entry, false);
        if let Some(paths) = self.by_ns.get_mut(&key.0) {
            if paths.get(&key.1) == Some(&id) {
                paths.remove(&key.1);
                if paths.is_empty() {
                    self.by_ns.remove(&key.0);
                }
            }
        }
        Some(entry)
    }

    /// Changes the entry `id` (if it is still there) with the books kept right.
    fn update(&mut self, id: u64, f: impl FnOnce(&mut Entry)) -> bool {
        let Some((key, mut entry)) = self.entries.remove(&id) else {
            return false;
        };
        self.account(&key, &entry, false);
        f(&mut entry);
        self.account(&key, &entry, true);
        self.entries.insert(id, (key, entry));
        true
    }

    pub fn get(&self, ns: &str, path: &str) -> Option<&Entry> {
        let id = self.id_of(ns, path)?;
        self.entries.get(&id).map(|(_, e)| e)
    }

    /// Registers a new file being written under an id from [`Self::alloc_id`],
    /// created by a record in container file `at`; `false` if the path is taken.
    pub fn create_with_id(&mut self, ns: &str, path: &str, id: u64, at: u64) -> bool {
        if self.id_of(ns, path).is_some() {
            return false;
        }
        self.next_id = self.next_id.max(id + 1);
        self.insert(
            self.key(ns, path),
            Entry {
                id,
                state: FileState::Writing,
                len: 0,
                loc: Location::Container(Vec::new()),
                anchors: vec![at],
            },
        );
        true
    }

    /// The id the next new file gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    pub fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Records where a written chunk of file `id` landed (ignored if the file was
    /// deleted meanwhile).
    ///
    /// Books the one extent incrementally (what [`Self::account`] would add):
    /// a file written in many small chunks must not cost O(chunks) per chunk.
    pub fn add_extent(&mut self, id: u64, extent: Extent) {
        let Some((key, e)) = self.entries.get_mut(&id) else {
            return;
        };
        e.len += extent.len;
        let new_anchor = !e.anchors.contains(&extent.file_no);
        if new_anchor {
            e.anchors.push(extent.file_no);
            self.anchored.entry(extent.file_no).or_default().insert(id);
        }
        let in_container = match &mut e.loc {
            Location::Container(x) => {
                push_extent(x, extent);
                true
            }
            // Never: a file's chunks after its first placed one are placed too
            // (replay refuses a `Data` record after a `Placed` one).
            Location::Segment { .. } | Location::Placed { .. } => false,
        };
        let u = self.container_use.entry(extent.file_no).or_default();
        u.files += usize::from(new_anchor);
        if in_container {
            u.bytes += extent.len;
        }
        self.live_bytes += extent.len;
        if let Some(n) = self.ns_use.get_mut(&key.0) {
            n.bytes += extent.len;
            if in_container {
                n.container_bytes += extent.len;
            } else {
                n.segment_bytes += extent.len;
            }
        }
    }

    /// Records a chunk of file `id` placed in segment file `export_no` (being
    /// built in place) by a `Placed` record in container file `at` (ignored if
    /// the file was deleted meanwhile). `fresh`: written by this process.
    pub fn add_placed(&mut self, id: u64, export_no: u64, chunk: Chunk, fresh: bool, at: u64) {
        self.update(id, |e| {
            e.len += chunk.len;
            add_anchor(&mut e.anchors, at);
            match &mut e.loc {
                Location::Placed { chunks, .. } => chunks.push(chunk),
                loc => {
                    let prefix = match loc {
                        Location::Container(x) => std::mem::take(x),
                        _ => Vec::new(),
                    };
                    *loc = Location::Placed {
                        prefix,
                        export_no,
                        chunks: vec![chunk],
                        fresh,
                    };
                }
            }
        });
    }

    /// Marks file `id` finished by a record in container file `at`.
    pub fn terminate(&mut self, id: u64, at: u64) {
        self.update(id, |e| {
            e.state = FileState::Terminated;
            add_anchor(&mut e.anchors, at);
        });
    }

    fn put_atomic(&mut self, ns: &str, path: &str, id: u64, extent: Extent) {
        self.insert(
            self.key(ns, path),
            Entry {
                id,
                state: FileState::Atomic,
                len: extent.len,
                loc: Location::Container(vec![extent]),
                anchors: vec![extent.file_no],
            },
        );
    }

    /// Installs an atomically written file, unless a newer write (higher id) of the
    /// same path got there first.
    pub fn put_atomic_if_newer(&mut self, ns: &str, path: &str, id: u64, extent: Extent) {
        if let Some(cur) = self.get(ns, path) {
            if cur.id > id {
                return;
            }
        }
        self.put_atomic(ns, path, id, extent);
    }

    /// File `id` now lives at `offset` of segment file `export_no`, as logged by a
    /// record in container file `at`.
    pub fn set_exported(&mut self, id: u64, export_no: u64, offset: u64, at: u64) {
        self.update(id, |e| {
            // As replay of the `Export` record has it.
            e.state = FileState::Terminated;
            e.loc = Location::Segment { export_no, offset };
            e.anchors = vec![at];
        });
    }

    /// File `id` was copied forward whole into `extent`.
    pub fn set_relocated(&mut self, id: u64, extent: Extent) {
        self.update(id, |e| {
            // Copied forward by an `AtomicWrite` record: replay has it so.
            e.state = FileState::Atomic;
            e.loc = Location::Container(vec![extent]);
            e.anchors = vec![extent.file_no];
        });
    }

    /// File `id`'s `Export` record was logged again in container file `at`.
    pub fn set_anchor(&mut self, id: u64, at: u64) {
        self.update(id, |e| e.anchors = vec![at]);
    }

    pub fn file_count(&self) -> usize {
        if self.unloaded.is_empty() {
            self.entries.len()
        } else {
            self.ns_use.values().map(|u| u.files).sum()
        }
    }

    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// The books of namespace `ns` (all zero for one without files).
    pub fn namespace_use(&self, ns: &str) -> NamespaceUse {
        self.ns_use.get(ns).copied().unwrap_or_default()
    }

    /// Namespaces with files an export pass may have to move, sorted.
    pub fn namespaces_to_export(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ns_use
            .iter()
            .filter(|(_, u)| u.exportable > 0)
            .map(|(ns, _)| ns.to_string())
            .collect();
        v.sort();
        v
    }

    /// What live files use of container file `no`.
    pub fn container_use(&self, no: u64) -> FileUse {
        self.container_use.get(&no).copied().unwrap_or_default()
    }

    /// How many live files segment file `export_no` serves.
    pub fn segment_use(&self, export_no: u64) -> usize {
        self.segment_use.get(&export_no).copied().unwrap_or(0)
    }

    /// How many live files have chunks in segment file `export_no`, being
    /// built in place.
    pub fn building_use(&self, export_no: u64) -> usize {
        self.building_use.get(&export_no).copied().unwrap_or(0)
    }

    /// Bytes of live files' chunks in segment files being built.
    pub fn building_bytes(&self) -> u64 {
        self.building_bytes
    }

    /// Segment files being built in place that hold chunks of live files.
    pub fn building_segments(&self) -> Vec<u64> {
        self.building_use.keys().copied().collect()
    }

    /// Segment files that serve at least one live file.
    pub fn live_segments(&self) -> Vec<u64> {
        self.segment_use.keys().copied().collect()
    }

    /// Live entries anchored in container file `no`.
    pub fn anchored_in(&self, no: u64) -> Vec<(Key, Entry)> {
        assert!(
            self.unloaded.is_empty(),
            "anchored_in needs every namespace read from the snapshot"
        );
        let Some(ids) = self.anchored.get(&no) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| self.entries.get(id))
            .cloned()
            .collect()
    }

    /// The live entry with id `id`, and its key.
    pub fn by_id(&self, id: u64) -> Option<&(Key, Entry)> {
        self.entries.get(&id)
    }

    /// Live entries of namespace `ns` whose path starts with `prefix`.
    pub fn with_prefix(&self, ns: &str, prefix: &str) -> Vec<(String, Entry)> {
        self.check_loaded(ns);
        let Some(paths) = self.by_ns.get(ns) else {
            return Vec::new();
        };
        paths
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .filter_map(|(p, id)| Some((p.to_string(), self.entries.get(id)?.1.clone())))
            .collect()
    }

    /// Namespaces that hold at least one file, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_ns
            .keys()
            .chain(self.unloaded.keys())
            .map(|k| k.to_string())
            .collect();
        v.sort();
        v
    }

    /// Ids of the files of one namespace.
    pub fn ids_in(&self, ns: &str) -> Vec<u64> {
        self.check_loaded(ns);
        self.by_ns
            .get(ns)
            .map(|paths| paths.values().copied().collect())
            .unwrap_or_default()
    }

    /// Removes a file by id (after its deletion was logged).
    pub fn remove_by_id(&mut self, id: u64) -> bool {
        self.remove_id(id).is_some()
    }

    /// Removes a file by id (after its deletion was logged) and returns it.
    pub fn take_by_id(&mut self, id: u64) -> Option<Entry> {
        self.remove_id(id)
    }

    /// Paths of one namespace, sorted.
    pub fn paths(&self, ns: &str) -> Vec<String> {
        self.check_loaded(ns);
        let mut v: Vec<String> = self
            .by_ns
            .get(ns)
            .map(|paths| paths.keys().map(|p| p.to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Whether entry `e` (file `file_id`) takes a chunk at `file_offset` (a
/// `Data` or `Placed` record): it is being written and ends there.
fn takes_chunk(e: &Entry, file_id: u64, file_offset: u64) -> Result<(), String> {
    if e.state != FileState::Writing {
        return Err(format!("data for file id {file_id} after it was finished"));
    }
    if e.len != file_offset {
        return Err(format!(
            "data for file id {file_id} at offset {file_offset}, expected {}",
            e.len
        ));
    }
    Ok(())
}

/// What one entry (at `path`) adds to its namespace's books.
fn ns_share(path: &str, e: &Entry) -> NamespaceUse {
    // A file being built in place waits for its export as one in the
    // container does.
    let in_container = matches!(e.loc, Location::Container(_) | Location::Placed { .. });
    NamespaceUse {
        files: 1,
        bytes: e.len,
        container_bytes: if in_container { e.len } else { 0 },
        segment_bytes: if in_container { 0 } else { e.len },
        exportable: usize::from(
            in_container && e.state != FileState::Atomic && !path.ends_with(".del"),
        ),
    }
}

impl NamespaceUse {
    fn add(&mut self, o: &NamespaceUse) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.container_bytes += o.container_bytes;
        self.segment_bytes += o.segment_bytes;
        self.exportable += o.exportable;
    }

    fn sub(&mut self, o: &NamespaceUse) {
        self.files -= o.files;
        self.bytes -= o.bytes;
        self.container_bytes -= o.container_bytes;
        self.segment_bytes -= o.segment_bytes;
        self.exportable -= o.exportable;
    }
}

/// The table entry an image's file describes.
fn image_entry(f: &ImageFile<'_>) -> Entry {
    let state = match f.state {
        STATE_WRITING => FileState::Writing,
        STATE_TERMINATED => FileState::Terminated,
        _ => FileState::Atomic,
    };
    let loc = match f.place {
        ImagePlace::Container(_) => Location::Container(
            f.extents()
                .map(|(file_no, offset, len)| Extent {
                    file_no,
                    offset,
                    len,
                })
                .collect(),
        ),
        ImagePlace::Segment { export_no, offset } => Location::Segment { export_no, offset },
    };
    Entry {
        id: f.id,
        state,
        len: f.len,
        loc,
        anchors: f.anchors().collect(),
    }
}

fn add_anchor(anchors: &mut Vec<u64>, no: u64) {
    if !anchors.contains(&no) {
        anchors.push(no);
    }
}

/// Appends an extent, merging it into the previous one when they are adjacent.
fn push_extent(extents: &mut Vec<Extent>, extent: Extent) {
    if let Some(last) = extents.last_mut() {
        if last.file_no == extent.file_no && last.offset + last.len == extent.offset {
            last.len += extent.len;
            return;
        }
    }
    extents.push(extent);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The books as `account` computes them from scratch.
    fn recount(t: &FileTable) -> HashMap<u64, FileUse> {
        let fresh = recount_all(t);
        assert_eq!(fresh.anchored, t.anchored, "anchors");
        assert_eq!(fresh.ns_use, t.ns_use, "namespace books");
        assert_eq!(fresh.live_bytes, t.live_bytes, "live bytes");
        fresh.container_use
    }

    fn recount_all(t: &FileTable) -> FileTable {
        let mut fresh = FileTable::new();
        for (_, (k, e)) in t.entries.iter() {
            fresh.account(k, e, true);
        }
        fresh
    }

    #[test]
    fn incremental_extent_books_match_a_recount() {
        let mut t = FileTable::new();
        let a = t.alloc_id();
        assert!(t.create_with_id("", "a.idx", a, 0));
        let b = t.alloc_id();
        assert!(t.create_with_id("", "b.idx", b, 1));
        let mut offset = 100;
        for i in 0..40u64 {
            let file_no = i / 10;
            for id in [a, b] {
                t.add_extent(
                    id,
                    Extent {
                        file_no,
                        offset,
                        len: 7 + i,
                    },
                );
                offset += 30 + i;
            }
            assert_eq!(t.container_use, recount(&t), "after chunk {i}");
        }
        t.terminate(a, 4);
        assert!(t.remove_id(b).is_some());
        assert_eq!(t.container_use, recount(&t));
        assert_eq!(t.container_use(0).files, 1, "a's chunks and creation");
        assert_eq!(
            t.container_use(1).bytes,
            (10..20).map(|i| 7 + i).sum::<u64>()
        );
    }

    #[test]
    fn namespace_books_match_a_recount() {
        let mut t = FileTable::new();
        let x = |file_no, offset, len| Extent {
            file_no,
            offset,
            len,
        };
        let a = t.alloc_id();
        assert!(t.create_with_id("t1", "s.idx", a, 0));
        t.add_extent(a, x(0, 100, 50));
        t.terminate(a, 0);
        let d = t.alloc_id();
        assert!(t.create_with_id("t1", "s.1.del", d, 0));
        t.add_extent(d, x(0, 200, 8));
        t.terminate(d, 0);
        let m = t.alloc_id();
        t.put_atomic_if_newer("t1", "meta.json", m, x(0, 300, 20));
        let b = t.alloc_id();
        assert!(t.create_with_id("t2", "s.idx", b, 1));
        t.add_extent(b, x(1, 100, 70));
        recount(&t);
        let u = t.namespace_use("t1");
        assert_eq!((u.files, u.bytes, u.container_bytes), (3, 78, 78));
        assert_eq!(u.exportable, 1, "the segment file, not .del or meta.json");
        assert_eq!(t.namespaces_to_export(), vec!["t1", "t2"]);
        // Exported: its bytes move to the segment side, nothing to export.
        t.set_exported(a, 9, 0, 1);
        recount(&t);
        let u = t.namespace_use("t1");
        assert_eq!(
            (u.container_bytes, u.segment_bytes, u.exportable),
            (28, 50, 0)
        );
        assert_eq!(t.namespaces_to_export(), vec!["t2"]);
        assert_eq!(t.anchored_in(0).len(), 2, ".del and meta.json");
        assert_eq!(t.with_prefix("t1", "s.").len(), 2);
        // Another tenant's files are not t1's.
        assert!(t.remove_by_id(b));
        assert_eq!(t.namespace_use("t2"), NamespaceUse::default());
        assert_eq!(t.namespaces(), vec!["t1"]);
        for id in t.ids_in("t1") {
            assert!(t.remove_by_id(id));
        }
        recount(&t);
        assert!(t.namespaces().is_empty());
        assert_eq!(t.live_bytes(), 0);
        assert!(t.anchored.is_empty() && t.ns_use.is_empty());
    }
}
