//! The provider API as the server answers it. Every request's token is verified before its path is even
//! looked at; system calls are answered here, user calls go to the user's instance.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_api::{check_core_call, ok_json, parse_json, ApiError};
use protocol::{BulkResponse, Empty, Manifest, UsernameRequest};

use crate::users::LocalUser;
use crate::Server;

/// Largest request body accepted from the Core.
const MAX_BODY: usize = 16 << 20;

/// "Instance not running": the Core calls `integration/init` and retries (§10.19).
const INSTANCE_NOT_RUNNING: u16 = 449;

pub fn router(server: Arc<Server>) -> Router {
    Router::new().fallback(dispatch).with_state(server)
}

async fn dispatch(State(server): State<Arc<Server>>, request: Request) -> Response {
    match handle(&server, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(server: &Arc<Server>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let call = check_core_call(&parts.headers, &server.verifier)?;
    let prefix = format!("/ucloud/{}", server.config.provider_id);
    let suffix = parts
        .uri
        .path()
        .strip_prefix(&prefix)
        .filter(|s| s.starts_with('/'))
        .ok_or_else(|| ApiError::not_found("Unknown provider path"))?
        .to_string();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"))?;

    use protocol::provider::*;
    match (&parts.method, suffix.as_str()) {
        (&Method::GET, RETRIEVE_MANIFEST) => {
            // Users are mapped by the operator (`ucim admin map`), so UCloud needs no connect step.
            Ok(ok_json(&Manifest { enabled: false, expire_after_ms: None }))
        }
        (&Method::GET, JOBS_RETRIEVE_PRODUCTS) => Ok(ok_json(&BulkResponse::new(crate::job_support(&server.config)))),
        (&Method::GET, s) if s == FILES_COLLECTIONS_RETRIEVE_PRODUCTS || OTHER_RETRIEVE_PRODUCTS.contains(&s) => {
            Ok(ok_json(&BulkResponse::<Empty>::new(Vec::new())))
        }
        (&Method::POST, INIT) => {
            let request: UsernameRequest = parse_json(&body)?;
            let user = resolve(server, &request.username)?;
            start_instance(server, &user).await?;
            Ok(ok_json(&Empty {}))
        }
        (&Method::POST, JOBS_CREATE | JOBS_TERMINATE) => {
            let username = call.username.ok_or_else(|| ApiError::bad_request("This call needs a ucloud-username header"))?;
            let user = resolve(server, &username)?;
            forward(server, &user, &parts.method, &parts.uri, &parts.headers, body).await
        }
        _ => Err(ApiError::not_found(format!("Unknown call {} {}", parts.method, parts.uri.path()))),
    }
}

fn resolve(server: &Server, username: &str) -> Result<LocalUser, ApiError> {
    server.users.resolve(username).map_err(|refusal| {
        tracing::info!(username, "refused: {refusal}");
        ApiError::forbidden(format!("The UCloud user {username} {refusal}"))
    })
}

async fn start_instance(server: &Arc<Server>, user: &LocalUser) -> Result<u16, ApiError> {
    let setup = |port| ipc::InstanceSetup {
        port,
        ucloud_users: server.users.ucloud_users_of(user.uid),
        provider_id: server.config.provider_id.clone(),
        issuer: server.config.core.issuer.clone(),
        public_key: server.public_key_text.clone(),
        products: server.config.products.clone(),
        applications: server.config.applications.clone(),
        slurm: server.config.slurm.clone(),
        job_root: server.config.server.job_root.clone(),
    };
    server
        .instances
        .ensure_running(user.uid, &user.unix_user, setup)
        .await
        .map_err(|e| ApiError::internal("could not start the user's instance", e))
}

/// Sends a user call to the user's instance, as is. A stopped instance answers 449 (and is started in
/// the background), which makes the Core call `init` and retry.
async fn forward(
    server: &Arc<Server>,
    user: &LocalUser,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(port) = server.instances.port_if_running(user.uid).await else {
        let (server, user) = (server.clone(), user.clone());
        tokio::spawn(async move {
            if let Err(e) = start_instance(&server, &user).await {
                tracing::warn!(user = user.unix_user, "background start failed: {}", e.why);
            }
        });
        return Err(ApiError::new(
            StatusCode::from_u16(INSTANCE_NOT_RUNNING).expect("valid status"),
            "The user's instance is starting; call integration/init and retry",
        ));
    };
    let url = format!("http://127.0.0.1:{port}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut outgoing = server.proxy.request(method.clone(), url).body(body);
    for name in [axum::http::header::AUTHORIZATION.as_str(), protocol::USERNAME_HEADER] {
        if let Some(value) = headers.get(name) {
            outgoing = outgoing.header(name, value.clone());
        }
    }
    let answer = match outgoing.send().await {
        Ok(a) => a,
        Err(e) if e.is_connect() => {
            tracing::warn!(user = user.unix_user, port, "instance unreachable: {e}");
            return Err(ApiError::new(StatusCode::from_u16(INSTANCE_NOT_RUNNING).expect("valid"), "The user's instance is not running"));
        }
        Err(e) => return Err(ApiError::internal("the user's instance did not answer", e)),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let bytes = answer.bytes().await.map_err(|e| ApiError::internal("reading the instance's answer", e))?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert(axum::http::header::CONTENT_TYPE, ct);
    }
    Ok(response)
}
