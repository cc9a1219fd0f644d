//! What the run and teardown workflows (`.github/workflows/run.yml`, `teardown.yml`) rely on,
//! against a moto server over real HTTP: `nton watch --summary-markdown FILE` appends the
//! job summary (status, progress, failed nodes, results location) when the execution ends,
//! and `nton teardown --confirm ENV` refuses a confirmation that is not the environment's name
//! before any AWS call. Both through the library and through the real `nton` binary, as the
//! workflows run it.
//!
//! moto executes Pass/Wait/Choice/Succeed/Fail machines, one execution per server (it fails
//! every later one), so each test has its own server.

use std::process::Command;

use aws_sdk_cloudformation::types::{Parameter, StackStatus};
use nton::aws::{self, Console, WatchArgs};
use nton::exit;
use nton_tests::moto::MotoServer;
use nton_tests::workspace_binary;
use serde_json::{Value, json};

/// The pipeline stack's outputs that `watch` reads: the state machine and the results bucket.
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
  ResultsBucketName:
    Value: !Ref ResultsBucket
"#;

/// The pipeline's tail: a `Watch` state whose output carries the watcher's status, a Choice,
/// and Succeed or Fail with the status's error and cause. The input's `plan` passes through,
/// as the real machine's does, so the output names the workflow.
fn watching_machine(status: &Value) -> String {
    json!({
        "StartAt": "Watch",
        "States": {
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

/// A state machine, a pipeline stack naming it, and one execution with a plan as input.
/// Returns the execution ARN and the results bucket.
async fn deployed_run(config: &aws_config::SdkConfig, status: &Value) -> (String, String) {
    let sfn = aws_sdk_sfn::Client::new(config);
    let machine = sfn
        .create_state_machine()
        .name("nton-dev-pipeline")
        .definition(watching_machine(status))
        .role_arn("arn:aws:iam::123456789012:role/nton-test")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_string();
    let cfn = aws_sdk_cloudformation::Client::new(config);
    // CreateStack, not a change set: moto gives change-set stacks no outputs.
    cfn.create_stack()
        .stack_name("nton-dev-pipeline")
        .template_body(PIPELINE)
        .parameters(
            Parameter::builder().parameter_key("StateMachineArn").parameter_value(&machine).build(),
        )
        .send()
        .await
        .unwrap();
    let bucket =
        cfn.describe_stacks().stack_name("nton-dev-pipeline").send().await.unwrap().stacks()[0]
            .outputs()
            .iter()
            .find(|o| o.output_key() == Some("ResultsBucketName"))
            .and_then(|o| o.output_value())
            .expect("moto gives CreateStack stacks their outputs")
            .to_string();
    let execution = sfn
        .start_execution()
        .state_machine_arn(&machine)
        .input(json!({"plan": {"workflowId": "wf-0042", "nodes": 4}}).to_string())
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_string();
    (execution, bucket)
}

fn watch_args(execution: &str) -> WatchArgs {
    WatchArgs {
        env: Some("dev".into()),
        prefix: "nton".into(),
        execution: execution.into(),
        state_machine_arn: None,
        poll_seconds: 0.2,
        watch_state: "Watch".into(),
        json: false,
        aws: Default::default(),
    }
}

#[tokio::test]
async fn a_failed_execution_writes_its_error_failed_nodes_and_results_to_the_summary() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let status = json!({"done": true, "failed": true, "error": "NodesFailed",
        "cause": "procure: 1 of 4 nodes failed (node 2)",
        "progress": {
            "procure": {"position": 0, "size": 4, "counts": {"SUCCEEDED": 3, "FAILED": 1}},
            "process": {"position": 1, "size": 4, "counts": {"SUCCEEDED": 3}}
        },
        "failedNodes": [{"node": 2, "stage": "procure", "reason": "Essential container `exited`", "exitCode": 1}],
        "failedNodeCount": 1});
    let (execution, bucket) = deployed_run(&config, &status).await;

    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    // A summary file already holds earlier steps' text: the report is appended.
    std::fs::write(&summary, "### start\n").unwrap();
    let (mut console, out, log) = Console::capture();
    let code =
        aws::execution::watch_with_summary(&config, &watch_args("latest"), &mut console, &summary)
            .await
            .unwrap();
    assert_eq!(code, exit::RUN_FAILED, "{}\n{}", out.text(), log.text());
    // The terminal output is the same as without the option.
    assert!(out.text().starts_with("FAILED after "), "{}", out.text());

    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.starts_with("### start\n### nton watch: FAILED after "), "{text}");
    for line in [
        format!("- execution: `{execution}`"),
        "- workflow: `wf-0042`".to_string(),
        format!("- results: `s3://{bucket}/wf-0042/`"),
        "- error: `NodesFailed`".to_string(),
        "- cause: `procure: 1 of 4 nodes failed (node 2)`".to_string(),
        "procure      4/4     ended  SUCCEEDED 3  FAILED 1".to_string(),
        "process      3/4     ended  SUCCEEDED 3".to_string(),
        // A backtick from AWS cannot open markdown inside the fenced block; it stays as is.
        "failed: procure node 2: Essential container `exited` (exit 1)".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "summary lacks {line:?}:\n{text}");
    }
    let progress = text.find("#### Progress\n\n```\nprocure").expect(&text);
    let failed = text.find("#### Failed nodes\n\n```\nfailed:").expect(&text);
    assert!(progress < failed, "{text}");
    assert!(text.ends_with("```\n\n"), "{text:?}");
}

#[tokio::test]
async fn a_successful_execution_through_the_binary_writes_the_summary() {
    let (moto, config) = MotoServer::start_with_config().await.unwrap();
    let status = json!({"done": true, "failed": false, "error": null, "cause": null,
        "progress": {"egress": {"size": 4, "counts": {"SUCCEEDED": 4}}}});
    let (execution, bucket) = deployed_run(&config, &status).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("step-summary.md");

    let output = nton(&moto)
        .args(["watch", "--env", "dev", "--poll-seconds", "0.2"])
        .arg("--summary-markdown")
        .arg(&summary)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::SUCCESS)),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.starts_with("### nton watch: SUCCEEDED after "), "{text}");
    assert!(text.contains(&format!("- execution: `{execution}`\n")), "{text}");
    assert!(text.contains(&format!("- results: `s3://{bucket}/wf-0042/`\n")), "{text}");
    assert!(text.contains("```\negress       4/4     ended  SUCCEEDED 4\n```\n"), "{text}");
    // A success has no error lines and no failed-node section.
    assert!(!text.contains("- error:") && !text.contains("Failed nodes"), "{text}");
}

#[tokio::test]
async fn a_summary_that_cannot_be_written_is_refused_before_any_aws_call() {
    // Nothing listens here: an AWS call would fail as an environment error (exit 3), not 2.
    let closed = closed_endpoint();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&closed)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::for_tests())
        .load()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("no-such-dir/summary.md");
    let (mut console, _, _) = Console::capture();
    let error =
        aws::execution::watch_with_summary(&config, &watch_args("latest"), &mut console, &summary)
            .await
            .unwrap_err();
    let error = error.downcast::<exit::CommandError>().unwrap();
    assert_eq!(error.code, exit::BAD_INPUT, "{}", error.message);
    assert!(
        error
            .message
            .starts_with(&format!("--summary-markdown: cannot write {}", summary.display())),
        "{}",
        error.message
    );
    assert!(!summary.exists());
}

#[tokio::test]
async fn teardown_refuses_a_confirmation_that_is_not_the_environment_before_any_aws_call() {
    let (moto, config) = MotoServer::start_with_config().await.unwrap();
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    cfn.create_stack()
        .stack_name("nton-dev-pipeline")
        .template_body(PIPELINE)
        .parameters(
            Parameter::builder().parameter_key("StateMachineArn").parameter_value("none").build(),
        )
        .send()
        .await
        .unwrap();

    for typed in ["prod", "Dev", ""] {
        let output = nton(&moto)
            .args(["teardown", "--env", "dev", "--yes", "--confirm", typed])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(i32::from(exit::BAD_INPUT)), "{stderr}");
        assert!(
            stderr.contains(&format!("--confirm: {typed:?} is not the environment's name \"dev\"")),
            "{stderr}"
        );
        assert!(stderr.contains("nothing was deleted"), "{stderr}");
    }
    assert_eq!(
        cfn.describe_stacks().stack_name("nton-dev-pipeline").send().await.unwrap().stacks()[0]
            .stack_status(),
        Some(&StackStatus::CreateComplete)
    );

    // Before any AWS call: with nothing listening, the answer is still the refusal (exit 2),
    // not an unreachable endpoint (exit 3).
    let output = Command::new(workspace_binary("nton"))
        .args(["teardown", "--env", "dev", "--yes", "--confirm", "prod"])
        .env("AWS_ENDPOINT_URL", closed_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::BAD_INPUT)),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // --confirm-only checks and stops, with no AWS call at all: 0 for the right name (with
    // nothing listening), 2 for another, and it needs --confirm.
    let offline = |args: &[&str]| {
        Command::new(workspace_binary("nton"))
            .args(["teardown", "--env", "dev"])
            .args(args)
            .env("AWS_ENDPOINT_URL", closed_endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(offline(&["--confirm", "dev", "--confirm-only"]), Some(0));
    assert_eq!(offline(&["--confirm", "prod", "--confirm-only"]), Some(i32::from(exit::BAD_INPUT)));
    assert_eq!(offline(&["--confirm-only"]), Some(i32::from(exit::BAD_INPUT)));
    assert_eq!(
        cfn.describe_stacks().stack_name("nton-dev-pipeline").send().await.unwrap().stacks().len(),
        1
    );

    // The right name lets the teardown go ahead, and it deletes the stack.
    let output = nton(&moto)
        .args(["teardown", "--env", "dev", "--yes", "--confirm", "dev"])
        .args(["--poll-seconds", "0.1", "--only", "pipeline"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::SUCCESS)),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("nton-dev-pipeline: DELETE_COMPLETE"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// The real `nton` binary, pointed at the moto server.
fn nton(moto: &MotoServer) -> Command {
    let mut command = Command::new(workspace_binary("nton"));
    command.envs(moto.env()).env_remove("AWS_PROFILE");
    command
}

/// An HTTP endpoint on a loopback port nothing listens on (bound, then released).
fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
