//! `ucim server`: runs as the unprivileged service user. It answers the Core's system calls, routes user
//! calls to per-user instances (starting them through one sudo rule), owns the database, watches Slurm
//! for every tracked job in one batched poll, and delivers job updates to the Core through a durable
//! outbox.

mod audit;
mod connect;
mod hook;
pub(crate) mod http;
pub mod instances;
mod ipc_server;
pub mod job_control;
mod lifecycle;
pub mod monitor;
pub mod outbox;
pub mod outside;
mod products;
mod start_budget;
pub mod queue_status;
pub mod storage;
mod transfer_secret;
pub mod users;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use config::Config;
use tokio::sync::Notify;

pub use products::{job_support, products_v2};

/// Everything the handlers and background tasks share.
pub struct Server {
    pub config: Config,
    pub verifier: auth::TokenVerifier,
    pub public_key_text: String,
    pub store: Arc<store::Store>,
    pub users: users::Users,
    pub instances: instances::Instances,
    pub audit: audit::Audit,
    pub monitor: Arc<monitor::Monitor>,
    /// For what the server does in Slurm itself, as an operator (suspend, extend, queue status).
    pub slurm: Arc<slurm::SlurmClient>,
    pub queue_status: Arc<queue_status::QueueStatusCache>,
    pub outbox_wake: Arc<Notify>,
    pub core: Arc<core_client::CoreClient>,
    pub proxy: reqwest::Client,
    /// Per-uid transfer-token keys are derived from it (`transfer_secret.rs`).
    pub transfer_secret: Vec<u8>,
    /// Instance starts asked for by unauthenticated browser traffic (through the ingress).
    pub browser_starts: start_budget::StartBudget,
    /// UCloud users whose account hook is running (a second `connect` meanwhile does not start another).
    pub connecting: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Reads everything the server needs from `config` and the files it names; fails before doing anything
/// if one of them is missing or malformed.
pub fn build(config: Config) -> anyhow::Result<(Arc<Server>, tokio::sync::mpsc::UnboundedReceiver<instances::Crash>)> {
    let key_path = &config.core.public_key_file;
    let public_key_text = std::fs::read_to_string(key_path)
        .with_context(|| format!("cannot read core.public_key_file {}", key_path.display()))?;
    let key = auth::PublicKey::parse(&public_key_text)
        .with_context(|| format!("core.public_key_file {} is not a usable RSA public key", key_path.display()))?;
    let verifier = auth::TokenVerifier::for_core_calls(key, &config.core.issuer);
    let token_path = &config.core.refresh_token_file;
    let refresh_token = std::fs::read_to_string(token_path)
        .with_context(|| format!("cannot read core.refresh_token_file {}", token_path.display()))?;
    if refresh_token.trim().is_empty() {
        anyhow::bail!("core.refresh_token_file {} is empty", token_path.display());
    }
    if let Some(parent) = config.server.database.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let store = Arc::new(
        store::Store::open(&config.server.database)
            .with_context(|| format!("cannot open database {}", config.server.database.display()))?,
    );
    let slurm = Arc::new(slurm::SlurmClient::new(
        config.slurm.bin_dir.clone(),
        Duration::from_millis(config.slurm.command_timeout_ms),
    ));
    let outbox_wake = Arc::new(Notify::new());
    let monitor = Arc::new(monitor::Monitor::new(store.clone(), slurm.clone(), outbox_wake.clone()));
    let queue_status = Arc::new(queue_status::QueueStatusCache::new(slurm.clone()));
    let core = Arc::new(core_client::CoreClient::new(&config.core.url, &refresh_token));
    let users = users::Users::new(store.clone(), &config);
    let (instances, crashes) = instances::Instances::new(&config);
    let audit = match audit::Audit::open(&config.server.audit_log) {
        Ok(audit) => audit,
        Err(e) if config.users.mode == config::UserMode::ManyToOne => {
            anyhow::bail!("many-to-one mode needs its audit log, but {} cannot be opened: {e}", config.server.audit_log.display())
        }
        Err(e) => {
            tracing::warn!("audit log {} cannot be opened ({e}); calls are not audited", config.server.audit_log.display());
            audit::Audit::disabled()
        }
    };
    let secret_path = transfer_secret::path_for(&config.server.database);
    let transfer_secret = transfer_secret::load_or_create(&secret_path)?;
    let proxy = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client for instances")?;
    Ok((Arc::new(Server {
        config,
        verifier,
        public_key_text,
        store,
        users,
        instances,
        audit,
        monitor,
        slurm,
        queue_status,
        outbox_wake,
        core,
        proxy,
        transfer_secret,
        // 20 at once, then one every 3 s: enough for people opening sessions, not for a sweep of all users.
        browser_starts: start_budget::StartBudget::new(20, Duration::from_secs(3)),
        connecting: Default::default(),
    }), crashes))
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let (server, crashes) = build(config)?;
    if server.config.users.mode == config::UserMode::ManyToOne {
        tracing::warn!(
            shared_user = server.config.users.shared_user.as_deref().unwrap_or_default(),
            audit_log = %server.config.server.audit_log.display(),
            "MANY-TO-ONE MODE: every UCloud user runs as one unix user. The kernel can no longer keep users \
             apart; ucim alone confines each UCloud user to their own jobs and files and audits every call."
        );
    }
    let listener = tokio::net::TcpListener::bind(server.config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", server.config.server.listen))?;
    let socket = &server.config.server.socket;
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let ipc = ipc::Listener::bind(socket).with_context(|| format!("cannot bind {}", socket.display()))?;

    server.monitor.load().context("loading tracked jobs")?;
    if server.config.slurm.outside_jobs {
        server.monitor.enable_outside(Arc::new(outside::Outside::new(server.core.clone(), server.store.clone(), &server.config)));
        tracing::info!("jobs connected users submit outside UCloud are registered with UCloud (slurm.outside_jobs)");
    }
    tokio::spawn(ipc_server::serve(server.clone(), ipc));
    tokio::spawn(server.monitor.clone().run(monitor::pacer_for(Duration::from_millis(server.config.slurm.poll_interval_ms))));
    tokio::spawn(outbox::deliver(server.store.clone(), server.core.clone(), server.outbox_wake.clone()));
    tokio::spawn(products::register_until_done(server.clone()));
    tokio::spawn(lifecycle::sweep(server.clone()));
    tokio::spawn(lifecycle::restart_crashed(server.clone(), crashes));

    tracing::info!(
        provider = server.config.provider_id,
        listen = %server.config.server.listen,
        socket = %socket.display(),
        "ucim server ready"
    );
    axum::serve(listener, http::router(server.clone())).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("stopping instances");
    server.instances.stop_all().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown requested");
}
