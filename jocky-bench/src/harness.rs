//! Whole-index lifecycle runner, generic over any tantivy [`Directory`].
//!
//! [`run_lifecycle`] indexes generated documents, commits several times, deletes
//! documents, merges everything, collects garbage, closes the index, reopens it through a
//! fresh directory handle and runs [`corpus::default_queries`]. Its [`LifecycleOutcome`]
//! is deterministic, so two directory implementations fed the same configuration must
//! return equal outcomes. The building blocks ([`schema`], [`index_docs`], [`merge_all`],
//! [`run_query`], …) are public for benchmarks and examples.
//!
//! ## Why the outcome is deterministic
//!
//! With several indexing threads, which document lands in which segment (and the doc ids
//! inside the final segment) varies between runs. The outcome therefore only contains
//! figures that do not depend on it:
//!
//! * hit counts;
//! * top 10 ordered by (BM25 score descending, `id` ascending), computed inside the
//!   collector so that score ties at the cut-off are resolved by `id`, not by doc address;
//! * BM25 statistics that are identical whatever the segment layout. A merge computes a
//!   field's total token count exactly for segments without deletes but estimates it from
//!   the fieldnorms of the alive documents for segments with deletes, so the count after
//!   one merge depends on which input segments happened to have deletes. The lifecycle
//!   therefore deletes one more document after the first full merge and merges the single
//!   remaining segment again: that count comes only from the alive documents'
//!   fieldnorms, which do not depend on the layout.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tantivy::collector::sort_key::{SortBySimilarityScore, SortByStaticFastValue};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::Directory;
use tantivy::indexer::NoMergePolicy;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, Schema, Value, FAST, INDEXED, STORED, TEXT};
use tantivy::{
    Document, Index, IndexReader, IndexSettings, IndexWriter, Order, ReloadPolicy, Searcher,
    TantivyDocument, TantivyError, Term,
};

use crate::corpus::{self, Doc};

/// Name of the `id` field (u64, fast, indexed, stored).
pub const ID_FIELD: &str = "id";
/// Name of the `title` field (text, stored).
pub const TITLE_FIELD: &str = "title";
/// Name of the `body` field (text, stored).
pub const BODY_FIELD: &str = "body";
/// Number of hits fetched per query.
pub const TOP_K: usize = 10;

/// The fields of [`schema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    /// `id`: u64, FAST | INDEXED | STORED.
    pub id: Field,
    /// `title`: TEXT | STORED.
    pub title: Field,
    /// `body`: TEXT | STORED.
    pub body: Field,
}

/// The schema used by the harness, the benchmarks and the examples.
pub fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let id = builder.add_u64_field(ID_FIELD, FAST | INDEXED | STORED);
    let title = builder.add_text_field(TITLE_FIELD, TEXT | STORED);
    let body = builder.add_text_field(BODY_FIELD, TEXT | STORED);
    (builder.build(), Fields { id, title, body })
}

/// Looks up the [`Fields`] of an index created with [`schema`].
pub fn fields_of(schema: &Schema) -> tantivy::Result<Fields> {
    Ok(Fields {
        id: schema.get_field(ID_FIELD)?,
        title: schema.get_field(TITLE_FIELD)?,
        body: schema.get_field(BODY_FIELD)?,
    })
}

/// Converts a corpus document into a tantivy document.
pub fn to_tantivy(fields: &Fields, doc: &Doc) -> TantivyDocument {
    let mut out = TantivyDocument::new();
    out.add_u64(fields.id, doc.id);
    out.add_text(fields.title, &doc.title);
    out.add_text(fields.body, &doc.body);
    out
}

/// Figures of an [`index_docs`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IndexingStats {
    /// Documents added.
    pub docs: u64,
    /// Bytes of text added (title + body).
    pub text_bytes: u64,
    /// Commits made (including the final one).
    pub commits: u64,
    /// Wall time spent inside `IndexWriter::commit`, which the feeding thread waits
    /// for (tantivy's indexing threads finish their segments, the directory makes them
    /// durable and writes `meta.json`), seconds.
    pub commit_secs: f64,
    /// The longest single commit, seconds.
    pub slowest_commit_secs: f64,
}

impl IndexingStats {
    /// Commits and times it.
    fn commit<D: Document>(&mut self, writer: &mut IndexWriter<D>) -> tantivy::Result<()> {
        let start = std::time::Instant::now();
        writer.commit()?;
        let secs = start.elapsed().as_secs_f64();
        self.commits += 1;
        self.commit_secs += secs;
        self.slowest_commit_secs = self.slowest_commit_secs.max(secs);
        Ok(())
    }
}

/// Adds `docs` to `writer`, committing after every `commit_every` documents and once at
/// the end (if anything was added since the last commit). `commit_every == 0` means only
/// the final commit.
pub fn index_docs<I>(
    writer: &mut IndexWriter,
    fields: &Fields,
    docs: I,
    commit_every: usize,
) -> tantivy::Result<IndexingStats>
where
    I: IntoIterator,
    I::Item: Borrow<Doc>,
{
    index_docs_with_progress(writer, fields, docs, commit_every, None)
}

/// Like [`index_docs`], and adds 1 to `progress` (if given) as each document is handed
/// to the writer.
///
/// `add_document` only queues the document for the indexing threads, and tantivy's queue
/// holds up to 10,000 documents, so this counter runs ahead of the documents actually
/// indexed, in jumps: with `commit_every` ≤ 10,000 it rises by a whole commit's worth
/// at once and then stays still while `commit` waits for the queue to drain. To sample
/// the indexing rate, count the documents the indexing threads have finished with
/// [`CountedDocument`] and [`index_docs_as`].
pub fn index_docs_with_progress<I>(
    writer: &mut IndexWriter,
    fields: &Fields,
    docs: I,
    commit_every: usize,
    progress: Option<&AtomicU64>,
) -> tantivy::Result<IndexingStats>
where
    I: IntoIterator,
    I::Item: Borrow<Doc>,
{
    index_docs_as(
        writer,
        docs,
        commit_every,
        |doc| to_tantivy(fields, doc),
        progress,
    )
}

/// A [`TantivyDocument`] that adds 1 to a shared counter when it is dropped. An
/// `IndexWriter<CountedDocument>` indexes it like the document it wraps, and its
/// indexing thread drops it right after adding it to the segment being built, so the
/// counter tells how many documents the indexing threads have processed (those in a
/// writer dropped without commit, or rolled back, are counted too).
pub struct CountedDocument {
    doc: TantivyDocument,
    counter: Arc<AtomicU64>,
}

impl CountedDocument {
    /// Wraps `doc`; dropping the result adds 1 to `counter`.
    pub fn new(doc: TantivyDocument, counter: Arc<AtomicU64>) -> CountedDocument {
        CountedDocument { doc, counter }
    }
}

impl std::fmt::Debug for CountedDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedDocument")
            .field("doc", &self.doc)
            .finish_non_exhaustive()
    }
}

impl Drop for CountedDocument {
    fn drop(&mut self) {
        self.counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Document for CountedDocument {
    type Value<'a> = <TantivyDocument as Document>::Value<'a>;
    type FieldsValuesIter<'a> = <TantivyDocument as Document>::FieldsValuesIter<'a>;

    fn iter_fields_and_values(&self) -> Self::FieldsValuesIter<'_> {
        self.doc.iter_fields_and_values()
    }
}

/// Like [`index_docs_with_progress`], for a writer of any document type: `make` builds
/// the document to add from each corpus document.
pub fn index_docs_as<D, I>(
    writer: &mut IndexWriter<D>,
    docs: I,
    commit_every: usize,
    mut make: impl FnMut(&Doc) -> D,
    progress: Option<&AtomicU64>,
) -> tantivy::Result<IndexingStats>
where
    D: Document,
    I: IntoIterator,
    I::Item: Borrow<Doc>,
{
    let mut stats = IndexingStats::default();
    let mut since_commit = 0usize;
    for doc in docs {
        let doc = doc.borrow();
        writer.add_document(make(doc))?;
        if let Some(progress) = progress {
            progress.fetch_add(1, Ordering::Relaxed);
        }
        stats.docs += 1;
        stats.text_bytes += doc.text_len() as u64;
        since_commit += 1;
        if commit_every > 0 && since_commit >= commit_every {
            stats.commit(writer)?;
            since_commit = 0;
        }
    }
    if since_commit > 0 {
        stats.commit(writer)?;
    }
    Ok(stats)
}

/// Deletes every document whose id is a multiple of `every` among `0..num_docs`
/// (`every == 0` deletes nothing). Returns the number of delete operations queued; they
/// take effect at the next commit.
pub fn delete_every_nth(writer: &IndexWriter, fields: &Fields, num_docs: u64, every: u64) -> u64 {
    if every == 0 {
        return 0;
    }
    let mut deleted = 0;
    for id in (0..num_docs).step_by(every as usize) {
        writer.delete_term(Term::from_field_u64(fields.id, id));
        deleted += 1;
    }
    deleted
}

/// Merges all searchable segments into one (also a single segment, which purges its
/// deleted documents) and waits for the merge. Does nothing on an empty index.
pub fn merge_all(writer: &mut IndexWriter) -> tantivy::Result<()> {
    let segment_ids = writer.index().searchable_segment_ids()?;
    if !segment_ids.is_empty() {
        writer.merge(&segment_ids).wait()?;
    }
    Ok(())
}

/// A reader that only reloads when asked ([`ReloadPolicy::Manual`]), so that no watcher
/// thread or timing enters the lifecycle.
pub fn manual_reader(index: &Index) -> tantivy::Result<IndexReader> {
    index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
}

/// A query parser over `title` and `body`.
pub fn query_parser(index: &Index, fields: &Fields) -> QueryParser {
    QueryParser::for_index(index, vec![fields.title, fields.body])
}

/// Result of one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    /// The query text.
    pub query: String,
    /// Number of matching (alive) documents.
    pub hits: usize,
    /// `id`s of the best [`TOP_K`] documents by (BM25 score desc, id asc), read from the
    /// stored documents.
    pub top10_ids: Vec<u64>,
}

/// Parses and runs `query`: counts hits, collects the top [`TOP_K`] by (score desc, id
/// asc) and fetches their stored documents. Fails if a stored `id` disagrees with the
/// fast-field `id` the collector saw, which would mean the directory served wrong bytes.
pub fn run_query(
    searcher: &Searcher,
    parser: &QueryParser,
    fields: &Fields,
    query: &str,
) -> tantivy::Result<QueryResult> {
    let parsed = parser.parse_query(query)?;
    let top = TopDocs::with_limit(TOP_K).order_by((
        (SortBySimilarityScore, Order::Desc),
        (
            SortByStaticFastValue::<u64>::for_field(ID_FIELD),
            Order::Asc,
        ),
    ));
    let (hits, top_docs) = searcher.search(&parsed, &(Count, top))?;
    let mut top10_ids = Vec::with_capacity(top_docs.len());
    for ((_score, fast_id), address) in top_docs {
        let stored: TantivyDocument = searcher.doc(address)?;
        let stored_id = stored
            .get_first(fields.id)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| {
                TantivyError::InternalError(format!(
                    "query {query:?}: stored document {address:?} has no id"
                ))
            })?;
        if fast_id != Some(stored_id) {
            return Err(TantivyError::InternalError(format!(
                "query {query:?}: document {address:?} has fast-field id {fast_id:?} \
                 but stored id {stored_id}"
            )));
        }
        top10_ids.push(stored_id);
    }
    Ok(QueryResult {
        query: query.to_string(),
        hits,
        top10_ids,
    })
}

/// Runs every query of `queries` on a fresh searcher of `index`.
pub fn search_all(
    index: &Index,
    fields: &Fields,
    queries: &[String],
) -> tantivy::Result<Vec<QueryResult>> {
    let reader = manual_reader(index)?;
    let searcher = reader.searcher();
    let parser = query_parser(index, fields);
    queries
        .iter()
        .map(|q| run_query(&searcher, &parser, fields, q))
        .collect()
}

/// Parameters of [`run_lifecycle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// Seed of the generated corpus.
    pub seed: u64,
    /// Documents to index (ids `0..num_docs`).
    pub num_docs: usize,
    /// Commit after this many documents.
    pub commit_every: usize,
    /// Delete every document whose id is a multiple of this (0: none).
    pub delete_every: u64,
    /// Indexing threads.
    pub num_threads: usize,
    /// Total indexing heap in bytes (at least 15 MB per thread).
    pub heap_bytes: usize,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            seed: corpus::DEFAULT_SEED,
            num_docs: 6_000,
            commit_every: 1_000,
            delete_every: 7,
            num_threads: 2,
            heap_bytes: 30_000_000,
        }
    }
}

/// What a lifecycle run observed after reopening the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleOutcome {
    /// Alive documents after reopening.
    pub num_docs: u64,
    /// Segments after reopening (1 unless every document was deleted).
    pub num_segments: usize,
    /// Results of [`corpus::default_queries`], in order.
    pub results: Vec<QueryResult>,
}

/// Runs the whole-index lifecycle on `dir`, then reopens the index from `reopen()`:
///
/// 1. create an index with [`schema`] in `dir`;
/// 2. index `cfg.num_docs` generated documents with the default merge policy (background
///    merges happen), committing every `cfg.commit_every`; wait for the merges and close
///    that writer (releasing the writer lock);
/// 3. open a second writer (no merge policy) while a reader stays open; delete every
///    `cfg.delete_every`-th id; commit; merge all segments; commit;
/// 4. delete the smallest surviving id; commit; merge the single segment; commit; collect
///    garbage; close writer, reader, index and directory;
/// 5. open the index from `reopen()`, count alive documents and segments, run the
///    default queries (see [`run_query`]).
///
/// `reopen` must return a new handle on the same storage (e.g. `MmapDirectory::open` of
/// the same path, or a clone of the same `RamDirectory`).
pub fn run_lifecycle(
    dir: Box<dyn Directory>,
    reopen: &dyn Fn() -> tantivy::Result<Box<dyn Directory>>,
    cfg: &LifecycleConfig,
) -> tantivy::Result<LifecycleOutcome> {
    let (schema, fields) = schema();
    {
        let index = Index::create(dir, schema, IndexSettings::default())?;

        // Phase 1: bulk indexing with background merges.
        let mut writer: IndexWriter =
            index.writer_with_num_threads(cfg.num_threads, cfg.heap_bytes)?;
        index_docs(
            &mut writer,
            &fields,
            corpus::generate(cfg.seed, cfg.num_docs),
            cfg.commit_every,
        )?;
        writer.wait_merging_threads()?;

        // Phase 2: deletes and explicit merges under an open reader.
        let reader = manual_reader(&index)?;
        let mut writer: IndexWriter =
            index.writer_with_num_threads(cfg.num_threads, cfg.heap_bytes)?;
        writer.set_merge_policy(Box::new(NoMergePolicy));
        delete_every_nth(&writer, &fields, cfg.num_docs as u64, cfg.delete_every);
        writer.commit()?;
        reader.reload()?;
        merge_all(&mut writer)?;
        writer.commit()?;
        reader.reload()?;

        // Phase 3: one more delete, so the final merge works on one segment with deletes
        // (see the module documentation), then garbage collection.
        let extra =
            (0..cfg.num_docs as u64).find(|id| cfg.delete_every == 0 || id % cfg.delete_every != 0);
        if let Some(id) = extra {
            writer.delete_term(Term::from_field_u64(fields.id, id));
        }
        writer.commit()?;
        merge_all(&mut writer)?;
        writer.commit()?;
        reader.reload()?;
        let _searcher_kept_during_gc = reader.searcher();
        writer.garbage_collect_files().wait()?;
        writer.wait_merging_threads()?;
        // reader, searcher, index and the directory are dropped here.
    }

    let index = Index::open(reopen()?)?;
    let fields = fields_of(&index.schema())?;
    let reader = manual_reader(&index)?;
    let searcher = reader.searcher();
    let parser = query_parser(&index, &fields);
    let results = corpus::default_queries()
        .iter()
        .map(|q| run_query(&searcher, &parser, &fields, q))
        .collect::<tantivy::Result<Vec<_>>>()?;
    Ok(LifecycleOutcome {
        num_docs: searcher.num_docs(),
        num_segments: searcher.segment_readers().len(),
        results,
    })
}

/// Parses a `--write-mode` argument of the examples.
pub fn parse_write_mode(s: &str) -> Result<jocky::WriteMode, String> {
    match s {
        "buffered" => Ok(jocky::WriteMode::Buffered),
        "direct" => Ok(jocky::WriteMode::Direct),
        "inline" => Ok(jocky::WriteMode::Inline),
        _ => Err(format!("{s:?}: expected buffered, direct or inline")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::directory::{MmapDirectory, RamDirectory};

    fn small() -> LifecycleConfig {
        LifecycleConfig {
            num_docs: 3_000,
            commit_every: 500,
            ..LifecycleConfig::default()
        }
    }

    fn run_mmap(cfg: &LifecycleConfig) -> LifecycleOutcome {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().to_path_buf();
        let dir = MmapDirectory::open(&path).unwrap();
        let reopen =
            || -> tantivy::Result<Box<dyn Directory>> { Ok(Box::new(MmapDirectory::open(&path)?)) };
        run_lifecycle(Box::new(dir), &reopen, cfg).unwrap()
    }

    fn run_ram(cfg: &LifecycleConfig) -> LifecycleOutcome {
        let dir = RamDirectory::create();
        let shared = dir.clone();
        let reopen =
            move || -> tantivy::Result<Box<dyn Directory>> { Ok(Box::new(shared.clone())) };
        run_lifecycle(Box::new(dir), &reopen, cfg).unwrap()
    }

    fn check_sane(outcome: &LifecycleOutcome, cfg: &LifecycleConfig) {
        let n = cfg.num_docs as u64;
        let deleted = n.div_ceil(cfg.delete_every) + 1;
        assert_eq!(outcome.num_docs, n - deleted);
        assert_eq!(outcome.num_segments, 1);
        assert_eq!(outcome.results.len(), corpus::default_queries().len());
        let with_hits = outcome.results.iter().filter(|r| r.hits > 0).count();
        assert_eq!(with_hits, outcome.results.len(), "{outcome:#?}");
        for r in &outcome.results {
            assert_eq!(r.top10_ids.len(), r.hits.min(TOP_K), "{r:?}");
            assert!(r
                .top10_ids
                .iter()
                .all(|id| id % cfg.delete_every != 0 && *id != 1));
        }
    }

    #[test]
    fn two_mmap_directories_agree() {
        let cfg = small();
        let a = run_mmap(&cfg);
        let b = run_mmap(&cfg);
        check_sane(&a, &cfg);
        assert_eq!(a, b);
    }

    #[test]
    fn mmap_and_ram_directories_agree() {
        let cfg = small();
        let a = run_mmap(&cfg);
        let b = run_ram(&cfg);
        check_sane(&b, &cfg);
        assert_eq!(a, b);
    }

    #[test]
    fn progress_counter_counts_every_document() {
        let (schema, fields) = schema();
        let index = Index::create_in_ram(schema);
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let docs: Vec<Doc> = corpus::generate(7, 250).collect();
        let progress = AtomicU64::new(0);
        let stats =
            index_docs_with_progress(&mut writer, &fields, &docs, 100, Some(&progress)).unwrap();
        assert_eq!(progress.load(Ordering::Relaxed), 250);
        assert_eq!(stats.docs, 250);
        assert_eq!(stats.commits, 3);
        let reader = manual_reader(&index).unwrap();
        assert_eq!(reader.searcher().num_docs(), 250);
    }

    #[test]
    fn counted_documents_are_counted_once_indexed() {
        let (schema, fields) = schema();
        let index = Index::create_in_ram(schema);
        let mut writer: IndexWriter<CountedDocument> =
            index.writer_with_num_threads(2, 30_000_000).unwrap();
        let docs: Vec<Doc> = corpus::generate(7, 300).collect();
        let indexed = Arc::new(AtomicU64::new(0));
        let handed = AtomicU64::new(0);
        let stats = index_docs_as(
            &mut writer,
            &docs,
            120,
            |d| CountedDocument::new(to_tantivy(&fields, d), Arc::clone(&indexed)),
            Some(&handed),
        )
        .unwrap();
        // Every commit waits for the queued documents to be indexed.
        assert_eq!(indexed.load(Ordering::Relaxed), 300);
        assert_eq!(handed.load(Ordering::Relaxed), 300);
        assert_eq!(stats.commits, 3);
        writer.wait_merging_threads().unwrap();
        let reader = manual_reader(&index).unwrap();
        let searcher = reader.searcher();
        assert_eq!(searcher.num_docs(), 300);
        // The stored documents are the wrapped ones.
        let outcome = search_all(&index, &fields, &corpus::default_queries()).unwrap();
        let reference = {
            let plain = Index::create_in_ram(index.schema());
            let mut w: IndexWriter = plain.writer_with_num_threads(1, 15_000_000).unwrap();
            index_docs(&mut w, &fields, &docs, 120).unwrap();
            search_all(&plain, &fields, &corpus::default_queries()).unwrap()
        };
        assert_eq!(outcome, reference);
    }

    #[test]
    fn query_result_ids_match_a_brute_force_count() {
        // Cross-check hit counts of a single-term query against the generated text.
        let cfg = small();
        let outcome = run_ram(&cfg);
        let term = corpus::vocabulary()[50].clone();
        let expected = corpus::generate(cfg.seed, cfg.num_docs)
            .filter(|d| d.id % cfg.delete_every != 0 && d.id != 1)
            .filter(|d| {
                [&d.title, &d.body].iter().any(|t| {
                    t.split(|c: char| !c.is_alphanumeric())
                        .any(|w| w.eq_ignore_ascii_case(&term))
                })
            })
            .count();
        let result = outcome
            .results
            .iter()
            .find(|r| r.query == term)
            .expect("rank-50 single-term query is a default query");
        assert_eq!(result.hits, expected);
    }
}
