//! `jobs.create` and `jobs.terminate`, as the user.
//!
//! A request is validated completely before anything reaches Slurm. The server is told about a job
//! before `sbatch` runs (so a crash cannot leave an untracked Slurm job) and after (with the Slurm id).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use axum::response::Response;
use http_api::{ok_json, parse_json, ApiError};
use ipc::{Request, Response as IpcResponse};
use ipc::InstanceSetup;
use protocol::{BulkRequest, BulkResponse, Empty, FindByStringId, Job};

use crate::script::{self, FileResolver, JobShape};
use crate::Instance;

/// What a valid `jobs.create` item becomes.
#[derive(Debug, PartialEq)]
pub struct Submission {
    pub ucloud_id: String,
    pub sbatch_args: Vec<String>,
    pub script: slurm::ScriptSpec,
    /// `--mem`, per node, in MiB.
    pub memory_mb: u64,
    /// `--time`, in minutes.
    pub time_limit_minutes: u64,
}

pub async fn create(me: &Instance, user: &str, body: &[u8]) -> Result<Response, ApiError> {
    let request: BulkRequest<Job> = parse_json(body)?;
    if request.items.is_empty() {
        return Err(ApiError::bad_request("No jobs in the request"));
    }
    let mut responses = Vec::with_capacity(request.items.len());
    for job in &request.items {
        let id = create_one(me, user, job).await?;
        responses.push(FindByStringId { id: id.to_string() });
    }
    Ok(ok_json(&BulkResponse::new(responses)))
}

async fn create_one(me: &Instance, user: &str, job: &Job) -> Result<u64, ApiError> {
    let dir = me.home.join(&me.setup.job_root).join(&job.id);
    let submission = validate(&me.setup, job, &dir, &|path| crate::drives::resolve(me, path))?;
    let register = Request::RegisterJob {
        ucloud_id: job.id.clone(),
        ucloud_user: user.to_string(),
        memory_mb: Some(submission.memory_mb),
        time_limit_minutes: Some(submission.time_limit_minutes),
    };
    match me.ask(&register).await? {
        IpcResponse::Ok => {}
        IpcResponse::AlreadySubmitted { slurm_id } => return Ok(slurm_id),
        IpcResponse::Error { message } => return Err(ApiError::forbidden(message)),
        other => return Err(ApiError::internal("unexpected server answer to RegisterJob", format!("{other:?}"))),
    }
    match submit(me, &submission, &dir).await {
        Ok(slurm_id) => {
            match me.ask(&Request::ConfirmJob { ucloud_id: job.id.clone(), slurm_id }).await? {
                IpcResponse::Ok => {}
                other => tracing::error!(slurm_id, "server did not confirm job {}: {other:?}", job.id),
            }
            tracing::info!(job = job.id, slurm_id, "submitted");
            Ok(slurm_id)
        }
        Err(e) => {
            if let Err(abort) = me.ask(&Request::AbortJob { ucloud_id: job.id.clone() }).await {
                tracing::error!("could not withdraw job {}: {}", job.id, abort.why);
            }
            Err(e)
        }
    }
}

async fn submit(me: &Instance, submission: &Submission, dir: &Path) -> Result<u64, ApiError> {
    let text = slurm::render_script(&submission.script).map_err(|e| ApiError::bad_request(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| ApiError::internal("cannot create the job folder", e))?;
    // The job folder is the user's; others in their group may read outputs, nobody else.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750));
    let script = dir.join("job.sh");
    std::fs::write(&script, text).map_err(|e| ApiError::internal("cannot write the job script", e))?;
    me.slurm
        .sbatch(&submission.sbatch_args, &script)
        .await
        .map_err(|e| ApiError::bad_request(format!("Slurm refused the job: {e}")))
}

/// Checks a job against the products and applications this provider offers and turns it into an
/// `sbatch` call. Pure apart from `resolve` (which may look at the file system): nothing is changed.
pub fn validate(setup: &InstanceSetup, job: &Job, dir: &Path, resolve: &FileResolver<'_>) -> Result<Submission, ApiError> {
    if !valid_job_id(&job.id) {
        return Err(ApiError::bad_request("Malformed job id"));
    }
    let spec = &job.specification;
    let product = setup
        .products
        .get(&spec.product.id)
        .filter(|p| p.category == spec.product.category && spec.product.provider == setup.provider_id)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Unknown product {}/{} at provider {}",
                spec.product.category, spec.product.id, spec.product.provider
            ))
        })?;
    let app = setup.applications.get(&spec.application.name).ok_or_else(|| {
        ApiError::bad_request(format!("Application '{}' is not available at this provider", spec.application.name))
    })?;
    if !(1..=64).contains(&spec.replicas) {
        return Err(ApiError::bad_request(format!("replicas must be between 1 and 64, not {}", spec.replicas)));
    }
    let seconds = spec
        .time_allocation
        .map(|t| t.total_seconds())
        .ok_or_else(|| ApiError::bad_request("A time allocation is required for Slurm jobs"))?;
    if seconds <= 0 || seconds > 365 * 24 * 3600 {
        return Err(ApiError::bad_request("The time allocation must be positive and at most a year"));
    }
    let minutes = (seconds + 59) / 60;
    let params = script::typed_parameters(&spec.parameters, resolve).map_err(ApiError::bad_request)?;
    let shape = JobShape {
        ucloud_id: &job.id,
        product,
        app,
        replicas: spec.replicas,
        minutes,
        dir,
        account: setup.slurm.account.as_deref(),
    };
    let script = script::job_script(&shape, &params).map_err(ApiError::bad_request)?;
    Ok(Submission {
        ucloud_id: job.id.clone(),
        sbatch_args: script::sbatch_args(&shape),
        script,
        memory_mb: u64::from(product.memory_gb) * 1024,
        time_limit_minutes: minutes as u64,
    })
}

/// Job ids become folder names: only plain ids are accepted.
fn valid_job_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn terminate(me: &Instance, user: &str, body: &[u8]) -> Result<Response, ApiError> {
    let request: BulkRequest<Job> = parse_json(body)?;
    let mut responses = Vec::with_capacity(request.items.len());
    for job in &request.items {
        if !valid_job_id(&job.id) {
            return Err(ApiError::bad_request("Malformed job id"));
        }
        // The server answers only for jobs our uid owns: another user's job is "not found" here.
        let info = match me.ask(&Request::LookupJob { ucloud_id: job.id.clone() }).await? {
            IpcResponse::Job(info) => info,
            IpcResponse::Error { message } => return Err(ApiError::not_found(message)),
            other => return Err(ApiError::internal("unexpected server answer to LookupJob", format!("{other:?}"))),
        };
        // Many-to-one: every job is our uid's, so the owner check is ours to make. Same answer as a
        // missing job, so ids cannot be probed.
        if me.setup.many_to_one && info.ucloud_user != user {
            tracing::warn!(target: "ucim::audit", user, job = job.id, owner = info.ucloud_user, "refused to cancel another user's job");
            return Err(ApiError::not_found(format!("Job {} not found", job.id)));
        }
        if let (false, Some(slurm_id)) = (info.ended, info.slurm_id) {
            me.ask(&Request::RequestCancel { ucloud_id: job.id.clone() }).await?;
            me.slurm
                .scancel(slurm_id)
                .await
                .map_err(|e| ApiError::bad_request(format!("Could not cancel job {}: {e}", job.id)))?;
            tracing::info!(job = job.id, slurm_id, "cancel requested");
        }
        responses.push(Empty {});
    }
    Ok(ok_json(&BulkResponse::new(responses)))
}
