//! Issue 6, uploads and downloads, end to end: the stand-in Core asks alice's instance for upload and
//! download endpoints (createUpload / createDownload through the server), and a test browser talks to
//! the instance's port directly (in production the ingress forwards there by `usernameHint`).
//! Resumable WEBSOCKET_V2 folder uploads, CHUNKED, ranged and folder downloads, and the refusals.

#[path = "transfers/browser.rs"]
mod browser;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use browser::Item;
use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use transfer::codec::client;
use transfer::token::{Claims, Kind, TokenKey};

const ALICE: &str = "alice#1234";
const BOB: &str = "bob#1234";
const HOME_DRIVE: &str = "101";
const BOB_DRIVE: &str = "102";

fn options() -> Options {
    Options {
        extra: "[storage.home]\nkind = \"home\"\npath = \"/home/{localUser}\"\n".into(),
        ..Options::default()
    }
}

/// The Drive the Core resolves for a user's home.
fn home_drive(id: &str, user: &str) -> Value {
    json!({
        "id": id, "createdAt": 0,
        "owner": {"createdBy": user, "project": null},
        "permissions": {"myself": ["ADMIN", "READ", "EDIT"], "others": []},
        "specification": {"title": "Home", "product": {"id": "home", "category": "home", "provider": PROVIDER}, "labels": {}},
        "updates": [], "status": {}, "providerGeneratedId": format!("h-{user}")
    })
}

async fn create_upload(stack: &Stack, user: &str, drive: &Value, id: &str, kind: &str, protocols: &[&str]) -> ucloud_sim::CallResult {
    let item = json!({"id": id, "type": kind, "supportedProtocols": protocols, "conflictPolicy": "RENAME", "resolvedCollection": drive});
    stack.sim.call(Method::POST, "/files/upload", Some(user), Some(json!({"items": [item]}))).await.unwrap()
}

async fn create_download(stack: &Stack, user: &str, drive: &Value, id: &str) -> ucloud_sim::CallResult {
    let item = json!({"id": id, "resolvedCollection": drive});
    stack.sim.call(Method::POST, "/files/download", Some(user), Some(json!({"items": [item]}))).await.unwrap()
}

/// The endpoint as the browser would reach it, but at the instance's own port.
fn at_instance(stack: &Stack, endpoint: &str, unix_user: &str) -> String {
    let port = stack.instance_port(unix_user).expect("instance running");
    let (scheme, rest) = endpoint.split_once("://").unwrap();
    let path = &rest[rest.find('/').unwrap()..];
    format!("{scheme}://127.0.0.1:{port}{path}")
}

fn sha(path: &Path) -> String {
    let data = std::fs::read(path).unwrap();
    format!("{:x}", Sha256::digest(&data))
}

/// Deterministic pseudo-random bytes (xorshift), so files do not compress or repeat.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A source tree: a few MiB-sized files, nested folders, an empty file, odd names.
fn make_tree(dir: &Path) -> Vec<Item> {
    let mut specs: Vec<(String, usize)> = vec![
        ("big-1.bin".into(), 5 << 20),
        ("nested/big-2.bin".into(), 3 << 20),
        ("nested/deeper/empty".into(), 0),
        ("with space/ünï cödé.txt".into(), 1234),
        ("nested/deeper/big-3.bin".into(), (4 << 20) + 17),
    ];
    for i in 0..20 {
        specs.push((format!("nested/deeper/small-{i:02}.txt"), 100 + i * 997));
    }
    specs
        .into_iter()
        .enumerate()
        .map(|(i, (rel, size))| {
            let source = dir.join(&rel);
            std::fs::create_dir_all(source.parent().unwrap()).unwrap();
            std::fs::write(&source, bytes(i as u64 + 1, size)).unwrap();
            // mtimes well in the past, distinct per file: the uploaded files must carry them.
            Item { relative: rel, source, size: size as u64, modified_ms: 1_600_000_000_000 + i as i64 * 3_600_000 }
        })
        .collect()
}

fn is_temp(name: &str) -> bool {
    transfer::relpath::is_temp_name(name)
}

/// Every file under `dir`, relative path → absolute path.
fn walk(dir: &Path) -> BTreeMap<String, PathBuf> {
    fn go(base: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                go(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned(), p);
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

struct Cleanup(Vec<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn folder_upload_resumes_and_downloads_match() {
    if !enabled() {
        return;
    }
    let stack = Stack::start_with("transfers", 47500, options()).await;
    stack.map(ALICE, "alice");
    let pid = std::process::id();
    let src = PathBuf::from(format!("/tmp/ucim-e2e-transfers-src-{pid}"));
    let folder = format!("ucim-e2e-upload-{pid}");
    let target = home_of("alice").join(&folder);
    let _cleanup = Cleanup(vec![src.clone(), target.clone()]);
    let items = make_tree(&src);
    let total: u64 = items.iter().map(|i| i.size).sum();
    let drive = home_drive(HOME_DRIVE, ALICE);

    // createUpload through the Core and the server: WEBSOCKET_V2 at public_url, with usernameHint.
    let answer = create_upload(&stack, ALICE, &drive, &format!("/{HOME_DRIVE}/{folder}"), "FOLDER", &["CHUNKED", "WEBSOCKET"]).await;
    assert_eq!(answer.status, 200, "{}", answer.raw);
    let r = &answer.body["responses"][0];
    assert_eq!(r["protocol"], "WEBSOCKET_V2");
    let endpoint = r["endpoint"].as_str().unwrap();
    let token = r["token"].as_str().unwrap();
    let public = stack.provider_url.replace("http://", "ws://");
    assert!(endpoint.starts_with(&format!("{public}/ucloud/{PROVIDER}/upload?token={token}&usernameHint=")), "{endpoint}");
    assert!(target.is_dir(), "the FOLDER target is created when the session is");
    let url = at_instance(&stack, endpoint, "alice");

    // First attempt: the connection is cut after about half of the bytes.
    let first = browser::upload(&url, &items, Some(total / 2)).await.unwrap();
    assert!(first.cut && first.oks > 0, "{first:?}");
    // Never a truncated file under a real name; the cut file's temporary name goes away.
    let mut complete = 0;
    for _ in 0..50 {
        let found = walk(&target);
        if found.keys().all(|k| !is_temp(k.rsplit('/').next().unwrap())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (rel, path) in walk(&target) {
        let name = rel.rsplit('/').next().unwrap();
        assert!(!is_temp(name), "temporary file left after the cut: {rel}");
        let item = items.iter().find(|i| i.relative == rel).unwrap_or_else(|| panic!("unexpected {rel}"));
        assert_eq!(sha(path.as_path()), sha(&item.source), "{rel} is under its real name but incomplete");
        complete += 1;
    }
    assert!(complete > 0 && complete < items.len(), "cut half-way: {complete} of {} complete", items.len());

    // Resume with the same token on a new connection: what is complete is skipped.
    let second = browser::upload(&url, &items, None).await.unwrap();
    assert_eq!(second.skips, complete, "{second:?}");
    assert_eq!(second.oks, items.len() - complete);
    assert_eq!(second.completed as usize, items.len());
    assert_eq!(second.closed_by_server.as_ref().map(|c| c.0), Some(1000), "{second:?}");

    let alice_uid = uid_of("alice");
    let found = walk(&target);
    assert_eq!(found.len(), items.len(), "{:?}", found.keys());
    for item in &items {
        let path = &found[&item.relative];
        assert_eq!(sha(path), sha(&item.source), "{}", item.relative);
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.uid(), alice_uid, "{} written by the kernel as alice", item.relative);
        let mtime = meta.modified().unwrap().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        assert_eq!(mtime, item.modified_ms, "{} keeps its mtime", item.relative);
    }
    assert_eq!(std::fs::metadata(target.join("nested/deeper")).unwrap().uid(), alice_uid);

    // A third run skips everything.
    let third = browser::upload(&url, &items, None).await.unwrap();
    assert_eq!((third.skips, third.oks), (items.len(), 0));

    // Downloads: whole file, ranges, 416.
    let http = reqwest::Client::new();
    let big = &items[0];
    let original = std::fs::read(&big.source).unwrap();
    let answer = create_download(&stack, ALICE, &drive, &format!("/{HOME_DRIVE}/{folder}/{}", big.relative)).await;
    assert_eq!(answer.status, 200, "{}", answer.raw);
    let endpoint = answer.body["responses"][0]["endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with(&format!("{}/ucloud/{PROVIDER}/download?token=", stack.provider_url)), "{endpoint}");
    let url = at_instance(&stack, endpoint, "alice");
    let full = http.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    let h = full.headers().clone();
    assert_eq!(h["content-length"], original.len().to_string().as_str());
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-disposition"], "attachment; filename*=UTF-8''big-1.bin");
    assert!(full.bytes().await.unwrap() == original, "full download matches");
    let size = original.len();
    for (range, start, end) in [
        ("bytes=100-1099".to_string(), 100, 1099),
        ("bytes=-500".to_string(), size - 500, size - 1),
        (format!("bytes={}-", size - 4321), size - 4321, size - 1),
        (format!("bytes=5-{}", size * 2), 5, size - 1),
    ] {
        let r = http.get(&url).header("Range", &range).send().await.unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(r.headers()["content-range"], format!("bytes {start}-{end}/{size}").as_str(), "{range}");
        assert!(r.bytes().await.unwrap() == original[start..=end], "{range} matches byte for byte");
    }
    let r = http.get(&url).header("Range", format!("bytes={size}-")).send().await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], format!("bytes */{size}").as_str());
    // Several ranges: the whole file (documented choice).
    let r = http.get(&url).header("Range", "bytes=0-1,5-6").send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A file name needing encoding.
    let odd = &items[3];
    let answer = create_download(&stack, ALICE, &drive, &format!("/{HOME_DRIVE}/{folder}/{}", odd.relative)).await;
    let r = http.get(at_instance(&stack, answer.body["responses"][0]["endpoint"].as_str().unwrap(), "alice")).send().await.unwrap();
    assert_eq!(r.headers()["content-disposition"], "attachment; filename*=UTF-8''%C3%BCn%C3%AF%20c%C3%B6d%C3%A9.txt");

    // The folder as a tar stream lists the tree with the right contents.
    let answer = create_download(&stack, ALICE, &drive, &format!("/{HOME_DRIVE}/{folder}")).await;
    let url = at_instance(&stack, answer.body["responses"][0]["endpoint"].as_str().unwrap(), "alice");
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-tar");
    let tar_bytes = r.bytes().await.unwrap();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut listed = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            listed.insert(path, format!("{:x}", Sha256::digest(&data)));
        }
    }
    for item in &items {
        let key = format!("{folder}/{}", item.relative);
        assert_eq!(listed.get(&key), Some(&sha(&item.source)), "{key} in the archive");
    }
    assert_eq!(listed.len(), items.len());

    // CHUNKED, for a browser that offers nothing else: contiguous offsets, repeats accepted, gaps refused.
    let data = bytes(99, 10_000);
    let answer = create_upload(&stack, ALICE, &drive, &format!("/{HOME_DRIVE}/{folder}/chunked.bin"), "FILE", &["CHUNKED"]).await;
    assert_eq!(answer.status, 200, "{}", answer.raw);
    let r = &answer.body["responses"][0];
    assert_eq!(r["protocol"], "CHUNKED");
    let url = at_instance(&stack, r["endpoint"].as_str().unwrap(), "alice");
    let token = r["token"].as_str().unwrap();
    let pre = http.request(Method::OPTIONS, &url).header("Origin", "https://cloud.example").send().await.unwrap();
    assert_eq!(pre.status(), 204);
    assert!(pre.headers()["access-control-allow-headers"].to_str().unwrap().contains("Chunked-Upload-Offset"));
    let post = |offset: usize, chunk: &[u8]| {
        http.post(&url)
            .header("Chunked-Upload-Token", token)
            .header("Chunked-Upload-Offset", offset.to_string())
            .header("Chunked-Upload-Total-Size", data.len().to_string())
            .body(chunk.to_vec())
            .send()
    };
    let final_path = target.join("chunked.bin");
    let first = post(0, &data[..4000]).await.unwrap();
    assert_eq!(first.status(), 200, "{:?}", first.text().await);
    assert_eq!(post(0, &data[..4000]).await.unwrap().status(), 200, "a repeated chunk is accepted");
    assert_eq!(post(6000, &data[6000..]).await.unwrap().status(), 409, "a gap is refused");
    assert!(!final_path.exists(), "nothing under the real name before the last byte");
    let last = post(4000, &data[4000..]).await.unwrap();
    assert_eq!(last.status(), 200);
    assert_eq!(last.headers()["access-control-allow-origin"], "*");
    assert_eq!(std::fs::read(&final_path).unwrap(), data);
    assert_eq!(std::fs::metadata(&final_path).unwrap().uid(), alice_uid);
    assert_eq!(post(4000, &data[4000..]).await.unwrap().status(), 200, "a retry after completion is accepted");
    assert_eq!(std::fs::read(&final_path).unwrap(), data);
}

fn secret_of(stack: &Stack) -> Vec<u8> {
    let hex = std::fs::read_to_string(stack.dir.join("db/transfer-secret")).unwrap();
    (0..32).map(|i| u8::from_str_radix(&hex.trim()[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn claims(kind: Kind, root: &str, path: &str, expires: i64) -> Claims {
    Claims {
        kind,
        user: ALICE.into(),
        drive: HOME_DRIVE.into(),
        root: root.into(),
        sub: String::new(),
        path: path.into(),
        upload_type: Some("FOLDER".into()),
        policy: Some("Rename".into()),
        protocol: Some("WEBSOCKET_V2".into()),
        expires,
        nonce: "e2e".into(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_and_paths_are_refused() {
    if !enabled() {
        return;
    }
    let stack = Stack::start_with("transfers-bad", 47520, options()).await;
    stack.map(ALICE, "alice");
    stack.map(BOB, "bob");
    let pid = std::process::id();
    let folder = format!("ucim-e2e-refuse-{pid}");
    let target = home_of("alice").join(&folder);
    let bob_file = home_of("bob").join(format!("ucim-e2e-bob-{pid}.txt"));
    let _cleanup = Cleanup(vec![target.clone()]);
    std::fs::write(&bob_file, "bob's").unwrap();
    let drive = home_drive(HOME_DRIVE, ALICE);
    let bob_drive = home_drive(BOB_DRIVE, BOB);
    let http = reqwest::Client::new();

    // A real download for alice to compare with.
    let upload = create_upload(&stack, ALICE, &drive, &format!("/{HOME_DRIVE}/{folder}"), "FOLDER", &["WEBSOCKET"]).await;
    assert_eq!(upload.status, 200, "{}", upload.raw);
    let upload_url = at_instance(&stack, upload.body["responses"][0]["endpoint"].as_str().unwrap(), "alice");
    std::fs::write(target.join("f.txt"), "alice's").unwrap();
    let down = create_download(&stack, ALICE, &drive, &format!("/{HOME_DRIVE}/{folder}/f.txt")).await;
    let good = at_instance(&stack, down.body["responses"][0]["endpoint"].as_str().unwrap(), "alice");
    assert_eq!(http.get(&good).send().await.unwrap().text().await.unwrap(), "alice's");
    let base = good.split("?token=").next().unwrap().to_string();
    let good_token = good.split("token=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let status = |token: String| {
        let url = format!("{base}?token={token}");
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };

    // Forged, expired, tampered, another uid's key, a token of bob's own instance.
    let alice_key = TokenKey::derive(&secret_of(&stack), uid_of("alice"));
    let bob_key = TokenKey::derive(&secret_of(&stack), uid_of("bob"));
    let home = home_of("alice").to_string_lossy().into_owned();
    let file = format!("{folder}/f.txt");
    assert_eq!(status("forged.token".into()).await, 404);
    assert_eq!(status(String::new()).await, 404);
    assert_eq!(status(alice_key.sign(&claims(Kind::Download, &home, &file, now() - 5))).await, 404, "expired");
    assert_eq!(status(alice_key.sign(&claims(Kind::Upload, &home, &file, now() + 60))).await, 404, "an upload token");
    assert_eq!(status(bob_key.sign(&claims(Kind::Download, &home, &file, now() + 60))).await, 404, "bob's key");
    assert_eq!(status(alice_key.sign(&claims(Kind::Download, &home, &file, now() + 60))).await, 200, "the control");
    let (payload, sig) = good_token.split_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut c: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    c["p"] = json!(format!("../bob/ucim-e2e-bob-{pid}.txt"));
    let tampered = format!("{}.{sig}", b64.encode(serde_json::to_vec(&c).unwrap()));
    assert_eq!(status(tampered).await, 404, "tampered path");
    let bob_down = create_download(&stack, BOB, &bob_drive, &format!("/{BOB_DRIVE}/ucim-e2e-bob-{pid}.txt")).await;
    assert_eq!(bob_down.status, 200, "{}", bob_down.raw);
    let bob_token = bob_down.body["responses"][0]["endpoint"].as_str().unwrap().split("token=").nth(1).unwrap().split('&').next().unwrap().to_string();
    assert_eq!(status(bob_token).await, 404, "bob's token is useless on alice's instance");
    // Even a correctly signed token cannot name a path out of its drive.
    assert_eq!(status(alice_key.sign(&claims(Kind::Download, &home, "../bob/x", now() + 60))).await, 400);
    assert_eq!(status(alice_key.sign(&claims(Kind::Download, &home, "/etc/passwd", now() + 60))).await, 400);
    // A bad token on the upload socket is refused before the upgrade.
    let ws = tokio_tungstenite::connect_async(upload_url.replace("token=", "token=x")).await;
    assert!(ws.is_err(), "upgrade with a forged token refused");

    // LISTINGs with `..`, absolute paths or NUL end the session; nothing is written outside.
    for bad in ["../escaped.txt", "/tmp/escaped.txt", "a/../../escaped.txt", "a\0b"] {
        let close = browser::send_raw(&upload_url, vec![client::listing([(1, 3, 0, bad)]), client::chunk(1, b"bad")]).await.unwrap();
        assert_eq!(close.as_ref().map(|c| c.0), Some(1008), "{bad:?}: {close:?}");
    }
    assert!(!home_of("alice").join("escaped.txt").exists());
    assert!(!Path::new("/tmp/escaped.txt").exists());
    // A symlink alice plants in the target is not followed (the kernel refuses it during resolution).
    std::os::unix::fs::symlink("/tmp", target.join("link")).unwrap();
    let close = browser::send_raw(&upload_url, vec![client::listing([(1, 3, 0, "link/escaped.txt")]), client::chunk(1, b"bad")]).await.unwrap();
    assert_eq!(close.as_ref().map(|c| c.0), Some(1008), "{close:?}");
    assert!(!Path::new("/tmp/escaped.txt").exists());
    // A signed upload token aimed at bob's home: the kernel says no to alice.
    let into_bob = alice_key.sign(&claims(Kind::Upload, &home_of("bob").to_string_lossy(), "", now() + 60));
    let url = format!("{}?token={into_bob}", upload_url.split("?token=").next().unwrap());
    let close = browser::send_raw(&url, vec![client::listing([(1, 3, 0, "planted.txt")]), client::chunk(1, b"bad")]).await.unwrap();
    assert_eq!(close.as_ref().map(|c| c.0), Some(1008), "{close:?}");
    assert!(!home_of("bob").join("planted.txt").exists());

    // createUpload targets outside the drive, in another drive, or in another user's drive.
    for (user, d, id) in [
        (ALICE, &drive, format!("/{HOME_DRIVE}/../../etc/x")),
        (ALICE, &drive, format!("/{HOME_DRIVE}/a/../../x")),
        (ALICE, &drive, "/999/x".to_string()),
        (ALICE, &drive, "relative/x".to_string()),
        (ALICE, &bob_drive, format!("/{BOB_DRIVE}/x")),
    ] {
        let r = create_upload(&stack, user, d, &id, "FILE", &["WEBSOCKET"]).await;
        assert!((400..500).contains(&r.status), "{id}: {} {}", r.status, r.raw);
        let r = create_download(&stack, user, d, &id).await;
        assert!((400..500).contains(&r.status), "{id}: {} {}", r.status, r.raw);
    }
    let _ = std::fs::remove_file(&bob_file);
}
