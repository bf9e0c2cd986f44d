//! Policy, in one place: when to fsync and which access advice to give the kernel.
//! Public enums; the state they drive is private to the layers that apply them.

/// When the container calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// On every `sync_directory` and `atomic_write` (what tantivy's contract asks).
    /// Concurrent requests share one `fdatasync` (group commit).
    #[default]
    OnRequest,
    /// Only when a commit point is written (`meta.json`): `IndexWriter::commit` is
    /// durable when it returns, with one `fdatasync` instead of tantivy's eight or so.
    /// Safe for tantivy because recovery always restores a *prefix* of the log: if
    /// `meta.json` survives a crash, so does everything written before it. What is
    /// given up: `sync_directory` and atomic writes of other files (`.managed.json`)
    /// are ordered but not durable on return.
    OnCommit,
    /// On a timer: the container's writer thread calls `fdatasync` when this long
    /// has passed since data was appended that is not durable yet. No request
    /// waits for a disk flush; a crash loses at most about this much of the most
    /// recent writes, and recovery still restores a prefix of the log (an index
    /// comes back at an earlier commit, never a torn one). Under
    /// [`WriteMode::Inline`], which has no writer thread, the timer is checked
    /// at each append.
    Interval(std::time::Duration),
    /// Never. Data reaches the disk when the kernel writes it back: a power
    /// loss may lose any of it (a killed process loses nothing the kernel
    /// took). For tests and throw-away indexes only. After a power loss the
    /// kernel may have written back later pages of the log and not earlier
    /// ones: within one container file that is cut as a torn tail, but a page
    /// lost in a container file that a newer one follows is reported as damage
    /// (the newer file's head says the older one was complete, as it is under
    /// every other policy) and the folder is left as it is: throw it away.
    Never,
}

/// The file an `IndexWriter::commit` writes last, making the commit visible.
pub(crate) const COMMIT_FILE: &str = "meta.json";

impl SyncPolicy {
    /// Whether `sync_directory` calls `fdatasync`.
    pub(crate) fn on_sync_directory(self) -> bool {
        self == SyncPolicy::OnRequest
    }

    /// Whether an atomic write of `path` is made durable before it returns.
    pub(crate) fn on_atomic_write(self, path: &str) -> bool {
        match self {
            SyncPolicy::OnRequest => true,
            SyncPolicy::OnCommit => path == COMMIT_FILE,
            SyncPolicy::Interval(_) | SyncPolicy::Never => false,
        }
    }

    /// The timer of [`SyncPolicy::Interval`].
    pub(crate) fn interval(self) -> Option<std::time::Duration> {
        match self {
            SyncPolicy::Interval(d) => Some(d),
            _ => None,
        }
    }
}

/// How appended records reach the container file.
///
/// In the two background modes, `append` copies records into a page-aligned
/// buffer and one writer thread per container writes full buffers with large
/// sequential writes. Memory in flight is bounded (see
/// [`crate::Builder::write_queue`]): a producer that outruns the disk waits
/// for a free buffer, it never grows memory. Records not on disk yet are read
/// from those buffers (read-your-writes). A sync request hands over the partly
/// filled buffer and waits for it. Measured with `cargo bench --bench container`
/// and `examples/compare_mmap.rs`; see the README for which won.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WriteMode {
    /// Direct I/O (`O_DIRECT`): buffers bypass the page cache. A partly filled
    /// last block is rewritten (same bytes) by the next write. Falls back to
    /// [`WriteMode::Buffered`] where the file system refuses `O_DIRECT`. What
    /// it costs: fresh segments are not in the page cache when tantivy's
    /// merges and the export read them, so they are read back from disk — in
    /// `examples/compare_mmap.rs` (2026-11-28) 739 MB read for 1,021 MB
    /// written, where `Buffered` read under 1 MB at the same docs/s. For a
    /// disk whose page cache must stay free for other work.
    Direct,
    /// Buffered writes with smoothed write-back: every few MiB the writer starts
    /// write-back of what it just wrote (`sync_file_range`), so dirty pages never
    /// pile up into a write-back storm. The written pages stay in the page cache
    /// (as the files `MmapDirectory` writes do) until the file they hold is
    /// deleted or exported, when they are dropped from it: tantivy's merges and
    /// the export read fresh segments from memory instead of reading them back
    /// from disk. The default (see [`WriteMode::Direct`] for the measurement).
    #[default]
    Buffered,
    /// No writer thread: each `append` writes its records (`pwrite`) before it
    /// returns. Deterministic; what the crash tests on simulated storage use.
    Inline,
}

/// Access advice for a mapped range (`madvise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Advice {
    /// Give no advice at all.
    None,
    /// `MADV_NORMAL`: the kernel's default read-ahead.
    Normal,
    /// `MADV_RANDOM`: no read-ahead (point lookups).
    Random,
    /// `MADV_SEQUENTIAL`: aggressive read-ahead, pages dropped soon after use.
    Sequential,
    /// `MADV_WILLNEED`: read the range in now.
    WillNeed,
    /// Read exactly what tantivy asks for: no read-around on a page fault
    /// (`MADV_RANDOM`); instead each read asks the kernel, in one request, for
    /// the 64 KiB blocks of the file it touches that were not asked for before
    /// (`MADV_WILLNEED`), and a read of [`FETCH_WHOLE`] bytes or more for its
    /// whole range every time. Without it a cold page fault reads the device's
    /// whole read-ahead window around the page (`read_ahead_kb`: 128 KiB to
    /// several MiB). Applies to files of segment files with block checksums
    /// (version 2); elsewhere it is [`Advice::None`].
    Blocks,
}

/// Under [`Advice::Blocks`], a read at least this long is read ahead whole each
/// time (its pages may have been evicted since it was first read).
pub const FETCH_WHOLE: u64 = 256 << 10;

impl Advice {
    pub(crate) fn to_libc(self) -> Option<libc::c_int> {
        match self {
            Advice::None => None,
            Advice::Normal => Some(libc::MADV_NORMAL),
            Advice::Random => Some(libc::MADV_RANDOM),
            Advice::Sequential => Some(libc::MADV_SEQUENTIAL),
            Advice::WillNeed => Some(libc::MADV_WILLNEED),
            Advice::Blocks => Some(libc::MADV_RANDOM),
        }
    }
}

/// When committed segments move out of the container into segment files of
/// their own, and when dead space is reclaimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportPolicy {
    /// Only when [`crate::JockyDirectory::export_committed`] and
    /// [`crate::JockyDirectory::reclaim`] are called.
    Manual,
    /// After each commit (`meta.json` written), a background pass (on the
    /// process-wide maintenance threads, two for all open indexes) exports
    /// every committed segment of at least `min_segment_bytes` and then
    /// reclaims dead space. Smaller segments stay in the container,
    /// where they cost no file descriptor and no mapping of their own.
    OnCommit {
        /// Segments smaller than this stay in the container.
        min_segment_bytes: u64,
    },
    /// Reclaims dead space after each commit, but exports only once no commit
    /// has come for `quiet`: during a bulk load the merge policy keeps merging
    /// fresh segments away, and exporting each of them first would write most
    /// bytes three times instead of twice. The default.
    WhenQuiet {
        /// Segments smaller than this stay in the container.
        min_segment_bytes: u64,
        /// How long without a commit counts as quiet: at least this, or
        /// twice the median of the last gaps between commits if that is
        /// longer (at most ten times this), so that a bulk load committing
        /// every few seconds does not export between two of its commits. A
        /// tenant with a file being written (indexing or merging) is not
        /// quiet either: its export waits for the next quiet period.
        quiet: std::time::Duration,
    },
}

impl Default for ExportPolicy {
    fn default() -> Self {
        ExportPolicy::WhenQuiet {
            min_segment_bytes: DEFAULT_MIN_EXPORT_BYTES,
            quiet: DEFAULT_QUIET,
        }
    }
}

/// How long the default export policy waits after the last commit.
pub const DEFAULT_QUIET: std::time::Duration = std::time::Duration::from_secs(2);

/// Segments below this size stay in the container by default.
pub const DEFAULT_MIN_EXPORT_BYTES: u64 = 4 << 20;

/// Which advice each file type of an exported segment gets, applied to that
/// file's range of the segment file's mapping.
///
/// Files still in the container get no per-type advice (their container
/// file's mapping is shared by every file in it); instead a file of at most
/// [`FETCH_WHOLE`] bytes is read ahead whole (`MADV_WILLNEED`, its record
/// headers included) when a handle on it opens, so that a cold first read
/// does not fault in the device's read-around window of the container — other
/// tenants' files. On a 10,000-tenant store opened cold, a tenant's first
/// query went from 3.8 to 1.2 ms (`examples/store_open.rs`, 2026-11-28).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvicePolicy {
    by_ext: Vec<(String, Advice)>,
    other: Advice,
}

impl AdvicePolicy {
    /// The same advice for every file type.
    pub fn uniform(advice: Advice) -> AdvicePolicy {
        AdvicePolicy {
            by_ext: Vec::new(),
            other: advice,
        }
    }

    /// Overrides the advice for one file type (the extension, without the dot:
    /// `"store"`, `"idx"`, `"term"`, `"pos"`, `"fast"`, `"fieldnorm"`, `"del"`).
    pub fn with(mut self, ext: &str, advice: Advice) -> AdvicePolicy {
        let ext = ext.trim_start_matches('.');
        self.by_ext.retain(|(e, _)| e != ext);
        self.by_ext.push((ext.to_string(), advice));
        self
    }

    /// The advice for the file at `path` (by its last extension).
    pub fn advice_for(&self, path: &str) -> Advice {
        let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        self.by_ext
            .iter()
            .find(|(e, _)| e == ext)
            .map(|(_, a)| *a)
            .unwrap_or(self.other)
    }
}

impl Default for AdvicePolicy {
    /// [`Advice::Blocks`] — each read fetches the 64 KiB blocks it touches,
    /// nothing around them — except for the small files every query walks
    /// (`.term`, `.fast`, `.fieldnorm`), which keep the kernel's read-around
    /// ([`Advice::None`]) and so come in whole after a few faults. Chosen by
    /// measurement (`examples/advice.rs` and `examples/open_cost.rs`, README,
    /// 2026-11-28): cold, against no advice anywhere (the default before), it
    /// read 0.41x the bytes with lower median and p99 latencies, and a cold open
    /// plus first query took a fraction of the time; `Blocks` everywhere read
    /// 0.16x but made the median cold query slower (each dictionary block its
    /// own request); `Random` everywhere was slower still.
    fn default() -> Self {
        AdvicePolicy::uniform(Advice::Blocks)
            .with("term", Advice::None)
            .with("fast", Advice::None)
            .with("fieldnorm", Advice::None)
    }
}

/// From which container files the export may copy a segment's bytes inside
/// the kernel (`copy_file_range`: no copy through the process; on XFS and
/// btrfs the page-aligned chunks of a file become shared blocks, written
/// once). Bytes it cannot copy that way are written from the mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportCopy {
    /// Only from the container file being appended to, whose descriptor is
    /// open anyway: the descriptor bound stays 2, plus 1 while a segment file
    /// is written. The default. (The container starts a new file at each
    /// snapshot, so a bulk load's final segments are mostly in older files.)
    #[default]
    ActiveFile,
    /// From any container file, opening an older one for the copy: 2, plus 2
    /// while a segment file is written. What a file system with reflinks needs
    /// for the export to write almost nothing (README, "Reflinks").
    AnyFile,
}

/// When the bytes of an exported file are checked against the CRC its segment
/// file's table holds (container records are checked when the log is replayed
/// on open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyPolicy {
    /// Before the first read of each exported file in this process is served
    /// (tantivy opens a file once per segment reader): a damaged file is
    /// never handed to tantivy; its reads fail with an error naming the
    /// segment file and the offset, from then on. Costs one pass over each
    /// exported file the process opens (see the README's figures).
    #[default]
    OnFirstRead,
    /// Only on request ([`crate::JockyDirectory::verify_segments`],
    /// [`crate::verify::verify`]).
    OnRequest,
}

/// A background pass writes a snapshot of the file table (so that an open
/// replays only what came after it) once the log an open would replay has
/// grown past this many bytes, or past four times the last snapshot's size,
/// whichever is more: snapshots then add at most a quarter to what is written,
/// and an open after a crash replays at most this much.
pub(crate) const SNAPSHOT_AFTER: u64 = 64 << 20;

/// A clean close writes a snapshot when the next open would otherwise replay
/// at least this many bytes.
pub(crate) const SNAPSHOT_ON_CLOSE_AFTER: u64 = 1 << 20;

/// The replay debt past which a background pass writes a snapshot, given the
/// size of the last one.
pub(crate) fn snapshot_after(last_image_bytes: u64) -> u64 {
    SNAPSHOT_AFTER.max(last_image_bytes.saturating_mul(4))
}
