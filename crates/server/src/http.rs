//! The provider API as the server answers it. Every request's token is verified before its path is even
//! looked at; system calls are answered here, user calls go to the user's instance.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_api::{check_core_call, ok_json, parse_json, ApiError};
use protocol::{BulkResponse, Empty, UsernameRequest};

use crate::audit::Event;
use crate::{connect, job_control};
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
    let prefix = format!("/ucloud/{}", server.config.provider_id);
    // The one browser-facing page: it carries its own secret (the ticket) and no Core token.
    if parts.method == Method::GET && parts.uri.path().strip_prefix(&prefix) == Some(connect::INSTRUCTIONS_PATH) {
        let query = parts.uri.query().unwrap_or_default();
        let ticket = query.split('&').find_map(|kv| kv.strip_prefix("ticket="));
        let pending = query.split('&').any(|kv| kv == "pending");
        return Ok(connect::instructions_page(server, ticket, pending));
    }
    let call = check_core_call(&parts.headers, &server.verifier)?;
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
        (&Method::GET, RETRIEVE_MANIFEST) => Ok(ok_json(&connect::manifest(&server.config))),
        (&Method::POST, CONNECT) => {
            let request: UsernameRequest = parse_json(&body)?;
            Ok(ok_json(&connect::connect(server, &request.username).await?))
        }
        (&Method::POST, UNLINKED) => {
            let request: UsernameRequest = parse_json(&body)?;
            connect::unlinked(server, &request.username).await?;
            Ok(ok_json(&Empty {}))
        }
        (&Method::GET, JOBS_RETRIEVE_PRODUCTS) => {
            let queue = server.queue_status.statuses().await;
            Ok(ok_json(&BulkResponse::new(crate::job_support(&server.config, &queue))))
        }
        (&Method::GET, FILES_COLLECTIONS_RETRIEVE_PRODUCTS) => {
            Ok(ok_json(&BulkResponse::new(crate::storage::fs_support(&server.config))))
        }
        (m, s) if (m == Method::POST || m == Method::DELETE) && FILES_USER_CALLS.contains(&s) => {
            let username = call.username.ok_or_else(|| ApiError::bad_request("This call needs a ucloud-username header"))?;
            forward_audited(server, &username, &parts, &suffix, body).await
        }
        (&Method::GET, s) if s == FILES_COLLECTIONS_RETRIEVE_PRODUCTS || OTHER_RETRIEVE_PRODUCTS.contains(&s) => {
            Ok(ok_json(&BulkResponse::<Empty>::new(Vec::new())))
        }
        (&Method::POST, INIT) => {
            let request: UsernameRequest = parse_json(&body)?;
            let user = resolve(server, &request.username)?;
            start_instance(server, user.uid, &user.unix_user).await?;
            Ok(ok_json(&Empty {}))
        }
        (&Method::POST, JOBS_CREATE | JOBS_TERMINATE) => {
            let username = call.username.ok_or_else(|| ApiError::bad_request("This call needs a ucloud-username header"))?;
            forward_audited(server, &username, &parts, &suffix, body).await
        }
        (&Method::POST, s) if job_control::Action::from_suffix(s).is_some() => {
            let username = call.username.ok_or_else(|| ApiError::bad_request("This call needs a ucloud-username header"))?;
            let user = resolve(server, &username)?;
            let action = job_control::Action::from_suffix(s).expect("matched above");
            let items = job_control::parse(action, &body)?;
            let answer = job_control::apply(server, &user, action, &items).await;
            let ids: Vec<String> = items.iter().map(|i| i.job_id.clone()).collect();
            let outcome = answer.as_ref().map_or_else(|e| e.status.as_u16().to_string(), |()| "200".into());
            let action_text = format!("{} {suffix}", parts.method);
            server.audit.record(&Event { ucloud_user: &username, unix_user: Some(&user.unix_user), action: &action_text, ids: &ids, outcome: &outcome });
            answer.map(|()| ok_json(&BulkResponse::new(vec![Empty {}; items.len()])))
        }
        _ => Err(ApiError::not_found(format!("Unknown call {} {}", parts.method, parts.uri.path()))),
    }
}

/// Forwards a user call to the user's instance and audits it (files: the ids are the paths).
async fn forward_audited(
    server: &Arc<Server>,
    username: &str,
    parts: &axum::http::request::Parts,
    suffix: &str,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = resolve(server, username)?;
    let ids = http_api::item_ids(&body);
    let answer = forward(server, &user, &parts.method, &parts.uri, &parts.headers, body).await;
    let status = match &answer {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.status.as_u16(),
    };
    let action = format!("{} {suffix}", parts.method);
    let outcome = status.to_string();
    server.audit.record(&Event { ucloud_user: username, unix_user: Some(&user.unix_user), action: &action, ids: &ids, outcome: &outcome });
    answer
}

fn resolve(server: &Server, username: &str) -> Result<LocalUser, ApiError> {
    server.users.resolve(username).map_err(|refusal| {
        tracing::info!(username, "refused: {refusal}");
        ApiError::forbidden(format!("The UCloud user {username} {refusal}"))
    })
}

/// Starts `uid`'s instance unless it runs; answers its port.
pub async fn start_instance(server: &Arc<Server>, uid: u32, unix_user: &str) -> Result<u16, ApiError> {
    let setup = |port| ipc::InstanceSetup {
        port,
        ucloud_users: server.users.ucloud_users_of(uid),
        provider_id: server.config.provider_id.clone(),
        issuer: server.config.core.issuer.clone(),
        public_key: server.public_key_text.clone(),
        products: server.config.products.clone(),
        applications: server.config.applications.clone(),
        slurm: server.config.slurm.clone(),
        job_root: server.config.server.job_root.clone(),
        many_to_one: server.config.users.mode == config::UserMode::ManyToOne,
        transfer_key: transfer::token::TokenKey::derive(&server.transfer_secret, uid).to_hex(),
        transfer_base_url: server.config.server.public_url.clone().unwrap_or_else(|| format!("http://{}", server.config.server.listen)),
        storage: server.config.storage.clone(),
    };
    server
        .instances
        .ensure_running(uid, unix_user, setup)
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
            if let Err(e) = start_instance(&server, user.uid, &user.unix_user).await {
                tracing::warn!(user = user.unix_user, "background start failed: {}", e.why);
            }
        });
        return Err(ApiError::new(
            StatusCode::from_u16(INSTANCE_NOT_RUNNING).expect("valid status"),
            "The user's instance is starting; call integration/init and retry",
        ));
    };
    let url = format!("http://127.0.0.1:{port}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut outgoing = server.proxy.request(method.clone(), url).body(body).header(http_api::AUDITED_HEADER, "1");
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
