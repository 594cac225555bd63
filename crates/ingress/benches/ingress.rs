//! Load generator and backend for `dev/bench-ingress.sh` (run through `cargo bench -p ingress --bench
//! ingress -- MODE ...`).
//!
//! - `backend PORT SOCKET`: a small HTTP/1.1 backend (standing in for an instance: the same backend serves
//!   every route, so the three paths compare the proxy alone) and a stand-in server socket answering
//!   `Route` with PORT. `GET …/small` answers a small JSON body, `POST` drains the body and answers its
//!   length, `GET …/stream?bytes=N` streams N bytes.
//! - `load URL CA|- CONNS SECS MODE BYTES`: CONNS keep-alive HTTP/1.1 connections (TLS when the URL is
//!   https, trusting CA) send requests back to back for SECS seconds; prints one JSON line with requests/s,
//!   MB/s, p50 and p99 in ms. MODE is `small`, `upload` or `download`, or `call:SPEC` to send the request
//!   that the JSON file SPEC describes (`method`, `path`, `headers`, `body`; as `benches/ingress_stack.rs` of
//!   the e2e crate writes it for a real instance) and count only 2xx answers as successes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

const CHUNK: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match args.first().map(String::as_str) {
        Some("backend") => rt.block_on(backend(args[1].parse().unwrap(), args[2].clone())),
        Some("load") => rt.block_on(load(&args[1], &args[2], args[3].parse().unwrap(), args[4].parse().unwrap(), &args[5], args[6].parse().unwrap())),
        _ => eprintln!("usage: backend PORT SOCKET | load URL CA CONNS SECS MODE BYTES"),
    }
}

async fn backend(port: u16, socket: String) {
    let _ = std::fs::remove_file(&socket);
    let ipc = ipc::Listener::bind(std::path::Path::new(&socket)).unwrap();
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = ipc.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(ipc::Request::Route { .. })) = conn.receive::<ipc::Request>().await {
                    if conn.send(&ipc::Response::Route { port: Some(port) }).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    eprintln!("backend on 127.0.0.1:{port}, route socket {socket}");
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), hyper::service::service_fn(serve)).await;
        });
    }
}

async fn serve(req: hyper::Request<hyper::body::Incoming>) -> Result<hyper::Response<Body>, Infallible> {
    if req.method() == hyper::Method::POST {
        let mut body = req.into_body();
        let mut n = 0u64;
        while let Some(Ok(f)) = body.frame().await {
            n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0);
        }
        return Ok(hyper::Response::new(Full::new(Bytes::from(format!("{{\"received\":{n}}}"))).boxed()));
    }
    if req.uri().path().ends_with("/stream") {
        let total: u64 = req.uri().query().and_then(|q| q.strip_prefix("bytes=")).and_then(|n| n.parse().ok()).unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        let frames = futures_util::stream::unfold(total, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(CHUNK as u64) as usize;
                Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..n))), left - n as u64))
            }
        });
        let mut r = hyper::Response::new(StreamBody::new(frames).boxed());
        r.headers_mut().insert("content-length", total.into());
        return Ok(r);
    }
    let small = r#"{"responses":[{"id":"1234567"}]}"#;
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(small.as_bytes())).boxed());
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    Ok(r)
}

fn tls_config(ca: &str) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_file(ca).unwrap()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn connect(url: &hyper::Uri, tls: Option<Arc<rustls::ClientConfig>>) -> hyper::client::conn::http1::SendRequest<Body> {
    let tcp = tokio::net::TcpStream::connect((url.host().unwrap(), url.port_u16().unwrap())).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    match tls {
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from(url.host().unwrap().to_string()).unwrap();
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            send
        }
        None => {
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
            tokio::spawn(conn);
            send
        }
    }
}

/// A request read from a `call:SPEC` file.
struct Call {
    method: hyper::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Call {
    fn load(spec: &str) -> Call {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(spec).expect("spec file")).expect("spec is JSON");
        let text = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("spec: {k}")).to_string();
        let headers = v["headers"].as_object().expect("spec: headers");
        Call {
            method: text("method").parse().expect("spec: method"),
            path: text("path"),
            headers: headers.iter().map(|(k, h)| (k.clone(), h.as_str().unwrap().to_string())).collect(),
            body: Bytes::from(text("body")),
        }
    }

    fn request(&self, url: &hyper::Uri) -> hyper::Request<Body> {
        let mut builder = hyper::Request::builder()
            .method(self.method.clone())
            .uri(format!("{}://{}{}", url.scheme_str().unwrap(), url.authority().unwrap(), self.path))
            .header("host", url.authority().unwrap().as_str());
        for (k, v) in &self.headers {
            builder = builder.header(k, v);
        }
        builder.body(Full::new(self.body.clone()).boxed()).unwrap()
    }
}

fn request(url: &hyper::Uri, mode: &str, bytes: u64, call: Option<&Call>) -> hyper::Request<Body> {
    if let Some(call) = call {
        return call.request(url);
    }
    let base = format!("{}://{}/ucloud/bench", url.scheme_str().unwrap(), url.authority().unwrap());
    // A Core call for a user: the ingress looks the route up (cached) and goes to "the instance".
    let builder = hyper::Request::builder().header("ucloud-username", "YWxpY2UjMQ==").header("host", url.authority().unwrap().as_str());
    match mode {
        "small" => builder.uri(format!("{base}/jobs/retrieve")).body(Full::new(Bytes::new()).boxed()),
        "download" => builder.uri(format!("{base}/stream?bytes={bytes}")).body(Full::new(Bytes::new()).boxed()),
        _ => {
            let chunk = Bytes::from(vec![b'y'; CHUNK]);
            let frames = futures_util::stream::unfold(bytes, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let n = left.min(CHUNK as u64) as usize;
                    Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..n))), left - n as u64))
                }
            });
            builder.method("POST").uri(format!("{base}/upload")).header("content-length", bytes).body(StreamBody::new(frames).boxed())
        }
    }
    .unwrap()
}

async fn load(url: &str, ca: &str, conns: usize, secs: u64, mode: &str, bytes: u64) {
    let url: hyper::Uri = url.parse().unwrap();
    let tls = (url.scheme_str() == Some("https")).then(|| tls_config(ca));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let call = mode.strip_prefix("call:").map(|spec| Arc::new(Call::load(spec)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (url, tls, mode, call) = (url.clone(), tls.clone(), mode.to_string(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut send = connect(&url, tls).await;
            let (mut latencies, mut moved, mut errors) = (Vec::new(), 0u64, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                if send.ready().await.is_err() {
                    errors += 1;
                    break;
                }
                let resp = match send.send_request(request(&url, &mode, bytes, call.as_deref())).await {
                    Ok(r) => r,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                };
                let ok = resp.status().is_success();
                let mut body = resp.into_body();
                while let Some(Ok(f)) = body.frame().await {
                    moved += f.data_ref().map(|d| d.len() as u64).unwrap_or(0);
                }
                if !ok {
                    errors += 1;
                }
                latencies.push(t.elapsed().as_micros() as u64);
            }
            (latencies, moved, errors)
        }));
    }
    let (mut all, mut moved, mut errors) = (Vec::new(), 0u64, 0u64);
    for t in tasks {
        let (l, m, e) = t.await.unwrap();
        all.extend(l);
        moved += m;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0;
    if mode == "upload" {
        moved = all.len() as u64 * bytes;
    }
    println!(
        "{{\"requests\":{},\"errors\":{errors},\"rps\":{:.1},\"mb_per_s\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        all.len(),
        all.len() as f64 / elapsed,
        moved as f64 / elapsed / 1e6,
        pct(0.50),
        pct(0.99)
    );
}
