//! The Core calling the provider (§1.7–1.8, §2.3, §3.1, §7.3, errata §10.17–19, §10.22).

use std::time::Duration;

use protocol::{encode_username_header, provider, provider_path, USERNAME_HEADER};
use reqwest::Method;
use serde_json::{json, Value};

use crate::{jobs, Sim, TOKEN_LIFETIME_SECS};

/// The Core's HTTP client timeout, body included.
pub const CORE_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Go's default client identifies itself so.
pub const CORE_USER_AGENT: &str = "Go-http-client/1.1";
/// The Core refreshes its token when fewer than this many seconds remain.
const TOKEN_REFRESH_MARGIN_SECS: i64 = 180;
/// 449/503 on a user-scoped call: `init`, sleep, retry; at most this many cycles (6 attempts).
pub const INIT_RETRY_CYCLES: u32 = 5;
pub const INIT_RETRY_SLEEP: Duration = Duration::from_millis(500);

/// The provider's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResult {
    pub status: u16,
    /// The body as JSON; `Null` if empty or not JSON.
    pub body: Value,
    /// How many times the call was sent (1 unless the 449/503 dance ran).
    pub attempts: u32,
    /// The raw body text (lossy UTF-8), for diagnostics.
    pub raw: String,
}

impl CallResult {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether the Core would take this answer as success: 2xx whose body decodes as a JSON object or
    /// `null` (§10.1; an empty body, text or an array become a 502 for the user).
    pub fn accepted_by_core(&self) -> bool {
        self.is_success() && (self.body.is_object() || self.raw.trim() == "null")
    }

    /// `why` of an error body, if any.
    pub fn why(&self) -> Option<&str> {
        self.body.get("why").and_then(Value::as_str)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connection refused, timeout (5 s), broken body, …: the Core shows a 502.
    #[error("could not contact provider: {0}")]
    Transport(String),
    /// The sim has no such job.
    #[error("unknown job: {0}")]
    UnknownJob(String),
    /// The Core itself refused, before calling the provider (e.g. a feature the product does not support).
    #[error("{status}: {why}")]
    Core { status: u16, why: String },
}

impl Sim {
    /// The Core's token for calling the provider (sub `_UCloud`, role SERVICE), reused until fewer than
    /// 3 minutes remain, like the Core's shared client.
    pub async fn service_token(&self) -> String {
        let mut cached = self.inner.service_token.lock().await;
        let now = jobs::now_ms() / 1000;
        if let Some((token, exp)) = cached.as_ref() {
            if exp - now >= TOKEN_REFRESH_MARGIN_SECS {
                return token.clone();
            }
        }
        let token = self
            .inner
            .signer
            .service_token(&self.inner.cfg.issuer, TOKEN_LIFETIME_SECS);
        *cached = Some((token.clone(), now + TOKEN_LIFETIME_SECS));
        token
    }

    /// Calls `/ucloud/{P}{suffix}` as the Core does. With `username` the call is user-scoped: it carries
    /// `ucloud-username` and runs the 449/503 → `integration/init` → 500 ms → retry dance (at most 5
    /// cycles). Transport errors end the call at once.
    pub async fn call(
        &self,
        method: Method,
        suffix: &str,
        username: Option<&str>,
        body: Option<Value>,
    ) -> Result<CallResult, CallError> {
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("JSON values serialise"));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let token = self.service_token().await;
            let auth = format!("Bearer {token}");
            let mut result = self
                .send(method.clone(), suffix, Some(&auth), username, bytes.clone())
                .await?;
            result.attempts = attempts;
            let retryable = matches!(result.status, 449 | 503);
            match username {
                Some(user) if retryable && attempts <= INIT_RETRY_CYCLES => {
                    tracing::info!(
                        suffix,
                        status = result.status,
                        user,
                        "provider asked for init; retrying"
                    );
                    let init =
                        serde_json::to_vec(&json!({ "username": user })).expect("serialises");
                    if let Err(e) = self
                        .send(
                            Method::POST,
                            provider::INIT,
                            Some(&auth),
                            Some(user),
                            Some(init),
                        )
                        .await
                    {
                        tracing::info!("integration/init failed (ignored, like the Core): {e}");
                    }
                    tokio::time::sleep(INIT_RETRY_SLEEP).await;
                }
                _ => return Ok(result),
            }
        }
    }

    /// One request with an explicit `Authorization` value (or none), no retries: for forged-token tests.
    pub async fn call_raw(
        &self,
        method: Method,
        suffix: &str,
        authorization: Option<&str>,
        username: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<CallResult, CallError> {
        self.send(method, suffix, authorization, username, body)
            .await
    }

    async fn send(
        &self,
        method: Method,
        suffix: &str,
        authorization: Option<&str>,
        username: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<CallResult, CallError> {
        let url = format!(
            "{}{}",
            self.provider_url(),
            provider_path(&self.inner.cfg.provider_id, suffix)
        );
        // No Content-Type on bodies and no query strings, as the Core's Go client (§10.17).
        let client = self.inner.http.read().unwrap().clone();
        let mut req = client.request(method.clone(), &url);
        if let Some(a) = authorization {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        if let Some(u) = username {
            req = req.header(USERNAME_HEADER, encode_username_header(u));
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CallError::Transport(format!("{method} {url}: {e}")))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| CallError::Transport(format!("{method} {url}: body: {e}")))?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        tracing::debug!(%method, %url, status, body = %raw, "provider answered");
        Ok(CallResult {
            status,
            body,
            attempts: 1,
            raw,
        })
    }

    /// `jobs.create`: `POST /ucloud/{P}/jobs` with `{"items":[job]}`, user-scoped (job owner). If the Core
    /// would count the answer as an error (non-2xx, malformed body, transport error) the job is deleted
    /// from the table, as the Core deletes its record. A non-empty `responses[0].id` becomes
    /// `providerGeneratedId`.
    pub async fn create_job(&self, job: &Value) -> Result<CallResult, CallError> {
        let id = job["id"].as_str().unwrap_or_default().to_string();
        let owner = job["owner"]["createdBy"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        {
            let mut table = self.inner.jobs.lock().unwrap();
            if table.get(&id).is_none() {
                // A job built elsewhere: register it as the Core would have before calling.
                table.insert(job.clone());
            }
        }
        let body = json!({ "items": [job] });
        let result = self
            .call(
                Method::POST,
                provider::JOBS_CREATE,
                Some(&owner),
                Some(body),
            )
            .await;
        let mut table = self.inner.jobs.lock().unwrap();
        match &result {
            Ok(r) if r.accepted_by_core() => {
                let pid = r.body["responses"][0]["id"].as_str().unwrap_or_default();
                if !pid.is_empty() {
                    table.set_provider_generated_id(&id, pid);
                }
                tracing::info!(job = %id, status = r.status, "jobs.create accepted");
            }
            Ok(r) => {
                tracing::info!(job = %id, status = r.status, body = %r.raw, "jobs.create refused; job deleted");
                table.remove(&id);
            }
            Err(e) => {
                tracing::info!(job = %id, "jobs.create failed ({e}); job deleted");
                table.remove(&id);
            }
        }
        result
    }

    /// `jobs.terminate`: `POST /ucloud/{P}/jobs/terminate` with `{"items":[job]}` (the job as the Core
    /// retrieves it now), user-scoped with the job owner. Forwarded whatever the job's state (§10.21).
    /// The user clicks "connect": the Core calls `integration/connect` (a system call, no username header)
    /// and sends the browser to the answer's `redirectTo`.
    pub async fn connect_user(&self, username: &str) -> Result<CallResult, CallError> {
        self.call(Method::POST, provider::CONNECT, None, Some(json!({ "username": username }))).await
    }

    /// The user removes the connection in UCloud: the Core forgets it, then tells the provider
    /// (`integration/unlinked`); if the provider fails, the Core restores the connection.
    pub async fn unlink_user(&self, username: &str) -> Result<CallResult, CallError> {
        let was = self.inner.connections.lock().unwrap().remove(username);
        let result = self.call(Method::POST, provider::UNLINKED, None, Some(json!({ "username": username }))).await;
        let failed = !matches!(&result, Ok(r) if r.is_success());
        if failed && was {
            self.inner.connections.lock().unwrap().insert(username.to_string());
        }
        result
    }

    pub async fn terminate_job(&self, job_id: &str) -> Result<CallResult, CallError> {
        let (job, owner) = self
            .inner
            .jobs
            .lock()
            .unwrap()
            .job_for_call(job_id)
            .ok_or_else(|| CallError::UnknownJob(job_id.to_string()))?;
        let body = json!({ "items": [job] });
        self.call(
            Method::POST,
            provider::JOBS_TERMINATE,
            Some(&owner),
            Some(body),
        )
        .await
    }
}
