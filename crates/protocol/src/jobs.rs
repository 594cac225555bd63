//! Jobs: the object the Core sends on `jobs.create` and later calls, and `jobs.control.update`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{null_as_default, ProductReference, SimpleDuration};

/// `{"createdBy": "alice#1234", "project": null}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceOwner {
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub project: Option<String>,
}

/// `{"name": "...", "version": "..."}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NameAndVersion {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
}

/// One value of `specification.parameters` or `specification.resources`. The Core serialises every field;
/// we keep the ones a Slurm provider reads and pass the rest through untouched.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppParameterValue {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub read_only: Option<bool>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl AppParameterValue {
    pub fn text(value: &str) -> Self {
        AppParameterValue { kind: "text".into(), value: Value::String(value.into()), ..Default::default() }
    }

    pub fn integer(value: i64) -> Self {
        AppParameterValue { kind: "integer".into(), value: Value::from(value), ..Default::default() }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobSpecification {
    pub product: ProductReference,
    #[serde(default)]
    pub application: NameAndVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "one")]
    pub replicas: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub parameters: BTreeMap<String, AppParameterValue>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Vec<AppParameterValue>,
    #[serde(default)]
    pub time_allocation: Option<SimpleDuration>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

fn one() -> i64 {
    1
}

/// The Job resource as the Core sends it. Large sub-objects (`status.resolvedApplication`, …) are kept as
/// raw JSON: the module uses its own product and application tables, not the Core's reconstruction.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub owner: ResourceOwner,
    #[serde(default)]
    pub permissions: Value,
    #[serde(default, deserialize_with = "null_as_default")]
    pub updates: Vec<Value>,
    pub specification: JobSpecification,
    #[serde(default)]
    pub status: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_generated_id: Option<String>,
}

/// UCloud's job states (§4.10). Final: `SUCCESS`, `FAILURE`, `EXPIRED`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    InQueue,
    Running,
    Success,
    Failure,
    Expired,
    Suspended,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Success | JobState::Failure | JobState::Expired)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::InQueue => "IN_QUEUE",
            JobState::Running => "RUNNING",
            JobState::Success => "SUCCESS",
            JobState::Failure => "FAILURE",
            JobState::Expired => "EXPIRED",
            JobState::Suspended => "SUSPENDED",
        }
    }
}

/// One entry of `jobs.control.update` (§4.12).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobUpdate {
    #[serde(default)]
    pub state: Option<JobState>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub output_folder: Option<String>,
    #[serde(default)]
    pub expected_state: Option<JobState>,
    #[serde(default)]
    pub expected_different_state: Option<bool>,
    #[serde(default)]
    pub new_time_allocation: Option<i64>,
    #[serde(default)]
    pub timestamp: i64,
}

/// One item of `jobs.extend` (§4.4): the job as the Core retrieves it now, and the time to add. (The
/// user-facing call carries `jobId`; the Core resolves it to the whole job before calling the provider.)
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobExtendItem {
    pub job: Job,
    pub requested_time: SimpleDuration,
}

/// One item of `jobs.suspend` and `jobs.unsuspend` (§4.5).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobItem {
    pub job: Job,
}

/// One item of `jobs.control.register` (`ProviderRegisteredResource<JobSpecification>`): a job the provider
/// found rather than was asked to run. The Core creates it `IN_QUEUE` and answers its id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegisterJob {
    pub spec: JobSpecification,
    #[serde(default)]
    pub provider_generated_id: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub project_all_read: bool,
    #[serde(default)]
    pub project_all_write: bool,
}

/// `{"id": "4821", "update": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobUpdateItem {
    pub id: String,
    pub update: JobUpdate,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trimmed version of the Core's `jobs.create` item, with fields we ignore and nulls where the Core
    /// sends them.
    const CREATE_ITEM: &str = r#"{
      "id": "4821", "createdAt": 1755770000000,
      "owner": {"createdBy": "alice#1234", "project": null},
      "permissions": {"myself": [], "others": []},
      "updates": [],
      "specification": {
        "product": {"id": "cpu-1", "category": "cpu", "provider": "slurm"},
        "labels": {},
        "application": {"name": "print-id", "version": "1"},
        "replicas": 1,
        "allowDuplicateJob": false,
        "parameters": {
          "seconds": {"type": "integer", "value": 5, "path": null, "mountPath": "", "readOnly": false},
          "ucMetricSampleRate": {"type": "text", "value": "0ms"}
        },
        "resources": null,
        "timeAllocation": {"hours": 1, "minutes": 0, "seconds": 0}
      },
      "status": {"state": "IN_QUEUE", "resolvedApplication": {"favorite": false}},
      "output": {"outputFolder": null}
    }"#;

    #[test]
    fn decodes_core_job() {
        let job: Job = serde_json::from_str(CREATE_ITEM).unwrap();
        assert_eq!(job.id, "4821");
        assert_eq!(job.owner.created_by, "alice#1234");
        assert_eq!(job.specification.product.id, "cpu-1");
        assert_eq!(job.specification.parameters["seconds"].value, Value::from(5));
        assert_eq!(job.specification.parameters["seconds"].other["mountPath"], Value::from(""));
        assert!(job.specification.resources.is_empty());
        assert_eq!(job.specification.time_allocation.unwrap().total_seconds(), 3600);
    }

    #[test]
    fn job_state_wire_names() {
        assert_eq!(serde_json::to_string(&JobState::InQueue).unwrap(), r#""IN_QUEUE""#);
        let s: JobState = serde_json::from_str(r#""EXPIRED""#).unwrap();
        assert!(s.is_final());
    }

    #[test]
    fn update_serialises_options_as_null() {
        let item = JobUpdateItem {
            id: "1".into(),
            update: JobUpdate { state: Some(JobState::Running), ..Default::default() },
        };
        let v: Value = serde_json::to_value(&item).unwrap();
        assert_eq!(v["update"]["state"], "RUNNING");
        assert_eq!(v["update"]["status"], Value::Null);
        assert_eq!(v["update"]["timestamp"], 0);
    }
}
