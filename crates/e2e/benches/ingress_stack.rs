//! The real-instance backend of `dev/bench-ingress.sh` (`BACKEND=instance`): a whole stack (stand-in Core,
//! `ucim server`, `ucim ingress` with TLS, alice's instance), kept up until SIGTERM or SIGINT, so the load
//! generator can time one real user call three ways: straight to the instance, through the ingress, and
//! through nginx in front of the same instance.
//!
//! The call is `files.browse` of a folder of 20 small files in alice's home drive, with a token the
//! stand-in Core signed (and, like the Core, reuses), so the instance does what it does for UCloud:
//! verifies the JWT, checks the drive, lists and stats the folder as alice.
//!
//! Prints one JSON line when ready: `{"direct", "ingress", "ca", "method", "path", "headers", "body"}`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::json;

const USER: &str = "alice#ingressbench";

fn main() {
    if std::env::var("UCIM_E2E").as_deref() != Ok("1") {
        eprintln!("set UCIM_E2E=1 and run as root after dev/setup.sh (dev/bench-ingress.sh BACKEND=instance does both)");
        return;
    }
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(31450);
    tokio::runtime::Runtime::new().unwrap().block_on(run(port));
}

async fn run(ingress_port: u16) {
    let name = "ingressbench";
    let dir = std::path::PathBuf::from(format!("/tmp/ucim-e2e-{name}-{}", std::process::id()));
    let home = dir.join("homes/alice");
    let storage = format!("[storage.home]\nkind = \"home\"\npath = \"{}/homes/{{localUser}}\"\n", dir.display());
    let ingress = common::IngressOptions { port: ingress_port, extra: String::new() };
    let options = common::Options { extra: storage, ingress: Some(ingress), ..Default::default() };
    // Instance ports from ingress_port + 10: the bench script uses the two after the ingress's for nginx.
    let stack = common::Stack::start_with(name, ingress_port + 10, options).await;

    // alice's home drive with a folder of 20 small files, made as root and given to alice.
    let folder = home.join("bench");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..20 {
        std::fs::write(folder.join(format!("file-{i:02}.txt")), format!("file {i}\n")).unwrap();
    }
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(Command::new("chown").args(["-R", "alice:alice"]).arg(&home).status().unwrap().success());
    stack.map(USER, "alice");
    let pgid = format!("h-{USER}");
    let drive = stack.sim.wait_for_drive(&pgid, Duration::from_secs(20)).await.expect("home drive registered");
    let drive = stack.sim.resolved_drive(&drive.id, USER).unwrap();
    let path = format!("/{}/bench", drive.id);

    // Through the sim once: starts the instance and checks the answer.
    let r = stack.sim.browse_files(USER, &drive, &path, json!({})).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(20), "{r:?}");
    let instance = stack.instance_port("alice").expect("alice's instance runs");

    let body = ucloud_sim::browse_body(&drive, &path, json!({}));
    let ca = dir.join("ingress-ca.pem");
    std::fs::write(&ca, stack.ca_pem.as_deref().expect("the stack has an ingress")).unwrap();
    let spec = json!({
        "direct": format!("http://127.0.0.1:{instance}"),
        "ingress": stack.ingress_url.clone().unwrap(),
        "ca": ca,
        "method": "POST",
        "path": format!("/ucloud/{}{}", common::PROVIDER, protocol::provider::FILES_BROWSE),
        "headers": {
            "authorization": format!("Bearer {}", stack.sim.service_token().await),
            "ucloud-username": base64::engine::general_purpose::STANDARD.encode(USER),
            "content-type": "application/json",
        },
        "body": body.to_string(),
    });
    println!("{spec}");

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).unwrap();
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(stack);
}
