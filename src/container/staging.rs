//! The container's side of the write-behind stage: filling the stage, handing
//! it to the writer thread ([`super::writer`]), waiting for it, reading bytes
//! that are not in the file yet, and releasing dead bytes from memory. Every
//! method here runs under the lock its caller holds (`active` where it takes
//! `&mut Active`); the lock order is in the module docs of [`super`].

use std::collections::BTreeMap;

use super::writer::{align_down, Buf, Stage};
use super::{Active, Container, Extent};
use crate::error::{Error, Result};
use crate::format::file_header::container_file_name;
use crate::io::ReadView;
use crate::policy::WriteMode;
use crate::sync::lock;

impl Container {
    /// Waits until the writer thread has everything up to `pos` in its file.
    pub(super) fn wait_written(&self, pos: u64) -> Result<()> {
        self.writer
            .shared
            .wait_written(pos)
            .map_err(|msg| self.writer_failed(msg))
    }

    /// The writer thread failed: the container is poisoned from now on.
    pub(super) fn writer_failed(&self, msg: String) -> Error {
        lock(&self.poison).get_or_insert(msg.clone());
        Error::Poisoned(msg)
    }

    pub(super) fn take_buf(&self) -> Result<Buf> {
        self.writer
            .take_buf()
            .map_err(|msg| self.writer_failed(msg))
    }

    /// Gives the active file a fresh stage (after open or rotation): in direct
    /// mode it starts with the file's partly filled last block.
    pub(super) fn new_stage(&self, a: &mut Active) -> Result<()> {
        a.stage = None;
        a.direct = false;
        if self.opts.write_mode == WriteMode::Inline {
            return Ok(());
        }
        let Some(file) = a.file.clone() else {
            return Err(Error::Poisoned("no active container file".into()));
        };
        let path = || self.root.join(container_file_name(a.file_no));
        if self.opts.write_mode == WriteMode::Direct {
            a.direct = file.set_direct().map_err(|e| Error::io(path(), e))?;
            if !a.direct {
                log::info!(
                    "direct I/O refused for {}: buffered writes",
                    path().display()
                );
            }
        }
        let base = if a.direct {
            align_down(a.offset as usize) as u64
        } else {
            a.offset
        };
        let mut buf = self.take_buf()?;
        if base < a.offset {
            let files = crate::sync::read(&self.files);
            let f = files
                .get(&a.file_no)
                .ok_or_else(|| Error::Poisoned("active container file not mapped".into()))?;
            let head = f
                .view
                .read(base..a.offset)
                .map_err(|e| Error::io(path(), e))?;
            buf.push(head.as_slice());
        }
        a.stage = Some(Stage {
            written: buf.len(),
            buf,
            base,
            pooled: true,
        });
        Ok(())
    }

    /// Hands the stage's new bytes to the writer thread. Returns the part of
    /// the stage the next one must start with (direct mode: the partly filled
    /// last block) and where that starts; the stage is gone afterwards.
    pub(super) fn submit_stage(&self, a: &mut Active) -> Result<(Vec<u8>, u64)> {
        let Some(stage) = a.stage.take() else {
            return Err(Error::Poisoned("no write stage".into()));
        };
        let Some(file) = a.file.clone() else {
            return Err(Error::Poisoned("no active container file".into()));
        };
        let len = stage.buf.len();
        let carry_from = if a.direct { align_down(len) } else { len };
        let carry = stage.buf.bytes()[carry_from..].to_vec();
        let next_base = stage.base + carry_from as u64;
        if stage.has_new_bytes() {
            self.writer.submit(
                file,
                a.file_no,
                stage.base,
                stage.buf,
                a.direct,
                stage.pooled,
            );
        } else {
            self.writer.give_back(stage.buf, stage.pooled);
        }
        Ok((carry, next_base))
    }

    /// Hands the stage over and starts the next one, with room for `need` more
    /// bytes (a one-off buffer if they exceed the pool's buffer size).
    pub(super) fn hand_over(&self, a: &mut Active, need: usize) -> Result<()> {
        let (carry, base) = self.submit_stage(a)?;
        let (mut buf, pooled) = if carry.len() + need > self.writer.buf_size() {
            let buf = self
                .writer
                .one_off(carry.len() + need)
                .map_err(|msg| self.writer_failed(msg))?;
            (buf, false)
        } else {
            (self.take_buf()?, true)
        };
        buf.push(&carry);
        a.stage = Some(Stage {
            written: carry.len(),
            buf,
            base,
            pooled,
        });
        Ok(())
    }

    /// Puts `bytes` (records starting at the write position) in the stage.
    pub(super) fn stage_bytes(&self, a: &mut Active, bytes: &[u8]) -> Result<()> {
        let fits = a
            .stage
            .as_ref()
            .is_some_and(|s| s.buf.len() + bytes.len() <= s.buf.capacity());
        if !fits {
            self.hand_over(a, bytes.len())?;
        }
        let stage = a.stage.as_mut().expect("hand_over leaves a stage");
        debug_assert_eq!(stage.end(), a.offset);
        stage.buf.push(bytes);
        if stage.buf.len() == stage.buf.capacity() {
            self.hand_over(a, 0)?;
        }
        Ok(())
    }

    /// A sync request the policy does not make wait for the disk. Under
    /// `SyncPolicy::Interval` the stage goes to the writer thread now, so that
    /// the next timed `fdatasync` covers it.
    pub fn sync_deferred(&self) -> Result<()> {
        if self.opts.sync.interval().is_none() {
            return Ok(());
        }
        self.check_poison()?;
        self.flush_stage(&mut lock(&self.active))
    }

    /// Writes the stage's new bytes from the calling thread, if that is safe
    /// and saves a hop: buffered mode, and nothing in flight (so nothing the
    /// writer thread has yet to write comes before them). A sync round calls
    /// this instead of handing the stage over and waiting for the writer
    /// thread to be scheduled (about 50 µs per sync on an idle machine and
    /// 270 µs with 64 committing threads on 2 cores, `examples/tenant_threads.rs`).
    /// The stage keeps its buffer and goes on after the written bytes.
    /// Returns whether it wrote.
    pub(super) fn write_stage_here(&self, a: &mut Active) -> Result<bool> {
        if a.direct || self.opts.write_mode != WriteMode::Buffered {
            return Ok(false);
        }
        let Some(stage) = a.stage.as_mut() else {
            return Ok(false);
        };
        // A one-off buffer (an append larger than a pool buffer) goes to the
        // writer thread, which accounts for it when it is written.
        if !stage.pooled || !stage.has_new_bytes() {
            return Ok(false);
        }
        let Some(file) = a.file.clone() else {
            return Err(Error::Poisoned("no active container file".into()));
        };
        let from = stage.written;
        let at = stage.base + from as u64;
        let end = stage.end();
        match self
            .writer
            .write_now(&*file, a.file_no, at, &stage.buf.bytes()[from..])
        {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(msg) => return Err(self.writer_failed(msg)),
        }
        stage.buf.clear();
        stage.base = end;
        stage.written = 0;
        Ok(true)
    }

    /// Hands the stage to the writer thread if it holds bytes not handed over
    /// yet (a sync needs them in the file), without waiting.
    pub(super) fn flush_stage(&self, a: &mut Active) -> Result<()> {
        if a.stage.as_ref().is_some_and(|s| s.has_new_bytes()) {
            self.hand_over(a, 0)?;
        }
        Ok(())
    }

    /// Calls `f` with the mapping and the range of each of `extents` that is
    /// in its file already (bytes still staged or in flight have no pages).
    fn each_written(&self, extents: &[Extent], mut f: impl FnMut(&dyn ReadView, &Extent)) {
        let files = crate::sync::read(&self.files);
        for x in extents {
            if !self.writer.shared.is_written(x.file_no, x.offset + x.len) {
                continue;
            }
            if let Some(m) = files.get(&x.file_no) {
                f(&*m.view, x);
            }
        }
    }

    /// Drops the pages of `extents` (a deleted or exported file's bytes) from
    /// memory: from this process's mapping (see [`ReadView::release`]) and,
    /// since buffered writes leave what they wrote in the page cache, from the
    /// page cache too (`POSIX_FADV_DONTNEED` through a descriptor opened for
    /// the call: sealed container files keep none). Pages still dirty stay
    /// until they are written back.
    pub fn release(&self, extents: &[Extent]) {
        let mut cached: BTreeMap<u64, Vec<std::ops::Range<u64>>> = BTreeMap::new();
        self.each_written(extents, |view, x| {
            view.release(x.offset..x.offset + x.len);
            cached
                .entry(x.file_no)
                .or_default()
                .push(x.offset..x.offset + x.len);
        });
        if self.opts.write_mode == WriteMode::Direct {
            // Direct writes leave nothing cached; what reads brought in was
            // mapped, and the mapping's release took it. (Where the file
            // system refused direct I/O, writes are buffered and their pages
            // stay until memory is needed.)
            return;
        }
        for (no, ranges) in cached {
            match self.storage.open(&container_file_name(no)) {
                Ok(file) => ranges.into_iter().for_each(|r| file.forget_cached(r)),
                Err(e) => log::debug!("release: cannot open container file {no}: {e}"),
            }
        }
    }

    /// Reads `extents` ahead (`MADV_WILLNEED`; nobody waits), each with the
    /// record header just before it (what the first-read check of a file in a
    /// container file an open did not replay reads first). A page fault on a
    /// cold container mapping reads the device's whole read-around window,
    /// and in a container that window holds other files: a fault on a page
    /// already in flight or cached reads nothing more.
    pub fn prefetch(&self, extents: &[Extent]) {
        const DATA_HEADER: u64 = crate::format::record::DATA_BYTES_AT as u64;
        self.each_written(extents, |view, x| {
            view.advise(
                x.offset.saturating_sub(DATA_HEADER)..x.offset + x.len,
                crate::policy::Advice::WillNeed,
            )
        });
    }

    /// Takes the pages of `extents` out of this process's RSS and, where no
    /// other process maps them, out of the page cache (`MADV_PAGEOUT`; see
    /// [`ReadView::release`]). No descriptor is opened: only pages this
    /// process has mapped go.
    pub fn page_out(&self, extents: &[Extent]) {
        self.each_written(extents, |view, x| view.release(x.offset..x.offset + x.len));
    }

    /// A copy of the bytes of `extent` while they are not in the file yet
    /// (in flight to the writer thread, or still in the stage); `None` once
    /// they are.
    pub(super) fn read_unwritten(&self, extent: Extent) -> std::io::Result<Option<Vec<u8>>> {
        let (no, off, len) = (extent.file_no, extent.offset, extent.len);
        loop {
            match self.writer.shared.lookup(no, off, len) {
                Ok(found) => return Ok(found),
                Err(()) => {
                    let a = lock(&self.active);
                    if a.file_no == no {
                        if let Some(bytes) = a.stage.as_ref().and_then(|s| s.copy(off, len)) {
                            return Ok(Some(bytes));
                        }
                    }
                    // Bytes never appended (a damaged table names a place past
                    // the log's end) will never be written: an error, not a
                    // wait (a fuzzed folder spun here forever).
                    let appended = a.file_no > no || (a.file_no == no && off + len <= a.offset);
                    if !appended && !self.writer.shared.is_written(no, off + len) {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "container file {no}: bytes {off}..{} lie past what was appended (damaged)",
                                off + len
                            ),
                        ));
                    }
                }
            }
            // Neither written, in flight nor staged: moved on between the two
            // looks (the next look finds it written), unless writing failed.
            if let Some(msg) = self.writer.shared.error() {
                return Err(std::io::Error::other(format!(
                    "container file {no} lost bytes {off}..{}: {msg}",
                    off + len
                )));
            }
        }
    }
}
