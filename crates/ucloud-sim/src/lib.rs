//! A stand-in UCloud Core for tests, benchmarks and the demo: signs real RS256 tokens, speaks the wire format.
//!
//! The sim plays both sides of the Core that a provider sees (`provider-api.md` §1–§5, errata §10):
//! it serves `/auth/providers/refresh`, `/api/products/v2` and `/api/jobs/control/update` with the Core's
//! semantics, and it calls the provider (`/ucloud/{P}/...`) with the Core's headers, token handling,
//! 5-second timeout and 449/503 → `integration/init` retry dance. A small `/sim/...` control API lets the
//! CLI and the demo drive it; nothing of it is ever sent to the provider.

mod control;
mod core_api;
mod drives;
mod job_ops;
mod jobs;
mod provider_calls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use protocol::{JobState, JobUpdate, JobUpdateItem, ProductReference, ProductV2, SimpleDuration};
use rand::Rng;
use serde_json::{Map, Value};

pub use drives::browse_body;
pub use provider_calls::{CallError, CallResult};

/// Where and how the sim runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub provider_id: String,
    /// `127.0.0.1:0` picks a free port; [`Sim::url`] tells which.
    pub listen: SocketAddr,
    /// Base URL of the provider, e.g. `http://127.0.0.1:8889`.
    pub provider_url: String,
    /// `private.pem` (PKCS#8, 0600), `public.pem` (SPKI PEM), `public.b64` (base64 DER, as UCloud ships the
    /// key to providers). Generated if absent, loaded if present.
    pub key_dir: PathBuf,
    /// The provider's refresh token, the only one `/auth/providers/refresh` accepts.
    pub refresh_token: String,
    /// `cloud.sdu.dk` for a real Core.
    pub issuer: String,
}

/// File names inside [`SimConfig::key_dir`].
pub const PRIVATE_KEY_FILE: &str = "private.pem";
pub const PUBLIC_KEY_PEM_FILE: &str = "public.pem";
pub const PUBLIC_KEY_B64_FILE: &str = "public.b64";

/// Lifetime of every token the sim mints (the Core's: 10 minutes).
pub const TOKEN_LIFETIME_SECS: i64 = 600;

/// A running stand-in Core. Cheap to clone; all clones share one state and one server.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub cfg: SimConfig,
    pub addr: SocketAddr,
    pub signer: auth::TokenSigner,
    pub verifier: auth::TokenVerifier,
    pub provider_url: RwLock<String>,
    pub unavailable: AtomicBool,
    pub jobs: Mutex<jobs::JobTable>,
    pub products: Mutex<Vec<ProductV2>>,
    pub drives: Mutex<drives::DriveTable>,
    pub refresh_count: AtomicU64,
    /// `jobs.control.update` calls that passed authorisation.
    pub update_calls: AtomicU64,
    /// Users the Core counts as connected to this provider (`approveConnection` / `clearConnection`).
    pub connections: Mutex<std::collections::BTreeSet<String>>,
    /// The Core's cached token for calling the provider: (jwt, expiry in Unix seconds).
    pub service_token: tokio::sync::Mutex<Option<(String, i64)>>,
    /// Replaced (not mutated) when a test trusts another CA.
    pub http: RwLock<reqwest::Client>,
    pub server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Sim {
    /// Loads or generates the key pair, binds `cfg.listen` and serves in a tokio task.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<Sim> {
        let (private_pem, public_pem) = load_or_generate_keys(&cfg.key_dir)?;
        let signer = auth::TokenSigner::from_private_pem(&private_pem)
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", PRIVATE_KEY_FILE))?;
        let key = auth::PublicKey::parse(&public_pem)
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", PUBLIC_KEY_PEM_FILE))?;
        let verifier = auth::TokenVerifier::for_provider_calls(key, &cfg.issuer, &cfg.provider_id);
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .timeout(provider_calls::CORE_CLIENT_TIMEOUT)
            .user_agent(provider_calls::CORE_USER_AGENT)
            .build()?;
        let base = rand::thread_rng().gen_range(1_000u64..900_000) * 10;
        let inner = Arc::new(Inner {
            provider_url: RwLock::new(cfg.provider_url.trim_end_matches('/').to_string()),
            cfg,
            addr,
            signer,
            verifier,
            unavailable: AtomicBool::new(false),
            jobs: Mutex::new(jobs::JobTable::new(base)),
            products: Mutex::new(Vec::new()),
            drives: Mutex::new(Default::default()),
            refresh_count: AtomicU64::new(0),
            update_calls: AtomicU64::new(0),
            connections: Mutex::new(Default::default()),
            service_token: tokio::sync::Mutex::new(None),
            http: RwLock::new(http),
            server: Mutex::new(None),
        });
        let sim = Sim { inner };
        let app = core_api::router(sim.clone());
        let handle = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("ucloud-sim server stopped: {e}");
            }
        });
        *sim.inner.server.lock().unwrap() = Some(handle);
        tracing::info!(url = %sim.url(), provider = %sim.inner.cfg.provider_id, "ucloud-sim listening");
        Ok(sim)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }

    pub fn public_key_pem_path(&self) -> PathBuf {
        self.inner.cfg.key_dir.join(PUBLIC_KEY_PEM_FILE)
    }

    pub fn public_key_b64_path(&self) -> PathBuf {
        self.inner.cfg.key_dir.join(PUBLIC_KEY_B64_FILE)
    }

    /// The per-provider signing key (the Core's private key for this provider).
    pub fn signer(&self) -> &auth::TokenSigner {
        &self.inner.signer
    }

    pub fn set_provider_url(&self, url: &str) {
        *self.inner.provider_url.write().unwrap() = url.trim_end_matches('/').to_string();
    }

    /// Trusts the CA certificate `pem` for calls to the provider (an ingress with a test CA).
    pub fn trust_root_pem(&self, pem: &[u8]) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(provider_calls::CORE_CLIENT_TIMEOUT)
            .user_agent(provider_calls::CORE_USER_AGENT)
            .add_root_certificate(reqwest::Certificate::from_pem(pem)?)
            .build()?;
        *self.inner.http.write().unwrap() = client;
        Ok(())
    }

    pub fn provider_url(&self) -> String {
        self.inner.provider_url.read().unwrap().clone()
    }

    /// Fault injection: while true every `/auth` and `/api` endpoint answers 503 (a Core that is down).
    pub fn set_unavailable(&self, down: bool) {
        self.inner.unavailable.store(down, Ordering::SeqCst);
    }

    /// Stops serving (the listener closes; calls the sim makes itself still work).
    pub fn shutdown(&self) {
        if let Some(h) = self.inner.server.lock().unwrap().take() {
            h.abort();
        }
    }

    /// A full Job JSON as the Core sends it on `jobs.create`, registered in the job table (`IN_QUEUE`).
    /// `parameters` maps parameter names to AppParameterValue JSON; missing fields are filled in as the Core
    /// serialises them, and `ucMetricSampleRate` (text `"0ms"`) is injected.
    pub fn new_job(
        &self,
        username: &str,
        product: ProductReference,
        application: &str,
        parameters: Map<String, Value>,
        time: Option<SimpleDuration>,
    ) -> Value {
        let resolved_product = self
            .products()
            .into_iter()
            .find(|p| p.reference() == product)
            .and_then(|p| serde_json::to_value(p).ok());
        let mut table = self.inner.jobs.lock().unwrap();
        let job = jobs::build_job(jobs::NewJob {
            id: table.allocate_id(),
            username,
            product,
            resolved_product,
            application,
            parameters,
            time,
        });
        table.insert(job.clone());
        job
    }

    /// Current state of a job, `None` if unknown (never created, or deleted after a failed create).
    pub fn job_state(&self, job_id: &str) -> Option<JobState> {
        self.inner.jobs.lock().unwrap().get(job_id).map(|e| e.state)
    }

    /// The job as the Core would send it on a later call (current status), `None` if unknown.
    pub fn job(&self, job_id: &str) -> Option<Value> {
        self.inner
            .jobs
            .lock()
            .unwrap()
            .job_for_call(job_id)
            .map(|(j, _)| j)
    }

    /// Updates applied to the job (Core semantics), in order, with the Core's timestamps.
    pub fn job_updates(&self, job_id: &str) -> Vec<JobUpdate> {
        self.inner
            .jobs
            .lock()
            .unwrap()
            .get(job_id)
            .map(|e| e.applied.clone())
            .unwrap_or_default()
    }

    /// Every `jobs.control.update` item received for known jobs (raw, including skipped ones), in arrival
    /// order. Batches refused with 404 are not recorded.
    pub fn received_updates(&self) -> Vec<JobUpdateItem> {
        self.inner.jobs.lock().unwrap().received().to_vec()
    }

    /// Products registered through `products.v2.create`.
    pub fn products(&self) -> Vec<ProductV2> {
        self.inner.products.lock().unwrap().clone()
    }

    /// Successful `/auth/providers/refresh` calls.
    /// Does the Core count `username` as connected (approved and not cleared)?
    pub fn is_connected(&self, username: &str) -> bool {
        self.inner.connections.lock().unwrap().contains(username)
    }

    pub fn refresh_count(&self) -> u64 {
        self.inner.refresh_count.load(Ordering::SeqCst)
    }

    /// How many `jobs.control.update` calls the provider made (each carries one batch).
    pub fn update_calls(&self) -> u64 {
        self.inner.update_calls.load(Ordering::SeqCst)
    }

    /// Polls until the job's state equals `state` or `timeout` passes; the error lists the updates seen.
    pub async fn wait_for_state(
        &self,
        job_id: &str,
        state: JobState,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self.job_state(job_id);
            if current == Some(state) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let updates: Vec<Value> = self
                    .received_updates()
                    .into_iter()
                    .filter(|i| i.id == job_id)
                    .map(|i| serde_json::to_value(i.update).unwrap_or_default())
                    .collect();
                anyhow::bail!(
                    "job {job_id}: wanted {} within {timeout:?}, state is {:?}; updates received: {}",
                    state.as_str(),
                    current.map(|s| s.as_str()),
                    Value::Array(updates)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Loads the key pair from `dir`, generating and writing it if `private.pem` is missing. `public.b64` is
/// (re)derived from `public.pem` when absent.
fn load_or_generate_keys(dir: &Path) -> anyhow::Result<(String, String)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let private = dir.join(PRIVATE_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_PEM_FILE);
    let b64 = dir.join(PUBLIC_KEY_B64_FILE);
    if !private.exists() || !public.exists() {
        let pair = auth::generate_keypair();
        auth::write_keypair(&pair, &private, &public)
            .map_err(|e| anyhow::anyhow!("writing key pair to {}: {e}", dir.display()))?;
        std::fs::write(&b64, format!("{}\n", pair.public_der_base64))
            .with_context(|| format!("writing {}", b64.display()))?;
    }
    let private_pem = std::fs::read_to_string(&private)
        .with_context(|| format!("reading {}", private.display()))?;
    let public_pem = std::fs::read_to_string(&public)
        .with_context(|| format!("reading {}", public.display()))?;
    if !b64.exists() {
        std::fs::write(&b64, format!("{}\n", pem_body(&public_pem)))
            .with_context(|| format!("writing {}", b64.display()))?;
    }
    Ok((private_pem, public_pem))
}

/// The base64 between the PEM armour lines, joined on one line (= base64 of the DER).
fn pem_body(pem: &str) -> String {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect()
}

#[cfg(test)]
mod tests;
