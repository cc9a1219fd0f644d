//! `nton deploy`, `start`, `watch` and `teardown` against a moto server over real HTTP, with
//! the real SDK: small templates written per test (moto's CloudFormation makes S3, SQS and ECR
//! resources), and state machines that moto really executes (Pass/Wait/Choice/Succeed/Fail).
//!
//! moto differs from AWS in ways the tests work around rather than assert: it answers "no
//! changes" from CreateChangeSet itself, ignores ECR's EmptyOnDelete, fails rather than rolls
//! back, and gives stacks made by change sets no outputs (so values are read from the stacks'
//! parameters and resources here, and the stack `start` reads is made with CreateStack).

use std::path::Path;

use aws_sdk_cloudformation::types::{ExecutionStatus, StackStatus};
use nton::aws::{self, Console, DeployArgs, StartArgs, WatchArgs};
use nton::exit;
use nton_tests::cli::{deploy_args, teardown_args};
use nton_tests::moto::MotoServer;
use serde_json::{Value, json};

/// Repositories named like the real registry stack's (`<prefix>/nton-job`), without
/// EmptyOnDelete so teardown must empty them (moto ignores that property anyway).
const REGISTRY: &str = r#"
Parameters:
  RepositoryPrefix:
    Type: String
Resources:
  JobRepository:
    Type: AWS::ECR::Repository
    Properties:
      RepositoryName: !Sub "${RepositoryPrefix}/nton-job"
  InitRepository:
    Type: AWS::ECR::Repository
    Properties:
      RepositoryName: !Sub "${RepositoryPrefix}/nton-init"
  WatchRepository:
    Type: AWS::ECR::Repository
    Properties:
      RepositoryName: !Sub "${RepositoryPrefix}/nton-watch"
Outputs:
  JobRepositoryName:
    Value: !Ref JobRepository
"#;

/// A bucket, a queue named from a parameter (so a parameter change is a resource change), and
/// outputs that show what nton passed for the image parameters.
const PIPELINE: &str = r#"
Parameters:
  ImageRegistry:
    Type: String
    Default: ""
  ImageTag:
    Type: String
    Default: ":latest"
  RepositoryPrefix:
    Type: String
    Default: nton
  QueueSuffix:
    Type: String
    Default: a
  StateMachineArn:
    Type: String
    Default: none
Resources:
  ResultsBucket:
    Type: AWS::S3::Bucket
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${QueueSuffix}"
Outputs:
  ResultsBucketName:
    Value: !Ref ResultsBucket
    Export:
      Name: !Sub "${AWS::StackName}-ResultsBucketName"
  JobImage:
    Value: !Sub "${ImageRegistry}/nton-job${ImageTag}"
  StateMachineArn:
    Value: !Ref StateMachineArn
"#;

fn write_templates(dir: &Path, params: &Value) {
    std::fs::write(dir.join("registry.yaml"), REGISTRY).unwrap();
    std::fs::write(dir.join("pipeline.yaml"), PIPELINE).unwrap();
    std::fs::create_dir_all(dir.join("params")).unwrap();
    std::fs::write(dir.join("params/dev.json"), params.to_string()).unwrap();
}

fn default_params() -> Value {
    json!({"Parameters": {"RepositoryPrefix": "team-dev"}, "Tags": {"project": "nton", "environment": "dev"}})
}

async fn stack_status(cfn: &aws_sdk_cloudformation::Client, name: &str) -> Option<StackStatus> {
    match cfn.describe_stacks().stack_name(name).send().await {
        Ok(answer) => answer.stacks()[0].stack_status().cloned(),
        Err(_) => None,
    }
}

async fn parameters(cfn: &aws_sdk_cloudformation::Client, name: &str) -> Value {
    let answer = cfn.describe_stacks().stack_name(name).send().await.unwrap();
    answer.stacks()[0]
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_key().unwrap().to_string(),
                Value::from(p.parameter_value().unwrap_or_default()),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

async fn physical_id(cfn: &aws_sdk_cloudformation::Client, stack: &str, logical: &str) -> String {
    let answer = cfn.list_stack_resources().stack_name(stack).send().await.unwrap();
    answer
        .stack_resource_summaries()
        .iter()
        .find(|r| r.logical_resource_id() == Some(logical))
        .and_then(|r| r.physical_resource_id())
        .unwrap()
        .to_string()
}

async fn deploy(config: &aws_config::SdkConfig, args: &DeployArgs) -> (u8, String, String) {
    let (mut console, out, log) = Console::capture();
    let code = aws::deploy_with(config, args, &mut console).await.unwrap();
    (code, out.text(), log.text())
}

#[tokio::test]
async fn deploy_creates_both_stacks_then_an_unchanged_deploy_succeeds() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let dir = tempfile::tempdir().unwrap();
    write_templates(dir.path(), &default_params());

    let (code, out, log) = deploy(&config, &deploy_args(dir.path())).await;
    assert_eq!(code, exit::SUCCESS, "{out}\n{log}");
    for name in ["nton-dev-registry", "nton-dev-pipeline"] {
        assert_eq!(stack_status(&cfn, name).await, Some(StackStatus::CreateComplete), "{name}");
        assert!(out.contains(&format!("{name}: CREATE_COMPLETE")), "{out}");
    }
    // The registry comes from the registry stack's repositories; the tag from the flag.
    let registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-dev";
    let pipeline = parameters(&cfn, "nton-dev-pipeline").await;
    assert_eq!(pipeline["ImageRegistry"], registry);
    assert_eq!(pipeline["ImageTag"], ":git-1a2b3c4");
    assert_eq!(pipeline["RepositoryPrefix"], "team-dev");
    assert!(out.contains(&format!("image registry: {registry}")), "{out}");
    // Tags from the params file reach the stacks; only new events were printed, once each.
    let described = cfn.describe_stacks().stack_name("nton-dev-pipeline").send().await.unwrap();
    let tags: Vec<(String, String)> = described.stacks()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    assert!(tags.contains(&("environment".into(), "dev".into())), "{tags:?}");
    assert_eq!(log.matches("CREATE_COMPLETE       ").count(), 2, "{log}");
    assert!(log.contains("Add      AWS::S3::Bucket"), "{log}");

    // The same deploy again changes nothing, which is a success; the image tag is kept from
    // the deployed stack when no --image-tag is given.
    let mut again = deploy_args(dir.path());
    again.image_tag = None;
    again.json = true;
    let (code, out, log) = deploy(&config, &again).await;
    assert_eq!(code, exit::SUCCESS, "{out}\n{log}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["stacks"][0]["result"], "NO_CHANGES", "{summary}");
    assert_eq!(summary["stacks"][1]["result"], "NO_CHANGES", "{summary}");
    assert_eq!(summary["imageRegistry"], registry);
    assert_eq!(summary["stacks"][1]["status"], "CREATE_COMPLETE");
    assert_eq!(parameters(&cfn, "nton-dev-pipeline").await["ImageTag"], ":git-1a2b3c4");

    // A dry run of a real change prints it and changes nothing, leaving no change set.
    write_templates(
        dir.path(),
        &json!({"Parameters": {"RepositoryPrefix": "team-dev", "QueueSuffix": "b"}}),
    );
    let mut dry = deploy_args(dir.path());
    dry.dry_run = true;
    dry.only = Some(aws::StackKind::Pipeline);
    let (code, out, log) = deploy(&config, &dry).await;
    assert_eq!(code, exit::SUCCESS, "{out}\n{log}");
    assert!(out.contains("nton-dev-pipeline: would update"), "{out}");
    let sets = cfn.list_change_sets().stack_name("nton-dev-pipeline").send().await.unwrap();
    // (moto also lists executed change sets, which AWS drops.)
    let pending: Vec<_> = sets
        .summaries()
        .iter()
        .filter(|s| s.execution_status() == Some(&ExecutionStatus::Available))
        .collect();
    assert!(pending.is_empty(), "{pending:?}");
    assert_eq!(stack_status(&cfn, "nton-dev-pipeline").await, Some(StackStatus::CreateComplete));

    // And the real update applies it.
    let mut update = deploy_args(dir.path());
    update.only = Some(aws::StackKind::Pipeline);
    let (code, out, log) = deploy(&config, &update).await;
    assert_eq!(code, exit::SUCCESS, "{out}\n{log}");
    assert_eq!(stack_status(&cfn, "nton-dev-pipeline").await, Some(StackStatus::UpdateComplete));
    assert_eq!(parameters(&cfn, "nton-dev-pipeline").await["QueueSuffix"], "b");
}

#[tokio::test]
async fn a_dry_run_of_a_new_environment_leaves_no_stack_behind() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let dir = tempfile::tempdir().unwrap();
    write_templates(dir.path(), &default_params());
    let mut dry = deploy_args(dir.path());
    dry.dry_run = true;
    let (code, out, log) = deploy(&config, &dry).await;
    assert_eq!(code, exit::SUCCESS, "{out}\n{log}");
    assert!(out.contains("nton-dev-registry: would create (3 changes)"), "{out}");
    assert!(out.contains("Add      AWS::ECR::Repository"), "{out}");
    assert!(out.contains("nton-dev-pipeline: would create (2 changes)"), "{out}");
    for name in ["nton-dev-registry", "nton-dev-pipeline"] {
        assert_eq!(stack_status(&cfn, name).await, None, "{name}");
    }
}

#[tokio::test]
async fn bad_input_is_refused_before_any_stack_is_touched() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let dir = tempfile::tempdir().unwrap();
    let params_path = dir.path().join("params/dev.json");
    let cases: Vec<(Value, Option<&str>, String)> = vec![
        (
            json!({"Parameters": {"RepositoryPrefix": "x", "QueueSufix": "b"}}),
            None,
            format!("{}: Parameters.QueueSufix: no template declares it", params_path.display()),
        ),
        (
            json!({"Parameters": {"RepositoryPrefix": ["a", {"b": 1}]}}),
            None,
            format!("{}: Parameters.RepositoryPrefix: ", params_path.display()),
        ),
        (
            json!({"Parameters": {}}),
            None,
            format!(
                "{}: Parameters: registry.yaml declares RepositoryPrefix without a Default",
                params_path.display()
            ),
        ),
        (
            default_params(),
            Some("latest"),
            "--image-tag: \"latest\" is not an image tag".to_string(),
        ),
    ];
    for (params, tag, expected) in cases {
        write_templates(dir.path(), &params);
        let mut args = deploy_args(dir.path());
        args.image_tag = tag.map(str::to_string);
        let (mut console, _, _) = Console::capture();
        let error = aws::deploy_with(&config, &args, &mut console).await.unwrap_err();
        let command_error = error.downcast_ref::<exit::CommandError>().expect("a CommandError");
        assert_eq!(command_error.code, exit::BAD_INPUT, "{error}");
        assert!(error.to_string().starts_with(&expected), "{error}\nexpected: {expected}");
    }
    // A file that is not JSON names the file.
    std::fs::write(&params_path, "{\"Parameters\": {").unwrap();
    let (mut console, _, _) = Console::capture();
    let error =
        aws::deploy_with(&config, &deploy_args(dir.path()), &mut console).await.unwrap_err();
    assert!(
        error.to_string().starts_with(&format!("{}: not valid JSON", params_path.display())),
        "{error}"
    );
    // An environment without a params file says how to make one.
    let mut args = deploy_args(dir.path());
    args.stack.env = "prod".into();
    let (mut console, _, _) = Console::capture();
    let error = aws::deploy_with(&config, &args, &mut console).await.unwrap_err();
    assert!(error.to_string().contains("params/prod.json: cannot read"), "{error}");
    let stacks = cfn.list_stacks().send().await.unwrap();
    assert!(stacks.stack_summaries().is_empty(), "{:?}", stacks.stack_summaries());
}

/// A state machine shaped like the pipeline's tail: a `Watch` state whose output carries the
/// watcher's status, a Wait, a Choice, and Succeed or Fail with the status's error and cause.
fn watching_machine(status: &Value) -> String {
    json!({
        "StartAt": "Watch",
        "States": {
            "Watch": {"Type": "Pass", "Result": status, "ResultPath": "$.status", "Next": "WaitForJobs"},
            "WaitForJobs": {"Type": "Wait", "Seconds": 1, "Next": "IsDone"},
            "IsDone": {"Type": "Choice", "Choices": [
                {"Variable": "$.status.failed", "BooleanEquals": false, "Next": "Succeeded"}
            ], "Default": "Failed"},
            "Succeeded": {"Type": "Succeed"},
            "Failed": {"Type": "Fail", "ErrorPath": "$.status.error", "CausePath": "$.status.cause"}
        }
    })
    .to_string()
}

async fn create_machine(config: &aws_config::SdkConfig, name: &str, status: &Value) -> String {
    let sfn = aws_sdk_sfn::Client::new(config);
    sfn.create_state_machine()
        .name(name)
        .definition(watching_machine(status))
        .role_arn("arn:aws:iam::123456789012:role/nton-test")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_string()
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
async fn start_finds_the_machine_in_the_stack_and_watch_follows_it_to_success() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let status = json!({"done": true, "failed": false, "error": null, "cause": null,
    // `position` as the watcher gives it: the object's keys come back sorted.
    "progress": {
        "procure": {"position": 0, "size": 4, "counts": {"SUCCEEDED": 4}},
        "process": {"position": 1, "size": 4, "counts": {"SUCCEEDED": 4}},
        "egress": {"position": 2, "size": 4, "counts": {"SUCCEEDED": 3, "RUNNING": 1}}
    }});
    // moto does not execute machines made by CloudFormation, so the stack's output names one
    // made through the API, as the real template's StateMachineArn output names its own.
    let machine = create_machine(&config, "nton-dev-pipeline", &status).await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    cfn.create_stack()
        .stack_name("nton-dev-pipeline")
        .template_body(PIPELINE)
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("StateMachineArn")
                .parameter_value(&machine)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let start = StartArgs {
        env: Some("dev".into()),
        prefix: "nton".into(),
        ids: Some(160),
        ids_per_node: Some(40),
        name: Some("run-1".into()),
        state_machine_arn: None,
        json: true,
        aws: Default::default(),
    };
    let (mut console, out, _) = Console::capture();
    assert_eq!(aws::start_with(&config, &start, &mut console).await.unwrap(), exit::SUCCESS);
    let started: Value = serde_json::from_str(out.text().trim()).unwrap();
    let execution = format!("{}:run-1", machine.replace(":stateMachine:", ":execution:"));
    assert_eq!(started["executionArn"], execution.as_str());
    assert_eq!(started["input"], json!({"ids": 160, "idsPerNode": 40}));
    let sfn = aws_sdk_sfn::Client::new(&config);
    let described = sfn.describe_execution().execution_arn(&execution).send().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(described.input().unwrap()).unwrap(),
        json!({"ids": 160, "idsPerNode": 40})
    );

    // "latest" finds it; progress comes from the Watch state's output, per stage in order.
    let (mut console, out, log) = Console::capture();
    let code = aws::watch_with(&config, &watch_args("latest"), &mut console).await.unwrap();
    assert_eq!(code, exit::SUCCESS, "{}\n{}", out.text(), log.text());
    let log = log.text();
    let procure = log.find("procure      4/4     ended  SUCCEEDED 4").expect(&log);
    let egress = log.find("egress       3/4     ended  SUCCEEDED 3  RUNNING 1").expect(&log);
    assert!(procure < egress, "{log}");
    assert!(out.text().starts_with("SUCCEEDED after "), "{}", out.text());
    assert!(out.text().contains(&execution), "{}", out.text());

    // A group size the init Lambda would refuse is refused before anything starts.
    let mut bad = start.clone();
    bad.ids_per_node = Some(0);
    let (mut console, _, _) = Console::capture();
    let error = aws::start_with(&config, &bad, &mut console).await.unwrap_err();
    assert!(error.to_string().starts_with("--ids-per-node: 0 is out of range"), "{error}");
}

#[tokio::test]
async fn start_on_a_machine_given_by_arn_prints_the_bare_execution_arn() {
    // A server of its own: moto fails every execution after the first in one server.
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let status = json!({"done": true, "failed": false, "progress": {}});
    let machine = create_machine(&config, "by-arn", &status).await;
    let args = StartArgs {
        env: None,
        prefix: "nton".into(),
        ids: None,
        ids_per_node: None,
        name: Some("nightly".into()),
        state_machine_arn: Some(machine.clone()),
        json: false,
        aws: Default::default(),
    };
    let (mut console, out, log) = Console::capture();
    assert_eq!(aws::start_with(&config, &args, &mut console).await.unwrap(), exit::SUCCESS);
    let execution = format!("{}:nightly", machine.replace(":stateMachine:", ":execution:"));
    assert_eq!(out.text(), format!("{execution}\n"));
    assert!(log.text().contains(&format!("nton watch --execution {execution}")), "{}", log.text());
    let sfn = aws_sdk_sfn::Client::new(&config);
    let described = sfn.describe_execution().execution_arn(&execution).send().await.unwrap();
    assert_eq!(described.input(), Some("{}"));
    // Something that is not a state machine ARN is refused, naming the flag.
    let mut wrong = args.clone();
    wrong.state_machine_arn = Some(execution.clone());
    let (mut console, _, _) = Console::capture();
    let error = aws::start_with(&config, &wrong, &mut console).await.unwrap_err();
    assert!(error.to_string().starts_with("--state-machine-arn: "), "{error}");
}

#[tokio::test]
async fn watch_exits_1_with_the_error_cause_and_failed_nodes_of_a_failed_execution() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let status = json!({"done": true, "failed": true, "error": "NodesFailed",
        "cause": "procure: 1 of 4 nodes failed (node 2)",
        "progress": {"procure": {"size": 4, "counts": {"SUCCEEDED": 3, "FAILED": 1}}},
        "failedNodes": [{"node": 2, "stage": "procure", "reason": "Essential container exited", "exitCode": 1}],
        "failedNodeCount": 1});
    let machine = create_machine(&config, "failing", &status).await;
    let sfn = aws_sdk_sfn::Client::new(&config);
    let execution = sfn
        .start_execution()
        .state_machine_arn(&machine)
        .input("{}")
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_string();

    // By ARN: no stack needed.
    let mut args = watch_args(&execution);
    args.env = None;
    let (mut console, out, log) = Console::capture();
    let code = aws::watch_with(&config, &args, &mut console).await.unwrap();
    let out = out.text();
    assert_eq!(code, exit::RUN_FAILED, "{out}\n{}", log.text());
    assert!(out.starts_with("FAILED after "), "{out}");
    assert!(out.contains("  error: NodesFailed\n"), "{out}");
    assert!(out.contains("  cause: procure: 1 of 4 nodes failed (node 2)\n"), "{out}");
    assert!(out.contains("  failed: procure node 2: Essential container exited (exit 1)"), "{out}");

    // The JSON stream ends with one "finished" object carrying the same.
    args.json = true;
    let (mut console, out, _) = Console::capture();
    let code = aws::watch_with(&config, &args, &mut console).await.unwrap();
    assert_eq!(code, exit::RUN_FAILED);
    let last: Value = serde_json::from_str(out.text().trim().lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["status"], "FAILED");
    assert_eq!(last["error"], "NodesFailed");
    assert_eq!(last["failedNodes"][0]["node"], 2);

    // A name of the machine works as well as its ARN, given the machine.
    let name = execution.rsplit(':').next().unwrap().to_string();
    let mut by_name = watch_args(&name);
    by_name.env = None;
    by_name.state_machine_arn = Some(machine.clone());
    let (mut console, _, _) = Console::capture();
    assert_eq!(aws::watch_with(&config, &by_name, &mut console).await.unwrap(), exit::RUN_FAILED);
    // Without a stack or a machine, "latest" says what is missing.
    let (mut console, _, _) = Console::capture();
    let error = aws::watch_with(&config, &watch_args("latest"), &mut console).await.unwrap_err();
    assert!(error.to_string().contains("the stack nton-dev-pipeline does not exist"), "{error}");
}

#[tokio::test]
async fn teardown_empties_the_versioned_bucket_and_the_repositories_then_deletes_both_stacks() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let dir = tempfile::tempdir().unwrap();
    write_templates(dir.path(), &default_params());
    let (code, out, log) = deploy(&config, &deploy_args(dir.path())).await;
    assert_eq!(code, exit::SUCCESS, "{out}\n{log}");

    // Results with old versions and a delete marker: all must go before the bucket can.
    let bucket = physical_id(&cfn, "nton-dev-pipeline", "ResultsBucket").await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
    );
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    for (key, body) in
        [("w/0/results/1.json", "1"), ("w/0/results/1.json", "2"), ("w/1/results/2.json", "3")]
    {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    s3.delete_object().bucket(&bucket).key("w/1/results/2.json").send().await.unwrap();
    let versions = s3.list_object_versions().bucket(&bucket).send().await.unwrap();
    assert_eq!(versions.versions().len() + versions.delete_markers().len(), 4);
    // An image in a repository: moto refuses to delete a repository holding one.
    let ecr = aws_sdk_ecr::Client::new(&config);
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                   "digest": format!("sha256:{}", "a".repeat(64))},
        "layers": []});
    ecr.put_image()
        .repository_name("team-dev/nton-job")
        .image_manifest(manifest.to_string())
        .image_tag("git-1a2b3c4")
        .send()
        .await
        .unwrap();

    // Refusing the confirmation deletes nothing.
    let mut asked = String::new();
    let mut refuse = |question: &str| {
        asked = question.to_string();
        Ok(false)
    };
    let mut ask = teardown_args();
    ask.yes = false;
    let (mut console, _, _) = Console::capture();
    let error = aws::teardown_with(&config, &ask, &mut console, &mut refuse).await.unwrap_err();
    assert!(error.to_string().contains("nothing was deleted"), "{error}");
    assert!(
        asked.contains(&format!("bucket {bucket} (4 object versions and delete markers)")),
        "{asked}"
    );
    assert!(asked.contains("image repository team-dev/nton-job (1 images)"), "{asked}");
    assert_eq!(stack_status(&cfn, "nton-dev-pipeline").await, Some(StackStatus::CreateComplete));

    let mut never = |_: &str| -> anyhow::Result<bool> { panic!("--yes must not ask") };
    let (mut console, out, log) = Console::capture();
    let code =
        aws::teardown_with(&config, &teardown_args(), &mut console, &mut never).await.unwrap();
    let (out, log) = (out.text(), log.text());
    assert_eq!(code, exit::SUCCESS, "{out}\n{log}");
    assert!(log.contains(&format!("emptied bucket {bucket} (4 object versions")), "{log}");
    assert!(log.contains("emptied image repository team-dev/nton-job (1 images)"), "{log}");
    // The pipeline goes first: it pulls from the registry.
    let pipeline = out.find("nton-dev-pipeline: DELETE_COMPLETE").expect(&out);
    let registry = out.find("nton-dev-registry: DELETE_COMPLETE").expect(&out);
    assert!(pipeline < registry, "{out}");
    assert!(out.contains("nothing left behind"), "{out}");
    for name in ["nton-dev-registry", "nton-dev-pipeline"] {
        let status = stack_status(&cfn, name).await;
        assert!(
            status.is_none() || status == Some(StackStatus::DeleteComplete),
            "{name}: {status:?}"
        );
    }
    assert!(s3.head_bucket().bucket(&bucket).send().await.is_err());
    let repositories = ecr.describe_repositories().send().await.unwrap();
    assert!(repositories.repositories().is_empty(), "{:?}", repositories.repositories());

    // A second teardown finds nothing to do.
    let (mut console, out, _) = Console::capture();
    let code =
        aws::teardown_with(&config, &teardown_args(), &mut console, &mut never).await.unwrap();
    assert_eq!(code, exit::SUCCESS);
    assert!(out.text().contains("nothing to tear down"), "{}", out.text());
}

#[tokio::test]
async fn the_real_templates_and_every_params_file_make_change_sets() {
    // Each params file must fit the templates it is deployed with (a key no template declares
    // fails here, not in the deploy workflow), and CloudFormation (moto's) must accept the
    // change sets. A dry run deletes them again.
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let template_dir = nton_tests::workspace_root().join("cloudformation");
    let mut envs: Vec<String> = std::fs::read_dir(template_dir.join("params"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    envs.sort();
    assert!(envs.contains(&"dev".to_string()), "{envs:?}");

    // pipeline.yaml is more than CloudFormation takes inline: without a bucket for it (a flag,
    // or a registry output), deploy says so before anything changes.
    let pipeline_size = std::fs::metadata(template_dir.join("pipeline.yaml")).unwrap().len();
    let registry = std::fs::read_to_string(template_dir.join("registry.yaml")).unwrap();
    if pipeline_size > 51_200 && !registry.contains("TemplatesBucketName:") {
        let mut args = deploy_args(&template_dir);
        args.dry_run = true;
        let (mut console, _, _) = Console::capture();
        let error = aws::deploy_with(&config, &args, &mut console).await.unwrap_err();
        assert!(error.to_string().starts_with("--template-bucket: "), "{error}");
        assert!(cfn.list_stacks().send().await.unwrap().stack_summaries().is_empty());
    }

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
    );
    s3.create_bucket().bucket("nton-templates").send().await.unwrap();
    for env in envs {
        let mut args = deploy_args(&template_dir);
        args.stack.env = env.clone();
        args.dry_run = true;
        args.template_bucket = Some("nton-templates".into());
        let (code, out, log) = deploy(&config, &args).await;
        assert_eq!(code, exit::SUCCESS, "{env}:\n{out}\n{log}");
        assert!(out.contains(&format!("nton-{env}-registry: would create")), "{out}");
        assert!(out.contains(&format!("nton-{env}-pipeline: would create")), "{out}");
        assert!(out.contains("AWS::StepFunctions::StateMachine"), "{out}");
        if pipeline_size > 51_200 {
            assert!(
                log.contains(&format!(
                    "uploaded to s3://nton-templates/templates/nton-{env}-pipeline/"
                )),
                "{log}"
            );
        }
    }
    assert!(
        cfn.list_stacks()
            .send()
            .await
            .unwrap()
            .stack_summaries()
            .iter()
            .all(|s| { s.stack_status() == Some(&StackStatus::DeleteComplete) })
    );
}

/// Every verb's bad input, through the real binary with AWS pointed at a port nothing listens
/// on: each answer is the refusal naming the option and its limit (exit 2), quickly (an AWS
/// call would end as an unreachable endpoint, exit 3, after the SDK's retries), and nothing is
/// written in the working directory.
#[test]
fn every_verb_refuses_bad_input_before_any_aws_call_and_writes_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    drop(listener);
    let bad_machine = "arn:aws:states:us-east-1:123:stateMachine:x";
    let long_env = "e".repeat(41);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["start", "--env", ""], "--env: \"\" is not a valid name (must be 1-40 letters"),
        (vec!["start", "--env", "dev/../prod"], "--env: \"dev/../prod\" is not a valid name"),
        (vec!["start", "--env", &long_env], "is not a valid name (must be 1-40"),
        (vec!["start", "--env", "dev", "--prefix=-x"], "--prefix: \"-x\" is not a valid name"),
        (
            vec!["start", "--env", "dev", "--ids", "-5"],
            "-5 is out of range (must be an integer in 1..=10000000)",
        ),
        (
            vec!["start", "--env", "dev", "--ids", "10001", "--ids-per-node", "1"],
            "--ids/--ids-per-node: 10001 ids in groups of 1 make 10001 nodes",
        ),
        (
            vec!["start", "--env", "dev", "--name", "a b"],
            "--name: \"a b\" is not a usable execution name",
        ),
        (vec!["start", "--state-machine-arn", bad_machine], "--state-machine-arn: "),
        (vec!["start", "--env", "dev", "--region", ""], "--region: empty"),
        (vec!["watch", "--env", ""], "--env: \"\" is not a valid name"),
        (
            vec!["watch", "--execution", "arn:aws:states:us-east-1:1:execution:m"],
            "--execution: \"arn:aws:states:us-east-1:1:execution:m\" is not an execution ARN",
        ),
        (
            vec!["watch", "--env", "dev", "--execution", "no such!"],
            "--execution: \"no such!\" is neither",
        ),
        (
            vec!["watch", "--env", "dev", "--poll-seconds", "-1"],
            "-1 is out of range (must be more than 0 and at most 3600)",
        ),
        (
            vec![
                "watch",
                "--env",
                "dev",
                "--poll-seconds",
                "0",
                "--summary-markdown",
                "summary.md",
            ],
            "0 is out of range",
        ),
        (
            vec!["watch", "--env", "dev", "--execution", "a b", "--summary-markdown", "summary.md"],
            "--execution: \"a b\" is neither",
        ),
        (vec!["report", "--env", ""], "--env: \"\" is not a valid name"),
        (vec!["report", "--execution", "arn:aws:states:::execution::"], "--execution: "),
        (vec!["report", "--state-machine-arn", bad_machine], "--state-machine-arn: "),
        (vec!["teardown", "--env", "", "--yes"], "--env: \"\" is not a valid name"),
        (vec!["teardown", "--env", "dev", "--yes", "--poll-seconds", "nan"], "NaN is out of range"),
        (
            vec!["teardown", "--env", "dev", "--yes", "--cfn-role-arn", "r"],
            "--cfn-role-arn: \"r\" is not an IAM role ARN",
        ),
        (vec!["deploy", "--env", ""], "--env: \"\" is not a valid name"),
        (
            vec!["deploy", "--env", "dev", "--image-tag", "latest"],
            "--image-tag: \"latest\" is not an image tag",
        ),
        (vec!["deploy", "--env", "dev", "--poll-seconds", "7200"], "7200 is out of range"),
        (vec!["retry", "arn:aws:states:us-east-1:123456789012:execution:m"], "EXECUTION_ARN: "),
        (vec!["retry", "--latest", "--env", ""], "--env: \"\" is not a valid name"),
    ];
    for (args, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let output = std::process::Command::new(nton_tests::workspace_binary("nton"))
            .current_dir(dir.path())
            .args(&args)
            .env("AWS_ENDPOINT_URL", &closed)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(i32::from(exit::BAD_INPUT)), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}\nwant: {want}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{args:?} took {:?}: {stderr}",
            started.elapsed()
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{args:?} wrote something");
    }
}

/// With no region anywhere (no flag, no AWS_REGION/AWS_DEFAULT_REGION, no profile), the AWS
/// verbs say so at once, naming the fixes, instead of asking the EC2 instance metadata service
/// (a wait and a screen of IMDS warnings off EC2).
#[test]
fn no_region_is_one_clear_error_without_the_metadata_service() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        vec!["start", "--env", "dev"],
        vec!["watch", "--env", "dev"],
        vec!["report", "--env", "dev"],
        vec!["teardown", "--env", "dev", "--yes"],
        vec!["deploy", "--env", "dev", "--template-dir", "/nonexistent"],
        vec!["retry", "--latest", "--env", "dev"],
    ] {
        let started = std::time::Instant::now();
        let output = std::process::Command::new(nton_tests::workspace_binary("nton"))
            .current_dir(home.path())
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // No ~/.aws/config there: no profile region.
            .env("HOME", home.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(i32::from(exit::BAD_INPUT)), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim(),
            "nton: --region: no AWS region configured (set AWS_REGION, a profile's region, or pass --region)",
            "{args:?}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}
