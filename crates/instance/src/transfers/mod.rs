//! Uploads and downloads (§6.5–6.7): `files.createUpload` / `files.createDownload` from the Core (they
//! validate the path and sign a token), and the browser-facing endpoints the tokens open. Tokens are
//! stateless (lead's decision 4, `transfer::token`), signed with this uid's key from the server.

mod create;
mod download;
mod upload;
mod upload_fs;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use files::beneath::{FsError, RelPath, Root};
use transfer::token::{Claims, Kind, TokenKey};

pub use create::{create_download, create_upload};

use crate::Instance;

/// Largest CHUNKED request body.
const MAX_CHUNK: usize = 64 << 20;

/// The browser-facing routes (reached through the ingress, which forwards by `usernameHint`).
pub fn transfer_routes() -> Router<Arc<Instance>> {
    let p = |suffix: &str| format!("/ucloud/{{provider}}{suffix}");
    Router::new()
        .route(
            &p("/upload"),
            get(upload_socket).post(upload_chunk).options(preflight).layer(DefaultBodyLimit::max(MAX_CHUNK)),
        )
        .route(&p("/download"), get(download).options(preflight))
        .route(&p(protocol::provider::FILES_UPLOAD), post(create_upload))
        .route(&p(protocol::provider::FILES_DOWNLOAD), post(create_download))
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Instance {
    pub(crate) fn transfer_key(&self) -> Option<TokenKey> {
        TokenKey::from_hex(&self.setup.transfer_key)
    }
}

/// A JSON answer with `Access-Control-Allow-Origin: *` (browser-facing, cross-origin).
pub(crate) fn cors(status: StatusCode, json: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(json))
        .expect("valid response")
}

fn refusal((status, why): (StatusCode, String)) -> Response {
    let body = serde_json::to_vec(&protocol::ErrorBody { status_code: status.as_u16(), why, error_code: None })
        .unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(body))
        .expect("valid response")
}

pub(crate) fn fs_error(e: FsError) -> (StatusCode, String) {
    (StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), e.why().to_string())
}

/// Verifies a browser's token. Every failure looks the same to the browser (404, as for an unknown
/// token in the IM); the log says which check failed.
fn verify(me: &Instance, provider: &str, token: Option<&str>, kind: Kind) -> Result<(Claims, Vec<u8>, Root), (StatusCode, String)> {
    let unknown = || (StatusCode::NOT_FOUND, "Unknown or expired transfer token".to_string());
    if provider != me.setup.provider_id {
        return Err((StatusCode::NOT_FOUND, "Unknown provider".into()));
    }
    let key = me.transfer_key().ok_or((StatusCode::SERVICE_UNAVAILABLE, "Transfers are not configured".into()))?;
    let token = token.ok_or_else(unknown)?;
    let (claims, session) = key.verify(token, kind, now_secs()).map_err(|e| {
        tracing::warn!("refused a {kind:?} token: {e}");
        unknown()
    })?;
    let label = format!("/{}", claims.drive);
    let mut root = Root::open(Path::new(&claims.root), label.clone()).map_err(fs_error)?;
    if !claims.sub.is_empty() {
        let sub = RelPath::parse(&claims.sub).map_err(fs_error)?;
        root = root.open_sub(&sub, label).map_err(fs_error)?;
    }
    Ok((claims, session, root))
}

async fn upload_socket(
    State(me): State<Arc<Instance>>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let (claims, session, root) = match verify(&me, &provider, query.get("token").map(String::as_str), Kind::Upload) {
        Ok(v) => v,
        Err(e) => return refusal(e),
    };
    tracing::info!(user = claims.user, path = %root.ucloud_path(&RelPath::parse(&claims.path).unwrap_or_default()), "upload session");
    ws.max_message_size(upload::MAX_MESSAGE)
        .max_frame_size(upload::MAX_MESSAGE)
        .on_upgrade(move |socket| upload::run_session(socket, root, claims, session, Default::default()))
}

async fn upload_chunk(
    State(me): State<Arc<Instance>>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get("chunked-upload-token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query.get("token").map(String::as_str))
        .map(str::to_string);
    let result = match verify(&me, &provider, token.as_deref(), Kind::Upload) {
        // File IO off the async threads.
        Ok((claims, session, root)) => tokio::task::spawn_blocking(move || upload::chunked(&root, &claims, &session, &headers, &body))
            .await
            .unwrap_or_else(|e| Err((StatusCode::INTERNAL_SERVER_ERROR, format!("upload task failed: {e}")))),
        Err(e) => Err(e),
    };
    result.unwrap_or_else(refusal)
}

async fn download(
    State(me): State<Arc<Instance>>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (claims, _, root) = match verify(&me, &provider, query.get("token").map(String::as_str), Kind::Download) {
        Ok(v) => v,
        Err(e) => return refusal(e),
    };
    let rel = match RelPath::parse(&claims.path) {
        Ok(r) => r,
        Err(e) => return refusal(fs_error(e)),
    };
    tokio::task::spawn_blocking(move || download::download(root, rel, &headers))
        .await
        .unwrap_or_else(|e| Err((StatusCode::INTERNAL_SERVER_ERROR, format!("download task failed: {e}"))))
        .unwrap_or_else(refusal)
}

/// CORS preflight for CHUNKED POSTs and ranged GETs.
async fn preflight() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Chunked-Upload-Token, Chunked-Upload-Offset, Chunked-Upload-Total-Size, UCloud-Username, Content-Type, Range",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
}
