use super::*;
use crate::testdir::TestDir;

#[test]
fn numbered_names() {
    assert_eq!(numbered("report.pdf", 1), "report(1).pdf");
    assert_eq!(numbered("a.tar.gz", 2), "a.tar(2).gz");
    assert_eq!(numbered("folder", 3), "folder(3)");
    assert_eq!(numbered(".bashrc", 1), ".bashrc(1)");
}

#[test]
fn copy_merge_and_remove_trees() {
    let t = TestDir::new("tree");
    let p = t.path();
    std::fs::create_dir_all(p.join("src/sub")).unwrap();
    std::fs::write(p.join("src/a.txt"), "A").unwrap();
    std::fs::write(p.join("src/sub/b.txt"), "B").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p.join("src/link")).unwrap();
    std::fs::create_dir_all(p.join("dst/src")).unwrap();
    std::fs::write(p.join("dst/src/a.txt"), "old").unwrap();
    let root = Root::open(p, "/1").unwrap();
    let top = root.open_dir(&RelPath::root()).unwrap();
    let dst = root.open_dir(&RelPath::parse("dst").unwrap()).unwrap();
    let progress = Progress::default();
    copy(&top, "src", &dst, "src", true, &progress).unwrap();
    assert_eq!(std::fs::read_to_string(p.join("dst/src/a.txt")).unwrap(), "old");
    assert_eq!(std::fs::read_to_string(p.join("dst/src/a(1).txt")).unwrap(), "A");
    assert_eq!(std::fs::read_to_string(p.join("dst/src/sub/b.txt")).unwrap(), "B");
    // The link is copied as a link, not as /etc/passwd's content.
    assert_eq!(std::fs::read_link(p.join("dst/src/link")).unwrap(), std::path::PathBuf::from("/etc/passwd"));
    assert_eq!(sizes(&root.open_dir(&RelPath::parse("src").unwrap()).unwrap()).unwrap().1, 3);
    // A plain copy onto an existing name is refused, never overwritten.
    assert!(matches!(copy(&top, "src", &dst, "src", false, &progress), Err(FsError::Exists(_))));
    remove(&top, "dst", &progress).unwrap();
    assert!(!p.join("dst").exists());
    assert!(std::path::Path::new("/etc/passwd").exists());
}

#[test]
fn merge_move_renames_clashing_files() {
    let t = TestDir::new("tree-move");
    let p = t.path();
    std::fs::create_dir_all(p.join("a/x")).unwrap();
    std::fs::write(p.join("a/x/f"), "new").unwrap();
    std::fs::create_dir_all(p.join("b/a/x")).unwrap();
    std::fs::write(p.join("b/a/x/f"), "old").unwrap();
    let root = Root::open(p, "/1").unwrap();
    let top = root.open_dir(&RelPath::root()).unwrap();
    let b = root.open_dir(&RelPath::parse("b").unwrap()).unwrap();
    let progress = Progress::default();
    let (name, merge) = target_name(&b, "a", true, ConflictPolicy::MergeRename, &progress).unwrap();
    assert_eq!((name.as_str(), merge), ("a", true));
    move_entry(&top, "a", &b, "a", true, &progress).unwrap();
    assert!(!p.join("a").exists());
    assert_eq!(std::fs::read_to_string(p.join("b/a/x/f")).unwrap(), "old");
    assert_eq!(std::fs::read_to_string(p.join("b/a/x/f(1)")).unwrap(), "new");
    assert_eq!(target_name(&b, "a", true, ConflictPolicy::Rename, &progress).unwrap().0, "a(1)");
    assert!(target_name(&b, "a", true, ConflictPolicy::Reject, &progress).is_err());
    target_name(&b, "a", true, ConflictPolicy::Replace, &progress).unwrap();
    assert!(!p.join("b/a").exists());
}
