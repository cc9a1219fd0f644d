//! [`SdkBatch`]: the [`BatchApi`] trait over `aws_sdk_batch`, turning the SDK's types into
//! nton-core's Batch model (times stay epoch milliseconds, as the API gives them).

use aws_sdk_batch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_batch::types as sdk;
use nton_core::batch::{
    ArrayDependencyType, ArrayPropertiesDetail, ArrayPropertiesSummary, AttemptContainerDetail,
    AttemptDetail, BatchApi, BatchApiError, ContainerSummary, JobDependency, JobDetail, JobStatus,
    JobSummary,
};

/// `DescribeJobs` takes at most this many ids per call.
const DESCRIBE_BATCH: usize = 100;

/// Attempts per call (the first plus retries) in the SDK's standard retry mode: throttling
/// during a large run must not fail the poll.
pub const MAX_ATTEMPTS: u32 = 5;

/// AWS Batch through the AWS SDK.
#[derive(Clone, Debug)]
pub struct SdkBatch {
    client: aws_sdk_batch::Client,
}

impl SdkBatch {
    /// Wraps a client as configured by the caller.
    pub fn new(client: aws_sdk_batch::Client) -> SdkBatch {
        SdkBatch { client }
    }

    /// A client from shared SDK config, with standard retries of [`MAX_ATTEMPTS`] attempts.
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> SdkBatch {
        let conf = aws_sdk_batch::config::Builder::from(config)
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS),
            )
            .build();
        SdkBatch::new(aws_sdk_batch::Client::from_conf(conf))
    }
}

#[async_trait::async_trait]
impl BatchApi for SdkBatch {
    async fn describe_jobs(&self, job_ids: &[String]) -> Result<Vec<JobDetail>, BatchApiError> {
        let mut jobs = Vec::with_capacity(job_ids.len());
        for chunk in job_ids.chunks(DESCRIBE_BATCH) {
            let output = self
                .client
                .describe_jobs()
                .set_jobs(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(api_error)?;
            for job in output.jobs() {
                jobs.push(job_detail(job)?);
            }
        }
        Ok(jobs)
    }

    async fn list_array_children(
        &self,
        array_job_id: &str,
        status: JobStatus,
    ) -> Result<Vec<JobSummary>, BatchApiError> {
        // The paginator follows every nextToken.
        let summaries = self
            .client
            .list_jobs()
            .array_job_id(array_job_id)
            .job_status(sdk::JobStatus::from(status.as_str()))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(api_error)?;
        summaries.iter().map(job_summary).collect()
    }
}

fn api_error<E>(error: SdkError<E>) -> BatchApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error.code() {
        Some(code) => BatchApiError {
            code: code.to_string(),
            message: error.message().unwrap_or("no message").to_string(),
        },
        // No answer from the service (connection, timeout, credentials): the whole chain of
        // causes is the useful part.
        None => BatchApiError {
            code: "SdkError".to_string(),
            message: DisplayErrorContext(&error).to_string(),
        },
    }
}

fn unexpected(message: String) -> BatchApiError {
    BatchApiError { code: "UnexpectedResponse".to_string(), message }
}

fn status_of(job_id: &str, status: Option<&sdk::JobStatus>) -> Result<JobStatus, BatchApiError> {
    let text = status.map(sdk::JobStatus::as_str).unwrap_or("");
    JobStatus::parse(text).ok_or_else(|| {
        unexpected(format!("job {job_id} has status {text:?}, not a Batch job status"))
    })
}

/// Counts cannot be negative; an `i32` from the SDK that is, is read as 0.
fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// Converts one `DescribeJobs` entry.
pub fn job_detail(job: &sdk::JobDetail) -> Result<JobDetail, BatchApiError> {
    let job_id = job
        .job_id()
        .ok_or_else(|| unexpected("DescribeJobs returned a job without jobId".to_string()))?
        .to_string();
    let status = status_of(&job_id, job.status())?;
    let array_properties = job.array_properties().map(|props| ArrayPropertiesDetail {
        status_summary: props.status_summary().map(|summary| {
            summary
                .iter()
                // A status this model does not know is left out rather than failing the poll.
                .filter_map(|(name, n)| JobStatus::parse(name).map(|status| (status, count(*n))))
                .collect()
        }),
        size: props.size().map(count),
        index: props.index().map(count),
    });
    Ok(JobDetail {
        job_name: job.job_name().unwrap_or_default().to_string(),
        job_queue: job.job_queue().unwrap_or_default().to_string(),
        job_definition: job.job_definition().unwrap_or_default().to_string(),
        status,
        status_reason: job.status_reason().map(str::to_string),
        created_at: job.created_at(),
        started_at: job.started_at(),
        stopped_at: job.stopped_at(),
        depends_on: job
            .depends_on()
            .iter()
            .map(|dep| JobDependency {
                job_id: dep.job_id().map(str::to_string),
                dependency_type: dep.r#type().and_then(|t| match t {
                    sdk::ArrayJobDependency::NToN => Some(ArrayDependencyType::NToN),
                    sdk::ArrayJobDependency::Sequential => Some(ArrayDependencyType::Sequential),
                    _ => None,
                }),
            })
            .collect(),
        array_properties,
        attempts: job
            .attempts()
            .iter()
            .map(|attempt| AttemptDetail {
                container: attempt.container().map(|c| AttemptContainerDetail {
                    exit_code: c.exit_code(),
                    reason: c.reason().map(str::to_string),
                    log_stream_name: c.log_stream_name().map(str::to_string),
                }),
                started_at: attempt.started_at(),
                stopped_at: attempt.stopped_at(),
                status_reason: attempt.status_reason().map(str::to_string),
            })
            .collect(),
        job_id,
    })
}

/// Converts one `ListJobs` entry.
pub fn job_summary(job: &sdk::JobSummary) -> Result<JobSummary, BatchApiError> {
    let job_id = job
        .job_id()
        .ok_or_else(|| unexpected("ListJobs returned a job without jobId".to_string()))?
        .to_string();
    let status = match job.status() {
        None => None,
        Some(status) => Some(status_of(&job_id, Some(status))?),
    };
    Ok(JobSummary {
        job_name: job.job_name().unwrap_or_default().to_string(),
        status,
        status_reason: job.status_reason().map(str::to_string),
        created_at: job.created_at(),
        started_at: job.started_at(),
        stopped_at: job.stopped_at(),
        array_properties: job.array_properties().map(|props| ArrayPropertiesSummary {
            size: props.size().map(count),
            index: props.index().map(count),
        }),
        container: job.container().map(|c| ContainerSummary {
            exit_code: c.exit_code(),
            reason: c.reason().map(str::to_string),
        }),
        job_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_array_parent_converts_with_its_summary() {
        let job = sdk::JobDetail::builder()
            .job_id("p1")
            .job_name("nton-procure-x")
            .status(sdk::JobStatus::Pending)
            .created_at(1_700_000_000_000)
            .array_properties(
                sdk::ArrayPropertiesDetail::builder()
                    .size(3)
                    .status_summary("RUNNING", 1)
                    .status_summary("SUCCEEDED", 2)
                    .status_summary("SOMETHING_NEW", 9)
                    .build(),
            )
            .depends_on(
                sdk::JobDependency::builder()
                    .job_id("p0")
                    .r#type(sdk::ArrayJobDependency::NToN)
                    .build(),
            )
            .build();
        let detail = job_detail(&job).unwrap();
        assert_eq!(detail.job_id, "p1");
        assert_eq!(detail.status, JobStatus::Pending);
        assert_eq!(detail.created_at, Some(1_700_000_000_000));
        let props = detail.array_properties.unwrap();
        assert_eq!(props.size, Some(3));
        let summary = props.status_summary.unwrap();
        assert_eq!(summary.len(), 2);
        assert_eq!(summary[&JobStatus::Succeeded], 2);
        assert_eq!(detail.depends_on[0].dependency_type, Some(ArrayDependencyType::NToN));
    }

    #[test]
    fn a_failed_child_summary_keeps_index_reason_and_exit_code() {
        let job = sdk::JobSummary::builder()
            .job_id("p1:4")
            .job_name("n")
            .status(sdk::JobStatus::Failed)
            .status_reason("Essential container in task exited")
            .container(sdk::ContainerSummary::builder().exit_code(3).build())
            .array_properties(sdk::ArrayPropertiesSummary::builder().index(4).build())
            .build();
        let summary = job_summary(&job).unwrap();
        assert_eq!(summary.status, Some(JobStatus::Failed));
        assert_eq!(summary.array_properties.unwrap().index, Some(4));
        assert_eq!(summary.container.unwrap().exit_code, Some(3));
    }

    #[test]
    fn missing_ids_and_unknown_statuses_are_errors() {
        let no_id = sdk::JobDetail::builder().status(sdk::JobStatus::Running).build();
        assert_eq!(
            job_detail(&no_id).unwrap_err().to_string(),
            "UnexpectedResponse: DescribeJobs returned a job without jobId"
        );
        let odd =
            sdk::JobDetail::builder().job_id("j").status(sdk::JobStatus::from("PAUSED")).build();
        assert_eq!(
            job_detail(&odd).unwrap_err().to_string(),
            "UnexpectedResponse: job j has status \"PAUSED\", not a Batch job status"
        );
    }

    mod replayed {
        use aws_sdk_batch::config::{BehaviorVersion, Credentials, Region};
        use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
        use aws_smithy_types::body::SdkBody;
        use serde_json::{Value, json};

        use super::*;

        fn answer(status: u16, body: Value) -> http::Response<SdkBody> {
            let mut response = http::Response::builder().status(status);
            if let Some(kind) = body.get("__type").and_then(Value::as_str) {
                response = response.header("x-amzn-errortype", kind);
            }
            response.body(SdkBody::from(body.to_string())).unwrap()
        }

        fn request(operation: &str) -> http::Request<SdkBody> {
            http::Request::builder()
                .uri(format!("https://batch.us-east-1.amazonaws.com/v1/{operation}"))
                .body(SdkBody::empty())
                .unwrap()
        }

        fn batch(events: Vec<ReplayEvent>) -> (SdkBatch, StaticReplayClient) {
            let replay = StaticReplayClient::new(events);
            let conf = aws_sdk_batch::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("a", "b", None, None, "test"))
                .http_client(replay.clone())
                .build();
            (SdkBatch::new(aws_sdk_batch::Client::from_conf(conf)), replay)
        }

        fn bodies(replay: &StaticReplayClient) -> Vec<Value> {
            replay
                .actual_requests()
                .map(|r| serde_json::from_slice(r.body().bytes().unwrap()).unwrap())
                .collect()
        }

        #[tokio::test]
        async fn list_jobs_follows_every_page() {
            let (batch, replay) = batch(vec![
                ReplayEvent::new(
                    request("listjobs"),
                    answer(
                        200,
                        json!({"nextToken": "t1", "jobSummaryList": [
                        {"jobId": "p:0", "jobName": "n", "status": "FAILED", "arrayProperties": {"index": 0}}]}),
                    ),
                ),
                ReplayEvent::new(
                    request("listjobs"),
                    answer(200, json!({"nextToken": "t2", "jobSummaryList": []})),
                ),
                ReplayEvent::new(
                    request("listjobs"),
                    answer(
                        200,
                        json!({"jobSummaryList": [
                        {"jobId": "p:7", "jobName": "n", "status": "FAILED", "statusReason": "boom"}]}),
                    ),
                ),
            ]);
            let children = batch.list_array_children("p", JobStatus::Failed).await.unwrap();
            let ids: Vec<&str> = children.iter().map(|c| c.job_id.as_str()).collect();
            assert_eq!(ids, ["p:0", "p:7"]);
            assert_eq!(children[1].status_reason.as_deref(), Some("boom"));
            let sent = bodies(&replay);
            assert_eq!(sent.len(), 3);
            for body in &sent {
                assert_eq!(body["arrayJobId"], "p");
                assert_eq!(body["jobStatus"], "FAILED");
            }
            assert_eq!(sent[0].get("nextToken"), None);
            assert_eq!(sent[1]["nextToken"], "t1");
            assert_eq!(sent[2]["nextToken"], "t2");
        }

        #[tokio::test]
        async fn describe_jobs_asks_at_most_100_ids_per_call() {
            let ids: Vec<String> = (0..150).map(|i| format!("j{i}")).collect();
            let (batch, replay) = batch(vec![
                ReplayEvent::new(
                    request("describejobs"),
                    answer(
                        200,
                        json!({"jobs": [{"jobId": "j3", "jobName": "n", "status": "RUNNING",
                        "jobQueue": "q", "jobDefinition": "d", "startedAt": 5}]}),
                    ),
                ),
                ReplayEvent::new(request("describejobs"), answer(200, json!({"jobs": []}))),
            ]);
            let jobs = batch.describe_jobs(&ids).await.unwrap();
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].status, JobStatus::Running);
            assert_eq!(jobs[0].started_at, Some(5));
            let sent = bodies(&replay);
            assert_eq!(sent[0]["jobs"].as_array().unwrap().len(), 100);
            assert_eq!(sent[1]["jobs"].as_array().unwrap().len(), 50);
            assert_eq!(sent[1]["jobs"][0], "j100");
        }

        #[tokio::test]
        async fn service_errors_keep_their_code_and_message() {
            let (batch, _) = batch(vec![ReplayEvent::new(
                request("describejobs"),
                answer(400, json!({"__type": "ClientException", "message": "jobs: too many"})),
            )]);
            let error = batch.describe_jobs(&["j".to_string()]).await.unwrap_err();
            assert_eq!(error.code, "ClientException");
            assert_eq!(error.message, "jobs: too many");
        }
    }
}
