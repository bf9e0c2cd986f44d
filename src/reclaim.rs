//! Reclaiming space: removing container files and segment files nothing live
//! needs any more, and copying the live files out of container files first
//! where that pays (see [`COPY_FORWARD_PAYBACK`]).
//!
//! A container file is dead when no live file is *anchored* in it (see
//! [`crate::table`]). Dead files are removed oldest first, as a prefix of the
//! log: removing a prefix never takes away a record (a `Delete`, a later chunk,
//! a newer copy) that a record in a kept file depends on, so a replay of every
//! record the log still has gives the same table. A dead file older than the
//! newest snapshot may also go *out of order*: an open replays from that
//! snapshot and never reads the records of older files; the gap it leaves
//! tells recovery that no replay may start before it (`docs/format.md`).
//! Removal is logged first: a `Reclaim` record, synced, then the unlink, then
//! the folder sync. A crash in between leaves a file the next open removes
//! (the newest checkpoint and `Reclaim` records say which files the log still
//! needs). Segment files are removed once no live file is in them: a
//! `SegmentDrop` record and the deletions that killed them are made durable
//! first, so a crash before the unlink leaves a file the log proves dead (the
//! next open removes it). The evidence is only reclaimed in a later pass, after
//! the folder sync made the removal durable.
//!
//! Copies forward run in steps that hold the log order for at most about
//! [`COPY_STEP_BYTES`], and a pass copies at most [`COPY_PASS_BYTES`].
//!
//! Slices handed out before keep their bytes: they hold the mapping, and the
//! kernel frees an unlinked file's blocks when its last mapping goes.

use crate::engine::{Engine, MaintenanceCounters};
use crate::error::Result;
use crate::format::record::{encode_export_entries, ExportEntry, Payload};
use crate::format::segment_file::segment_file_name;
use crate::policy::SyncPolicy;
use crate::table::{Entry, FileState, FileUse, Key, Location};

/// Copying forward pays when the dead bytes a removal frees are at least this
/// many times the live bytes it copies: each byte copied frees at least one,
/// so the copies stay bounded by what they free (a log cleaner at 50%
/// utilisation). A mostly dead file qualifies alone; a mostly live one when the
/// files removed with it — dead ones right behind it, or mostly dead ones
/// further on that the prefix rule keeps while it stays — bring enough: a
/// store's idle tenants in an old file would otherwise keep every newer file
/// on disk, however dead.
const COPY_FORWARD_PAYBACK: u64 = 1;
/// Most bytes one step of copying forward moves while it holds the log-order
/// lock: a writer's append waits for one step at most, not for a whole file.
const COPY_STEP_BYTES: u64 = 1 << 20;
/// Most files one step moves.
const COPY_STEP_FILES: usize = 256;
/// Most bytes one pass copies forward (it holds the maintenance lock, so an
/// export waits for it); the next pass goes on where this one stopped.
const COPY_PASS_BYTES: u64 = 64 << 20;

/// A container file reclamation judges.
#[derive(Debug, Clone, Copy)]
struct Judged {
    no: u64,
    size: u64,
    used: FileUse,
    /// What copying its live files forward writes: whole files, some of
    /// whose bytes may be in other container files (`used.bytes` until the
    /// files are looked at).
    copy: u64,
}

/// How many of the oldest container files to remove (`judged`, oldest
/// first): the prefix whose removal frees the most dead bytes net of
/// [`COPY_FORWARD_PAYBACK`] times the bytes copying its live files writes,
/// among those that pay; 0 if none does.
fn prefix_to_remove(judged: &[Judged]) -> usize {
    let (mut dead, mut copy) = (0u64, 0u64);
    let (mut best, mut best_gain) = (0, 0);
    for (i, j) in judged.iter().enumerate() {
        dead += j.size.saturating_sub(j.used.bytes);
        copy += j.copy;
        let gain = dead.saturating_sub(copy.saturating_mul(COPY_FORWARD_PAYBACK));
        if gain > best_gain {
            (best, best_gain) = (i + 1, gain);
        }
    }
    best
}

/// The active container file is sealed (so it can be reclaimed) once it holds
/// at least this many bytes of which less than `SEAL_ACTIVE_BELOW` are live.
const SEAL_ACTIVE_MIN: u64 = 4 << 20;
const SEAL_ACTIVE_BELOW: f64 = 0.25;
/// Live files up to this size are copied forward inside the container (one
/// record each). A larger one only if it belongs to a segment the export
/// policy leaves in the container (smaller than its minimum), where it would
/// stay for good; the others are segment files' contents that export will move
/// (or merges will kill) soon, and copying them early would write them once
/// more, so a container file holding one is left alone for now.
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
    /// Of the container files removed, those removed ahead of older ones
    /// (dead, and older than a snapshot an open replays from).
    pub out_of_order: usize,
    /// The pass stopped at its bound on bytes copied forward (64 MiB) with
    /// more to copy: the next pass goes on (under an automatic export
    /// policy the maintenance pool runs it at once, not at the next commit).
    pub more: bool,
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
        //
        // The files that may be judged, oldest first: not one still receiving
        // records, nor one holding records a writer has not put in the table
        // yet (the table cannot judge those), nor any after them.
        let mut judged: Vec<Judged> = Vec::new();
        for (no, size) in self.0.container().file_sizes() {
            if no == active || self.0.container().has_unapplied(no) {
                break;
            }
            let used = self.0.table().container_use(no);
            judged.push(Judged {
                no,
                size,
                used,
                copy: used.bytes,
            });
        }
        // The prefix worth removing, cut short before any file whose live
        // files cannot be copied forward now, and chosen again with what the
        // copies would really write.
        let mut take = prefix_to_remove(&judged);
        if judged[..take].iter().any(|j| j.used.files > 0) {
            // Which files are anchored where is known once every
            // namespace's files are decoded (after an open from a snapshot,
            // on first need).
            self.0.ensure_all()?;
            let stuck = judged[..take]
                .iter_mut()
                .position(|j| !self.price(j))
                .unwrap_or(take);
            take = prefix_to_remove(&judged[..stuck]);
        }
        // After it, files older than the newest snapshot may go out of order
        // (an open replays from the snapshot, never their records), each
        // one that pays alone: a dead one, or a mostly dead one whose few
        // live files are copied forward first — the snapshot files of a store
        // and what followed them, kept behind mostly live files.
        let snapshot = self.0.container().snapshot_no();
        let mut ahead: Vec<Judged> = judged[take..]
            .iter()
            .filter(|j| snapshot.is_some_and(|s| j.no < s) && prefix_to_remove(&[**j]) == 1)
            .copied()
            .collect();
        if ahead.iter().any(|j| j.used.files > 0) {
            self.0.ensure_all()?;
            ahead.retain_mut(|j| self.price(j) && prefix_to_remove(&[*j]) == 1);
        }
        let mut dead = Vec::new();
        let mut budget = COPY_PASS_BYTES;
        for j in &judged[..take] {
            if j.used.files == 0 || self.copy_forward(j.no, &mut budget, &mut report)? {
                dead.push(j.no);
            } else {
                break;
            }
        }
        report.more = dead.len() < take;
        for j in ahead {
            if j.used.files == 0
                || (!report.more && self.copy_forward(j.no, &mut budget, &mut report)?)
            {
                dead.push(j.no);
                report.out_of_order += 1;
            } else {
                report.more = true;
            }
        }
        let (dead_segments, hold) = {
            let table = self.0.table();
            let mut dead: Vec<u64> = self
                .0
                .segments()
                .numbers()
                .into_iter()
                .filter(|no| table.segment_use(*no) == 0 && table.building_use(*no) == 0)
                .collect();
            // Segment files being built whose files were all deleted before
            // their export (merged away), with no chunk on its way.
            dead.extend(
                self.0
                    .builds()
                    .take_dead(|no| table.building_use(no) == 0 && table.segment_use(no) == 0),
            );
            let hold = self
                .0
                .builds()
                .needs_its_evidence(|no| table.building_use(no) > 0);
            (dead, hold)
        };
        if hold {
            // A segment file being built that no live record names but its
            // `ExportBegin` (just created, or emptied while a writer of its
            // segment is still open): no container file goes in this pass, so
            // that record stays for an open after a crash (the next pass
            // removes them; not at once: this may last).
            dead.clear();
        }
        // Copies count even when this pass removes nothing (it stopped at
        // its bound).
        MaintenanceCounters::add(
            &self.0.counters().bytes_copied_forward,
            report.bytes_copied_forward,
        );
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
        Ok(report)
    }

    /// Sets what copying `j`'s live files forward writes; `false` if they
    /// cannot all be copied now (a dead file costs nothing).
    fn price(&self, j: &mut Judged) -> bool {
        if j.used.files == 0 {
            return true;
        }
        match self.copy_cost(j.no) {
            Some(copy) => {
                j.copy = copy;
                true
            }
            None => false,
        }
    }

    /// What copying the live files anchored in container file `no` forward
    /// writes, if they can all be copied now: none is still being written,
    /// and none in the container is too large (see [`RELOCATE_MAX`]) or
    /// longer than one record holds. An exported file costs only its
    /// `Export` record, logged again.
    fn copy_cost(&self, no: u64) -> Option<u64> {
        let anchored = self.0.table().anchored_in(no);
        let mut copy = 0;
        for ((ns, path), e) in &anchored {
            if e.state == FileState::Writing {
                return None;
            }
            match e.loc {
                Location::Container(_) => {}
                // Anchored here until its export: not moved.
                Location::Placed { .. } => return None,
                Location::Segment { .. } => continue,
            }
            let fits = e.len <= self.0.max_atomic_len(ns, path) as u64
                && (e.len <= RELOCATE_MAX || self.stays_in_container(ns, path));
            if !fits {
                return None;
            }
            copy += e.len;
        }
        Some(copy)
    }

    /// Whether file `path` of namespace `ns` belongs to a segment the export
    /// policy leaves in the container: smaller than its minimum, or no
    /// automatic export at all.
    fn stays_in_container(&self, ns: &str, path: &str) -> bool {
        let (Some((min_bytes, _)), Some((segment, _))) =
            (self.0.auto_export(), path.split_once('.'))
        else {
            return true;
        };
        let files = self.0.table().with_prefix(ns, &format!("{segment}."));
        files.iter().map(|(_, e)| e.len).sum::<u64>() < min_bytes
    }

    /// Moves the live files anchored in container file `no` elsewhere, in
    /// steps that each hold the log order for a bounded number of bytes, until
    /// `budget` (bytes still to copy in this pass) runs out. Returns whether
    /// the file is dead afterwards. [`Self::copy_cost`] said it can be done.
    fn copy_forward(&self, no: u64, budget: &mut u64, report: &mut ReclaimReport) -> Result<bool> {
        let anchored = self.0.table().anchored_in(no);
        let mut rest = &anchored[..];
        while !rest.is_empty() && *budget > 0 {
            let (mut n, mut bytes) = (0, 0);
            while n < rest.len() && n < COPY_STEP_FILES && bytes < COPY_STEP_BYTES {
                if matches!(rest[n].1.loc, Location::Container(_)) {
                    bytes += rest[n].1.len;
                }
                n += 1;
            }
            let (step, later) = rest.split_at(n);
            rest = later;
            *budget = budget.saturating_sub(bytes);
            self.copy_step(no, step, report)?;
        }
        Ok(self.0.table().container_use(no).files == 0)
    }

    /// One step of [`Self::copy_forward`]: the files of `step` still anchored
    /// in `no` (not deleted or exported since), copied forward.
    fn copy_step(&self, no: u64, step: &[(Key, Entry)], report: &mut ReclaimReport) -> Result<()> {
        {
            // The copies and the table's updates in log order (no delete or
            // export of these files in between); the table's lock only
            // around the in-memory parts, so readers never wait for the
            // copies' reads and appends.
            let _order = self.0.log_order();
            let anchored: Vec<(Key, Entry)> = {
                let table = self.0.table();
                step.iter()
                    .filter_map(|(_, e)| table.by_id(e.id))
                    .filter(|(_, e)| e.anchors.contains(&no))
                    .cloned()
                    .collect()
            };
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
                            Location::Container(_) | Location::Placed { .. } => {
                                unreachable!("grouped by segment")
                            }
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Container files of `size` bytes (in KB) with `live` of them live.
    fn files(sizes_live: &[(u64, u64)]) -> Vec<Judged> {
        sizes_live
            .iter()
            .enumerate()
            .map(|(no, &(size, live))| Judged {
                no: no as u64,
                size: size * 1000,
                used: FileUse {
                    files: usize::from(live > 0),
                    bytes: live * 1000,
                },
                copy: live * 1000,
            })
            .collect()
    }

    #[test]
    fn the_prefix_removed_frees_the_most_net_of_its_copies() {
        let cases: &[(&[(u64, u64)], usize)] = &[
            (&[], 0),
            // Dead files go; a mostly dead one is copied forward; one after it
            // that is mostly live is not.
            (&[(1000, 0), (1000, 0)], 2),
            (&[(1000, 400)], 1),
            (&[(1000, 400), (1000, 900)], 1),
            (&[(1000, 600)], 0),
            // A mostly live file goes with the dead ones behind it…
            (&[(1000, 600), (1000, 0)], 2),
            // …and with mostly dead ones further on (a run).
            (&[(1000, 900), (1000, 700), (1000, 100), (1000, 100)], 4),
            // Not when the copies would write more than is freed.
            (&[(1000, 900), (1000, 900), (1000, 0)], 0),
            // The net gain decides where the prefix ends: not at a file whose
            // copies cost more than its dead bytes bring.
            (&[(1000, 0), (1000, 990)], 1),
        ];
        for (sizes, want) in cases {
            assert_eq!(prefix_to_remove(&files(sizes)), *want, "{sizes:?}");
        }
    }

    #[test]
    fn whole_file_copies_count_against_the_prefix() {
        // 400 KB live here, but the file spans into the next container file:
        // copying it writes 900 KB, more than the 600 KB dead.
        let mut judged = files(&[(1000, 400)]);
        assert_eq!(prefix_to_remove(&judged), 1);
        judged[0].copy = 900_000;
        assert_eq!(prefix_to_remove(&judged), 0);
    }
}
