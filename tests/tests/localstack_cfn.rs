//! The real templates through the CLI's change-set path on LocalStack's CloudFormation, and
//! the state machine that CloudFormation creates executed by LocalStack's Step Functions.
//!
//! LocalStack has no Batch, EFS or ECR, so the templates are first reduced
//! ([`nton_tests::reduce`]): those types and everything that refers to them go, the state
//! machine stays with ARN stand-ins for the dropped queues, job definitions and role. The
//! reduced `pipeline.yaml` is still larger than the 51,200 bytes CloudFormation takes inline,
//! so `nton deploy` uploads it to the registry stack's templates bucket and passes its URL,
//! as on AWS. The CLI is pointed at the reduced templates by its own `--template-dir`.
//!
//! One test function: under nextest each test is its own process, and one LocalStack start
//! should serve every step.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use nton::aws::{self, Console, DeployArgs, StackArgs, StartArgs, TeardownArgs, WatchArgs};
use nton::exit;
use nton_engine::template::Template;
use nton_tests::localstack::{self, LocalStack};
use nton_tests::reduce::{self, Reduced};
use serde_json::Value;

/// The environment the test deploys: stacks `nton-lscfn-registry` and `nton-lscfn-pipeline`.
const ENV: &str = "lscfn";
const PIPELINE_STACK: &str = "nton-lscfn-pipeline";
const REGISTRY_STACK: &str = "nton-lscfn-registry";

/// What LocalStack's CloudFormation cannot create: no Batch, EFS or ECR (localstack.md), and
/// a Lambda function's creation downloads a runtime from GitHub ("Installation of
/// lambda-runtime v0.1.41-pre failed" here); its invocations need Docker anyway.
fn unsupported_on_localstack(resource_type: &str) -> bool {
    ["AWS::Batch::", "AWS::EFS::", "AWS::ECR::", "AWS::Lambda::Function"]
        .iter()
        .any(|prefix| resource_type.starts_with(prefix))
}

fn reduced(template: &str, keep: &[&str]) -> Reduced {
    let path = nton_tests::workspace_root().join("cloudformation").join(template);
    let loaded = Template::load(&path).expect("the template loads");
    reduce::reduce(loaded.body(), unsupported_on_localstack, keep).expect("the reduction")
}

/// A template directory as `nton deploy --template-dir` reads it: the reduced templates and
/// the real dev parameters (minus those only a dropped resource used: none today).
fn template_dir() -> (tempfile::TempDir, Reduced) {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = reduced("pipeline.yaml", &["StateMachine"]);
    let registry = reduced("registry.yaml", &[]);
    // JSON is YAML: CloudFormation and nton read it as the template.
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        serde_json::to_string_pretty(&pipeline.template).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("registry.yaml"),
        serde_json::to_string_pretty(&registry.template).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("params")).unwrap();
    std::fs::copy(
        nton_tests::workspace_root().join("cloudformation/params/dev.json"),
        dir.path().join(format!("params/{ENV}.json")),
    )
    .unwrap();
    (dir, pipeline)
}

/// The harness's mock file with its cases also under the CloudFormation-made machine's name
/// (the stack name: `StateMachineName: !Ref AWS::StackName`).
fn mock_config() -> PathBuf {
    let source = nton_tests::workspace_root().join("tests/localstack/sfn-mock-config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(source).unwrap()).unwrap();
    let cases = config["StateMachines"]["nton-sfn-cases"].clone();
    assert!(cases.is_object(), "the mock file has the nton-sfn-cases machine");
    config["StateMachines"][PIPELINE_STACK] = cases;
    let dir = std::env::temp_dir().join(format!("nton-localstack-cfn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sfn-mock-config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn stack_args() -> StackArgs {
    StackArgs { env: ENV.into(), prefix: "nton".into(), cfn_role_arn: None }
}

fn deploy_args(dir: &Path) -> DeployArgs {
    DeployArgs { stack: stack_args(), poll_seconds: 0.5, ..nton_tests::cli::deploy_args(dir) }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reduced_templates_deploy_run_and_tear_down_through_the_cli() {
    let started = std::time::Instant::now();
    let server: &LocalStack = localstack::shared(&mock_config()).expect("LocalStack starts");
    let config = server.sdk_config().await;
    let (dir, pipeline) = template_dir();
    // The reduction kept what the test is about.
    let kept = pipeline.template["Resources"].as_object().unwrap();
    assert!(kept.contains_key("StateMachine"), "{:?}", kept.keys());
    assert!(pipeline.dropped_resources.contains("ProcureJobQueue"));
    let body_len = std::fs::metadata(dir.path().join("pipeline.yaml")).unwrap().len();
    assert!(body_len > 51_200, "the reduced pipeline ({body_len} bytes) still goes through S3");

    // deploy: registry, then pipeline through S3 by TemplateURL, by change sets.
    let (mut console, out, log) = Console::capture();
    let code = aws::deploy_with(&config, &deploy_args(dir.path()), &mut console).await.unwrap();
    let (out, log) = (out.text(), log.text());
    assert_eq!(code, exit::SUCCESS, "{out}\n{log}");
    assert!(out.contains(&format!("{REGISTRY_STACK}: CREATE_COMPLETE")), "{out}");
    assert!(out.contains(&format!("{PIPELINE_STACK}: CREATE_COMPLETE")), "{out}");
    assert!(
        log.contains(&format!(
            "{PIPELINE_STACK}: pipeline.yaml is {body_len} bytes; uploaded to s3://"
        )),
        "{log}"
    );
    assert!(out.contains("  StateMachineArn = arn:aws:states:"), "{out}");

    // A second deploy changes nothing and says so.
    let (mut console, out, log) = Console::capture();
    let code = aws::deploy_with(&config, &deploy_args(dir.path()), &mut console).await.unwrap();
    assert_eq!(code, exit::SUCCESS, "{}\n{}", out.text(), log.text());
    assert!(out.text().contains(&format!("{PIPELINE_STACK}: no changes")), "{}", out.text());

    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let described = cfn.describe_stacks().stack_name(PIPELINE_STACK).send().await.unwrap();
    let machine_arn = described.stacks()[0]
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some("StateMachineArn"))
        .and_then(|o| o.output_value())
        .expect("a StateMachineArn output")
        .to_string();

    // The machine CloudFormation made, with its DefinitionSubstitutions applied, runs a
    // mocked case to the end; `nton watch` follows it and reports success.
    let sfn = aws_sdk_sfn::Client::new(&config);
    let execution = sfn
        .start_execution()
        .state_machine_arn(format!("{machine_arn}#AllDoneAfterTwoPolls"))
        .name("all-done")
        .input(r#"{"ids": 3, "idsPerNode": 1}"#)
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_string();
    let watch = WatchArgs {
        env: Some(ENV.into()),
        prefix: "nton".into(),
        execution: execution.clone(),
        state_machine_arn: None,
        poll_seconds: 0.5,
        watch_state: "Watch".into(),
        json: false,
        aws: Default::default(),
    };
    let (mut console, out, log) = Console::capture();
    let code = tokio::time::timeout(
        Duration::from_secs(60),
        aws::watch_with(&config, &watch, &mut console),
    )
    .await
    .expect("watch ends")
    .unwrap();
    assert_eq!(code, exit::SUCCESS, "{}\n{}", out.text(), log.text());
    let described = sfn.describe_execution().execution_arn(&execution).send().await.unwrap();
    assert_eq!(described.status(), &ExecutionStatus::Succeeded);
    // The substituted Batch stand-ins reached the task parameters: the definition was the
    // template's, filled by CloudFormation.
    let history = sfn.get_execution_history().execution_arn(&execution).send().await.unwrap();
    let scheduled: Vec<String> = history
        .events()
        .iter()
        .filter_map(|e| e.task_scheduled_event_details())
        .map(|d| d.parameters().to_string())
        .collect();
    assert!(scheduled.iter().any(|p| p.contains(":jobqueue/ProcureJobQueue")), "{scheduled:#?}");

    // start: the CLI finds the machine from the stack's outputs.
    let start = StartArgs {
        env: Some(ENV.into()),
        prefix: "nton".into(),
        ids: Some(4),
        ids_per_node: Some(2),
        name: Some("from-the-cli".into()),
        state_machine_arn: None,
        json: false,
        aws: Default::default(),
    };
    let (mut console, out, log) = Console::capture();
    let code = aws::start_with(&config, &start, &mut console).await.unwrap();
    assert_eq!(code, exit::SUCCESS, "{}\n{}", out.text(), log.text());
    assert!(
        out.text().contains(&format!(
            "{}:from-the-cli",
            machine_arn.replace(":stateMachine:", ":execution:")
        )),
        "{}",
        out.text()
    );
    // Its tasks are not mocked (their Lambdas exist only as stand-ins): stop it.
    let _ = sfn
        .stop_execution()
        .execution_arn(machine_arn.replace(":stateMachine:", ":execution:") + ":from-the-cli")
        .send()
        .await;

    // teardown --yes leaves nothing.
    let teardown = TeardownArgs {
        stack: stack_args(),
        yes: true,
        only: None,
        keep_logs: false,
        poll_seconds: 0.5,
        aws: Default::default(),
    };
    let (mut console, out, log) = Console::capture();
    let code =
        aws::teardown_with(&config, &teardown, &mut console, &mut |_| panic!("--yes asks nothing"))
            .await
            .unwrap();
    assert_eq!(code, exit::SUCCESS, "{}\n{}", out.text(), log.text());
    assert!(out.text().contains("nothing left behind"), "{}\n{}", out.text(), log.text());
    for stack in [PIPELINE_STACK, REGISTRY_STACK] {
        let gone = match cfn.describe_stacks().stack_name(stack).send().await {
            Err(_) => true,
            Ok(answer) => answer
                .stacks()
                .iter()
                .all(|s| s.stack_status().map(|s| s.as_str()) == Some("DELETE_COMPLETE")),
        };
        assert!(gone, "{stack} is gone");
    }
    eprintln!("localstack_cfn took {:?}", started.elapsed());
}
