//! Writing a virtual file: bytes gather in a per-file buffer that grows from
//! `min_chunk` to `max_chunk` and go to the container as one `Data` record each
//! time it fills, so a file is a few large extents, not thousands of 8 KiB pieces.
//! `terminate` appends the last chunk and the `Finish` record in one write.
//! Memory per open writer is bounded by `max_chunk`: its buffer is a
//! [`ChunkBuf`] (an anonymous mapping of its current chunk size, only the
//! written pages backed, recycled process-wide), given back when the file is
//! finished.
//! The extents of a file of several chunks start on container pages (see
//! `Container::append_aligned`), so the file can be mapped as one range.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tantivy::directory::{AntiCallToken, TerminatingWrite};

use super::chunk::ChunkBuf;
use super::registry::Owner;
use crate::export::build::SegKey;

pub(crate) struct FileWriter {
    engine: Arc<Owner>,
    /// The namespace, counted as being written while this writer lives.
    ns: Arc<str>,
    id: u64,
    path: PathBuf,
    buf: ChunkBuf,
    chunk: usize,
    max_chunk: usize,
    /// Whether a file of several chunks gets page-aligned extents (every chunk
    /// but the last is then a whole number of pages).
    align: bool,
    written: u64,
    terminated: bool,
    /// The segment it is a file of, where segments are built in place.
    seg: Option<SegKey>,
    /// Its CRCs (whole and per block) as its bytes go by, for the segment
    /// file's table: an export in place then need not read them back.
    crcs: Option<crate::format::segment_file::BlockHasher>,
}

impl FileWriter {
    pub fn new(
        engine: Arc<Owner>,
        ns: Arc<str>,
        id: u64,
        path: PathBuf,
        min_chunk: usize,
        max_chunk: usize,
    ) -> FileWriter {
        engine.writer_opened(&ns);
        let seg = path.to_str().and_then(|p| engine.segment_key(&ns, p));
        if let Some(key) = &seg {
            engine.builds().writer_opened(key);
        }
        FileWriter {
            engine,
            ns,
            id,
            path,
            buf: ChunkBuf::new(),
            chunk: min_chunk,
            max_chunk,
            align: (min_chunk as u64).is_multiple_of(crate::container::PAGE)
                && (max_chunk as u64).is_multiple_of(crate::container::PAGE),
            written: 0,
            terminated: false,
            crcs: seg.as_ref().map(|_| {
                crate::format::segment_file::BlockHasher::new(
                    crate::format::segment_file::BLOCK_LOG2,
                )
            }),
            seg,
        }
    }

    fn flush_chunk(&mut self, finish: bool) -> io::Result<()> {
        if let Some(h) = &mut self.crcs {
            h.update(self.buf.as_slice());
        }
        let len = self.buf.len() as u64;
        let finish_len = finish.then_some(self.written + len);
        self.engine
            .write_chunk_of(
                self.seg.as_ref(),
                self.id,
                self.written,
                self.buf.as_slice(),
                finish_len,
                self.align,
            )
            .map_err(|e| {
                let e = io::Error::from(e);
                io::Error::new(e.kind(), format!("writing {:?}: {e}", self.path))
            })?;
        self.written += len;
        if finish {
            self.buf.release();
        } else {
            self.buf.clear();
        }
        // Taken only by the last chunk: a tuple pattern would evaluate (and
        // take) the hasher on every chunk, leaving CRCs for one-chunk files only.
        if finish {
            if let (Some(key), Some(h)) = (&self.seg, self.crcs.take()) {
                self.engine.builds().record_crcs(key, self.id, h.finish());
            }
        }
        if self.chunk < self.max_chunk {
            self.chunk = (self.chunk * 2).min(self.max_chunk);
        }
        Ok(())
    }
}

impl Write for FileWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.terminated {
            return Err(io::Error::other(format!(
                "write to {:?} after terminate",
                self.path
            )));
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = self.buf.fill(data, self.chunk);
        if self.buf.len() >= self.chunk {
            self.flush_chunk(false)?;
        }
        Ok(n)
    }

    /// Buffered bytes stay buffered: a record per `flush` would fragment the file.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TerminatingWrite for FileWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        if self.terminated {
            return Ok(());
        }
        self.flush_chunk(true)?;
        self.terminated = true;
        Ok(())
    }
}

impl Drop for FileWriter {
    /// A writer dropped without `terminate` still hands its bytes to the container
    /// (readable in this process, as with `MmapDirectory`); the file was never
    /// finished, so recovery drops it after a restart.
    fn drop(&mut self) {
        if !self.terminated && !self.buf.is_empty() {
            if let Err(e) = self.flush_chunk(false) {
                log::warn!("dropping unterminated {:?}: {e}", self.path);
            }
        }
        if let Some(key) = &self.seg {
            self.engine.builds().file_closed(key, self.id);
            self.engine.builds().writer_closed(key);
        }
        self.engine.writer_closed(&self.ns);
    }
}
