//! One client connection: TLS handshake (bounded in time), HTTP/1.1 or HTTP/2 by ALPN (or by preface in
//! plain mode), and an idle timeout that counts bytes moving either way and requests in flight.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::framing::FramingFollower;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// What the idle timer needs to know about a connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client's address, as `X-Forwarded-For` tells backends (made once, not per request).
    forwarded_for: http::HeaderValue,
    last_active_ms: AtomicU64,
    in_flight: AtomicUsize,
    ambiguous_framing: AtomicBool,
}

impl ConnInfo {
    pub fn new(peer: std::net::IpAddr) -> Arc<ConnInfo> {
        let forwarded_for = http::HeaderValue::from_str(&peer.to_string()).expect("an IP address is a valid header value");
        Arc::new(ConnInfo { forwarded_for, last_active_ms: AtomicU64::new(now_ms()), in_flight: AtomicUsize::new(0), ambiguous_framing: AtomicBool::new(false) })
    }

    pub fn forwarded_for(&self) -> &http::HeaderValue {
        &self.forwarded_for
    }

    /// A request head on this connection had both Content-Length and Transfer-Encoding (see `framing`).
    pub fn ambiguous_framing(&self) -> bool {
        self.ambiguous_framing.load(Relaxed)
    }

    fn touch(&self) {
        self.last_active_ms.store(now_ms(), Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_active_ms.load(Relaxed)))
    }

    /// Resolves once no byte moved for `idle` (requests in flight count as activity when `requests`).
    async fn idle(&self, idle: Duration, requests: bool) {
        loop {
            let quiet = self.quiet_for();
            if quiet >= idle && !(requests && self.in_flight.load(Relaxed) > 0) {
                return;
            }
            let wait = idle.saturating_sub(quiet).max(Duration::from_millis(200));
            tokio::time::sleep(wait).await;
            if requests && self.in_flight.load(Relaxed) > 0 {
                self.touch();
            }
        }
    }

    /// For tunnels: only bytes count.
    pub async fn idle_for(&self, idle: Duration) {
        self.idle(idle, false).await
    }
}

/// Held while a request is being answered (until its body is sent).
pub struct FlightGuard(Arc<ConnInfo>);

impl FlightGuard {
    pub fn new(conn: Arc<ConnInfo>) -> FlightGuard {
        conn.in_flight.fetch_add(1, Relaxed);
        conn.touch();
        FlightGuard(conn)
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Notes every byte read or written, and follows the framing of what the client sends.
pub struct ActiveIo<T> {
    inner: T,
    conn: Arc<ConnInfo>,
    framing: FramingFollower,
}

impl<T> ActiveIo<T> {
    pub fn new(inner: T, conn: Arc<ConnInfo>) -> Self {
        ActiveIo { inner, conn, framing: FramingFollower::default() }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActiveIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.touch();
            let this = &mut *self;
            this.framing.feed(&buf.filled()[before..]);
            if this.framing.ambiguous() {
                this.conn.ambiguous_framing.store(true, Relaxed);
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActiveIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        r
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one connection until it ends, idles out, or the ingress shuts down (then in-flight requests
/// finish first).
pub async fn serve<T>(
    io: T,
    conn: Arc<ConnInfo>,
    builder: Arc<hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>>,
    service: impl hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<crate::proxy::Logged>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Send
        + 'static,
    idle: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(ActiveIo::new(io, conn.clone()));
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = conn.idle(idle, true) => {
                tracing::debug!("connection idle; closed");
                return;
            }
            _ = shutdown.changed(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
