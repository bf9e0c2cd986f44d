//! The per-file write buffer of a [`FileWriter`](super::writer::FileWriter):
//! an anonymous mapping, recycled process-wide, kept out of `malloc`.
//!
//! A writer's buffer grows from 64 KiB to 1 MiB by default, and tantivy opens
//! a few thousand files while indexing a few hundred MB. As `Vec`s these
//! buffers were `malloc`'d and freed in sizes of 64 KiB–1 MiB (262 MB of them
//! in one round of `examples/compare_mmap.rs`), in the indexing threads'
//! arenas, among tantivy's own allocations.
//!
//! A buffer here is one anonymous mapping of the writer's current chunk size
//! (a larger one taken when the chunk grows, between chunks, with nothing to
//! copy): the kernel backs only the pages written, and a finished writer's
//! mapping goes to a small process-wide free list ([`KEEP_BYTES`] at most)
//! for the next writer, or back to the kernel. A process out of mappings
//! (`vm.max_map_count`) gets a heap block instead. With the stage buffers also out of `malloc` (`container::writer::Buf`),
//! jocky's live heap while indexing is `MmapDirectory`'s: +65.8 MB against
//! +65.0 (`compare_mmap --count-heap`, 2026-11-29; +81.6 against +65.2
//! before).

use std::io;
use std::sync::Mutex;

use memmap2::MmapMut;

/// Free buffers kept for the next writers, in bytes of mapping (their touched
/// pages stay resident meanwhile), process-wide.
pub(crate) const KEEP_BYTES: usize = 4 << 20;

static FREE: FreeList = FreeList::new(KEEP_BYTES);

/// Bytes gathered for the next chunk of one file.
pub(crate) struct ChunkBuf {
    block: Option<Block>,
    len: usize,
}

/// A buffer's memory: a mapping, or (when the process is out of mappings or
/// address space) a heap block, as every buffer was before.
enum Block {
    Map(MmapMut),
    Heap(Box<[u8]>),
}

impl Block {
    fn get(&self) -> &[u8] {
        match self {
            Block::Map(m) => m,
            Block::Heap(b) => b,
        }
    }

    fn get_mut(&mut self) -> &mut [u8] {
        match self {
            Block::Map(m) => m,
            Block::Heap(b) => b,
        }
    }

    /// At least `size` bytes: a free or new mapping, else the heap.
    fn take(size: usize) -> Block {
        match FREE.take(size) {
            Ok(map) => Block::Map(map),
            Err(e) => {
                log::debug!("a {size}-byte file write buffer goes on the heap: {e}");
                Block::Heap(vec![0u8; size].into_boxed_slice())
            }
        }
    }

    fn give_back(self) {
        if let Block::Map(map) = self {
            FREE.give_back(map);
        }
    }
}

impl ChunkBuf {
    /// An empty buffer; nothing is mapped before the first [`ChunkBuf::fill`].
    pub const fn new() -> ChunkBuf {
        ChunkBuf {
            block: None,
            len: 0,
        }
    }

    /// Appends the part of `data` that fits below `limit` bytes in all and
    /// returns its length. The mapping is at least `limit` bytes: made at the
    /// first fill, and replaced by a larger one when `limit` grows past it (a
    /// writer raises its chunk size only when its buffer is empty, so nothing
    /// is copied then).
    pub fn fill(&mut self, data: &[u8], limit: usize) -> usize {
        if self.block.as_ref().is_none_or(|b| b.get().len() < limit) {
            let mut bigger = Block::take(limit);
            bigger.get_mut()[..self.len].copy_from_slice(self.as_slice());
            if let Some(old) = self.block.replace(bigger) {
                old.give_back();
            }
        }
        let block = self.block.as_mut().expect("made above").get_mut();
        let n = limit.saturating_sub(self.len).min(data.len());
        block[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    pub fn as_slice(&self) -> &[u8] {
        self.block.as_ref().map_or(&[], |b| &b.get()[..self.len])
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the bytes; the mapping stays for the next chunk.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Gives the mapping back (to the free list or the kernel); the buffer is
    /// empty and maps again if filled.
    pub fn release(&mut self) {
        self.len = 0;
        if let Some(block) = self.block.take() {
            block.give_back();
        }
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        self.release();
    }
}

/// Mappings no buffer uses, kept for the next ones up to a budget.
struct FreeList {
    maps: Mutex<Vec<MmapMut>>,
    keep: usize,
}

impl FreeList {
    const fn new(keep: usize) -> FreeList {
        FreeList {
            maps: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A free mapping of at least `capacity` bytes, or a new one.
    fn take(&self, capacity: usize) -> io::Result<MmapMut> {
        let capacity = capacity.max(1);
        {
            let mut free = self.maps.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = free.iter().position(|m| m.len() >= capacity) {
                return Ok(free.swap_remove(i));
            }
        }
        MmapMut::map_anon(capacity)
    }

    /// Keeps `map` if the budget allows; otherwise unmaps it.
    fn give_back(&self, map: MmapMut) {
        let mut free = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        let kept: usize = free.iter().map(|m| m.len()).sum();
        if kept + map.len() <= self.keep {
            free.push(map);
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        let free = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        free.iter().map(|m| m.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_up_to_the_limit_and_keeps_the_bytes_in_order() {
        let mut b = ChunkBuf::new();
        assert!(b.is_empty());
        assert_eq!(b.as_slice(), b"");
        assert_eq!(b.fill(b"hello ", 8), 6);
        assert_eq!(b.fill(b"world", 8), 2, "stops at the limit");
        assert_eq!(b.as_slice(), b"hello wo");
        assert_eq!(b.fill(b"rld!", 12), 4, "a raised limit takes more");
        assert_eq!(b.as_slice(), b"hello world!");
        b.clear();
        assert_eq!(b.len(), 0);
        assert_eq!(b.fill(b"again", 16), 5);
        assert_eq!(b.as_slice(), b"again");
    }

    #[test]
    fn a_given_back_mapping_serves_the_next_take_with_its_bytes_resident() {
        let list = FreeList::new(1 << 20);
        let mut m = list.take(8192).unwrap();
        m[0] = 7;
        let ptr = m.as_ptr();
        list.give_back(m);
        assert_eq!(list.kept(), 8192);
        let again = list.take(4096).unwrap();
        assert_eq!(again.as_ptr(), ptr, "reused, not mapped anew");
        assert_eq!(list.kept(), 0);
        let bigger = list.take(16384).unwrap();
        assert_ne!(bigger.as_ptr(), ptr);
        assert_eq!(bigger.len(), 16384);
    }

    #[test]
    fn the_free_list_keeps_at_most_its_budget() {
        let list = FreeList::new(3 << 20);
        let maps: Vec<MmapMut> = (0..5).map(|_| list.take(1 << 20).unwrap()).collect();
        for m in maps {
            list.give_back(m);
        }
        assert_eq!(list.kept(), 3 << 20, "two of five unmapped");
    }

    #[test]
    fn a_buffer_maps_at_its_first_fill_and_gives_its_mapping_back() {
        let mut b = ChunkBuf::new();
        assert!(b.block.is_none(), "nothing mapped before the first byte");
        b.fill(b"z", 1 << 16);
        assert!(matches!(&b.block, Some(Block::Map(m)) if m.len() >= 1 << 16));
        b.release();
        assert!(b.block.is_none() && b.is_empty());
        assert_eq!(b.fill(b"again", 1 << 16), 5);
        assert_eq!(b.as_slice(), b"again");
    }

    #[test]
    fn a_heap_block_serves_like_a_mapping_and_is_not_kept() {
        // What a buffer gets when the process is out of mappings.
        let mut b = ChunkBuf {
            block: Some(Block::Heap(vec![0u8; 8].into_boxed_slice())),
            len: 0,
        };
        assert_eq!(b.fill(b"12345678", 8), 8);
        b.clear();
        assert_eq!(b.fill(b"abc", 8), 3);
        // Growing past it replaces it (a fresh block: the bytes move over).
        assert_eq!(b.fill(b"defghijklm", 13), 10);
        assert_eq!(b.as_slice(), b"abcdefghijklm");
        b.release();
        assert!(b.block.is_none());
    }
}
