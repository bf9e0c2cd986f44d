//! Looking inside a folder without changing it: the reports behind the `jocky`
//! command's `inspect`, `ls` and `dump`. Every function here opens the folder
//! read-only (see [`crate::JockyDirectory::open_read_only`]), so it works on the
//! folder of a running writer process, and never writes, removes or locks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::container::{Container, ContainerOptions};
use crate::directory::Owner;
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::format::file_header::container_file_name;
use crate::format::record::{decode_export_entries, decode_file_numbers, Payload};
use crate::format::segment_file::segment_file_name;
use crate::io::fs::FsStorage;
use crate::io::Storage;
use crate::table::Location;

/// What a folder holds: [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    /// The folder.
    pub path: PathBuf,
    /// Format version of the newest container file.
    pub format_version: u32,
    /// Container files, oldest first.
    pub container_files: Vec<ContainerFileInfo>,
    /// Segment files that serve live files.
    pub segment_files: Vec<SegmentFileInfo>,
    /// Every live virtual file, by tenant and path.
    pub virtual_files: Vec<VirtualFileInfo>,
    /// Every tenant ("" for a plain index) with its files.
    pub tenants: Vec<TenantInfo>,
}

/// One container file (`jocky-NNNNNNNNNN.log`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerFileInfo {
    /// Its number.
    pub number: u64,
    /// Its file name.
    pub name: String,
    /// Bytes of records in it.
    pub bytes: u64,
    /// Bytes of live files' contents in it.
    pub live_bytes: u64,
    /// `bytes - live_bytes`: what reclamation can win back.
    pub dead_bytes: u64,
}

/// One segment file (`jocky-seg-NNNNNNNNNN.seg`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentFileInfo {
    /// Its number.
    pub number: u64,
    /// Its file name.
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Live files served from it.
    pub live_files: usize,
    /// Their bytes.
    pub live_bytes: u64,
}

/// One live virtual file (a file tantivy wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VirtualFileInfo {
    /// Its tenant ("" for a plain index).
    pub tenant: String,
    /// Its path inside the index.
    pub path: String,
    /// Its length in bytes.
    pub len: u64,
    /// Where its bytes are: `None` in container files, or the segment file's number.
    pub segment_file: Option<u64>,
    /// `false` while it is still being written.
    pub complete: bool,
}

/// One tenant of a store (or the plain index, named "").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantInfo {
    /// Its name.
    pub name: String,
    /// Its live files.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Opens the folder at `path` read-only: no lock, no change, no folder created.
pub(crate) fn open_engine(path: &Path) -> Result<Arc<Owner>> {
    let storage = FsStorage::open_existing(path).map_err(|e| Error::io(path, e))?;
    let engine = Engine::open_read_only(
        Arc::new(storage),
        path,
        ContainerOptions::read_only(),
        EngineOptions::default(),
    )?;
    Ok(Owner::unregistered(engine))
}

/// What the folder at `path` holds: container files (live and dead bytes),
/// segment files, virtual files and tenants. Read-only; works beside a writer.
pub fn inspect(path: impl AsRef<Path>) -> Result<Inspection> {
    let path = path.as_ref();
    let engine = open_engine(path)?;
    // Inspection looks at every namespace.
    engine.ensure_all()?;
    Ok(inspect_engine(path, &engine))
}

pub(crate) fn inspect_engine(path: &Path, engine: &Engine) -> Inspection {
    let table = engine.table();
    let container_files = engine
        .container()
        .file_sizes()
        .into_iter()
        .map(|(no, bytes)| {
            let live = table.container_use(no).bytes.min(bytes);
            ContainerFileInfo {
                number: no,
                name: container_file_name(no),
                bytes,
                live_bytes: live,
                dead_bytes: bytes - live,
            }
        })
        .collect();
    let mut virtual_files = Vec::new();
    let mut tenants = Vec::new();
    for ns in table.namespaces() {
        let mut info = TenantInfo {
            name: ns.clone(),
            files: 0,
            bytes: 0,
        };
        for p in table.paths(&ns) {
            let Some(e) = table.get(&ns, &p) else {
                continue;
            };
            info.files += 1;
            info.bytes += e.len;
            virtual_files.push(VirtualFileInfo {
                tenant: ns.clone(),
                path: p,
                len: e.len,
                segment_file: match e.loc {
                    Location::Segment { export_no, .. } | Location::Placed { export_no, .. } => {
                        Some(export_no)
                    }
                    Location::Container(_) => None,
                },
                complete: e.state != crate::table::FileState::Writing,
            });
        }
        tenants.push(info);
    }
    let segment_files = engine
        .segments()
        .sizes()
        .into_iter()
        .map(|(no, bytes)| {
            let served = virtual_files.iter().filter(|f| f.segment_file == Some(no));
            SegmentFileInfo {
                number: no,
                name: segment_file_name(no),
                bytes,
                live_files: served.clone().count(),
                live_bytes: served.map(|f| f.len).sum(),
            }
        })
        .collect();
    Inspection {
        path: path.to_path_buf(),
        format_version: engine.container().format_version(),
        container_files,
        segment_files,
        virtual_files,
        tenants,
    }
}

/// One record of the log, as [`dump`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogRecord {
    /// The container file holding it.
    pub file_no: u64,
    /// Where it starts in that file.
    pub offset: u64,
    /// Its sequence number.
    pub sequence: u64,
    /// Its kind (`Create`, `Data`, `Export`, ...).
    pub kind: &'static str,
    /// Its fields, for people (`file_id=3 tenant="" path="meta.json" len=812`).
    pub summary: String,
}

/// Calls `each` for every record of the log in the folder at `path`, in log
/// order (every record's checksum is verified on the way). Read-only.
pub fn dump(path: impl AsRef<Path>, mut each: impl FnMut(&LogRecord)) -> Result<()> {
    let path = path.as_ref();
    let storage: Arc<dyn Storage> =
        Arc::new(FsStorage::open_existing(path).map_err(|e| Error::io(path, e))?);
    let (_container, _, _): (Container, _, _) = Container::open(
        storage,
        path,
        ContainerOptions::read_only(),
        true,
        &mut |rec| {
            let (kind, summary) = describe(&rec.payload);
            each(&LogRecord {
                file_no: rec.file_no,
                offset: rec.offset,
                sequence: rec.sequence,
                kind,
                summary,
            });
            Ok(())
        },
    )?;
    Ok(())
}

/// A record's kind and fields, for people.
fn describe(p: &Payload<'_>) -> (&'static str, String) {
    match p {
        Payload::Create {
            file_id,
            namespace,
            path,
        } => (
            "Create",
            format!("file_id={file_id} tenant={namespace:?} path={path:?}"),
        ),
        Payload::Data {
            file_id,
            file_offset,
            bytes,
        } => (
            "Data",
            format!(
                "file_id={file_id} file_offset={file_offset} len={}",
                bytes.len()
            ),
        ),
        Payload::Finish { file_id, len } => ("Finish", format!("file_id={file_id} len={len}")),
        Payload::Delete { file_id } => ("Delete", format!("file_id={file_id}")),
        Payload::AtomicWrite {
            file_id,
            namespace,
            path,
            bytes,
        } => (
            "AtomicWrite",
            format!(
                "file_id={file_id} tenant={namespace:?} path={path:?} len={}",
                bytes.len()
            ),
        ),
        Payload::Padding { len } => ("Padding", format!("len={len}")),
        Payload::Export {
            export_no,
            namespace,
            entries,
        } => {
            let files = decode_export_entries(entries).map_or(0, |v| v.len());
            (
                "Export",
                format!("segment_file={export_no} tenant={namespace:?} files={files}"),
            )
        }
        Payload::Checkpoint {
            next_file_id,
            files,
        } => {
            let files = decode_file_numbers(files).unwrap_or_default();
            (
                "Checkpoint",
                format!("next_file_id={next_file_id} container_files={files:?}"),
            )
        }
        Payload::Reclaim { file_no } => ("Reclaim", format!("container_file={file_no}")),
        Payload::ExportBegin { export_no } => ("ExportBegin", format!("segment_file={export_no}")),
        Payload::SegmentDrop { export_no } => ("SegmentDrop", format!("segment_file={export_no}")),
        Payload::Continued { next_file_no } => {
            ("Continued", format!("next_container_file={next_file_no}"))
        }
        Payload::Seal => ("Seal", String::new()),
        Payload::Snapshot { part, parts, bytes } => (
            "Snapshot",
            format!("part={part} parts={parts} bytes={}", bytes.len()),
        ),
        Payload::Placed {
            file_id,
            file_offset,
            export_no,
            seg_offset,
            len,
            crc,
        } => (
            "Placed",
            format!(
                "file_id={file_id} file_offset={file_offset} segment_file={export_no} \
                 segment_offset={seg_offset} len={len} crc={crc:08x}"
            ),
        ),
    }
}
