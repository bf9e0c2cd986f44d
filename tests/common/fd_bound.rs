//! The descriptor bound, counted from /proc/self/fd while two indexing threads
//! commit, merge and collect garbage, a reader reloads, and every committed
//! segment is exported. Each test binary that uses it holds one test, so that
//! no other test's descriptors are counted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use jocky::{ExportCopy, JockyDirectory, Stats};
use tantivy::schema::{Schema, STORED, TEXT};
use tantivy::{doc, Index, IndexWriter, ReloadPolicy};

/// Open descriptors, not counting the one used to list them.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Runs the workload with the export copying as `copy` says, checks that it
/// rotated container files, exported segments and holds 2 descriptors at the
/// end; returns the peak of descriptors above the baseline and the stats.
/// `build`: segments are built in place (the default); without, every byte
/// goes to the container first and the export copies it (the path
/// `ExportCopy::AnyFile` copies in the kernel).
pub fn run(copy: ExportCopy, build: bool) -> (usize, Stats) {
    let tmp = tempfile::tempdir().unwrap();
    let baseline = open_fds();
    let maps_before = mappings();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(open_fds(), Ordering::SeqCst);
                samples += 1;
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            samples
        })
    };

    let mut b = Schema::builder();
    let body = b.add_text_field("body", TEXT | STORED);
    let schema = b.build();
    let dir = JockyDirectory::builder(tmp.path().join("idx"))
        .container_file_size(1 << 20) // several rotations during the run
        .preallocate(256 << 10)
        // Export every committed segment, so export runs throughout.
        .export_policy(jocky::ExportPolicy::OnCommit {
            min_segment_bytes: 0,
        })
        .export_copy(copy)
        .build_in_place(build)
        .open()
        .unwrap();
    let index = Index::create(dir.clone(), schema, Default::default()).unwrap();
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::OnCommitWithDelay)
        .try_into()
        .unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(2, 30_000_000).unwrap();
    for c in 0..8u64 {
        for i in 0..2000u64 {
            let n = c * 2000 + i;
            // Enough words that files of the merged segments pass a chunk
            // (so that some are built in place).
            let words: Vec<String> = (0..24)
                .map(|k| format!("w{}", (n * 31 + k * 7919) % 20_011))
                .collect();
            writer
                .add_document(doc!(body => format!(
                    "doc {n} word{} word{} shared text {}",
                    n % 97,
                    n % 1013,
                    words.join(" ")
                )))
                .unwrap();
        }
        writer.commit().unwrap();
        reader.reload().unwrap();
    }
    // Background merges ran meanwhile; now merge what is left into one segment.
    writer.wait_merging_threads().unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(2, 30_000_000).unwrap();
    writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    let ids = index.searchable_segment_ids().unwrap();
    writer.merge(&ids).wait().unwrap();
    writer.commit().unwrap();
    writer.garbage_collect_files().wait().unwrap();
    writer.wait_merging_threads().unwrap();
    reader.reload().unwrap();
    assert_eq!(reader.searcher().num_docs(), 16_000);

    // Background export and reclamation (sampled too) finish within the bound.
    dir.wait_for_background_work();
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.join().unwrap();
    let stats = dir.stats();
    let peak_extra = peak.load(Ordering::SeqCst) - baseline;
    println!(
        "fd bound: baseline {baseline}, peak extra {peak_extra} over {samples} samples; \
         jocky says {} fds held, {} mappings ({} container files); process mappings +{}",
        stats.fds_held,
        stats.mappings,
        stats.container_files,
        mappings().saturating_sub(maps_before)
    );
    assert!(samples > 10);
    assert!(
        stats.container_files + stats.container_files_reclaimed as usize > 1,
        "the run should rotate"
    );
    assert!(stats.segment_files > 0, "{stats:?}");
    // Segments were built in place while others were exported: the bound
    // covers both at once.
    assert_eq!(stats.segments_built_in_place > 0, build, "{stats:?}");
    assert_eq!(stats.fds_held, 2);
    (peak_extra, stats)
}
