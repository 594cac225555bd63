//! `/sim/...`: a loopback control API for the CLI and the demo. It stands in for the UCloud web UI and is
//! never part of what the provider sees; the sim turns each request into the Core's real calls.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::{ProductReference, SimpleDuration};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::core_api::{error, parse};
use crate::{CallError, CallResult, Sim};

pub(crate) fn router() -> Router<Sim> {
    Router::new()
        .route("/sim/jobs", post(create_job))
        .route("/sim/jobs/{id}", get(job))
        .route("/sim/jobs/{id}/terminate", post(terminate))
        .route("/sim/products", get(products))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductArg {
    id: String,
    category: String,
    #[serde(default)]
    provider: Option<String>,
}

/// Body of `POST /sim/jobs`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateJob {
    username: String,
    product: ProductArg,
    application: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    time_allocation: Option<SimpleDuration>,
}

fn call_answer(result: Result<CallResult, CallError>, extra: Map<String, Value>) -> Response {
    match result {
        Ok(r) => {
            let mut out = extra;
            out.insert("status".into(), json!(r.status));
            out.insert("body".into(), r.body);
            out.insert("attempts".into(), json!(r.attempts));
            Json(Value::Object(out)).into_response()
        }
        Err(CallError::UnknownJob(id)) => error(StatusCode::NOT_FOUND, format!("Not found ({id})")),
        Err(CallError::Core { status, why }) => error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            why,
        ),
        Err(e) => {
            // What the Core shows the user, plus whatever the caller should still learn (the job id).
            let mut out = extra;
            out.insert("statusCode".into(), json!(502));
            out.insert("why".into(), json!(e.to_string()));
            (StatusCode::BAD_GATEWAY, Json(Value::Object(out))).into_response()
        }
    }
}

/// `POST /sim/jobs` → `{"jobId","status","body","attempts"}` (the provider's answer to `jobs.create`).
async fn create_job(State(sim): State<Sim>, body: Bytes) -> Response {
    let req: CreateJob = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let product = ProductReference {
        id: req.product.id,
        category: req.product.category,
        provider: req
            .product
            .provider
            .unwrap_or_else(|| sim.inner.cfg.provider_id.clone()),
    };
    let job = sim.new_job(
        &req.username,
        product,
        &req.application,
        req.parameters.unwrap_or_default(),
        req.time_allocation,
    );
    let id = job["id"].clone();
    let result = sim.create_job(&job).await;
    let mut extra = Map::new();
    extra.insert("jobId".into(), id);
    call_answer(result, extra)
}

/// `POST /sim/jobs/{id}/terminate` → `{"status","body","attempts"}`.
async fn terminate(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    call_answer(sim.terminate_job(&id).await, Map::new())
}

/// `GET /sim/jobs/{id}` → `{"state","updates":[...],"job":{...}}`.
async fn job(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let Some(state) = sim.job_state(&id) else {
        return error(StatusCode::NOT_FOUND, format!("Not found ({id})"));
    };
    Json(json!({
        "state": state,
        "updates": sim.job_updates(&id),
        "job": sim.job(&id),
    }))
    .into_response()
}

/// `GET /sim/products` → the registered products.
async fn products(State(sim): State<Sim>) -> Response {
    Json(json!(sim.products())).into_response()
}
