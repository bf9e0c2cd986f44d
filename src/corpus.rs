//! Deterministic built-in corpus (being written).
