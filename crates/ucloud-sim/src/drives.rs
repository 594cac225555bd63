//! Drives as the Core keeps them (§6.3): `files.collections.control.register` and `.retrieve` for the
//! provider, and helpers that make file calls as a user with the resolved Drive, as the Core does.

// Handlers return a ready `Response` as their error: boxing it would only add noise.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::{
    core as core_paths, BulkRequest, BulkResponse, Drive, DriveSpecification, FindByStringId, ProductReference,
    RegisterDrive, ResourceOwner, ResourcePermissions,
};
use reqwest::Method;
use serde_json::{json, Value};

use crate::core_api::{authorize, error, parse};
use crate::{jobs, CallError, CallResult, Sim};

#[derive(Default)]
pub(crate) struct DriveTable {
    next: u64,
    drives: Vec<Drive>,
}

pub(crate) fn router() -> Router<Sim> {
    Router::new()
        .route(core_paths::DRIVES_REGISTER, post(register))
        .route(core_paths::DRIVES_RETRIEVE, get(retrieve))
}

/// `POST /api/files/collections/control/register`: the product must be the caller's (403); a reused
/// `providerGeneratedId` is 409 and registers nothing.
async fn register(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = authorize(&sim, &headers) {
        return e;
    }
    let req: BulkRequest<RegisterDrive> = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if req.items.iter().any(|i| i.spec.product.provider != sim.inner.cfg.provider_id) {
        return error(StatusCode::FORBIDDEN, "Forbidden");
    }
    let mut table = sim.inner.drives.lock().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for item in &req.items {
        if let Some(pgid) = &item.provider_generated_id {
            let reused = table.drives.iter().any(|d| d.provider_generated_id.as_ref() == Some(pgid));
            if reused || !seen.insert(pgid.clone()) {
                tracing::info!(pgid, "drive register: already exists (409)");
                return error(StatusCode::CONFLICT, "already exists");
            }
        }
    }
    let ids = req.items.into_iter().map(|item| table.insert(item)).collect::<Vec<_>>();
    tracing::info!(?ids, "drives registered");
    Json(BulkResponse::new(ids.into_iter().map(|id| FindByStringId { id }).collect())).into_response()
}

#[derive(serde::Deserialize)]
struct IdQuery {
    id: String,
}

/// `GET /api/files/collections/control/retrieve?id=…`.
async fn retrieve(State(sim): State<Sim>, headers: HeaderMap, Query(q): Query<IdQuery>) -> Response {
    if let Err(e) = authorize(&sim, &headers) {
        return e;
    }
    match sim.drive(&q.id) {
        Some(d) => Json(d).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not found"),
    }
}

impl DriveTable {
    fn insert(&mut self, item: RegisterDrive) -> String {
        self.next += 1;
        let id = (self.next + 100).to_string();
        self.drives.push(Drive {
            id: id.clone(),
            created_at: jobs::now_ms(),
            owner: ResourceOwner {
                created_by: item.created_by.unwrap_or_else(|| "_ucloud".into()),
                project: item.project,
            },
            permissions: None,
            specification: item.spec,
            updates: Vec::new(),
            status: json!({"preferredDrive": false, "resolvedSupport": null, "resolvedProduct": null}),
            provider_generated_id: item.provider_generated_id,
        });
        id
    }
}

impl Sim {
    /// Every drive the Core knows.
    pub fn drives(&self) -> Vec<Drive> {
        self.inner.drives.lock().unwrap().drives.clone()
    }

    pub fn drive(&self, id: &str) -> Option<Drive> {
        self.inner.drives.lock().unwrap().drives.iter().find(|d| d.id == id).cloned()
    }

    pub fn drive_by_pgid(&self, pgid: &str) -> Option<Drive> {
        self.inner.drives.lock().unwrap().drives.iter().find(|d| d.provider_generated_id.as_deref() == Some(pgid)).cloned()
    }

    /// Waits until the provider registered the drive `pgid`.
    pub async fn wait_for_drive(&self, pgid: &str, timeout: std::time::Duration) -> Option<Drive> {
        let end = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(d) = self.drive_by_pgid(pgid) {
                return Some(d);
            }
            if tokio::time::Instant::now() > end {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A drive the Core made itself (e.g. a project's), as tests need: returns it.
    pub fn add_drive(&self, product: ProductReference, pgid: &str, created_by: &str, project: Option<&str>) -> Drive {
        let item = RegisterDrive {
            spec: DriveSpecification { title: pgid.into(), product, labels: None },
            provider_generated_id: Some(pgid.into()),
            created_by: Some(created_by.into()),
            project: project.map(str::to_string),
            project_all_read: true,
            project_all_write: true,
        };
        let id = self.inner.drives.lock().unwrap().insert(item);
        self.drive(&id).expect("just inserted")
    }

    /// The drive as the Core resolves it for `viewer`: `permissions.myself` is what the Core grants them
    /// (owner or project member: ADMIN/READ/EDIT; anyone else: nothing).
    pub fn resolved_drive(&self, id: &str, viewer: &str) -> Option<Drive> {
        let mut d = self.drive(id)?;
        let mine = d.owner.created_by == viewer || d.owner.project.is_some();
        let myself = if mine { vec!["ADMIN".into(), "READ".into(), "EDIT".into()] } else { vec![] };
        d.permissions = Some(ResourcePermissions { myself, others: vec![] });
        Some(d)
    }

    /// A user-scoped file call (`/ucloud/{P}{suffix}`), as the Core makes it.
    pub async fn files_call(&self, user: &str, method: Method, suffix: &str, body: Value) -> Result<CallResult, CallError> {
        self.call(method, suffix, Some(user), Some(body)).await
    }

    /// `files.browse` of `path` on `drive`, with the Core's `Browse` key and nulls (§10.12); `extra` is
    /// merged into `Browse` (e.g. `itemsPerPage`, `next`, `sortBy`).
    pub async fn browse_files(&self, user: &str, drive: &Drive, path: &str, extra: Value) -> Result<CallResult, CallError> {
        let body = browse_body(drive, path, extra);
        self.files_call(user, Method::POST, protocol::provider::FILES_BROWSE, body).await
    }
}

/// The body of the Core's `files.browse` for `path` in `drive`; `extra` adds or replaces fields of `Browse`.
pub fn browse_body(drive: &Drive, path: &str, extra: Value) -> Value {
    let mut browse = json!({
        "flags": {"path": path, "includeOthers": false, "filterLabels": {}, "sortBy": null,
                  "sortDirection": null, "filterHiddenFiles": true, "includeTimestamps": true},
        "next": null, "sortBy": null, "sortDirection": null
    });
    if let (Some(b), Some(e)) = (browse.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    json!({"resolvedCollection": drive, "Browse": browse})
}
