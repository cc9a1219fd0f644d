//! `nton retry` of an execution on AWS, against moto over real HTTP: a failed execution shaped
//! like the pipeline's (Init's plan at `$.plan`, the watcher's answer at `$.status`, the stage
//! jobs at `$.jobs`, a Fail with the watcher's error and cause); the retry reads its plan and
//! failed nodes and starts a new execution of the same state machine whose input is the plan
//! and `retryNodes`. moto executes Pass/Wait/Choice/Succeed/Fail machines, one execution per
//! server (it fails later ones), so each test has its own server.

use std::time::{Duration, Instant};

use aws_sdk_batch::types::{ArrayJobDependency, ArrayProperties, JobDependency};
use aws_sdk_cloudformation::types::Parameter;
use aws_sdk_sfn::types::ExecutionStatus;
use nton::aws::Console;
use nton::cli::RetryArgs;
use nton::exit;
use nton_tests::moto::{BatchQueue, MotoServer, batch_queue};
use serde_json::{Value, json};

const WF: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

/// The pipeline stack's output `nton retry --env` reads.
const PIPELINE: &str = r#"
Parameters:
  StateMachineArn:
    Type: String
Resources:
  ResultsBucket:
    Type: AWS::S3::Bucket
Outputs:
  StateMachineArn:
    Value: !Ref StateMachineArn
"#;

/// Init's plan, the stage jobs, the watcher's status, then Succeed or Fail as the pipeline's.
fn pipeline_tail(plan: &Value, jobs: &[String], status: &Value) -> String {
    let job = |id: &String| json!({"JobId": id});
    json!({
        "StartAt": "Init",
        "States": {
            "Init": {"Type": "Pass", "Result": plan, "ResultPath": "$.plan", "Next": "Submit"},
            "Submit": {"Type": "Pass", "Result": {
                "procure": job(&jobs[0]), "process": job(&jobs[1]), "egress": job(&jobs[2])},
                "ResultPath": "$.jobs", "Next": "Watch"},
            "Watch": {"Type": "Pass", "Result": status, "ResultPath": "$.status", "Next": "IsDone"},
            "IsDone": {"Type": "Choice", "Choices": [
                {"Variable": "$.status.failed", "BooleanEquals": false, "Next": "Succeeded"}
            ], "Default": "Failed"},
            "Succeeded": {"Type": "Succeed"},
            "Failed": {"Type": "Fail", "ErrorPath": "$.status.error", "CausePath": "$.status.cause"}
        }
    })
    .to_string()
}

/// Creates the machine, runs one execution to its end, returns (machine, execution).
async fn ended_execution(
    config: &aws_config::SdkConfig,
    definition: String,
    input: &Value,
) -> (String, String) {
    let sfn = aws_sdk_sfn::Client::new(config);
    let machine = sfn
        .create_state_machine()
        .name("nton-dev-pipeline")
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/nton-test")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_string();
    let execution = sfn
        .start_execution()
        .state_machine_arn(&machine)
        .name("run-1")
        .input(input.to_string())
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_string();
    let started = Instant::now();
    loop {
        let described = sfn.describe_execution().execution_arn(&execution).send().await.unwrap();
        if *described.status() != ExecutionStatus::Running {
            return (machine, execution);
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn retry_args(target: Option<&str>) -> RetryArgs {
    let mut argv = vec!["nton", "retry", "--json"];
    argv.extend(target);
    use clap::Parser;
    match nton::cli::Cli::try_parse_from(argv).unwrap().command {
        nton::cli::Command::Retry(args) => args,
        _ => unreachable!("parsed a retry"),
    }
}

fn plan(node_map: Value) -> Value {
    json!({"workflowId": WF, "nodes": 10, "ids": 100, "idsPerNode": 10, "pollSeconds": 30,
           "timeoutSeconds": 43200, "nodeMap": node_map})
}

async fn input_of(config: &aws_config::SdkConfig, execution: &str) -> Value {
    let described = aws_sdk_sfn::Client::new(config)
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
        .unwrap();
    serde_json::from_str(described.input().unwrap()).unwrap()
}

#[tokio::test]
async fn a_failed_execution_is_retried_with_its_plan_and_the_watchers_failed_nodes() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let status = json!({"done": true, "failed": true, "error": "nton.NodesFailed",
        "cause": "2 of 10 nodes failed: procure failed on nodes 3, 7 (fault injected).",
        "progress": {}, "failedNodes": [
            {"node": 7, "stage": "procure", "reason": "fault injected", "skipped": []},
            {"node": 3, "stage": "procure", "reason": "fault injected", "skipped": []}],
        "failedNodeCount": 2, "stuck": []});
    let jobs = ["j-procure".to_string(), "j-process".into(), "j-egress".into()];
    let (machine, execution) = ended_execution(
        &config,
        pipeline_tail(&plan(Value::Null), &jobs, &status),
        &json!({"ids": 100}),
    )
    .await;

    let (mut console, out, log) = Console::capture();
    let code =
        nton::aws::retry::retry_with(&config, &retry_args(None), Some(&execution), &mut console)
            .await
            .unwrap();
    assert_eq!(code, exit::SUCCESS, "{}", log.text());
    let started: Value = serde_json::from_str(out.text().trim()).unwrap();
    let expected = json!({"workflowId": WF, "ids": 100, "idsPerNode": 10, "pollSeconds": 30,
                          "retryNodes": [3, 7]});
    assert_eq!(started["input"], expected);
    assert_eq!(started["retryNodes"], json!([3, 7]));
    assert_eq!(started["retryOf"], execution.as_str());
    assert_eq!(started["stateMachineArn"], machine.as_str());
    let retried = started["executionArn"].as_str().unwrap();
    assert_ne!(retried, execution);
    assert!(retried.starts_with(&machine.replace(":stateMachine:", ":execution:")), "{retried}");
    // What Step Functions was given, and the init Lambda would read.
    assert_eq!(input_of(&config, retried).await, expected);
}

#[tokio::test]
async fn a_retry_of_a_retry_with_more_failures_than_listed_reads_batch_through_the_node_map() {
    let moto = MotoServer::start_failing_batch().unwrap();
    let config = moto.sdk_config().await;
    // Three children per stage, all failed by this moto; the execution retried nodes 8, 1, 4.
    let BatchQueue { queue, definition } = batch_queue(&config, "nton-retry").await;
    let batch = aws_sdk_batch::Client::new(&config);
    let mut jobs: Vec<String> = Vec::new();
    for stage in ["procure", "process", "egress"] {
        let mut submit = batch
            .submit_job()
            .job_name(format!("nton-{stage}-{WF}"))
            .job_queue(&queue)
            .job_definition(&definition)
            .array_properties(ArrayProperties::builder().size(3).build());
        if let Some(previous) = jobs.last() {
            submit = submit.depends_on(
                JobDependency::builder().job_id(previous).r#type(ArrayJobDependency::NToN).build(),
            );
        }
        jobs.push(submit.send().await.unwrap().job_id().unwrap().to_string());
    }
    // The watcher listed one of the three (as if capped): Batch has the whole list.
    let status = json!({"done": true, "failed": true, "error": "nton.NodesFailed",
        "cause": "3 of 3 nodes failed", "progress": {},
        "failedNodes": [{"node": 8, "stage": "procure", "reason": "x", "skipped": []}],
        "failedNodeCount": 3, "stuck": []});
    let mut retry_plan = plan(json!([8, 1, 4]));
    retry_plan["nodes"] = json!(3);
    let (_, execution) = ended_execution(
        &config,
        pipeline_tail(&retry_plan, &jobs, &status),
        &json!({"workflowId": WF, "ids": 100, "idsPerNode": 10, "retryNodes": [8, 1, 4]}),
    )
    .await;
    let (mut console, out, log) = Console::capture();
    let code =
        nton::aws::retry::retry_with(&config, &retry_args(None), Some(&execution), &mut console)
            .await
            .unwrap();
    assert_eq!(code, exit::SUCCESS, "{}", log.text());
    let started: Value = serde_json::from_str(out.text().trim()).unwrap();
    assert_eq!(started["retryNodes"], json!([1, 4, 8]));
    assert_eq!(
        input_of(&config, started["executionArn"].as_str().unwrap()).await["retryNodes"],
        json!([1, 4, 8])
    );
}

#[tokio::test]
async fn the_latest_execution_of_an_environment_that_succeeded_is_not_retried() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let status = json!({"done": true, "failed": false, "error": null, "cause": null,
        "progress": {}, "failedNodes": [], "failedNodeCount": 0, "stuck": []});
    let jobs = ["a".to_string(), "b".into(), "c".into()];
    let (machine, execution) =
        ended_execution(&config, pipeline_tail(&plan(Value::Null), &jobs, &status), &json!({}))
            .await;
    aws_sdk_cloudformation::Client::new(&config)
        .create_stack()
        .stack_name("nton-dev-pipeline")
        .template_body(PIPELINE)
        .parameters(
            Parameter::builder().parameter_key("StateMachineArn").parameter_value(&machine).build(),
        )
        .send()
        .await
        .unwrap();
    let mut args = retry_args(None);
    args.env = Some("dev".into());
    args.latest = true;
    let (mut console, out, _) = Console::capture();
    let error = nton::aws::retry::retry_with(&config, &args, None, &mut console).await.unwrap_err();
    let error = error.downcast::<exit::CommandError>().unwrap();
    assert_eq!(error.code, exit::BAD_INPUT, "{}", error.message);
    assert_eq!(error.message, format!("{execution} succeeded; there is nothing to retry"));
    assert_eq!(out.text(), "");
    let listed = aws_sdk_sfn::Client::new(&config)
        .list_executions()
        .state_machine_arn(&machine)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.executions().len(), 1, "no execution was started");
}

#[test]
fn bad_targets_are_refused_before_any_aws_call() {
    // Nothing listens here: an AWS call would fail as an environment error (exit 3), not 2.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    drop(listener);
    let cases: [(&[&str], &str); 5] = [
        (
            &["arn:aws:states:us-east-1:123:execution:m:n"],
            "EXECUTION_ARN: \"arn:aws:states:us-east-1:123:execution:m:n\" is not an execution ARN",
        ),
        (&["arn:aws:states:us-east-1:123456789012:stateMachine:m"], "is not an execution ARN"),
        (&["--latest", "--env", ""], "--env: \"\" is not a valid name"),
        (&["--latest", "--env", "dev_1"], "--env: \"dev_1\" is not a valid name"),
        (
            &["--latest", "--state-machine-arn", "arn:aws:states:::stateMachine:"],
            "--state-machine-arn: ",
        ),
    ];
    for (args, want) in cases {
        let started = Instant::now();
        let output = std::process::Command::new(nton_tests::workspace_binary("nton"))
            .arg("retry")
            .args(args)
            .env("AWS_ENDPOINT_URL", &closed)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(i32::from(exit::BAD_INPUT)), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}
