//! The AWS Batch job model in the JSON shape of the Batch API (`DescribeJobs`, `ListJobs`),
//! and the small [`BatchApi`] trait the watcher reads jobs through.
//!
//! Both the local Batch of the engine and the aws-sdk-batch adapter of `nton-watch` produce
//! these types, so the job-status model is written and tested once, against one shape.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// The `statusReason` AWS Batch gives a job (or child) that fails without running because a
/// job it depends on failed. The local Batch uses it too, so the status model can tell a
/// node's root failure from the stages it skipped.
pub const DEPENDENCY_FAILED_REASON: &str = "Dependent Job failed";

/// A job's (or array child's) status, as AWS Batch names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Submitted,
    Pending,
    Runnable,
    Starting,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Submitted,
        JobStatus::Pending,
        JobStatus::Runnable,
        JobStatus::Starting,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
    ];

    /// SUCCEEDED or FAILED: nothing will change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed)
    }

    /// The API spelling, e.g. `"RUNNABLE"`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Submitted => "SUBMITTED",
            JobStatus::Pending => "PENDING",
            JobStatus::Runnable => "RUNNABLE",
            JobStatus::Starting => "STARTING",
            JobStatus::Running => "RUNNING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
        }
    }

    /// This status's position in [`JobStatus::ALL`]: the one index for per-status counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses the API spelling.
    pub fn parse(text: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `dependsOn[].type`: how an array job depends on another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArrayDependencyType {
    #[serde(rename = "N_TO_N")]
    NToN,
    #[serde(rename = "SEQUENTIAL")]
    Sequential,
}

/// One entry of `dependsOn`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDependency {
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(rename = "type", default)]
    pub dependency_type: Option<ArrayDependencyType>,
}

/// `arrayProperties` of a `JobDetail`: on a parent, `size` and `statusSummary`; on a child, `index`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArrayPropertiesDetail {
    /// Children by status (parents only). AWS omits statuses with no child; absent counts are 0.
    #[serde(default)]
    pub status_summary: Option<BTreeMap<JobStatus, u32>>,
    #[serde(default)]
    pub size: Option<u32>,
    #[serde(default)]
    pub index: Option<u32>,
}

/// The container part of one attempt.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptContainerDetail {
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub log_stream_name: Option<String>,
}

/// One attempt of a job (a retry adds one).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptDetail {
    #[serde(default)]
    pub container: Option<AttemptContainerDetail>,
    /// Epoch milliseconds, as the API reports times.
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub stopped_at: Option<i64>,
    #[serde(default)]
    pub status_reason: Option<String>,
}

/// `DescribeJobs` output, one job: a plain job, an array parent or an array child.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDetail {
    pub job_id: String,
    pub job_name: String,
    #[serde(default)]
    pub job_queue: String,
    #[serde(default)]
    pub job_definition: String,
    pub status: JobStatus,
    #[serde(default)]
    pub status_reason: Option<String>,
    /// Epoch milliseconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub stopped_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<JobDependency>,
    #[serde(default)]
    pub array_properties: Option<ArrayPropertiesDetail>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptDetail>,
}

/// `arrayProperties` of a `JobSummary` (ListJobs).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArrayPropertiesSummary {
    #[serde(default)]
    pub size: Option<u32>,
    #[serde(default)]
    pub index: Option<u32>,
}

/// `container` of a `JobSummary`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSummary {
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `ListJobs` output, one job.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    pub job_id: String,
    pub job_name: String,
    #[serde(default)]
    pub status: Option<JobStatus>,
    #[serde(default)]
    pub status_reason: Option<String>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub stopped_at: Option<i64>,
    #[serde(default)]
    pub array_properties: Option<ArrayPropertiesSummary>,
    #[serde(default)]
    pub container: Option<ContainerSummary>,
}

/// A failed call to the Batch API (or the local Batch standing in for it).
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct BatchApiError {
    /// The API's error code, e.g. `ClientException`.
    pub code: String,
    pub message: String,
}

/// The two read calls the watcher makes. Implemented by the local Batch and by the
/// aws-sdk-batch adapter; implementations follow every page of `ListJobs` themselves.
#[async_trait::async_trait]
pub trait BatchApi: Send + Sync {
    /// `DescribeJobs` for up to 100 ids; unknown ids are left out, as AWS does.
    async fn describe_jobs(&self, job_ids: &[String]) -> Result<Vec<JobDetail>, BatchApiError>;

    /// `ListJobs(arrayJobId, jobStatus)`: the children of one array job in one status.
    async fn list_array_children(
        &self,
        array_job_id: &str,
        status: JobStatus,
    ) -> Result<Vec<JobSummary>, BatchApiError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_the_position_in_all() {
        for (position, status) in JobStatus::ALL.into_iter().enumerate() {
            assert_eq!(status.index(), position, "{status}");
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn job_detail_reads_the_api_shape_of_an_array_parent() {
        let json = r#"{
            "jobId": "p1", "jobName": "nton-procure-x", "jobQueue": "q", "jobDefinition": "d",
            "status": "PENDING", "createdAt": 1700000000000,
            "arrayProperties": {"size": 3, "statusSummary": {"RUNNING": 1, "SUCCEEDED": 2}}
        }"#;
        let job: JobDetail = serde_json::from_str(json).unwrap();
        assert_eq!(job.status, JobStatus::Pending);
        let summary = job.array_properties.unwrap().status_summary.unwrap();
        assert_eq!(summary[&JobStatus::Succeeded], 2);
        assert_eq!(summary.get(&JobStatus::Failed), None);
    }

    #[test]
    fn dependency_types_use_the_api_spelling() {
        let dep = JobDependency {
            job_id: Some("a".into()),
            dependency_type: Some(ArrayDependencyType::NToN),
        };
        assert_eq!(serde_json::to_string(&dep).unwrap(), r#"{"jobId":"a","type":"N_TO_N"}"#);
    }

    /// Absent optional fields are left out, as the API leaves them out (`skip_serializing_none`).
    #[test]
    fn absent_fields_are_not_written() {
        let dep =
            JobDependency { job_id: None, dependency_type: Some(ArrayDependencyType::Sequential) };
        assert_eq!(serde_json::to_string(&dep).unwrap(), r#"{"type":"SEQUENTIAL"}"#);
        let attempt = AttemptDetail { started_at: Some(1), ..AttemptDetail::default() };
        assert_eq!(serde_json::to_string(&attempt).unwrap(), r#"{"startedAt":1}"#);
    }

    #[test]
    fn status_parse_round_trips_every_status() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(JobStatus::parse("running"), None);
    }
}
