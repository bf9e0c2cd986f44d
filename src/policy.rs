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
    /// Never. Data reaches the disk when the kernel writes it back: a crash or
    /// power loss may lose any of it. For tests and throw-away indexes only.
    Never,
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
