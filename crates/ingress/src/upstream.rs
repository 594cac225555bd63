//! Connections from one ingress worker to the backends (the server and the instances, all on loopback):
//! HTTP/1.1, kept alive and reused. Each worker thread has its own pool, so a request never waits on
//! another thread; a connection goes back to the pool only once its answer has been read to the end, and
//! never after an upgrade (the bytes then belong to the tunnel).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::proxy::UpBody;

/// Idle connections kept per backend.
const MAX_IDLE_PER_BACKEND: usize = 256;
/// An idle connection older than this is closed (backends close theirs too, sooner or later).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Idle {
    sender: SendRequest<UpBody>,
    since: Instant,
}

#[derive(Default)]
pub struct Upstream {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

/// Why a request did not get an answer.
pub enum SendError {
    /// No connection could be made: nothing was sent, and the request is handed back.
    Connect(std::io::Error, Box<Request<UpBody>>),
    /// The exchange failed after it began.
    Failed(hyper::Error),
}

impl std::fmt::Debug for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e, _) => write!(f, "cannot connect: {e}"),
            SendError::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

impl Upstream {
    /// Sends `req` (origin-form URI, `Host` set) to `addr` and returns the answer's head. A pooled
    /// connection that turns out closed before the request went out is replaced by a fresh one.
    pub async fn send(self: &Arc<Self>, addr: SocketAddr, mut req: Request<UpBody>) -> Result<Response<UpstreamBody>, SendError> {
        loop {
            let (mut sender, pooled) = match self.checkout(addr) {
                Some(sender) => (sender, true),
                None => match connect(addr).await {
                    Ok(sender) => (sender, false),
                    Err(e) => return Err(SendError::Connect(e, Box::new(req))),
                },
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    // After a protocol switch the connection is the tunnel's, never the pool's.
                    let lease = (response.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Lease { upstream: self.clone(), addr, sender });
                    return Ok(response.map(|inner| UpstreamBody { inner, lease }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if pooled => req = unsent,
                    _ => return Err(SendError::Failed(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection to `addr` that can take a request now. One still busy (its
    /// backend answered before the request body was all sent) stays for later: waiting for it here would
    /// hold this request behind someone else's upload.
    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<UpBody>> {
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = pool.get_mut(&addr)?;
        list.retain(|i| !i.sender.is_closed());
        let ready = list.iter().rposition(|i| i.sender.is_ready())?;
        Some(list.remove(ready).sender)
    }

    fn give_back(&self, addr: SocketAddr, sender: SendRequest<UpBody>) {
        if sender.is_closed() {
            return;
        }
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = pool.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle { sender, since: Instant::now() });
        }
    }

    /// Closes connections idle for too long or closed by their backend; forgets backends left with none
    /// (instances come and go, each on its own port).
    pub fn prune(&self) {
        let now = Instant::now();
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        pool.retain(|_, list| {
            list.retain(|i| !i.sender.is_closed() && now.duration_since(i.since) < IDLE_TIMEOUT);
            !list.is_empty()
        });
    }

    #[cfg(test)]
    fn idle_count(&self, addr: SocketAddr) -> usize {
        self.idle.lock().unwrap().get(&addr).map_or(0, Vec::len)
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<SendRequest<UpBody>> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(%addr, "backend connection ended: {e}");
        }
    });
    Ok(sender)
}

/// A connection lent to one exchange; it returns to the pool if the answer was read to its end.
struct Lease {
    upstream: Arc<Upstream>,
    addr: SocketAddr,
    sender: SendRequest<UpBody>,
}

/// An answer's body from a backend; dropping it ends the exchange.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = polled {
            self.lease = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Unread bytes would be taken for the next answer: such a connection is closed instead.
        if let Some(lease) = self.lease.take() {
            if self.inner.is_end_stream() {
                lease.upstream.give_back(lease.addr, lease.sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// A backend that answers every request with `hello` and counts connections.
    async fn backend() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        backend_answering(Bytes::from_static(b"hello")).await
    }

    async fn backend_answering(answer: Bytes) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        backend_with(answer, false).await
    }

    /// With `close`, every answer says `Connection: close` and the backend closes after it.
    async fn backend_with(answer: Bytes, close: bool) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let answer = answer.clone();
                        async move {
                            let mut response = Response::new(Full::new(answer));
                            if close {
                                response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        (addr, count)
    }

    fn get() -> Request<UpBody> {
        let mut r = Request::new(UpBody::empty());
        r.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("backend"));
        r
    }

    #[tokio::test]
    async fn a_connection_is_reused_only_after_its_answer_was_read() {
        let (addr, connections) = backend().await;
        let upstream = Arc::new(Upstream::default());
        for _ in 0..3 {
            let response = upstream.send(addr, get()).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"hello");
        }
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(upstream.idle_count(addr), 1);

        // An answer dropped unread does not give its connection back.
        let unread = upstream.send(addr, get()).await.unwrap();
        drop(unread);
        assert_eq!(upstream.idle_count(addr), 0);
        let response = upstream.send(addr, get()).await.unwrap();
        response.into_body().collect().await.unwrap();
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_busy_connection_is_passed_over_not_waited_for() {
        let (addr, connections) = backend_answering(Bytes::from(vec![7u8; 4 << 20])).await;
        let upstream = Arc::new(Upstream::default());
        // An exchange still under way (its 4 MiB answer unread) whose connection is in the pool anyway,
        // as after a backend answered before the whole request body was sent.
        let mut first = upstream.send(addr, get()).await.unwrap();
        let lease = first.body_mut().lease.take().unwrap();
        upstream.give_back(addr, lease.sender);
        assert_eq!(upstream.idle_count(addr), 1);
        let second = tokio::time::timeout(Duration::from_secs(5), upstream.send(addr, get())).await.expect("not held behind the busy connection");
        assert_eq!(second.unwrap().into_body().collect().await.unwrap().to_bytes().len(), 4 << 20);
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(first.into_body().collect().await.unwrap().to_bytes().len(), 4 << 20);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closes_is_not_reused() {
        let (addr, connections) = backend_with(Bytes::from_static(b"bye"), true).await;
        let upstream = Arc::new(Upstream::default());
        for _ in 0..3 {
            let body = upstream.send(addr, get()).await.unwrap().into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"bye");
        }
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(upstream.idle_count(addr), 0);
    }

    #[tokio::test]
    async fn a_refused_connection_hands_the_request_back() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let upstream = Arc::new(Upstream::default());
        match upstream.send(free, get()).await {
            Err(SendError::Connect(_, request)) => assert_eq!(request.headers()[http::header::HOST], "backend"),
            Err(SendError::Failed(e)) => panic!("expected a connect error, got {e}"),
            Ok(r) => panic!("expected a connect error, got {}", r.status()),
        }
    }

    #[tokio::test]
    async fn closed_connections_are_pruned_and_replaced() {
        let (addr, connections) = backend().await;
        let upstream = Arc::new(Upstream::default());
        upstream.send(addr, get()).await.unwrap().into_body().collect().await.unwrap();
        assert_eq!(upstream.idle_count(addr), 1);
        // Age the idle connection past the timeout.
        upstream.idle.lock().unwrap().get_mut(&addr).unwrap()[0].since -= IDLE_TIMEOUT;
        upstream.prune();
        assert_eq!(upstream.idle_count(addr), 0);
        upstream.send(addr, get()).await.unwrap().into_body().collect().await.unwrap();
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
