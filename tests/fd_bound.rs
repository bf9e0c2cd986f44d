//! The 2-file-descriptor bound (`tests/common/fd_bound.rs`), with the
//! default export copy. (One test in this binary, so that no other test's
//! descriptors are counted.)

mod common;

use jocky::ExportCopy;

#[test]
fn one_directory_holds_at_most_two_fds() {
    let (peak_extra, stats) = common::fd_bound::run(ExportCopy::ActiveFile);
    assert!(
        stats.container_files + stats.container_files_reclaimed as usize > 1,
        "the run should rotate"
    );
    // 2, plus at most one while a segment file is written.
    assert!(peak_extra <= 3, "peak {peak_extra} extra fds");
    assert!(stats.segment_files > 0, "{stats:?}");
    assert_eq!(stats.fds_held, 2);
}
