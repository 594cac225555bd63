//! `ucim ingress` in front of the real server and instances (real Slurm, users, sudo), over TLS with a
//! CA made by the test: the stand-in Core calls the ingress only.


use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::json;

const PORT_BASE: u16 = 46000;
const INGRESS_PORT: u16 = 46090;

fn access_lines(stack: &Stack) -> Vec<String> {
    stack.ingress_log().lines().filter(|l| l.contains("ucim::access")).map(str::to_string).collect()
}

/// The access lines once one matches `done` (the ingress writes its access log out every 200 ms).
async fn wait_access(stack: &Stack, done: impl Fn(&str) -> bool) -> Vec<String> {
    for _ in 0..50 {
        if access_lines(stack).iter().any(|l| done(l)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    access_lines(stack)
}

async fn wait_log(stack: &Stack, needle: &str) -> bool {
    for _ in 0..50 {
        if stack.ingress_log().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn core_calls_through_the_ingress_reach_the_users_instance() {
    if !enabled() {
        return;
    }
    let options = Options { ingress: Some(IngressOptions { port: INGRESS_PORT, extra: String::new() }), ..Default::default() };
    let stack = Stack::start_with("ingress", PORT_BASE, options).await;
    stack.map("alice#1", "alice");

    // No instance yet: the ingress sends the call to the server, which answers 449; the sim (as the Core)
    // calls init and retries, and the retry goes straight to alice's new instance.
    let (job, result) = stack.submit("alice#1", "print-id", json!({"seconds": int(300)}), 10).await;
    assert_eq!(result.status, 200, "{:?}\ningress log:\n{}", result.body, stack.ingress_log());
    assert!(result.attempts >= 2, "expected the 449 → init → retry dance, got {} attempt(s)", result.attempts);
    stack.wait_state(&job, protocol::JobState::Running, 60).await;
    let lines = wait_access(&stack, |l| l.contains("path=/ucloud/e2e/jobs ") && l.contains("status=200")).await;
    let creates: Vec<&String> = lines.iter().filter(|l| l.contains("path=/ucloud/e2e/jobs ")).collect();
    assert!(creates[0].contains("to=server") && creates[0].contains("status=449"), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("path=/ucloud/e2e/integration/init") && l.contains("to=server") && l.contains("status=200")), "{lines:#?}");
    let last = creates.last().unwrap();
    assert!(last.contains("to=instance:460") && last.contains("status=200"), "{lines:#?}");

    // The instance runs now: the next call goes there at once (one attempt).
    let (job2, result) = stack.submit("alice#1", "print-id", json!({"seconds": int(300)}), 10).await;
    assert_eq!((result.status, result.attempts), (200, 1), "{:?}", result.body);
    // The job landed in alice's instance: it runs as alice.
    stack.wait_state(&job2, protocol::JobState::Running, 60).await;
    // The server never saw that call, yet it is in the audit log: the instance reported it, once.
    let audit = std::fs::read_to_string(stack.dir.join("db/audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let direct: Vec<&serde_json::Value> = lines.iter().filter(|l| l["ids"].as_array().is_some_and(|ids| ids.contains(&json!(job2)))).collect();
    assert_eq!(direct.len(), 1, "{audit}");
    let line = direct[0];
    assert_eq!((line["ucloudUser"].as_str(), line["unixUser"].as_str(), line["action"].as_str(), line["outcome"].as_str(), line["via"].as_str()),
        (Some("alice#1"), Some("alice"), Some("POST /jobs"), Some("200"), Some("instance")), "{audit}");
    stack.sim.terminate_job(&job).await.unwrap();

    // HTTP/2 over the same ingress (ALPN), a Core call for alice: lands in her instance.
    let ca = stack.ca_pem.clone().unwrap();
    let (version, status, body) = h2_call(&ca, &stack, "/ucloud/e2e/jobs/terminate", "alice#1", json!({"items": [stack.sim.job(&job2).unwrap()]})).await;
    assert_eq!(version, hyper::Version::HTTP_2);
    assert_eq!(status, 200, "{body}");
    let routed = |l: &str| l.contains("path=/ucloud/e2e/jobs/terminate") && l.contains("to=instance:") && l.contains("status=200");
    let lines = wait_access(&stack, routed).await;
    assert!(lines.iter().any(|l| routed(l)), "{lines:#?}");
    stack.wait_state(&job2, protocol::JobState::Success, 60).await;

    // A token the Core did not sign is refused by the instance behind the ingress (the ingress checks none).
    let forged = stack.sim.call_raw(reqwest::Method::POST, "/jobs", Some("Bearer forged"), Some("alice#1"), Some(b"{\"items\":[]}".to_vec())).await.unwrap();
    assert_eq!(forged.status, 401);

    // SIGHUP reloads the certificate (the same files here) without dropping anything.
    let pid = stack.ingress_pid().expect("ingress pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(wait_log(&stack, "by_signal=true").await, "{}", stack.ingress_log());
    let (job3, result) = stack.submit("alice#1", "print-id", json!({"seconds": int(300)}), 10).await;
    assert_eq!(result.status, 200);
    assert!(stack.sim.terminate_job(&job3).await.unwrap().accepted_by_core());
}

/// One Core-shaped call over HTTP/2: (negotiated version, status, body).
async fn h2_call(ca_pem: &str, stack: &Stack, path: &str, user: &str, body: serde_json::Value) -> (hyper::Version, u16, String) {
    use http_body_util::BodyExt;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", INGRESS_PORT)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let token = stack.sim.signer().service_token("cloud.sdu.dk", 600);
    let req = hyper::Request::post(format!("{}{path}", stack.ingress_url.as_deref().unwrap()))
        .header("authorization", format!("Bearer {token}"))
        .header("ucloud-username", protocol::encode_username_header(user))
        .body(http_body_util::Full::new(bytes_of(&body)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let (version, status) = (resp.version(), resp.status().as_u16());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (version, status, String::from_utf8_lossy(&body).into_owned())
}

fn bytes_of(v: &serde_json::Value) -> hyper::body::Bytes {
    hyper::body::Bytes::from(serde_json::to_vec(v).unwrap())
}
