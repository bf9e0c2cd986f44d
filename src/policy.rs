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
    /// Never. Data reaches the disk when the kernel writes it back: a crash or
    /// power loss may lose any of it. For tests and throw-away indexes only.
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
            SyncPolicy::Never => false,
        }
    }
}

/// Access advice for a mapped range (`madvise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Advice {
    /// Give no advice at all.
    None,
    Normal,
    Random,
    Sequential,
    WillNeed,
}

impl Advice {
    pub(crate) fn to_libc(self) -> Option<libc::c_int> {
        match self {
            Advice::None => None,
            Advice::Normal => Some(libc::MADV_NORMAL),
            Advice::Random => Some(libc::MADV_RANDOM),
            Advice::Sequential => Some(libc::MADV_SEQUENTIAL),
            Advice::WillNeed => Some(libc::MADV_WILLNEED),
        }
    }
}
