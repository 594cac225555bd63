//! Provider → Core calls. Access tokens come from the refresh token and are reused until fewer than three
//! minutes remain, as UCloud's own client does; a 401/403 refreshes once and retries.

use std::time::Duration;

use protocol::{
    AccessTokenResponse, BulkRequest, BulkResponse, ErrorBody, JobUpdateItem, ProductV2, RefreshRequest,
};
use serde::Serialize;
use tokio::sync::Mutex;

/// Refresh when fewer than this many seconds of the token remain.
const REFRESH_MARGIN_SECS: i64 = 180;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot reach UCloud/Core: {0}")]
    Transport(String),
    #[error("UCloud/Core answered {status}: {why}")]
    Status { status: u16, why: String },
    #[error("UCloud/Core refused the refresh token: {0}")]
    Refresh(String),
}

impl CoreError {
    pub fn status(&self) -> Option<u16> {
        match self {
            CoreError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub struct CoreClient {
    http: reqwest::Client,
    base: String,
    refresh_token: String,
    token: Mutex<Option<(String, i64)>>,
}

impl CoreClient {
    pub fn new(base_url: &str, refresh_token: &str) -> CoreClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("reqwest client with static settings");
        CoreClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            refresh_token: refresh_token.trim().to_string(),
            token: Mutex::new(None),
        }
    }

    async fn access_token(&self, force: bool) -> Result<String, CoreError> {
        let mut cached = self.token.lock().await;
        let now = now_secs();
        if let Some((token, exp)) = cached.as_ref() {
            if !force && exp - now > REFRESH_MARGIN_SECS {
                return Ok(token.clone());
            }
        }
        let url = format!("{}{}", self.base, protocol::core::AUTH_REFRESH);
        let body = BulkRequest::new(vec![RefreshRequest { refresh_token: self.refresh_token.clone() }]);
        let resp = self.http.post(&url).json(&body).send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        if !(200..300).contains(&status) {
            return Err(CoreError::Refresh(why_of(status, &bytes)));
        }
        let parsed: BulkResponse<AccessTokenResponse> = serde_json::from_slice(&bytes)
            .map_err(|e| CoreError::Refresh(format!("malformed answer: {e}")))?;
        let token = parsed
            .responses
            .into_iter()
            .next()
            .map(|r| r.access_token)
            .ok_or_else(|| CoreError::Refresh("no access token in answer".into()))?;
        // Our own token from the Core: only its expiry is read, to know when to refresh.
        let exp = auth::unverified_expiry(&token).unwrap_or(now + 300);
        *cached = Some((token.clone(), exp));
        Ok(token)
    }

    /// POSTs JSON to `path` on the Core; returns the answer body.
    pub async fn post<B: Serialize>(&self, path: &str, body: &B) -> Result<Vec<u8>, CoreError> {
        let url = format!("{}{}", self.base, path);
        let mut force = false;
        loop {
            let token = self.access_token(force).await?;
            let resp = self.http.post(&url).bearer_auth(token).json(body).send().await.map_err(transport)?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.map_err(transport)?;
            if (200..300).contains(&status) {
                return Ok(bytes.to_vec());
            }
            if (status == 401 || status == 403) && !force {
                force = true;
                continue;
            }
            return Err(CoreError::Status { status, why: why_of(status, &bytes) });
        }
    }

    /// Registers products, one call per category as the Core expects one provider per call.
    pub async fn register_products(&self, products: &[ProductV2]) -> Result<(), CoreError> {
        let mut categories: Vec<&str> = products.iter().map(|p| p.category.name.as_str()).collect();
        categories.sort_unstable();
        categories.dedup();
        for category in categories {
            let items: Vec<&ProductV2> = products.iter().filter(|p| p.category.name == category).collect();
            self.post(protocol::core::PRODUCTS_CREATE, &BulkRequest::new(items)).await?;
        }
        Ok(())
    }

    /// `files.collections.control.register`: answers the Core's drive ids. A reused `providerGeneratedId`
    /// is a 409 (`CoreError::Status`).
    pub async fn register_drives(&self, items: &[protocol::RegisterDrive]) -> Result<Vec<String>, CoreError> {
        let bytes = self.post(protocol::core::DRIVES_REGISTER, &BulkRequest::new(items.to_vec())).await?;
        let answer: BulkResponse<protocol::FindByStringId> = serde_json::from_slice(&bytes)
            .map_err(|e| CoreError::Status { status: 502, why: format!("malformed answer: {e}") })?;
        Ok(answer.responses.into_iter().map(|r| r.id).collect())
    }

    /// Tells the Core that `username` is connected (`approveConnection`).
    pub async fn approve_connection(&self, username: &str) -> Result<(), CoreError> {
        let body = protocol::UsernameRequest { username: username.to_string() };
        self.post(protocol::core::APPROVE_CONNECTION, &body).await.map(|_| ())
    }

    /// Tells the Core that `username` is no longer connected (`clearConnection`).
    pub async fn clear_connection(&self, username: &str) -> Result<(), CoreError> {
        let body = protocol::UsernameRequest { username: username.to_string() };
        self.post(protocol::core::CLEAR_CONNECTION, &body).await.map(|_| ())
    }

    pub async fn update_jobs(&self, items: &[JobUpdateItem]) -> Result<(), CoreError> {
        self.post(protocol::core::JOBS_CONTROL_UPDATE, &BulkRequest::new(items.to_vec())).await.map(|_| ())
    }
}

fn transport(e: reqwest::Error) -> CoreError {
    CoreError::Transport(e.to_string())
}

fn why_of(status: u16, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.why,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("HTTP {status}")
            } else {
                text.chars().take(300).collect()
            }
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The Core refuses a whole `jobs.control.update` batch when one id is unknown, naming it in `why`
/// ("Not found or permission denied (4821)"). Returns that id.
pub fn unknown_job_in(why: &str) -> Option<&str> {
    let start = why.rfind('(')? + 1;
    let end = start + why[start..].find(')')?;
    let id = &why[start..end];
    (!id.is_empty() && why.to_ascii_lowercase().contains("not found")).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unknown_job_id() {
        assert_eq!(unknown_job_in("Not found or permission denied (4821)"), Some("4821"));
        assert_eq!(unknown_job_in("Permission denied"), None);
        assert_eq!(unknown_job_in("Not found ()"), None);
    }

    #[test]
    fn error_text_prefers_why() {
        assert_eq!(why_of(404, br#"{"statusCode":404,"why":"Nope"}"#), "Nope");
        assert_eq!(why_of(502, b""), "HTTP 502");
        assert_eq!(why_of(500, b"boom"), "boom");
    }
}
