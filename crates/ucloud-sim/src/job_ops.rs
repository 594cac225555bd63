//! The Core's `jobs.extend`, `jobs.suspend` and `jobs.unsuspend` towards the provider (§4.4, §4.5;
//! core2 `JobsExtendBulk`, `JobsSuspendBulk`, `JobsUnsuspendBulk`).
//!
//! The user asks the Core with `{"jobId", "requestedTime"}`; the Core retrieves the job and sends the
//! provider `{"job": Job, "requestedTime": {...}}` (suspend: `{"job": Job}`), user-scoped with the user
//! who asked. Extend is refused by the Core itself (400) unless the product's support has
//! `<backend>.timeExtension`; suspend and unsuspend are forwarded whatever the support or state (§10.21).
//! The provider reports the outcome later through `jobs.control.update`.

use protocol::{provider, SimpleDuration};
use reqwest::Method;
use serde_json::{json, Value};

use crate::{CallError, CallResult, Sim};

impl Sim {
    /// `jobs.extend` asked by the job's owner.
    pub async fn extend_job(
        &self,
        job_id: &str,
        requested: SimpleDuration,
    ) -> Result<CallResult, CallError> {
        self.extend_job_as(None, job_id, requested).await
    }

    /// `jobs.extend` asked by `actor` (`None`: the owner). The real Core only forwards for users with EDIT
    /// on the job; tests use another actor to check that the provider refuses on its own.
    pub async fn extend_job_as(
        &self,
        actor: Option<&str>,
        job_id: &str,
        requested: SimpleDuration,
    ) -> Result<CallResult, CallError> {
        let (job, owner) = self.job_and_owner(job_id)?;
        if !self.supports_extension(&job).await {
            return Err(CallError::Core {
                status: 400,
                why: "time extension is not supported by this provider".into(),
            });
        }
        let item = json!({ "job": job, "requestedTime": requested });
        self.job_call(provider::JOBS_EXTEND, actor.unwrap_or(&owner), item)
            .await
    }

    /// `jobs.suspend` asked by the job's owner.
    pub async fn suspend_job(&self, job_id: &str) -> Result<CallResult, CallError> {
        self.suspend_job_as(None, job_id).await
    }

    pub async fn suspend_job_as(
        &self,
        actor: Option<&str>,
        job_id: &str,
    ) -> Result<CallResult, CallError> {
        self.suspension_call(provider::JOBS_SUSPEND, actor, job_id).await
    }

    /// `jobs.unsuspend` asked by the job's owner.
    pub async fn unsuspend_job(&self, job_id: &str) -> Result<CallResult, CallError> {
        self.unsuspend_job_as(None, job_id).await
    }

    pub async fn unsuspend_job_as(
        &self,
        actor: Option<&str>,
        job_id: &str,
    ) -> Result<CallResult, CallError> {
        self.suspension_call(provider::JOBS_UNSUSPEND, actor, job_id).await
    }

    /// Suspend and unsuspend carry the same body: `{"job": <Job>}`.
    async fn suspension_call(
        &self,
        path: &str,
        actor: Option<&str>,
        job_id: &str,
    ) -> Result<CallResult, CallError> {
        let (job, owner) = self.job_and_owner(job_id)?;
        self.job_call(path, actor.unwrap_or(&owner), json!({ "job": job }))
            .await
    }

    fn job_and_owner(&self, job_id: &str) -> Result<(Value, String), CallError> {
        self.inner
            .jobs
            .lock()
            .unwrap()
            .job_for_call(job_id)
            .ok_or_else(|| CallError::UnknownJob(job_id.to_string()))
    }

    async fn job_call(
        &self,
        suffix: &str,
        actor: &str,
        item: Value,
    ) -> Result<CallResult, CallError> {
        self.call(
            Method::POST,
            suffix,
            Some(actor),
            Some(json!({ "items": [item] })),
        )
        .await
    }

    /// The Core's gate: `jobs.native.extension` (the sim's applications are NATIVE) for the job's product,
    /// from the provider's `retrieveProducts` (the Core polls it every 10 s; the sim asks now).
    async fn supports_extension(&self, job: &Value) -> bool {
        let Ok(answer) = self
            .call(Method::GET, provider::JOBS_RETRIEVE_PRODUCTS, None, None)
            .await
        else {
            return false;
        };
        let product = &job["specification"]["product"];
        answer.body["responses"].as_array().is_some_and(|support| {
            support.iter().any(|s| {
                s["product"]["id"] == product["id"]
                    && s["product"]["category"] == product["category"]
                    && s["native"]["timeExtension"] == json!(true)
            })
        })
    }
}
