//! Test kit: a CA made by the test, TLS clients trusting it, small backends, a route table standing in
//! for the server's socket.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ingress::route::{LookupFuture, RouteLookup};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for `localhost` and 127.0.0.1 named `cn`: (cert PEM, key PEM).
    pub fn leaf(&self, cn: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn write_leaf(&self, cn: &str, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = self.leaf(cn);
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        // Written next to the target and renamed in, as renewal tools do.
        std::fs::write(dir.join("cert.pem.new"), cert).unwrap();
        std::fs::write(dir.join("key.pem.new"), key).unwrap();
        std::fs::rename(dir.join("key.pem.new"), &k).unwrap();
        std::fs::rename(dir.join("cert.pem.new"), &c).unwrap();
        (c, k)
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(self.cert.der().to_vec())).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(config)
    }
}

pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

pub async fn tls_connect(config: Arc<rustls::ClientConfig>, addr: SocketAddr) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
}

/// The common name of the certificate the server presented.
pub fn peer_cn(tls: &Tls) -> String {
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    // The CN is the last printable run in the subject; good enough for names the tests chose.
    let text = String::from_utf8_lossy(&der).to_string();
    ["old-cert", "new-cert"].iter().find(|n| text.contains(*n)).map(|s| s.to_string()).unwrap_or_default()
}

/// Route table in place of the server's socket; counts lookups.
#[derive(Default)]
pub struct Routes {
    pub ports: Mutex<HashMap<String, u16>>,
    pub lookups: AtomicU64,
    pub starts: AtomicU64,
}

impl RouteLookup for Routes {
    fn route<'a>(&'a self, user: &'a str, start: bool) -> LookupFuture<'a> {
        self.lookups.fetch_add(1, Relaxed);
        if start {
            self.starts.fetch_add(1, Relaxed);
        }
        let port = self.ports.lock().unwrap().get(user).copied();
        Box::pin(async move { Ok(port) })
    }
}

/// A backend that says who it is (`x-backend`), echoes the headers it got as JSON, sinks uploads
/// (answering the byte count), streams slowly on `/slow`, and echoes WebSockets on `/websocket`.
pub struct Backend {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
}

pub async fn backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    counter.fetch_add(1, Relaxed);
                    serve(name, req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Backend { addr, requests }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).boxed()
}

async fn serve(name: &'static str, mut req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_string();
    let mut builder = Response::builder().header("x-backend", name).header("x-ucim-secret", "internal");
    if path.ends_with("/websocket") || req.headers().contains_key("upgrade") {
        let key = req.headers().get("sec-websocket-key").cloned().unwrap();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let io = TokioIo::new(on.await.unwrap());
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, tokio_tungstenite::tungstenite::protocol::Role::Server, None).await;
            use futures_util::{SinkExt, StreamExt};
            let (mut tx, mut rx) = ws.split();
            while let Some(Ok(msg)) = rx.next().await {
                // Pings are answered by tungstenite itself; text and binary are echoed; close is echoed by it.
                if msg.is_text() || msg.is_binary() {
                    if tx.send(msg).await.is_err() {
                        break;
                    }
                } else if msg.is_close() {
                    let _ = tx.flush().await;
                }
            }
        });
        builder = builder.status(101).header("connection", "upgrade").header("upgrade", "websocket").header("sec-websocket-accept", accept);
        return Ok(builder.body(full(Bytes::new())).unwrap());
    }
    if path.ends_with("/slow") {
        let chunks = futures_util::stream::unfold(0u32, |i| async move {
            if i == 20 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"0123456789"))), i + 1))
        });
        return Ok(builder.body(StreamBody::new(chunks).boxed()).unwrap());
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), serde_json::Value::String(v.to_str().unwrap_or("?").to_string())))
        .collect();
    let query = req.uri().query().map(str::to_string);
    let mut body = req.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => received += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
            Err(_) => break,
        }
    }
    let answer = serde_json::json!({ "backend": name, "path": path, "query": query, "headers": headers, "received": received });
    Ok(builder.header("content-type", "application/json").body(full(answer.to_string())).unwrap())
}

/// HTTP/1.1 or HTTP/2 (by ALPN) over one TLS connection.
pub enum Client {
    H1(hyper::client::conn::http1::SendRequest<BoxBody>),
    H2(hyper::client::conn::http2::SendRequest<BoxBody>),
}

impl Client {
    pub async fn connect(config: Arc<rustls::ClientConfig>, addr: SocketAddr) -> Client {
        let tls = tls_connect(config, addr).await;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            Client::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn.with_upgrades());
            Client::H1(send)
        }
    }

    pub async fn send(&mut self, req: Request<BoxBody>) -> Response<Incoming> {
        match self {
            Client::H1(s) => s.send_request(req).await.unwrap(),
            Client::H2(s) => s.send_request(req).await.unwrap(),
        }
    }
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Request<BoxBody> {
    let mut b = Request::builder().method(method).uri(format!("https://localhost{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(full(body)).unwrap()
}

pub async fn json(resp: Response<Incoming>) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

pub fn settings(server: SocketAddr, cert: &Path, key: &Path) -> ingress::Settings {
    ingress::Settings {
        provider: "hpc".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        server,
        tls: Some((cert.into(), key.into())),
        max_header_bytes: 16 * 1024,
        max_body_bytes: 1 << 20,
        header_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
        tunnel_idle_timeout: Duration::from_secs(30),
        max_connections: 100,
        route_cache: Duration::from_secs(60),
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ucim-ingress-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends raw bytes over TLS and reads the answer until the ingress closes (or 3 s pass).
pub async fn raw(config: Arc<rustls::ClientConfig>, addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect(config, addr).await;
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}
