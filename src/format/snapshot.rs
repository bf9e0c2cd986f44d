//! The file-table image a `Snapshot` record carries (format version 4): the
//! whole file table as replay would have built it from every record before the
//! container file that starts with it, so an open replays only the records
//! after it. Bytes only, no I/O.
//!
//! Version 2 (written now) puts the books and an index of the namespaces
//! first, so an open decodes only those and each namespace's files are
//! decoded the first time the namespace is used:
//!
//! ```text
//! offset  size  field
//!      0     4  magic            "JSNP"
//!      4     4  version          IMAGE_VERSION (2; 1 is still read)
//!      8     8  next_file_id     ids below were handed out
//!     16     4  segments         n: segment files the log has a record of
//!     20    8n  segment numbers  (ExportBegin, Export or SegmentDrop seen)
//!   v2 only, the books of the whole table:
//!     ..     8  live_bytes
//!     ..     4  c, c × (u64 file_no, u64 files, u64 bytes)   per container file
//!     ..     4  s, s × (u64 export_no, u64 files)            per segment file
//!     ..     4  namespaces       m, sorted
//!   v2: m index entries, then m sections (in the same order):
//!            str namespace, 5 × u64 books (files, bytes, container_bytes,
//!            segment_bytes, exportable), u8 writing (a file is being
//!            written), u32 section_len
//!     section: u32 file count k, k files
//!   v1: m times: str namespace, u32 k, k files
//!   a file:  str path, u64 id, u8 state (0 writing, 1 terminated, 2 atomic),
//!            u64 len, u8 place:
//!              0 (container): u32 x, x × (u64 file_no, u64 offset, u64 len)
//!              1 (segment):   u64 export_no, u64 offset
//!            u16 a, a × u64 anchors (container files replay needs for it)
//! ```
//!
//! The image may be split over several `Snapshot` records (`part` of `parts`);
//! each record has its own CRC. Every count is bounded by the bytes left before
//! anything is allocated for it.

use crate::error::DecodeError;
use crate::format::file_header::MAX_CAPACITY;
use crate::format::reader::Reader;
use crate::format::record::{u64_at, MAX_FILE_NO, MAX_NAME_LEN};

pub const IMAGE_MAGIC: &[u8; 4] = b"JSNP";
pub const IMAGE_VERSION: u32 = 2;
/// The first image version, still read (eagerly: it has no index).
pub const IMAGE_VERSION_1: u32 = 1;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = OFF_MAGIC + 4;
const OFF_NEXT_ID: usize = OFF_VERSION + 4;
const OFF_SEGMENTS: usize = OFF_NEXT_ID + 8;

/// The smallest encoding of one file: empty path, one byte each for state and
/// place, no extents, no anchors.
const MIN_FILE_LEN: usize = 2 + 8 + 1 + 8 + 1 + 4 + 2;
const EXTENT_LEN: usize = 24;

/// State byte of a file.
pub const STATE_WRITING: u8 = 0;
pub const STATE_TERMINATED: u8 = 1;
pub const STATE_ATOMIC: u8 = 2;

/// Where one file's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImagePlace<'a> {
    /// Runs in container files: `len / 24` triples `(file_no, offset, len)`.
    Container(&'a [u8]),
    Segment {
        export_no: u64,
        offset: u64,
    },
}

/// One file of the image, borrowing the image's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFile<'a> {
    pub path: &'a str,
    pub id: u64,
    pub state: u8,
    pub len: u64,
    pub place: ImagePlace<'a>,
    /// `len / 8` container file numbers.
    pub anchors: &'a [u8],
}

impl<'a> ImageFile<'a> {
    /// The container runs, `(file_no, offset, len)`.
    pub fn extents(&self) -> impl Iterator<Item = (u64, u64, u64)> + 'a {
        let raw: &'a [u8] = match self.place {
            ImagePlace::Container(raw) => raw,
            ImagePlace::Segment { .. } => &[],
        };
        raw.chunks_exact(EXTENT_LEN)
            .map(|c| (u64_at(c, 0), u64_at(c, 8), u64_at(c, 16)))
    }

    pub fn anchors(&self) -> impl Iterator<Item = u64> + 'a {
        let raw: &'a [u8] = self.anchors;
        raw.chunks_exact(8).map(|c| u64_at(c, 0))
    }
}

/// Where a file being written to an image is: its container runs
/// `(file_no, offset, len)`, or `(export_no, offset)` in a segment file.
pub type PlaceToWrite<'a> = Result<&'a [(u64, u64, u64)], (u64, u64)>;

/// Builds a version 1 image (no index; kept to test that v1 images, which
/// folders written on 2026-11-27 hold, are still read): [`ImageWriter::namespace`]
/// then that many [`ImageWriter::file`] calls, for each namespace.
#[cfg(test)]
pub struct ImageWriter {
    out: Vec<u8>,
}

#[cfg(test)]
impl ImageWriter {
    pub fn new(next_file_id: u64, logged_segments: &[u64], size_hint: usize) -> ImageWriter {
        let mut out = Vec::with_capacity(size_hint + 32 + logged_segments.len() * 8);
        out.extend_from_slice(IMAGE_MAGIC);
        out.extend_from_slice(&IMAGE_VERSION_1.to_le_bytes());
        out.extend_from_slice(&next_file_id.to_le_bytes());
        out.extend_from_slice(&(logged_segments.len() as u32).to_le_bytes());
        for n in logged_segments {
            out.extend_from_slice(&n.to_le_bytes());
        }
        ImageWriter { out }
    }

    /// Starts the namespace section count (call once, before the first
    /// namespace).
    pub fn namespaces(&mut self, count: u32) {
        self.out.extend_from_slice(&count.to_le_bytes());
    }

    pub fn namespace(&mut self, ns: &str, files: u32) {
        put_str(&mut self.out, ns);
        self.out.extend_from_slice(&files.to_le_bytes());
    }

    /// One file; `extents` only for a file in the container.
    pub fn file(
        &mut self,
        path: &str,
        id: u64,
        state: u8,
        len: u64,
        place: PlaceToWrite<'_>,
        anchors: &[u64],
    ) {
        encode_file(&mut self.out, path, id, state, len, place, anchors);
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

fn encode_file(
    out: &mut Vec<u8>,
    path: &str,
    id: u64,
    state: u8,
    len: u64,
    place: PlaceToWrite<'_>,
    anchors: &[u64],
) {
    put_str(out, path);
    out.extend_from_slice(&id.to_le_bytes());
    out.push(state);
    out.extend_from_slice(&len.to_le_bytes());
    match place {
        Ok(extents) => {
            out.push(0);
            out.extend_from_slice(&(extents.len() as u32).to_le_bytes());
            for (f, o, l) in extents {
                out.extend_from_slice(&f.to_le_bytes());
                out.extend_from_slice(&o.to_le_bytes());
                out.extend_from_slice(&l.to_le_bytes());
            }
        }
        Err((export_no, offset)) => {
            out.push(1);
            out.extend_from_slice(&export_no.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
    }
    out.extend_from_slice(&(anchors.len() as u16).to_le_bytes());
    for a in anchors {
        out.extend_from_slice(&a.to_le_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() <= MAX_NAME_LEN, "name too long");
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The version of an image (its first 8 bytes checked).
pub fn image_version(b: &[u8]) -> Result<u32, DecodeError> {
    let mut r = Reader::new(b);
    if r.take(4)? != IMAGE_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    r.u32()
}

/// The fields every image version starts with: magic, version (must be
/// `version`), next file id and the logged segment files.
fn decode_common(
    r: &mut Reader<'_>,
    total: usize,
    version: u32,
) -> Result<(u64, Vec<u64>), DecodeError> {
    if r.take(4)? != IMAGE_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let got = r.u32()?;
    if got != version {
        return Err(DecodeError::Version {
            expected: version,
            got,
        });
    }
    let next_file_id = r.u64()?;
    debug_assert_eq!(r.pos(), OFF_SEGMENTS);
    let n = r.u32()? as usize;
    if n > (total - r.pos()) / 8 {
        return Err(DecodeError::LengthOutOfBounds(n as u64));
    }
    let mut logged_segments = Vec::with_capacity(n);
    for _ in 0..n {
        let no = r.u64()?;
        if no > MAX_FILE_NO {
            return Err(DecodeError::LengthOutOfBounds(no));
        }
        logged_segments.push(no);
    }
    Ok((next_file_id, logged_segments))
}

/// The books of one namespace, as the index of a v2 image keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NsBooks {
    pub files: u64,
    pub bytes: u64,
    pub container_bytes: u64,
    pub segment_bytes: u64,
    pub exportable: u64,
}

/// One namespace of a v2 image's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsIndex<'a> {
    pub ns: &'a str,
    pub books: NsBooks,
    /// A file of it is being written (an open decodes it at once).
    pub writing: bool,
    /// Where its section is in the image.
    pub section: std::ops::Range<usize>,
}

/// What an open decodes of a v2 image: everything but the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIndex<'a> {
    pub next_file_id: u64,
    pub logged_segments: Vec<u64>,
    pub live_bytes: u64,
    /// `(file_no, files anchored, bytes)` per container file.
    pub container_books: Vec<(u64, u64, u64)>,
    /// `(export_no, files)` per segment file.
    pub segment_books: Vec<(u64, u64)>,
    pub namespaces: Vec<NsIndex<'a>>,
}

/// Decodes the head, the books and the namespace index of a v2 image; the
/// sections must exactly fill the rest.
pub fn decode_index(b: &[u8]) -> Result<ImageIndex<'_>, DecodeError> {
    let mut r = Reader::new(b);
    let (next_file_id, logged_segments) = decode_common(&mut r, b.len(), IMAGE_VERSION)?;
    let live_bytes = r.u64()?;
    let c = r.u32()? as usize;
    if c > (b.len() - r.pos()) / 24 {
        return Err(DecodeError::LengthOutOfBounds(c as u64));
    }
    let mut container_books = Vec::with_capacity(c);
    for _ in 0..c {
        container_books.push((r.u64()?, r.u64()?, r.u64()?));
    }
    let n = r.u32()? as usize;
    if n > (b.len() - r.pos()) / 16 {
        return Err(DecodeError::LengthOutOfBounds(n as u64));
    }
    let mut segment_books = Vec::with_capacity(n);
    for _ in 0..n {
        segment_books.push((r.u64()?, r.u64()?));
    }
    let m = r.u32()? as usize;
    // An index entry takes at least 47 bytes.
    if m > (b.len() - r.pos()) / 47 {
        return Err(DecodeError::LengthOutOfBounds(m as u64));
    }
    let mut entries = Vec::with_capacity(m);
    for _ in 0..m {
        let ns = r.str(MAX_NAME_LEN)?;
        let books = NsBooks {
            files: r.u64()?,
            bytes: r.u64()?,
            container_bytes: r.u64()?,
            segment_bytes: r.u64()?,
            exportable: r.u64()?,
        };
        let writing = match r.take(1)?[0] {
            0 => false,
            1 => true,
            other => return Err(DecodeError::BadKind(other)),
        };
        let len = r.u32()? as usize;
        entries.push((ns, books, writing, len));
    }
    let mut at = r.pos();
    let mut namespaces = Vec::with_capacity(m);
    for (ns, books, writing, len) in entries {
        let end = at.checked_add(len).filter(|e| *e <= b.len());
        let Some(end) = end else {
            return Err(DecodeError::Truncated);
        };
        namespaces.push(NsIndex {
            ns,
            books,
            writing,
            section: at..end,
        });
        at = end;
    }
    if at != b.len() {
        return Err(DecodeError::LengthOutOfBounds(b.len() as u64));
    }
    Ok(ImageIndex {
        next_file_id,
        logged_segments,
        live_bytes,
        container_books,
        segment_books,
        namespaces,
    })
}

/// Decodes the files of one namespace's section of a v2 image.
pub fn decode_section<'a>(
    b: &'a [u8],
    next_file_id: u64,
    mut visit: impl FnMut(ImageFile<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(b);
    let files = r.u32()? as usize;
    if files > b.len() / MIN_FILE_LEN {
        return Err(DecodeError::LengthOutOfBounds(files as u64));
    }
    for _ in 0..files {
        visit(decode_file(&mut r, next_file_id)?)?;
    }
    if r.pos() != b.len() {
        return Err(DecodeError::LengthOutOfBounds(b.len() as u64));
    }
    Ok(())
}

/// Builds a v2 image: the books, then for each namespace (sorted) either its
/// files ([`IndexedWriter::begin`], [`IndexedWriter::file`]...) or its section
/// copied from an older image ([`IndexedWriter::raw`]).
pub struct IndexedWriter {
    head: Vec<u8>,
    index: Vec<u8>,
    sections: Vec<u8>,
    namespaces: u32,
    /// The namespace being written: its index entry without the section
    /// length, where its section starts, and its file count.
    open: Option<(Vec<u8>, usize, u32)>,
}

impl IndexedWriter {
    pub fn new(
        next_file_id: u64,
        logged_segments: &[u64],
        live_bytes: u64,
        container_books: &[(u64, u64, u64)],
        segment_books: &[(u64, u64)],
        size_hint: usize,
    ) -> IndexedWriter {
        let mut head =
            Vec::with_capacity(64 + (logged_segments.len() + container_books.len() * 3) * 8);
        head.extend_from_slice(IMAGE_MAGIC);
        head.extend_from_slice(&IMAGE_VERSION.to_le_bytes());
        head.extend_from_slice(&next_file_id.to_le_bytes());
        head.extend_from_slice(&(logged_segments.len() as u32).to_le_bytes());
        for n in logged_segments {
            head.extend_from_slice(&n.to_le_bytes());
        }
        head.extend_from_slice(&live_bytes.to_le_bytes());
        head.extend_from_slice(&(container_books.len() as u32).to_le_bytes());
        for (no, files, bytes) in container_books {
            for v in [no, files, bytes] {
                head.extend_from_slice(&v.to_le_bytes());
            }
        }
        head.extend_from_slice(&(segment_books.len() as u32).to_le_bytes());
        for (no, files) in segment_books {
            head.extend_from_slice(&no.to_le_bytes());
            head.extend_from_slice(&files.to_le_bytes());
        }
        IndexedWriter {
            head,
            index: Vec::new(),
            sections: Vec::with_capacity(size_hint),
            namespaces: 0,
            open: None,
        }
    }

    fn entry(ns: &str, books: &NsBooks, writing: bool) -> Vec<u8> {
        let mut e = Vec::with_capacity(2 + ns.len() + 45);
        put_str(&mut e, ns);
        for v in [
            books.files,
            books.bytes,
            books.container_bytes,
            books.segment_bytes,
            books.exportable,
        ] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        e.push(u8::from(writing));
        e
    }

    /// Starts namespace `ns`; its files follow.
    pub fn begin(&mut self, ns: &str, books: &NsBooks, writing: bool) {
        self.end();
        let start = self.sections.len();
        self.sections.extend_from_slice(&0u32.to_le_bytes());
        self.open = Some((Self::entry(ns, books, writing), start, 0));
    }

    /// One file of the namespace begun last.
    pub fn file(
        &mut self,
        path: &str,
        id: u64,
        state: u8,
        len: u64,
        place: PlaceToWrite<'_>,
        anchors: &[u64],
    ) {
        let (_, _, count) = self.open.as_mut().expect("a namespace was begun");
        *count += 1;
        encode_file(&mut self.sections, path, id, state, len, place, anchors);
    }

    /// Namespace `ns` with its section copied from another v2 image.
    pub fn raw(&mut self, ns: &str, books: &NsBooks, writing: bool, section: &[u8]) {
        self.end();
        let mut e = Self::entry(ns, books, writing);
        e.extend_from_slice(&(section.len() as u32).to_le_bytes());
        self.index.extend_from_slice(&e);
        self.sections.extend_from_slice(section);
        self.namespaces += 1;
    }

    fn end(&mut self) {
        if let Some((mut e, start, count)) = self.open.take() {
            self.sections[start..start + 4].copy_from_slice(&count.to_le_bytes());
            e.extend_from_slice(&((self.sections.len() - start) as u32).to_le_bytes());
            self.index.extend_from_slice(&e);
            self.namespaces += 1;
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.end();
        let mut out = self.head;
        out.reserve(4 + self.index.len() + self.sections.len());
        out.extend_from_slice(&self.namespaces.to_le_bytes());
        out.extend_from_slice(&self.index);
        out.extend_from_slice(&self.sections);
        out
    }
}

/// What an image says besides its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageHead {
    pub next_file_id: u64,
    pub logged_segments: Vec<u64>,
    /// Files in the image (for sizing the table).
    pub files_hint: usize,
}

/// Decodes a version 1 image, handing each file to `visit` with its
/// namespace. Every count is checked against the bytes left; bytes past the
/// last file are an error.
pub fn decode_image_v1<'a>(
    b: &'a [u8],
    mut visit: impl FnMut(&'a str, ImageFile<'a>) -> Result<(), DecodeError>,
) -> Result<ImageHead, DecodeError> {
    let mut r = Reader::new(b);
    let (next_file_id, logged_segments) = decode_common(&mut r, b.len(), IMAGE_VERSION_1)?;
    let namespaces = r.u32()? as usize;
    if namespaces > (b.len() - r.pos()) / 6 {
        return Err(DecodeError::LengthOutOfBounds(namespaces as u64));
    }
    let files_hint = (b.len() - r.pos()) / 64;
    for _ in 0..namespaces {
        let ns = r.str(MAX_NAME_LEN)?;
        let files = r.u32()? as usize;
        if files > (b.len() - r.pos()) / MIN_FILE_LEN {
            return Err(DecodeError::LengthOutOfBounds(files as u64));
        }
        for _ in 0..files {
            let file = decode_file(&mut r, next_file_id)?;
            visit(ns, file)?;
        }
    }
    if r.pos() != b.len() {
        return Err(DecodeError::LengthOutOfBounds(b.len() as u64));
    }
    Ok(ImageHead {
        next_file_id,
        logged_segments,
        files_hint,
    })
}

/// One file of an image, checked: id below `next_file_id`, known state and
/// place, file numbers in range, extents adding up to the length.
fn decode_file<'a>(r: &mut Reader<'a>, next_file_id: u64) -> Result<ImageFile<'a>, DecodeError> {
    let path = r.str(MAX_NAME_LEN)?;
    let id = r.u64()?;
    if id >= next_file_id {
        return Err(DecodeError::LengthOutOfBounds(id));
    }
    let state = r.take(1)?[0];
    if state > STATE_ATOMIC {
        return Err(DecodeError::BadKind(state));
    }
    let len = r.u64()?;
    let place = match r.take(1)?[0] {
        0 => {
            let x = r.u32()? as usize;
            let raw = r.take(x.checked_mul(EXTENT_LEN).ok_or(DecodeError::Truncated)?)?;
            ImagePlace::Container(raw)
        }
        1 => ImagePlace::Segment {
            export_no: r.u64()?,
            offset: r.u64()?,
        },
        other => return Err(DecodeError::BadKind(other)),
    };
    let a = u16::from_le_bytes(r.take(2)?.try_into().expect("two bytes")) as usize;
    let anchors = r.take(a * 8)?;
    let file = ImageFile {
        path,
        id,
        state,
        len,
        place,
        anchors,
    };
    if let ImagePlace::Segment { export_no, .. } = place {
        if export_no > MAX_FILE_NO {
            return Err(DecodeError::LengthOutOfBounds(export_no));
        }
    }
    if file.anchors().any(|n| n > MAX_FILE_NO) || file.extents().any(|(f, _, _)| f > MAX_FILE_NO) {
        return Err(DecodeError::LengthOutOfBounds(MAX_FILE_NO + 1));
    }
    // Every place lies within what a file may hold (1 TiB).
    let within = |offset: u64, len: u64| offset.checked_add(len).is_some_and(|e| e <= MAX_CAPACITY);
    let placed = match place {
        ImagePlace::Container(_) => file.extents().all(|(_, o, l)| within(o, l)),
        ImagePlace::Segment { offset, .. } => within(offset, len),
    };
    if !placed {
        return Err(DecodeError::LengthOutOfBounds(len));
    }
    // The extents add up to the length (a file in the container).
    if let ImagePlace::Container(_) = place {
        let sum = file
            .extents()
            .try_fold(0u64, |s, (_, _, l)| s.checked_add(l));
        if sum != Some(len) {
            return Err(DecodeError::LengthOutOfBounds(len));
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = ImageWriter::new(10, &[3, 4], 0);
        w.namespaces(2);
        w.namespace("", 2);
        w.file(
            "a.idx",
            1,
            STATE_TERMINATED,
            30,
            Ok(&[(0, 100, 10), (1, 64, 20)]),
            &[0, 1],
        );
        w.file("meta.json", 9, STATE_ATOMIC, 5, Ok(&[(1, 300, 5)]), &[1]);
        w.namespace("t1", 1);
        w.file("b.store", 4, STATE_TERMINATED, 77, Err((3, 4096)), &[1]);
        w.finish()
    }

    #[test]
    fn an_image_decodes_to_what_was_written() {
        let b = sample();
        let mut seen = Vec::new();
        let head = decode_image_v1(&b, |ns, f| {
            seen.push((
                ns.to_string(),
                f.path.to_string(),
                f.id,
                f.state,
                f.len,
                f.extents().collect::<Vec<_>>(),
                f.anchors().collect::<Vec<_>>(),
                matches!(
                    f.place,
                    ImagePlace::Segment {
                        export_no: 3,
                        offset: 4096
                    }
                ),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(head.next_file_id, 10);
        assert_eq!(head.logged_segments, vec![3, 4]);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].5, vec![(0, 100, 10), (1, 64, 20)]);
        assert_eq!(seen[0].6, vec![0, 1]);
        assert_eq!((seen[2].0.as_str(), seen[2].7), ("t1", true));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error_or_a_valid_image() {
        let b = sample();
        for cut in 0..b.len() {
            assert!(
                decode_image_v1(&b[..cut], |_, _| Ok(())).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode_image_v1(&longer, |_, _| Ok(())).is_err());
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut m = b.clone();
                m[i] ^= 1 << bit;
                // Must not panic; either an error or an image that decodes.
                let _ = decode_image_v1(&m, |_, _| Ok(()));
            }
        }
    }

    #[test]
    fn huge_counts_are_refused_before_allocation() {
        let mut b = sample();
        b[OFF_SEGMENTS..OFF_SEGMENTS + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_image_v1(&b, |_, _| Ok(())),
            Err(DecodeError::LengthOutOfBounds(_))
        ));
    }
}
