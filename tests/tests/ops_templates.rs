//! What the templates promise for runs that end badly and for teardown, read from the real
//! templates:
//! - the cleanup states' Retry names errors the AWS SDK integration can raise;
//! - a stopped (ABORTED) or TIMED_OUT execution reaches the watcher's cleanup (EventBridge rule,
//!   invoke permission, the role's calls), with the statuses and event type the cleanup code
//!   accepts;
//! - a FAILED, TIMED_OUT or ABORTED execution is published to an encrypted, TLS-only topic with a
//!   message naming the run, its error and cause and the `nton report` command, and an email
//!   subscription exists only when an environment asks for one;
//! - the deploy role may do what `nton teardown` does after the stack delete, on this stack's job
//!   definitions only.

use std::collections::BTreeMap;

use clap::Parser;

use nton_engine::template::{LocalContext, Template};
use nton_tests::iam::{allows_action, role_allow_statements, wildcard_match};
use serde_json::{Value, json};

fn template(name: &str) -> Template {
    Template::load(nton_tests::workspace_root().join("cloudformation").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn resource<'a>(template: &'a Template, id: &str) -> &'a Value {
    template
        .body()
        .pointer(&format!("/Resources/{id}"))
        .unwrap_or_else(|| panic!("pipeline.yaml has no {id}"))
}

/// Names the Step Functions AWS SDK integration gives `aws-sdk:batch:*` errors: `Batch.` and an
/// error of the Batch API reference with the `Exception` suffix (Step Functions developer guide,
/// "AWS SDK service integrations"): TerminateJob's ClientException and ServerException, and the
/// TooManyRequestsException Batch throttles with.
const AWS_SDK_BATCH_ERRORS: [&str; 3] =
    ["Batch.ClientException", "Batch.ServerException", "Batch.TooManyRequestsException"];

#[test]
fn cleanup_states_retry_only_errors_the_aws_sdk_integration_can_raise() {
    let pipeline = template("pipeline.yaml");
    let (_, definition) = pipeline.state_machine(&LocalContext::new("nton-test"), None).unwrap();
    let mut checked = Vec::new();
    for (name, state) in definition["States"].as_object().unwrap() {
        let resource = state["Resource"].as_str().unwrap_or_default();
        if !resource.starts_with("arn:aws:states:::aws-sdk:batch:") {
            continue;
        }
        for retrier in state["Retry"].as_array().into_iter().flatten() {
            for error in retrier["ErrorEquals"].as_array().unwrap() {
                let error = error.as_str().unwrap();
                assert!(
                    error.starts_with("States.") || AWS_SDK_BATCH_ERRORS.contains(&error),
                    "{name} ({resource}) retries {error}, a name the AWS SDK integration never raises \
                     (it raises {AWS_SDK_BATCH_ERRORS:?})"
                );
            }
        }
        checked.push(name.clone());
    }
    checked.sort();
    assert_eq!(checked, ["TerminateEgress", "TerminateProcess", "TerminateProcure"]);
}

fn statuses(rule: &Value) -> Vec<String> {
    rule["Properties"]["EventPattern"]["detail"]["status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The pattern matches this stack's state machine's status changes from Step Functions.
fn assert_matches_this_machine(id: &str, rule: &Value) {
    let pattern = &rule["Properties"]["EventPattern"];
    assert_eq!(pattern["source"], json!(["aws.states"]), "{id}");
    assert_eq!(pattern["detail-type"], json!([nton_watch::cleanup::STATUS_CHANGE]), "{id}");
    assert_eq!(pattern["detail"]["stateMachineArn"], json!([{"Ref": "StateMachine"}]), "{id}");
    assert_eq!(rule["Properties"]["State"], "ENABLED", "{id}");
}

#[test]
fn stopped_and_timed_out_runs_reach_the_watchers_cleanup() {
    let pipeline = template("pipeline.yaml");
    let rule = resource(&pipeline, "StoppedRunCleanupRule");
    assert_matches_this_machine("StoppedRunCleanupRule", rule);
    // The statuses after which no state runs, exactly those the cleanup code accepts.
    assert_eq!(statuses(rule), nton_watch::cleanup::STOPPED_STATUSES);
    let targets = rule["Properties"]["Targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["Arn"], json!({"Fn::GetAtt": ["WatchFunction", "Arn"]}));
    assert!(targets[0]["RetryPolicy"]["MaximumRetryAttempts"].as_u64().is_some_and(|n| n > 0));
    // The whole event reaches the function (an InputTransformer would hide the detail).
    assert!(targets[0].get("InputTransformer").is_none());
    assert!(targets[0].get("Input").is_none());

    let permission = &resource(&pipeline, "StoppedRunCleanupPermission")["Properties"];
    assert_eq!(permission["Action"], "lambda:InvokeFunction");
    assert_eq!(permission["FunctionName"], json!({"Fn::GetAtt": ["WatchFunction", "Arn"]}));
    assert_eq!(permission["Principal"], "events.amazonaws.com");
    assert_eq!(permission["SourceArn"], json!({"Fn::GetAtt": ["StoppedRunCleanupRule", "Arn"]}));
    assert_eq!(permission["SourceAccount"], json!({"Ref": "AWS::AccountId"}));

    // The watcher's role reads this machine's executions' history and terminates jobs.
    let statements = role_allow_statements(pipeline.body(), "WatchFunctionRole").unwrap();
    let history = statements
        .iter()
        .find(|s| s.actions == ["states:GetExecutionHistory"])
        .expect("WatchFunctionRole allows states:GetExecutionHistory");
    assert_eq!(
        history.resources,
        [
            json!({"Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${AWS::StackName}:*"})
        ]
    );
    // The state machine is named after the stack, so that pattern is its executions.
    assert_eq!(
        resource(&pipeline, "StateMachine")["Properties"]["StateMachineName"],
        json!({"Ref": "AWS::StackName"})
    );
    assert!(allows_action(&statements, "batch:TerminateJob"));
}

/// EventBridge's InputTransformer, as documented: a placeholder inside quotes is replaced by the
/// value's text, one outside quotes by the value as JSON.
fn transform(template: &str, values: &BTreeMap<&str, Value>) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            in_string = !in_string;
        }
        if c == '<'
            && let Some(end) = rest.find('>')
            && let Some(value) = values.get(&rest[1..end])
        {
            if in_string {
                out.push_str(value.as_str().unwrap_or(&value.to_string()));
            } else {
                out.push_str(&value.to_string());
            }
            rest = &rest[end + 1..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[test]
fn failed_timed_out_and_stopped_runs_are_published_naming_the_run_the_cause_and_the_report() {
    let pipeline = template("pipeline.yaml");
    let rule = resource(&pipeline, "RunNotificationRule");
    assert_matches_this_machine("RunNotificationRule", rule);
    let mut got = statuses(rule);
    got.sort();
    assert_eq!(got, ["ABORTED", "FAILED", "TIMED_OUT"]);
    let target = &rule["Properties"]["Targets"][0];
    assert_eq!(target["Arn"], json!({"Ref": "RunNotificationTopic"}));
    let transformer = &target["InputTransformer"];
    let paths = transformer["InputPathsMap"].as_object().unwrap();
    for (name, path) in [
        ("name", "$.detail.name"),
        ("execution", "$.detail.executionArn"),
        ("status", "$.detail.status"),
        ("error", "$.detail.error"),
        ("cause", "$.detail.cause"),
    ] {
        assert_eq!(paths[name], path, "InputPathsMap.{name}");
    }
    // The Fail states' cause is what the event carries: the watcher's, which names the failed
    // stages and nodes, or the caught error's.
    let (_, definition) = pipeline.state_machine(&LocalContext::new("nton-test"), None).unwrap();
    assert_eq!(definition["States"]["Failed"]["CausePath"], "$.status.cause");
    assert_eq!(definition["States"]["RunFailed"]["CausePath"], "$.failure.Cause");

    // A failed run's event, with a cause holding quotes and a newline: the message is JSON.
    let arn = "arn:aws:states:eu-west-1:123456789012:execution:nton-dev-pipeline:nightly-7";
    let cause = "2 of 10 nodes failed: procure failed on nodes 3, 7 (exit \"1\")\nsee logs";
    let values = BTreeMap::from([
        ("name", json!("nightly-7")),
        ("execution", json!(arn)),
        ("status", json!("FAILED")),
        ("error", json!("nton.StagesFailed")),
        ("cause", json!(cause)),
        ("region", json!("eu-west-1")),
    ]);
    let message = transform(transformer["InputTemplate"].as_str().unwrap(), &values);
    let message: Value = serde_json::from_str(&message)
        .unwrap_or_else(|e| panic!("the message is not JSON ({e}): {message}"));
    assert_eq!(message["run"], "nightly-7");
    assert_eq!(message["execution"], arn);
    assert_eq!(message["status"], "FAILED");
    assert_eq!(message["error"], "nton.StagesFailed");
    assert_eq!(message["cause"], cause);
    let report = message["report"].as_str().unwrap();
    assert_eq!(report, format!("nton report --execution {arn} --region eu-west-1"));
    // The command is one the CLI takes.
    let words: Vec<&str> = report.split(' ').collect();
    nton::cli::Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{report}: {e}"));
    // A stopped run has no error or cause: JSON nulls.
    let mut stopped = values.clone();
    stopped.insert("status", json!("ABORTED"));
    stopped.insert("error", Value::Null);
    stopped.insert("cause", Value::Null);
    let message = transform(transformer["InputTemplate"].as_str().unwrap(), &stopped);
    let message: Value = serde_json::from_str(&message).unwrap();
    assert_eq!(message["cause"], Value::Null);
    assert_eq!(message["summary"], "nton run nightly-7 ended ABORTED");
}

#[test]
fn the_notification_topic_is_encrypted_tls_only_and_only_the_rule_may_publish() {
    let pipeline = template("pipeline.yaml");
    let topic = &resource(&pipeline, "RunNotificationTopic")["Properties"];
    assert_eq!(topic["KmsMasterKeyId"], json!({"Fn::GetAtt": ["RunNotificationKey", "Arn"]}));
    let key = &resource(&pipeline, "RunNotificationKey")["Properties"];
    assert_eq!(key["EnableKeyRotation"], true);
    let key_statements = key["KeyPolicy"]["Statement"].as_array().unwrap();
    let events = key_statements
        .iter()
        .find(|s| s["Principal"]["Service"] == "events.amazonaws.com")
        .expect("the key policy lets EventBridge use the key");
    assert_eq!(events["Action"], json!(["kms:GenerateDataKey", "kms:Decrypt"]));

    let policy = &resource(&pipeline, "RunNotificationTopicPolicy")["Properties"];
    assert_eq!(policy["Topics"], json!([{"Ref": "RunNotificationTopic"}]));
    let statements = policy["PolicyDocument"]["Statement"].as_array().unwrap();
    let deny = statements.iter().find(|s| s["Effect"] == "Deny").expect("a Deny statement");
    assert_eq!(deny["Principal"], "*");
    assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");
    let allows: Vec<&Value> = statements.iter().filter(|s| s["Effect"] == "Allow").collect();
    assert_eq!(allows.len(), 1, "{allows:?}");
    assert_eq!(allows[0]["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(allows[0]["Action"], "sns:Publish");
    assert_eq!(
        allows[0]["Condition"]["ArnEquals"]["aws:SourceArn"],
        json!({"Fn::GetAtt": ["RunNotificationRule", "Arn"]})
    );
}

#[test]
fn an_email_subscription_exists_only_when_an_environment_names_an_address() {
    let pipeline = template("pipeline.yaml");
    for file in ["dev.json", "prod.json"] {
        let path = nton_tests::workspace_root().join("cloudformation/params").join(file);
        let params: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let email = params["Parameters"]["NotificationEmail"]
            .as_str()
            .unwrap_or_else(|| panic!("{file} sets NotificationEmail (empty: no subscription)"));
        let ctx = LocalContext::new("nton-test").with_parameter("NotificationEmail", email);
        let topic = pipeline.resolved_properties("RunNotificationTopic", &ctx).unwrap();
        assert_eq!(topic.get("Subscription").is_some(), !email.is_empty(), "{file}: {topic}");
    }
    let ctx = LocalContext::new("nton-test").with_parameter("NotificationEmail", "ops@example.com");
    let topic = pipeline.resolved_properties("RunNotificationTopic", &ctx).unwrap();
    assert_eq!(
        topic["Subscription"],
        json!([{"Protocol": "email", "Endpoint": "ops@example.com"}])
    );
}

/// `${Name}` of an `Fn::Sub` string replaced from `vars`.
fn substitute(value: &Value, vars: &[(&str, &str)]) -> String {
    let mut text = value["Fn::Sub"]
        .as_str()
        .or(value.as_str())
        .unwrap_or_else(|| panic!("not a Sub string: {value}"))
        .to_string();
    for (name, replacement) in vars {
        text = text.replace(&format!("${{{name}}}"), replacement);
    }
    text
}

#[test]
fn the_deploy_role_may_do_what_teardown_does_after_the_delete_on_this_stacks_definitions_only() {
    let oidc = template("github-oidc.yaml");
    let statements = role_allow_statements(oidc.body(), "DeployRole").unwrap();
    for action in [
        "batch:DescribeJobDefinitions",
        "batch:DeregisterJobDefinition",
        "logs:DescribeResourcePolicies",
        "logs:PutResourcePolicy",
        "logs:DeleteResourcePolicy",
    ] {
        assert!(allows_action(&statements, action), "DeployRole lacks {action}");
    }
    let vars = [
        ("AWS::Partition", "aws"),
        ("AWS::Region", "eu-west-1"),
        ("AWS::AccountId", "123456789012"),
        ("PipelineStackName", "nton-dev-pipeline"),
    ];
    let deregister: Vec<String> = statements
        .iter()
        .filter(|s| s.actions.iter().any(|a| a == "batch:DeregisterJobDefinition"))
        .flat_map(|s| s.resources.iter().map(|r| substitute(r, &vars)))
        .collect();
    assert_eq!(
        deregister,
        ["arn:aws:batch:eu-west-1:123456789012:job-definition/nton-dev-pipeline-*"]
    );
    // The pipeline names its job definitions so that pattern holds them, and nothing else
    // of another stack.
    let pipeline = template("pipeline.yaml");
    let ctx = LocalContext::new("nton-dev-pipeline");
    for stage in ["procure", "process", "egress"] {
        let id = format!("{}JobDefinition", stage[..1].to_uppercase() + &stage[1..]);
        let name = pipeline.resolved_properties(&id, &ctx).unwrap()["JobDefinitionName"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(name, format!("nton-dev-pipeline-{stage}"));
        let arn = format!("arn:aws:batch:eu-west-1:123456789012:job-definition/{name}:4");
        assert!(wildcard_match(&deregister[0], &arn), "{arn}");
    }
    assert!(!wildcard_match(
        &deregister[0],
        "arn:aws:batch:eu-west-1:123456789012:job-definition/other-stack-procure:1"
    ));
}
