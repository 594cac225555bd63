//! The Core's endpoints a provider calls (§2.2, §3.4, §4.12, §5.1), with the Core's semantics.
//!
//! Bodies are parsed whatever their Content-Type; errors use the `ErrorBody` shape. While the sim is
//! "unavailable" every `/auth` and `/api` route answers 503.

// Handlers return a ready `Response` as their error: boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::{
    core as core_paths, AccessTokenResponse, BulkRequest, BulkResponse, ErrorBody, JobUpdateItem,
    ProductV2, RefreshRequest,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::{control, Sim, TOKEN_LIFETIME_SECS};

pub(crate) fn router(sim: Sim) -> Router {
    Router::new()
        .route(core_paths::AUTH_REFRESH, post(refresh))
        .route(core_paths::PRODUCTS_CREATE, post(products_create))
        .route("/api/products/v2/browse", get(products_browse))
        .route(core_paths::JOBS_CONTROL_UPDATE, post(jobs_control_update))
        .route(core_paths::JOBS_CONTROL_REGISTER, post(jobs_control_register))
        .route(core_paths::APPROVE_CONNECTION, post(approve_connection))
        .route(core_paths::CLEAR_CONNECTION, post(clear_connection))
        .merge(control::router())
        .merge(crate::drives::router())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            sim.clone(),
            unavailable_gate,
        ))
        .with_state(sim)
}

/// An error answer as the Core sends it.
pub(crate) fn error(status: StatusCode, why: impl Into<String>) -> Response {
    let body = ErrorBody {
        status_code: status.as_u16(),
        why: why.into(),
        error_code: None,
    };
    (status, Json(body)).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found")
}

async fn unavailable_gate(State(sim): State<Sim>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let core_path = path.starts_with("/auth/") || path.starts_with("/api/");
    if core_path && sim.inner.unavailable.load(Ordering::SeqCst) {
        tracing::info!(path = %req.uri().path(), "core unavailable (fault injection): 503");
        return error(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable");
    }
    next.run(req).await
}

/// JSON body regardless of Content-Type (the Core's Go decoder does not look at it).
pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("Bad request: {e}")))
}

/// A caller whose bearer does not verify as this provider's token is a guest to the Core: 403.
pub(crate) fn authorize(sim: &Sim, headers: &HeaderMap) -> Result<auth::Claims, Response> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    sim.inner.verifier.verify_bearer(value).map_err(|e| {
        tracing::info!("refused provider bearer: {e}");
        error(StatusCode::FORBIDDEN, "Forbidden")
    })
}

/// `POST /auth/providers/refresh`: no bearer; an unknown refresh token is 401.
async fn refresh(State(sim): State<Sim>, body: Bytes) -> Response {
    let req: BulkRequest<RefreshRequest> = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let cfg = &sim.inner.cfg;
    if req.items.is_empty()
        || req
            .items
            .iter()
            .any(|i| i.refresh_token != cfg.refresh_token)
    {
        tracing::info!("refresh with an unknown refresh token: 401");
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let responses: Vec<AccessTokenResponse> = req
        .items
        .iter()
        .map(|_| AccessTokenResponse {
            access_token: sim.inner.signer.provider_token(
                &cfg.provider_id,
                &cfg.issuer,
                TOKEN_LIFETIME_SECS,
            ),
            csrf_token: String::new(),
        })
        .collect();
    sim.inner.refresh_count.fetch_add(1, Ordering::SeqCst);
    tracing::info!(provider = %cfg.provider_id, "issued provider access token");
    Json(BulkResponse::new(responses)).into_response()
}

/// `POST /api/products/v2`: every item must belong to the calling provider (else 403); upsert.
async fn products_create(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = authorize(&sim, &headers) {
        return e;
    }
    let req: BulkRequest<ProductV2> = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let provider = &sim.inner.cfg.provider_id;
    if req.items.iter().any(|p| &p.category.provider != provider) {
        tracing::info!("products.v2.create for another provider: 403");
        return error(StatusCode::FORBIDDEN, "Forbidden");
    }
    let mut products = sim.inner.products.lock().unwrap();
    for item in req.items {
        tracing::info!(category = %item.category.name, product = %item.name, "product registered");
        match products
            .iter_mut()
            .find(|p| p.category.name == item.category.name && p.name == item.name)
        {
            Some(existing) => *existing = item,
            None => products.push(item),
        }
    }
    Json(json!({})).into_response()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BrowseQuery {
    #[serde(default)]
    items_per_page: Option<i64>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    filter_provider: Option<String>,
    #[serde(default)]
    filter_category: Option<String>,
}

/// `GET /api/products/v2/browse` (PageV2; `next` is `provider@category@name` like the Core's).
async fn products_browse(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Query(q): Query<BrowseQuery>,
) -> Response {
    if let Err(e) = authorize(&sim, &headers) {
        return e;
    }
    let per_page = match q.items_per_page.unwrap_or(50) {
        n if n <= 0 => 50,
        n => n.min(1000) as usize,
    };
    let mut all: Vec<ProductV2> = sim
        .products()
        .into_iter()
        .filter(|p| {
            q.filter_provider
                .as_deref()
                .is_none_or(|f| f.is_empty() || p.category.provider == f)
        })
        .filter(|p| {
            q.filter_category
                .as_deref()
                .is_none_or(|f| f.is_empty() || p.category.name == f)
        })
        .collect();
    let key = |p: &ProductV2| format!("{}@{}@{}", p.category.provider, p.category.name, p.name);
    all.sort_by_key(key);
    let start = match q.next.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => all
            .iter()
            .position(|p| key(p).as_str() > n)
            .unwrap_or(all.len()),
        None => 0,
    };
    let page: Vec<ProductV2> = all.iter().skip(start).take(per_page).cloned().collect();
    let next = if start + page.len() < all.len() {
        page.last().map(key)
    } else {
        None
    };
    Json(json!({"items": page, "itemsPerPage": per_page, "next": next})).into_response()
}

/// `POST /api/jobs/control/update`: unknown id ⇒ 404 for the whole batch; see `jobs::JobTable::apply`.
async fn jobs_control_update(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = authorize(&sim, &headers) {
        return e;
    }
    sim.inner.update_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let req: BulkRequest<JobUpdateItem> = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    for item in &req.items {
        tracing::info!(job = %item.id, update = %serde_json::to_string(&item.update).unwrap_or_default(),
                       "jobs.control.update");
    }
    let provider = sim.inner.cfg.provider_id.clone();
    let mut table = sim.inner.jobs.lock().unwrap();
    // Only jobs on this provider's products are visible to it.
    let foreign = req.items.iter().find(|i| {
        table.get(&i.id).is_some_and(|e| {
            e.job["specification"]["product"]["provider"].as_str() != Some(provider.as_str())
        })
    });
    if let Some(item) = foreign {
        return error(
            StatusCode::NOT_FOUND,
            format!("Not found or permission denied ({})", item.id),
        );
    }
    match table.apply(req.items) {
        Ok(()) => Json(Value::Object(Default::default())).into_response(),
        Err(id) => {
            tracing::info!(job = %id, "jobs.control.update for an unknown job: 404");
            error(
                StatusCode::NOT_FOUND,
                format!("Not found or permission denied ({id})"),
            )
        }
    }
}

/// `POST /api/jobs/control/register`: provider-created jobs, as core2 makes them (`job.go`): every item's
/// product must be the caller's (else 403 for the batch); each becomes a job `IN_QUEUE` owned by
/// `createdBy` (default `_ucloud`) with the given `providerGeneratedId`.
async fn jobs_control_register(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = authorize(&sim, &headers) {
        return e;
    }
    let req: BulkRequest<protocol::RegisterJob> = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let provider = sim.inner.cfg.provider_id.clone();
    if req.items.iter().any(|i| i.spec.product.provider != provider) {
        return error(StatusCode::FORBIDDEN, "forbidden");
    }
    let mut ids = Vec::with_capacity(req.items.len());
    for item in req.items {
        let spec = item.spec;
        let resolved_product = sim
            .products()
            .into_iter()
            .find(|p| p.reference() == spec.product)
            .and_then(|p| serde_json::to_value(p).ok());
        let mut table = sim.inner.jobs.lock().unwrap();
        let id = table.allocate_id();
        let mut job = crate::jobs::build_job(crate::jobs::NewJob {
            id: id.clone(),
            username: item.created_by.as_deref().unwrap_or("_ucloud"),
            product: spec.product.clone(),
            resolved_product,
            application: &spec.application.name,
            parameters: Default::default(),
            time: spec.time_allocation,
        });
        job["specification"]["replicas"] = json!(spec.replicas);
        if let Some(name) = &spec.name {
            job["specification"]["name"] = json!(name);
        }
        if let Some(pgid) = &item.provider_generated_id {
            job["providerGeneratedId"] = json!(pgid);
        }
        tracing::info!(job = %id, owner = ?item.created_by, provider_generated_id = ?item.provider_generated_id, "jobs.control.register");
        table.insert(job);
        ids.push(json!({"id": id}));
    }
    Json(json!({"responses": ids})).into_response()
}

/// `POST /api/providers/integration/control/approveConnection {"username"}` → `{}` (§7.2 step 6).
async fn approve_connection(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    set_connection(&sim, &headers, &body, true)
}

/// `POST /api/providers/integration/control/clearConnection {"username"}` → `{}`.
async fn clear_connection(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    set_connection(&sim, &headers, &body, false)
}

fn set_connection(sim: &Sim, headers: &HeaderMap, body: &Bytes, connected: bool) -> Response {
    if let Err(e) = authorize(sim, headers) {
        return e;
    }
    let req: protocol::UsernameRequest = match parse(body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if req.username.is_empty() {
        return error(StatusCode::BAD_REQUEST, "Bad request");
    }
    tracing::info!(user = req.username, connected, "connection changed by the provider");
    let mut connections = sim.inner.connections.lock().unwrap();
    if connected {
        connections.insert(req.username);
    } else {
        connections.remove(&req.username);
    }
    Json(Value::Object(Default::default())).into_response()
}
