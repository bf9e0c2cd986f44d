//! The shared contract suite (tests/common/contract.rs) run against
//! `JockyDirectory` in every configuration: default options on a real folder; tiny
//! container files and write buffers (files span many extents and container files,
//! reads cross them); and the simulated storage.

mod common;
use std::sync::Arc;

use common::contract::TestDirectory;
use jocky::io::sim::SimStorage;
use jocky::JockyDirectory;

fn default_fs() -> TestDirectory {
    let tmp = tempfile::TempDir::new().unwrap();
    TestDirectory::with_guard(JockyDirectory::open(tmp.path()).unwrap(), tmp)
}

fn tiny_containers() -> TestDirectory {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = JockyDirectory::builder(tmp.path())
        .container_file_size(1 << 20)
        .preallocate(128 << 10)
        .write_buffer(1 << 10, 16 << 10)
        .open()
        .unwrap();
    TestDirectory::with_guard(dir, tmp)
}

fn simulated() -> TestDirectory {
    let dir = JockyDirectory::builder("/sim")
        .storage(Arc::new(SimStorage::new()))
        .container_file_size(4 << 20)
        .open()
        .unwrap();
    TestDirectory::new(dir)
}

mod fs_default {
    use super::*;
    crate::contract_tests!(default_fs());
}

mod fs_tiny_containers {
    use super::*;
    crate::contract_tests!(tiny_containers());
}

mod sim_storage {
    use super::*;
    crate::contract_tests!(simulated());
}
