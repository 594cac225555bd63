//! Transfer figures (run by `dev/bench-transfers.sh`, as root, after the binaries are installed):
//! download and upload throughput of a 1 GiB file through alice's instance against nginx on the same
//! machine (`UCIM_BENCH_NGINX`, started by the script), and the instance's peak RSS (VmHWM) during a
//! 10,000-file folder upload.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/transfers/browser.rs"]
mod browser;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use reqwest::Method;
use serde_json::{json, Value};

const ALICE: &str = "alice#1234";
const GIB: u64 = 1 << 30;

fn main() {
    if std::env::var("UCIM_E2E").as_deref() != Ok("1") {
        eprintln!("set UCIM_E2E=1 and run as root (dev/bench-transfers.sh does)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

fn drive() -> Value {
    json!({
        "id": "101", "createdAt": 0, "owner": {"createdBy": ALICE, "project": null},
        "permissions": {"myself": ["ADMIN", "READ", "EDIT"], "others": []},
        "specification": {"title": "Home", "product": {"id": "home", "category": "home", "provider": common::PROVIDER}, "labels": {}},
        "updates": [], "status": {}, "providerGeneratedId": format!("h-{ALICE}")
    })
}

fn at_instance(stack: &common::Stack, endpoint: &str) -> String {
    let port = stack.instance_port("alice").expect("instance running");
    let (scheme, rest) = endpoint.split_once("://").unwrap();
    format!("{scheme}://127.0.0.1:{port}{}", &rest[rest.find('/').unwrap()..])
}

/// The `ucim user` process running as alice (not its sudo parent).
fn instance_pid() -> Option<u32> {
    let out = Command::new("pgrep").args(["-u", "alice", "-f", "ucim user$"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next()?.trim().parse().ok()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// curl's own measure, bytes per second; the best of three.
fn curl(args: &[&str], what: &str) -> f64 {
    (0..3)
        .map(|_| {
            let out = Command::new("curl").args(["-s", "-f", "-o", "/dev/null"]).args(args).output().unwrap();
            assert!(out.status.success(), "curl {what}: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().unwrap()
        })
        .fold(0.0, f64::max)
}

fn mib_s(bps: f64) -> String {
    format!("{:.0} MiB/s", bps / (1u64 << 20) as f64)
}

async fn call(stack: &common::Stack, suffix: &str, item: Value) -> Value {
    let r = stack.sim.call(Method::POST, suffix, Some(ALICE), Some(json!({"items": [item]}))).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.raw);
    r.body["responses"][0].clone()
}

async fn run() {
    let nginx = std::env::var("UCIM_BENCH_NGINX").ok();
    let data_dir = PathBuf::from(std::env::var("UCIM_BENCH_DIR").expect("UCIM_BENCH_DIR: folder with big.bin, readable by nginx"));
    let options = common::Options { extra: "[storage.home]\nkind = \"home\"\npath = \"/home/{localUser}\"\n".into(), ..Default::default() };
    let stack = common::Stack::start_with("bench-transfers", 47600, options).await;
    stack.map(ALICE, "alice");
    let pid = std::process::id();
    let work = format!("ucim-bench-transfers-{pid}");
    let home = common::home_of("alice");
    let target = home.join(&work);
    let _ = Command::new("runuser").args(["-u", "alice", "--", "mkdir", "-p"]).arg(&target).status();

    // 1. Memory during a 10,000-file folder upload (first, so the peak is this upload's).
    let src = PathBuf::from(format!("/tmp/ucim-bench-files-{pid}"));
    let mut items = Vec::new();
    for i in 0..10_000 {
        let rel = format!("d{:02}/f{i:05}.txt", i % 100);
        let path = src.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{i}").repeat(400)).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        items.push(browser::Item { relative: rel, source: path, size, modified_ms: 1_700_000_000_000 });
    }
    let up = call(&stack, "/files/upload", json!({"id": format!("/101/{work}/many"), "type": "FOLDER", "supportedProtocols": ["WEBSOCKET"], "conflictPolicy": "RENAME", "resolvedCollection": drive()})).await;
    let url = at_instance(&stack, up["endpoint"].as_str().unwrap());
    let ipid = instance_pid().expect("instance process");
    let before = vm_hwm_kib(ipid);
    let t = Instant::now();
    let out = browser::upload(&url, &items, None).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(out.completed, 10_000);
    println!(
        "10,000-file folder upload: {:.1} s ({:.0} files/s); instance VmHWM {} MiB before, {} MiB after",
        secs,
        10_000.0 / secs,
        before / 1024,
        vm_hwm_kib(ipid) / 1024
    );
    let _ = std::fs::remove_dir_all(&src);

    // 2. 1 GiB download: instance vs nginx.
    let big = data_dir.join("big.bin");
    assert_eq!(std::fs::metadata(&big).unwrap().len(), GIB);
    let in_home = target.join("big.bin");
    std::fs::copy(&big, &in_home).unwrap();
    let _ = Command::new("chown").arg("alice:alice").arg(&in_home).status();
    let down = call(&stack, "/files/download", json!({"id": format!("/101/{work}/big.bin"), "resolvedCollection": drive()})).await;
    let url = at_instance(&stack, down["endpoint"].as_str().unwrap());
    let ours = curl(&["-w", "%{speed_download}", &url], "instance download");
    print!("1 GiB download: instance {}", mib_s(ours));
    if let Some(n) = &nginx {
        let theirs = curl(&["-w", "%{speed_download}", &format!("{n}/big.bin")], "nginx download");
        print!(", nginx {}, ratio {:.2}× nginx", mib_s(theirs), ours / theirs);
    }
    println!();

    // 3. 1 GiB upload: the WEBSOCKET_V2 test browser vs curl PUT to nginx (WebDAV PUT writes the file).
    let up = call(&stack, "/files/upload", json!({"id": format!("/101/{work}/up.bin"), "type": "FILE", "supportedProtocols": ["WEBSOCKET"], "conflictPolicy": "RENAME", "resolvedCollection": drive()})).await;
    let url = at_instance(&stack, up["endpoint"].as_str().unwrap());
    let item = browser::Item { relative: String::new(), source: big.clone(), size: GIB, modified_ms: 1_700_000_000_000 };
    let t = Instant::now();
    let out = browser::upload(&url, &[item], None).await.unwrap();
    let ours = GIB as f64 / t.elapsed().as_secs_f64();
    assert_eq!(out.completed, 1);
    print!("1 GiB upload: instance (WEBSOCKET_V2, 1 MiB chunks) {}", mib_s(ours));
    if let Some(n) = &nginx {
        let theirs = curl(&["-w", "%{speed_upload}", "-T", big.to_str().unwrap(), &format!("{n}/up/big.bin")], "nginx upload");
        print!(", nginx PUT {}, ratio {:.2}× nginx", mib_s(theirs), ours / theirs);
    }
    println!();
    println!("instance VmHWM after the 1 GiB transfers: {} MiB", vm_hwm_kib(ipid) / 1024);
    let _ = std::fs::remove_dir_all(&target);
}
