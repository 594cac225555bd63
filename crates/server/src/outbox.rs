//! Delivers queued job updates to the Core, oldest first, one batch at a time, retrying with backoff.
//! A row is marked delivered only after the Core accepted it, so a crash or a Core outage loses nothing;
//! redelivery after a crash is harmless because state updates carry `expectedDifferentState`.

use std::sync::Arc;
use std::time::Duration;

use core_client::{unknown_job_in, CoreClient, CoreError};
use protocol::{JobUpdate, JobUpdateItem};
use store::{OutboxRow, Store};
use tokio::sync::Notify;

const BATCH: usize = 100;
const IDLE_RECHECK: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// After a wake-up, how long to let more updates gather before sending: jobs arriving one after another
/// (a user's sweep of 200 submissions) then cost the Core one call per batch instead of one per job, and
/// that call stays off the path of the submissions still coming in. Small next to the poll interval.
const GATHER: Duration = Duration::from_millis(25);

pub async fn deliver(store: Arc<Store>, core: Arc<CoreClient>, wake: Arc<Notify>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match deliver_batch(&store, &core).await {
            Ok(0) => {
                tokio::select! {
                    _ = wake.notified() => tokio::time::sleep(GATHER).await,
                    _ = tokio::time::sleep(IDLE_RECHECK) => {}
                }
            }
            Ok(_) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!("delivering job updates failed, retrying in {backoff:?}: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sends one batch; returns how many rows were settled (delivered or given up).
pub async fn deliver_batch(store: &Store, core: &CoreClient) -> anyhow::Result<usize> {
    let rows = store.outbox_pending(BATCH)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let (items, bad) = decode(&rows);
    for row in &bad {
        // Only this version writes the outbox, so this is corruption: park it rather than block the queue.
        store.outbox_give_up_job(&row.job_id, "undecodable payload")?;
    }
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    match core.update_jobs(&items).await {
        Ok(()) => {
            store.outbox_delivered(&seqs)?;
            tracing::debug!(count = seqs.len(), "job updates delivered");
            Ok(seqs.len())
        }
        Err(CoreError::Status { status: 404, why }) if unknown_job_in(&why).is_some() => {
            // The Core refuses the whole batch for one job it does not know (deleted, or never created);
            // park that job's updates and go on with the rest.
            let job = unknown_job_in(&why).unwrap_or_default();
            let parked = store.outbox_give_up_job(job, &format!("UCloud/Core: {why}"))?;
            tracing::warn!(job, parked, "UCloud/Core does not know this job; its updates are parked");
            Ok(parked)
        }
        Err(e) => {
            store.outbox_attempted(&seqs)?;
            Err(e.into())
        }
    }
}

fn decode(rows: &[OutboxRow]) -> (Vec<JobUpdateItem>, Vec<&OutboxRow>) {
    let mut items = Vec::with_capacity(rows.len());
    let mut bad = Vec::new();
    for row in rows {
        match serde_json::from_str::<JobUpdate>(&row.payload) {
            Ok(update) => items.push(JobUpdateItem { id: row.job_id.clone(), update }),
            Err(_) => bad.push(row),
        }
    }
    (items, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ProductReference;

    #[tokio::test]
    async fn updates_arriving_together_reach_the_core_in_one_call() {
        let dir = std::env::temp_dir().join(format!("ucim-outbox-test-{}", std::process::id()));
        let sim = ucloud_sim::Sim::start(ucloud_sim::SimConfig {
            provider_id: "p".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            provider_url: "http://127.0.0.1:1".into(),
            key_dir: dir.clone(),
            refresh_token: "refresh".into(),
            issuer: "cloud.sdu.dk".into(),
        })
        .await
        .unwrap();
        let core = Arc::new(CoreClient::new(&sim.url(), "refresh"));
        let store = Arc::new(Store::open_in_memory().unwrap());
        let wake = Arc::new(Notify::new());
        tokio::spawn(deliver(store.clone(), core, wake.clone()));
        // Let it find the outbox empty and wait to be woken.
        tokio::time::sleep(Duration::from_millis(50)).await;

        // One submission, then nine more a moment later: all within one gathering wait.
        let product = ProductReference { id: "cpu".into(), category: "cpu".into(), provider: "p".into() };
        let submit = |slurm_id: u64| {
            let job = sim.new_job("alice#1", product.clone(), "app", Default::default(), None);
            let id = job["id"].as_str().unwrap().to_string();
            store.insert_job(&id, "alice#1", 1000, "queued", store::JobLimits::default()).unwrap();
            let update = serde_json::to_string(&crate::monitor::submitted_update(slurm_id)).unwrap();
            assert!(store.confirm_submission(&id, slurm_id, &[update]).unwrap());
            wake.notify_one();
        };
        submit(1);
        tokio::time::sleep(Duration::from_millis(2)).await;
        (2..=10).for_each(submit);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sim.received_updates().len() < 10 {
            assert!(std::time::Instant::now() < deadline, "only {} updates arrived", sim.received_updates().len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Without the gathering wait the first submission would have gone out alone.
        assert_eq!(sim.update_calls(), 1, "calls for 10 updates");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
