//! Index a few documents into a `JockyDirectory`, search them, reopen, search again.
//!
//! `cargo run --release --example quickstart [-- PATH]`

use tantivy::collector::{Count, TopDocs};
use tantivy::query::QueryParser;
use tantivy::schema::{Schema, STORED, TEXT};
use tantivy::{doc, Index, IndexWriter, TantivyDocument};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp;
    let path = match std::env::args().nth(1) {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("my-index")
        }
    };

    let mut builder = Schema::builder();
    let title = builder.add_text_field("title", TEXT | STORED);
    let body = builder.add_text_field("body", TEXT);
    let schema = builder.build();

    {
        let dir = jocky::JockyDirectory::open(&path)?;
        let index = Index::open_or_create(dir.clone(), schema.clone())?;
        let mut writer: IndexWriter = index.writer(50_000_000)?;
        writer.add_document(doc!(title => "The Old Man and the Sea", body => "He was an old man who fished alone in a skiff in the Gulf Stream."))?;
        writer.add_document(doc!(title => "Of Mice and Men", body => "A few miles south of Soledad, the Salinas River drops in close to the hillside bank."))?;
        writer.commit()?;
        writer.add_document(doc!(title => "Frankenstein", body => "You will rejoice to hear that no disaster has accompanied the commencement of an enterprise."))?;
        writer.commit()?;
        println!("after indexing: {:?}", dir.stats());
    }

    // Everything is closed; open again, as after a restart.
    let dir = jocky::JockyDirectory::open(&path)?;
    let index = Index::open(dir.clone())?;
    let searcher = index.reader()?.searcher();
    let parser = QueryParser::for_index(&index, vec![title, body]);
    for q in ["old man", "river", "disaster"] {
        let query = parser.parse_query(q)?;
        let (count, top) =
            searcher.search(&query, &(Count, TopDocs::with_limit(3).order_by_score()))?;
        let titles: Vec<String> = top
            .iter()
            .map(|(_, addr)| {
                let d: TantivyDocument = searcher.doc(*addr).unwrap();
                d.get_first(title)
                    .and_then(|v| tantivy::schema::Value::as_str(&v).map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        println!("{q:>10}: {count} hit(s) {titles:?}");
    }
    println!("after reopen: {:?}", dir.stats());
    Ok(())
}
