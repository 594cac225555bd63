//! The ingress over real TLS (a CA made by the test), in front of small backends: routing, HTTP/1.1 and
//! HTTP/2, WebSockets, certificate reload, smuggling shapes, limits, header hygiene.

mod support;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use ingress::Metrics;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALICE: &str = "YWxpY2UjMQ=="; // "alice#1"

struct Setup {
    ca: Ca,
    dir: std::path::PathBuf,
    server: Backend,
    alice: Backend,
    routes: Arc<Routes>,
    ingress: ingress::Running,
}

async fn setup(name: &str, tweak: impl FnOnce(&mut ingress::Settings)) -> Setup {
    let dir = temp_dir(name);
    let ca = Ca::new("test-ca");
    let (cert, key) = ca.write_leaf("old-cert", &dir);
    let server = backend("server").await;
    let alice = backend("alice").await;
    let routes = Arc::new(Routes::default());
    routes.ports.lock().unwrap().insert("alice#1".into(), alice.addr.port());
    let mut s = settings(server.addr, &cert, &key);
    tweak(&mut s);
    let ingress = ingress::start(s, routes.clone()).await.unwrap();
    Setup { ca, dir, server, alice, routes, ingress }
}

#[tokio::test]
async fn http1_and_http2_reach_the_right_backend() {
    let s = setup("route", |_| {}).await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut c = Client::connect(s.ca.client_config(&[alpn]), s.ingress.addr).await;
        let h2 = matches!(c, Client::H2(_));
        assert_eq!(h2, alpn == b"h2");
        // A Core call for alice goes to her instance, body and all.
        let resp = c.send(request("POST", "/ucloud/hpc/jobs", &[("ucloud-username", ALICE), ("authorization", "Bearer t")], "{\"items\":[]}")).await;
        assert!(resp.headers().get("x-ucim-secret").is_none(), "internal response headers are stripped");
        let (status, body) = json(resp).await;
        assert_eq!(status, 200);
        assert_eq!(body["backend"], "alice");
        assert_eq!(body["received"], 12);
        assert_eq!(body["headers"]["authorization"], "Bearer t");
        assert_eq!(body["headers"]["x-forwarded-proto"], "https");
        // Calls the server answers itself, and calls without a user, go to the server.
        for (path, user) in [("/ucloud/hpc/integration/init", Some(ALICE)), ("/ucloud/hpc/jobs/extend", Some(ALICE)), ("/ucloud/hpc/jobs/retrieveProducts", None)] {
            let headers: Vec<(&str, &str)> = user.map(|u| ("ucloud-username", u)).into_iter().collect();
            let (status, body) = json(c.send(request("POST", path, &headers, "{}")).await).await;
            assert_eq!((status, body["backend"].as_str()), (200, Some("server")), "{path}");
        }
        // bob has no running instance: the server answers (with 449 in real life).
        let bob = protocol::encode_username_header("bob");
        let (_, body) = json(c.send(request("POST", "/ucloud/hpc/jobs", &[("ucloud-username", &bob)], "{}")).await).await;
        assert_eq!(body["backend"], "server");
        // Unknown prefixes never reach a backend.
        let (status, _) = json(c.send(request("GET", "/ucloud/other/jobs", &[], "")).await).await;
        assert_eq!(status, 404);
        let (status, _) = json(c.send(request("GET", "/ucloud/hpc/../other/x", &[], "")).await).await;
        assert_eq!(status, 400);
    }
    // The route was looked up once for alice (then cached), bob every time.
    assert_eq!(s.routes.lookups.load(Relaxed), 3);
    let m: &Metrics = &s.ingress.metrics;
    assert_eq!(Metrics::get(&m.to_instance), 2);
    assert_eq!(Metrics::get(&m.requests), 14);
    assert_eq!(Metrics::get(&m.by_class[3]), 4);
    assert!(Metrics::get(&m.bytes_out) > 0);
}

#[tokio::test]
async fn browser_paths_route_by_hint_and_stream_uploads_without_limit() {
    let s = setup("upload", |_| {}).await;
    let mut c = Client::connect(s.ca.client_config(&[b"http/1.1"]), s.ingress.addr).await;
    // 3 MiB to the upload path (the JSON limit here is 1 MiB), streamed in chunks.
    let chunks = futures_util::stream::iter((0..48).map(|_| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(vec![7u8; 65536])))));
    let body = http_body_util::StreamBody::new(chunks).boxed();
    let req = hyper::Request::post("https://localhost/ucloud/hpc/upload?token=t0k&usernameHint=YWxpY2UjMQ").body(body).unwrap();
    let (status, body) = json(c.send(req).await).await;
    assert_eq!((status, body["backend"].as_str(), body["received"].as_u64()), (200, Some("alice"), Some(3 << 20)));
    assert_eq!(body["query"], "token=t0k&usernameHint=YWxpY2UjMQ", "path and query reach the instance unchanged");
    assert_eq!(s.routes.starts.load(Relaxed), 1, "browser paths ask for the instance to be started");
    // The same size to a Core call is refused, by its Content-Length before anything is forwarded...
    let before = s.alice.requests.load(Relaxed);
    // (Raw bytes: the answer comes, and the connection closes, before the body is sent, which a client
    // still writing it may see as a broken pipe.)
    let mut tls = tls_connect(s.ca.client_config(&[b"http/1.1"]), s.ingress.addr).await;
    let head = format!("POST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nucloud-username: {ALICE}\r\nContent-Length: {}\r\n\r\n", 3 << 20);
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&[0u8; 4096]).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await.expect("answered and closed");
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(s.alice.requests.load(Relaxed), before);
    // ...or while streaming when it has none.
    let mut c = Client::connect(s.ca.client_config(&[b"h2"]), s.ingress.addr).await;
    let chunks = futures_util::stream::iter((0..48).map(|_| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(vec![7u8; 65536])))));
    let req = hyper::Request::post("https://localhost/ucloud/hpc/jobs").header("ucloud-username", ALICE).body(http_body_util::StreamBody::new(chunks).boxed()).unwrap();
    let status = c.send(req).await.status().as_u16();
    assert_eq!(status, 413, "the ingress tells why it stopped the body");
    // No user on a browser path: refused at the ingress.
    let (status, _) = json(c.send(request("GET", "/ucloud/hpc/download?token=x", &[], "")).await).await;
    assert_eq!(status, 400);
    // An unmapped user: no instance.
    let (status, _) = json(c.send(request("GET", "/ucloud/hpc/download?token=x&usernameHint=Ym9i", &[], "")).await).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn client_sent_internal_and_hop_by_hop_headers_are_stripped() {
    let s = setup("headers", |_| {}).await;
    let mut c = Client::connect(s.ca.client_config(&[b"http/1.1"]), s.ingress.addr).await;
    let headers = [
        ("ucloud-username", ALICE),
        ("x-ucim-peer-uid", "0"),
        ("x-forwarded-for", "10.9.9.9"),
        ("forwarded", "for=10.9.9.9"),
        ("connection", "x-drop-me"),
        ("x-drop-me", "1"),
        ("proxy-authorization", "Basic eA=="),
        ("x-kept", "yes"),
    ];
    let (_, body) = json(c.send(request("POST", "/ucloud/hpc/jobs", &headers, "{}")).await).await;
    let got = body["headers"].as_object().unwrap();
    for gone in ["x-ucim-peer-uid", "forwarded", "x-drop-me", "proxy-authorization"] {
        assert!(!got.contains_key(gone), "{gone} reached the backend: {got:?}");
    }
    assert_eq!(got["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got["x-kept"], "yes");
}

#[tokio::test]
async fn websocket_echo_ping_and_close_pass_through() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::Message;
    let s = setup("ws", |_| {}).await;
    // A browser asks for HTTP/1.1 for WebSockets (the ingress does not offer extended CONNECT on h2).
    let tls = tls_connect(s.ca.client_config(&[b"http/1.1"]), s.ingress.addr).await;
    let url = "wss://localhost/ucloud/jobs.provider.hpc/websocket?usernameHint=YWxpY2UjMQ%3D%3D";
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["x-backend"], "alice");
    ws.send(Message::text("{\"call\":\"x\",\"streamId\":\"1\"}")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("{\"call\":\"x\",\"streamId\":\"1\"}"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(vec![1u8, 2, 3]));
    // The backend's tungstenite answers a ping: the pong crossed the ingress both ways.
    ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::Pong(b"are you there".to_vec().into()));
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: "bye".into() }))).await.unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected the close frame echoed, got {other:?}"),
    }
    assert!(s.ingress.metrics.active_tunnels.load(Relaxed) <= 1);
}

#[tokio::test]
async fn certificate_reload_keeps_requests_in_flight() {
    let s = setup("reload", |_| {}).await;
    let config = s.ca.client_config(&[b"http/1.1"]);
    let tls = tls_connect(config.clone(), s.ingress.addr).await;
    assert_eq!(peer_cn(&tls), "old-cert");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    // A 2-second streamed answer...
    let resp = send.send_request(request("GET", "/ucloud/hpc/slow", &[], "")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let long = tokio::spawn(async move { resp.into_body().collect().await.map(|b| b.to_bytes().len()) });
    // ...while the files are replaced: the watcher notices within a second or so.
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.ca.write_leaf("new-cert", &s.dir);
    let mut seen_new = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if peer_cn(&tls_connect(config.clone(), s.ingress.addr).await) == "new-cert" {
            seen_new = true;
            break;
        }
    }
    assert!(seen_new, "new connections never saw the new certificate");
    assert!(!long.is_finished(), "the long request should still be running");
    assert_eq!(long.await.unwrap().unwrap(), 200, "the request in flight completed on the old connection");
    assert_eq!(s.ingress.metrics.cert_reloads.load(Relaxed), 1);
    // A broken pair is refused; the good one stays.
    std::fs::write(s.dir.join("key.pem"), "not a key").unwrap();
    assert!(s.ingress.certs.as_ref().unwrap().reload().is_err());
    assert_eq!(peer_cn(&tls_connect(config, s.ingress.addr).await), "new-cert");
}

#[tokio::test]
async fn smuggling_shapes_and_oversize_heads_are_refused() {
    let s = setup("smuggle", |_| {}).await;
    let config = s.ca.client_config(&[b"http/1.1"]);
    let smuggled = "GET /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nucloud-username: YWxpY2UjMQ==\r\n\r\n";
    let shapes = [
        ("different Content-Lengths", format!("POST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 60\r\n\r\n{{}}{{}}{smuggled}")),
        ("Content-Length list", format!("POST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n{{}}{smuggled}")),
        ("Transfer-Encoding not chunked", format!("POST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{smuggled}")),
        ("Transfer-Encoding chunked, then identity", format!("POST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}")),
        ("obs-fold", "POST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\n{}".to_string()),
        ("obs-fold in Transfer-Encoding", "POST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n".to_string()),
        ("space before colon", "POST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\n{}".to_string()),
        ("Content-Length, then Transfer-Encoding", format!("POST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("Transfer-Encoding, then Content-Length", format!("POST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{smuggled}")),
        ("Content-Length and Transfer-Encoding after a good request", format!("GET /ucloud/hpc/x HTTP/1.1\r\nHost: x\r\n\r\nPOST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("Transfer-Encoding in HTTP/1.0", "POST /ucloud/hpc/jobs HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string()),
    ];
    for (name, bytes) in &shapes {
        let before = s.server.requests.load(Relaxed) + s.alice.requests.load(Relaxed);
        let answer = raw(config.clone(), s.ingress.addr, bytes.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{name}: {answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{name}: one answer, then close: {answer}");
        assert!(!answer.contains("x-backend"), "{name}: reached a backend: {answer}");
        assert_eq!(s.server.requests.load(Relaxed) + s.alice.requests.load(Relaxed), before, "{name}");
    }
    // Same Content-Length twice is unambiguous: hyper keeps one, and the backend sees exactly one body.
    let twice = "POST /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let answer = raw(config.clone(), s.ingress.addr, twice.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"received\":2"), "{answer}");

    // A 20 KiB header (limit 16 KiB): 431 before anything is forwarded.
    let big = format!("GET /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20 * 1024));
    let answer = raw(config.clone(), s.ingress.addr, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn slow_heads_time_out_and_stale_routes_fall_back_to_the_server() {
    let s = setup("timeouts", |s| s.header_read_timeout = Duration::from_millis(500)).await;
    let config = s.ca.client_config(&[b"http/1.1"]);
    // A head that never ends: the connection is closed after the header read timeout.
    let mut tls = tls_connect(config.clone(), s.ingress.addr).await;
    tls.write_all(b"GET /ucloud/hpc/jobs HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "the slow head was never cut off");
    assert!(started.elapsed() < Duration::from_secs(3));

    // The route says alice's instance is on a port where nothing listens (it stopped or moved since): the
    // connection is refused, the route is dropped and the call, body untouched, goes to the server (which
    // answers 449 in real life so the Core calls init and retries).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s2 = setup("timeouts2", |_| {}).await;
    s2.routes.ports.lock().unwrap().insert("alice#1".into(), dead);
    let mut c = Client::connect(s2.ca.client_config(&[b"http/1.1"]), s2.ingress.addr).await;
    let (status, body) = json(c.send(request("POST", "/ucloud/hpc/jobs", &[("ucloud-username", ALICE)], "{\"a\":1}")).await).await;
    assert_eq!((status, body["backend"].as_str(), body["received"].as_u64()), (200, Some("server"), Some(7)), "the untouched body went to the server");
    assert_eq!(s2.ingress.metrics.stale_routes.load(Relaxed), 1);
}

#[tokio::test]
async fn connection_limit_holds_further_clients_back() {
    let s = setup("limit", |s| s.max_connections = 1).await;
    let config = s.ca.client_config(&[b"http/1.1"]);
    let mut first = Client::connect(config.clone(), s.ingress.addr).await;
    let (status, _) = json(first.send(request("GET", "/ucloud/hpc/jobs/retrieveProducts", &[], "")).await).await;
    assert_eq!(status, 200);
    // The second TCP connection is accepted by the kernel but its TLS handshake waits for a slot.
    let second = tokio::spawn(tls_connect(config, s.ingress.addr));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!second.is_finished(), "a second connection was served beyond max_connections");
    drop(first);
    let tls = tokio::time::timeout(Duration::from_secs(5), second).await.expect("served once the first closed").unwrap();
    drop(tls);
}
