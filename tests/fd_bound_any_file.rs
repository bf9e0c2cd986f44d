//! The descriptor bound with `ExportCopy::AnyFile`: the export opens an older
//! container file for an in-kernel copy, one at a time, so 2 plus 2 while a
//! segment file is written. (One test in this binary, so that no other test's
//! descriptors are counted.)

mod common;

use jocky::ExportCopy;

#[test]
fn any_file_export_holds_at_most_two_more_fds_while_it_copies() {
    let (peak_extra, stats) = common::fd_bound::run(ExportCopy::AnyFile);
    assert!(
        stats.container_files + stats.container_files_reclaimed as usize > 1,
        "the run should rotate"
    );
    assert!(peak_extra <= 4, "peak {peak_extra} extra fds");
    assert!(stats.segment_files > 0, "{stats:?}");
    assert!(stats.bytes_exported_in_kernel > 0, "{stats:?}");
    assert_eq!(stats.fds_held, 2);
}
