use std::io::{Read, Write};
use std::os::unix::fs::symlink;

use super::*;
use crate::testdir::TestDir;

fn rel(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

#[test]
fn relpath_validation() {
    assert!(RelPath::parse("").unwrap().is_root());
    assert_eq!(RelPath::parse("a/b/").unwrap().as_str(), "a/b");
    for bad in ["/etc", "..", "a/../b", "a/./b", "a//b", "a\0b", "./a"] {
        assert!(matches!(RelPath::parse(bad), Err(FsError::BadPath(_))), "{bad:?} accepted");
    }
    let long = "x".repeat(256);
    assert!(matches!(RelPath::parse(&long), Err(FsError::BadPath(_))));
    assert!(RelPath::parse(&"x".repeat(255)).is_ok());
    let deep = vec!["abcdefgh"; 600].join("/");
    assert!(matches!(RelPath::parse(&deep), Err(FsError::BadPath(_))));
    let p = rel("a/b/c.txt");
    assert_eq!(p.parent().unwrap().as_str(), "a/b");
    assert_eq!(p.file_name(), Some("c.txt"));
    assert_eq!(rel("c").parent().unwrap(), RelPath::root());
    assert!(p.starts_with(&rel("a/b")));
    assert!(!rel("ab").starts_with(&rel("a")));
    assert!(matches!(rel("a").join(".."), Err(FsError::BadPath(_))));
}

#[test]
fn read_write_stat_list_rename_remove() {
    let t = TestDir::new("beneath-basic");
    let root = Root::open(t.path(), "/7").unwrap();
    root.create_dir_all(&rel("a/b"), 0o755).unwrap();
    root.create_dir_all(&rel("a/b"), 0o755).unwrap();
    let mut f = root.open_write(&rel("a/b/f.txt"), WriteOptions::default()).unwrap();
    f.write_all(b"hello").unwrap();
    drop(f);
    let e = root.open_write(&rel("a/b/f.txt"), WriteOptions { create_new: true, ..Default::default() });
    assert!(matches!(e, Err(FsError::Exists(_))));
    let mut s = String::new();
    root.open_read(&rel("a/b/f.txt")).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello");
    let st = root.lstat(&rel("a/b/f.txt")).unwrap();
    assert_eq!((st.kind, st.size), (Kind::File, 5));
    root.set_mtime(&rel("a/b/f.txt"), 1_500_000_000_123).unwrap();
    assert_eq!(root.lstat(&rel("a/b/f.txt")).unwrap().modified_ms, 1_500_000_000_123);
    let names: Vec<_> = root.read_dir(&rel("a")).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec!["b"]);
    root.open_write(&rel("g"), WriteOptions::default()).unwrap();
    assert!(matches!(root.rename(&rel("g"), &root, &rel("a/b/f.txt"), false), Err(FsError::Exists(_))));
    root.rename(&rel("g"), &root, &rel("a/g"), false).unwrap();
    assert!(matches!(root.lstat(&rel("g")), Err(FsError::NotFound(_))));
    root.unlink(&rel("a/g")).unwrap();
    assert!(matches!(root.rmdir(&rel("a/b")), Err(FsError::Exists(_))));
    root.unlink(&rel("a/b/f.txt")).unwrap();
    root.rmdir(&rel("a/b")).unwrap();
    let e = root.open_read(&rel("nope/x")).unwrap_err();
    assert_eq!(e.status(), 404);
    assert!(e.why().contains("/7/nope/x"), "{e}");
}

#[test]
fn symlinks_are_never_followed() {
    let t = TestDir::new("beneath-links");
    let outside = TestDir::new("beneath-outside");
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    std::fs::create_dir(t.path().join("d")).unwrap();
    std::fs::write(t.path().join("d/inside"), "i").unwrap();
    symlink(outside.path(), t.path().join("out")).unwrap();
    symlink("/etc/passwd", t.path().join("passwd")).unwrap();
    symlink("d", t.path().join("rel-in")).unwrap();
    symlink("../../", t.path().join("d/up")).unwrap();
    let root = Root::open(t.path(), "/1").unwrap();
    for p in ["out/secret", "passwd", "rel-in/inside", "d/up/etc/passwd"] {
        let e = root.open_read(&rel(p)).unwrap_err();
        assert_eq!(e.status(), 403, "{p}: {e}");
    }
    // Writing through a link, making folders through it, renaming into it: all refused.
    assert!(root.open_write(&rel("out/new"), WriteOptions::default()).is_err());
    assert!(root.open_write(&rel("passwd"), WriteOptions::default()).is_err());
    assert!(root.mkdir(&rel("out/x"), 0o755).is_err());
    assert!(root.create_dir_all(&rel("out/y/z"), 0o755).is_err());
    assert!(root.rename(&rel("d/inside"), &root, &rel("out/stolen"), false).is_err());
    assert!(root.open_dir(&rel("out")).is_err());
    // The link itself is listed and can be removed without touching its target.
    assert_eq!(root.lstat(&rel("passwd")).unwrap().kind, Kind::Symlink);
    root.unlink(&rel("out")).unwrap();
    assert!(outside.path().join("secret").exists());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
}

#[test]
fn dir_handles_walk_without_following() {
    let t = TestDir::new("beneath-dir");
    std::fs::create_dir_all(t.path().join("a/b")).unwrap();
    std::fs::write(t.path().join("a/b/f"), "x").unwrap();
    symlink("/etc", t.path().join("a/etc")).unwrap();
    let root = Root::open(t.path(), "/3").unwrap();
    let a = root.open_dir(&rel("a")).unwrap();
    assert_eq!(a.ucloud_path(), "/3/a");
    let mut names: Vec<_> = a.entries().unwrap().into_iter().map(|e| (e.name, e.stat.kind)).collect();
    names.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(names, vec![("b".to_string(), Kind::Dir), ("etc".to_string(), Kind::Symlink)]);
    assert_eq!(a.open_dir("etc").unwrap_err().status(), 403);
    let b = a.open_dir("b").unwrap();
    assert!(b.open_file("f").is_ok());
    assert!(a.open_dir("..").is_err());
    assert!(a.open_dir("b/..").is_err());
    a.mkdir("c", 0o700).unwrap();
    b.rename("f", &a, "f2", false).unwrap();
    assert!(t.path().join("a/f2").exists());
}

#[test]
fn fifos_do_not_hang_readers() {
    let t = TestDir::new("beneath-fifo");
    rustix::fs::mknodat(rustix::fs::CWD, &t.path().join("p"), FileType::Fifo, Mode::from_raw_mode(0o600), 0)
        .unwrap();
    let root = Root::open(t.path(), "/4").unwrap();
    assert_eq!(root.open_read(&rel("p")).unwrap_err().status(), 400);
}

#[test]
fn errors_map_to_http() {
    assert_eq!(FsError::from_errno(Errno::ACCESS, "/1/x").status(), 403);
    assert!(FsError::from_errno(Errno::ACCESS, "/1/x").why().contains("/1/x"));
    assert_eq!(FsError::from_errno(Errno::NOENT, "/1/x").status(), 404);
    assert_eq!(FsError::from_errno(Errno::EXIST, "/1/x").status(), 409);
    assert_eq!(FsError::from_errno(Errno::XDEV, "/1/x").status(), 400);
    assert_eq!(FsError::from_errno(Errno::IO, "/1/x").status(), 500);
}
