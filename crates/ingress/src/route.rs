//! Which process a request goes to (lead's decision 3, provider-api.md §1.8, §1.9, §2.4, §3.2, §3.3).
//!
//! - Core calls under `/ucloud/{P}/` that carry `ucloud-username` go to that user's instance when it runs,
//!   else to the server (which answers 449 so the Core calls `init` and retries). Calls the server answers
//!   itself (`integration/*`, extend/suspend/unsuspend, products, the connect page) always go to the server.
//! - Browser paths (`upload`, `download`, `websocket`) and the Core's WebSockets (`/ucloud/{P}/files` with
//!   Upgrade, `/ucloud/jobs.provider.{P}/websocket`) are routed by `usernameHint` or `UCloud-Username` and
//!   start the instance if needed. Routing never authorises: the instance checks the token itself.
//! - Anything else is 404 at the ingress.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use http::HeaderMap;

/// What the path and headers say about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Answered by the server whoever it is for.
    Server,
    /// A Core call for this UCloud user: the instance if running, else the server.
    UserCall(String),
    /// Browser or WebSocket traffic for this UCloud user: the instance, started if needed. `upload` bodies
    /// have no size limit.
    UserStream { user: String, upload: bool },
    NotFound,
    BadRequest(&'static str),
}

/// Suffixes (after `/ucloud/{P}`) the server answers itself.
fn server_owned(suffix: &str) -> bool {
    use protocol::provider::*;
    suffix.starts_with("/integration/")
        || matches!(suffix, JOBS_EXTEND | JOBS_SUSPEND | JOBS_UNSUSPEND | JOBS_RETRIEVE_PRODUCTS | FILES_COLLECTIONS_RETRIEVE_PRODUCTS)
        || OTHER_RETRIEVE_PRODUCTS.contains(&suffix)
        || suffix == "/connection-instructions"
}

/// Refuses paths a backend could read differently from the ingress: dot segments, empty segments,
/// encoded slashes, dots, backslashes and NULs.
pub fn safe_path(path: &str) -> bool {
    if !path.starts_with('/') || path.contains("//") || path.contains('\\') {
        return false;
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    !["%2f", "%2e", "%5c", "%00"].iter().any(|e| lower.contains(e))
}

pub fn classify(provider: &str, path: &str, query: Option<&str>, headers: &HeaderMap) -> Class {
    if !safe_path(path) {
        return Class::BadRequest("Malformed path");
    }
    let upgrade = headers.contains_key(http::header::UPGRADE);
    let stream_user = || -> Result<String, &'static str> {
        if let Some(hint) = query.and_then(|q| query_param(q, "usernameHint")) {
            return percent_decode(hint).as_deref().and_then(decode_hint).ok_or("Malformed usernameHint");
        }
        match headers.get("ucloud-username").and_then(|v| v.to_str().ok()) {
            Some(v) => protocol::decode_username_header(v).ok_or("Malformed UCloud-Username header"),
            None => Err("This path needs a usernameHint"),
        }
    };
    let stream = |upload: bool| match stream_user() {
        Ok(user) => Class::UserStream { user, upload },
        Err(why) => Class::BadRequest(why),
    };
    if path == format!("/ucloud/jobs.provider.{provider}/websocket") {
        return stream(false);
    }
    let Some(suffix) = path.strip_prefix("/ucloud/").and_then(|p| p.strip_prefix(provider)) else {
        return Class::NotFound;
    };
    if !(suffix.is_empty() || suffix.starts_with('/')) {
        return Class::NotFound;
    }
    match suffix {
        "/upload" => return stream(true),
        "/download" | "/websocket" => return stream(false),
        "/files" if upgrade => return stream(false),
        _ => {}
    }
    if server_owned(suffix) {
        return Class::Server;
    }
    match headers.get(protocol::USERNAME_HEADER).and_then(|v| v.to_str().ok()).and_then(protocol::decode_username_header) {
        Some(user) => Class::UserCall(user),
        // No (or a malformed) user: the server answers it, with 400 if it needed one.
        None => Class::Server,
    }
}

/// The raw (still percent-encoded) value of `name` in a query string.
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `usernameHint`: base64 of the username, standard or URL-safe alphabet, padded or not.
pub fn decode_hint(hint: &str) -> Option<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = hint.trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD.decode(trimmed).or_else(|_| STANDARD_NO_PAD.decode(trimmed)).ok()?;
    let name = String::from_utf8(bytes).ok()?;
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return None;
    }
    Some(name)
}

pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<u16>, String>> + Send + 'a>>;

/// Asks where a user's instance listens (the server, over its socket, in production).
pub trait RouteLookup: Send + Sync + 'static {
    /// `start`: start the instance if it is not running (refused for unmapped users).
    fn route<'a>(&'a self, ucloud_user: &'a str, start: bool) -> LookupFuture<'a>;
}

/// The server's answer over its unix socket (`ipc::Request::Route`); allowed for the service user only.
pub struct IpcLookup {
    pub socket: PathBuf,
}

/// A start can take a sudo launch and a handshake.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);

impl RouteLookup for IpcLookup {
    fn route<'a>(&'a self, ucloud_user: &'a str, start: bool) -> LookupFuture<'a> {
        Box::pin(async move {
            let ask = async {
                let mut conn = ipc::Connection::connect(&self.socket).await.map_err(|e| format!("cannot reach the server: {e}"))?;
                conn.call(&ipc::Request::Route { ucloud_user: ucloud_user.to_string(), start })
                    .await
                    .map_err(|e| format!("the server did not answer: {e}"))
            };
            match tokio::time::timeout(LOOKUP_TIMEOUT, ask).await {
                Err(_) => Err("the server did not answer in time".into()),
                Ok(Err(e)) => Err(e),
                Ok(Ok(ipc::Response::Route { port })) => Ok(port),
                Ok(Ok(ipc::Response::Error { message })) => Err(message),
                Ok(Ok(other)) => Err(format!("unexpected answer {other:?}")),
            }
        })
    }
}

/// Recent answers, so that a burst of calls costs one lookup. Only running instances are remembered; an
/// entry is dropped as soon as its instance refuses a connection.
pub struct RouteCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (u16, Instant)>>,
}

impl RouteCache {
    pub fn new(ttl: Duration) -> RouteCache {
        RouteCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, user: &str) -> Option<u16> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(user).filter(|(_, at)| at.elapsed() < self.ttl).map(|(port, _)| *port)
    }

    pub fn put(&self, user: &str, port: u16) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 10_000 {
            entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
        }
        entries.insert(user.to_string(), (port, Instant::now()));
    }

    pub fn forget(&self, user: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn core_calls_by_username_header() {
        let alice = protocol::encode_username_header("alice#1");
        let h = headers(&[("ucloud-username", &alice)]);
        assert_eq!(classify("hpc", "/ucloud/hpc/jobs", None, &h), Class::UserCall("alice#1".into()));
        assert_eq!(classify("hpc", "/ucloud/hpc/files/browse", None, &h), Class::UserCall("alice#1".into()));
        // The server answers these itself, with or without a user.
        for s in ["/integration/init", "/integration/retrieveManifest", "/jobs/extend", "/jobs/suspend", "/jobs/unsuspend", "/jobs/retrieveProducts", "/connection-instructions"] {
            assert_eq!(classify("hpc", &format!("/ucloud/hpc{s}"), None, &h), Class::Server, "{s}");
        }
        assert_eq!(classify("hpc", "/ucloud/hpc/jobs", None, &HeaderMap::new()), Class::Server);
        assert_eq!(classify("hpc", "/ucloud/hpc/jobs", None, &headers(&[("ucloud-username", "!!")])), Class::Server);
    }

    #[test]
    fn browser_paths_by_hint() {
        let h = HeaderMap::new();
        // "alice#1" in every alphabet and padding the browser might use.
        for hint in ["YWxpY2UjMQ==", "YWxpY2UjMQ", "YWxpY2UjMQ%3D%3D"] {
            let q = format!("token=abc&usernameHint={hint}");
            assert_eq!(classify("hpc", "/ucloud/hpc/upload", Some(&q), &h), Class::UserStream { user: "alice#1".into(), upload: true });
            assert_eq!(classify("hpc", "/ucloud/hpc/download", Some(&q), &h), Class::UserStream { user: "alice#1".into(), upload: false });
        }
        // "a?b>" differs between alphabets: "YT9iPg" (URL-safe and standard agree here), "~~~" → "fn5-" vs "fn5+".
        assert_eq!(decode_hint("fn5-"), Some("~~~".into()));
        assert_eq!(decode_hint("fn5+"), Some("~~~".into()));
        let ws = classify("hpc", "/ucloud/jobs.provider.hpc/websocket", Some("usernameHint=YWxpY2UjMQ=="), &h);
        assert_eq!(ws, Class::UserStream { user: "alice#1".into(), upload: false });
        // /files with Upgrade is the streaming search socket; without it, a Core call.
        let up = headers(&[("upgrade", "websocket"), ("ucloud-username", "YWxpY2UjMQ==")]);
        assert_eq!(classify("hpc", "/ucloud/hpc/files", None, &up), Class::UserStream { user: "alice#1".into(), upload: false });
        assert_eq!(classify("hpc", "/ucloud/hpc/websocket", None, &HeaderMap::new()), Class::BadRequest("This path needs a usernameHint"));
        assert_eq!(classify("hpc", "/ucloud/hpc/websocket", Some("usernameHint=%%"), &h), Class::BadRequest("Malformed usernameHint"));
    }

    #[test]
    fn unknown_and_malformed_paths() {
        let h = HeaderMap::new();
        assert_eq!(classify("hpc", "/", None, &h), Class::NotFound);
        assert_eq!(classify("hpc", "/ucloud/other/jobs", None, &h), Class::NotFound);
        assert_eq!(classify("hpc", "/ucloud/hpcx/jobs", None, &h), Class::NotFound);
        assert_eq!(classify("hpc", "/api/jobs", None, &h), Class::NotFound);
        for bad in ["/ucloud/hpc/../other/jobs", "/ucloud/hpc//jobs", "/ucloud/hpc/%2e%2e/x", "/ucloud/hpc/a%2Fb", "/ucloud/hpc/./jobs", "/ucloud\\hpc"] {
            assert!(matches!(classify("hpc", bad, None, &h), Class::BadRequest(_)), "{bad}");
        }
    }

    #[test]
    fn cache_expires_and_forgets() {
        let c = RouteCache::new(Duration::from_millis(50));
        c.put("a", 1);
        assert_eq!(c.get("a"), Some(1));
        c.forget("a");
        assert_eq!(c.get("a"), None);
        c.put("a", 2);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.get("a"), None);
    }
}
