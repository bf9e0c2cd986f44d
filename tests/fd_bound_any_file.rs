//! The descriptor bound with `ExportCopy::AnyFile`: the export opens an older
//! container file for an in-kernel copy, one at a time, so 2 plus 2 while a
//! segment file is written. Without building in place, so that the export
//! copies the segments out of the container. (One test in this binary, so
//! that no other test's descriptors are counted.)

mod common;

#[test]
fn any_file_export_holds_at_most_two_more_fds_while_it_copies() {
    let (peak_extra, stats) = common::fd_bound::run(jocky::ExportCopy::AnyFile, false);
    assert!(peak_extra <= 4, "peak {peak_extra} extra fds");
    assert!(stats.bytes_exported_in_kernel > 0, "{stats:?}");
}
