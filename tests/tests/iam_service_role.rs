//! The CloudFormation service role (cloudformation/github-oidc.yaml, CloudFormationExecutionRole)
//! allows what the resource handlers of every resource type in pipeline.yaml and registry.yaml
//! call: the `handlers.<create|read|update|delete>.permissions` of each type's CloudFormation
//! resource provider schema, plus the calls AWS documents beyond the schemas (EXTRA below).
//! A permission deliberately not granted is listed, with its reason, in
//! tests/iam/not-granted.tsv; a listed permission that the role grants anyway, or that no
//! handler asks for any more, fails too (the table stays true).
//!
//! The schemas come from `$NTON_CFN_HANDLER_SCHEMAS`: the `providers/us_east_1` folder of the
//! cfn-lint 1.12.0 wheel (the last release that keeps the `handlers` key; later ones strip it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use nton_engine::template::Template;
use nton_tests::iam::{allows_action, role_allow_statements, wildcard_match_ignore_case};
use serde_json::Value;

const HANDLER_OPERATIONS: [&str; 4] = ["create", "read", "update", "delete"];

/// Permissions AWS documents beyond the resource provider schemas, per resource type.
const EXTRA: &[(&str, &str, &str)] = &[
    // EFS API reference, CreateMountTarget / DeleteMountTarget / ModifyMountTargetSecurityGroups.
    ("AWS::EFS::MountTarget", "ec2:CreateNetworkInterface", "EFS CreateMountTarget"),
    ("AWS::EFS::MountTarget", "ec2:DescribeSubnets", "EFS CreateMountTarget"),
    ("AWS::EFS::MountTarget", "ec2:DescribeNetworkInterfaces", "EFS CreateMountTarget"),
    ("AWS::EFS::MountTarget", "ec2:DeleteNetworkInterface", "EFS DeleteMountTarget"),
    (
        "AWS::EFS::MountTarget",
        "ec2:DescribeNetworkInterfaceAttribute",
        "EFS mount target security groups",
    ),
    (
        "AWS::EFS::MountTarget",
        "ec2:ModifyNetworkInterfaceAttribute",
        "EFS mount target security groups",
    ),
    // Lambda developer guide, container images, "Amazon ECR permissions": the function's creator
    // reads the image, and Lambda sets the repository policy when the repository has none.
    ("AWS::Lambda::Function", "ecr:BatchGetImage", "Lambda image pull"),
    ("AWS::Lambda::Function", "ecr:GetDownloadUrlForLayer", "Lambda image pull"),
    ("AWS::Lambda::Function", "ecr:GetRepositoryPolicy", "Lambda image pull"),
    ("AWS::Lambda::Function", "ecr:SetRepositoryPolicy", "Lambda image pull"),
    ("AWS::Lambda::Function", "iam:PassRole", "the function's execution role"),
    ("AWS::StepFunctions::StateMachine", "iam:PassRole", "the state machine's role"),
    ("AWS::Batch::ComputeEnvironment", "iam:PassRole", "the instance role and Spot fleet role"),
    ("AWS::Batch::JobDefinition", "iam:PassRole", "the job and execution roles"),
    ("AWS::Scheduler::Schedule", "iam:PassRole", "the schedule's role"),
    ("AWS::EC2::FlowLog", "iam:PassRole", "the flow log's delivery role"),
    ("AWS::IAM::InstanceProfile", "iam:PassRole", "the profile's role"),
    // AWS::Batch::JobDefinition had no registry handler when cfn-lint 1.12.0 was cut
    // (NO_HANDLER_SCHEMA): its calls from the Batch API reference.
    ("AWS::Batch::JobDefinition", "batch:RegisterJobDefinition", "Batch API"),
    ("AWS::Batch::JobDefinition", "batch:DeregisterJobDefinition", "Batch API"),
    ("AWS::Batch::JobDefinition", "batch:DescribeJobDefinitions", "Batch API"),
    ("AWS::Batch::JobDefinition", "batch:TagResource", "Batch API"),
];

/// Types whose schema in that cfn-lint release has no `handlers` key (covered by EXTRA).
const NO_HANDLER_SCHEMA: [&str; 1] = ["AWS::Batch::JobDefinition"];

fn cfn_dir() -> PathBuf {
    nton_tests::workspace_root().join("cloudformation")
}

fn handler_schemas_dir() -> PathBuf {
    let dir = std::env::var("NTON_CFN_HANDLER_SCHEMAS").expect(
        "NTON_CFN_HANDLER_SCHEMAS must name cfn-lint 1.12.0's cfnlint/data/schemas/providers/us_east_1 \
         (tests/tools.sh installs it)",
    );
    PathBuf::from(dir)
}

/// `AWS::EC2::VPC` -> its schema's handler permissions by operation.
fn handler_permissions(resource_type: &str) -> BTreeMap<String, Vec<String>> {
    let file = format!("{}.json", resource_type.to_ascii_lowercase().replace("::", "-"));
    let path = handler_schemas_dir().join(&file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("schema of {resource_type}: {}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("a provider schema is JSON");
    let Some(handlers) = schema.get("handlers") else {
        assert!(
            NO_HANDLER_SCHEMA.contains(&resource_type),
            "{} has no handlers key (a cfn-lint that strips them?)",
            path.display()
        );
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for op in HANDLER_OPERATIONS {
        let perms = handlers
            .pointer(&format!("/{op}/permissions"))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        out.insert(op.to_string(), perms);
    }
    out
}

fn resource_types(template: &str) -> BTreeSet<String> {
    let t = Template::load(cfn_dir().join(template)).expect("template loads");
    t.body()
        .get("Resources")
        .and_then(Value::as_object)
        .expect("Resources")
        .values()
        .filter_map(|r| r.get("Type").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// One row of tests/iam/not-granted.tsv: permission, resource type (or `*`), reason.
struct NotGranted {
    permission: String,
    resource_type: String,
    reason: String,
    line: usize,
}

fn not_granted_table() -> Vec<NotGranted> {
    let path = nton_tests::workspace_root().join("tests/iam/not-granted.tsv");
    let text = std::fs::read_to_string(&path).expect("tests/iam/not-granted.tsv");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(
                cols.len(),
                3,
                "not-granted.tsv line {}: permission<TAB>type<TAB>reason",
                i + 1
            );
            assert!(
                !cols[2].trim().is_empty(),
                "not-granted.tsv line {}: a reason is required",
                i + 1
            );
            NotGranted {
                permission: cols[0].to_string(),
                resource_type: cols[1].to_string(),
                reason: cols[2].to_string(),
                line: i + 1,
            }
        })
        .collect()
}

#[test]
fn service_role_allows_every_handler_permission() {
    let oidc = Template::load(cfn_dir().join("github-oidc.yaml")).expect("github-oidc.yaml loads");
    let statements = role_allow_statements(oidc.body(), "CloudFormationExecutionRole")
        .expect("service role policies");
    let table = not_granted_table();

    let mut types = resource_types("pipeline.yaml");
    types.extend(resource_types("registry.yaml"));

    // permission -> (resource type, where it comes from)
    let mut required: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for resource_type in &types {
        for (op, perms) in handler_permissions(resource_type) {
            for p in perms {
                required.entry(p).or_default().insert(format!("{resource_type} {op} handler"));
            }
        }
        for (t, p, why) in EXTRA {
            if t == resource_type {
                required
                    .entry(p.to_string())
                    .or_default()
                    .insert(format!("{resource_type}: {why}"));
            }
        }
    }

    let excused = |perm: &str, sources: &BTreeSet<String>| {
        table.iter().any(|row| {
            wildcard_match_ignore_case(&row.permission, perm)
                && (row.resource_type == "*"
                    || sources.iter().all(|s| s.starts_with(&row.resource_type)))
        })
    };

    let missing: Vec<String> = required
        .iter()
        .filter(|(perm, sources)| !allows_action(&statements, perm) && !excused(perm, sources))
        .map(|(perm, sources)| {
            format!("{perm} (needed by {})", sources.iter().cloned().collect::<Vec<_>>().join("; "))
        })
        .collect();

    let stale: Vec<String> = table
        .iter()
        .filter(|row| {
            allows_action(&statements, &row.permission)
                || !required.keys().any(|p| wildcard_match_ignore_case(&row.permission, p))
        })
        .map(|row| {
            format!("line {}: {} ({}): {}", row.line, row.permission, row.resource_type, row.reason)
        })
        .collect();

    assert!(
        missing.is_empty() && stale.is_empty(),
        "CloudFormationExecutionRole in cloudformation/github-oidc.yaml misses {} handler permission(s):\n  {}\n\
         tests/iam/not-granted.tsv rows that are granted or no longer asked for ({}):\n  {}",
        missing.len(),
        missing.join("\n  "),
        stale.len(),
        stale.join("\n  ")
    );
}
