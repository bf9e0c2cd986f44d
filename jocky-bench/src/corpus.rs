//! Documents to index: a deterministic built-in generator and loaders for user corpora.
//!
//! The generator needs no files and no external randomness crate, so tests, examples and
//! benchmarks run the same on a fresh machine:
//!
//! * a fixed vocabulary of [`VOCAB_SIZE`] pseudo-words (lowercase ASCII letters, built from
//!   syllables by a small self-written PRNG seeded with [`VOCAB_SEED`]); word rank 0 is the
//!   most frequent, and shorter words get the frequent ranks, as in natural language;
//! * word draws follow a Zipf distribution with exponent 1.0 (`P(rank r) ∝ 1 / (r + 1)`);
//! * the document `seed` drives everything else (titles, sentence shapes, body lengths).
//!   Every document is generated from its own PRNG stream derived from `(seed, id)`, so
//!   [`Corpus::doc`] is random access and the output is identical across runs and machines
//!   (only integer arithmetic and IEEE-exact `f64` additions and divisions are involved).
//!
//! Body lengths vary from 30 to about 1,400 words, averaging about 300 words, which makes
//! roughly 1.6 KB of text per document (see [`AVG_DOC_BYTES`]).
//!
//! The vocabulary does not depend on the document seed, so [`default_queries`] hits every
//! generated corpus whatever its seed.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

/// Number of distinct words in the generated vocabulary.
pub const VOCAB_SIZE: usize = 30_000;
/// Seed of the vocabulary PRNG; fixed so that the vocabulary (and the default queries)
/// are the same for every document seed.
pub const VOCAB_SEED: u64 = 0x6a6f_636b_795f_766f; // "jocky_vo"
/// Document seed used by examples and tests when none is given.
pub const DEFAULT_SEED: u64 = 42;
/// Approximate average size in bytes (title + body) of a generated document; use it to
/// pick a number of documents for a wanted amount of text.
pub const AVG_DOC_BYTES: usize = 1_600;
/// Files larger than this are skipped by [`load_tree`].
pub const MAX_TREE_FILE_BYTES: u64 = 1 << 20;

/// One document, as fed to the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// Unique, dense identifier (0, 1, 2, … in generation or load order).
    pub id: u64,
    /// Short title.
    pub title: String,
    /// Main text.
    pub body: String,
}

impl Doc {
    /// Bytes of text in the document (title + body).
    pub fn text_len(&self) -> usize {
        self.title.len() + self.body.len()
    }
}

/// SplitMix64: a tiny, fast, well-mixed 64-bit PRNG (Steele, Lea, Flood 2014).
///
/// Used instead of an external crate so the generated corpus never changes under us.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (negligible bias for small `n`).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The SplitMix64 finalizer: a bijective 64-bit mixer.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fixed vocabulary and its Zipf cumulative distribution.
#[derive(Debug)]
struct Vocabulary {
    /// Words by rank (0 = most frequent).
    words: Vec<String>,
    /// `cdf[r]` = P(rank <= r); the last entry is 1.0.
    cdf: Vec<f64>,
}

const ONSETS: &[&str] = &[
    "", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
    "br", "cl", "dr", "fl", "gr", "kr", "pl", "pr", "sk", "sl", "sp", "st", "str", "th", "tr",
    "ch", "sh",
];
const VOWELS: &[&str] = &[
    "a", "e", "i", "o", "u", "a", "e", "i", "o", "y", "ai", "ea", "ou", "io", "ee",
];
const CODAS: &[&str] = &[
    "", "", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "rk", "x", "ng",
];
/// Words the query parser treats as operators (case-insensitively, to be safe).
const RESERVED: &[&str] = &["and", "or", "not", "to", "in"];

impl Vocabulary {
    fn build() -> Vocabulary {
        let mut rng = SplitMix64::new(VOCAB_SEED);
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(VOCAB_SIZE * 2);
        let mut words: Vec<String> = Vec::with_capacity(VOCAB_SIZE);
        while words.len() < VOCAB_SIZE {
            // 1 to 4 syllables, short words more likely.
            let syllables = match rng.below(10) {
                0..=1 => 1,
                2..=5 => 2,
                6..=8 => 3,
                _ => 4,
            };
            let mut word = String::new();
            for _ in 0..syllables {
                word.push_str(ONSETS[rng.below(ONSETS.len() as u64) as usize]);
                word.push_str(VOWELS[rng.below(VOWELS.len() as u64) as usize]);
                word.push_str(CODAS[rng.below(CODAS.len() as u64) as usize]);
            }
            if word.len() < 2 || RESERVED.contains(&word.as_str()) || seen.contains_key(&word) {
                continue;
            }
            seen.insert(word.clone(), words.len());
            words.push(word);
        }
        // Shorter words get the frequent ranks; ties keep generation order (stable sort).
        words.sort_by_key(|w| w.len());

        let mut cdf = Vec::with_capacity(VOCAB_SIZE);
        let mut total = 0.0f64;
        for rank in 0..VOCAB_SIZE {
            total += 1.0 / (rank as f64 + 1.0);
            cdf.push(total);
        }
        for c in cdf.iter_mut() {
            *c /= total;
        }
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Vocabulary { words, cdf }
    }

    fn get() -> &'static Vocabulary {
        static VOCAB: OnceLock<Vocabulary> = OnceLock::new();
        VOCAB.get_or_init(Vocabulary::build)
    }

    /// Draws a word rank from the Zipf distribution.
    fn sample_rank(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        // First rank whose cumulative probability exceeds u.
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.words.len() - 1)
    }

    fn sample<'a>(&'a self, rng: &mut SplitMix64) -> &'a str {
        &self.words[self.sample_rank(rng)]
    }
}

/// The fixed generated vocabulary, by rank (index 0 is the most frequent word).
pub fn vocabulary() -> &'static [String] {
    &Vocabulary::get().words
}

/// A deterministic document generator for one seed.
#[derive(Debug, Clone)]
pub struct Corpus {
    seed: u64,
    vocab: &'static Vocabulary,
}

impl Corpus {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Corpus {
        Corpus {
            seed,
            vocab: Vocabulary::get(),
        }
    }

    /// The document seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The vocabulary by rank (shared by all seeds).
    pub fn vocabulary(&self) -> &'static [String] {
        &self.vocab.words
    }

    /// Document number `id`; the same `(seed, id)` always gives the same document.
    pub fn doc(&self, id: u64) -> Doc {
        let mut rng = SplitMix64::new(mix64(self.seed ^ mix64(id.wrapping_add(1))));
        let vocab = self.vocab;

        let title_words = rng.range_inclusive(2, 8);
        let mut title = String::with_capacity(64);
        for i in 0..title_words {
            if i > 0 {
                title.push(' ');
            }
            push_capitalized(&mut title, vocab.sample(&mut rng));
        }

        let body_words = body_length(&mut rng);
        let mut body = String::with_capacity(body_words as usize * 7);
        let mut remaining = body_words;
        while remaining > 0 {
            let sentence = rng.range_inclusive(4, 24).min(remaining);
            remaining -= sentence;
            if !body.is_empty() {
                body.push(' ');
            }
            for i in 0..sentence {
                let word = vocab.sample(&mut rng);
                if i == 0 {
                    push_capitalized(&mut body, word);
                } else {
                    body.push(' ');
                    body.push_str(word);
                    if i + 1 < sentence && rng.below(12) == 0 {
                        body.push(',');
                    }
                }
            }
            body.push('.');
        }
        Doc { id, title, body }
    }

    /// Documents `0..num_docs`.
    pub fn docs(&self, num_docs: usize) -> Docs {
        Docs {
            corpus: self.clone(),
            next: 0,
            end: num_docs as u64,
        }
    }
}

/// Body length in words: a mixture of triangular distributions (short, medium, long
/// documents) with a mean of about 300 words.
fn body_length(rng: &mut SplitMix64) -> u64 {
    let (lo, hi) = match rng.below(10) {
        0..=5 => (30, 330),
        6..=8 => (200, 600),
        _ => (400, 1400),
    };
    let half = (hi - lo) / 2;
    lo + rng.below(half + 1) + rng.below(half + 1)
}

fn push_capitalized(out: &mut String, word: &str) {
    let mut chars = word.chars();
    if let Some(first) = chars.next() {
        out.extend(first.to_uppercase());
        out.push_str(chars.as_str());
    }
}

/// Iterator over generated documents, see [`Corpus::docs`] and [`generate`].
#[derive(Debug, Clone)]
pub struct Docs {
    corpus: Corpus,
    next: u64,
    end: u64,
}

impl Iterator for Docs {
    type Item = Doc;

    fn next(&mut self) -> Option<Doc> {
        if self.next >= self.end {
            return None;
        }
        let doc = self.corpus.doc(self.next);
        self.next += 1;
        Some(doc)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.end - self.next) as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Docs {}

/// The first `num_docs` documents of the generated corpus for `seed`.
pub fn generate(seed: u64, num_docs: usize) -> Docs {
    Corpus::new(seed).docs(num_docs)
}

#[derive(Deserialize)]
struct JsonDoc {
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
}

/// Loads a JSON-lines file: one object per line with string fields `title` and `body`
/// (either may be missing; other fields are ignored). Blank lines are skipped. Documents
/// get ids 0, 1, 2, … in file order.
pub fn load_jsonl(path: impl AsRef<Path>) -> io::Result<Vec<Doc>> {
    let path = path.as_ref();
    let file = fs::File::open(path).map_err(|e| with_path(e, path))?;
    let reader = BufReader::new(file);
    let mut docs = Vec::new();
    for (line_no, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| with_path(e, path))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: JsonDoc = serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}:{}: {e}", path.display(), line_no + 1),
            )
        })?;
        docs.push(Doc {
            id: docs.len() as u64,
            title: parsed.title,
            body: parsed.body,
        });
    }
    Ok(docs)
}

/// One document per regular file under `root` (recursively; symbolic links are not
/// followed), in sorted path order. The title is the path relative to `root`, the body
/// the file contents as lossy UTF-8. Files larger than [`MAX_TREE_FILE_BYTES`] are
/// skipped, and so are files that cannot be read when the iterator reaches them (they are
/// logged). The folder walk happens here, file contents are read lazily.
pub fn load_tree(root: impl AsRef<Path>) -> io::Result<TreeDocs> {
    let root = root.as_ref().to_path_buf();
    let meta = fs::metadata(&root).map_err(|e| with_path(e, &root))?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", root.display()),
        ));
    }
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| with_path(e, &dir))? {
            let entry = entry.map_err(|e| with_path(e, &dir))?;
            let file_type = entry.file_type().map_err(|e| with_path(e, &entry.path()))?;
            if file_type.is_dir() {
                stack.push(entry.path());
            } else if file_type.is_file() {
                let len = entry
                    .metadata()
                    .map_err(|e| with_path(e, &entry.path()))?
                    .len();
                if len <= MAX_TREE_FILE_BYTES {
                    files.push(entry.path());
                }
            }
        }
    }
    files.sort();
    Ok(TreeDocs {
        root,
        files: files.into_iter(),
        next_id: 0,
    })
}

/// Iterator returned by [`load_tree`].
#[derive(Debug)]
pub struct TreeDocs {
    root: PathBuf,
    files: std::vec::IntoIter<PathBuf>,
    next_id: u64,
}

impl Iterator for TreeDocs {
    type Item = Doc;

    fn next(&mut self) -> Option<Doc> {
        for path in self.files.by_ref() {
            match fs::read(&path) {
                Ok(bytes) => {
                    let title = path
                        .strip_prefix(&self.root)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned();
                    let body = match String::from_utf8(bytes) {
                        Ok(s) => s,
                        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    };
                    let id = self.next_id;
                    self.next_id += 1;
                    return Some(Doc { id, title, body });
                }
                Err(e) => log::warn!("skipping {}: {e}", path.display()),
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.files.len()))
    }
}

/// Loads a user corpus: a directory tree (see [`load_tree`]) or a JSON-lines file (see
/// [`load_jsonl`]).
pub fn load_path(path: impl AsRef<Path>) -> io::Result<Vec<Doc>> {
    let path = path.as_ref();
    let meta = fs::metadata(path).map_err(|e| with_path(e, path))?;
    if meta.is_dir() {
        Ok(load_tree(path)?.collect())
    } else {
        load_jsonl(path)
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// About 20 queries that hit the generated corpus (any seed): single frequent, mid and
/// rare terms, two-term AND and OR, phrases, field-restricted and nested boolean queries.
/// Query syntax is tantivy's `QueryParser` with default fields `title` and `body`.
pub fn default_queries() -> Vec<String> {
    let words: Vec<&str> = vocabulary().iter().map(String::as_str).collect();
    queries_from_ranked_terms(&words)
}

/// The same query shapes as [`default_queries`], built from the terms of a user corpus
/// ranked by frequency (see [`ranked_terms`]). Returns fewer queries when there are few
/// distinct terms, and none for an empty list.
pub fn queries_from_ranked_terms(terms: &[&str]) -> Vec<String> {
    if terms.is_empty() {
        return Vec::new();
    }
    // Ranks are those of the 30,000-word generated vocabulary, scaled to the term count.
    let n = terms.len();
    let t = |rank: usize| -> &str {
        let scaled = if n >= VOCAB_SIZE {
            rank
        } else {
            rank * n / VOCAB_SIZE
        };
        terms[scaled.min(n - 1)]
    };
    let queries = vec![
        // single frequent terms
        t(0).to_string(),
        t(1).to_string(),
        t(2).to_string(),
        t(10).to_string(),
        // single mid-frequency terms
        t(50).to_string(),
        t(300).to_string(),
        t(1000).to_string(),
        // single rare terms
        t(5000).to_string(),
        t(15000).to_string(),
        t(29000).to_string(),
        // two-term AND
        format!("{} AND {}", t(0), t(50)),
        format!("{} AND {}", t(3), t(200)),
        format!("{} AND {}", t(20), t(1000)),
        // two-term OR
        format!("{} OR {}", t(5), t(2000)),
        format!("{} OR {}", t(100), t(10000)),
        // phrases
        format!("\"{} {}\"", t(0), t(1)),
        format!("\"{} {}\"", t(2), t(0)),
        // field-restricted
        format!("title:{}", t(4)),
        format!("title:{} AND body:{}", t(30), t(60)),
        // nested boolean and exclusion
        format!("{} AND ({} OR {})", t(7), t(40), t(400)),
        format!("{} -{}", t(1), t(8)),
    ];
    let mut unique = Vec::with_capacity(queries.len());
    for q in queries {
        if !unique.contains(&q) {
            unique.push(q);
        }
    }
    unique
}

/// Terms of `docs` (alphanumeric runs, as tantivy's default tokenizer splits them, kept
/// when ASCII, 2 to 40 bytes long and not all digits; lowercased) ranked by document-text
/// frequency, most frequent first, ties broken alphabetically. Only the first
/// `max_bytes` bytes of text are scanned, to keep this cheap on big corpora.
pub fn ranked_terms(docs: &[Doc], max_bytes: usize) -> Vec<String> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut scanned = 0usize;
    for doc in docs {
        if scanned >= max_bytes {
            break;
        }
        for text in [&doc.title, &doc.body] {
            scanned += text.len();
            for token in text.split(|c: char| !c.is_alphanumeric()) {
                if token.len() < 2
                    || token.len() > 40
                    || !token.is_ascii()
                    || token.bytes().all(|b| b.is_ascii_digit())
                    || RESERVED.contains(&token.to_ascii_lowercase().as_str())
                {
                    continue;
                }
                *counts.entry(token.to_ascii_lowercase()).or_insert(0) += 1;
            }
        }
    }
    let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.into_iter().map(|(term, _)| term).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn count_words(docs: &[Doc]) -> HashMap<String, u64> {
        let mut counts = HashMap::new();
        for doc in docs {
            for token in doc
                .body
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|t| !t.is_empty())
            {
                *counts.entry(token.to_ascii_lowercase()).or_insert(0) += 1;
            }
        }
        counts
    }

    #[test]
    fn same_seed_same_docs() {
        let a: Vec<Doc> = generate(7, 200).collect();
        let b: Vec<Doc> = generate(7, 200).collect();
        assert_eq!(a, b);
        assert_eq!(Corpus::new(7).doc(123), a[123]);
        assert_eq!(
            a.iter().map(|d| d.id).collect::<Vec<_>>(),
            (0..200).collect::<Vec<_>>()
        );
    }

    #[test]
    fn pinned_output_does_not_drift() {
        // Guards cross-machine / cross-version stability of the generator.
        let vocab = vocabulary();
        assert_eq!(vocab.len(), VOCAB_SIZE);
        let doc = Corpus::new(DEFAULT_SEED).doc(0);
        let digest = doc
            .title
            .bytes()
            .chain(doc.body.bytes())
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        // The value is recorded from the first run; changing the generator changes it, and
        // that must be a deliberate decision (benchmarks compare across runs).
        assert_eq!(digest, PINNED_DIGEST, "title={:?}", doc.title);
    }

    const PINNED_DIGEST: u64 = 5_231_007_458_139_003_464;

    #[test]
    fn different_seeds_differ() {
        let a: Vec<Doc> = generate(1, 50).collect();
        let b: Vec<Doc> = generate(2, 50).collect();
        let same = a.iter().zip(&b).filter(|(x, y)| x.body == y.body).count();
        assert_eq!(same, 0);
    }

    #[test]
    fn vocabulary_is_unique_lowercase_and_short_first() {
        let vocab = vocabulary();
        let set: std::collections::HashSet<&String> = vocab.iter().collect();
        assert_eq!(set.len(), vocab.len());
        assert!(vocab
            .iter()
            .all(|w| w.len() >= 2 && w.bytes().all(|b| b.is_ascii_lowercase())));
        assert!(vocab.windows(2).all(|w| w[0].len() <= w[1].len()));
    }

    #[test]
    fn zipf_shape() {
        let docs: Vec<Doc> = generate(3, 2000).collect();
        let counts = count_words(&docs);
        let vocab = vocabulary();
        let c0 = counts.get(&vocab[0]).copied().unwrap_or(0);
        let c99 = counts.get(&vocab[99]).copied().unwrap_or(0);
        let c999 = counts.get(&vocab[999]).copied().unwrap_or(0);
        // Zipf with s = 1: rank 0 is ~100x rank 99 and ~1000x rank 999.
        assert!(c99 > 0, "rank 99 never drawn");
        assert!(c0 > 40 * c99, "c0={c0} c99={c99}");
        assert!(c0 < 250 * c99, "c0={c0} c99={c99}");
        assert!(c99 > 4 * c999, "c99={c99} c999={c999}");
        // The most frequent observed word is rank 0.
        let (top, _) = counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .unwrap();
        assert_eq!(top, &vocab[0]);
    }

    #[test]
    fn body_lengths_vary_around_300_words() {
        let docs: Vec<Doc> = generate(5, 3000).collect();
        let lengths: Vec<usize> = docs.iter().map(|d| d.body.split(' ').count()).collect();
        let avg = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
        assert!((250.0..350.0).contains(&avg), "avg={avg}");
        assert!(*lengths.iter().min().unwrap() < 100);
        assert!(*lengths.iter().max().unwrap() > 1000);
        let avg_bytes = docs.iter().map(Doc::text_len).sum::<usize>() / docs.len();
        let rel = avg_bytes as f64 / AVG_DOC_BYTES as f64;
        assert!((0.9..1.1).contains(&rel), "avg_bytes={avg_bytes}");
    }

    #[test]
    fn default_queries_hit_generated_docs() {
        let queries = default_queries();
        assert!((18..=24).contains(&queries.len()), "{}", queries.len());
        let docs: Vec<Doc> = generate(DEFAULT_SEED, 3000).collect();
        let counts = count_words(&docs);
        // Every term in every query occurs in the corpus.
        for q in &queries {
            for term in q
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|t| !t.is_empty())
                .filter(|t| !["AND", "OR", "title", "body"].contains(t))
            {
                assert!(counts.contains_key(term), "{term} of {q} never occurs");
            }
        }
    }

    #[test]
    fn jsonl_parse() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            r#"{{"title": "First", "body": "hello world", "url": "x"}}"#
        )
        .unwrap();
        writeln!(file).unwrap();
        writeln!(file, r#"{{"body": "no title"}}"#).unwrap();
        writeln!(file, r#"{{"title": "Ünïcode", "body": "a\nb"}}"#).unwrap();
        file.flush().unwrap();
        let docs = load_jsonl(file.path()).unwrap();
        assert_eq!(
            docs,
            vec![
                Doc {
                    id: 0,
                    title: "First".into(),
                    body: "hello world".into()
                },
                Doc {
                    id: 1,
                    title: String::new(),
                    body: "no title".into()
                },
                Doc {
                    id: 2,
                    title: "Ünïcode".into(),
                    body: "a\nb".into()
                },
            ]
        );
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, r#"{{"title": "ok", "body": "fine"}}"#).unwrap();
        writeln!(file, r#"{{"title": 3}}"#).unwrap();
        file.flush().unwrap();
        let err = load_jsonl(file.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(":2:"), "{err}");
        assert!(load_jsonl("/nonexistent/jocky.jsonl").is_err());
    }

    #[test]
    fn tree_is_sorted_recursive_and_skips_big_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("b/c")).unwrap();
        fs::write(dir.path().join("b/c/z.txt"), "deep").unwrap();
        fs::write(dir.path().join("a.txt"), "top").unwrap();
        fs::write(dir.path().join("b/bin"), [0xff, b'o', b'k']).unwrap();
        fs::write(
            dir.path().join("big"),
            vec![b'x'; MAX_TREE_FILE_BYTES as usize + 1],
        )
        .unwrap();
        let docs: Vec<Doc> = load_tree(dir.path()).unwrap().collect();
        let titles: Vec<&str> = docs.iter().map(|d| d.title.as_str()).collect();
        assert_eq!(titles, vec!["a.txt", "b/bin", "b/c/z.txt"]);
        assert_eq!(docs[1].body, "\u{fffd}ok");
        assert_eq!(docs.iter().map(|d| d.id).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(load_path(dir.path()).unwrap(), docs);
        assert!(load_tree(dir.path().join("a.txt")).is_err());
    }

    #[test]
    fn ranked_terms_and_queries_from_user_text() {
        let docs = vec![Doc {
            id: 0,
            title: "Alpha beta".into(),
            body: "alpha alpha beta gamma 12 x".into(),
        }];
        let terms = ranked_terms(&docs, usize::MAX);
        assert_eq!(terms, vec!["alpha", "beta", "gamma"]);
        let refs: Vec<&str> = terms.iter().map(String::as_str).collect();
        let queries = queries_from_ranked_terms(&refs);
        assert!(queries.contains(&"alpha".to_string()));
        assert!(queries_from_ranked_terms(&[]).is_empty());
    }
}
