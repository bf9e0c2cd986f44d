//! Helpers shared by the integration tests.
//!
//! Every test binary that needs them declares `mod common;` at its crate root.
#![allow(dead_code)]

pub mod contract;
