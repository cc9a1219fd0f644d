//! The cleanup of a run that was stopped or timed out. An ABORTED or TIMED_OUT execution runs
//! no state at all, so the state machine's own cleanup states (reached through its Catch) never
//! run and the run's Batch jobs would go on. An EventBridge rule on this state machine's
//! "Step Functions Execution Status Change" events for ABORTED and TIMED_OUT invokes the
//! watcher Lambda with the event; [`handle`] reads the execution's history for the job ids the
//! `batch:submitJob` states got back (their `TaskSucceeded` outputs carry `JobId`), and calls
//! `TerminateJob` on each with a reason naming the execution. TerminateJob on an array parent
//! takes its children with it, and on a job that already ended it changes nothing, so a
//! repeated event (EventBridge and Lambda both retry) is harmless.
//!
//! Step Functions and Batch are reached through [`CleanupApi`]: [`SdkCleanup`] on AWS, a fake
//! in the tests.

use lambda_runtime::Diagnostic;
use serde_json::{Value, json};

/// EventBridge's `detail-type` of a Step Functions execution status change.
pub const STATUS_CHANGE: &str = "Step Functions Execution Status Change";

/// The statuses this cleanup handles: the ones after which no state of the machine runs.
pub const STOPPED_STATUSES: [&str; 2] = ["ABORTED", "TIMED_OUT"];

/// The execution history page size (the API's maximum).
const HISTORY_PAGE: i32 = 1000;

/// Why a cleanup did not finish. Each kind has a stable error type, for the logs and for
/// Lambda's asynchronous retries.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// The event is not a status change this cleanup handles.
    #[error("bad event: {field}: {problem}")]
    BadEvent { field: String, problem: String },
    /// GetExecutionHistory failed.
    #[error("GetExecutionHistory {execution_arn}: {message}")]
    History { execution_arn: String, message: String },
    /// Some TerminateJob calls failed (the others were made).
    #[error("TerminateJob failed for {}", failures.join("; "))]
    Terminate { failures: Vec<String> },
}

impl CleanupError {
    /// The stable `errorType` Lambda reports.
    pub fn error_type(&self) -> &'static str {
        match self {
            CleanupError::BadEvent { .. } => "nton.BadEvent",
            CleanupError::History { .. } => "nton.ExecutionHistoryError",
            CleanupError::Terminate { .. } => "nton.TerminateJobError",
        }
    }
}

impl From<CleanupError> for Diagnostic {
    fn from(error: CleanupError) -> Diagnostic {
        Diagnostic { error_type: error.error_type().to_string(), error_message: error.to_string() }
    }
}

/// Whether a Lambda event is an EventBridge Step Functions status change (the watcher's other
/// event, from the Watch state, has no `detail-type`).
pub fn is_status_change(event: &Value) -> bool {
    event.get("detail-type").and_then(Value::as_str) == Some(STATUS_CHANGE)
        && event.get("source").and_then(Value::as_str) == Some("aws.states")
}

/// The execution an event says was stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoppedExecution {
    pub execution_arn: String,
    pub name: String,
    pub status: String,
}

impl StoppedExecution {
    /// Reads `detail.executionArn`, `detail.name` and `detail.status` (ABORTED or TIMED_OUT).
    pub fn parse(event: &Value) -> Result<StoppedExecution, CleanupError> {
        let field = |name: &str| -> Result<String, CleanupError> {
            match event.get("detail").and_then(|d| d.get(name)) {
                Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
                _ => Err(CleanupError::BadEvent {
                    field: format!("detail.{name}"),
                    problem: "missing or not a non-empty string".into(),
                }),
            }
        };
        let execution_arn = field("executionArn")?;
        if !execution_arn.contains(":execution:") {
            return Err(CleanupError::BadEvent {
                field: "detail.executionArn".into(),
                problem: format!("{execution_arn:?} is not an execution ARN"),
            });
        }
        let status = field("status")?;
        if !STOPPED_STATUSES.contains(&status.as_str()) {
            return Err(CleanupError::BadEvent {
                field: "detail.status".into(),
                problem: format!(
                    "{status:?}: only {} executions are cleaned up here (a FAILED run cleans up in its own states)",
                    STOPPED_STATUSES.join(" and ")
                ),
            });
        }
        Ok(StoppedExecution { execution_arn, name: field("name")?, status })
    }

    /// The reason recorded on each terminated job: names the execution and what happened.
    pub fn reason(&self) -> String {
        format!(
            "nton cleanup: execution {} was {} ({})",
            self.name, self.status, self.execution_arn
        )
    }
}

/// The parts of one history event the cleanup reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryEvent {
    /// The event type, e.g. `TaskSucceeded`.
    pub kind: String,
    /// `resourceType` and `resource` of a task event (`batch`, `submitJob`).
    pub resource_type: Option<String>,
    pub resource: Option<String>,
    /// The task's output (a JSON string) on `TaskSucceeded`.
    pub output: Option<String>,
}

/// One page of an execution's history, oldest first, and the token of the next.
pub type HistoryPage = (Vec<HistoryEvent>, Option<String>);

/// What the cleanup calls.
#[async_trait::async_trait]
pub trait CleanupApi: Send + Sync {
    /// GetExecutionHistory, oldest first, from `next_token`.
    async fn history_page(
        &self,
        execution_arn: &str,
        next_token: Option<String>,
    ) -> Result<HistoryPage, String>;

    /// TerminateJob with a reason.
    async fn terminate_job(&self, job_id: &str, reason: &str) -> Result<(), String>;
}

/// What the history says the run submitted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Submitted {
    /// `(job id, job name)` of each submitJob that succeeded, in submission order.
    pub jobs: Vec<(String, String)>,
    /// submitJob calls scheduled without an answer in the history: the execution stopped
    /// while they were in flight, so a job may exist that the history does not name.
    pub unanswered: usize,
    /// A Lambda task (the watcher's first poll) was scheduled after the submissions, all
    /// answered: every stage job was submitted by then, whatever the number of stages.
    pub submissions_over: bool,
}

/// Whether a task event is one of the optimized Batch integration's `submitJob` calls.
fn is_submit(event: &HistoryEvent) -> bool {
    event.resource_type.as_deref() == Some("batch")
        && event.resource.as_deref().is_some_and(|r| r.starts_with("submitJob"))
}

/// Collects the submitted jobs from history events, oldest first.
pub fn submitted_jobs(events: &[HistoryEvent], found: &mut Submitted) {
    for event in events {
        if !is_submit(event) {
            if event.kind == "TaskScheduled"
                && event.resource_type.as_deref() == Some("lambda")
                && !found.jobs.is_empty()
                && found.unanswered == 0
            {
                found.submissions_over = true;
            }
            continue;
        }
        match event.kind.as_str() {
            "TaskScheduled" => found.unanswered += 1,
            "TaskSucceeded" => {
                found.unanswered = found.unanswered.saturating_sub(1);
                let output: Value = event
                    .output
                    .as_deref()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or(Value::Null);
                if let Some(job_id) = output.get("JobId").and_then(Value::as_str) {
                    let name = output.get("JobName").and_then(Value::as_str).unwrap_or_default();
                    found.jobs.push((job_id.to_string(), name.to_string()));
                }
            }
            "TaskFailed" | "TaskTimedOut" | "TaskSubmitFailed" | "TaskStartFailed" => {
                found.unanswered = found.unanswered.saturating_sub(1);
            }
            _ => {}
        }
    }
}

/// Cleans up after one stopped execution: terminates every job its history shows submitted.
/// Returns what was done; a failed TerminateJob is an error (after the others were tried), so
/// that Lambda's asynchronous retry tries again.
pub async fn handle(event: Value, api: &dyn CleanupApi) -> Result<Value, CleanupError> {
    let execution = StoppedExecution::parse(&event)?;
    let mut found = Submitted::default();
    let mut token = None;
    loop {
        let (events, next) =
            api.history_page(&execution.execution_arn, token.take()).await.map_err(|message| {
                CleanupError::History { execution_arn: execution.execution_arn.clone(), message }
            })?;
        submitted_jobs(&events, &mut found);
        // Submissions come right after Init, in the first page; a long run's thousands of
        // Watch polls after them need not be read.
        if found.submissions_over {
            break;
        }
        match next {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => break,
        }
    }
    let reason = execution.reason();
    let mut terminated = Vec::new();
    let mut failures = Vec::new();
    for (job_id, name) in &found.jobs {
        match api.terminate_job(job_id, &reason).await {
            Ok(()) => terminated.push(json!({"jobId": job_id, "jobName": name})),
            Err(message) => failures.push(format!("{job_id} ({name}): {message}")),
        }
    }
    if !failures.is_empty() {
        return Err(CleanupError::Terminate { failures });
    }
    if found.unanswered > 0 {
        tracing::warn!(
            execution = %execution.execution_arn,
            "{} submitJob call(s) were in flight when the execution stopped; a job they made is not in the history",
            found.unanswered
        );
    }
    Ok(json!({
        "execution": execution.execution_arn,
        "status": execution.status,
        "terminated": terminated,
        "unansweredSubmissions": found.unanswered,
    }))
}

/// [`CleanupApi`] over the AWS SDK.
#[derive(Clone, Debug)]
pub struct SdkCleanup {
    sfn: aws_sdk_sfn::Client,
    batch: aws_sdk_batch::Client,
}

impl SdkCleanup {
    /// Wraps clients configured by the caller.
    pub fn new(sfn: aws_sdk_sfn::Client, batch: aws_sdk_batch::Client) -> SdkCleanup {
        SdkCleanup { sfn, batch }
    }

    /// Clients from shared SDK config, with the same standard retries as the watcher's Batch
    /// client.
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> SdkCleanup {
        let retry =
            aws_config::retry::RetryConfig::standard().with_max_attempts(crate::sdk::MAX_ATTEMPTS);
        let sfn = aws_sdk_sfn::config::Builder::from(config).retry_config(retry.clone()).build();
        let batch = aws_sdk_batch::config::Builder::from(config).retry_config(retry).build();
        SdkCleanup::new(
            aws_sdk_sfn::Client::from_conf(sfn),
            aws_sdk_batch::Client::from_conf(batch),
        )
    }
}

/// `Code: message` of an SDK error.
fn sdk_error_text<E>(error: &E) -> String
where
    E: aws_sdk_batch::error::ProvideErrorMetadata + std::error::Error,
{
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => aws_sdk_batch::error::DisplayErrorContext(error).to_string(),
    }
}

#[async_trait::async_trait]
impl CleanupApi for SdkCleanup {
    async fn history_page(
        &self,
        execution_arn: &str,
        next_token: Option<String>,
    ) -> Result<HistoryPage, String> {
        let page = self
            .sfn
            .get_execution_history()
            .execution_arn(execution_arn)
            .max_results(HISTORY_PAGE)
            .include_execution_data(true)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| sdk_error_text(&e))?;
        let events = page
            .events()
            .iter()
            .map(|event| {
                let mut out = HistoryEvent {
                    kind: event.r#type().as_str().to_string(),
                    ..HistoryEvent::default()
                };
                if let Some(d) = event.task_scheduled_event_details() {
                    out.resource_type = Some(d.resource_type().to_string());
                    out.resource = Some(d.resource().to_string());
                } else if let Some(d) = event.task_succeeded_event_details() {
                    out.resource_type = Some(d.resource_type().to_string());
                    out.resource = Some(d.resource().to_string());
                    out.output = d.output().map(str::to_string);
                } else if let Some(d) = event.task_failed_event_details() {
                    out.resource_type = Some(d.resource_type().to_string());
                    out.resource = Some(d.resource().to_string());
                } else if let Some(d) = event.task_timed_out_event_details() {
                    out.resource_type = Some(d.resource_type().to_string());
                    out.resource = Some(d.resource().to_string());
                } else if let Some(d) = event.task_submit_failed_event_details() {
                    out.resource_type = Some(d.resource_type().to_string());
                    out.resource = Some(d.resource().to_string());
                } else if let Some(d) = event.task_start_failed_event_details() {
                    out.resource_type = Some(d.resource_type().to_string());
                    out.resource = Some(d.resource().to_string());
                }
                out
            })
            .collect();
        Ok((events, page.next_token().map(str::to_string)))
    }

    async fn terminate_job(&self, job_id: &str, reason: &str) -> Result<(), String> {
        self.batch
            .terminate_job()
            .job_id(job_id)
            .reason(reason)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error_text(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const EXECUTION: &str =
        "arn:aws:states:us-east-1:123456789012:execution:nton-dev-pipeline:run-7";

    fn event(status: &str) -> Value {
        json!({
            "version": "0",
            "detail-type": STATUS_CHANGE,
            "source": "aws.states",
            "resources": [EXECUTION],
            "detail": {
                "executionArn": EXECUTION,
                "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:nton-dev-pipeline",
                "name": "run-7",
                "status": status,
                "error": null,
                "cause": null
            }
        })
    }

    fn task(
        kind: &str,
        resource_type: &str,
        resource: &str,
        output: Option<Value>,
    ) -> HistoryEvent {
        HistoryEvent {
            kind: kind.into(),
            resource_type: Some(resource_type.into()),
            resource: Some(resource.into()),
            output: output.map(|o| o.to_string()),
        }
    }

    fn submit(id: &str, stage: &str) -> Vec<HistoryEvent> {
        vec![
            task("TaskScheduled", "batch", "submitJob", None),
            task(
                "TaskSucceeded",
                "batch",
                "submitJob",
                Some(json!({"JobId": id, "JobName": format!("nton-{stage}-wf1"), "JobArn": "a"})),
            ),
        ]
    }

    /// Answers history from fixed pages and records every call.
    #[derive(Default)]
    struct Fake {
        pages: Vec<Vec<HistoryEvent>>,
        history_calls: Mutex<Vec<Option<String>>>,
        terminated: Mutex<Vec<(String, String)>>,
        refuse: Option<String>,
    }

    #[async_trait::async_trait]
    impl CleanupApi for Fake {
        async fn history_page(
            &self,
            _execution_arn: &str,
            next_token: Option<String>,
        ) -> Result<HistoryPage, String> {
            self.history_calls.lock().unwrap().push(next_token.clone());
            let index: usize = next_token.map(|t| t.parse().unwrap()).unwrap_or(0);
            let next = (index + 1 < self.pages.len()).then(|| (index + 1).to_string());
            Ok((self.pages[index].clone(), next))
        }

        async fn terminate_job(&self, job_id: &str, reason: &str) -> Result<(), String> {
            if self.refuse.as_deref() == Some(job_id) {
                return Err("ClientException: nope".into());
            }
            self.terminated.lock().unwrap().push((job_id.into(), reason.into()));
            Ok(())
        }
    }

    fn init_and_submits() -> Vec<HistoryEvent> {
        let mut events = vec![
            HistoryEvent { kind: "ExecutionStarted".into(), ..HistoryEvent::default() },
            task("TaskScheduled", "lambda", "invoke", None),
            task(
                "TaskSucceeded",
                "lambda",
                "invoke",
                Some(json!({"Payload": {"JobId": "not-a-batch-job"}})),
            ),
        ];
        events.extend(submit("p-1", "procure"));
        events.extend(submit("q-2", "process"));
        events.extend(submit("e-3", "egress"));
        events
    }

    /// The Watch state's first poll, after the submissions.
    fn first_poll() -> HistoryEvent {
        task("TaskScheduled", "lambda", "invoke", None)
    }

    #[tokio::test]
    async fn an_aborted_run_has_its_three_jobs_terminated_with_a_reason_naming_the_execution() {
        let mut first = init_and_submits();
        first.push(first_poll());
        let fake = Fake { pages: vec![first, vec![]], ..Fake::default() };
        let answer = handle(event("ABORTED"), &fake).await.unwrap();
        let terminated = fake.terminated.lock().unwrap().clone();
        let ids: Vec<&str> = terminated.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["p-1", "q-2", "e-3"]);
        for (_, reason) in &terminated {
            assert_eq!(reason, &format!("nton cleanup: execution run-7 was ABORTED ({EXECUTION})"));
        }
        assert_eq!(answer["terminated"][1]["jobName"], "nton-process-wf1");
        assert_eq!(answer["unansweredSubmissions"], 0);
        // All three found in the first page, before the first poll: the poll events after it
        // are not read.
        assert_eq!(fake.history_calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn every_stage_a_template_submits_is_terminated_however_many() {
        let mut first = init_and_submits();
        first.extend(submit("c-4", "check"));
        first.push(first_poll());
        let fake = Fake { pages: vec![first, vec![]], ..Fake::default() };
        handle(event("ABORTED"), &fake).await.unwrap();
        let terminated = fake.terminated.lock().unwrap().clone();
        let ids: Vec<&str> = terminated.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["p-1", "q-2", "e-3", "c-4"]);
        assert_eq!(fake.history_calls.lock().unwrap().len(), 1);
        // Without the poll in the first page, the next page is read for more submissions.
        let fake = Fake {
            pages: vec![init_and_submits(), [submit("c-4", "check"), vec![first_poll()]].concat()],
            ..Fake::default()
        };
        handle(event("ABORTED"), &fake).await.unwrap();
        assert_eq!(fake.terminated.lock().unwrap().len(), 4);
        assert_eq!(fake.history_calls.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_timed_out_run_found_over_pages_and_a_submission_in_flight_is_counted() {
        let mut first = init_and_submits();
        first.truncate(first.len() - 2); // egress not yet submitted on this page
        let second = vec![task("TaskScheduled", "batch", "submitJob", None)];
        let fake = Fake { pages: vec![first, second], ..Fake::default() };
        let answer = handle(event("TIMED_OUT"), &fake).await.unwrap();
        let terminated = fake.terminated.lock().unwrap().clone();
        assert_eq!(terminated.len(), 2);
        assert!(terminated[0].1.contains("was TIMED_OUT"));
        assert_eq!(answer["unansweredSubmissions"], 1);
        assert_eq!(*fake.history_calls.lock().unwrap(), vec![None, Some("1".to_string())]);
    }

    #[tokio::test]
    async fn a_failed_terminate_is_an_error_after_the_others_were_tried() {
        let fake =
            Fake { pages: vec![init_and_submits()], refuse: Some("q-2".into()), ..Fake::default() };
        let error = handle(event("ABORTED"), &fake).await.unwrap_err();
        assert_eq!(error.error_type(), "nton.TerminateJobError");
        assert!(error.to_string().contains("q-2 (nton-process-wf1): ClientException"), "{error}");
        assert_eq!(fake.terminated.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_run_stopped_before_any_submission_terminates_nothing() {
        let fake = Fake { pages: vec![init_and_submits()[..3].to_vec()], ..Fake::default() };
        let answer = handle(event("ABORTED"), &fake).await.unwrap();
        assert_eq!(answer["terminated"], json!([]));
        assert!(fake.terminated.lock().unwrap().is_empty());
    }

    #[test]
    fn only_stopped_or_timed_out_status_changes_are_accepted() {
        assert!(is_status_change(&event("ABORTED")));
        assert!(!is_status_change(&json!({"workflowId": "x", "jobs": {}})));
        let error = StoppedExecution::parse(&event("FAILED")).unwrap_err();
        assert!(error.to_string().contains("detail.status"), "{error}");
        let mut bad = event("ABORTED");
        bad["detail"]["executionArn"] = json!("arn:aws:states:us-east-1:1:stateMachine:x");
        let error = StoppedExecution::parse(&bad).unwrap_err();
        assert!(error.to_string().contains("not an execution ARN"), "{error}");
        let mut bad = event("ABORTED");
        bad["detail"].as_object_mut().unwrap().remove("name");
        assert_eq!(StoppedExecution::parse(&bad).unwrap_err().error_type(), "nton.BadEvent");
    }

    /// The SDK adapter against recorded HTTP answers: which history fields it reads, and what it
    /// sends to TerminateJob.
    mod replayed {
        use aws_sdk_batch::config::{BehaviorVersion, Credentials, Region};
        use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
        use aws_smithy_types::body::SdkBody;

        use super::*;

        fn answer(status: u16, body: Value) -> http::Response<SdkBody> {
            let mut response = http::Response::builder().status(status);
            if let Some(kind) = body.get("__type").and_then(Value::as_str) {
                response = response.header("x-amzn-errortype", kind);
            }
            response.body(SdkBody::from(body.to_string())).unwrap()
        }

        fn request(uri: &str) -> http::Request<SdkBody> {
            http::Request::builder().uri(uri).body(SdkBody::empty()).unwrap()
        }

        fn sdk(events: Vec<ReplayEvent>) -> (SdkCleanup, StaticReplayClient) {
            let replay = StaticReplayClient::new(events);
            let credentials = Credentials::new("a", "b", None, None, "test");
            let sfn = aws_sdk_sfn::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(credentials.clone())
                .http_client(replay.clone())
                .build();
            let batch = aws_sdk_batch::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(credentials)
                .http_client(replay.clone())
                .build();
            (
                SdkCleanup::new(
                    aws_sdk_sfn::Client::from_conf(sfn),
                    aws_sdk_batch::Client::from_conf(batch),
                ),
                replay,
            )
        }

        #[tokio::test]
        async fn the_history_is_read_for_submissions_and_each_job_terminated_with_the_reason() {
            let submitted = |id: u32, job: &str| {
                json!({"timestamp": 1.7e9, "type": "TaskSucceeded", "id": id, "previousEventId": id - 1,
                       "taskSucceededEventDetails": {"resourceType": "batch", "resource": "submitJob",
                           "output": json!({"JobId": job, "JobName": format!("nton-{job}-w")}).to_string()}})
            };
            let scheduled = |id: u32| {
                json!({"timestamp": 1.7e9, "type": "TaskScheduled", "id": id, "previousEventId": id - 1,
                       "taskScheduledEventDetails": {"resourceType": "batch", "resource": "submitJob",
                           "region": "us-east-1", "parameters": "{}"}})
            };
            let history = json!({"events": [
                {"timestamp": 1.7e9, "type": "ExecutionStarted", "id": 1, "previousEventId": 0,
                 "executionStartedEventDetails": {"input": "{}"}},
                scheduled(2), submitted(3, "procure"),
                scheduled(4), submitted(5, "process"),
                scheduled(6), submitted(7, "egress"),
                {"timestamp": 1.7e9, "type": "ExecutionAborted", "id": 8, "previousEventId": 7}
            ]});
            let states = "https://states.us-east-1.amazonaws.com/";
            let terminate = "https://batch.us-east-1.amazonaws.com/v1/terminatejob";
            let (api, replay) = sdk(vec![
                ReplayEvent::new(request(states), answer(200, history)),
                ReplayEvent::new(request(terminate), answer(200, json!({}))),
                ReplayEvent::new(request(terminate), answer(200, json!({}))),
                ReplayEvent::new(
                    request(terminate),
                    answer(400, json!({"__type": "ClientException", "message": "no such job"})),
                ),
            ]);
            let error = handle(event("TIMED_OUT"), &api).await.unwrap_err();
            assert_eq!(
                error.to_string(),
                "TerminateJob failed for egress (nton-egress-w): ClientException: no such job"
            );
            let sent: Vec<Value> = replay
                .actual_requests()
                .map(|r| serde_json::from_slice(r.body().bytes().unwrap()).unwrap())
                .collect();
            assert_eq!(sent.len(), 4);
            assert_eq!(sent[0]["executionArn"], EXECUTION);
            assert_eq!(sent[0]["maxResults"], 1000);
            for (body, job) in sent[1..].iter().zip(["procure", "process", "egress"]) {
                assert_eq!(body["jobId"], job);
                assert_eq!(
                    body["reason"],
                    format!("nton cleanup: execution run-7 was TIMED_OUT ({EXECUTION})")
                );
            }
        }
    }
}
