//! Bad tokens, other users' jobs, root: refused, with nothing executed.


use std::process::Command;

use auth::Claims;
use base64::Engine;
use crate::common::*;
use protocol::JobState;
use serde_json::json;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn service_claims() -> Claims {
    Claims {
        sub: "_UCloud".into(),
        role: "SERVICE".into(),
        iss: "cloud.sdu.dk".into(),
        iat: now(),
        exp: now() + 600,
        principal_type: Some("service".into()),
        aud: Some(json!(["all:write"])),
    }
}

/// Tokens that must all be refused, each with a name for the failure message.
fn forged_corpus(stack: &Stack) -> Vec<(&'static str, String)> {
    let signer = stack.sim.signer();
    let with = |f: &dyn Fn(&mut Claims)| {
        let mut c = service_claims();
        f(&mut c);
        signer.sign(&c)
    };
    let claims_json = serde_json::to_vec(&service_claims()).unwrap();
    let public_pem = std::fs::read(stack.sim.public_key_pem_path()).unwrap();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &service_claims(),
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    let other = auth::TokenSigner::from_private_pem(&auth::generate_keypair().private_pkcs8_pem).unwrap();
    let mut missing = Vec::new();
    for field in ["sub", "role", "iss", "iat", "exp"] {
        let mut v = serde_json::to_value(service_claims()).unwrap();
        v.as_object_mut().unwrap().remove(field);
        let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
        let body = b64(&serde_json::to_vec(&v).unwrap());
        // Signed properly by the right key: only the missing claim is wrong.
        let good = signer.sign(&service_claims());
        let sig = good.rsplit('.').next().unwrap();
        missing.push(format!("{header}.{body}.{sig}"));
    }
    let mut corpus = vec![
        ("alg none", format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(&claims_json))),
        ("HS256 with the public key as secret", hs256),
        ("RS256 by another key", other.sign(&service_claims())),
        ("provider token", signer.provider_token(PROVIDER, "cloud.sdu.dk", 600)),
        ("wrong sub", with(&|c| c.sub = "alice".into())),
        ("wrong role", with(&|c| c.role = "PROVIDER".into())),
        ("wrong iss", with(&|c| c.iss = "evil.example".into())),
        ("expired", with(&|c| {
            c.iat = now() - 1200;
            c.exp = now() - 600;
        })),
        ("iat in the future", with(&|c| c.iat = now() + 3600)),
        ("garbage", "this is not a token".into()),
        ("two segments", "abc.def".into()),
        ("oversize header", format!("{}.{}.sig", b64(&vec![b'a'; 100_000]), b64(&claims_json))),
    ];
    for (i, t) in missing.into_iter().enumerate() {
        let name = ["missing sub", "missing role", "missing iss", "missing iat", "missing exp"][i];
        corpus.push((name, t));
    }
    corpus
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_tokens_are_refused_with_nothing_executed() {
    if !enabled() {
        return;
    }
    let stack = Stack::start("forged", 43200).await;
    stack.map("alice#1234", "alice");
    let job = stack.sim.new_job("alice#1234", Stack::product(), "print-id", Default::default(), None);
    let body = serde_json::to_vec(&json!({"items": [job]})).unwrap();
    let corpus = forged_corpus(&stack);
    for (name, token) in &corpus {
        let auth = format!("Bearer {token}");
        for suffix in ["/jobs", "/integration/init", "/integration/retrieveManifest"] {
            let r = stack
                .sim
                .call_raw(reqwest::Method::POST, suffix, Some(&auth), Some("alice#1234"), Some(body.clone()))
                .await
                .unwrap();
            assert_eq!(r.status, 401, "{name} on {suffix}: {r:?}");
        }
    }
    for auth in [None, Some(""), Some("Bearer "), Some("Basic YWxpY2U6cHc=")] {
        let r = stack.sim.call_raw(reqwest::Method::GET, "/jobs/retrieveProducts", auth, None, None).await.unwrap();
        assert_eq!(r.status, 401, "{auth:?}: {r:?}");
    }
    // Nothing ran: no instance was started and the Core's job was never touched.
    let instances = String::from_utf8_lossy(&stack.admin(&["--json", "instances"]).stdout).to_string();
    assert_eq!(instances.trim(), "[]", "no instance may start for a forged call");
    assert!(stack.sim.job_updates(job["id"].as_str().unwrap()).is_empty());

    // The instance checks tokens itself: start it with a genuine call, then go around the server.
    let r = stack.sim.call(reqwest::Method::POST, "/integration/init", None, Some(json!({"username": "alice#1234"}))).await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    // The pool's first port, unless an outgoing connection held it as its ephemeral port when probed.
    let port = stack.instance_port("alice").expect("alice's instance runs");
    let direct = reqwest::Client::new();
    for (name, token) in &corpus {
        let r = direct
            .post(format!("http://127.0.0.1:{port}/ucloud/{PROVIDER}/jobs"))
            .header("Authorization", format!("Bearer {token}"))
            .header("ucloud-username", protocol::encode_username_header("alice#1234"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "instance accepted '{name}'");
    }
    // A genuine token for a user the instance does not serve.
    let token = stack.sim.signer().service_token("cloud.sdu.dk", 600);
    let r = direct
        .post(format!("http://127.0.0.1:{port}/ucloud/{PROVIDER}/jobs"))
        .header("Authorization", format!("Bearer {token}"))
        .header("ucloud-username", protocol::encode_username_header("bob#1"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "alice's instance served bob");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_cannot_touch_each_others_jobs() {
    if !enabled() {
        return;
    }
    let stack = Stack::start("isolation", 43220).await;
    stack.map("alice#1234", "alice");
    stack.map("bob#1", "bob");
    let (bob_job, r) = stack.submit("bob#1", "print-id", json!({"seconds": int(120)}), 5).await;
    assert!(r.accepted_by_core(), "{r:?}");
    stack.wait_state(&bob_job, JobState::Running, 60).await;
    let slurm_id = stack.slurm_id(&bob_job);

    // alice (through UCloud) asks to terminate bob's job: her instance cannot even see it.
    let job_json = stack.sim.job(&bob_job).unwrap();
    let r = stack
        .sim
        .call(reqwest::Method::POST, "/jobs/terminate", Some("alice#1234"), Some(json!({"items": [job_json]})))
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(squeue_state(slurm_id), "RUNNING");

    // On the cluster, over the socket: the server answers by the caller's uid (SO_PEERCRED).
    let sock = stack.socket.to_str().unwrap();
    let as_alice = stack.ucim_as("alice", &["job", "--socket", sock, &bob_job]);
    assert!(!as_alice.status.success());
    assert!(String::from_utf8_lossy(&as_alice.stderr).contains("not found"), "{as_alice:?}");
    let as_bob = stack.ucim_as("bob", &["job", "--socket", sock, &bob_job]);
    assert!(as_bob.status.success(), "{as_bob:?}");
    assert!(String::from_utf8_lossy(&as_bob.stdout).contains(&format!("slurm job {slurm_id}")));
    // Admin calls are for root and the service user only.
    let map = stack.ucim_as("alice", &["admin", "--socket", sock, "map", "bob#1", "alice"]);
    assert!(!map.status.success());
    assert!(String::from_utf8_lossy(&map.stderr).contains("only root"), "{map:?}");
    // And Slurm itself refuses alice.
    let scancel = Command::new("runuser").args(["-u", "alice", "--", "scancel", &slurm_id.to_string()]).output().unwrap();
    assert!(!scancel.status.success() || squeue_state(slurm_id) == "RUNNING");
    assert_eq!(squeue_state(slurm_id), "RUNNING");

    // bob can stop his own job.
    let r = stack.sim.terminate_job(&bob_job).await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    stack.wait_state(&bob_job, JobState::Success, 60).await;
}

#[test]
fn the_server_refuses_root_and_bad_config() {
    if !enabled() {
        return;
    }
    let out = Command::new(ucim()).args(["server", "--config", "/nonexistent.toml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refuses to run as root"), "{out:?}");
    let out = Command::new(ucim()).arg("user").output().unwrap();
    assert!(!out.status.success());

    let dir = std::env::temp_dir().join(format!("ucim-badconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "provider_id = \"x\"\n[core]\nurl = \"http://x\"\npublic_key_file = \"/k\"\nrefresh_token_file = \"/t\"\n[server]\nlisten = \"127.0.0.1:1\"\n[products.a]\ncategory = \"c\"\npartition = \"p\"\ncpus = 0\nmemory_gb = 1\nprice = 1\n").unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = Command::new("runuser").args(["-u", "ucloud", "--", &ucim(), "server", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("products.a.cpus") && err.contains("at least 1"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
