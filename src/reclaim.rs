//! Reclaiming space: removing container files and segment files nothing live
//! needs any more, and copying the few live files out of a mostly dead container
//! file so it can go too — or out of a mostly live one whose removal frees at
//! least as many dead bytes (see [`COPY_FORWARD_PAYBACK`]).
//!
//! A container file is dead when no live file is *anchored* in it (see
//! [`crate::table`]); dead files are removed oldest first, and only as a prefix
//! of the log. Removal is logged first: a `Reclaim` record, synced, then
//! the unlink, then the folder sync. A crash in between leaves a file the next
//! open removes (the newest checkpoint and `Reclaim` records say which files the
//! log still needs). Segment files are removed once no live file is in them:
//! a `SegmentDrop` record and the deletions that killed them are made durable
//! first, so a crash before the unlink leaves a file the log proves dead (the
//! next open removes it). The evidence is only reclaimed in a later pass, after
//! the folder sync made the removal durable.
//!
//! Slices handed out before keep their bytes: they hold the mapping, and the
//! kernel frees an unlinked file's blocks when its last mapping goes.

use crate::engine::{Engine, MaintenanceCounters};
use crate::error::Result;
use crate::format::record::{encode_export_entries, ExportEntry, Payload};
use crate::format::segment_file::segment_file_name;
use crate::policy::SyncPolicy;
use crate::table::{Entry, FileState, FileUse, Key, Location};

/// A sealed container file whose live bytes are below this share of its size
/// has them copied forward.
const COPY_FORWARD_BELOW: f64 = 0.5;
/// A mostly live container file is still copied forward when the dead bytes
/// its removal lets go (its own and those of the dead files right after it,
/// which the prefix rule keeps while it stays) are at least this many times its
/// live bytes: a store's idle tenants in an old file would otherwise keep
/// every newer file on disk, however dead. Each byte copied frees at least
/// one, so the copies stay bounded by what they free.
const COPY_FORWARD_PAYBACK: u64 = 1;

/// Whether copying the live files of a container file of `size` bytes that
/// `used` describes out of it pays, given the files after it (oldest first).
fn worth_copying_forward(size: u64, used: FileUse, after: &[(u64, u64, FileUse)]) -> bool {
    if (used.bytes as f64) < size as f64 * COPY_FORWARD_BELOW {
        return true;
    }
    let dead_after: u64 = after
        .iter()
        .take_while(|(_, _, u)| u.files == 0)
        .map(|(_, size, _)| size)
        .sum();
    let freed = size.saturating_sub(used.bytes) + dead_after;
    used.bytes.saturating_mul(COPY_FORWARD_PAYBACK) <= freed
}

/// The active container file is sealed (so it can be reclaimed) once it holds
/// at least this many bytes of which less than `SEAL_ACTIVE_BELOW` are live.
const SEAL_ACTIVE_MIN: u64 = 4 << 20;
const SEAL_ACTIVE_BELOW: f64 = 0.25;
/// Live files up to this size are copied forward inside the container (one
/// record each). A container file holding a larger live file is left alone: such
/// files are segment files' contents that export will move (or merges will
/// kill) anyway, and copying them early would write them once more.
const RELOCATE_MAX: u64 = 1 << 20;

/// What one call to [`crate::JockyDirectory::reclaim`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReclaimReport {
    /// Container files removed.
    pub container_files_removed: usize,
    /// Segment files removed.
    pub segment_files_removed: usize,
    /// Live files copied out of mostly dead container files.
    pub files_copied_forward: usize,
    /// Their bytes.
    pub bytes_copied_forward: u64,
}

/// Reclamation passes over one engine.
pub(crate) struct Reclaimer<'a>(pub &'a Engine);

impl Reclaimer<'_> {
    /// One reclamation pass.
    pub fn reclaim(&self) -> Result<ReclaimReport> {
        let _pass = self.0.maintenance_pass();
        let mut report = ReclaimReport::default();
        let active = self.0.container().active_no();
        if let Some((_, size)) = self
            .0
            .container()
            .file_sizes()
            .into_iter()
            .find(|(n, _)| *n == active)
        {
            let live = self.0.table().container_use(active).bytes;
            if size >= SEAL_ACTIVE_MIN && (live as f64) < size as f64 * SEAL_ACTIVE_BELOW {
                self.0.container().seal_active()?;
            }
        }
        let active = self.0.container().active_no();
        // Only the oldest files go, in order: removing a prefix of the log never
        // takes away a record (a Delete, a later chunk, a newer copy) that a
        // record in a kept file depends on. Records in kept files about files
        // created in the removed prefix are ignored on replay (the checkpoint's
        // id floor says they were created there).
        let mut dead = Vec::new();
        // The files that may be judged, oldest first: not one still receiving
        // records, nor one holding records a writer has not put in the table
        // yet (the table cannot judge those), nor any after them.
        let judged: Vec<(u64, u64, FileUse)> = {
            let mut judged = Vec::new();
            for (no, size) in self.0.container().file_sizes() {
                if no == active || self.0.container().has_unapplied(no) {
                    break;
                }
                judged.push((no, size, self.0.table().container_use(no)));
            }
            judged
        };
        for (i, &(no, size, used)) in judged.iter().enumerate() {
            if used.files == 0
                || (worth_copying_forward(size, used, &judged[i + 1..])
                    && self.copy_forward(no, &mut report)?)
            {
                dead.push(no);
            } else {
                break;
            }
        }
        let dead_segments: Vec<u64> = {
            let table = self.0.table();
            self.0
                .segments()
                .numbers()
                .into_iter()
                .filter(|no| table.segment_use(*no) == 0)
                .collect()
        };
        if dead.is_empty() && dead_segments.is_empty() {
            return Ok(report);
        }
        let payloads: Vec<Payload<'_>> = dead
            .iter()
            .map(|no| Payload::Reclaim { file_no: *no })
            .chain(
                dead_segments
                    .iter()
                    .map(|no| Payload::SegmentDrop { export_no: *no }),
            )
            .collect();
        drop(self.0.container().append(&payloads)?);
        // The reclaim and drop records, the copies and the deletions that made
        // these files dead are durable before anything is removed.
        self.0.container().sync()?;
        for no in &dead {
            self.0.container().unlink(*no)?;
            report.container_files_removed += 1;
        }
        let storage = self.0.container().storage().clone();
        for no in &dead_segments {
            self.0.segments().forget(*no);
            self.0.table_mut().retain_logged_segments(|n| n != no);
            let name = segment_file_name(*no);
            match storage.remove(&name) {
                Ok(()) => report.segment_files_removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::Error::io(self.0.container().root().join(name), e)),
            }
        }
        if self.0.container().sync_policy() != SyncPolicy::Never {
            storage
                .sync_dir()
                .map_err(|e| crate::Error::io(self.0.container().root(), e))?;
        }
        let c = &self.0.counters();
        MaintenanceCounters::add(
            &c.container_files_reclaimed,
            report.container_files_removed as u64,
        );
        MaintenanceCounters::add(
            &c.segment_files_removed,
            report.segment_files_removed as u64,
        );
        MaintenanceCounters::add(&c.bytes_copied_forward, report.bytes_copied_forward);
        Ok(report)
    }

    /// Moves every live file anchored in container file `no` elsewhere. Returns
    /// whether the file is dead afterwards (not if a file anchored in it is still
    /// being written or too large to copy here).
    fn copy_forward(&self, no: u64, report: &mut ReclaimReport) -> Result<bool> {
        // Which files are anchored in `no` is known once every namespace's
        // files are decoded (after an open from a snapshot, on first need).
        self.0.ensure_all()?;
        {
            // The snapshot, the copies and the table's updates in log order
            // (no delete or export of these files in between); the table's
            // lock only around the in-memory parts, so readers never wait for
            // the copies' reads and appends.
            let _order = self.0.log_order();
            let anchored = self.0.table().anchored_in(no);
            // A copy is one record: it must also fit in a container file.
            if anchored.iter().any(|((ns, path), e)| {
                let max = RELOCATE_MAX.min(self.0.max_atomic_len(ns, path) as u64);
                e.state == FileState::Writing
                    || (matches!(e.loc, Location::Container(_)) && e.len > max)
            }) {
                return Ok(false);
            }
            // Exported files: log their `Export` record again.
            let mut by_segment: std::collections::BTreeMap<(String, u64), Vec<(Key, Entry)>> =
                Default::default();
            for (key, e) in &anchored {
                if let Location::Segment { export_no, .. } = e.loc {
                    by_segment
                        .entry((key.0.to_string(), export_no))
                        .or_default()
                        .push((key.clone(), e.clone()));
                }
            }
            for ((ns, export_no), files) in by_segment {
                let entries: Vec<ExportEntry> = files
                    .iter()
                    .map(|((_, path), e)| ExportEntry {
                        file_id: e.id,
                        offset: match e.loc {
                            Location::Segment { offset, .. } => offset,
                            Location::Container(_) => unreachable!("grouped by segment"),
                        },
                        len: e.len,
                        path: path.to_string(),
                    })
                    .collect();
                let blob = encode_export_entries(&entries);
                let appended = self.0.container().append(&[Payload::Export {
                    export_no,
                    namespace: &ns,
                    entries: &blob,
                }])?;
                let mut t = self.0.table_mut();
                for (_, e) in &files {
                    t.set_anchor(e.id, appended.file_no);
                }
            }
            // Small files in the container: one record each, same id.
            for ((ns, path), e) in anchored {
                if !matches!(e.loc, Location::Container(_)) {
                    continue;
                }
                let bytes = self
                    .0
                    .read_whole(&e)
                    .map_err(|err| crate::Error::io(self.0.container().root(), err))?;
                let appended = self.0.container().append(&[Payload::AtomicWrite {
                    file_id: e.id,
                    namespace: &ns,
                    path: &path,
                    bytes: &bytes,
                }])?;
                let extent = appended.extents[0].expect("an atomic write carries bytes");
                self.0.table_mut().set_relocated(e.id, extent);
                report.files_copied_forward += 1;
                report.bytes_copied_forward += e.len;
            }
        }
        Ok(self.0.table().container_use(no).files == 0)
    }
}
