//! Streaming search (§3.2, §6.8): the Core opens `GET /ucloud/{P}/files` with Upgrade, authenticated by
//! its bearer token, the user named by `usernameHint` (base64, std or url-safe, padded or not) or the
//! `ucloud-username` header. The first frame carries the request; results go back in batches as they are
//! found, and the walk stops as soon as the Core hangs up.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http_api::{check_core_call, ApiError};
use protocol::{StreamingSearchMessage, StreamingSearchRequest};
use serde_json::{json, Value};

use crate::files_api::FilesState;

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hint {
    #[serde(default)]
    username_hint: Option<String>,
}

/// Decodes a `usernameHint`: base64 in either alphabet, padding optional.
pub fn decode_hint(hint: &str) -> Option<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD, STANDARD_NO_PAD};
    let hint = hint.trim();
    let bytes = [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(hint).ok())?;
    protocol::decode_username_header(&STANDARD.encode(bytes))
}

pub async fn search(
    State(s): State<Arc<FilesState>>,
    headers: HeaderMap,
    Query(hint): Query<Hint>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let call = check_core_call(&headers, &s.instance.verifier)?;
    let Ok(upgrade) = upgrade else {
        return Err(ApiError::bad_request("Streaming search needs a WebSocket upgrade"));
    };
    let user = match (call.username, hint.username_hint.as_deref()) {
        (Some(u), _) => u,
        (None, Some(h)) => decode_hint(h).ok_or_else(|| ApiError::bad_request("Malformed usernameHint"))?,
        (None, None) => return Err(ApiError::bad_request("No user named (usernameHint)")),
    };
    let user = s.instance.check_served(user).await?;
    Ok(upgrade.on_upgrade(move |socket| run(s, user, socket)).into_response())
}

fn frame(stream_id: &str, payload: Value) -> Message {
    Message::Text(json!({"type": "message", "streamId": stream_id, "payload": payload}).to_string().into())
}

async fn run(s: Arc<FilesState>, user: String, mut socket: WebSocket) {
    let first = loop {
        match socket.recv().await {
            Some(Ok(Message::Text(t))) => break t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return,
        }
    };
    let envelope: Value = serde_json::from_str(first.as_str()).unwrap_or(Value::Null);
    let stream_id = envelope.get("streamId").and_then(Value::as_str).unwrap_or("ignored").to_string();
    let request: StreamingSearchRequest = match serde_json::from_value(envelope.get("payload").cloned().unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => {
            let why = json!({"why": format!("Malformed search request: {e}")});
            let _ = socket
                .send(Message::Text(json!({"type": "response", "streamId": stream_id, "status": 400, "payload": why}).to_string().into()))
                .await;
            return;
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let state = s.clone();
    let who = user.clone();
    let walk = tokio::task::spawn_blocking(move || {
        state.files(&who).search(&request, |batch| tx.blocking_send(batch).is_ok())
    });
    let mut sent = 0usize;
    while let Some(batch) = rx.recv().await {
        sent += batch.len();
        let message = serde_json::to_value(StreamingSearchMessage::Result { batch }).unwrap_or_default();
        if socket.send(frame(&stream_id, message)).await.is_err() {
            tracing::info!(user, sent, "search client went away; search stops");
            return; // dropping rx makes the walk stop at its next batch
        }
    }
    let (status, payload) = match walk.await {
        Ok(Ok(())) => (200, json!({})),
        Ok(Err(e)) => (e.status(), json!({"why": e.why()})),
        Err(e) => (500, json!({"why": format!("search failed: {e}")})),
    };
    let end = serde_json::to_value(StreamingSearchMessage::EndOfResults {}).unwrap_or_default();
    let _ = socket.send(frame(&stream_id, end)).await;
    let done = json!({"type": "response", "streamId": stream_id, "status": status, "payload": payload});
    let _ = socket.send(Message::Text(done.to_string().into())).await;
    let _ = socket.send(Message::Close(None)).await;
    tracing::info!(user, sent, status, "search done");
}

#[cfg(test)]
mod tests {
    #[test]
    fn hints_in_every_alphabet() {
        // "alice#1234?>" has bytes whose base64 differs between alphabets.
        let name = "a>?#1";
        let std = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, name);
        let url = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, name);
        assert_eq!(super::decode_hint(&std).as_deref(), Some(name));
        assert_eq!(super::decode_hint(&url).as_deref(), Some(name));
        assert_eq!(super::decode_hint("!!"), None);
    }
}
