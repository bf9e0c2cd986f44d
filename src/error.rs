//! Errors. Inside the crate one `#[non_exhaustive]` enum, [`Error`], with enough
//! context to act on (which file, which offset); at the tantivy trait boundary it is
//! turned into tantivy's per-operation errors.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in jocky.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder it was about.
        path: PathBuf,
        /// The error from the OS.
        source: io::Error,
    },
    /// A container or segment file holds bytes that do not decode.
    #[error("corrupted container {file} at offset {offset}: {reason}")]
    Corrupted {
        /// The file.
        file: PathBuf,
        /// Where in it.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A record or header failed its checksum.
    #[error("checksum mismatch in {file} at offset {offset}: expected {expected:#010x}, got {got:#010x}")]
    ChecksumMismatch {
        /// The file.
        file: PathBuf,
        /// Where in it.
        offset: u64,
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum of the bytes read.
        got: u32,
    },
    /// A file was written in a format version this build does not read.
    #[error("unsupported format version in {file}: expected {expected}, got {got}")]
    Version {
        /// The file.
        file: PathBuf,
        /// The version this build reads.
        expected: u32,
        /// The version found in the file.
        got: u32,
    },
    /// Another process holds the folder's writer lock (within one process, opens
    /// of a folder share one engine; only test storage can see this twice).
    #[error("{path} is open for writing in another process (one writer per folder); to read it beside that process, use JockyDirectory::open_read_only or Store::open_read_only")]
    Locked {
        /// The folder.
        path: PathBuf,
    },
    /// A write through a directory of a store tenant that was removed after the
    /// directory was obtained (a writer that outlived the removal, such as an
    /// `IndexWriter` dropped without `wait_merging_threads`). Nothing was
    /// written; get a new directory with `Store::directory`.
    #[error("tenant {tenant:?} was removed after this directory was obtained; the write to {path:?} was refused (get a new directory from the store)")]
    TenantRemoved {
        /// The tenant.
        tenant: String,
        /// The file the write was for.
        path: String,
    },
    /// The folder holds files jocky did not write.
    #[error("{path} holds files that are not part of a jocky container (for example {example:?}); refusing to touch them")]
    ForeignData {
        /// The folder.
        path: PathBuf,
        /// One of those files.
        example: String,
    },
    /// The folder is missing a file the log needs, or holds one the log cannot
    /// account for. Open changed nothing in the folder.
    #[error(
        "incomplete or inconsistent folder: {path} {reason}; nothing in the folder was changed"
    )]
    Incomplete {
        /// The missing or unaccounted file (or the folder).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A write (or export, reclamation) through a directory or store opened
    /// read-only.
    #[error("{path} is open read-only: writing, exporting and reclaiming are refused")]
    ReadOnly {
        /// The folder.
        path: PathBuf,
    },
    /// A tantivy file path jocky cannot store.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A tenant name [`crate::Store`] refuses.
    #[error("invalid tenant name {name:?}: {reason}")]
    InvalidTenant {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An earlier write or fsync failed, so every later write and sync of the
    /// container fails; what was durable stays readable.
    #[error("the container refuses writes after an earlier failed write or fsync: {0}")]
    Poisoned(String),
    /// A write does not fit in one container record (atomic writes) or one
    /// container file (appended records).
    #[error("{0}")]
    TooLarge(String),
    /// A [`crate::Builder`] option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

/// `Result` with jocky's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds the error for a record or header that failed to decode at `offset`.
    pub(crate) fn decode(file: impl Into<PathBuf>, offset: u64, e: DecodeError) -> Error {
        let file = file.into();
        match e {
            DecodeError::ChecksumMismatch { expected, got } => Error::ChecksumMismatch {
                file,
                offset,
                expected,
                got,
            },
            DecodeError::Version { expected, got } => Error::Version {
                file,
                expected,
                got,
            },
            other => Error::Corrupted {
                file,
                offset,
                reason: other.to_string(),
            },
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Io { source, .. } => source.kind(),
            Error::Corrupted { .. }
            | Error::ChecksumMismatch { .. }
            | Error::Version { .. }
            | Error::Incomplete { .. } => io::ErrorKind::InvalidData,
            Error::Locked { .. } => io::ErrorKind::WouldBlock,
            Error::TenantRemoved { .. } => io::ErrorKind::NotFound,
            Error::ReadOnly { .. } => io::ErrorKind::PermissionDenied,
            Error::InvalidPath { .. } | Error::InvalidOption(_) | Error::InvalidTenant { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::TooLarge(_) => io::ErrorKind::FileTooLarge,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Why bytes failed to decode; turned into an [`Error`] with file and offset by
/// the caller, which knows them.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated")]
    Truncated,
    #[error("bad magic")]
    BadMagic,
    #[error("unknown record kind {0}")]
    BadKind(u8),
    #[error("version {got}, expected {expected}")]
    Version { expected: u32, got: u32 },
    #[error("length {0} out of bounds")]
    LengthOutOfBounds(u64),
    #[error("checksum mismatch: expected {expected:#010x}, got {got:#010x}")]
    ChecksumMismatch { expected: u32, got: u32 },
    #[error("name is not valid UTF-8")]
    BadName,
    #[error("sequence number {got}, expected {expected}")]
    Sequence { expected: u64, got: u64 },
}
