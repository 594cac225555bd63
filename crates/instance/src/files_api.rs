//! The `files.*` calls, served by the user's instance: the kernel checks the user's permissions, the
//! `files` crate keeps every path beneath its drive. Handlers parse, authorise, and run the plain
//! operations on a blocking thread.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, post};
use axum::Router;
use files::beneath::FsError;
use files::drives::{Caller, Drives};
use files::ops::Files;
use files::tree::Progress;
use http_api::{ok_json, parse_json, ApiError};
use protocol::{
    BrowseRequest, BulkRequest, BulkResponse, CreateFolderItem, DeleteItem, Empty, MoveOrCopy, RetrieveRequest,
    TrashItem,
};

use crate::Instance;

/// A long copy/delete answers the Core after this long and carries on in the background: the Core gives
/// up after 5 s (§10.7).
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

pub struct FilesState {
    pub instance: Arc<Instance>,
    pub drives: Drives,
    /// The unix user this instance runs as (`{localUser}` in drive paths).
    pub local_user: String,
}

impl FilesState {
    pub(crate) fn files<'a>(&'a self, ucloud_user: &'a str) -> Files<'a> {
        Files::new(&self.drives, Caller { ucloud_user, local_user: &self.local_user })
    }
}

pub fn fs_error(e: FsError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!("file operation failed: {e}");
    } else if status == StatusCode::FORBIDDEN {
        tracing::warn!("file operation refused: {e}");
    }
    ApiError::new(status, e.why())
}

/// The routes of the `files.*` calls, merged into the instance's router.
pub fn files_routes(instance: Arc<Instance>) -> Router {
    let local_user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let drives = Drives::new(&instance.setup.provider_id, &instance.setup.storage);
    let state = Arc::new(FilesState { instance, drives, local_user });
    let p = |suffix: &str| format!("/ucloud/{{provider}}{suffix}");
    use protocol::provider::*;
    Router::new()
        .route(&p(FILES_BROWSE), post(browse))
        .route(&p(FILES_RETRIEVE), post(retrieve))
        .route(&p(FILES_FOLDER), post(folder))
        .route(&p(FILES_MOVE), post(move_files))
        .route(&p(FILES_COPY), post(copy_files))
        .route(&p(FILES_TRASH), post(trash))
        .route(&p(FILES_EMPTY_TRASH), post(empty_trash))
        .route(&p(FILES), delete(delete_files).get(crate::files_search::search))
        .with_state(state)
}

type St = State<Arc<FilesState>>;

/// Runs a quick operation on a blocking thread.
async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, FsError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| ApiError::internal("file operation crashed", e))?
        .map_err(fs_error)
}

/// Runs a possibly long operation on its own thread. If it is done within [`ANSWER_WITHIN`], its result
/// is the answer; otherwise the answer is `{}` and it carries on, its progress logged, whether or not the
/// client is still there (the thread is not tied to the request).
async fn long_running(
    what: String,
    job: impl FnOnce(&Progress) -> Result<(), FsError> + Send + 'static,
) -> Result<(), ApiError> {
    let progress = Progress::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let p = progress.clone();
    std::thread::Builder::new()
        .name("ucim-files".into())
        .spawn(move || {
            let _ = tx.send(job(&p));
        })
        .map_err(|e| ApiError::internal("cannot start a file task", e))?;
    let mut rx = rx;
    match tokio::time::timeout(ANSWER_WITHIN, &mut rx).await {
        Ok(Ok(result)) => result.map_err(fs_error),
        Ok(Err(_)) => Err(ApiError::internal("file task", "ended without a result")),
        Err(_) => {
            tracing::info!(task = what, "file task continues in the background");
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                tick.tick().await;
                loop {
                    tokio::select! {
                        result = &mut rx => {
                            let (files, bytes) = progress.snapshot();
                            match result {
                                Ok(Ok(())) => tracing::info!(task = what, files, bytes, "background file task done"),
                                Ok(Err(e)) => tracing::warn!(task = what, files, bytes, "background file task failed: {e}"),
                                Err(_) => tracing::error!(task = what, "background file task vanished"),
                            }
                            return;
                        }
                        _ = tick.tick() => {
                            let (files, bytes) = progress.snapshot();
                            tracing::info!(task = what, files, bytes, "background file task in progress");
                        }
                    }
                }
            });
            Ok(())
        }
    }
}

async fn browse(State(s): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let user = s.instance.authorise(&headers).await?;
    let request: BrowseRequest = parse_json(&body)?;
    let page = blocking(move || s.files(&user).browse(&request)).await?;
    Ok(ok_json(&page))
}

async fn retrieve(State(s): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let user = s.instance.authorise(&headers).await?;
    let request: RetrieveRequest = parse_json(&body)?;
    let file = blocking(move || s.files(&user).retrieve(&request)).await?;
    Ok(ok_json(&file))
}

fn empties(n: usize) -> Response {
    ok_json(&BulkResponse::new(vec![Empty {}; n]))
}

async fn folder(State(s): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let user = s.instance.authorise(&headers).await?;
    let request: BulkRequest<CreateFolderItem> = parse_json(&body)?;
    let n = request.items.len();
    blocking(move || request.items.iter().try_for_each(|i| s.files(&user).create_folder(i))).await?;
    Ok(empties(n))
}

async fn move_or_copy(s: Arc<FilesState>, headers: HeaderMap, body: Bytes, copy: bool) -> Result<Response, ApiError> {
    let user = s.instance.authorise(&headers).await?;
    let request: BulkRequest<MoveOrCopy> = parse_json(&body)?;
    let n = request.items.len();
    let what = format!("{} of {} item(s) for {user}", if copy { "copy" } else { "move" }, n);
    long_running(what, move |p| request.items.iter().try_for_each(|i| s.files(&user).move_or_copy(i, copy, p))).await?;
    Ok(empties(n))
}

async fn move_files(State(s): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    move_or_copy(s, headers, body, false).await
}

async fn copy_files(State(s): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    move_or_copy(s, headers, body, true).await
}

async fn trash(State(s): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let user = s.instance.authorise(&headers).await?;
    let request: BulkRequest<TrashItem> = parse_json(&body)?;
    let n = request.items.len();
    let what = format!("trash of {n} item(s) for {user}");
    long_running(what, move |p| request.items.iter().try_for_each(|i| s.files(&user).trash(i, p))).await?;
    Ok(empties(n))
}

async fn empty_trash(State(s): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let user = s.instance.authorise(&headers).await?;
    let request: BulkRequest<TrashItem> = parse_json(&body)?;
    let n = request.items.len();
    let what = format!("emptying the trash for {user}");
    long_running(what, move |p| request.items.iter().try_for_each(|i| s.files(&user).empty_trash(i, p))).await?;
    Ok(empties(n))
}

async fn delete_files(State(s): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let user = s.instance.authorise(&headers).await?;
    let request: BulkRequest<DeleteItem> = parse_json(&body)?;
    let n = request.items.len();
    let what = format!("delete of {n} item(s) for {user}");
    long_running(what, move |p| request.items.iter().try_for_each(|i| s.files(&user).delete(i, p))).await?;
    Ok(empties(n))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn long_tasks_answer_early_and_carry_on() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let started = std::time::Instant::now();
        let answer = long_running("test".into(), move |_| {
            std::thread::sleep(Duration::from_millis(4500));
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        answer.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(4), "answered after {:?}", started.elapsed());
        assert!(!done.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(done.load(Ordering::SeqCst), "the task went on after the answer");
        // A quick failure is the answer.
        let e = long_running("x".into(), |_| Err(FsError::Forbidden("Permission denied: /1/x".into()))).await.unwrap_err();
        assert_eq!((e.status.as_u16(), e.why.as_str()), (403, "Permission denied: /1/x"));
    }
}
