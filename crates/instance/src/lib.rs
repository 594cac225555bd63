//! `ucim user`: the per-user instance. It runs as the mapped unix user (started by the server through
//! one sudo rule), so the kernel and Slurm enforce that user's permissions on everything it does. It
//! verifies every Core token itself and serves only the UCloud users the server says map to its uid.

mod audit;
mod drives;
mod files_api;
mod files_search;
mod jobs;
mod script;
pub mod transfers;

pub use files_api::files_routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use http_api::{check_core_call, ApiError};
use ipc::{Bootstrap, InstanceSetup, Request, Response as IpcResponse};

pub struct Instance {
    pub setup: InstanceSetup,
    verifier: auth::TokenVerifier,
    pub slurm: slurm::SlurmClient,
    server: ipc::Client,
    pub home: PathBuf,
    /// UCloud users this instance serves: those in the setup, plus those the server confirmed later (users
    /// connected after the instance started).
    served: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Instance {
    /// One short IPC exchange with the server; authorised there by our uid. The connections are kept: the
    /// instance lives exactly as long as the server, so a broken one means the server is gone.
    pub async fn ask(&self, request: &Request) -> Result<IpcResponse, ApiError> {
        self.server.call(request).await.map_err(|e| ApiError::internal("ucim server did not answer", e))
    }

    /// Checks the token and that the call is for a UCloud user this instance serves.
    async fn authorise(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let call = check_core_call(headers, &self.verifier)?;
        let user = call.username.ok_or_else(|| ApiError::bad_request("This call needs a ucloud-username header"))?;
        self.check_served(user).await
    }

    /// Is `user` one of the UCloud users this instance serves (asking the server about newcomers)?
    async fn check_served(&self, user: String) -> Result<String, ApiError> {
        if self.served.lock().unwrap_or_else(|p| p.into_inner()).contains(&user) {
            return Ok(user);
        }
        match self.ask(&Request::CheckUser { ucloud_user: user.clone() }).await? {
            IpcResponse::Ok => {
                self.served.lock().unwrap_or_else(|p| p.into_inner()).insert(user.clone());
                Ok(user)
            }
            _ => {
                tracing::warn!(user, "refused a call for a user this instance does not serve");
                Err(ApiError::forbidden(format!("This instance does not serve {user}")))
            }
        }
    }
}

/// Entry point of `ucim user`. Reads the bootstrap from stdin, proves itself to the server, serves until
/// the server goes away (stdin or the control connection closes).
pub async fn run() -> anyhow::Result<()> {
    // stdin is read on a plain thread: the first line is the bootstrap, its end means the server is gone.
    let (line_tx, line_rx) = tokio::sync::oneshot::channel();
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut stdin = std::io::stdin().lock();
        let mut line = String::new();
        let _ = stdin.read_line(&mut line);
        let _ = line_tx.send(line);
        let mut rest = String::new();
        while matches!(stdin.read_line(&mut rest), Ok(n) if n > 0) {
            rest.clear();
        }
        let _ = eof_tx.send(());
    });
    let line = tokio::time::timeout(Duration::from_secs(10), line_rx)
        .await
        .context("no bootstrap on stdin within 10 s (ucim user is started by the ucim server)")?
        .context("stdin closed before the bootstrap")?;
    let bootstrap: Bootstrap = serde_json::from_str(line.trim()).context("malformed bootstrap on stdin")?;

    let mut control = ipc::Connection::connect(&bootstrap.socket)
        .await
        .with_context(|| format!("cannot connect to {}", bootstrap.socket.display()))?;
    let setup = match control.call(&Request::Hello { nonce: bootstrap.nonce }).await? {
        IpcResponse::Setup(setup) => *setup,
        IpcResponse::Error { message } => bail!("server refused this instance: {message}"),
        other => bail!("unexpected answer from server: {other:?}"),
    };
    let key = auth::PublicKey::parse(&setup.public_key).context("the Core public key from the server")?;
    let verifier = auth::TokenVerifier::for_core_calls(key, &setup.issuer);
    let uid = nix::unistd::getuid();
    let home = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.dir)
        .with_context(|| format!("uid {uid} has no passwd entry"))?;
    let slurm = slurm::SlurmClient::new(
        setup.slurm.bin_dir.clone(),
        Duration::from_millis(setup.slurm.command_timeout_ms),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], setup.port));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let port = setup.port;
    let users = setup.ucloud_users.join(", ");
    let served = std::sync::Mutex::new(setup.ucloud_users.iter().cloned().collect());
    let instance = Arc::new(Instance { setup, verifier, slurm, server: ipc::Client::new(bootstrap.socket), home, served });
    let app = router(instance);

    match control.call(&Request::Ready { port }).await? {
        IpcResponse::Ok => {}
        other => bail!("server did not accept readiness: {other:?}"),
    }
    tracing::info!(%addr, uid = uid.as_raw(), users, "instance ready");

    // Live exactly as long as the server: its end of stdin and of the control connection.
    let server_gone = async move {
        tokio::select! {
            _ = eof_rx => {}
            _ = async { while let Ok(Some(_)) = control.receive::<IpcResponse>().await {} } => {}
        }
        tracing::info!("server went away; instance stops");
    };
    axum::serve(listener, app).with_graceful_shutdown(server_gone).await?;
    Ok(())
}

pub fn router(instance: Arc<Instance>) -> Router {
    let p = |suffix: &str| format!("/ucloud/{{provider}}{suffix}");
    Router::new()
        .route(&p(protocol::provider::JOBS_CREATE), post(create))
        .route(&p(protocol::provider::JOBS_TERMINATE), post(terminate))
        .with_state(instance.clone())
        .merge(files_routes(instance.clone()))
        // User calls only (the layer covers the routes above); transfers carry their own tokens.
        .layer(axum::middleware::from_fn_with_state(instance.clone(), audit::direct_calls))
        .merge(transfers::transfer_routes().with_state(instance))
}

async fn create(State(me): State<Arc<Instance>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let user = me.authorise(&headers).await?;
    jobs::create(&me, &user, &body).await
}

async fn terminate(State(me): State<Arc<Instance>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let user = me.authorise(&headers).await?;
    jobs::terminate(&me, &user, &body).await
}
