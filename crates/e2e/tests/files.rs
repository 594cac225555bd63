//! Issue 6 end to end (files part): drives registered with the Core, every file operation through the
//! stand-in Core and the server into the user's instance (running as alice), and an attack corpus. Real
//! users alice and bob, real sudo, the real kernel. Drive folders live under the stack's own directory,
//! so nothing in the users' real homes is touched.


use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use protocol::{Drive, ProductReference};
use reqwest::Method;
use serde_json::{json, Value};

fn stack_dir(name: &str) -> PathBuf {
    PathBuf::from(format!("/tmp/ucim-e2e-{name}-{}", std::process::id()))
}

fn storage(name: &str) -> String {
    let dir = stack_dir(name);
    format!(
        "[storage.home]\nkind = \"home\"\npath = \"{d}/homes/{{localUser}}\"\n\n\
         [storage.scratch]\nkind = \"scratch\"\npath = \"{d}/scratch/{{localUser}}\"\n\n\
         [storage.projects]\nkind = \"project\"\npath = \"{d}/projects/{{project}}\"\n",
        d = dir.display()
    )
}

/// A folder owned by `user`, mode `mode`, with missing parents made 0755 by root.
fn user_dir(path: &Path, user: &str, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    chown(path, user);
}

fn chown(path: &Path, user: &str) {
    let ok = Command::new("chown").args(["-R", &format!("{user}:{user}")]).arg(path).status().unwrap().success();
    assert!(ok);
}

/// Writes a file as root and gives it to `user`.
fn put(path: &Path, content: &str, user: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    // The file and the folders made for it, up to the drive's root (already the user's).
    let mut p = path;
    loop {
        chown(p, user);
        match p.parent() {
            Some(parent) if std::fs::metadata(parent).unwrap().uid() == 0 => p = parent,
            _ => break,
        }
    }
}

fn as_user(user: &str, args: &[&str]) {
    let ok = Command::new("sudo").args(["-n", "-u", user, "--"]).args(args).status().unwrap().success();
    assert!(ok, "sudo -u {user} {args:?}");
}

async fn drive_of(stack: &Stack, pgid: &str, viewer: &str) -> Drive {
    let d = stack.sim.wait_for_drive(pgid, Duration::from_secs(20)).await.unwrap_or_else(|| {
        panic!("drive {pgid} was never registered; log:\n{}", stack.server_log())
    });
    stack.sim.resolved_drive(&d.id, viewer).unwrap()
}

async fn bulk(stack: &Stack, user: &str, method: Method, suffix: &str, item: Value) -> ucloud_sim::CallResult {
    stack.sim.files_call(user, method, suffix, json!({"items": [item]})).await.unwrap()
}

async fn folder(stack: &Stack, user: &str, drive: &Drive, id: &str, policy: &str) -> ucloud_sim::CallResult {
    bulk(stack, user, Method::POST, "/files/folder", json!({"id": id, "conflictPolicy": policy, "resolvedCollection": drive})).await
}

async fn move_copy(stack: &Stack, user: &str, op: &str, from: (&Drive, &str), to: (&Drive, &str), policy: &str) -> ucloud_sim::CallResult {
    let item = json!({"resolvedOldCollection": from.0, "resolvedNewCollection": to.0, "oldId": from.1,
                      "newId": to.1, "conflictPolicy": policy});
    bulk(stack, user, Method::POST, &format!("/files/{op}"), item).await
}

async fn retrieve(stack: &Stack, user: &str, drive: &Drive, id: &str, sizes: bool) -> ucloud_sim::CallResult {
    let body = json!({"resolvedCollection": drive, "retrieve": {"id": id, "flags": {"includeSizes": sizes}}});
    stack.sim.files_call(user, Method::POST, "/files/retrieve", body).await.unwrap()
}

fn names(r: &ucloud_sim::CallResult) -> Vec<String> {
    r.body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().rsplit('/').next().unwrap().to_string()).collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn drives_and_file_operations() {
    if !enabled() {
        return;
    }
    let name = "files-ops";
    let dir = stack_dir(name);
    let mut stack = Stack::start_with(name, 47000, Options { extra: storage(name), ..Default::default() }).await;
    let home = dir.join("homes/alice");
    user_dir(&home, "alice", 0o700);
    user_dir(&dir.join("scratch/alice"), "alice", 0o700);
    let user = "alice#files";
    stack.map(user, "alice");

    // Drives are registered on mapping; again on restart, which the Core answers 409: still one each.
    let d = drive_of(&stack, &format!("h-{user}"), user).await;
    let scratch = drive_of(&stack, &format!("s-{user}"), user).await;
    assert_eq!(d.owner.created_by, user);
    assert_eq!(d.specification.product, ProductReference { id: "home".into(), category: "home".into(), provider: PROVIDER.into() });
    stack.stop_server();
    stack.start_server().await;
    for _ in 0..100 {
        if stack.server_log().matches("drive already registered").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stack.server_log().contains("drive already registered"), "{}", stack.server_log());
    assert_eq!(stack.sim.drives().iter().filter(|x| x.provider_generated_id.as_deref() == Some(&format!("h-{user}"))).count(), 1);

    // Honest feature flags for every storage product.
    let support = stack.sim.call(Method::GET, "/files/collections/retrieveProducts", None, None).await.unwrap();
    let entries = support.body["responses"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let h = entries.iter().find(|e| e["product"]["id"] == "home").unwrap();
    assert_eq!(h["files"]["trashSupported"], true);
    assert_eq!(h["files"]["streamingSearchSupported"], true);
    assert_eq!(h["collection"]["usersCanCreate"], false);

    let id = |rel: &str| format!("/{}/{rel}", d.id);
    // folder with each policy
    assert!(folder(&stack, user, &d, &id("w"), "REJECT").await.accepted_by_core());
    assert_eq!(folder(&stack, user, &d, &id("w"), "REJECT").await.status, 409);
    assert!(folder(&stack, user, &d, &id("w"), "RENAME").await.accepted_by_core());
    assert!(folder(&stack, user, &d, &id("w"), "MERGE_RENAME").await.accepted_by_core());
    assert!(home.join("w(1)").is_dir());
    assert_eq!(std::fs::metadata(home.join("w")).unwrap().uid(), uid_of("alice"), "made by alice's instance");

    // browse: pages, sorting, hidden files, default page size, 404
    put(&home.join("w/a.txt"), "1", "alice");
    put(&home.join("w/b.txt"), "12345", "alice");
    put(&home.join("w/c.txt"), "123", "alice");
    put(&home.join("w/.hidden"), "", "alice");
    let p1 = stack.sim.browse_files(user, &d, &id("w"), json!({"itemsPerPage": 2})).await.unwrap();
    assert!(p1.accepted_by_core(), "{p1:?}");
    assert_eq!(names(&p1), ["a.txt", "b.txt"]);
    let next = p1.body["next"].as_str().unwrap().to_string();
    let p2 = stack.sim.browse_files(user, &d, &id("w"), json!({"itemsPerPage": 2, "next": next})).await.unwrap();
    assert_eq!(names(&p2), ["c.txt"]);
    assert!(p2.body["next"].is_null());
    let by_size = stack.sim.browse_files(user, &d, &id("w"), json!({"sortBy": "SIZE", "sortDirection": "descending"})).await.unwrap();
    assert_eq!(names(&by_size), ["b.txt", "c.txt", "a.txt"]);
    assert_eq!(by_size.body["itemsPerPage"], 50);
    let f = &p1.body["items"][0];
    assert!(f["createdAt"].is_i64() && f["status"]["modifiedAt"].is_i64() && f["status"]["accessedAt"].is_i64(), "{f}");
    assert_eq!(f["status"]["unixOwner"], uid_of("alice"));
    assert_eq!(stack.sim.browse_files(user, &d, &id("nope"), json!({})).await.unwrap().status, 404);

    // retrieve with recursive sizes
    put(&home.join("w/sub/deep.txt"), "1234567", "alice");
    let r = retrieve(&stack, user, &d, &id("w"), true).await;
    assert_eq!(r.body["status"]["sizeIncludingChildrenInBytes"], 16, "{r:?}");
    assert_eq!((r.body["status"]["fileCount"].as_i64(), r.body["status"]["directoryCount"].as_i64()), (Some(5), Some(1)));

    // copy and move with each policy, within the drive and to the scratch drive
    assert!(move_copy(&stack, user, "copy", (&d, &id("w/a.txt")), (&d, &id("w/b.txt")), "RENAME").await.accepted_by_core());
    assert_eq!(read(&home.join("w/b(1).txt")), "1");
    assert_eq!(move_copy(&stack, user, "copy", (&d, &id("w/a.txt")), (&d, &id("w/b.txt")), "REJECT").await.status, 409);
    assert!(move_copy(&stack, user, "move", (&d, &id("w/a.txt")), (&d, &id("w/b.txt")), "REPLACE").await.accepted_by_core());
    assert_eq!(read(&home.join("w/b.txt")), "1");
    assert!(!home.join("w/a.txt").exists());
    put(&home.join("w2/sub/deep.txt"), "other", "alice");
    put(&home.join("w2/sub/new.txt"), "new", "alice");
    assert!(move_copy(&stack, user, "copy", (&d, &id("w2/sub")), (&d, &id("w/sub")), "MERGE_RENAME").await.accepted_by_core());
    assert_eq!(read(&home.join("w/sub/deep.txt")), "1234567");
    assert_eq!(read(&home.join("w/sub/deep(1).txt")), "other");
    assert_eq!(read(&home.join("w/sub/new.txt")), "new");
    let sid = format!("/{}/moved", scratch.id);
    assert!(move_copy(&stack, user, "move", (&d, &id("w2")), (&scratch, &sid), "REJECT").await.accepted_by_core());
    assert_eq!(read(&dir.join("scratch/alice/moved/sub/new.txt")), "new");
    assert!(!home.join("w2").exists());
    assert_eq!(move_copy(&stack, user, "copy", (&d, &id("w")), (&d, &id("w/sub/w")), "RENAME").await.status, 400, "into itself");

    // trash (renamed on conflict), empty trash, delete
    let trash = |rel: &str| json!({"id": id(rel), "resolvedCollection": d});
    assert!(bulk(&stack, user, Method::POST, "/files/trash", trash("w/c.txt")).await.accepted_by_core());
    put(&home.join("w/c.txt"), "again", "alice");
    assert!(bulk(&stack, user, Method::POST, "/files/trash", trash("w/c.txt")).await.accepted_by_core());
    assert_eq!(read(&home.join("Trash/c.txt")), "123");
    assert_eq!(read(&home.join("Trash/c(1).txt")), "again");
    let top = stack.sim.browse_files(user, &d, &format!("/{}", d.id), json!({})).await.unwrap();
    let t = top.body["items"].as_array().unwrap().iter().find(|i| i["id"] == id("Trash")).unwrap();
    assert_eq!(t["status"]["icon"], "DIRECTORY_TRASH");
    assert_eq!(bulk(&stack, user, Method::POST, "/files/emptyTrash", trash("w")).await.status, 400);
    assert!(bulk(&stack, user, Method::POST, "/files/emptyTrash", trash("Trash")).await.accepted_by_core());
    assert_eq!(std::fs::read_dir(home.join("Trash")).unwrap().count(), 0);
    // files.delete carries a UFile with a zero-value status and no resolved drive (§10.13).
    let ufile = json!({"id": id("w(1)"), "createdAt": -62135596800000i64, "owner": {"createdBy": user, "project": null},
        "permissions": {"myself": ["ADMIN"], "others": []},
        "specification": {"collection": d.id, "product": d.specification.product},
        "status": {"type": "", "modifiedAt": -62135596800000i64}});
    assert!(bulk(&stack, user, Method::DELETE, "/files", ufile).await.accepted_by_core());
    assert!(!home.join("w(1)").exists());

    // Streaming search, straight to the instance's port as the ingress would route it.
    put(&home.join("w/sub/report-2024.txt"), "r", "alice");
    put(&home.join("w/Report-old.txt"), "r", "alice");
    let found = search(&stack, user, &d, "report").await;
    assert_eq!(found, vec![id("w/Report-old.txt"), id("w/sub/report-2024.txt")]);

    // Every call was audited by the server with the paths.
    let audit = read(&stack.dir.join("db/audit.jsonl"));
    assert!(audit.contains("POST /files/folder") && audit.contains(&id("w")), "{audit}");
}

/// Opens the streaming search WebSocket on alice's instance, as the Core does (bearer on the upgrade,
/// `usernameHint`), and collects the ids until the final response.
async fn search(stack: &Stack, user: &str, d: &Drive, query: &str) -> Vec<String> {
    let port = stack.instance_port("alice").expect("alice's instance runs");
    use base64::Engine;
    let hint = base64::engine::general_purpose::URL_SAFE.encode(user);
    let url = format!("ws://127.0.0.1:{port}/ucloud/{PROVIDER}/files?usernameHint={hint}");
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    let token = stack.sim.service_token().await;
    request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let payload = json!({"query": query, "owner": {"createdBy": user, "project": null}, "flags": {},
        "category": {"name": "home", "provider": PROVIDER}, "currentFolder": format!("/{}", d.id)});
    let first = json!({"call": format!("files.provider.{PROVIDER}.streamingSearch"), "streamId": "ignored",
        "payload": payload, "bearer": "", "project": null});
    ws.send(tokio_tungstenite::tungstenite::Message::text(first.to_string())).await.unwrap();
    let mut ids = Vec::new();
    while let Some(Ok(msg)) = ws.next().await {
        let Ok(text) = msg.to_text() else { break };
        let Ok(v) = serde_json::from_str::<Value>(text) else { break };
        if v["type"] == "response" {
            assert_eq!(v["status"], 200, "{v}");
            break;
        }
        if v["payload"]["type"] == "result" {
            ids.extend(v["payload"]["batch"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_string()));
        }
    }
    ids.sort();
    ids
}

/// Everything here must be refused, and nothing outside alice's drive may change.
#[tokio::test(flavor = "multi_thread")]
async fn attack_corpus_is_refused() {
    if !enabled() {
        return;
    }
    let name = "files-attack";
    let dir = stack_dir(name);
    let stack = Stack::start_with(name, 47100, Options { extra: storage(name), ..Default::default() }).await;
    let home = dir.join("homes/alice");
    let bob_home = dir.join("homes/bob");
    user_dir(&home, "alice", 0o700);
    user_dir(&bob_home, "bob", 0o755);
    put(&bob_home.join("secret.txt"), "bob's", "bob");
    std::fs::set_permissions(bob_home.join("secret.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let (alice, bob) = ("alice#atk", "bob#atk");
    stack.map(alice, "alice");
    stack.map(bob, "bob");
    let d = drive_of(&stack, &format!("h-{alice}"), alice).await;
    let bobs = drive_of(&stack, &format!("h-{bob}"), bob).await;
    let id = |rel: &str| format!("/{}/{rel}", d.id);
    let snapshot = || -> Vec<(String, u64, i64)> {
        let mut v: Vec<_> = walk(&bob_home).into_iter().chain(walk(Path::new("/etc/ucim-never-there"))).collect();
        v.sort();
        v
    };
    let before = snapshot();
    let passwd = std::fs::metadata("/etc/passwd").unwrap().mtime();

    // Symlinks made by alice herself, to /etc and to bob's home.
    as_user("alice", &["mkdir", "-p", home.join("t").to_str().unwrap()]);
    as_user("alice", &["ln", "-s", "/etc", home.join("t/etc").to_str().unwrap()]);
    as_user("alice", &["ln", "-s", bob_home.to_str().unwrap(), home.join("t/bob").to_str().unwrap()]);
    as_user("alice", &["ln", "-s", "../../../../../../etc/passwd", home.join("t/up").to_str().unwrap()]);

    let long = "x".repeat(256);
    let bad_paths: Vec<(String, u16)> = vec![
        (id("../../etc"), 400),
        (id("t/../../../../etc/passwd"), 400),
        (format!("/{}/..", d.id), 400),
        ("/etc/passwd".into(), 400),
        ("etc/passwd".into(), 400),
        (format!("/{}/secret.txt", bobs.id), 400), // another drive than resolvedCollection
        (id("t/a\0b"), 400),
        (id(&long), 400),
        (id("t/etc/passwd"), 403),
        (id("t/etc"), 403),
        (id("t/bob/secret.txt"), 403),
        (id("t/bob"), 403),
        (id("t/up"), 403),
    ];
    let links = [id("t/etc"), id("t/bob"), id("t/up")];
    for (path, status) in &bad_paths {
        let link = links.contains(path);
        let r = retrieve(&stack, alice, &d, path, true).await;
        if link {
            // The link itself is described, never its target.
            assert_eq!((r.status, r.body["status"]["type"].as_str()), (200, Some("FILE")), "retrieve {path:?}: {r:?}");
            assert!(r.body["status"]["sizeInBytes"].as_i64().unwrap() < 100, "{r:?}");
        } else {
            assert_eq!(r.status, *status, "retrieve {path:?}: {r:?}");
            assert!(r.why().is_some(), "{r:?}");
        }
        let r = stack.sim.browse_files(alice, &d, path, json!({})).await.unwrap();
        assert!(r.status == *status || (r.status == 400 && path.ends_with("passwd")), "browse {path:?}: {r:?}");
        let r = folder(&stack, alice, &d, &format!("{path}/new"), "REJECT").await;
        assert!(matches!(r.status, 400 | 403), "folder {path:?}: {r:?}");
        let r = move_copy(&stack, alice, "copy", (&d, &id("t")), (&d, &format!("{path}/x")), "REJECT").await;
        assert!(matches!(r.status, 400 | 403), "copy into {path:?}: {r:?}");
        if link {
            continue;
        }
        let r = move_copy(&stack, alice, "copy", (&d, path), (&d, &id("stolen")), "REJECT").await;
        assert!(matches!(r.status, 400 | 403), "copy {path:?}: {r:?}");
        let r = move_copy(&stack, alice, "move", (&d, path), (&d, &id("stolen")), "REJECT").await;
        assert!(matches!(r.status, 400 | 403), "move {path:?}: {r:?}");
        let r = bulk(&stack, alice, Method::POST, "/files/trash", json!({"id": path, "resolvedCollection": d})).await;
        assert!(matches!(r.status, 400 | 403), "trash {path:?}: {r:?}");
    }
    assert!(!home.join("stolen").exists());
    // The permission message names the UCloud path.
    let r = retrieve(&stack, alice, &d, &id("t/bob/secret.txt"), false).await;
    assert!(r.why().unwrap().contains(&id("t/bob")), "{r:?}");

    // bob's drive on alice's call (the Core would never send it; ucim refuses anyway).
    let bobs_for_alice = stack.sim.resolved_drive(&bobs.id, alice).unwrap();
    let r = stack.sim.browse_files(alice, &bobs_for_alice, &format!("/{}", bobs.id), json!({})).await.unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    let r = move_copy(&stack, alice, "copy", (&bobs_for_alice, &format!("/{}/secret.txt", bobs.id)), (&d, &id("s")), "REJECT").await;
    assert_eq!(r.status, 403, "{r:?}");

    // The kernel's refusal: a project drive the Core says alice may use, whose folder is bob's alone.
    let proj_dir = dir.join("projects/bobproj");
    user_dir(&proj_dir, "bob", 0o700);
    put(&proj_dir.join("data.txt"), "p", "bob");
    let product = ProductReference { id: "projects".into(), category: "projects".into(), provider: PROVIDER.into() };
    let p = stack.sim.add_drive(product, "p-bobproj", bob, Some("bobproj"));
    let p = stack.sim.resolved_drive(&p.id, alice).unwrap();
    let r = stack.sim.browse_files(alice, &p, &format!("/{}", p.id), json!({})).await.unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.why().unwrap().contains("Permission denied") && r.why().unwrap().contains(&format!("/{}", p.id)), "{r:?}");
    let r = retrieve(&stack, alice, &p, &format!("/{}/data.txt", p.id), false).await;
    assert_eq!(r.status, 403, "{r:?}");

    // Check-then-use races: a folder swapped for a symlink to bob's home while alice's calls use it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swap = home.join("t/swap");
    put(&home.join("t/real/f.txt"), "mine", "alice");
    let swapper = {
        let (stop, swap, real, bob_home) = (stop.clone(), swap.clone(), home.join("t/real"), bob_home.clone());
        std::thread::spawn(move || {
            let link = swap.with_file_name("swap-link");
            let dirv = swap.with_file_name("swap-dir");
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // directory → symlink to bob's home
                let _ = std::fs::remove_dir_all(&dirv);
                let _ = std::fs::rename(&swap, &dirv);
                let _ = std::fs::remove_file(&link);
                let _ = std::os::unix::fs::symlink(&bob_home, &link);
                let _ = std::fs::rename(&link, &swap);
                std::thread::sleep(std::time::Duration::from_millis(2));
                // symlink → a fresh copy of alice's folder
                let _ = std::fs::remove_dir_all(&dirv);
                let _ = Command::new("cp").arg("-a").arg(&real).arg(&dirv).status();
                let _ = std::fs::rename(&swap, &link);
                let _ = std::fs::rename(&dirv, &swap);
                n += 1;
            }
            n
        })
    };
    let mut refused = 0;
    for i in 0..40 {
        let r = folder(&stack, alice, &d, &id(&format!("t/swap/new-{i}")), "REJECT").await;
        refused += usize::from(r.status != 200);
        let r = move_copy(&stack, alice, "copy", (&d, &id("t/real/f.txt")), (&d, &id(&format!("t/swap/c-{i}"))), "RENAME").await;
        refused += usize::from(r.status != 200);
        let r = move_copy(&stack, alice, "copy", (&d, &id("t/swap/secret.txt")), (&d, &id(&format!("t/got-{i}"))), "RENAME").await;
        assert_ne!(r.status, 200, "read bob's file through the swapped link: {r:?}");
        let _ = retrieve(&stack, alice, &d, &id("t/swap/secret.txt"), false).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 5, "the swapper ran ({swaps} swaps)");
    assert!(refused > 0, "some calls met the symlink");
    for i in 0..40 {
        assert!(!home.join(format!("t/got-{i}")).exists());
    }

    // Nothing outside alice's drive changed: bob's folder and /etc/passwd.
    assert_eq!(snapshot(), before, "bob's home changed");
    assert_eq!(std::fs::metadata("/etc/passwd").unwrap().mtime(), passwd);
    assert_eq!(read(&bob_home.join("secret.txt")), "bob's");
}

/// (path, size, mtime) of everything under `root`, not following links.
fn walk(root: &Path) -> Vec<(String, u64, i64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else { return out };
    for e in entries.flatten() {
        let m = e.path().symlink_metadata().unwrap();
        out.push((e.path().display().to_string(), m.len(), m.mtime()));
        if m.is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// Many-to-one: two UCloud users on one unix account are kept to their own folders by ucim alone.
#[tokio::test(flavor = "multi_thread")]
async fn many_to_one_users_cannot_reach_each_other() {
    if !enabled() {
        return;
    }
    let name = "files-m2o";
    let dir = stack_dir(name);
    let extra = format!("[storage.home]\nkind = \"home\"\npath = \"{}/shared/{{localUser}}/ucloud/{{ucloudUser}}\"\n", dir.display());
    let users = "mode = \"many-to-one\"\nshared_user = \"ucimshared\"".to_string();
    let stack = Stack::start_with(name, 47200, Options { users, extra, ..Default::default() }).await;
    user_dir(&dir.join("shared/ucimshared/ucloud"), "ucimshared", 0o700);
    let (ann, ben) = ("ann#m2o", "ben#m2o");
    for u in [ann, ben] {
        assert!(stack.sim.connect_user(u).await.unwrap().accepted_by_core());
    }
    let a = drive_of(&stack, &format!("h-{ann}"), ann).await;
    let b = drive_of(&stack, &format!("h-{ben}"), ben).await;
    assert!(folder(&stack, ann, &a, &format!("/{}/mine", a.id), "REJECT").await.accepted_by_core());
    let ann_dir = dir.join(format!("shared/ucimshared/ucloud/{ann}"));
    assert!(ann_dir.join("mine").is_dir());
    assert_eq!(std::fs::metadata(&ann_dir).unwrap().mode() & 0o777, 0o700);
    put(&ann_dir.join("mine/private.txt"), "ann's", "ucimshared");

    // ben with ann's drive (as if the Core had resolved it for him), and with ann's path on his drive.
    let a_for_ben = stack.sim.resolved_drive(&a.id, ben).unwrap();
    let r = stack.sim.browse_files(ben, &a_for_ben, &format!("/{}/mine", a.id), json!({})).await.unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    let r = retrieve(&stack, ben, &b, &format!("/{}/mine/private.txt", a.id), false).await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = retrieve(&stack, ben, &b, &format!("/{}/../{ann}/mine/private.txt", b.id), false).await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = move_copy(&stack, ben, "copy", (&a_for_ben, &format!("/{}/mine/private.txt", a.id)), (&b, &format!("/{}/x", b.id)), "REJECT").await;
    assert_eq!(r.status, 403, "{r:?}");
    // ben's own drive works and is his own folder.
    assert!(folder(&stack, ben, &b, &format!("/{}/his", b.id), "REJECT").await.accepted_by_core());
    assert!(dir.join(format!("shared/ucimshared/ucloud/{ben}/his")).is_dir());
    let r = stack.sim.browse_files(ben, &b, &format!("/{}", b.id), json!({})).await.unwrap();
    assert_eq!(names(&r), ["his"]);
    assert_eq!(read(&ann_dir.join("mine/private.txt")), "ann's");
}
