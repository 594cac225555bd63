//! `files.createUpload` and `files.createDownload` (§6.6, §6.7): Core calls, verified like every other.
//! The path is checked against `resolvedCollection` and resolved beneath the drive root by the kernel;
//! conflicts are settled now (RENAME picks the final name, a FOLDER target is created) so the token
//! names exactly what the browser will write, and a resumed upload writes the same place.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use files::beneath::{FsError, Kind, RelPath, Root};
use files::drives::{Caller, Drives};
use http_api::{ok_json, parse_json, ApiError};
use protocol::{ConflictPolicy, CreateDownloadItem, CreateDownloadResponse, CreateUploadItem, CreateUploadResponse, Drive};
use protocol::{BulkRequest, BulkResponse};
use rand::RngCore;
use transfer::token::{Claims, Kind as TokenKind, DOWNLOAD_LIFETIME_SECS, UPLOAD_LIFETIME_SECS};

use super::now_secs;
use crate::Instance;

fn api(e: FsError) -> ApiError {
    ApiError::new(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), e.why())
}

/// The drive's root (opened), its trusted prefix and the rest beneath it (for the token), and the path
/// beneath the root, for a UCloud path `/<driveId>/rel` in `drive`. `files::drives` refuses drives that
/// are not ours or not the caller's.
fn locate(me: &Instance, user: &str, drive: &Drive, id: &str) -> Result<(Location, Root, RelPath), ApiError> {
    let (drive_id, rest) = protocol::split_ucloud_path(id)
        .ok_or_else(|| ApiError::bad_request(format!("Not a UCloud file path: {id}")))?;
    if drive_id != drive.id {
        return Err(ApiError::bad_request(format!("{id} is not in drive {}", drive.id)));
    }
    let rel = RelPath::parse(rest).map_err(api)?;
    let drives = Drives::new(&me.setup.provider_id, &me.setup.storage);
    let local = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or_else(|| ApiError::internal("drives", "this instance's uid has no passwd entry"))?;
    let caller = Caller { ucloud_user: user, local_user: &local };
    let loc = drives.locate(drive, caller).map_err(api)?;
    let root = drives.open(drive, caller).map_err(api)?;
    let prefix = loc.prefix.to_str().ok_or_else(|| ApiError::internal("drive root", "not UTF-8"))?.to_string();
    Ok((Location { prefix, sub: loc.rest.as_str().to_string() }, root, rel))
}

struct Location {
    prefix: String,
    sub: String,
}

fn nonce() -> String {
    let mut n = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n.iter().map(|b| format!("{b:02x}")).collect()
}

/// `name(1).ext`, `name(2).ext`, … : the first free name next to `rel`.
fn free_name(root: &Root, rel: &RelPath, is_dir: bool) -> Result<RelPath, ApiError> {
    let exists = |r: &RelPath| match root.lstat(r) {
        Ok(_) => Ok(true),
        Err(FsError::NotFound(_)) => Ok(false),
        Err(e) => Err(api(e)),
    };
    if !exists(rel)? {
        return Ok(rel.clone());
    }
    let parent = rel.parent().unwrap_or_default();
    let name = rel.file_name().unwrap_or_default();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && !is_dir => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    for n in 1..10_000 {
        let candidate = parent.join(&format!("{stem}({n}){ext}")).map_err(api)?;
        if !exists(&candidate)? {
            return Ok(candidate);
        }
    }
    Err(ApiError::new(StatusCode::CONFLICT, format!("No free name for {}", root.ucloud_path(rel))))
}

fn username_hint(user: &str) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(user)
}

/// `http(s)://host` → `ws(s)://host` for WebSocket endpoints (the IM answers `wss://`, §6.6).
fn websocket_url(base: &str) -> String {
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    }
}

fn upload_one(me: &Instance, user: &str, item: &CreateUploadItem) -> Result<CreateUploadResponse, ApiError> {
    let key = me.transfer_key().ok_or_else(|| ApiError::internal("transfers", "no transfer key from the server"))?;
    let folder = match item.kind.as_str() {
        "FILE" => false,
        "FOLDER" => true,
        other => return Err(ApiError::bad_request(format!("Unknown upload type {other:?}"))),
    };
    let (loc, root, rel) = locate(me, user, &item.resolved_collection, &item.id)?;
    if rel.is_root() {
        return Err(ApiError::bad_request("Cannot upload onto the drive itself"));
    }
    // The parent must be a folder the user can reach (404/403 from the kernel otherwise).
    let parent = rel.parent().unwrap_or_default();
    if !root.lstat(&parent).map_err(api)?.is_dir() {
        return Err(ApiError::bad_request(format!("Not a folder: {}", root.ucloud_path(&parent))));
    }
    let existing = match root.lstat(&rel) {
        Ok(st) => Some(st.kind),
        Err(FsError::NotFound(_)) => None,
        Err(e) => return Err(api(e)),
    };
    let target = match (item.conflict_policy, existing) {
        (_, None) => rel,
        (ConflictPolicy::Reject, Some(_)) => {
            return Err(ApiError::new(StatusCode::CONFLICT, format!("Already exists: {}", root.ucloud_path(&rel))))
        }
        (ConflictPolicy::Rename, Some(_)) => free_name(&root, &rel, folder)?,
        // REPLACE / MERGE_RENAME: a file is replaced when complete; a folder is merged into.
        (_, Some(kind)) => {
            if folder != (kind == Kind::Dir) {
                return Err(ApiError::new(StatusCode::CONFLICT, format!("Exists as another type: {}", root.ucloud_path(&rel))));
            }
            rel
        }
    };
    // The browser lists what it speaks (the current one sends ["CHUNKED","WEBSOCKET"], §6.6); WEBSOCKET_V2
    // whenever any WebSocket flavour is offered, CHUNKED only for a single file from a browser without.
    let offered = &item.supported_protocols;
    let websocket = offered.is_empty() || offered.iter().any(|p| p.starts_with("WEBSOCKET"));
    let protocol = if websocket {
        "WEBSOCKET_V2"
    } else if !folder && offered.iter().any(|p| p == "CHUNKED") {
        "CHUNKED"
    } else {
        return Err(ApiError::bad_request(format!("No supported upload protocol among {offered:?}")));
    };
    if folder {
        match root.mkdir(&target, 0o777) {
            Ok(()) | Err(FsError::Exists(_)) => {}
            Err(e) => return Err(api(e)),
        }
    }
    let claims = Claims {
        kind: TokenKind::Upload,
        user: user.to_string(),
        drive: item.resolved_collection.id.clone(),
        root: loc.prefix,
        sub: loc.sub,
        path: target.as_str().to_string(),
        upload_type: Some(item.kind.clone()),
        policy: Some(format!("{:?}", item.conflict_policy)),
        protocol: Some(protocol.to_string()),
        expires: now_secs() + UPLOAD_LIFETIME_SECS,
        nonce: nonce(),
    };
    let token = key.sign(&claims);
    let base = &me.setup.transfer_base_url;
    let base = if protocol == "WEBSOCKET_V2" { websocket_url(base) } else { base.clone() };
    let endpoint = format!("{base}/ucloud/{}/upload?token={token}&usernameHint={}", me.setup.provider_id, username_hint(user));
    tracing::info!(user, path = %root.ucloud_path(&target), protocol, "upload created");
    Ok(CreateUploadResponse { endpoint, protocol: protocol.to_string(), token })
}

fn download_one(me: &Instance, user: &str, item: &CreateDownloadItem) -> Result<CreateDownloadResponse, ApiError> {
    let key = me.transfer_key().ok_or_else(|| ApiError::internal("transfers", "no transfer key from the server"))?;
    let (loc, root, rel) = locate(me, user, &item.resolved_collection, &item.id)?;
    let st = root.lstat(&rel).map_err(api)?;
    match st.kind {
        Kind::File => drop(root.open_read(&rel).map_err(api)?),
        Kind::Dir => drop(root.open_dir(&rel).map_err(api)?),
        _ => return Err(ApiError::bad_request(format!("Not a regular file or folder: {}", root.ucloud_path(&rel)))),
    }
    let claims = Claims {
        kind: TokenKind::Download,
        user: user.to_string(),
        drive: item.resolved_collection.id.clone(),
        root: loc.prefix,
        sub: loc.sub,
        path: rel.as_str().to_string(),
        upload_type: None,
        policy: None,
        protocol: None,
        expires: now_secs() + DOWNLOAD_LIFETIME_SECS,
        nonce: nonce(),
    };
    let token = key.sign(&claims);
    let endpoint = format!(
        "{}/ucloud/{}/download?token={token}&usernameHint={}",
        me.setup.transfer_base_url,
        me.setup.provider_id,
        username_hint(user)
    );
    Ok(CreateDownloadResponse { endpoint })
}

pub async fn create_upload(State(me): State<Arc<Instance>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let user = me.authorise(&headers).await?;
    let request: BulkRequest<CreateUploadItem> = parse_json(&body)?;
    let me2 = me.clone();
    let answers = tokio::task::spawn_blocking(move || {
        request.items.iter().map(|item| upload_one(&me2, &user, item)).collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::internal("createUpload", e))??;
    Ok(ok_json(&BulkResponse::new(answers)))
}

pub async fn create_download(State(me): State<Arc<Instance>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let user = me.authorise(&headers).await?;
    let request: BulkRequest<CreateDownloadItem> = parse_json(&body)?;
    let me2 = me.clone();
    let answers = tokio::task::spawn_blocking(move || {
        request.items.iter().map(|item| download_one(&me2, &user, item)).collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::internal("createDownload", e))??;
    Ok(ok_json(&BulkResponse::new(answers)))
}
