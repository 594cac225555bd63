use std::collections::BTreeMap;

use config::StorageProduct;
use protocol::{BrowseInner, FileFlags, RetrieveInner, UFileSpecification};

use super::*;
use crate::testdir::TestDir;

struct Fixture {
    t: TestDir,
    drives: Drives,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let t = TestDir::new(name);
        std::fs::create_dir_all(t.path().join("homes/alice#1")).unwrap();
        std::fs::create_dir_all(t.path().join("scratch/alice#1")).unwrap();
        let mut m = BTreeMap::new();
        let p = |kind, dir: &str| StorageProduct {
            kind,
            path: format!("{}/{dir}/{{ucloudUser}}", t.path().display()),
            category: None,
            title: None,
            description: String::new(),
        };
        m.insert("home".to_string(), p(DriveKind::Home, "homes"));
        m.insert("scratch".to_string(), p(DriveKind::Scratch, "scratch"));
        Fixture { drives: Drives::new("hpc", &m), t }
    }
    fn files(&self) -> Files<'_> {
        Files::new(&self.drives, Caller { ucloud_user: "alice#1", local_user: "x" })
    }
    fn home(&self) -> std::path::PathBuf {
        self.t.path().join("homes/alice#1")
    }
    fn write(&self, rel: &str, content: &str) {
        let p = self.home().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

fn drive(id: &str, kind: &str) -> Drive {
    let pgid = if kind == "home" { "h-alice#1" } else { "s-alice#1" };
    Drive {
        id: id.into(),
        owner: ResourceOwner { created_by: "alice#1".into(), project: None },
        permissions: Some(ResourcePermissions { myself: vec!["ADMIN".into()], others: vec![] }),
        specification: DriveSpecification {
            title: "x".into(),
            product: ProductReference { id: kind.into(), category: kind.into(), provider: "hpc".into() },
            labels: None,
        },
        provider_generated_id: Some(pgid.into()),
        ..Default::default()
    }
}

fn browse(f: &Files, path: &str, per_page: Option<i64>, next: Option<&str>, sort: Option<&str>, desc: bool) -> PageV2<ProviderFile> {
    let req = BrowseRequest {
        resolved_collection: drive("12", "home"),
        browse: BrowseInner {
            flags: FileFlags { path: Some(path.into()), filter_hidden_files: Some(true), ..Default::default() },
            items_per_page: per_page,
            next: next.map(str::to_string),
            sort_by: sort.map(str::to_string),
            sort_direction: Some(if desc { "descending" } else { "ascending" }.into()),
        },
    };
    f.browse(&req).unwrap()
}

fn ids(page: &PageV2<ProviderFile>) -> Vec<&str> {
    page.items.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn browse_pages_sorts_and_hides() {
    let fx = Fixture::new("ops-browse");
    fx.write("d/b.txt", "12345");
    fx.write("d/a.txt", "1");
    fx.write("d/c.txt", "123");
    fx.write("d/.hidden", "");
    let f = fx.files();
    let p1 = browse(&f, "/12/d", Some(2), None, None, false);
    assert_eq!(ids(&p1), vec!["/12/d/a.txt", "/12/d/b.txt"]);
    assert_eq!(p1.next.as_deref(), Some("2"));
    let p2 = browse(&f, "/12/d", Some(2), p1.next.as_deref(), None, false);
    assert_eq!(ids(&p2), vec!["/12/d/c.txt"]);
    assert_eq!(p2.next, None);
    assert_eq!(ids(&browse(&f, "/12/d", None, None, Some("SIZE"), true)), vec!["/12/d/b.txt", "/12/d/c.txt", "/12/d/a.txt"]);
    assert_eq!(browse(&f, "/12/d", None, None, None, false).items_per_page, DEFAULT_ITEMS_PER_PAGE);
    let file = &p1.items[0];
    assert_eq!(file.status.size_in_bytes, Some(1));
    assert!(file.status.modified_at > 1_600_000_000_000);
    let missing = BrowseRequest {
        resolved_collection: drive("12", "home"),
        browse: BrowseInner { flags: FileFlags { path: Some("/12/nope".into()), ..Default::default() }, ..Default::default() },
    };
    assert_eq!(f.browse(&missing).unwrap_err().status(), 404);
}

#[test]
fn retrieve_with_sizes() {
    let fx = Fixture::new("ops-retrieve");
    fx.write("d/x", "12345");
    fx.write("d/e/y", "123");
    let req = RetrieveRequest {
        resolved_collection: drive("12", "home"),
        retrieve: RetrieveInner { id: "/12/d".into(), flags: FileFlags { include_sizes: Some(true), ..Default::default() } },
    };
    let file = fx.files().retrieve(&req).unwrap();
    assert_eq!(file.status.kind, FileType::Directory);
    assert_eq!(file.status.size_including_children_in_bytes, Some(8));
    assert_eq!((file.status.file_count, file.status.directory_count), (Some(2), Some(1)));
}

fn mc(old: &str, new: &str, policy: ConflictPolicy, new_kind: &str) -> MoveOrCopy {
    MoveOrCopy {
        resolved_old_collection: drive("12", "home"),
        resolved_new_collection: drive(if new_kind == "home" { "12" } else { "13" }, new_kind),
        old_id: old.into(),
        new_id: new.into(),
        conflict_policy: policy,
    }
}

#[test]
fn move_and_copy_with_each_policy_across_drives() {
    let fx = Fixture::new("ops-mc");
    fx.write("a.txt", "A");
    fx.write("b.txt", "B");
    let f = fx.files();
    let p = Progress::default();
    f.move_or_copy(&mc("/12/a.txt", "/12/b.txt", ConflictPolicy::Rename, "home"), true, &p).unwrap();
    assert_eq!(std::fs::read_to_string(fx.home().join("b(1).txt")).unwrap(), "A");
    let e = f.move_or_copy(&mc("/12/a.txt", "/12/b.txt", ConflictPolicy::Reject, "home"), false, &p).unwrap_err();
    assert_eq!(e.status(), 409);
    f.move_or_copy(&mc("/12/a.txt", "/12/b.txt", ConflictPolicy::Replace, "home"), false, &p).unwrap();
    assert_eq!(std::fs::read_to_string(fx.home().join("b.txt")).unwrap(), "A");
    assert!(!fx.home().join("a.txt").exists());
    // To the scratch drive.
    f.move_or_copy(&mc("/12/b.txt", "/13/b.txt", ConflictPolicy::Reject, "scratch"), false, &p).unwrap();
    assert_eq!(std::fs::read_to_string(fx.t.path().join("scratch/alice#1/b.txt")).unwrap(), "A");
    // A folder into itself is refused.
    fx.write("d/x", "x");
    let e = f.move_or_copy(&mc("/12/d", "/12/d/e", ConflictPolicy::Rename, "home"), true, &p).unwrap_err();
    assert_eq!(e.status(), 400);
    // A path naming another drive than the resolved one is refused.
    let e = f.move_or_copy(&mc("/13/d", "/12/e", ConflictPolicy::Rename, "home"), true, &p).unwrap_err();
    assert_eq!(e.status(), 400);
}

#[test]
fn folders_trash_and_delete() {
    let fx = Fixture::new("ops-trash");
    let f = fx.files();
    let p = Progress::default();
    let folder = |id: &str, policy| CreateFolderItem { id: id.into(), conflict_policy: policy, resolved_collection: drive("12", "home") };
    f.create_folder(&folder("/12/n", ConflictPolicy::Reject)).unwrap();
    assert_eq!(f.create_folder(&folder("/12/n", ConflictPolicy::Reject)).unwrap_err().status(), 409);
    f.create_folder(&folder("/12/n", ConflictPolicy::Rename)).unwrap();
    assert!(fx.home().join("n(1)").is_dir());
    f.create_folder(&folder("/12/n", ConflictPolicy::MergeRename)).unwrap();
    assert_eq!(f.create_folder(&folder("/12/none/x", ConflictPolicy::Reject)).unwrap_err().status(), 404);
    fx.write("t.txt", "1");
    let trash = |id: &str| TrashItem { id: id.into(), resolved_collection: drive("12", "home") };
    f.trash(&trash("/12/t.txt"), &p).unwrap();
    fx.write("t.txt", "2");
    f.trash(&trash("/12/t.txt"), &p).unwrap();
    assert_eq!(std::fs::read_to_string(fx.home().join("Trash/t.txt")).unwrap(), "1");
    assert_eq!(std::fs::read_to_string(fx.home().join("Trash/t(1).txt")).unwrap(), "2");
    let listing = browse(&f, "/12", None, None, None, false);
    let t = listing.items.iter().find(|i| i.id == "/12/Trash").unwrap();
    assert_eq!(t.status.icon, ICON_TRASH);
    assert_eq!(f.empty_trash(&trash("/12/n"), &p).unwrap_err().status(), 400);
    f.empty_trash(&trash("/12/Trash"), &p).unwrap();
    assert_eq!(std::fs::read_dir(fx.home().join("Trash")).unwrap().count(), 0);
    let del = DeleteItem {
        id: "/12/n(1)".into(),
        owner: ResourceOwner { created_by: "alice#1".into(), project: None },
        specification: UFileSpecification {
            collection: "12".into(),
            product: ProductReference { id: "home".into(), category: "home".into(), provider: "hpc".into() },
        },
        ..Default::default()
    };
    f.delete(&del, &p).unwrap();
    assert!(!fx.home().join("n(1)").exists());
    // Another user's file, as named by the Core's owner field: refused.
    let mut bobs = del.clone();
    bobs.owner.created_by = "bob#2".into();
    assert_eq!(f.delete(&bobs, &p).unwrap_err().status(), 403);
}

#[test]
fn search_finds_by_name() {
    let fx = Fixture::new("ops-search");
    fx.write("a/report-1.txt", "");
    fx.write("a/b/Report-2.txt", "");
    fx.write("c/other", "");
    let req = StreamingSearchRequest {
        query: "report".into(),
        owner: ResourceOwner { created_by: "alice#1".into(), project: None },
        category: protocol::CategoryRef { name: "home".into(), provider: "hpc".into() },
        current_folder: Some("/12".into()),
        ..Default::default()
    };
    let mut found = Vec::new();
    fx.files().search(&req, |b| {
        found.extend(b.into_iter().map(|f| f.id));
        true
    })
    .unwrap();
    found.sort();
    assert_eq!(found, vec!["/12/a/b/Report-2.txt", "/12/a/report-1.txt"]);
}
