//! The sim's job table and the Core's `jobs.control.update` semantics (§4.12, core2 `job.go`).
//!
//! Jobs are kept as the full JSON the Core sent on `jobs.create`; state changes are mirrored into that
//! JSON so later calls (`jobs.terminate`) carry the job as the Core would retrieve it.

use std::collections::HashMap;

use protocol::{JobState, JobUpdate, JobUpdateItem, ProductReference, SimpleDuration};
use serde_json::{json, Map, Value};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) struct JobEntry {
    pub job: Value,
    pub state: JobState,
    pub owner: String,
    pub applied: Vec<JobUpdate>,
}

/// All jobs the sim knows, plus every update item received.
pub(crate) struct JobTable {
    jobs: HashMap<String, JobEntry>,
    received: Vec<JobUpdateItem>,
    next_id: u64,
}

impl JobTable {
    /// `base` is the first id handed out: the Core's ids are decimal strings from a sequence.
    pub fn new(base: u64) -> Self {
        JobTable {
            jobs: HashMap::new(),
            received: Vec::new(),
            next_id: base,
        }
    }

    pub fn allocate_id(&mut self) -> String {
        let id = self.next_id;
        self.next_id += 1;
        id.to_string()
    }

    /// Registers a job in state `IN_QUEUE` (the Core creates its record before calling the provider).
    pub fn insert(&mut self, job: Value) {
        let id = job["id"].as_str().unwrap_or_default().to_string();
        let owner = job["owner"]["createdBy"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let state = job["status"]["state"]
            .as_str()
            .and_then(|s| serde_json::from_value(Value::String(s.into())).ok())
            .unwrap_or(JobState::InQueue);
        self.jobs.insert(
            id,
            JobEntry {
                job,
                state,
                owner,
                applied: Vec::new(),
            },
        );
    }

    pub fn remove(&mut self, id: &str) -> Option<JobEntry> {
        self.jobs.remove(id)
    }

    pub fn set_provider_generated_id(&mut self, id: &str, provider_id: &str) {
        if let Some(e) = self.jobs.get_mut(id) {
            e.job["providerGeneratedId"] = json!(provider_id);
        }
    }

    pub fn get(&self, id: &str) -> Option<&JobEntry> {
        self.jobs.get(id)
    }

    pub fn received(&self) -> &[JobUpdateItem] {
        &self.received
    }

    /// The job as the Core sends it on calls after `create`: current status, `myself` holds the owner's
    /// permissions, no ACL (§10.9), `updates` left out as with `includeUpdates=false`.
    pub fn job_for_call(&self, id: &str) -> Option<(Value, String)> {
        let entry = self.jobs.get(id)?;
        let mut job = entry.job.clone();
        job["permissions"] = json!({"myself": ["ADMIN", "READ", "EDIT"], "others": []});
        job["updates"] = json!([]);
        Some((job, entry.owner.clone()))
    }

    /// `jobs.control.update`. Every id must be known, else nothing is applied and the unknown id is
    /// returned (the Core answers 404 for the whole batch). Items are recorded raw in arrival order.
    pub fn apply(&mut self, items: Vec<JobUpdateItem>) -> Result<(), String> {
        if let Some(unknown) = items.iter().find(|i| !self.jobs.contains_key(&i.id)) {
            return Err(unknown.id.clone());
        }
        let now = now_ms();
        for item in items {
            self.received.push(item.clone());
            let entry = self.jobs.get_mut(&item.id).expect("checked above");
            let mut update = item.update;
            update.timestamp = now;
            if !should_apply(entry.state, &update) {
                continue;
            }
            if let Some(state) = update.state.filter(|&s| s != entry.state) {
                entry.state = state;
                entry.job["status"]["state"] = json!(state.as_str());
                // Every change *to* RUNNING restarts the clock, also after SUSPENDED (core2 job.go).
                if state == JobState::Running {
                    entry.job["status"]["startedAt"] = json!(now);
                }
            }
            if let Some(folder) = &update.output_folder {
                entry.job["output"]["outputFolder"] = json!(folder);
            }
            if let Some(ms) = update.new_time_allocation {
                entry.job["specification"]["timeAllocation"] = json!(duration_from_millis(ms));
            }
            refresh_expiry(&mut entry.job);
            entry.applied.push(update);
        }
        Ok(())
    }
}

/// The Core derives `expiresAt` when it serves a job: `startedAt` + the stored allocation (which lost its
/// seconds if it came from `newTimeAllocation`); none before the job started or without an allocation.
fn refresh_expiry(job: &mut Value) {
    let alloc = serde_json::from_value::<Option<SimpleDuration>>(
        job["specification"]["timeAllocation"].clone(),
    );
    if let (Some(started), Ok(Some(d))) = (job["status"]["startedAt"].as_i64(), alloc) {
        job["status"]["expiresAt"] = json!(started + d.total_seconds() * 1000);
    }
}

/// The Core's filter: `expectedState` wins over `expectedDifferentState`; a job in a final state never
/// moves to another state (the whole update is skipped silently).
pub(crate) fn should_apply(current: JobState, update: &JobUpdate) -> bool {
    if let Some(expected) = update.expected_state {
        if current != expected {
            return false;
        }
    } else if update.expected_different_state == Some(true) && update.state == Some(current) {
        return false;
    }
    if current.is_final() {
        if let Some(next) = update.state {
            if next != current {
                return false;
            }
        }
    }
    true
}

/// The Core's `SimpleDurationFromMillis`, including its bug: the seconds component is always lost
/// (§9.10).
pub(crate) fn duration_from_millis(ms: i64) -> SimpleDuration {
    SimpleDuration {
        hours: ms / 3_600_000,
        minutes: (ms % 3_600_000) / 60_000,
        seconds: 0,
    }
}

/// Fills every field the Core's `AppParameterValue` always serialises (§4.2) without touching given ones.
pub(crate) fn full_parameter_value(mut value: Value) -> Value {
    let defaults = json!({
        "type": "text", "path": "", "mountPath": "", "readOnly": false, "value": null,
        "hostname": "", "jobId": "", "id": "",
        "specification": {"applicationName": "", "language": "", "init": "", "job": "", "readme": "", "inputs": null},
        "modules": null, "port": 0, "tls": false, "server": "", "token": "", "tokenType": ""
    });
    if let (Some(obj), Value::Object(defaults)) = (value.as_object_mut(), defaults) {
        for (k, v) in defaults {
            obj.entry(k).or_insert(v);
        }
    }
    value
}

/// What `new_job` needs to build the Core's `jobs.create` item.
pub(crate) struct NewJob<'a> {
    pub id: String,
    pub username: &'a str,
    pub product: ProductReference,
    pub resolved_product: Option<Value>,
    pub application: &'a str,
    pub parameters: Map<String, Value>,
    pub time: Option<SimpleDuration>,
}

/// The version the sim claims for every application (the Core always resolves one).
pub const APP_VERSION: &str = "1";

/// Builds the Job object exactly as the Core sends it on `jobs.create` (§4.2, errata §10.9–11, §10.14).
pub(crate) fn build_job(n: NewJob<'_>) -> Value {
    let user_params: Map<String, Value> = n
        .parameters
        .into_iter()
        .map(|(k, v)| (k, full_parameter_value(v)))
        .collect();
    let mut params = user_params.clone();
    params.insert(
        "ucMetricSampleRate".into(),
        full_parameter_value(json!({"type": "text", "value": "0ms"})),
    );
    let product =
        json!({"id": n.product.id, "category": n.product.category, "provider": n.product.provider});
    let resolved_product = n.resolved_product.unwrap_or(Value::Null);
    let (cpu, mem) = (
        resolved_product.get("cpu").cloned().unwrap_or(json!(0)),
        resolved_product
            .get("memoryInGigs")
            .cloned()
            .unwrap_or(json!(0)),
    );
    let time = n.time.map(|t| json!(t)).unwrap_or(Value::Null);
    let now = now_ms();
    json!({
        "id": n.id,
        "createdAt": now,
        "owner": {"createdBy": n.username, "project": null},
        "permissions": {"myself": [], "others": []},
        "updates": [],
        "specification": {
            "product": product,
            "labels": {},
            "application": {"name": n.application, "version": APP_VERSION},
            "hostname": null,
            "replicas": 1,
            "allowDuplicateJob": false,
            "parameters": params,
            "resources": [],
            "timeAllocation": time,
        },
        "status": {
            "state": "IN_QUEUE",
            "jobParametersJson": {
                "siteVersion": 3,
                "request": {
                    "application": {"name": n.application, "version": APP_VERSION},
                    "product": product,
                    "replicas": 1,
                    "parameters": user_params,
                    "resources": [],
                    "timeAllocation": n.time.map(|t| json!(t)).unwrap_or(json!({"hours":0,"minutes":0,"seconds":0})),
                    "resolvedProduct": resolved_product,
                    "resolvedSupport": null,
                    "allowDuplicateJob": false,
                    "sshEnabled": false
                },
                "resolvedResources": {"ingress": null},
                "machineType": {"cpu": cpu, "memoryInGigs": mem}
            },
            "startedAt": null,
            "expiresAt": null,
            "resolvedApplication": resolved_application(n.application),
            "resolvedProduct": resolved_product,
            "resolvedSupport": null,
            "allowRestart": false
        },
        "output": {"outputFolder": null}
    })
}

/// A plausible `resolvedApplication` (§10.11: `favorite` false, `versions` null, group a full object with
/// id -1, tool owner `_ucloud`). Providers must not rely on it; they use their own application table.
fn resolved_application(name: &str) -> Value {
    json!({
        "metadata": {
            "name": name, "version": APP_VERSION, "authors": ["UCloud"], "title": name,
            "description": "", "website": null, "public": true, "flavorName": null,
            "group": {"metadata": {"id": -1}, "specification": {"title": "", "description": "",
                      "defaultFlavor": "", "categories": [], "colorReplacement": {"light": null, "dark": null},
                      "logoHasText": false}, "status": {"applications": null}},
            "createdAt": now_ms()
        },
        "invocation": {
            "tool": {"name": name, "version": APP_VERSION, "tool": {
                "owner": "_ucloud", "createdAt": now_ms(), "modifiedAt": now_ms(),
                "description": {"info": {"name": name, "version": APP_VERSION}, "defaultNumberOfNodes": 1,
                    "defaultTimeAllocation": {"hours": 1, "minutes": 0, "seconds": 0}, "requiredModules": [],
                    "authors": ["UCloud"], "title": name, "description": "", "backend": "NATIVE",
                    "license": "", "image": "", "container": "", "supportedProviders": null,
                    "loadInstructions": null}}},
            "invocation": [],
            "parameters": [],
            "outputFileGlobs": ["*"],
            "applicationType": "BATCH",
            "vnc": null, "web": null, "ssh": null, "container": null,
            "environment": null, "allowAdditionalMounts": null, "allowAdditionalPeers": null,
            "allowMultiNode": false, "allowPublicIp": false, "allowPublicLink": false,
            "fileExtensions": [], "licenseServers": [], "modules": null, "sbatch": null
        },
        "favorite": false,
        "versions": null
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_with(id: &str) -> JobTable {
        let mut t = JobTable::new(100);
        t.insert(json!({"id": id, "owner": {"createdBy": "alice"}, "status": {"state": "IN_QUEUE"},
                         "specification": {"timeAllocation": {"hours": 1, "minutes": 0, "seconds": 0}},
                         "output": {"outputFolder": null}}));
        t
    }

    fn item(id: &str, state: Option<JobState>) -> JobUpdateItem {
        JobUpdateItem {
            id: id.into(),
            update: JobUpdate {
                state,
                ..Default::default()
            },
        }
    }

    #[test]
    fn unknown_id_rejects_whole_batch() {
        let mut t = table_with("1");
        let err = t
            .apply(vec![item("1", Some(JobState::Running)), item("2", None)])
            .unwrap_err();
        assert_eq!(err, "2");
        assert_eq!(t.get("1").unwrap().state, JobState::InQueue);
        assert!(t.received().is_empty());
    }

    #[test]
    fn final_state_is_sticky_and_expected_state_filters() {
        let mut t = table_with("1");
        t.apply(vec![item("1", Some(JobState::Running))]).unwrap();
        let job = &t.get("1").unwrap().job;
        assert!(job["status"]["startedAt"].is_i64());
        assert!(job["status"]["expiresAt"].is_i64());
        let mut guarded = item("1", Some(JobState::Success));
        guarded.update.expected_state = Some(JobState::InQueue);
        t.apply(vec![
            guarded,
            item("1", Some(JobState::Failure)),
            item("1", Some(JobState::Running)),
        ])
        .unwrap();
        t.apply(vec![item("1", Some(JobState::Success))]).unwrap();
        let e = t.get("1").unwrap();
        assert_eq!(e.state, JobState::Failure);
        assert_eq!(e.applied.len(), 2);
        assert_eq!(t.received().len(), 5);
        assert!(e.applied.iter().all(|u| u.timestamp > 0));
    }

    #[test]
    fn expected_different_state_dedups() {
        let mut t = table_with("1");
        let mut u = item("1", Some(JobState::Running));
        u.update.expected_different_state = Some(true);
        t.apply(vec![u.clone(), u.clone()]).unwrap();
        assert_eq!(t.get("1").unwrap().applied.len(), 1);
        // Status-only updates always apply.
        let mut s = item("1", None);
        s.update.status = Some("hello".into());
        s.update.expected_different_state = Some(true);
        t.apply(vec![s]).unwrap();
        assert_eq!(t.get("1").unwrap().applied.len(), 2);
    }

    #[test]
    fn new_time_allocation_moves_expiry_and_resuming_restarts_the_clock() {
        let mut t = table_with("1");
        let mut alloc = item("1", None);
        alloc.update.new_time_allocation = Some(2 * 3_600_000 + 30_000);
        t.apply(vec![alloc.clone()]).unwrap();
        let job = &t.get("1").unwrap().job;
        assert_eq!(
            job["specification"]["timeAllocation"],
            json!({"hours": 2, "minutes": 0, "seconds": 0})
        );
        assert!(
            job["status"]["expiresAt"].is_null(),
            "not started: no expiry"
        );
        t.apply(vec![item("1", Some(JobState::Running))]).unwrap();
        let job = &t.get("1").unwrap().job;
        let started = job["status"]["startedAt"].as_i64().unwrap();
        assert_eq!(
            job["status"]["expiresAt"].as_i64().unwrap(),
            started + 7_200_000
        );
        // RUNNING again without a change does not restart the clock; SUSPENDED → RUNNING does.
        t.apply(vec![item("1", Some(JobState::Running))]).unwrap();
        assert_eq!(
            t.get("1").unwrap().job["status"]["startedAt"]
                .as_i64()
                .unwrap(),
            started
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        t.apply(vec![
            item("1", Some(JobState::Suspended)),
            item("1", Some(JobState::Running)),
        ])
        .unwrap();
        assert!(
            t.get("1").unwrap().job["status"]["startedAt"]
                .as_i64()
                .unwrap()
                > started
        );
        alloc.update.new_time_allocation = Some(3 * 3_600_000);
        t.apply(vec![alloc]).unwrap();
        let job = &t.get("1").unwrap().job;
        assert_eq!(
            job["status"]["expiresAt"].as_i64().unwrap(),
            job["status"]["startedAt"].as_i64().unwrap() + 3 * 3_600_000
        );
    }

    #[test]
    fn time_extension_drops_seconds_like_the_core() {
        assert_eq!(
            duration_from_millis(7_265_000),
            SimpleDuration {
                hours: 2,
                minutes: 1,
                seconds: 0
            }
        );
    }

    #[test]
    fn built_job_decodes_as_protocol_job() {
        let mut params = Map::new();
        params.insert("seconds".into(), json!({"type": "integer", "value": 5}));
        let v = build_job(NewJob {
            id: "42".into(),
            username: "alice#1",
            product: ProductReference {
                id: "cpu-1".into(),
                category: "cpu".into(),
                provider: "p".into(),
            },
            resolved_product: None,
            application: "sleep",
            parameters: params,
            time: Some(SimpleDuration {
                hours: 0,
                minutes: 5,
                seconds: 0,
            }),
        });
        let job: protocol::Job = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            job.specification.parameters["ucMetricSampleRate"].value,
            json!("0ms")
        );
        assert_eq!(
            job.specification.parameters["seconds"].other["mountPath"],
            json!("")
        );
        assert!(v["status"]["jobParametersJson"]["request"]["parameters"]
            .get("ucMetricSampleRate")
            .is_none());
        assert_eq!(v["status"]["resolvedApplication"]["favorite"], json!(false));
    }
}
