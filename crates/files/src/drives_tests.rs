use std::collections::BTreeMap;

use config::{DriveKind, StorageProduct};
use protocol::{Drive, DriveSpecification, ProductReference, ResourceOwner, ResourcePermissions};

use super::*;
use crate::testdir::TestDir;

fn product(kind: DriveKind, path: &str) -> StorageProduct {
    StorageProduct { kind, path: path.into(), category: None, title: None, description: String::new() }
}

fn drives(base: &std::path::Path) -> Drives {
    let mut m = BTreeMap::new();
    m.insert("home".to_string(), product(DriveKind::Home, &format!("{}/homes/{{ucloudUser}}", base.display())));
    m.insert("proj".to_string(), product(DriveKind::Project, &format!("{}/projects/{{project}}", base.display())));
    Drives::new("hpc", &m)
}

fn drive(id: &str, pgid: &str, product: &str) -> Drive {
    Drive {
        id: id.into(),
        owner: ResourceOwner { created_by: "alice#1".into(), project: None },
        permissions: Some(ResourcePermissions { myself: vec!["ADMIN".into()], others: vec![] }),
        specification: DriveSpecification {
            title: "Home".into(),
            product: ProductReference { id: product.into(), category: product.into(), provider: "hpc".into() },
            labels: None,
        },
        provider_generated_id: Some(pgid.into()),
        ..Default::default()
    }
}

const ALICE: Caller = Caller { ucloud_user: "alice#1", local_user: "ucimshared" };
const BOB: Caller = Caller { ucloud_user: "bob#2", local_user: "ucimshared" };

#[test]
fn personal_drives_belong_to_their_user_only() {
    let t = TestDir::new("drives-own");
    std::fs::create_dir(t.path().join("homes")).unwrap();
    let d = drives(t.path());
    let a = drive("12", "h-alice#1", "home");
    let loc = d.locate(&a, ALICE).unwrap();
    assert_eq!(loc.prefix, t.path().join("homes"));
    assert_eq!(loc.rest.as_str(), "alice#1");
    // Bob's call with alice's drive, or alice's drive id with bob's name: refused.
    assert_eq!(d.locate(&a, BOB).unwrap_err().status(), 403);
    assert_eq!(d.open(&drive("13", "h-bob#2", "home"), ALICE).unwrap_err().status(), 403);
    // Created on first use, 0700, and opened.
    let root = d.open(&a, ALICE).unwrap();
    assert_eq!(root.label(), "/12");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(t.path().join("homes/alice#1")).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn strange_drives_are_refused() {
    let t = TestDir::new("drives-strange");
    std::fs::create_dir(t.path().join("homes")).unwrap();
    let d = drives(t.path());
    assert_eq!(d.locate(&drive("12", "x-alice#1", "home"), ALICE).unwrap_err().status(), 404);
    assert_eq!(d.locate(&drive("12", "", "home"), ALICE).unwrap_err().status(), 404);
    assert_eq!(d.locate(&drive("12", "h-alice#1", "proj"), ALICE).unwrap_err().status(), 400);
    assert_eq!(d.locate(&drive("1/2", "h-alice#1", "home"), ALICE).unwrap_err().status(), 400);
    let mut other = drive("12", "h-alice#1", "home");
    other.specification.product.provider = "elsewhere".into();
    assert_eq!(d.locate(&other, ALICE).unwrap_err().status(), 400);
    // A UCloud name that would be a path is never a folder name.
    for name in ["..", ".", "a/b", ""] {
        let c = Caller { ucloud_user: name, local_user: "ucimshared" };
        assert!(d.locate(&drive("12", &format!("h-{name}"), "home"), c).is_err(), "{name:?}");
    }
    // A symlink in place of a user's folder is not followed.
    std::os::unix::fs::symlink("/etc", t.path().join("homes/alice#1")).unwrap();
    assert_eq!(d.open(&drive("12", "h-alice#1", "home"), ALICE).unwrap_err().status(), 403);
}

#[test]
fn project_drives_need_the_project_and_a_permission() {
    let t = TestDir::new("drives-proj");
    std::fs::create_dir_all(t.path().join("projects/p1")).unwrap();
    let d = drives(t.path());
    let mut p = drive("20", "p-p1", "proj");
    assert_eq!(d.locate(&p, ALICE).unwrap_err().status(), 403);
    p.owner.project = Some("p1".into());
    assert!(d.open(&p, ALICE).is_ok());
    p.permissions = Some(ResourcePermissions::default());
    assert_eq!(d.locate(&p, ALICE).unwrap_err().status(), 403);
    // Project folders are not created on demand.
    let mut q = drive("21", "p-p2", "proj");
    q.owner.project = Some("p2".into());
    assert_eq!(d.open(&q, ALICE).unwrap_err().status(), 404);
}

#[test]
fn local_user_patterns_are_trusted_prefixes() {
    let mut m = BTreeMap::new();
    m.insert("home".to_string(), product(DriveKind::Home, "/home/{localUser}"));
    let d = Drives::new("hpc", &m);
    let c = Caller { ucloud_user: "alice#1", local_user: "alice" };
    let loc = d.locate(&drive("12", "h-alice#1", "home"), c).unwrap();
    assert_eq!(loc.host_path(), PathBuf::from("/home/alice"));
    assert!(loc.rest.is_root());
    let regs = d.personal_registrations("alice#1");
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].provider_generated_id.as_deref(), Some("h-alice#1"));
    assert_eq!(regs[0].spec.title, "Home");
    assert_eq!(regs[0].spec.product.provider, "hpc");
    assert!(d.project_registration("p", None).is_none());
}

#[test]
fn ucloud_paths_must_name_the_resolved_drive() {
    let a = drive("12", "h-alice#1", "home");
    assert_eq!(parse_path(&a, "/12/x/y").unwrap().as_str(), "x/y");
    assert!(parse_path(&a, "/12").unwrap().is_root());
    for bad in ["/13/x", "12/x", "/12/../13", "/12/a/../../x", "/12//etc", "/120/x", "/1/x", "/12/a\0b", "//etc"] {
        let e = parse_path(&a, bad).unwrap_err();
        assert_eq!(e.status(), 400, "{bad:?}: {e}");
    }
    let long = format!("/12/{}", "n".repeat(256));
    assert_eq!(parse_path(&a, &long).unwrap_err().status(), 400);
}
