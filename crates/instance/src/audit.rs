//! Audit lines for user calls that reach this instance without passing the server: with an ingress in
//! front, a Core call for a user whose instance runs goes straight here. The server keeps the one audit
//! log, so the instance reports each such call over the socket, where the kernel names its uid and the
//! server accepts lines only for UCloud users mapped to it. Calls the server forwarded carry
//! [`http_api::AUDITED_HEADER`] (the ingress strips it from clients) and were audited there.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_api::ApiError;
use ipc::Request as IpcRequest;

use crate::Instance;

/// User-call bodies are JSON; anything larger is refused before the handler would refuse it anyway.
const MAX_BODY: usize = 16 << 20;

pub async fn direct_calls(State(me): State<Arc<Instance>>, request: Request, next: Next) -> Response {
    if request.method() == Method::GET || request.headers().contains_key(http_api::AUDITED_HEADER) {
        return next.run(request).await;
    }
    // Not verified yet (the handler does that): the server checks the name against our uid, and a call
    // refused for its token (401) is not written down as done by anyone.
    let user = request
        .headers()
        .get(protocol::USERNAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(protocol::decode_username_header);
    let Some(user) = user else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large").into_response(),
    };
    let ids = http_api::item_ids(&bytes);
    let prefix = format!("/ucloud/{}", me.setup.provider_id);
    let action = format!("{} {}", parts.method, parts.uri.path().strip_prefix(&prefix).unwrap_or(parts.uri.path()));
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if response.status() != StatusCode::UNAUTHORIZED {
        let outcome = response.status().as_u16().to_string();
        // Awaited, so the line exists before the Core hears the answer.
        match me.ask(&IpcRequest::Audit { ucloud_user: user, action, ids, outcome }).await {
            Ok(ipc::Response::Ok) => {}
            Ok(other) => tracing::error!("server refused an audit line: {other:?}"),
            Err(e) => tracing::error!("could not send an audit line: {}", e.why),
        }
    }
    response
}
