//! A delete tantivy 0.27 loses, on every directory: the finding behind the
//! stress tool's one "phantom" (an acknowledged delete that came back).
//!
//! `IndexWriter::new` (every `Index::writer*` call and every `rollback`) starts
//! its stamper at the committed opstamp `N`, and `Stamper::stamp` returns the
//! value *before* incrementing it: the first operation of a new writer gets
//! opstamp `N`, the same number as the commit it follows. A merge started
//! before the next commit (by the merge policy, or `IndexWriter::merge`)
//! advances the deletes of its input segments to target `N`:
//! `advance_deletes` returns early for a segment whose delete opstamp is
//! already `N` (so that op is never applied to it), while for the first input
//! segment `compute_deleted_bitset` applies every op `<= N` and moves the
//! cursor past it. The merged segment takes that first segment's cursor, so
//! the op stamped `N` is never applied to the documents of the other segment:
//! the delete is acknowledged by the next commit and the document is back.
//!
//! This test shows the loss is tantivy's (it happens on `RamDirectory` and
//! `MmapDirectory` as on jocky) and that the workaround the stress tool uses
//! holds on all three: spend opstamp `N` on a delete that matches nothing,
//! right after creating the writer.

use std::path::Path;

use jocky::JockyDirectory;
use tantivy::collector::Count;
use tantivy::directory::{MmapDirectory, RamDirectory};
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Schema, FAST, INDEXED};
use tantivy::{doc, Directory, Index, IndexWriter, Term};

/// Builds the situation, returns how many documents with id `victim` a fresh
/// reader sees after the delete was committed (0 is right).
fn deleted_doc_count(dir: Box<dyn Directory>, spend_first_opstamp: bool) -> usize {
    let mut sb = Schema::builder();
    let id = sb.add_u64_field("id", INDEXED | FAST);
    let index = Index::create(dir, sb.build(), Default::default()).unwrap();
    let victim = 7u64;
    {
        let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        w.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
        // Segment A holds the victim; segment B other documents.
        for i in 0..10u64 {
            w.add_document(doc!(id => i)).unwrap();
        }
        w.commit().unwrap();
        for i in 100..110u64 {
            w.add_document(doc!(id => i)).unwrap();
        }
        w.commit().unwrap();
        // A delete in segment A in the last commit: A's delete opstamp is the
        // committed opstamp N.
        w.delete_term(Term::from_field_u64(id, 3));
        w.commit().unwrap();
    }
    let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    w.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    if spend_first_opstamp {
        w.delete_term(Term::from_field_u64(id, u64::MAX));
    }
    // First operation of the new writer: opstamp N.
    w.delete_term(Term::from_field_u64(id, victim));
    let metas = index.searchable_segment_metas().unwrap();
    // Segment B first: its cursor (moved past op N) becomes the merged one's.
    let mut ids: Vec<_> = metas.iter().map(|m| m.id()).collect();
    ids.sort_by_key(|sid| {
        metas
            .iter()
            .find(|m| m.id() == *sid)
            .map(|m| m.has_deletes())
    });
    w.merge(&ids).wait().unwrap();
    w.commit().unwrap();
    drop(w);
    let reader = index.reader().unwrap();
    let q = TermQuery::new(Term::from_field_u64(id, victim), IndexRecordOption::Basic);
    reader.searcher().search(&q, &Count).unwrap()
}

fn mmap_dir(path: &Path) -> MmapDirectory {
    std::fs::create_dir(path).unwrap();
    MmapDirectory::open(path).unwrap()
}

fn jocky_dir(path: &Path) -> Box<dyn Directory> {
    Box::new(JockyDirectory::open(path).unwrap())
}

#[test]
fn tantivy_loses_the_first_delete_of_a_new_writer_on_every_directory() {
    // The loss is tantivy's: the same on a RamDirectory and an MmapDirectory
    // as on jocky. If a tantivy upgrade fixes it, this test fails: then drop
    // the workaround from the stress tool and this test.
    let t = tempfile::tempdir().unwrap();
    let ram = deleted_doc_count(Box::new(RamDirectory::create()), false);
    let mmap = deleted_doc_count(Box::new(mmap_dir(&t.path().join("mmap"))), false);
    std::fs::create_dir(t.path().join("jocky")).unwrap();
    let jocky = deleted_doc_count(jocky_dir(&t.path().join("jocky")), false);
    assert_eq!((ram, mmap, jocky), (1, 1, 1), "ram, mmap, jocky");
}

#[test]
fn spending_the_first_opstamp_keeps_the_delete_on_every_directory() {
    let t = tempfile::tempdir().unwrap();
    let ram = deleted_doc_count(Box::new(RamDirectory::create()), true);
    let mmap = deleted_doc_count(Box::new(mmap_dir(&t.path().join("mmap"))), true);
    std::fs::create_dir(t.path().join("jocky")).unwrap();
    let jocky = deleted_doc_count(jocky_dir(&t.path().join("jocky")), true);
    assert_eq!((ram, mmap, jocky), (0, 0, 0), "ram, mmap, jocky");
}
