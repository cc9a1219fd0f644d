//! The watcher against moto's Batch over real HTTP with the real SDK: `nton_watch::handle` with
//! `SdkBatch`, and the built `nton-watch` binary behind a stand-in for the Lambda runtime API.
//!
//! moto without Docker ends every job at once: SUCCEEDED, or FAILED for all when its server
//! runs with `MOTO_SIMPLE_BATCH_FAIL_AFTER=0`. It never checks dependencies, gives children no
//! `arrayProperties.index` and does not paginate ListJobs, so these tests check the SDK adapter's
//! mapping (sizes, statuses, summaries, children) and the handler's answer, not Batch's
//! scheduling (the status model's unit tests cover that on fixtures).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_batch::types::{ArrayJobDependency, ArrayProperties, JobDependency};
use nton_core::batch::{ArrayDependencyType, BatchApi, JobStatus};
use nton_tests::moto::{BatchQueue, MotoServer, batch_queue};
use nton_watch::{SdkBatch, WatchError};
use serde_json::{Value, json};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A queue and a job definition on an unmanaged compute environment (the least moto needs).
struct Batch {
    client: aws_sdk_batch::Client,
    queue: String,
    definition: String,
}

impl Batch {
    async fn create(moto: &MotoServer) -> Batch {
        Batch::create_at(&moto.sdk_config().await).await
    }

    async fn create_at(config: &aws_config::SdkConfig) -> Batch {
        let BatchQueue { queue, definition } = batch_queue(config, "nton-test").await;
        Batch { client: aws_sdk_batch::Client::new(config), queue, definition }
    }

    /// Submits the three stage jobs as the state machine does: arrays chained N_TO_N, or plain
    /// jobs for one node. Returns the watcher's event.
    async fn submit_run(&self, nodes: i32) -> Value {
        let wf = uuid::Uuid::new_v4().to_string();
        let mut ids: Vec<String> = Vec::new();
        for stage in ["procure", "process", "egress"] {
            let mut submit = self
                .client
                .submit_job()
                .job_name(format!("nton-{stage}-{wf}"))
                .job_queue(&self.queue)
                .job_definition(&self.definition);
            if nodes > 1 {
                submit = submit.array_properties(ArrayProperties::builder().size(nodes).build());
            }
            if let Some(previous) = ids.last() {
                let mut dependency = JobDependency::builder().job_id(previous);
                if nodes > 1 {
                    dependency = dependency.r#type(ArrayJobDependency::NToN);
                }
                submit = submit.depends_on(dependency.build());
            }
            ids.push(submit.send().await.unwrap().job_id().unwrap().to_string());
        }
        json!({
            "workflowId": wf,
            "nodes": nodes,
            "jobs": {
                "procure": {"JobId": ids[0]},
                "process": {"JobId": ids[1]},
                "egress": {"JobId": ids[2]}
            }
        })
    }
}

/// Polls until the watcher says done (moto finishes jobs within moments).
async fn poll_until_done(event: &Value, batch: &SdkBatch) -> Value {
    let started = Instant::now();
    loop {
        let status = nton_watch::handle(event.clone(), batch, now_ms()).await.unwrap();
        if status["done"] == json!(true) {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "not done after 30 s: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_array_run_that_succeeded() {
    let moto = MotoServer::start().unwrap();
    let batch = Batch::create(&moto).await;
    let event = batch.submit_run(3).await;
    let sdk = SdkBatch::new(batch.client.clone());

    let status = poll_until_done(&event, &sdk).await;
    assert_eq!(status["failed"], json!(false));
    assert_eq!(status["error"], Value::Null);
    assert_eq!(status["cause"], Value::Null);
    assert_eq!(status["failedNodes"], json!([]));
    assert_eq!(status["failedNodeCount"], json!(0));
    for stage in ["procure", "process", "egress"] {
        let progress = &status["progress"][stage];
        assert_eq!(progress["jobId"], event["jobs"][stage]["JobId"]);
        assert_eq!(progress["status"], json!("SUCCEEDED"));
        assert_eq!(progress["size"], json!(3));
        assert_eq!(
            progress["counts"],
            json!({"SUBMITTED": 0, "PENDING": 0, "RUNNABLE": 0, "STARTING": 0,
                   "RUNNING": 0, "SUCCEEDED": 3, "FAILED": 0})
        );
    }

    // The adapter's mapping, call by call.
    let ids: Vec<String> = ["procure", "process"]
        .iter()
        .map(|stage| event["jobs"][stage]["JobId"].as_str().unwrap().to_string())
        .collect();
    let described = sdk.describe_jobs(&ids).await.unwrap();
    assert_eq!(described.len(), 2);
    let process = described.iter().find(|job| job.job_id == ids[1]).unwrap();
    assert!(process.job_name.starts_with("nton-process-"));
    assert_eq!(process.depends_on[0].job_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(process.depends_on[0].dependency_type, Some(ArrayDependencyType::NToN));
    assert!(process.created_at.unwrap() > 1_600_000_000_000, "epoch milliseconds");
    let children = sdk.list_array_children(&ids[0], JobStatus::Succeeded).await.unwrap();
    let mut child_ids: Vec<&str> = children.iter().map(|c| c.job_id.as_str()).collect();
    child_ids.sort();
    let expected: Vec<String> = (0..3).map(|i| format!("{}:{i}", ids[0])).collect();
    assert_eq!(child_ids, expected);
    assert!(children.iter().all(|c| c.status == Some(JobStatus::Succeeded)));
    assert!(sdk.list_array_children(&ids[0], JobStatus::Failed).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_one_node_run_of_plain_jobs() {
    let moto = MotoServer::start().unwrap();
    let batch = Batch::create(&moto).await;
    let event = batch.submit_run(1).await;
    let status = poll_until_done(&event, &SdkBatch::new(batch.client.clone())).await;
    assert_eq!(status["failed"], json!(false));
    assert_eq!(status["progress"]["egress"]["size"], json!(1));
    assert_eq!(status["progress"]["egress"]["counts"]["SUCCEEDED"], json!(1));
}

#[tokio::test]
async fn a_job_id_batch_does_not_know_is_named() {
    let moto = MotoServer::start().unwrap();
    let batch = Batch::create(&moto).await;
    let mut event = batch.submit_run(2).await;
    let stranger = uuid::Uuid::new_v4().to_string();
    event["jobs"]["process"]["JobId"] = json!(stranger);
    let error = nton_watch::handle(event, &SdkBatch::new(batch.client.clone()), now_ms())
        .await
        .unwrap_err();
    assert!(matches!(error, WatchError::UnknownJob { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!("Batch does not know job \"{stranger}\" (jobs.process.JobId)")
    );
}

#[tokio::test]
async fn failed_children_are_listed_and_named() {
    let failing = MotoServer::start_failing_batch().unwrap();
    let config = failing.sdk_config().await;
    let batch = Batch::create_at(&config).await;
    let event = batch.submit_run(3).await;

    let status = poll_until_done(&event, &SdkBatch::new(batch.client.clone())).await;
    assert_eq!(status["failed"], json!(true));
    assert_eq!(status["error"], json!("nton.NodesFailed"));
    assert_eq!(status["failedNodeCount"], json!(3));
    // moto gives failed children no reason and no dependency handling: each node's first
    // stage is its root failure, the later ones are reported as not run.
    assert_eq!(
        status["cause"],
        json!(
            "3 of 3 nodes failed: procure failed on nodes 0, 1, 2 (no reason given); process and egress did not run on those nodes."
        )
    );
    for (index, node) in status["failedNodes"].as_array().unwrap().iter().enumerate() {
        assert_eq!(node["node"], json!(index));
        assert_eq!(node["stage"], json!("procure"));
        assert_eq!(node["skipped"], json!(["process", "egress"]));
    }
    assert_eq!(status["progress"]["process"]["counts"]["FAILED"], json!(3));
    assert_eq!(status["progress"]["process"]["status"], json!("FAILED"));
}

/// A built workspace binary, beside this test's executable in the target directory
/// (`cargo build --workspace --bins` builds it, as tests/run-all does before the tests).
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        binary.is_file(),
        "{} is missing: build it first with `cargo build -p {name}`",
        binary.display()
    );
    binary
}

/// One HTTP/1.1 request read off a connection: method, path, body.
fn read_request(reader: &mut impl BufRead) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some((method, path, body))
}

/// A stand-in for the Lambda runtime API: hands out `events` one per `invocation/next`, reports
/// every answer the function posts (path, JSON body), and stops once the events run out, so
/// the runtime's next poll fails and the binary exits.
fn start_runtime_api(events: Vec<Value>) -> (u16, mpsc::Receiver<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (answers, received) = mpsc::channel();
    std::thread::spawn(move || {
        let mut events = events.into_iter().enumerate();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while let Some((method, path, body)) = read_request(&mut reader) {
                let (status, headers, body) = if method == "GET"
                    && path.ends_with("/invocation/next")
                {
                    let Some((index, event)) = events.next() else {
                        return;
                    };
                    let deadline = now_ms() + 60_000;
                    let headers = format!(
                        "Lambda-Runtime-Aws-Request-Id: req-{index}\r\n\
                         Lambda-Runtime-Deadline-Ms: {deadline}\r\n\
                         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:nton-watch\r\n"
                    );
                    ("200 OK", headers, event.to_string())
                } else {
                    let answer = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if answers.send((path, answer)).is_err() {
                        return;
                    }
                    ("202 Accepted", String::new(), r#"{"status":"OK"}"#.to_string())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(response.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (port, received)
}

#[tokio::test]
async fn the_binary_answers_the_lambda_runtime() {
    let moto = MotoServer::start().unwrap();
    let batch = Batch::create(&moto).await;
    let event = batch.submit_run(2).await;
    poll_until_done(&event, &SdkBatch::new(batch.client.clone())).await;

    let (port, answers) = start_runtime_api(vec![event.clone(), json!({"jobs": {}})]);
    let mut child = Command::new(workspace_binary("nton-watch"))
        .env_clear()
        .envs(moto.env())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "nton-watch")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        // The templates' LoggingConfig (LogFormat: JSON) makes Lambda set this.
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let (path, answer) = answers.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(path, "/2018-06-01/runtime/invocation/req-0/response");
    assert_eq!(answer["done"], json!(true));
    assert_eq!(answer["failed"], json!(false));
    assert_eq!(answer["progress"]["egress"]["size"], json!(2));
    assert_eq!(answer["progress"]["egress"]["jobId"], event["jobs"]["egress"]["JobId"]);

    let (path, answer) = answers.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(path, "/2018-06-01/runtime/invocation/req-1/error");
    assert_eq!(
        answer,
        json!({"errorType": "nton.BadEvent", "errorMessage": "bad event: jobs: names no stage job"})
    );

    // No more events: the runtime API goes away and the binary says so in one line.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("nton-watch did not exit after the runtime API went away");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("nton-watch: Lambda runtime API at 127.0.0.1:{port}: ")),
        "{stderr}"
    );
    let logs: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(
        logs.iter().any(|l| l["fields"]["message"] == json!("polled stage jobs")
            && l["fields"]["done"] == json!(true)),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l["level"] == json!("ERROR")
                && l["fields"]["error_type"] == json!("nton.BadEvent")),
        "{logs:?}"
    );
}

#[test]
fn the_binary_outside_lambda_exits_2_with_one_line() {
    let output = Command::new(workspace_binary("nton-watch")).env_clear().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "nton-watch: AWS_LAMBDA_RUNTIME_API is not set: this binary runs inside AWS Lambda; use `nton run` to run the pipeline locally\n"
    );
    assert!(output.stdout.is_empty());
}
