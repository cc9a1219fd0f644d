//! `nton teardown` removes what the pipeline stack's delete leaves behind (issue 8, defect 9),
//! against a moto server: every ACTIVE revision of the stack's job definitions (updates leave old
//! ones ACTIVE: `SkipDeregisterOnUpdate`), and this stack's log groups in the account-level
//! CloudWatch Logs resource policy that log delivery writes; a wildcard entry shared with other
//! deliveries is left and named with the command that removes it.

use aws_sdk_batch::types::{ResourceRequirement, ResourceType};
use aws_sdk_cloudformation::types::Capability;
use nton::aws::{self, Console, StackKind, TeardownArgs};
use nton::exit;
use nton_tests::moto::MotoServer;
use serde_json::{Value, json};

const STACK: &str = "nton-dev-pipeline";
const POLICY: &str = "AWSLogDeliveryWrite20150319";

/// A job definition named like the real template's (`<stack>-procure`) and the state machine's
/// log group.
const PIPELINE: &str = r#"
Resources:
  ProcureJobDefinition:
    Type: AWS::Batch::JobDefinition
    Properties:
      JobDefinitionName: !Sub "${AWS::StackName}-procure"
      Type: container
      ContainerProperties:
        Image: public.ecr.aws/docker/library/busybox:latest
        ResourceRequirements:
          - Type: VCPU
            Value: "1"
          - Type: MEMORY
            Value: "128"
      RetryStrategy:
        Attempts: 1
  StateMachineLogGroup:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/aws/vendedlogs/states/${AWS::StackName}"
      RetentionInDays: 1
"#;

fn teardown_args() -> TeardownArgs {
    TeardownArgs { only: Some(StackKind::Pipeline), ..nton_tests::cli::teardown_args() }
}

struct Env {
    _moto: MotoServer,
    config: aws_config::SdkConfig,
    batch: aws_sdk_batch::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
}

/// moto with the stack created and two more revisions registered (what two updates leave), plus
/// another stack's definition that teardown must not touch.
async fn deployed() -> Env {
    let (moto, config) = MotoServer::start_with_config().await.unwrap();
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    cfn.create_stack()
        .stack_name(STACK)
        .template_body(PIPELINE)
        .capabilities(Capability::CapabilityIam)
        .send()
        .await
        .unwrap();
    let batch = aws_sdk_batch::Client::new(&config);
    let requirement =
        |kind, value: &str| ResourceRequirement::builder().r#type(kind).value(value).build();
    for name in ["nton-dev-pipeline-procure", "nton-dev-pipeline-procure", "other-stack-procure"] {
        batch
            .register_job_definition()
            .job_definition_name(name)
            .r#type(aws_sdk_batch::types::JobDefinitionType::Container)
            .container_properties(
                aws_sdk_batch::types::ContainerProperties::builder()
                    .image("public.ecr.aws/docker/library/busybox:latest")
                    .resource_requirements(requirement(ResourceType::Vcpu, "1"))
                    .resource_requirements(requirement(ResourceType::Memory, "128"))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    Env { _moto: moto, config, batch, logs }
}

async fn active(batch: &aws_sdk_batch::Client, name: &str) -> Vec<i32> {
    let answer = batch
        .describe_job_definitions()
        .job_definition_name(name)
        .status("ACTIVE")
        .send()
        .await
        .unwrap();
    let mut revisions: Vec<i32> =
        answer.job_definitions().iter().filter_map(|d| d.revision()).collect();
    revisions.sort();
    revisions
}

fn group_arn(name: &str) -> String {
    format!("arn:aws:logs:us-east-1:123456789012:log-group:{name}")
}

fn delivery_policy(resources: &[String]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "AWSLogDeliveryWrite20150319",
        "Effect": "Allow",
        "Principal": {"Service": ["delivery.logs.amazonaws.com"]},
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": resources,
        "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    }]})
}

async fn put_policy(logs: &aws_sdk_cloudwatchlogs::Client, name: &str, document: &Value) {
    logs.put_resource_policy()
        .policy_name(name)
        .policy_document(document.to_string())
        .send()
        .await
        .unwrap();
}

async fn policy(logs: &aws_sdk_cloudwatchlogs::Client, name: &str) -> Option<Value> {
    let answer = logs.describe_resource_policies().send().await.unwrap();
    answer
        .resource_policies()
        .iter()
        .find(|p| p.policy_name() == Some(name))
        .map(|p| serde_json::from_str(p.policy_document().unwrap()).unwrap())
}

async fn teardown(config: &aws_config::SdkConfig) -> (u8, String, String) {
    let mut never = |_: &str| -> anyhow::Result<bool> { panic!("--yes must not ask") };
    let (mut console, out, log) = Console::capture();
    let code =
        aws::teardown_with(config, &teardown_args(), &mut console, &mut never).await.unwrap();
    (code, out.text(), log.text())
}

#[tokio::test]
async fn teardown_deregisters_every_active_revision_and_removes_the_stacks_log_group_from_the_delivery_policy()
 {
    let env = deployed().await;
    assert_eq!(active(&env.batch, "nton-dev-pipeline-procure").await, vec![1, 2, 3]);
    let ours = format!("{}:log-stream:*", group_arn("/aws/vendedlogs/states/nton-dev-pipeline"));
    let theirs = format!("{}:log-stream:*", group_arn("/aws/vendedlogs/states/someone-else"));
    put_policy(&env.logs, POLICY, &delivery_policy(&[ours.clone(), theirs.clone()])).await;
    // A policy of another name is not log delivery's: left as it is even if it names the group.
    let unrelated = delivery_policy(std::slice::from_ref(&ours));
    put_policy(&env.logs, "SomeoneElsesPolicy", &unrelated).await;

    let (code, out, log) = teardown(&env.config).await;
    assert_eq!(code, exit::SUCCESS, "{out}\n{log}");
    // The confirmation text (printed with --yes) names the definition and its revisions.
    assert!(log.contains("job definition nton-dev-pipeline-procure (3 ACTIVE revisions"), "{log}");

    assert_eq!(active(&env.batch, "nton-dev-pipeline-procure").await, Vec::<i32>::new(), "{out}");
    assert_eq!(active(&env.batch, "other-stack-procure").await, vec![1]);
    assert!(
        out.contains(
            "nton-dev-pipeline: deregistered job definition nton-dev-pipeline-procure revisions 1, 2, 3"
        ),
        "{out}"
    );
    assert!(
        out.contains("INACTIVE revisions of nton-dev-pipeline-procure cannot be deleted"),
        "{out}"
    );
    assert!(out.contains("API_DeregisterJobDefinition.html"), "{out}");

    let rest = policy(&env.logs, POLICY).await.expect("the policy still serves the other group");
    assert_eq!(rest["Statement"][0]["Resource"], json!([theirs]), "{rest}");
    assert!(
        out.contains(&format!(
            "CloudWatch Logs resource policy {POLICY}: removed {ours} (rewritten without them)"
        )),
        "{out}"
    );
    assert_eq!(policy(&env.logs, "SomeoneElsesPolicy").await, Some(unrelated));
    assert!(out.contains("nothing left behind"), "{out}");
}

#[tokio::test]
async fn a_delivery_policy_naming_only_this_stack_is_deleted() {
    let env = deployed().await;
    let ours = group_arn("/aws/vendedlogs/states/nton-dev-pipeline");
    put_policy(
        &env.logs,
        POLICY,
        &delivery_policy(&[format!("{ours}:log-stream:*"), format!("{ours}:*")]),
    )
    .await;
    let (code, out, log) = teardown(&env.config).await;
    assert_eq!(code, exit::SUCCESS, "{out}\n{log}");
    assert_eq!(policy(&env.logs, POLICY).await, None, "{out}");
    assert!(out.contains("(deleted: nothing else was in it)"), "{out}");
}

#[tokio::test]
async fn a_shared_wildcard_in_the_delivery_policy_is_left_and_named_with_its_command() {
    let env = deployed().await;
    let vended = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/vendedlogs/*".to_string();
    let document = delivery_policy(std::slice::from_ref(&vended));
    put_policy(&env.logs, POLICY, &document).await;
    let (code, out, log) = teardown(&env.config).await;
    assert_eq!(code, exit::SUCCESS, "{out}\n{log}");
    assert_eq!(policy(&env.logs, POLICY).await, Some(document));
    assert!(out.contains("left behind:"), "{out}");
    assert!(
        out.contains(&format!("it covers this stack's log groups only through {vended}")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "aws logs delete-resource-policy --policy-name {POLICY} --region us-east-1"
        )),
        "{out}"
    );
    assert_eq!(active(&env.batch, "nton-dev-pipeline-procure").await, Vec::<i32>::new());
}
