//! The `jocky` binary end to end: each subcommand on a real folder, and the errors
//! (missing folder, folder without a container) with exit code 1 and nothing created.

use std::path::Path;
use std::process::{Command, Output};

use tantivy::Directory;

fn jocky(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jocky"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn tenants_lists_a_stores_tenants() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = jocky::Store::open(tmp.path()).unwrap();
        for tenant in ["beta", "alpha"] {
            let dir = store.directory(tenant).unwrap();
            dir.atomic_write(Path::new("meta.json"), b"{}").unwrap();
        }
    }
    let out = jocky(&["tenants", tmp.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "alpha\nbeta\n");
}

#[test]
fn stats_prints_the_counters() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let dir = jocky::JockyDirectory::open(tmp.path()).unwrap();
        dir.atomic_write(Path::new("meta.json"), b"{}").unwrap();
    }
    let out = jocky(&["stats", tmp.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("virtual_files: 1,"), "{stdout}");
    assert!(stdout.contains("container_files: 1,"), "{stdout}");
}

#[test]
fn errors_exit_with_1_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    for sub in ["tenants", "stats"] {
        let out = jocky(&[sub, missing.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).starts_with("jocky: "),
            "{}",
            text(&out.stderr)
        );
        assert!(!missing.exists());

        let out = jocky(&[sub, tmp.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("holds no jocky container"));
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
