//! A damage sweep: copies of a real exported index and of a real 3-tenant store,
//! each damaged once at random (bit flips, random bytes, zeroed ranges,
//! truncation, appended garbage, a block copied over another, a huge length
//! field, a removed file), opened and searched. Each run ends in one of:
//! detected (open or a read fails with an error), harmless (results as before:
//! the damage hit bytes nothing reads), undetected (different results, no
//! error: damaged bytes reached tantivy), or a panic. No run may panic, and at
//! most 1% may be undetected.
//!
//! `JOCKY_SWEEP_RUNS` sets the runs per folder (default 120);
//! `JOCKY_SWEEP_VERIFY=on-request` turns the check before serving off, to
//! see what it catches (the test then fails).

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use jocky::testing::SimStorage;
use jocky::{ExportPolicy, JockyDirectory, VerifyPolicy, WriteMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::QueryParser;
use tantivy::schema::{Schema, Value, STORED, TEXT};
use tantivy::{doc, Index, IndexWriter, TantivyDocument};

const TENANTS: [&str; 3] = ["t0", "t1", "t2"];

fn schema() -> (Schema, tantivy::schema::Field) {
    let mut b = Schema::builder();
    let body = b.add_text_field("body", TEXT | STORED);
    (b.build(), body)
}

fn builder(s: &SimStorage) -> jocky::Builder {
    JockyDirectory::builder("/sim")
        .storage(Arc::new(s.clone()))
        .container_file_size(1 << 20)
        .preallocate(64 << 10)
        .write_mode(WriteMode::Inline)
        .export_policy(ExportPolicy::Manual)
        .verify(
            if std::env::var("JOCKY_SWEEP_VERIFY").as_deref() == Ok("on-request") {
                // For comparison only: what reaches tantivy without the check.
                VerifyPolicy::OnRequest
            } else {
                VerifyPolicy::OnFirstRead
            },
        )
}

fn index_into(dir: JockyDirectory, seed: usize) {
    let (schema, body) = schema();
    let index = Index::open_or_create(dir, schema).unwrap();
    let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    for c in 0..3 {
        for i in 0..200 {
            let n = seed * 100_000 + c * 1000 + i;
            let text: String = (0..30)
                .map(|k| format!("w{} ", (n * 7919 + k * 104_729) % 800))
                .collect();
            w.add_document(doc!(body => format!("common {text}")))
                .unwrap();
        }
        w.commit().unwrap();
    }
}

fn make(store: bool) -> BTreeMap<String, Vec<u8>> {
    let s = SimStorage::new();
    if store {
        let st = builder(&s).open_store().unwrap();
        for (i, t) in TENANTS.iter().enumerate() {
            index_into(st.directory(t).unwrap(), i);
        }
        st.export_committed().unwrap();
    } else {
        let dir = builder(&s).open().unwrap();
        index_into(dir.clone(), 0);
        dir.export_committed().unwrap();
    }
    common::files_of(&s)
}

/// What a search of one index shows: hit counts and the stored text of the top hits.
fn search(dir: JockyDirectory) -> tantivy::Result<String> {
    let index = Index::open(dir)?;
    let (_, body) = schema();
    let searcher = index.reader()?.searcher();
    let mut out = String::new();
    for q in ["common", "w1", "w17 w400", "w799"] {
        let q = QueryParser::for_index(&index, vec![body]).parse_query(q)?;
        let (n, top) = searcher.search(&q, &(Count, TopDocs::with_limit(5).order_by_score()))?;
        out.push_str(&format!("{n}:"));
        for (_, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            let text = d.get_first(body).and_then(|v| v.as_str()).unwrap_or("");
            out.push_str(&text[..text.len().min(40)]);
            out.push('|');
        }
    }
    Ok(out)
}

/// Opens the folder and searches every index in it; an error is detection.
fn outcome(files: &BTreeMap<String, Vec<u8>>, store: bool) -> Result<String, String> {
    let s = common::disk_of(files);
    if store {
        let st = builder(&s).open_store().map_err(|e| e.to_string())?;
        let mut all = String::new();
        for t in TENANTS {
            all +=
                &search(st.directory(t).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        }
        Ok(all)
    } else {
        let dir = builder(&s).open().map_err(|e| e.to_string())?;
        search(dir).map_err(|e| e.to_string())
    }
}

fn damage(files: &mut BTreeMap<String, Vec<u8>>, rng: &mut StdRng) -> String {
    let names: Vec<String> = files.keys().cloned().collect();
    let name = names[rng.random_range(0..names.len())].clone();
    let f = files.get_mut(&name).unwrap();
    let len = f.len().max(1);
    let at = rng.random_range(0..len).min(f.len().saturating_sub(1));
    let kind = rng.random_range(0..8);
    match kind {
        0 => {
            f[at] ^= 1 << rng.random_range(0..8);
            format!("{name}: bit flip at {at}")
        }
        1 => {
            let n = rng.random_range(1..=16).min(f.len() - at);
            for b in &mut f[at..at + n] {
                *b = rng.random();
            }
            format!("{name}: {n} random bytes at {at}")
        }
        2 => {
            let n = rng.random_range(1..=4096).min(f.len() - at);
            f[at..at + n].fill(0);
            format!("{name}: {n} zeros at {at}")
        }
        3 => {
            f.truncate(at);
            format!("{name}: truncated to {at}")
        }
        4 => {
            let n = rng.random_range(1..=8192);
            f.extend((0..n).map(|_| rng.random::<u8>()));
            format!("{name}: {n} bytes of garbage appended")
        }
        5 if f.len() >= 8192 => {
            let from = rng.random_range(0..f.len() / 4096) * 4096;
            let to = rng.random_range(0..f.len() / 4096) * 4096;
            let block: Vec<u8> = f[from..(from + 4096).min(f.len())].to_vec();
            let end = (to + block.len()).min(f.len());
            f[to..end].copy_from_slice(&block[..end - to]);
            format!("{name}: block {from} copied over {to}")
        }
        6 if f.len() >= 8 => {
            let at = (at / 4 * 4).min(f.len() - 4);
            f[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            format!("{name}: huge length at {at}")
        }
        _ => {
            files.remove(&name);
            format!("{name}: removed")
        }
    }
}

#[derive(Default, Debug)]
struct Tally {
    detected: usize,
    harmless: usize,
    undetected: Vec<String>,
    panics: Vec<String>,
}

fn sweep(store: bool, seed: u64) -> Tally {
    let runs: usize = std::env::var("JOCKY_SWEEP_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let pristine = make(store);
    let expected = outcome(&pristine, store).expect("the pristine folder opens");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = Tally::default();
    for _ in 0..runs {
        let mut files = pristine.clone();
        let what = damage(&mut files, &mut rng);
        match catch_unwind(AssertUnwindSafe(|| outcome(&files, store))) {
            Err(_) => t.panics.push(what),
            Ok(Err(_)) => t.detected += 1,
            Ok(Ok(r)) if r == expected => t.harmless += 1,
            Ok(Ok(_)) => t.undetected.push(what),
        }
    }
    eprintln!(
        "damage sweep ({}): {runs} runs: {} detected, {} harmless, {} undetected {:?}, {} panics {:?}",
        if store { "3-tenant store" } else { "single index" },
        t.detected,
        t.harmless,
        t.undetected.len(),
        t.undetected,
        t.panics.len(),
        t.panics
    );
    assert!(t.panics.is_empty(), "panics: {:?}", t.panics);
    assert!(
        t.undetected.len() * 100 <= runs,
        "damage reached tantivy undetected in {} of {runs} runs: {:?}",
        t.undetected.len(),
        t.undetected
    );
    t
}

#[test]
fn damage_to_a_single_index_is_detected_before_tantivy_reads_it() {
    std::panic::set_hook(Box::new(|_| {}));
    sweep(false, 1);
}

#[test]
fn damage_to_a_store_is_detected_before_tantivy_reads_it() {
    std::panic::set_hook(Box::new(|_| {}));
    sweep(true, 2);
}
