//! The browser's upload endpoint: WEBSOCKET_V2 sessions (§6.6) and CHUNKED POSTs.
//!
//! A WebSocket session is three parts: a reader task (frames in; it stops reading while more than
//! `max_buffered_bytes` of chunks wait to be written, which back-pressures the browser through TCP), a
//! blocking worker that owns the [`Session`] and does the file IO, and a writer task that batches the
//! worker's OK/SKIP/FILES_COMPLETED messages into frames and answers `ping` with `pong`.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use files::beneath::{FsError, Kind, RelPath, Root, WriteOptions};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Semaphore};
use transfer::codec::{decode_client, encode_server, ClientFrame, ServerMessage};
use transfer::http::{chunk_action, ChunkAction};
use transfer::session::{Limits, Session};
use transfer::token::Claims;

use super::upload_fs::BeneathFs;
use super::{cors, fs_error};

/// Largest WebSocket message: browsers send chunks of a few MiB.
pub const MAX_MESSAGE: usize = 32 << 20;
/// A session with no frame for this long ends (the IM uses 30 s after completion; this also covers a
/// browser that vanished without closing).
const IDLE: Duration = Duration::from_secs(120);

enum Out {
    Messages(Vec<ServerMessage>),
    Pong,
    /// End the session: a clean close (`None`) or a refusal with its reason.
    Close(Option<String>),
}

/// Runs one upload session on an upgraded socket.
pub async fn run_session(socket: WebSocket, root: Root, claims: Claims, session_id: Vec<u8>, limits: Limits) {
    let single_file = claims.upload_type.as_deref() != Some("FOLDER");
    let target = match RelPath::parse(&claims.path) {
        Ok(t) => t,
        Err(e) => return refuse(socket, e.why()).await,
    };
    let (mut sink, mut stream) = socket.split();
    let (work_tx, mut work_rx) = mpsc::channel::<(Bytes, tokio::sync::OwnedSemaphorePermit)>(4096);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Out>();
    let budget = Arc::new(Semaphore::new(limits.max_buffered_bytes.min(u32::MAX as u64 / 2) as usize));
    let max_permits = limits.max_buffered_bytes.min(u32::MAX as u64 / 2) as u32;

    let worker_out = out_tx.clone();
    let user = claims.user.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let fs = BeneathFs::new(root, target, session_id);
        let mut session = Session::new(fs, limits, single_file);
        let mut clean = false;
        while let Some((frame, permit)) = work_rx.blocking_recv() {
            let decoded = match decode_client(&frame) {
                Ok(d) => d,
                Err(e) => {
                    let _ = worker_out.send(Out::Close(Some(format!("Malformed frame: {e}"))));
                    break;
                }
            };
            if decoded == ClientFrame::Close {
                clean = true;
                let _ = worker_out.send(Out::Close(None));
                break;
            }
            let result = session.handle(decoded);
            drop(permit);
            let messages = session.take_messages();
            if !messages.is_empty() {
                let _ = worker_out.send(Out::Messages(messages));
            }
            if let Err(e) = result {
                tracing::info!(user, "upload refused: {e}");
                let _ = worker_out.send(Out::Close(Some(e.to_string())));
                break;
            }
        }
        let (done, total) = (session.completed(), session.discovered());
        tracing::info!(user, done, total, clean, "upload session ended");
        session.abort();
    });

    let writer = tokio::spawn(async move {
        while let Some(first) = out_rx.recv().await {
            // Batch whatever else is ready into one frame (several messages per frame, §6.6).
            let mut messages = Vec::new();
            let mut end = None;
            let mut pong = false;
            let mut next = Some(first);
            while let Some(out) = next.take() {
                match out {
                    Out::Messages(m) => messages.extend(m),
                    Out::Pong => pong = true,
                    Out::Close(reason) => {
                        end = Some(reason);
                        break;
                    }
                }
                next = out_rx.try_recv().ok();
            }
            if !messages.is_empty() && sink.send(Message::Binary(encode_server(&messages).into())).await.is_err() {
                return;
            }
            if pong && sink.send(Message::Text("pong".into())).await.is_err() {
                return;
            }
            if let Some(reason) = end {
                let frame = match reason {
                    None => CloseFrame { code: 1000, reason: "".into() },
                    Some(why) => CloseFrame { code: 1008, reason: truncate(&why, 120).into() },
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
        }
    });

    // The reader: this task.
    loop {
        let message = match tokio::time::timeout(IDLE, stream.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => break,
        };
        match message {
            Message::Binary(data) => {
                let want = (data.len() as u64).clamp(1, max_permits as u64) as u32;
                let Ok(permit) = budget.clone().acquire_many_owned(want).await else { break };
                if work_tx.send((data, permit)).await.is_err() {
                    break;
                }
            }
            Message::Text(t) if t.as_str() == "ping" => {
                if out_tx.send(Out::Pong).is_err() {
                    break;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
        if writer.is_finished() {
            break;
        }
    }
    drop(work_tx);
    let _ = worker.await;
    drop(out_tx);
    let _ = writer.await;
}

fn truncate(s: &str, max: usize) -> &str {
    let mut i = s.len().min(max);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

async fn refuse(mut socket: WebSocket, why: &str) {
    let frame = CloseFrame { code: 1008, reason: truncate(why, 120).into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// One CHUNKED POST: `Chunked-Upload-Offset` and `-Total-Size` headers, the bytes as the body. Offsets
/// must be contiguous; a repeat of a written range is accepted; at the total size the file is renamed
/// into place.
pub fn chunked(root: &Root, claims: &Claims, session_id: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<Response, (StatusCode, String)> {
    let number = |name: &str| -> Result<u64, (StatusCode, String)> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or((StatusCode::BAD_REQUEST, format!("Missing or malformed {name} header")))
    };
    let offset = number("chunked-upload-offset")?;
    let total = number("chunked-upload-total-size")?;
    if claims.upload_type.as_deref() == Some("FOLDER") {
        return Err((StatusCode::BAD_REQUEST, "CHUNKED uploads are for single files".into()));
    }
    let target = RelPath::parse(&claims.path).map_err(fs_error)?;
    let (dir, name) = root.parent(&target).map_err(fs_error)?;
    let temp = transfer::relpath::temp_name(session_id, target.as_str());
    // openat2 refuses a mode without O_CREAT (EINVAL): mode 0 here.
    let opened = dir.create_file(&temp, WriteOptions { create_new: false, create: false, truncate: false, mode: 0 });
    let file = match opened {
        Ok(f) => f,
        Err(FsError::NotFound(_)) => {
            // No temporary file: either nothing arrived yet, or the upload already completed (a retry).
            if offset > 0 {
                let complete = matches!(root.lstat(&target), Ok(st) if st.kind == Kind::File && st.size == total);
                if complete && offset + body.len() as u64 <= total {
                    return Ok(cors(StatusCode::OK, "{}"));
                }
                return Err((StatusCode::CONFLICT, "Chunk offset past the bytes received (0)".into()));
            }
            dir.create_file(&temp, WriteOptions { create_new: false, create: true, truncate: false, mode: 0o666 })
                .map_err(fs_error)?
        }
        Err(e) => return Err(fs_error(e)),
    };
    let have = file.metadata().map_err(|e| io_status(&e))?.len();
    match chunk_action(have, offset, body.len() as u64, total) {
        ChunkAction::Write => file.write_all_at(body, offset).map_err(|e| io_status(&e))?,
        ChunkAction::AlreadyHave => {}
        ChunkAction::Gap { have } => return Err((StatusCode::CONFLICT, format!("Chunk offset past the bytes received ({have})"))),
        ChunkAction::PastEnd => return Err((StatusCode::BAD_REQUEST, "Chunk runs past Chunked-Upload-Total-Size".into())),
    }
    let now = file.metadata().map_err(|e| io_status(&e))?.len();
    if now == total {
        file.sync_all().map_err(|e| io_status(&e))?;
        drop(file);
        dir.rename(&temp, &dir, &name, true).map_err(fs_error)?;
    }
    Ok(cors(StatusCode::OK, "{}"))
}

fn io_status(e: &io::Error) -> (StatusCode, String) {
    fs_error(FsError::from_io(e, "upload"))
}
