//! `[ingress]`: the public TLS entry point (`ucim ingress`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IngressConfig {
    /// Public address, e.g. `0.0.0.0:443` (binding below 1024 needs CAP_NET_BIND_SERVICE).
    pub listen: SocketAddr,
    /// PEM certificate chain and private key; reloaded on SIGHUP or when either file changes.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP instead of TLS: local development only.
    #[serde(default)]
    pub plain_http: bool,
    /// Largest request head (request line and headers); larger ones get 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Largest request body of Core calls (and everything but uploads, which are streamed unlimited).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Time allowed for the TLS handshake and for each request head.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// A connection with no request in flight and no byte moving for this long is closed.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// The same for WebSockets and other upgraded connections.
    #[serde(default = "default_websocket_idle_timeout_secs")]
    pub websocket_idle_timeout_secs: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a user's instance port is remembered between route lookups.
    #[serde(default = "default_route_cache_ms")]
    pub route_cache_ms: u64,
}

fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_max_body_bytes() -> u64 {
    16 << 20
}
fn default_header_read_timeout_secs() -> u64 {
    10
}
fn default_idle_timeout_secs() -> u64 {
    120
}
fn default_websocket_idle_timeout_secs() -> u64 {
    3600
}
fn default_max_connections() -> usize {
    10_000
}
fn default_route_cache_ms() -> u64 {
    2000
}

impl IngressConfig {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, problem: &str| Err((format!("ingress.{key}"), problem.to_string()));
        match (&self.tls_cert, &self.tls_key, self.plain_http) {
            (Some(_), Some(_), false) | (None, None, true) => {}
            (_, _, true) => return bad("plain_http", "set either plain_http or tls_cert and tls_key, not both"),
            _ => return bad("tls_cert", "tls_cert and tls_key are both needed (or plain_http = true for local development)"),
        }
        for (key, path) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                return bad(key, "must be an absolute path");
            }
        }
        if !(8192..=1 << 20).contains(&self.max_header_bytes) {
            return bad("max_header_bytes", "must be between 8192 and 1048576");
        }
        if self.max_body_bytes == 0 {
            return bad("max_body_bytes", "must be above 0");
        }
        if self.header_read_timeout_secs == 0 || self.idle_timeout_secs == 0 || self.websocket_idle_timeout_secs == 0 {
            return bad("idle_timeout_secs", "timeouts must be at least 1 second");
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigError};

    fn parse(ingress: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "provider_id = \"hpc\"\n[core]\nurl = \"http://c\"\npublic_key_file = \"/k\"\nrefresh_token_file = \"/t\"\n\
             [server]\nlisten = \"127.0.0.1:8889\"\n[products.p]\ncategory = \"c\"\npartition = \"p\"\ncpus = 1\n\
             memory_gb = 1\nprice = 1\n{ingress}"
        );
        Config::parse(&text, std::path::Path::new("/etc/ucim/config.toml"))
    }

    #[test]
    fn ingress_section_is_optional_and_has_defaults() {
        assert_eq!(parse("").unwrap().ingress, None);
        let c = parse("[ingress]\nlisten = \"0.0.0.0:443\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"").unwrap();
        let i = c.ingress.unwrap();
        assert_eq!((i.max_header_bytes, i.max_body_bytes, i.route_cache_ms, i.plain_http), (16384, 16 << 20, 2000, false));
        assert!(parse("[ingress]\nlisten = \"127.0.0.1:8080\"\nplain_http = true").unwrap().ingress.unwrap().plain_http);
    }

    #[test]
    fn ingress_needs_tls_or_an_explicit_plain_mode() {
        let key = |r: Result<Config, ConfigError>| r.unwrap_err().key;
        assert_eq!(key(parse("[ingress]\nlisten = \"0.0.0.0:443\"")), "ingress.tls_cert");
        assert_eq!(key(parse("[ingress]\nlisten = \"0.0.0.0:443\"\ntls_cert = \"/c.pem\"")), "ingress.tls_cert");
        assert_eq!(key(parse("[ingress]\nlisten = \"0.0.0.0:443\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\nplain_http = true")), "ingress.plain_http");
        assert_eq!(key(parse("[ingress]\nlisten = \"0.0.0.0:443\"\ntls_cert = \"c.pem\"\ntls_key = \"/k\"")), "ingress.tls_cert");
        assert_eq!(key(parse("[ingress]\nlisten = \"0.0.0.0:443\"\nplain_http = true\nmax_header_bytes = 100")), "ingress.max_header_bytes");
        assert!(key(parse("[ingress]\nlisten = \"0.0.0.0:443\"\nplain_http = true\nbogus = 1")).starts_with("ingress"));
    }
}
