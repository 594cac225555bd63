//! Jobs connected users submitted with plain `sbatch` (`[slurm] outside_jobs = true`): found in the
//! monitor's one `squeue` listing, registered with the Core (`jobs.control.register`), then watched and
//! reported like every other job.
//!
//! A job is taken only if its uid maps to exactly one UCloud user (in many-to-one mode nobody can say whose
//! a shared account's job is) and a product of its partition exists. A job ucim itself is submitting right
//! now is not yet tracked: while the uid has a registration without a Slurm id, its new jobs wait a cycle.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use core_client::CoreClient;
use protocol::{BulkRequest, BulkResponse, FindByStringId, JobSpecification, JobUpdate, NameAndVersion, ProductReference, RegisterJob, SimpleDuration};
use slurm::{ListedJob, SlurmJobId};
use store::{JobLimits, Store};

/// The application name outside jobs carry, as UCloud's own integration module uses.
const UNKNOWN_APP: &str = "unknown";
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long a registration without a Slurm id holds back its uid's new jobs.
const SUBMIT_WINDOW_MS: i64 = 60_000;
const USERS_TTL: Duration = Duration::from_secs(10);

pub struct Outside {
    core: Arc<CoreClient>,
    store: Arc<Store>,
    provider: String,
    products: Vec<(String, config::Product)>,
    /// Fixed mappings from the config (`[users.map]`), UCloud user → unix user.
    config_map: Vec<(String, String)>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Slurm ids decided on (registered, being registered, or not ours to register).
    known: HashSet<SlurmJobId>,
    retry_after: HashMap<SlurmJobId, Instant>,
    /// Registered since the monitor last asked: (Slurm id, UCloud id).
    registered: Vec<(SlurmJobId, String)>,
    users: Option<(Instant, HashMap<u32, Vec<String>>)>,
}

impl Outside {
    pub fn new(core: Arc<CoreClient>, store: Arc<Store>, config: &config::Config) -> Outside {
        Outside {
            core,
            store,
            provider: config.provider_id.clone(),
            products: config.products.iter().map(|(n, p)| (n.clone(), p.clone())).collect(),
            config_map: config.users.map.iter().map(|(u, l)| (u.clone(), l.clone())).collect(),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Jobs registered since the last call, for the monitor to track.
    pub fn take_registered(&self) -> Vec<(SlurmJobId, String)> {
        std::mem::take(&mut self.lock().registered)
    }

    /// UCloud users per uid: the database's live mappings and the config's fixed ones.
    fn users_by_uid(&self) -> HashMap<u32, Vec<String>> {
        if let Some((at, users)) = &self.lock().users {
            if at.elapsed() < USERS_TTL {
                return users.clone();
            }
        }
        let mut by_uid: HashMap<u32, Vec<String>> = HashMap::new();
        let now = store::now_ms();
        for m in self.store.users().unwrap_or_default().into_iter().filter(|m| !m.expired(now)) {
            by_uid.entry(m.uid).or_default().push(m.ucloud_user);
        }
        for (ucloud, local) in &self.config_map {
            if let Ok(Some(u)) = nix::unistd::User::from_name(local) {
                let list = by_uid.entry(u.uid.as_raw()).or_default();
                if !list.contains(ucloud) {
                    list.push(ucloud.clone());
                }
            }
        }
        self.lock().users = Some((Instant::now(), by_uid.clone()));
        by_uid
    }

    /// Looks at the listing for jobs of connected users that nobody tracks; registers them in the
    /// background. `tracked`: what the monitor watches already.
    pub fn consider(self: &Arc<Self>, listing: &[ListedJob], tracked: &HashSet<SlurmJobId>) {
        let fresh: Vec<&ListedJob> = {
            let st = self.lock();
            let now = Instant::now();
            listing
                .iter()
                .filter(|j| !tracked.contains(&j.row.id) && !st.known.contains(&j.row.id))
                .filter(|j| !j.row.state.is_terminal() && j.row.uid.is_some())
                .filter(|j| st.retry_after.get(&j.row.id).is_none_or(|t| *t <= now))
                .collect()
        };
        if fresh.is_empty() {
            return;
        }
        let users = self.users_by_uid();
        let mut items = Vec::new();
        let mut waiting_uids = HashMap::new();
        for job in fresh {
            let uid = job.row.uid.unwrap_or_default();
            let Some(owners) = users.get(&uid) else { continue }; // not a connected user (yet)
            let id = job.row.id;
            if let Ok(Some(_)) = self.store.job_by_slurm_id(id) {
                self.lock().known.insert(id);
                continue;
            }
            let busy = *waiting_uids.entry(uid).or_insert_with(|| {
                self.store.has_unconfirmed_job(uid, store::now_ms() - SUBMIT_WINDOW_MS).unwrap_or(true)
            });
            if busy {
                continue; // perhaps ucim's own job, between sbatch and its confirmation: next cycle
            }
            let [owner] = owners.as_slice() else {
                tracing::info!(slurm_id = id, uid, "outside job of a shared account: not registered");
                self.lock().known.insert(id);
                continue;
            };
            let Some(product) = self.product_for(job) else {
                tracing::info!(slurm_id = id, partition = job.partition, "outside job on a partition without a product: not registered");
                self.lock().known.insert(id);
                continue;
            };
            self.lock().known.insert(id);
            items.push((id, uid, owner.clone(), job.time_limit_minutes, self.register_item(job, product, owner)));
        }
        if items.is_empty() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move { me.register(items).await });
    }

    /// The product a job fits: of its partition, with its CPUs per node if one has them.
    fn product_for(&self, job: &ListedJob) -> Option<ProductReference> {
        let per_node = job.cpus / job.nodes.max(1);
        let in_partition = || self.products.iter().filter(|(_, p)| p.partition == job.partition);
        let (name, p) = in_partition().find(|(_, p)| p.cpus == per_node).or_else(|| in_partition().next())?;
        Some(ProductReference { id: name.clone(), category: p.category.clone(), provider: self.provider.clone() })
    }

    fn register_item(&self, job: &ListedJob, product: ProductReference, owner: &str) -> RegisterJob {
        let time = job.time_limit_minutes.map(|m| SimpleDuration { hours: (m / 60) as i64, minutes: (m % 60) as i64, seconds: 0 });
        RegisterJob {
            spec: JobSpecification {
                product,
                application: NameAndVersion { name: UNKNOWN_APP.into(), version: UNKNOWN_APP.into() },
                name: Some(format!("Slurm job {} (submitted outside UCloud)", job.row.id)),
                replicas: i64::from(job.nodes.max(1)),
                time_allocation: time,
                ..Default::default()
            },
            provider_generated_id: Some(job.row.id.to_string()),
            created_by: Some(owner.to_string()),
            project: None,
            project_all_read: false,
            project_all_write: false,
        }
    }

    async fn register(&self, items: Vec<(SlurmJobId, u32, String, Option<u64>, RegisterJob)>) {
        let body = BulkRequest::new(items.iter().map(|i| i.4.clone()).collect::<Vec<_>>());
        let answer = self
            .core
            .post(protocol::core::JOBS_CONTROL_REGISTER, &body)
            .await
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<BulkResponse<FindByStringId>>(&bytes).map_err(|e| e.to_string()));
        let ids = match answer {
            Ok(r) if r.responses.len() == items.len() => r.responses,
            Ok(r) => {
                tracing::error!(sent = items.len(), got = r.responses.len(), "jobs.control.register answered a different count; retrying later");
                return self.retry_later(&items);
            }
            Err(e) => {
                tracing::warn!("could not register outside jobs with UCloud ({e}); retrying in 30 s");
                return self.retry_later(&items);
            }
        };
        for ((slurm_id, uid, owner, minutes, _), FindByStringId { id }) in items.iter().zip(ids) {
            let update = JobUpdate {
                status: Some(format!("Found in Slurm as job {slurm_id}, submitted outside UCloud")),
                ..Default::default()
            };
            let update = serde_json::to_string(&update).expect("JobUpdate serialises");
            let stored = self
                .store
                .insert_job(&id, owner, *uid, "queued", JobLimits { memory_mb: None, time_limit_minutes: *minutes })
                .and_then(|_| self.store.confirm_submission(&id, *slurm_id, &[update]));
            match stored {
                Ok(_) => {
                    tracing::info!(job = id, slurm_id, owner, "registered an outside job");
                    self.lock().registered.push((*slurm_id, id));
                }
                Err(e) => tracing::error!(job = id, slurm_id, "registered an outside job but could not store it: {e}"),
            }
        }
    }

    fn retry_later(&self, items: &[(SlurmJobId, u32, String, Option<u64>, RegisterJob)]) {
        let mut st = self.lock();
        for (id, ..) in items {
            st.known.remove(id);
            st.retry_after.insert(*id, Instant::now() + RETRY_AFTER);
        }
    }
}
