//! jocky: a tantivy `Directory` over one append-only container.
pub mod corpus;
