//! TLS termination: the certificate and key come from PEM files and are swapped atomically on SIGHUP or
//! when either file changes. Handshakes pick up the new pair; connections already open keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{anyhow, Context};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;

/// How often the files are looked at for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The certificate in use; a handshake clones one `Arc`.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// What the files looked like when `current` was loaded from them.
    stamp: RwLock<Stamp>,
}

type Stamp = Option<[(u64, i64, i64, u64); 2]>;

fn stamp_of(paths: [&Path; 2]) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let one = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()));
    Some([one(paths[0])?, one(paths[1])?])
}

/// Reads and checks a certificate chain and its key.
pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("cannot read the certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("cannot read a PEM private key from {}", key_path.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| anyhow!("{} and {} do not make a usable pair: {e}", cert_path.display(), key_path.display()))
}

impl CertStore {
    pub fn open(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<CertStore>> {
        let stamp = stamp_of([cert_path, key_path]);
        let key = load(cert_path, key_path)?;
        Ok(Arc::new(CertStore {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            current: RwLock::new(Arc::new(key)),
            stamp: RwLock::new(stamp),
        }))
    }

    /// Loads the files again; on any problem the pair in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let stamp = stamp_of([&self.cert_path, &self.key_path]);
        let key = load(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        *self.stamp.write().unwrap_or_else(|p| p.into_inner()) = stamp;
        Ok(())
    }

    fn changed(&self) -> bool {
        let now = stamp_of([&self.cert_path, &self.key_path]);
        now.is_some() && now != *self.stamp.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The leaf certificate in use (DER), for logs and tests.
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).cert[0].clone()
    }

    /// Reloads on SIGHUP and when either file changes (a renewal tool replacing them), forever.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("no SIGHUP handler ({e}); certificates reload on file change only");
                None
            }
        };
        let mut last_error = String::new();
        loop {
            let by_signal = tokio::select! {
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
                _ = tokio::time::sleep(WATCH_INTERVAL) => false,
            };
            if !by_signal && !self.changed() {
                continue;
            }
            match self.reload() {
                Ok(()) => {
                    metrics.cert_reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    last_error.clear();
                    tracing::info!(cert = %self.cert_path.display(), by_signal, "TLS certificate reloaded");
                }
                Err(e) => {
                    // A renewal writes two files; a half-written pair is retried on the next look.
                    let text = format!("{e:#}");
                    if text != last_error {
                        tracing::error!("TLS certificate not reloaded, the previous one stays in use: {text}");
                        last_error = text;
                    }
                }
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// TLS 1.3 and 1.2 with rustls' default (modern, forward-secret, AEAD-only) cipher suites; ALPN h2 and
/// http/1.1.
pub fn server_config(store: Arc<CertStore>) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
