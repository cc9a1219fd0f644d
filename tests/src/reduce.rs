//! A CloudFormation template without the resource types an emulator cannot create.
//!
//! LocalStack's CloudFormation has no Batch, EFS or ECR: a stack holding them fails. To deploy
//! the rest of the real template there, [`reduce`] drops every resource of an unsupported type
//! and, transitively, every resource and output that refers to a dropped one (`Ref`,
//! `Fn::GetAtt`, `${X}` in `Fn::Sub`, `DependsOn`). The template is read, never copied by hand,
//! so a change to it reaches the emulator test at once.
//!
//! Some resources are the point of the test (the state machine, whose Definition and
//! DefinitionSubstitutions CloudFormation applies): named in `keep`, they stay, and each of
//! their references to a dropped resource becomes an ARN-shaped stand-in
//! (`arn:<partition>:<service>:<region>:<account>:<kind>/<LogicalId>`), which is all a mocked
//! execution needs. A `DependsOn` on a dropped resource is removed from a kept one (it only
//! orders creation). Conditions and parameters stay: they cannot refer to resources.
//!
//! Written here because no kept crate reduces templates; it works on the long form that
//! `nton_engine::template::Template::body` gives (short-form tags already expanded).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// The template without unsupported resources and their dependants, and what was dropped.
#[derive(Debug, Clone)]
pub struct Reduced {
    pub template: Value,
    /// Logical ids of the dropped resources.
    pub dropped_resources: BTreeSet<String>,
    /// Names of the dropped outputs.
    pub dropped_outputs: BTreeSet<String>,
}

/// Drops the resources whose type `unsupported` accepts, then every resource and output that
/// refers to a dropped resource, until none does; resources named in `keep` stay with
/// stand-ins for their references to dropped ones. A `keep` name that is not a resource, or
/// that is itself of an unsupported type, is an error.
pub fn reduce(
    template: &Value,
    unsupported: impl Fn(&str) -> bool,
    keep: &[&str],
) -> Result<Reduced, String> {
    let mut template = template.clone();
    let resources = template
        .get("Resources")
        .and_then(Value::as_object)
        .ok_or("the template has no Resources mapping")?
        .clone();
    let type_of = |id: &str| -> String {
        resources
            .get(id)
            .and_then(|r| r.get("Type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    for id in keep {
        let Some(_) = resources.get(*id) else {
            return Err(format!("keep: {id} is not a resource of the template"));
        };
        if unsupported(&type_of(id)) {
            return Err(format!("keep: {id} is an {}, a type the reduction drops", type_of(id)));
        }
    }

    let mut dropped: BTreeSet<String> =
        resources.keys().filter(|id| unsupported(&type_of(id))).cloned().collect();
    loop {
        let before = dropped.len();
        for (id, resource) in &resources {
            if dropped.contains(id) || keep.contains(&id.as_str()) {
                continue;
            }
            if references(resource).iter().any(|r| dropped.contains(r)) {
                dropped.insert(id.clone());
            }
        }
        if dropped.len() == before {
            break;
        }
    }

    let mut kept = Map::new();
    for (id, resource) in resources.iter() {
        if dropped.contains(id) {
            continue;
        }
        let mut resource = resource.clone();
        if keep.contains(&id.as_str()) {
            resource = stand_in_references(&resource, &dropped, &type_of);
            if let Some(fields) = resource.as_object_mut() {
                match fields.get("DependsOn").cloned() {
                    Some(Value::String(d)) if dropped.contains(&d) => {
                        fields.remove("DependsOn");
                    }
                    Some(Value::Array(list)) => {
                        let list: Vec<Value> = list
                            .into_iter()
                            .filter(|d| !d.as_str().is_some_and(|d| dropped.contains(d)))
                            .collect();
                        fields.insert("DependsOn".into(), Value::Array(list));
                    }
                    _ => {}
                }
            }
        }
        kept.insert(id.clone(), resource);
    }
    template["Resources"] = Value::Object(kept);

    let mut dropped_outputs = BTreeSet::new();
    if let Some(outputs) = template.get_mut("Outputs").and_then(Value::as_object_mut) {
        outputs.retain(|name, output| {
            let refers = references(output).iter().any(|r| dropped.contains(r));
            if refers {
                dropped_outputs.insert(name.clone());
            }
            !refers
        });
    }
    Ok(Reduced { template, dropped_resources: dropped, dropped_outputs })
}

/// Logical ids a template value refers to: `Ref`, `Fn::GetAtt` (list or `X.Attr` form),
/// `${X}` / `${X.Attr}` in `Fn::Sub` strings (not `${!literal}`, not names the Sub's own
/// variable map defines), and `DependsOn`. Pseudo parameters and parameters are included;
/// callers compare against resource ids.
pub fn references(value: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    collect(value, &mut found);
    found
}

fn collect(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("Ref", Value::String(name)) => {
                        found.insert(name.clone());
                    }
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        if let Some(Value::String(name)) = parts.first() {
                            found.insert(name.clone());
                        }
                        parts.iter().skip(1).for_each(|p| collect(p, found));
                    }
                    ("Fn::GetAtt", Value::String(dotted)) => {
                        found.insert(dotted.split('.').next().unwrap_or_default().to_string());
                    }
                    ("Fn::Sub", Value::String(text)) => sub_names(text, &Map::new(), found),
                    ("Fn::Sub", Value::Array(parts)) => {
                        let vars =
                            parts.get(1).and_then(Value::as_object).cloned().unwrap_or_default();
                        if let Some(Value::String(text)) = parts.first() {
                            sub_names(text, &vars, found);
                        }
                        parts.iter().skip(1).for_each(|p| collect(p, found));
                    }
                    ("DependsOn", Value::String(name)) => {
                        found.insert(name.clone());
                    }
                    ("DependsOn", Value::Array(names)) => {
                        found.extend(names.iter().filter_map(Value::as_str).map(str::to_string));
                    }
                    _ => collect(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
        _ => {}
    }
}

/// The `${Name}` / `${Name.Attr}` references of a `Fn::Sub` string.
fn sub_names(text: &str, vars: &Map<String, Value>, found: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.starts_with('!') {
            let base = name.split('.').next().unwrap_or_default().trim();
            if !base.is_empty() && !vars.contains_key(base) {
                found.insert(base.to_string());
            }
        }
        rest = &after[end + 1..];
    }
}

/// An ARN-shaped stand-in for a dropped resource (or one of its attributes).
fn stand_in(logical_id: &str, resource_type: &str) -> Value {
    let mut parts = resource_type.split("::").skip(1);
    let service = parts.next().unwrap_or("unknown").to_ascii_lowercase();
    let kind = parts.next().unwrap_or("resource").to_ascii_lowercase();
    // IAM ARNs have no region; a stand-in role must look like a role to the service.
    let region = if service == "iam" { "" } else { "${AWS::Region}" };
    json!({
        "Fn::Sub": format!(
            "arn:${{AWS::Partition}}:{service}:{region}:${{AWS::AccountId}}:{kind}/{logical_id}"
        )
    })
}

/// `value` with every reference to a dropped resource replaced by its stand-in.
fn stand_in_references(
    value: &Value,
    dropped: &BTreeSet<String>,
    type_of: &dyn Fn(&str) -> String,
) -> Value {
    match value {
        Value::Object(map) => {
            if map.len() == 1 {
                let (key, inner) = map.iter().next().expect("one entry");
                let target = match (key.as_str(), inner) {
                    ("Ref", Value::String(name)) => Some(name.clone()),
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        parts.first().and_then(Value::as_str).map(str::to_string)
                    }
                    ("Fn::GetAtt", Value::String(dotted)) => {
                        dotted.split('.').next().map(str::to_string)
                    }
                    _ => None,
                };
                if let Some(target) = target.filter(|t| dropped.contains(t)) {
                    return stand_in(&target, &type_of(&target));
                }
                if key == "Fn::Sub" {
                    return stand_in_sub(inner, dropped, type_of);
                }
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), stand_in_references(v, dropped, type_of)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| stand_in_references(v, dropped, type_of)).collect())
        }
        other => other.clone(),
    }
}

/// A `Fn::Sub` whose `${Dropped}` / `${Dropped.Attr}` names are bound, through its variable
/// map, to stand-ins.
fn stand_in_sub(
    inner: &Value,
    dropped: &BTreeSet<String>,
    type_of: &dyn Fn(&str) -> String,
) -> Value {
    let (text, mut vars) = match inner {
        Value::String(text) => (text.clone(), Map::new()),
        Value::Array(parts) => (
            parts.first().and_then(Value::as_str).unwrap_or_default().to_string(),
            parts
                .get(1)
                .and_then(Value::as_object)
                .map(|vars| {
                    vars.iter()
                        .map(|(k, v)| (k.clone(), stand_in_references(v, dropped, type_of)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        other => return json!({ "Fn::Sub": other }),
    };
    let mut names = BTreeSet::new();
    sub_names(&text, &vars, &mut names);
    let mut text = text;
    for name in names.iter().filter(|n| dropped.contains(*n)) {
        // `${X.Arn}` and `${X}` both become one variable: the stand-in ARN.
        let variable = format!("Dropped{name}");
        let mut rewritten = String::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            rewritten.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                rewritten.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let inside = &after[..end];
            if inside.split('.').next() == Some(name.as_str()) {
                rewritten.push_str(&format!("${{{variable}}}"));
            } else {
                rewritten.push_str(&format!("${{{inside}}}"));
            }
            rest = &after[end + 1..];
        }
        rewritten.push_str(rest);
        text = rewritten;
        vars.insert(variable, stand_in(name, &type_of(name)));
    }
    if vars.is_empty() { json!({ "Fn::Sub": text }) } else { json!({ "Fn::Sub": [text, vars] }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "Conditions": {"Always": {"Fn::Equals": ["a", "a"]}},
            "Resources": {
                "Queue": {"Type": "AWS::Batch::JobQueue", "Properties": {}},
                "Files": {"Type": "AWS::EFS::FileSystem"},
                "QueueRole": {"Type": "AWS::IAM::Role", "Properties": {
                    "Policies": [{"Resource": {"Fn::Sub": "${Queue}/x"}}]}},
                "ViaRole": {"Type": "AWS::IAM::Policy", "Properties": {
                    "Roles": [{"Ref": "QueueRole"}]}},
                "Ordered": {"Type": "AWS::Logs::LogGroup", "DependsOn": ["Files"]},
                "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {
                    "Name": {"Fn::Sub": ["${AWS::StackName}-${Literal}-${!Queue}", {"Literal": "x"}]}}},
                "Machine": {"Type": "AWS::StepFunctions::StateMachine",
                    "DependsOn": ["Files", "Bucket"],
                    "Properties": {
                        "RoleArn": {"Fn::GetAtt": ["QueueRole", "Arn"]},
                        "DefinitionSubstitutions": {
                            "Q": {"Ref": "Queue"},
                            "B": {"Ref": "Bucket"},
                            "S": {"Fn::Sub": "${Queue.Arn}:${Bucket}"}
                        }}}
            },
            "Outputs": {
                "QueueName": {"Value": {"Fn::GetAtt": "Queue.Name"}},
                "RoleArn": {"Value": {"Fn::GetAtt": ["ViaRole", "Arn"]}},
                "BucketName": {"Value": {"Ref": "Bucket"}, "Condition": "Always"}
            }
        })
    }

    fn batch_or_efs(t: &str) -> bool {
        t.starts_with("AWS::Batch::") || t.starts_with("AWS::EFS::")
    }

    #[test]
    fn unsupported_types_and_their_dependants_go_transitively() {
        let reduced = reduce(&sample(), batch_or_efs, &["Machine"]).unwrap();
        assert_eq!(
            reduced.dropped_resources,
            ["Files", "Ordered", "Queue", "QueueRole", "ViaRole"].map(String::from).into()
        );
        assert_eq!(reduced.dropped_outputs, ["QueueName", "RoleArn"].map(String::from).into());
        let resources = reduced.template["Resources"].as_object().unwrap();
        assert_eq!(resources.keys().collect::<Vec<_>>(), vec!["Bucket", "Machine"]);
        // `${!Queue}` is a literal and `${Literal}` the Sub's own variable: no reference.
        assert_eq!(resources["Bucket"], sample()["Resources"]["Bucket"]);
        assert_eq!(reduced.template["Conditions"], sample()["Conditions"]);
        assert!(reduced.template["Outputs"].get("BucketName").is_some());
    }

    #[test]
    fn kept_resources_get_arn_stand_ins_for_dropped_references() {
        let reduced = reduce(&sample(), batch_or_efs, &["Machine"]).unwrap();
        let machine = &reduced.template["Resources"]["Machine"];
        assert_eq!(machine["DependsOn"], json!(["Bucket"]));
        let props = &machine["Properties"];
        assert_eq!(
            props["RoleArn"],
            json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/QueueRole"})
        );
        assert_eq!(
            props["DefinitionSubstitutions"]["Q"],
            json!({"Fn::Sub": "arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}:jobqueue/Queue"})
        );
        assert_eq!(props["DefinitionSubstitutions"]["B"], json!({"Ref": "Bucket"}));
        assert_eq!(
            props["DefinitionSubstitutions"]["S"],
            json!({"Fn::Sub": ["${DroppedQueue}:${Bucket}", {
                "DroppedQueue": {"Fn::Sub": "arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}:jobqueue/Queue"}
            }]})
        );
        // Nothing left refers to a dropped resource.
        let left = references(&reduced.template["Resources"]);
        assert!(left.is_disjoint(&reduced.dropped_resources), "{left:?}");
    }

    #[test]
    fn keep_names_must_be_supported_resources() {
        let error = reduce(&sample(), batch_or_efs, &["Nope"]).unwrap_err();
        assert!(error.contains("Nope is not a resource"), "{error}");
        let error = reduce(&sample(), batch_or_efs, &["Queue"]).unwrap_err();
        assert!(error.contains("AWS::Batch::JobQueue"), "{error}");
    }
}
