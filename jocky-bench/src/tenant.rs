//! One small tenant as the multi-tenant examples make it: a title/body index
//! that gets a few commits of a few documents each.

use tantivy::schema::{Schema, STORED, TEXT};
use tantivy::{doc, Directory, Index, IndexWriter};

use crate::corpus::Doc;

/// The small tenants' schema: `title` and `body`, both TEXT | STORED.
pub fn schema() -> Schema {
    let mut b = Schema::builder();
    b.add_text_field("title", TEXT | STORED);
    b.add_text_field("body", TEXT | STORED);
    b.build()
}

/// Creates an index in `dir` and commits `commits` times, `per_commit` of
/// `docs` each time; waits for merges before it returns (a dropped writer's
/// ending merge could still write `meta.json` later).
pub fn index_small_tenant(
    dir: Box<dyn Directory>,
    docs: &[Doc],
    per_commit: usize,
    commits: usize,
) -> tantivy::Result<Index> {
    let schema = schema();
    let (title, body) = (schema.get_field("title")?, schema.get_field("body")?);
    let index = Index::create(dir, schema, Default::default())?;
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000)?;
    for chunk in docs.chunks(per_commit).take(commits) {
        for d in chunk {
            writer.add_document(doc!(title => d.title.as_str(), body => d.body.as_str()))?;
        }
        writer.commit()?;
    }
    writer.wait_merging_threads()?;
    Ok(index)
}
