//! The 2-file-descriptor bound (`tests/common/fd_bound.rs`), with the
//! default export copy. (One test in this binary, so that no other test's
//! descriptors are counted.)

mod common;

#[test]
fn one_directory_holds_at_most_two_fds() {
    let (peak_extra, _) = common::fd_bound::run(jocky::ExportCopy::ActiveFile, true);
    // 2, plus at most one while a segment file is written.
    assert!(peak_extra <= 3, "peak {peak_extra} extra fds");
}
