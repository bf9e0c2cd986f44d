//! The seed corpus: cut from real folders by `jocky-fuzz gen-corpus` into
//! `corpus/<target>/`, and loaded from there.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::folders::{is_container, is_segment, Folder};
use crate::mutate::{record_frames, FILE_HEADER_LEN};
use crate::watch::fnv64;
use crate::Target;

/// The committed corpus folder of this crate.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// A run of records is kept to this many bytes (one larger record alone may go
/// up to [`MAX_SINGLE_RECORD`]).
const MAX_RUN: usize = 8 << 10;
const MAX_SINGLE_RECORD: usize = 72 << 10;
/// Segment files larger than this are not seeds.
const MAX_SEGMENT_SEED: usize = 128 << 10;
/// A Data or AtomicWrite payload is cut to this (their bytes are the rest).
const MAX_PAYLOAD_SEED: usize = 2 << 10;

/// Seeds cut from `folders`: `(target, file name, bytes)`.
pub fn seeds_from(folders: &[Folder]) -> Vec<(Target, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |t: Target, name: String, b: Vec<u8>| {
        if seen.insert((t, fnv64(&b))) {
            out.push((t, name, b));
        }
    };
    for f in folders {
        let mut segments: Vec<&(String, Vec<u8>)> =
            f.files.iter().filter(|(n, _)| is_segment(n)).collect();
        segments.sort_by_key(|(_, b)| b.len());
        for (n, b) in segments.into_iter().take(4) {
            if b.len() <= MAX_SEGMENT_SEED {
                push(Target::Segment, format!("{}-{n}", f.name), b.clone());
            }
        }
        for (n, b) in f.files.iter().filter(|(n, _)| is_container(n)) {
            let stem = n.trim_end_matches(".log");
            if b.len() >= FILE_HEADER_LEN {
                push(
                    Target::Header,
                    format!("{}-{stem}.bin", f.name),
                    b[..FILE_HEADER_LEN].to_vec(),
                );
            }
            let frames = record_frames(b, FILE_HEADER_LEN);
            if frames.is_empty() {
                continue;
            }
            // Runs: from the first record, to the last ones, and from the two
            // smallest records of every kind.
            let mut starts = vec![0, frames.len().saturating_sub(4)];
            let mut by_kind: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
            for (i, fr) in frames.iter().enumerate() {
                by_kind.entry(fr.2).or_default().push(i);
            }
            for (kind, mut idx) in by_kind {
                idx.sort_by_key(|&i| frames[i].1);
                starts.extend(idx.iter().take(2));
                for &i in idx.iter().take(2) {
                    let (pos, framed, _) = frames[i];
                    let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
                    let _ = framed;
                    let mut p = vec![kind];
                    let payload = &b[pos + 32..pos + 32 + len];
                    // Kinds whose bytes are the rest of the payload stay valid cut.
                    let cut = if kind == 2 || kind == 5 {
                        len.min(MAX_PAYLOAD_SEED)
                    } else {
                        len
                    };
                    p.extend_from_slice(&payload[..cut]);
                    if p.len() <= MAX_SINGLE_RECORD {
                        push(
                            Target::Payload,
                            format!("{}-{stem}-{pos}-k{kind}.bin", f.name),
                            p,
                        );
                    }
                }
            }
            for s in starts {
                let (pos, _, _) = frames[s];
                let mut end = pos;
                for fr in &frames[s..frames.len().min(s + 4)] {
                    let next = (fr.0 + fr.1).min(b.len());
                    if next - pos > MAX_RUN && end > pos {
                        break;
                    }
                    end = next;
                }
                if end - pos <= MAX_SINGLE_RECORD {
                    push(
                        Target::Records,
                        format!("{}-{stem}-{pos}.bin", f.name),
                        b[pos..end].to_vec(),
                    );
                }
            }
        }
    }
    out
}

/// Writes the seeds of `folders` into `dir/<target>/` (replacing what was
/// there). Returns `(files, bytes)` per target.
pub fn generate(
    folders: &[Folder],
    dir: &Path,
) -> std::io::Result<BTreeMap<Target, (usize, usize)>> {
    let mut counts = BTreeMap::new();
    for t in Target::DECODERS {
        let d = dir.join(t.name());
        if d.exists() {
            std::fs::remove_dir_all(&d)?;
        }
        std::fs::create_dir_all(&d)?;
    }
    for (t, name, bytes) in seeds_from(folders) {
        std::fs::write(dir.join(t.name()).join(&name), &bytes)?;
        let c = counts.entry(t).or_insert((0, 0));
        c.0 += 1;
        c.1 += bytes.len();
    }
    Ok(counts)
}

/// The seeds of `target` in `dir/<target>/`, in name order.
pub fn load(dir: &Path, target: Target) -> std::io::Result<Vec<Vec<u8>>> {
    let d = dir.join(target.name());
    let mut names: Vec<PathBuf> = std::fs::read_dir(&d)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    names.iter().map(std::fs::read).collect()
}
