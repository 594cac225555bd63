//! Connections: how a UCloud user becomes a local user, by the configured `users.mode`.
//!
//! - `ticket`: `integration/connect` stores a one-time ticket (160 random bits, stored only as its SHA-256,
//!   expiring, single use) and sends the browser to an instructions page served here. The user runs
//!   `ucim connect TICKET` on the cluster as themselves; the server takes the account from the socket's
//!   peer uid, never from the message.
//! - `hook`: `integration/connect` runs the site's account hook and maps its answer.
//! - `many-to-one`: `integration/connect` maps the user to the shared account.
//!
//! A mapping counts only once the Core has accepted it (`approveConnection`): if that call fails the mapping
//! (and ticket) are put back as they were, so nothing is half made.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use config::UserMode;
use http_api::ApiError;
use protocol::{ConnectResponse, Manifest};
use rand::RngCore;
use sha2::{Digest, Sha256};
use store::{Redemption, UserMapping};

use crate::audit::Event;
use crate::hook::{self, HookInput};
use crate::users::{suggested_unix_name, valid_ucloud_username, Refusal};
use crate::Server;

/// The instructions page, relative to `/ucloud/{provider}`. Browser-facing: no Core token.
pub const INSTRUCTIONS_PATH: &str = "/connection-instructions";
const TICKET_BYTES: usize = 20;

pub fn manifest(config: &config::Config) -> Manifest {
    Manifest { enabled: config.users.mode.needs_connection(), expire_after_ms: config.users.connection_expiry_ms() }
}

fn mapping_expiry(server: &Server) -> Option<i64> {
    server.config.users.connection_expiry_ms().map(|ms| store::now_ms() + ms)
}

/// `integration/connect`.
pub async fn connect(server: &Arc<Server>, ucloud_user: &str) -> Result<ConnectResponse, ApiError> {
    if !valid_ucloud_username(ucloud_user) {
        return Err(ApiError::bad_request("Malformed username"));
    }
    let users = &server.config.users;
    let outcome = match users.mode {
        UserMode::Admin => {
            return Err(ApiError::bad_request("This provider connects users by hand: ask its operators to map your account"))
        }
        UserMode::Ticket => return issue_ticket(server, ucloud_user),
        UserMode::Hook => return connect_with_hook_in_time(server, ucloud_user).await,
        UserMode::ManyToOne => {
            let shared = users.shared_user.clone().unwrap_or_default();
            match server.users.mappable_uid(&shared) {
                Ok(uid) => map_and_approve(server, ucloud_user, &shared, uid, "many-to-one").await,
                Err(refusal) => {
                    tracing::error!("many-to-one: the shared account cannot be used: {refusal}");
                    Err(ApiError::internal("the shared account is not usable", refusal))
                }
            }
        }
    };
    audit_outcome(server, ucloud_user, &outcome);
    outcome.map(|_| ConnectResponse { redirect_to: return_url(server) })
}

fn return_url(server: &Server) -> String {
    server.config.users.return_url.clone().unwrap_or_else(|| server.config.core.url.clone())
}

fn audit_outcome(server: &Server, ucloud_user: &str, outcome: &Result<String, ApiError>) {
    let action = format!("connect ({})", mode_name(server.config.users.mode));
    let (unix_user, result) = match outcome {
        Ok(unix_user) => (Some(unix_user.as_str()), "ok"),
        Err(e) => (None, e.why.as_str()),
    };
    server.audit.record(&Event { ucloud_user, unix_user, action: &action, ids: &[], outcome: result });
}

/// The Core gives up on a call after 5 s; an account hook may take longer (useradd, sacctmgr, a directory
/// service). The hook runs in its own task, so the Core hanging up never cuts it short; if it has not
/// finished by [`HOOK_ANSWER_WITHIN`], the browser is sent to a page saying the account is on its way, and
/// the connection is approved when the hook is done. A second `connect` meanwhile does not run it again.
pub const HOOK_ANSWER_WITHIN: Duration = Duration::from_secs(3);

async fn connect_with_hook_in_time(server: &Arc<Server>, ucloud_user: &str) -> Result<ConnectResponse, ApiError> {
    let pending = || ConnectResponse { redirect_to: pending_url(server) };
    if !server.connecting.lock().unwrap_or_else(|p| p.into_inner()).insert(ucloud_user.to_string()) {
        return Ok(pending());
    }
    let task = {
        let (server, ucloud_user) = (server.clone(), ucloud_user.to_string());
        tokio::spawn(async move {
            let outcome = connect_with_hook(&server, &ucloud_user).await;
            audit_outcome(&server, &ucloud_user, &outcome);
            server.connecting.lock().unwrap_or_else(|p| p.into_inner()).remove(&ucloud_user);
            outcome
        })
    };
    match tokio::time::timeout(HOOK_ANSWER_WITHIN, task).await {
        Ok(Ok(outcome)) => outcome.map(|_| ConnectResponse { redirect_to: return_url(server) }),
        Ok(Err(panicked)) => {
            server.connecting.lock().unwrap_or_else(|p| p.into_inner()).remove(ucloud_user);
            Err(ApiError::internal("account creation failed", panicked))
        }
        Err(_) => {
            tracing::info!(ucloud_user, "the account hook is still running; the connection is approved when it is done");
            Ok(pending())
        }
    }
}

fn pending_url(server: &Server) -> String {
    let base = server.config.server.public_url.as_deref().unwrap_or_default();
    format!("{base}/ucloud/{}{INSTRUCTIONS_PATH}?pending", server.config.provider_id)
}

fn mode_name(mode: UserMode) -> &'static str {
    match mode {
        UserMode::Admin => "admin",
        UserMode::Ticket => "ticket",
        UserMode::Hook => "hook",
        UserMode::ManyToOne => "many-to-one",
    }
}

fn issue_ticket(server: &Server, ucloud_user: &str) -> Result<ConnectResponse, ApiError> {
    let mut bytes = [0u8; TICKET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let expires_at = store::now_ms() + (server.config.users.ticket_ttl_secs as i64) * 1000;
    server
        .store
        .create_ticket(&ticket_hash(&ticket), ucloud_user, expires_at)
        .map_err(|e| ApiError::internal("could not store the ticket", e))?;
    tracing::info!(ucloud_user, "connect ticket issued");
    server.audit.record(&Event { ucloud_user, unix_user: None, action: "connect (ticket issued)", ids: &[], outcome: "ok" });
    let base = server.config.server.public_url.as_deref().unwrap_or_default();
    Ok(ConnectResponse { redirect_to: format!("{base}/ucloud/{}{INSTRUCTIONS_PATH}?ticket={ticket}", server.config.provider_id) })
}

pub fn ticket_hash(ticket: &str) -> String {
    Sha256::digest(ticket.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn valid_ticket(ticket: &str) -> bool {
    ticket.len() == TICKET_BYTES * 2 && ticket.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn connect_with_hook(server: &Arc<Server>, ucloud_user: &str) -> Result<String, ApiError> {
    let users = &server.config.users;
    let input = HookInput {
        ucloud_username: ucloud_user.to_string(),
        suggested_username: suggested_unix_name(ucloud_user),
        group: users.group.clone(),
        first_names: None,
        last_name: None,
        email: None,
        organization: None,
        project: None,
    };
    let timeout = Duration::from_secs(users.hook_timeout_secs);
    let refuse = |detail: String| {
        tracing::error!(ucloud_user, "account creation failed: {detail}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("Your account could not be made: {detail}"))
    };
    let answer = hook::run(&users.create_hook, &input, timeout).await.map_err(|e| refuse(e.to_string()))?;
    if !config::valid_unix_name(&answer.username) {
        return Err(refuse(format!("the account hook answered an invalid user name '{}'", answer.username)));
    }
    let uid = server.users.mappable_uid(&answer.username).map_err(|r| refuse(format!("the account hook's answer: {}", refusal_text(&answer.username, &r))))?;
    if answer.uid.is_some_and(|u| u != uid) {
        return Err(refuse(format!("the account hook said uid {} but '{}' has uid {uid}", answer.uid.unwrap_or_default(), answer.username)));
    }
    let taken = server.store.users_by_uid(uid).map_err(|e| ApiError::internal("user lookup", e))?;
    if let Some(other) = taken.iter().find(|m| m.ucloud_user != ucloud_user) {
        return Err(refuse(format!("the account '{}' already stands for the UCloud user {}", answer.username, other.ucloud_user)));
    }
    map_and_approve(server, ucloud_user, &answer.username, uid, "hook").await
}

fn refusal_text(unix_user: &str, refusal: &Refusal) -> String {
    match refusal {
        Refusal::NoSuchAccount(_) => format!("the account '{unix_user}' does not exist"),
        other => other.to_string(),
    }
}

/// Maps, then tells the Core; if the Core cannot be told, the mapping is put back as it was.
async fn map_and_approve(
    server: &Arc<Server>,
    ucloud_user: &str,
    unix_user: &str,
    uid: u32,
    source: &str,
) -> Result<String, ApiError> {
    let previous = server.store.user(ucloud_user).map_err(|e| ApiError::internal("user lookup", e))?;
    server
        .store
        .map_user_from(ucloud_user, unix_user, uid, source, mapping_expiry(server))
        .map_err(|e| ApiError::internal("could not store the mapping", e))?;
    if let Err(e) = server.core.approve_connection(ucloud_user).await {
        restore(server, ucloud_user, previous.as_ref());
        tracing::warn!(ucloud_user, "approveConnection failed: {e}");
        return Err(ApiError::new(StatusCode::BAD_GATEWAY, format!("UCloud could not be told about the connection: {e}")));
    }
    tracing::info!(ucloud_user, unix_user, uid, source, "connected");
    crate::storage::register_soon(server.clone(), ucloud_user.to_string());
    Ok(unix_user.to_string())
}

fn restore(server: &Server, ucloud_user: &str, previous: Option<&UserMapping>) {
    if let Err(e) = server.store.restore_mapping(ucloud_user, previous) {
        tracing::error!(ucloud_user, "could not undo a mapping the Core refused: {e}");
    }
}

/// `ucim connect TICKET`, from the peer uid. Answers the UCloud user now mapped, or why not.
pub async fn redeem(server: &Arc<Server>, peer_uid: u32, ticket: &str) -> Result<String, String> {
    if server.config.users.mode != UserMode::Ticket {
        return Err("This provider does not use connect tickets".into());
    }
    let ticket = ticket.trim().to_ascii_lowercase();
    if !valid_ticket(&ticket) {
        return Err("That is not a connect ticket: it is 40 characters of 0-9 and a-f, shown on the page UCloud sent you to".into());
    }
    let account = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer_uid))
        .ok()
        .flatten()
        .ok_or_else(|| format!("uid {peer_uid} has no account name"))?;
    let uid = server.users.mappable_uid(&account.name).map_err(|r| match r {
        Refusal::UidTooLow { .. } => format!("'{}' is a system account (uid {peer_uid}) and cannot be connected", account.name),
        Refusal::NotInGroup { group, .. } => {
            format!("'{}' is not in the group '{group}' whose members may use UCloud here: ask the operators", account.name)
        }
        other => format!("'{}' cannot be connected: {}", account.name, refusal_text(&account.name, &other)),
    })?;
    let hash = ticket_hash(&ticket);
    let audit = |ucloud_user: &str, outcome: &str| {
        server.audit.record(&Event { ucloud_user, unix_user: Some(&account.name), action: "redeem ticket", ids: &[], outcome });
    };
    let outcome = server
        .store
        .redeem_ticket(&hash, &account.name, uid, true, mapping_expiry(server))
        .map_err(|e| {
            tracing::error!("redeem: database error: {e}");
            "internal error in the ucim server".to_string()
        })?;
    let refused = |why: String| {
        tracing::warn!(unix_user = account.name, uid, "ticket refused: {why}");
        audit("", &why);
        Err(why)
    };
    let (ucloud_user, previous) = match outcome {
        Redemption::Mapped { ucloud_user, previous } => (ucloud_user, previous),
        Redemption::Unknown => return refused("Unknown ticket: copy it again from the page UCloud showed, or connect again in UCloud".into()),
        Redemption::AlreadyUsed => return refused("This ticket has already been used".into()),
        Redemption::Expired => return refused("This ticket has expired: connect again in UCloud to get a new one".into()),
        Redemption::AccountTaken { by } => {
            return refused(format!(
                "Your account '{}' is already connected to the UCloud user {by}; here one account stands for one UCloud user",
                account.name
            ))
        }
    };
    if let Err(e) = server.core.approve_connection(&ucloud_user).await {
        if let Err(db) = server.store.revert_redemption(&hash, &ucloud_user, previous.as_ref()) {
            tracing::error!(ucloud_user, "could not undo a redemption the Core refused: {db}");
        }
        tracing::warn!(ucloud_user, "approveConnection failed: {e}");
        audit(&ucloud_user, "core unreachable; undone");
        return Err(format!("UCloud could not be told ({e}); nothing changed, so try the same ticket again in a moment"));
    }
    tracing::info!(ucloud_user, unix_user = account.name, uid, "connected with a ticket");
    audit(&ucloud_user, "ok");
    crate::storage::register_soon(server.clone(), ucloud_user.clone());
    Ok(ucloud_user)
}

/// `integration/unlinked`: the user removed the connection in UCloud.
pub async fn unlinked(server: &Arc<Server>, ucloud_user: &str) -> Result<(), ApiError> {
    let mapping = forget(server, ucloud_user).await.map_err(|e| ApiError::internal("could not remove the mapping", e))?;
    server.audit.record(&Event {
        ucloud_user,
        unix_user: mapping.as_ref().map(|m| m.unix_user.as_str()),
        action: "unlinked",
        ids: &[],
        outcome: "ok",
    });
    if let Some(m) = mapping {
        tracing::info!(ucloud_user, unix_user = m.unix_user, "unlinked in UCloud");
    }
    Ok(())
}

/// Removes `ucloud_user`'s mapping and stops the instance nobody then maps to. Answers what was removed.
pub async fn forget(server: &Server, ucloud_user: &str) -> store::Result<Option<UserMapping>> {
    let mapping = server.store.user(ucloud_user)?;
    server.store.unmap_user(ucloud_user)?;
    if let Some(m) = &mapping {
        stop_if_unused(server, m.uid).await;
    }
    Ok(mapping)
}

/// `ucim admin disconnect`: tells the Core first (`clearConnection`), then forgets the mapping.
pub async fn disconnect(server: &Arc<Server>, ucloud_user: &str) -> Result<(), String> {
    let mapping = server.store.user(ucloud_user).map_err(|e| e.to_string())?.ok_or_else(|| format!("{ucloud_user} is not connected"))?;
    server
        .core
        .clear_connection(ucloud_user)
        .await
        .map_err(|e| format!("UCloud could not be told ({e}); the connection is unchanged"))?;
    forget(server, ucloud_user).await.map_err(|e| e.to_string())?;
    server.audit.record(&Event { ucloud_user, unix_user: Some(&mapping.unix_user), action: "disconnect", ids: &[], outcome: "ok" });
    tracing::info!(ucloud_user, unix_user = mapping.unix_user, "disconnected by an operator");
    Ok(())
}

/// An instance whose uid no UCloud user maps to any more has nothing to serve.
async fn stop_if_unused(server: &Server, uid: u32) {
    if server.users.ucloud_users_of(uid).is_empty() {
        server.instances.stop(uid, "no UCloud user maps to it any more").await;
    }
}

/// The page `connect` sends the browser to: a ticket's instructions, or (`pending`) word that the account
/// is still being made.
pub fn instructions_page(server: &Server, ticket: Option<&str>, pending: bool) -> Response {
    let provider = html_escape(&server.config.provider_id);
    let ticket = ticket.filter(|t| valid_ticket(t));
    let row = ticket.and_then(|t| server.store.ticket(&ticket_hash(t)).ok().flatten());
    let now = store::now_ms();
    let (status, body) = match (ticket, row) {
        (None, _) if pending => (StatusCode::OK, format!(
            "<h1>Your account on {provider} is being made</h1>\
             <p>This takes a little while. Go back to UCloud: the connection shows there as soon as the account \
             is ready, usually within a minute. If it does not, connect again; if it still does not, ask the \
             operators of {provider}.</p>"
        )),
        (Some(ticket), Some(row)) if row.redeemed_at.is_none() && row.expires_at > now => {
            let minutes = (row.expires_at - now) / 60_000;
            (StatusCode::OK, format!(
                "<h1>Connect your UCloud account to {provider}</h1>\
                 <p>Log in to the cluster with your own account and run:</p>\
                 <pre>ucim connect {ticket}</pre>\
                 <p>The ticket works once, for the next {minutes} minutes. It connects the UCloud user \
                 <b>{}</b> to whichever account runs the command, so keep it to yourself.</p>\
                 <p>When the command says you are connected, go back to UCloud.</p>",
                html_escape(&row.ucloud_user)
            ))
        }
        (Some(_), Some(row)) if row.redeemed_at.is_some() => (StatusCode::OK, format!(
            "<h1>Connected</h1><p>This ticket has been used: <b>{}</b> is connected to {provider}. You can go back to UCloud.</p>",
            html_escape(&row.ucloud_user)
        )),
        (Some(_), Some(_)) => (StatusCode::GONE, "<h1>This ticket has expired</h1><p>Connect again in UCloud to get a new one.</p>".to_string()),
        _ => (StatusCode::NOT_FOUND, "<h1>Unknown ticket</h1><p>Connect again in UCloud to get a new one.</p>".to_string()),
    };
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Connect to {provider}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}pre{{background:#eee;padding:1em;overflow-x:auto}}</style>\
         </head><body>{body}</body></html>"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    response
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_and_escaping() {
        assert!(valid_ticket(&"a1".repeat(20)));
        assert!(!valid_ticket(&"A1".repeat(20)), "callers lowercase first");
        assert!(!valid_ticket(&"a1".repeat(19)));
        assert!(!valid_ticket(&format!("{}; rm", "a".repeat(36))));
        assert_eq!(ticket_hash("abc").len(), 64);
        assert_ne!(ticket_hash("abc"), ticket_hash("abd"));
        assert_eq!(html_escape("<b>\"x\" & 'y'</b>"), "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;");
    }
}
