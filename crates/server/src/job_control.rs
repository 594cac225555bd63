//! `jobs.extend`, `jobs.suspend` and `jobs.unsuspend` (§4.4, §4.5). The server does these itself rather
//! than the user's instance: Slurm lets only operators suspend a job or raise its time limit (the owner
//! gets "Access/permission denied"), and the service user is an operator.
//!
//! Every item is checked before Slurm is touched: the job must be one ucim submitted for the calling
//! UCloud user (another user's job gets the same 404 as a missing one) and must not have ended. Slurm then
//! decides on the live state, and its refusals become clear 409s. Operators are not held to a partition's
//! MaxTime, so an extension is checked against it here.

use axum::http::StatusCode;
use http_api::{parse_json, ApiError};
use protocol::{BulkRequest, JobExtendItem, JobItem, JobUpdate, SimpleDuration};
use slurm::{format_minutes, SlurmError, SlurmJobId};

use crate::users::LocalUser;
use crate::Server;

/// The longest total time limit an extension may reach; `jobs.create` accepts at most the same.
pub const MAX_TOTAL_MINUTES: u64 = 365 * 24 * 60;

/// Concurrent extensions would each add to the same old limit: one at a time (suspend and resume need not
/// wait, they set no value derived from Slurm's).
static EXTENDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Extend,
    Suspend,
    Unsuspend,
}

impl Action {
    /// The action a provider path (after `/ucloud/{P}`) asks for.
    pub fn from_suffix(suffix: &str) -> Option<Action> {
        use protocol::provider::*;
        match suffix {
            JOBS_EXTEND => Some(Action::Extend),
            JOBS_SUSPEND => Some(Action::Suspend),
            JOBS_UNSUSPEND => Some(Action::Unsuspend),
            _ => None,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Extend => "extended",
            Action::Suspend => "suspended",
            Action::Unsuspend => "continued",
        }
    }
}

/// One request item: which job, and for an extension how much longer.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub job_id: String,
    pub requested: Option<SimpleDuration>,
}

/// Reads the bulk body of `action`.
pub fn parse(action: Action, body: &[u8]) -> Result<Vec<Item>, ApiError> {
    let items: Vec<Item> = match action {
        Action::Extend => parse_json::<BulkRequest<JobExtendItem>>(body)?
            .items
            .into_iter()
            .map(|i| Item { job_id: i.job.id, requested: Some(i.requested_time) })
            .collect(),
        Action::Suspend | Action::Unsuspend => parse_json::<BulkRequest<JobItem>>(body)?
            .items
            .into_iter()
            .map(|i| Item { job_id: i.job.id, requested: None })
            .collect(),
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("No jobs in the request"));
    }
    Ok(items)
}

fn conflict(why: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, why)
}

fn ended(job: &str) -> ApiError {
    conflict(format!("Job {job} has already ended"))
}

/// Slurm did not answer (timeout, missing tools): nothing was done, the user may retry.
fn unavailable(e: &SlurmError) -> ApiError {
    tracing::warn!("Slurm unavailable for a job request: {e}");
    ApiError::new(StatusCode::BAD_GATEWAY, "The cluster's scheduler is not answering; nothing was changed, please try again shortly")
}

/// Slurm's refusal in words for the user who asked.
fn refusal(job: &str, action: Action, e: SlurmError) -> ApiError {
    let Some(words) = e.slurm_message() else { return unavailable(&e) };
    if words.contains("pending execution") {
        conflict(format!("Job {job} is still waiting in the queue; only a running job can be {}", action.verb()))
    } else if words.contains("already completing or completed") || words.contains("already finished") {
        ended(job)
    } else if words.contains("not suspended") {
        conflict(format!("Job {job} is not suspended; only a suspended job can be continued"))
    } else if words.contains("Invalid job id") || words.contains("Unexpected message received") {
        conflict(format!("Job {job} is no longer known to the cluster's scheduler"))
    } else if words.contains("Access/permission denied") {
        tracing::error!(job, "Slurm refused the service user: is it a Slurm operator (sacctmgr ... adminlevel=Operator)? {words}");
        ApiError::new(StatusCode::BAD_GATEWAY, format!("The cluster does not let this service change jobs; job {job} was not {}. Please contact support", action.verb()))
    } else {
        conflict(format!("The cluster refused: {words}"))
    }
}

/// Checks every item, then does each in order. A failure stops the batch with that item's error (earlier
/// items stay done), as the Core expects of bulk calls.
pub async fn apply(server: &Server, user: &LocalUser, action: Action, items: &[Item]) -> Result<(), ApiError> {
    let mut jobs = Vec::with_capacity(items.len());
    for item in items {
        let row = match server.store.job(&item.job_id) {
            Ok(Some(row)) if row.ucloud_user == user.ucloud_user => row,
            Ok(_) => {
                tracing::warn!(ucloud_user = user.ucloud_user, job = item.job_id, ?action, "refused: not this user's job or unknown");
                return Err(ApiError::not_found(format!("Job {} not found", item.job_id)));
            }
            Err(e) => return Err(ApiError::internal("job lookup", e)),
        };
        if row.ended_at.is_some() {
            return Err(ended(&row.ucloud_id));
        }
        let Some(slurm_id) = row.slurm_id else {
            return Err(conflict(format!("Job {} is still being submitted; try again in a moment", row.ucloud_id)));
        };
        if let Some(requested) = item.requested {
            if requested.total_seconds() <= 0 {
                return Err(ApiError::bad_request("The requested extension must be longer than zero"));
            }
        }
        jobs.push((row, slurm_id, item.requested));
    }
    let _one_at_a_time = match action {
        Action::Extend => Some(EXTENDING.lock().await),
        Action::Suspend | Action::Unsuspend => None,
    };
    for (row, slurm_id, requested) in jobs {
        let job = row.ucloud_id.as_str();
        match (action, requested) {
            (Action::Extend, Some(requested)) => extend(server, &row, slurm_id, requested).await?,
            (Action::Suspend, _) => server.slurm.suspend(slurm_id).await.map_err(|e| refusal(job, action, e))?,
            (Action::Unsuspend, _) => server.slurm.resume(slurm_id).await.map_err(|e| refusal(job, action, e))?,
            (Action::Extend, None) => return Err(ApiError::bad_request("An extension needs a requested time")),
        }
        tracing::info!(job, slurm_id, ucloud_user = user.ucloud_user, "job {}", action.verb());
        // The monitor reports SUSPENDED/RUNNING when it sees Slurm's new state: make that soon.
        server.monitor.poke();
    }
    Ok(())
}

/// Raises the Slurm time limit by `requested` (whole minutes, rounded up) and tells the Core the new total
/// allocation (`newTimeAllocation`, ms) through the outbox, recorded with the new limit in one transaction.
async fn extend(server: &Server, row: &store::JobRow, slurm_id: SlurmJobId, requested: SimpleDuration) -> Result<(), ApiError> {
    let job = row.ucloud_id.as_str();
    let add = (requested.total_seconds() as u64).div_ceil(60);
    let info = server
        .slurm
        .job_info(slurm_id)
        .await
        .map_err(|e| refusal(job, Action::Extend, e))?
        .filter(|info| !info.state.is_terminal())
        .ok_or_else(|| ended(job))?;
    // Slurm's limit is the truth (ucim rounds the Core's allocation up to minutes at submission).
    let current = info
        .time_limit_minutes
        .or(row.time_limit_minutes)
        .ok_or_else(|| conflict(format!("Job {job} has no time limit to extend")))?;
    let new = current.saturating_add(add);
    if new > MAX_TOTAL_MINUTES {
        return Err(conflict(format!("Job {job} cannot run longer than {} in total", format_minutes(MAX_TOTAL_MINUTES))));
    }
    for partition in info.partition.iter().flat_map(|p| p.split(',')).filter(|p| !p.is_empty()) {
        let max = server.slurm.partition_max_time(partition).await.map_err(|e| unavailable(&e))?;
        if let Some(max) = max.filter(|&max| new > max) {
            return Err(conflict(format!(
                "The partition {partition} allows jobs of at most {}; job {job} has {} and cannot be extended by {}",
                format_minutes(max),
                format_minutes(current),
                format_minutes(add)
            )));
        }
    }
    server.slurm.set_time_limit(slurm_id, new).await.map_err(|e| refusal(job, Action::Extend, e))?;
    let update = JobUpdate {
        status: Some(format!("The time allocation was extended by {} to {}", format_minutes(add), format_minutes(new))),
        new_time_allocation: Some(new as i64 * 60_000),
        ..Default::default()
    };
    let payload = serde_json::to_string(&update).expect("JobUpdate serialises");
    server
        .store
        .record_time_limit(job, new, &[payload])
        .map_err(|e| ApiError::internal("the new time limit is set in Slurm but could not be recorded", e))?;
    server.outbox_wake.notify_one();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_bodies() {
        assert_eq!(Action::from_suffix("/jobs/extend"), Some(Action::Extend));
        assert_eq!(Action::from_suffix("/jobs/unsuspend"), Some(Action::Unsuspend));
        assert_eq!(Action::from_suffix("/jobs/terminate"), None);
        let body = br#"{"items":[{"job":{"id":"51","specification":{"product":{"id":"cpu-1","category":"cpu","provider":"p"}}},
                      "requestedTime":{"hours":1,"minutes":30,"seconds":0}}]}"#;
        let items = parse(Action::Extend, body).unwrap();
        assert_eq!(items, [Item { job_id: "51".into(), requested: Some(SimpleDuration { hours: 1, minutes: 30, seconds: 0 }) }]);
        let body = br#"{"items":[{"job":{"id":"7","specification":{"product":{"id":"a","category":"b","provider":"p"}}}}]}"#;
        assert_eq!(parse(Action::Suspend, body).unwrap()[0].job_id, "7");
        assert_eq!(parse(Action::Suspend, br#"{"items":[]}"#).unwrap_err().status, StatusCode::BAD_REQUEST);
        // The user-facing shape (jobId) is not what the Core sends to providers.
        assert!(parse(Action::Extend, br#"{"items":[{"jobId":"51","requestedTime":{"hours":1}}]}"#).is_err());
    }

    fn failed(stderr: &str) -> SlurmError {
        use std::os::unix::process::ExitStatusExt;
        SlurmError::Failed { command: "scontrol".into(), status: std::process::ExitStatus::from_raw(256), stderr: stderr.into() }
    }

    #[test]
    fn slurm_refusals_in_words() {
        let why = |action, stderr: &str| {
            let e = refusal("51", action, failed(stderr));
            (e.status.as_u16(), e.why)
        };
        assert_eq!(
            why(Action::Suspend, "scontrol: error: Job is pending execution for job 9"),
            (409, "Job 51 is still waiting in the queue; only a running job can be suspended".into())
        );
        assert_eq!(why(Action::Unsuspend, "Job/step already completing or completed for job 9").1, "Job 51 has already ended");
        assert_eq!(why(Action::Extend, "Job has already finished for job 9").1, "Job 51 has already ended");
        assert_eq!(
            why(Action::Unsuspend, "Job is not suspended for job 9").1,
            "Job 51 is not suspended; only a suspended job can be continued"
        );
        let (status, text) = why(Action::Suspend, "Access/permission denied for job 9");
        assert_eq!(status, 502);
        assert!(text.contains("contact support"), "{text}");
        assert!(why(Action::Suspend, "Unexpected message received for job 9").1.contains("no longer known"));
        assert_eq!(why(Action::Extend, "Something new").1, "The cluster refused: Something new");
        let timeout = refusal("51", Action::Suspend, SlurmError::Timeout { command: "scontrol".into(), after: std::time::Duration::from_secs(10) });
        assert_eq!(timeout.status, StatusCode::BAD_GATEWAY);
    }
}
