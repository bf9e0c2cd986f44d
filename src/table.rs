//! The in-memory file table: `(namespace, path) -> entry`, rebuilt on open by
//! replaying the container's records, and kept in step with the log afterwards
//! (each change is appended to the log while the table's lock is held, so log
//! order and table order agree). `exists` and file lengths never touch the disk.

use std::collections::HashMap;

use crate::container::{Extent, RecordRef};
use crate::format::record::Payload;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileState {
    /// Opened for writing; dropped on recovery if never terminated.
    Writing,
    Terminated,
    /// Written whole by `atomic_write`.
    Atomic,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub id: u64,
    pub state: FileState,
    pub len: u64,
    pub extents: Vec<Extent>,
}

pub(crate) type Key = (String, String);

#[derive(Debug, Default)]
pub(crate) struct FileTable {
    by_path: HashMap<Key, u64>,
    entries: HashMap<u64, (Key, Entry)>,
    next_id: u64,
}

impl FileTable {
    pub fn new() -> FileTable {
        FileTable {
            next_id: 1,
            ..Default::default()
        }
    }

    /// Replays one record. An error string names what is inconsistent.
    pub fn replay(&mut self, rec: RecordRef<'_>) -> Result<(), String> {
        match rec.payload {
            Payload::Create {
                file_id,
                namespace,
                path,
            } => {
                self.claim_id(file_id)?;
                self.insert(
                    (namespace.to_string(), path.to_string()),
                    Entry {
                        id: file_id,
                        state: FileState::Writing,
                        len: 0,
                        extents: Vec::new(),
                    },
                );
            }
            Payload::Data {
                file_id,
                file_offset,
                ..
            } => {
                let Some(extent) = rec.extent else {
                    return Err("data record without bytes".into());
                };
                match self.known(file_id)? {
                    None => {}
                    Some(e) if e.state != FileState::Writing => {
                        return Err(format!("data for file id {file_id} after it was finished"))
                    }
                    Some(e) if e.len != file_offset => {
                        return Err(format!(
                            "data for file id {file_id} at offset {file_offset}, expected {}",
                            e.len
                        ))
                    }
                    Some(e) => push_extent(e, extent),
                }
            }
            Payload::Finish { file_id, len } => match self.known(file_id)? {
                None => {}
                Some(e) if e.len != len => {
                    return Err(format!(
                        "file id {file_id} finished at {len} bytes but {} were written",
                        e.len
                    ))
                }
                Some(e) => e.state = FileState::Terminated,
            },
            Payload::Delete { file_id } => {
                if self.known(file_id)?.is_some() {
                    self.remove_id(file_id);
                }
            }
            Payload::AtomicWrite {
                file_id,
                namespace,
                path,
                ..
            } => {
                self.claim_id(file_id)?;
                let extent = rec.extent.ok_or("atomic write without bytes")?;
                self.insert(
                    (namespace.to_string(), path.to_string()),
                    Entry {
                        id: file_id,
                        state: FileState::Atomic,
                        len: extent.len,
                        extents: vec![extent],
                    },
                );
            }
            Payload::Padding { .. } => {}
        }
        Ok(())
    }

    /// Takes a fresh id seen in the log: ids only ever grow.
    fn claim_id(&mut self, id: u64) -> Result<(), String> {
        if id < self.next_id {
            return Err(format!("file id {id} created twice"));
        }
        self.next_id = id + 1;
        Ok(())
    }

    /// The entry for `id`; `None` if it was deleted; an error if it never existed.
    fn known(&mut self, id: u64) -> Result<Option<&mut Entry>, String> {
        if id >= self.next_id {
            return Err(format!("record for file id {id}, which was never created"));
        }
        Ok(self.entries.get_mut(&id).map(|(_, e)| e))
    }

    /// Ends a replay: files that were never terminated are dropped.
    pub fn finish_replay(&mut self) -> usize {
        let unfinished: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, (_, e))| e.state == FileState::Writing)
            .map(|(id, _)| *id)
            .collect();
        for id in &unfinished {
            self.remove_id(*id);
        }
        unfinished.len()
    }

    fn insert(&mut self, key: Key, entry: Entry) {
        if let Some(old) = self.by_path.insert(key.clone(), entry.id) {
            self.entries.remove(&old);
        }
        self.entries.insert(entry.id, (key, entry));
    }

    fn remove_id(&mut self, id: u64) -> Option<Entry> {
        let (key, entry) = self.entries.remove(&id)?;
        if self.by_path.get(&key) == Some(&id) {
            self.by_path.remove(&key);
        }
        Some(entry)
    }

    pub fn get(&self, ns: &str, path: &str) -> Option<&Entry> {
        let id = self.by_path.get(&(ns.to_string(), path.to_string()))?;
        self.entries.get(id).map(|(_, e)| e)
    }

    /// Registers a new file being written under an id from [`Self::alloc_id`];
    /// `false` if the path is taken.
    pub fn create_with_id(&mut self, ns: &str, path: &str, id: u64) -> bool {
        let key = (ns.to_string(), path.to_string());
        if self.by_path.contains_key(&key) {
            return false;
        }
        self.insert(
            key,
            Entry {
                id,
                state: FileState::Writing,
                len: 0,
                extents: Vec::new(),
            },
        );
        true
    }

    pub fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Records where a written chunk of file `id` landed (ignored if the file was
    /// deleted meanwhile).
    pub fn add_extent(&mut self, id: u64, extent: Extent) {
        if let Some((_, e)) = self.entries.get_mut(&id) {
            push_extent(e, extent);
        }
    }

    pub fn terminate(&mut self, id: u64) {
        if let Some((_, e)) = self.entries.get_mut(&id) {
            e.state = FileState::Terminated;
        }
    }

    /// Installs an atomically written file, unless a newer write (higher id) of the
    /// same path got there first.
    pub fn put_atomic_if_newer(&mut self, ns: &str, path: &str, id: u64, extent: Extent) {
        if let Some(cur) = self.get(ns, path) {
            if cur.id > id {
                return;
            }
        }
        self.insert(
            (ns.to_string(), path.to_string()),
            Entry {
                id,
                state: FileState::Atomic,
                len: extent.len,
                extents: vec![extent],
            },
        );
    }

    pub fn remove(&mut self, ns: &str, path: &str) -> Option<Entry> {
        let id = *self.by_path.get(&(ns.to_string(), path.to_string()))?;
        self.remove_id(id)
    }

    pub fn file_count(&self) -> usize {
        self.entries.len()
    }

    pub fn live_bytes(&self) -> u64 {
        self.entries.values().map(|(_, e)| e.len).sum()
    }

    /// Namespaces that hold at least one file, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&String> =
            self.by_path.keys().map(|(n, _)| n).collect();
        set.into_iter().cloned().collect()
    }

    /// Ids of the files of one namespace.
    pub fn ids_in(&self, ns: &str) -> Vec<u64> {
        self.by_path
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|(_, id)| *id)
            .collect()
    }

    /// Removes a file by id (after its deletion was logged).
    pub fn remove_by_id(&mut self, id: u64) -> bool {
        self.remove_id(id).is_some()
    }

    /// Paths of one namespace, sorted.
    pub fn paths(&self, ns: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_path
            .keys()
            .filter(|(n, _)| n == ns)
            .map(|(_, p)| p.clone())
            .collect();
        v.sort();
        v
    }
}

/// Appends an extent, merging it into the previous one when they are adjacent.
fn push_extent(e: &mut Entry, extent: Extent) {
    e.len += extent.len;
    if let Some(last) = e.extents.last_mut() {
        if last.file_no == extent.file_no && last.offset + last.len == extent.offset {
            last.len += extent.len;
            return;
        }
    }
    e.extents.push(extent);
}
