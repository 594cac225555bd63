//! The request path: check the shape, pick the backend, stream the request there and the answer back.
//! Bodies are never collected; a WebSocket (or any) upgrade becomes a byte splice between the two
//! upgraded connections, so every frame (text, binary, ping, pong, close) passes untouched.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;

use crate::conn::{ConnInfo, FlightGuard};
use crate::metrics::{AccessRecord, Metrics, Target};
use crate::route::{classify, Class, RouteCache, RouteLookup};
use crate::upstream::{SendError, Upstream};

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus proxy credentials.
const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization", "proxy-authenticate"];

/// Client-sent headers that would claim something only the ingress may say. `x-ucim-` is reserved for
/// ucim's own internal headers.
fn internal(name: &str) -> bool {
    name.starts_with("x-ucim-") || name.starts_with("x-forwarded-") || name == "forwarded" || name == "x-real-ip"
}

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

pub struct Proxy {
    pub provider: String,
    pub server: SocketAddr,
    pub lookup: Arc<dyn RouteLookup>,
    pub cache: Arc<RouteCache>,
    /// This worker's connections to the backends.
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<Metrics>,
    /// Request bodies of Core calls and everything but uploads.
    pub max_body: u64,
    pub tunnel_idle: Duration,
    /// `https` or `http`, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
}

fn error(status: StatusCode, why: &str, close: bool) -> Response<ProxyBody> {
    let body = serde_json::json!({ "statusCode": status.as_u16(), "why": why }).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if close {
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// One request, start to end. Never fails: every problem is an answer.
pub async fn handle(proxy: Arc<Proxy>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Result<Response<Logged>, Infallible> {
    let flight = FlightGuard::new(conn.clone());
    let mut record = AccessRecord::new(proxy.metrics.clone(), req.method().clone(), req.uri().path());
    let response = match route_and_forward(&proxy, &conn, req, &mut record).await {
        Ok(r) => r,
        Err(r) => {
            proxy.metrics.refused.fetch_add(1, Relaxed);
            r
        }
    };
    let (mut parts, body) = response.into_parts();
    record.status = parts.status.as_u16();
    if parts.version != Version::HTTP_2 && record.target == Target::Ingress && parts.status == StatusCode::BAD_REQUEST {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(Response::from_parts(parts, Logged { inner: body, record: Some(record), _flight: flight }))
}

async fn route_and_forward(
    proxy: &Arc<Proxy>,
    conn: &Arc<ConnInfo>,
    mut req: Request<Incoming>,
    record: &mut AccessRecord,
) -> Result<Response<ProxyBody>, Response<ProxyBody>> {
    let h1 = req.version() != Version::HTTP_2;
    let headers = req.headers();
    // hyper already refuses differing Content-Lengths, Content-Length lists, non-chunked Transfer-Encoding
    // and obs-fold, and hides Content-Length next to Transfer-Encoding (the connection follower sees it);
    // this catches what reaches us in any other form.
    if conn.ambiguous_framing()
        || headers.get_all(header::CONTENT_LENGTH).iter().count() > 1
        || (headers.contains_key(header::TRANSFER_ENCODING) && headers.contains_key(header::CONTENT_LENGTH))
    {
        return Err(error(StatusCode::BAD_REQUEST, "Ambiguous message framing", h1));
    }
    let class = classify(&proxy.provider, req.uri().path(), req.uri().query(), headers);
    let (limit, user, start) = match class {
        Class::NotFound => return Err(error(StatusCode::NOT_FOUND, "Unknown path", false)),
        Class::BadRequest(why) => return Err(error(StatusCode::BAD_REQUEST, why, h1)),
        Class::Server => (Some(proxy.max_body), None, false),
        Class::UserCall(user) => (Some(proxy.max_body), Some(user), false),
        Class::UserStream { user, upload } => ((!upload).then_some(proxy.max_body), Some(user), true),
    };
    if let (Some(limit), Some(len)) = (limit, req.body().size_hint().exact()) {
        if len > limit {
            return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large", h1));
        }
    }
    let upgrade = if h1 { upgrade_request(headers) } else { None };
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));

    let mut target = match &user {
        None => Target::Server,
        Some(u) => match find(proxy, u, start, true).await {
            Ok(Some(port)) => Target::Instance(port),
            Ok(None) if !start => Target::Server,
            Ok(None) => return Err(error(StatusCode::NOT_FOUND, "No instance serves this user", false)),
            Err(why) if !start => {
                tracing::warn!("route lookup failed, sending to the server: {why}");
                Target::Server
            }
            Err(why) => {
                tracing::warn!("route lookup failed: {why}");
                return Err(error(StatusCode::SERVICE_UNAVAILABLE, "The user's instance is not available", false));
            }
        },
    };

    let (mut parts, body) = req.into_parts();
    forward_headers(&mut parts.headers, upgrade.as_ref(), conn.forwarded_for(), proxy.scheme, parts.uri.authority());
    // Backends get origin-form (`/path?query`), whatever form the client used (HTTP/2 sends absolute).
    if parts.uri.authority().is_some() {
        let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = http::Uri::from(path);
    }
    parts.version = Version::HTTP_11;
    // Nothing of the client's connection (hyper's upgrade handle and the like) goes along.
    parts.extensions.clear();
    let mut up = Request::from_parts(parts, UpBody { inner: Some(body), limit, seen: 0, counter: record.bytes_in.clone() });
    let mut retried = false;
    let mut response = loop {
        record.target = target;
        let addr = match target {
            Target::Instance(port) => SocketAddr::from(([127, 0, 0, 1], port)),
            _ => proxy.server,
        };
        match proxy.upstream.send(addr, up).await {
            Ok(r) => break r,
            Err(SendError::Connect(e, unsent)) if !retried && matches!(target, Target::Instance(_)) => {
                // The instance is gone (stopped, crashed, restarting on another port): forget the route.
                retried = true;
                up = *unsent;
                proxy.metrics.stale_routes.fetch_add(1, Relaxed);
                let u = user.as_deref().unwrap_or_default();
                proxy.cache.forget(u);
                tracing::info!(%target, "instance refused the connection ({e}); route dropped");
                target = if start {
                    match find(proxy, u, true, false).await {
                        Ok(Some(port)) => Target::Instance(port),
                        _ => return Err(error(StatusCode::SERVICE_UNAVAILABLE, "The user's instance is not available", false)),
                    }
                } else {
                    Target::Server
                };
            }
            Err(SendError::Connect(e, _)) => {
                tracing::warn!(%target, "backend unreachable: {e}");
                return Err(error(StatusCode::BAD_GATEWAY, "The backend did not answer", h1));
            }
            Err(SendError::Failed(e)) => {
                if body_too_large(&e) {
                    return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large", h1));
                }
                tracing::warn!(%target, "backend failed: {e:#}");
                return Err(error(StatusCode::BAD_GATEWAY, "The backend did not answer", h1));
            }
        }
    };
    match target {
        Target::Instance(_) => proxy.metrics.to_instance.fetch_add(1, Relaxed),
        _ => proxy.metrics.to_server.fetch_add(1, Relaxed),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(error(StatusCode::BAD_GATEWAY, "The backend switched protocols unasked", h1));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let (parts, _) = response.into_parts();
        let tunnel_record = record.hand_over();
        tokio::spawn(tunnel(client_upgrade, upstream_upgrade, tunnel_record, proxy.metrics.clone(), conn.clone(), proxy.tunnel_idle));
        let mut r = Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *r.headers_mut() = parts.headers;
        return Ok(r);
    }
    let (mut parts, body) = response.into_parts();
    strip_response_headers(&mut parts.headers);
    Ok(Response::from_parts(parts, body.boxed()))
}

/// The instance's port: from the cache, else from the server (remembered if running).
async fn find(proxy: &Proxy, user: &str, start: bool, use_cache: bool) -> Result<Option<u16>, String> {
    if use_cache {
        if let Some(port) = proxy.cache.get(user) {
            return Ok(Some(port));
        }
    }
    let port = proxy.lookup.route(user, start).await?;
    if let Some(port) = port {
        proxy.cache.put(user, port);
    }
    Ok(port)
}

/// `Some(protocol)` for an HTTP/1.1 upgrade request (`Connection: upgrade` and `Upgrade: x`).
fn upgrade_request(headers: &HeaderMap) -> Option<HeaderValue> {
    let value = headers.get(header::UPGRADE)?;
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| value.clone())
}

/// Removes the hop-by-hop headers (those of RFC 9110 §7.6.1 and those `Connection` names) and those
/// `also` picks. One pass; allocates only when there is something to remove.
fn remove_hop_by_hop(headers: &mut HeaderMap, also: impl Fn(&str) -> bool) {
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let tokens = value.to_str().unwrap_or_default().split(',');
        named.extend(tokens.filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok()));
    }
    let doomed: Vec<HeaderName> =
        headers.keys().filter(|n| HOP_BY_HOP.contains(&n.as_str()) || also(n.as_str()) || named.contains(n)).cloned().collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Turns the client's headers into the backend's: minus hop-by-hop and internal ones, plus what only the
/// ingress knows (the peer address and scheme), the upgrade asked for, and `Host` (HTTP/2 carries the
/// authority instead).
pub fn forward_headers(headers: &mut HeaderMap, upgrade: Option<&HeaderValue>, forwarded_for: &HeaderValue, scheme: &'static str, authority: Option<&http::uri::Authority>) {
    remove_hop_by_hop(headers, internal);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    if !headers.contains_key(header::HOST) {
        if let Some(v) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
            headers.insert(header::HOST, v);
        }
    }
    headers.insert(HeaderName::from_static("x-forwarded-for"), forwarded_for.clone());
    headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(scheme));
}

fn strip_response_headers(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers, |n| n.starts_with("x-ucim-"));
}

/// Splices the two upgraded connections until either side closes or nothing moves for `idle`.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut record: AccessRecord,
    metrics: Arc<Metrics>,
    conn: Arc<ConnInfo>,
    idle: Duration,
) {
    record.status = 101;
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::info!(path = record.path, "upgrade did not complete: {e}");
            return;
        }
    };
    metrics.active_tunnels.fetch_add(1, Relaxed);
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match r {
            Ok((to_backend, to_client)) => {
                record.bytes_in.fetch_add(to_backend, Relaxed);
                record.bytes_out = to_client;
            }
            Err(e) => tracing::debug!(path = record.path, "tunnel ended: {e}"),
        },
        _ = conn.idle_for(idle) => tracing::info!(path = record.path, "tunnel idle; closed"),
    }
    metrics.active_tunnels.fetch_sub(1, Relaxed);
}

/// The request body on its way to a backend: counts bytes and enforces the route's size limit while
/// streaming.
pub struct UpBody {
    inner: Option<Incoming>,
    limit: Option<u64>,
    seen: u64,
    counter: Arc<AtomicU64>,
}

impl UpBody {
    #[cfg(test)]
    pub fn empty() -> UpBody {
        UpBody { inner: None, limit: None, seen: 0, counter: Arc::default() }
    }
}

/// The error a request body stops with at its limit.
#[derive(Debug)]
struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body too large")
    }
}

impl std::error::Error for BodyTooLarge {}

fn body_too_large(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<BodyTooLarge>() {
            return true;
        }
        source = s.source();
    }
    false
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    this.counter.fetch_add(data.len() as u64, Relaxed);
                    if this.limit.is_some_and(|l| this.seen > l) {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), |i| i.size_hint())
    }
}

/// The answer's body on its way to the client: counts bytes; the access line is written when it is
/// dropped (sent completely, or abandoned by the client).
pub struct Logged {
    inner: ProxyBody,
    record: Option<AccessRecord>,
    _flight: FlightGuard,
}

impl Body for Logged {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let (Some(Ok(frame)), Some(record)) = (&polled, self.record.as_mut()) {
            if let Some(data) = frame.data_ref() {
                record.bytes_out += data.len() as u64;
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_lose_hop_by_hop_and_internal_ones() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer x"),
            ("ucloud-username", "YQ=="),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("x-ucim-peer-uid", "0"),
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
            ("proxy-authorization", "Basic x"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let peer = HeaderValue::from_static("192.0.2.7");
        let authority = http::uri::Authority::from_static("hpc.example.org");
        forward_headers(&mut h, None, &peer, "https", Some(&authority));
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["authorization", "host", "ucloud-username", "x-forwarded-for", "x-forwarded-proto"]);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["host"], "hpc.example.org");

        let mut ws = HeaderMap::new();
        ws.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        ws.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let up = upgrade_request(&ws).unwrap();
        let mut forwarded = ws.clone();
        forward_headers(&mut forwarded, Some(&up), &peer, "https", None);
        assert_eq!(forwarded["connection"], "upgrade");
        assert_eq!(forwarded["upgrade"], "websocket");
        ws.remove(header::CONNECTION);
        assert!(upgrade_request(&ws).is_none());
    }

    #[test]
    fn response_headers_lose_hop_by_hop_and_internal_ones() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("x-a"));
        h.insert(HeaderName::from_static("x-a"), HeaderValue::from_static("1"));
        h.insert(HeaderName::from_static("x-ucim-debug"), HeaderValue::from_static("1"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        strip_response_headers(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["content-type"]);
    }
}
