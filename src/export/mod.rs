//! Export: committed segments move out of the container into one contiguous
//! segment file each, read through a single mapping with advice per file type.
//!
//! Order of an export, so that a crash at any point leaves nothing `open` trusts
//! half-made: (0) an `ExportBegin` record, synced, says the segment file is about
//! to be written, (1) the segment file is written whole (files on page
//! boundaries, table, trailer) and fdatasync'ed, (2) the folder is fsync'ed,
//! (3) an `Export` record in the container, synced, makes the move durable.
//! Until (3) the files' records in the container stay authoritative; a segment
//! file that no `Export` record references but whose `ExportBegin` is in the log
//! is removed on the next open (the log proves it incomplete). A segment file
//! the log has no record of is never removed: open refuses the folder.
//!
//! What gets exported: the files of each segment listed in a namespace's last
//! `meta.json` (`<segment uuid>.<ext>`), once all of them are terminated and
//! their total reaches the policy's minimum. `.del` files stay in the container:
//! they are small, and a new one is written each time documents of the segment
//! are deleted, so exporting them would rewrite the segment or scatter it.
//! Files that arrive after a segment was exported stay in the container too.

pub(crate) mod build;
mod handle;
pub(crate) mod hot;
pub(crate) mod segments;
pub(crate) mod worker;

use ownedbytes::OwnedBytes;

use crate::engine::{Engine, MaintenanceCounters};
use crate::error::{Error, Result};
use crate::format::record::{encode_export_entries, ExportEntry, Payload};
use crate::format::segment_file::{
    encode_table, encode_trailer, layout, segment_file_name, BlockHasher, HotRange, SegEntry,
    SegTable, BLOCK_LOG2, MAX_PATH_LEN,
};
use crate::io::{Storage, StorageFile};
use crate::policy::{SyncPolicy, COMMIT_FILE};
use crate::table::{Entry, FileState, Location};

/// What one call to [`crate::JockyDirectory::export_committed`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReport {
    /// Segment files written.
    pub segment_files: usize,
    /// Virtual files moved into them.
    pub files: usize,
    /// Bytes of file contents copied.
    pub bytes: u64,
}

/// A group of files to export together.
struct Group {
    ns: String,
    files: Vec<(String, Entry)>,
}

/// Export passes over one engine.
pub(crate) struct Exporter<'a>(pub &'a Engine);

impl Exporter<'_> {
    /// Exports every committed segment of every namespace that is still in the
    /// container, whatever its size (`min_bytes` 0) or from the policy's minimum.
    pub fn export_committed(&self, min_bytes: u64) -> Result<ExportReport> {
        self.export(min_bytes, false)
    }

    /// The background pass after a quiet period: as [`Self::export_committed`],
    /// but a namespace with a file being written is left for the next pass
    /// (its writer is indexing or merging: the segments it has now are likely
    /// to be merged away soon, and exporting them would write them twice
    /// more). The merge's end writes `meta.json`, which arms the next pass.
    pub fn export_quiet(&self, min_bytes: u64) -> Result<ExportReport> {
        self.export(min_bytes, true)
    }

    fn export(&self, min_bytes: u64, skip_busy: bool) -> Result<ExportReport> {
        let _pass = self.0.maintenance_pass();
        let mut report = ExportReport::default();
        // Only tenants with something in the container to move: a pass costs
        // what there is to export, not what the store holds.
        let namespaces = self.0.table().namespaces_to_export();
        for ns in namespaces {
            self.0.ensure_ns(&ns)?;
            if skip_busy && self.0.is_writing(&ns) {
                continue;
            }
            for group in self.plan(&ns, min_bytes) {
                self.export_group(group, &mut report)?;
            }
        }
        Ok(report)
    }

    /// Exports the named files of namespace `ns` together into one segment file
    /// (files not terminated, already exported or gone are skipped).
    pub fn export_paths(&self, ns: &str, paths: &[String]) -> Result<ExportReport> {
        let _pass = self.0.maintenance_pass();
        self.0.ensure_ns(ns)?;
        let files = {
            let table = self.0.table();
            paths
                .iter()
                .filter_map(|p| table.get(ns, p).map(|e| (p.clone(), e.clone())))
                .filter(|(p, e)| exportable(p, e))
                .collect()
        };
        let mut report = ExportReport::default();
        self.export_group(
            Group {
                ns: ns.to_string(),
                files,
            },
            &mut report,
        )?;
        Ok(report)
    }

    /// The committed segments of `ns` worth exporting now.
    fn plan(&self, ns: &str, min_bytes: u64) -> Vec<Group> {
        let Some(meta) = self.0.table().get(ns, COMMIT_FILE).cloned() else {
            return Vec::new();
        };
        let meta = match self.0.read_whole(&meta) {
            Ok(bytes) => bytes,
            Err(e) => {
                log::warn!("export: cannot read {COMMIT_FILE} of {ns:?}: {e}");
                return Vec::new();
            }
        };
        let mut groups = Vec::new();
        for id in committed_segment_ids(&meta) {
            let files = self.0.table().with_prefix(ns, &format!("{id}."));
            if files.is_empty() || files.iter().any(|(_, e)| e.state == FileState::Writing) {
                continue;
            }
            let files: Vec<(String, Entry)> = files
                .into_iter()
                .filter(|(p, e)| !p.ends_with(".del") && exportable(p, e))
                .collect();
            let bytes: u64 = files.iter().map(|(_, e)| e.len).sum();
            if files.is_empty() || bytes < min_bytes {
                continue;
            }
            groups.push(Group {
                ns: ns.to_string(),
                files,
            });
        }
        groups
    }

    fn export_group(&self, mut group: Group, report: &mut ExportReport) -> Result<()> {
        if group.files.is_empty() {
            return Ok(());
        }
        group.files.sort_by(|a, b| a.0.cmp(&b.0));
        // A segment built in place is finished in its own file.
        let built = build_target(&group)
            .filter(|no| placed_in(&group, *no) == self.0.table().building_use(*no));
        let no = match built {
            Some(no) => no,
            None => self.0.take_export_no(),
        };
        if no > crate::format::record::MAX_FILE_NO {
            return Err(Error::TooLarge(format!(
                "segment file number {no} has more than ten digits"
            )));
        }
        let storage = self.0.container().storage().clone();
        let sync = self.0.container().sync_policy() != SyncPolicy::Never;
        let name = segment_file_name(no);
        let path = self.0.container().root().join(&name);
        // The evidence that lets the next open remove this file if a crash cuts
        // the export short: durable before the file exists (for a file being
        // built, since its creation).
        if built.is_none() {
            // Into the table's books before the append's guard goes (a
            // snapshot waits for that): a snapshot written after this record
            // carries the evidence.
            let appended = self
                .0
                .container()
                .append(&[Payload::ExportBegin { export_no: no }])?;
            self.0.table_mut().note_segment(no);
            drop(appended);
        }
        self.0.container().sync()?;
        let hot = {
            let paths: Vec<&str> = group.files.iter().map(|(p, _)| p.as_str()).collect();
            let known = built
                .map(|no| self.0.builds().crcs_of(no))
                .unwrap_or_default();
            match paths[0].split_once('.') {
                Some((id, _)) if paths.iter().all(|p| p.starts_with(&format!("{id}."))) => {
                    hot::record(self.0, &group.ns, id, &paths, &known)
                }
                _ => Vec::new(),
            }
        };
        // The bytes of files built in place, mapped (and their chunks checked)
        // before the segment file's descriptor opens: one such descriptor at
        // a time in the process (placement, reads and export share the bound).
        let placed: Placed = group
            .files
            .iter()
            .filter(|(_, e)| matches!(e.loc, Location::Placed { .. }))
            .map(|(_, e)| Ok((e.id, self.0.read_entry(e)?)))
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io(&path, e))?;
        let io = crate::sync::lock(&self.0.builds().io);
        let build::Finished {
            file,
            len,
            table,
            copied,
        } = match built {
            Some(_) => {
                // No chunk may go there any more: none on its way, no writer
                // of the segment open (else a later pass finishes it).
                let Some(crcs) = self.0.builds().try_finish(no) else {
                    return Ok(());
                };
                let known = build::Known {
                    placed: &placed,
                    crcs: &crcs,
                };
                build::finish_in_place(self.0, &*storage, no, &group, known, hot, sync)
                    .map_err(|e| Error::io(&path, e))?
            }
            None => write_segment_file(self.0, &*storage, no, &group, &placed, hot, sync)
                .map(|(f, len, t)| {
                    let copied = t.entries.iter().map(|e| e.len).sum();
                    build::Finished {
                        file: f,
                        len,
                        table: t,
                        copied,
                    }
                })
                .map_err(|e| Error::io(&path, e))?,
        };
        if sync {
            storage.sync_dir().map_err(|e| Error::io(&path, e))?;
        }
        self.0.segments().insert(no, &*file, len, table.clone())?;
        drop(file); // the descriptor closes; the mapping stays.
        drop(io);

        // Bytes copied inside the kernel as shared blocks (reflinks) are not
        // in the page cache under the new file: read its hot ranges ahead, so
        // that the next open of the segment does not fault them in one at a
        // time. Where they were written through the page cache this costs
        // next to nothing.
        self.0.segments().prefetch(no);

        // Log the move for the files still as they were; make it durable.
        // The container extents of the files that moved, released below.
        let mut old_extents = Vec::new();
        let moved = {
            // The check, the record and the table's update in log order; the
            // table's lock only around the in-memory parts.
            let _order = self.0.log_order();
            let live: Vec<&SegEntry> = {
                let t = self.0.table();
                table
                    .entries
                    .iter()
                    .filter(|e| {
                        t.get(&group.ns, &e.path).is_some_and(|cur| {
                            cur.id == e.file_id
                                && matches!(
                                    cur.loc,
                                    Location::Container(_) | Location::Placed { .. }
                                )
                        })
                    })
                    .collect()
            };
            if live.is_empty() {
                Vec::new()
            } else {
                let entries: Vec<ExportEntry> = live
                    .iter()
                    .map(|e| ExportEntry {
                        file_id: e.file_id,
                        offset: e.offset,
                        len: e.len,
                        path: e.path.clone(),
                    })
                    .collect();
                let blob = encode_export_entries(&entries);
                let appended = self.0.container().append(&[Payload::Export {
                    export_no: no,
                    namespace: &group.ns,
                    entries: &blob,
                }])?;
                let mut t = self.0.table_mut();
                for e in &live {
                    if let Some(Location::Container(x) | Location::Placed { prefix: x, .. }) =
                        t.get(&group.ns, &e.path).map(|cur| cur.loc.clone())
                    {
                        old_extents.extend(x);
                    }
                    t.set_exported(e.file_id, no, e.offset, appended.file_no);
                }
                entries
            }
        };
        if moved.is_empty() {
            if built.is_some() {
                // Everything was deleted meanwhile, but the deletions may not
                // be durable, and the file held their chunks: reclamation
                // drops it (`SegmentDrop` synced first).
                return Ok(());
            }
            // Everything was deleted meanwhile: the file is not referenced.
            self.0.segments().forget(no);
            if let Err(e) = storage.remove(&name) {
                log::warn!("could not remove unused {}: {e}", path.display());
            }
            return Ok(());
        }
        self.0.container().sync()?;
        // Served from the segment file now: the copy in the container (read
        // for the export) leaves memory and, unless mapped elsewhere, the cache.
        self.0.container().release(&old_extents);
        report.segment_files += 1;
        report.files += moved.len();
        report.bytes += copied;
        MaintenanceCounters::add(&self.0.counters().segments_exported, 1);
        MaintenanceCounters::add(&self.0.counters().bytes_exported, copied);
        Ok(())
    }
}

impl worker::Maintained for Engine {
    fn worker(&self) -> &worker::Worker {
        Engine::worker(self)
    }

    fn auto_export(&self) -> Option<(u64, Option<std::time::Duration>)> {
        Engine::auto_export(self)
    }

    fn maintain(&self, export_min: Option<u64>, idle: bool) -> bool {
        let mut more = false;
        let mut reclaim = || {
            crate::reclaim::Reclaimer(self).reclaim().map(|r| {
                more = r.more;
            })
        };
        let result = match export_min {
            None => reclaim(),
            Some(min) if idle => Exporter(self).export_quiet(min).and_then(|_| reclaim()),
            Some(min) => Exporter(self).export_committed(min).and_then(|_| reclaim()),
        }
        .and_then(|_| {
            // Bound what the next open replays.
            let debt = crate::policy::snapshot_after(self.container().snapshot_stats().1);
            self.write_snapshot(debt).map(|_| ())
        })
        .and_then(|_| {
            if idle {
                self.container().seal()
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            log::warn!("background export/reclaim failed: {e}");
            MaintenanceCounters::add(&self.counters().background_errors, 1);
            return false;
        }
        more
    }
}

/// Whether a file can move into a segment file.
fn exportable(path: &str, e: &Entry) -> bool {
    e.state != FileState::Writing
        && matches!(e.loc, Location::Container(_) | Location::Placed { .. })
        && (1..=MAX_PATH_LEN).contains(&path.len())
        && path != COMMIT_FILE
}

/// The segment file a group is being built in, if all of its files built in
/// place are in one (the others, in the container, are copied into it).
fn build_target(group: &Group) -> Option<u64> {
    let mut target = None;
    for (_, e) in &group.files {
        if let Location::Placed { export_no, .. } = e.loc {
            match target {
                None => target = Some(export_no),
                Some(n) if n != export_no => return None,
                Some(_) => {}
            }
        }
    }
    target
}

/// How many of `group`'s files are being built in segment file `no`: it is
/// finished in place only with all of them.
fn placed_in(group: &Group, no: u64) -> usize {
    group
        .files
        .iter()
        .filter(|(_, e)| matches!(e.loc, Location::Placed { export_no, .. } if export_no == no))
        .count()
}

/// The segment ids (as in file names: 32 hex digits) a `meta.json` lists.
fn committed_segment_ids(meta: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(meta) else {
        return Vec::new();
    };
    let Some(segments) = v.get("segments").and_then(|s| s.as_array()) else {
        return Vec::new();
    };
    segments
        .iter()
        .filter_map(|s| s.get("segment_id")?.as_str())
        .map(|id| id.replace('-', ""))
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

/// Writes segment file `no` whole and syncs it; returns the open file (for
/// mapping), its length and its table. A failed write removes the file.
/// The bytes of a group's files built in place, by file id (mapped, checked).
pub(super) type Placed = std::collections::HashMap<u64, Vec<OwnedBytes>>;

fn write_segment_file(
    engine: &Engine,
    storage: &dyn Storage,
    no: u64,
    group: &Group,
    placed: &Placed,
    hot: Vec<HotRange>,
    sync: bool,
) -> std::io::Result<(std::sync::Arc<dyn StorageFile>, u64, SegTable)> {
    let lens: Vec<u64> = group.files.iter().map(|(_, e)| e.len).collect();
    let (offsets, table_offset) = layout(&lens);
    let name = segment_file_name(no);
    let file = storage.create(&name)?;
    let any_file = engine.export_copy() == crate::policy::ExportCopy::AnyFile;
    let result = (|| {
        // The container file the last extent was copied from, kept open
        // while the next extents come from it too.
        let mut source: Option<(u64, std::sync::Arc<dyn StorageFile>)> = None;
        // The segment file's write-back starts every few MiB, as the
        // container's does: an export of hundreds of MB left dirty until its
        // closing `fdatasync` was a write-back storm that stalled the commits
        // of every other index on the disk.
        let mut smooth = crate::container::Smoother::default();
        let mut entries = Vec::with_capacity(group.files.len());
        for ((path, entry), offset) in group.files.iter().zip(&offsets) {
            let extents = match &entry.loc {
                Location::Container(extents) => extents,
                Location::Placed { .. } => {
                    // Built in place in another segment file (a segment
                    // whose files were spread by a crash): copied.
                    let mut crc = BlockHasher::new(BLOCK_LOG2);
                    let mut at = *offset;
                    let parts = placed
                        .get(&entry.id)
                        .ok_or_else(|| std::io::Error::other("a file built in place not read"))?;
                    for part in parts {
                        file.write_at(at, part.as_slice())?;
                        crc.update(part.as_slice());
                        at += part.len() as u64;
                    }
                    entries.push(seg_entry(path, entry, *offset, crc.finish()));
                    continue;
                }
                Location::Segment { .. } => {
                    return Err(std::io::Error::other(
                        "an exported file is not exported again",
                    ))
                }
            };
            let mut crc = BlockHasher::new(BLOCK_LOG2);
            let mut at = *offset;
            // One extent at a time, each taken out of our RSS and the page
            // cache once copied: a segment's worth of container pages never
            // piles up in the process or the cache.
            for x in extents {
                // Exactly this extent, asked for in one request: a page of it
                // the kernel dropped meanwhile would otherwise be faulted in
                // with the device's whole read-around window (8 MiB on this
                // disk), most of it other files' pages. Cached pages cost a
                // lookup.
                engine.container().prefetch(std::slice::from_ref(x));
                let part: OwnedBytes = engine.container().read(*x)?;
                // Inside the kernel where it can (shared blocks on XFS or
                // btrfs, as the extents of a file of several chunks are
                // page-aligned); the block CRCs come from the bytes read.
                if source.as_ref().is_none_or(|(no, _)| *no != x.file_no) {
                    drop(source.take()); // one source descriptor at a time
                    source = engine
                        .container()
                        .source_of(*x, any_file)
                        .map(|f| (x.file_no, f));
                }
                let copied = match &source {
                    Some((_, src)) => file.copy_from(&**src, x.offset, at, x.len)?.min(x.len),
                    None => 0,
                };
                MaintenanceCounters::add(&engine.counters().bytes_copied_in_kernel, copied);
                file.write_at(at + copied, &part.as_slice()[copied as usize..])?;
                crc.update(part.as_slice());
                smooth.wrote(&*file, no, at, at + part.len() as u64);
                at += part.len() as u64;
                drop(part);
                // The container's copy is on its way out (the export ends by
                // releasing it): its pages leave the page cache as soon as they
                // are copied, so the two copies of a segment are never cached
                // side by side. A reader still on the container's copy until
                // the export is published reads those pages back from disk.
                engine.container().page_out(std::slice::from_ref(x));
            }
            entries.push(seg_entry(path, entry, *offset, crc.finish()));
        }
        let table = SegTable {
            export_no: no,
            namespace: group.ns.clone(),
            block_log2: BLOCK_LOG2,
            entries,
            hot,
        };
        let len = write_table(&*file, table_offset, &table, sync)?;
        Ok((len, table))
    })();
    match result {
        Ok((len, table)) => Ok((file, len, table)),
        Err(e) => {
            drop(file);
            let _ = storage.remove(&name);
            Err(e)
        }
    }
}

/// The table entry of file `path` (`entry`) written at `offset` of a segment
/// file, with its CRCs (whole, per block).
pub(super) fn seg_entry(
    path: &str,
    entry: &Entry,
    offset: u64,
    (crc, block_crcs): (u32, Vec<u32>),
) -> SegEntry {
    SegEntry {
        file_id: entry.id,
        path: path.to_string(),
        offset,
        len: entry.len,
        crc,
        block_crcs,
    }
}

/// Writes `table` and the trailer at `table_offset` of a segment file whose
/// files are all written, and syncs it (with `sync`); returns its length.
pub(super) fn write_table(
    file: &dyn StorageFile,
    table_offset: u64,
    table: &SegTable,
    sync: bool,
) -> std::io::Result<u64> {
    let mut tail = encode_table(table);
    let trailer = encode_trailer(table_offset, &tail);
    tail.extend_from_slice(&trailer);
    file.write_at(table_offset, &tail)?;
    if sync {
        file.sync_data()?;
    }
    Ok(table_offset + tail.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::committed_segment_ids;

    #[test]
    fn segment_ids_from_meta() {
        let meta = br#"{"index_settings":{},"segments":[{"segment_id":"a1b2c3d4-0000-4000-8000-0123456789ab","max_doc":3,"deletes":null},{"segment_id":"../x"}],"opstamp":4}"#;
        assert_eq!(
            committed_segment_ids(meta),
            vec!["a1b2c3d400004000800001234567 89ab".replace(' ', "")]
        );
        assert!(committed_segment_ids(b"not json").is_empty());
    }
}
