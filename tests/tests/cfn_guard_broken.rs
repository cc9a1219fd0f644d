//! Every cfn-guard rule in cloudformation/guard catches a deliberately broken variant of the real
//! templates: the template is changed in memory (one mistake per case), written to a temp dir, and
//! `cfn-guard validate` must exit 19 naming that rule and printing its Violation message.
//!
//! cfn-guard comes from `$NTON_CFN_GUARD`, else `cfn-guard` on PATH (tests/tools.sh installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};

type Mapping = Map<String, Value>;

fn cfn_dir() -> PathBuf {
    nton_tests::workspace_root().join("cloudformation")
}

fn cfn_guard() -> String {
    std::env::var("NTON_CFN_GUARD").unwrap_or_else(|_| "cfn-guard".to_string())
}

fn load(template: &str) -> Value {
    let path = cfn_dir().join(template);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    nton_engine::template::parse_document(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn key(k: &str) -> Value {
    Value::String(k.to_string())
}

fn field(k: &str) -> String {
    k.to_string()
}

/// The mapping at `path` (resource logical id first, then property names) inside `Resources`.
fn at<'a>(template: &'a mut Value, path: &[&str]) -> &'a mut Mapping {
    let mut node = template.get_mut("Resources").expect("template has Resources");
    for segment in path {
        node = node.get_mut(*segment).unwrap_or_else(|| panic!("no {segment} in {path:?}"));
    }
    node.as_object_mut().unwrap_or_else(|| panic!("{path:?} is not a mapping"))
}

fn set(template: &mut Value, path: &[&str], field: &str, value: Value) {
    at(template, path).insert(field.to_string(), value);
}

fn remove(template: &mut Value, path: &[&str], field: &str) {
    assert!(at(template, path).remove(field).is_some(), "{path:?} has no {field} to remove");
}

fn yaml(text: &str) -> Value {
    nton_engine::template::parse_document(text).expect("test YAML parses")
}

/// One broken variant: which template, what is wrong, which rule file and rule must catch it.
struct Case {
    template: &'static str,
    rule_file: &'static str,
    rule: &'static str,
    what: &'static str,
    breaks: fn(&mut Value),
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            template: "pipeline.yaml",
            rule_file: "s1",
            rule: "S1",
            what: "results bucket without access logging",
            breaks: |t| remove(t, &["ResultsBucket", "Properties"], "LoggingConfiguration"),
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "s2",
            rule: "S2",
            what: "results bucket allowing public bucket policies",
            breaks: |t| {
                set(
                    t,
                    &["ResultsBucket", "Properties", "PublicAccessBlockConfiguration"],
                    "BlockPublicPolicy",
                    Value::Bool(false),
                )
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "s10",
            rule: "S10",
            what: "results bucket without the TLS-only policy",
            breaks: |t| {
                t["Resources"]
                    .as_object_mut()
                    .unwrap()
                    .remove("ResultsBucketPolicy")
                    .expect("ResultsBucketPolicy exists");
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "efs1",
            rule: "EFS1",
            what: "unencrypted EFS",
            breaks: |t| set(t, &["FileSystem", "Properties"], "Encrypted", Value::Bool(false)),
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "vpc7",
            rule: "VPC7",
            what: "VPC without flow logs",
            breaks: |t| {
                t["Resources"]
                    .as_object_mut()
                    .unwrap()
                    .remove("VpcFlowLog")
                    .expect("VpcFlowLog exists");
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "vpc3",
            rule: "VPC3",
            what: "a network ACL (warning)",
            breaks: |t| {
                t["Resources"].as_object_mut().unwrap().insert(
                    field("PrivateAcl"),
                    yaml("{Type: AWS::EC2::NetworkAcl, Properties: {VpcId: {Ref: Vpc}}}"),
                );
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "ec23",
            rule: "EC23",
            what: "security group open to the world",
            breaks: |t| {
                set(
                    t,
                    &["ComputeSecurityGroup", "Properties"],
                    "SecurityGroupIngress",
                    yaml("[{IpProtocol: tcp, FromPort: 22, ToPort: 22, CidrIp: 0.0.0.0/0}]"),
                )
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "ec27",
            rule: "EC27",
            what: "security group without a real description",
            breaks: |t| set(t, &["EfsSecurityGroup", "Properties"], "GroupDescription", key("x")),
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "ec26",
            rule: "EC26",
            what: "launch template with an unencrypted root volume",
            breaks: |t| {
                let mappings = at(t, &["BatchLaunchTemplate", "Properties", "LaunchTemplateData"]);
                mappings.insert(
                    field("BlockDeviceMappings"),
                    yaml("[{DeviceName: /dev/xvda, Ebs: {Encrypted: false, VolumeSize: 30}}]"),
                );
            },
        },
        Case {
            template: "registry.yaml",
            rule_file: "ecr1",
            rule: "ECR1",
            what: "repository anyone may pull from",
            breaks: |t| {
                set(
                    t,
                    &["JobRepository", "Properties"],
                    "RepositoryPolicyText",
                    yaml(
                        "{Version: '2012-10-17', Statement: [{Effect: Allow, Principal: '*', Action: ['ecr:BatchGetImage']}]}",
                    ),
                )
            },
        },
        Case {
            template: "registry.yaml",
            rule_file: "ecr_scan_on_push",
            rule: "ECR_SCAN_ON_PUSH",
            what: "repository without scan on push",
            breaks: |t| {
                set(
                    t,
                    &["InitRepository", "Properties", "ImageScanningConfiguration"],
                    "ScanOnPush",
                    Value::Bool(false),
                )
            },
        },
        Case {
            template: "registry.yaml",
            rule_file: "ecr_immutable_tags",
            rule: "ECR_IMMUTABLE_TAGS",
            what: "repository with mutable tags",
            breaks: |t| {
                set(t, &["WatchRepository", "Properties"], "ImageTagMutability", key("MUTABLE"))
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "iam4",
            rule: "IAM4",
            what: "role with an AWS managed policy",
            breaks: |t| {
                set(
                    t,
                    &["EgressJobRole", "Properties"],
                    "ManagedPolicyArns",
                    yaml("['arn:aws:iam::aws:policy/AmazonS3FullAccess']"),
                )
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "iam5",
            rule: "IAM5",
            what: "role with s3:*",
            breaks: |t| {
                let statements = &mut t["Resources"]["EgressJobRole"]["Properties"]["Policies"][0]
                    ["PolicyDocument"]["Statement"];
                let write = statements
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|s| s["Sid"] == key("WriteResults"))
                    .expect("WriteResults statement");
                write["Action"] = key("s3:*");
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "iam5",
            rule: "IAM5",
            what: "a suppression without a reason suppresses nothing",
            breaks: |t| {
                let entry = &mut t["Resources"]["WatchFunctionRole"]["Metadata"]["guard"]["SuppressedRules"]
                    [0];
                entry.as_object_mut().unwrap().remove("reason").expect("a reason to remove");
            },
        },
        Case {
            template: "github-oidc.yaml",
            rule_file: "iam5",
            rule: "IAM5",
            what: "deploy role allowed cloudformation:*",
            breaks: |t| {
                t["Resources"]["DeployRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
                    [0]["Action"] = key("cloudformation:*");
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "l1",
            rule: "L1",
            what: "function on an old runtime",
            breaks: |t| {
                let props = at(t, &["InitFunction", "Properties"]);
                props.remove("PackageType");
                props.insert(field("Runtime"), key("python3.9"));
                props.insert(field("Handler"), key("index.handler"));
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "sf1",
            rule: "SF1",
            what: "state machine without logging",
            breaks: |t| remove(t, &["StateMachine", "Properties"], "LoggingConfiguration"),
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "sf2",
            rule: "SF2",
            what: "state machine without X-Ray",
            breaks: |t| {
                set(
                    t,
                    &["StateMachine", "Properties", "TracingConfiguration"],
                    "Enabled",
                    Value::Bool(false),
                )
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "evb1",
            rule: "EVB1",
            what: "event bus open to everyone",
            breaks: |t| {
                t["Resources"].as_object_mut().unwrap().insert(
                    field("OpenBus"),
                    yaml("{Type: AWS::Events::EventBusPolicy, Properties: {StatementId: all, Action: 'events:PutEvents', Principal: '*'}}"),
                );
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "no_retain",
            rule: "NO_RETAIN",
            what: "bucket retained after the stack is deleted",
            breaks: |t| {
                at(t, &["ResultsBucket"]).insert(field("DeletionPolicy"), key("Retain"));
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "log_group_retention",
            rule: "LOG_GROUP_RETENTION",
            what: "log group without retention",
            breaks: |t| remove(t, &["JobLogGroup", "Properties"], "RetentionInDays"),
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "lambda_efs_in_vpc",
            rule: "LAMBDA_EFS_IN_VPC",
            what: "EFS-mounting function outside the VPC",
            breaks: |t| remove(t, &["InitFunction", "Properties"], "VpcConfig"),
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "lambda_reserved_concurrency",
            rule: "LAMBDA_RESERVED_CONCURRENCY",
            what: "reserved concurrency that every account must grant",
            breaks: |t| {
                set(
                    t,
                    &["WatchFunction", "Properties"],
                    "ReservedConcurrentExecutions",
                    yaml("{Ref: WatchReservedConcurrency}"),
                )
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "batch_job_not_privileged",
            rule: "BATCH_JOB_NOT_PRIVILEGED",
            what: "privileged job container",
            breaks: |t| {
                set(
                    t,
                    &["ProcureJobDefinition", "Properties", "ContainerProperties"],
                    "Privileged",
                    Value::Bool(true),
                )
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "batch_job_non_root",
            rule: "BATCH_JOB_NON_ROOT",
            what: "job container running as root",
            breaks: |t| {
                set(
                    t,
                    &["ProcessJobDefinition", "Properties", "ContainerProperties"],
                    "User",
                    key("root"),
                )
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "batch_job_readonly_root_fs",
            rule: "BATCH_JOB_READONLY_ROOT_FS",
            what: "job container with a writable root filesystem",
            breaks: |t| {
                set(
                    t,
                    &["EgressJobDefinition", "Properties", "ContainerProperties"],
                    "ReadonlyRootFilesystem",
                    Value::Bool(false),
                )
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "batch_job_efs_tls_iam",
            rule: "BATCH_JOB_EFS_TLS_IAM",
            what: "job mounting EFS without TLS",
            breaks: |t| {
                t["Resources"]["ProcureJobDefinition"]["Properties"]["ContainerProperties"]["Volumes"]
                    [0]["EfsVolumeConfiguration"]["TransitEncryption"] = key("DISABLED");
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "batch_job_retry_timeout",
            rule: "BATCH_JOB_RETRY_TIMEOUT",
            what: "job without an attempt timeout",
            breaks: |t| remove(t, &["ProcessJobDefinition", "Properties"], "Timeout"),
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "batch_job_retry_timeout",
            rule: "BATCH_JOB_RETRY_TIMEOUT",
            what: "job retrying a clean application failure",
            breaks: |t| {
                let rules = t["Resources"]["EgressJobDefinition"]["Properties"]["RetryStrategy"]
                    ["EvaluateOnExit"]
                    .as_array_mut()
                    .unwrap();
                for rule in rules.iter_mut() {
                    rule["Action"] = key("RETRY");
                }
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "batch_private_no_public_ip",
            rule: "BATCH_PRIVATE_NO_PUBLIC_IP",
            what: "Fargate job with a public IP",
            breaks: |t| {
                set(
                    t,
                    &["ProcureJobDefinition", "Properties", "ContainerProperties"],
                    "NetworkConfiguration",
                    yaml("{AssignPublicIp: ENABLED}"),
                )
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "batch_private_no_public_ip",
            rule: "BATCH_PRIVATE_NO_PUBLIC_IP",
            what: "compute environment in a public subnet",
            breaks: |t| {
                set(t, &["PrivateSubnetB", "Properties"], "MapPublicIpOnLaunch", Value::Bool(true))
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "sns2",
            rule: "SNS2",
            what: "notification topic without KmsMasterKeyId",
            breaks: |t| remove(t, &["RunNotificationTopic", "Properties"], "KmsMasterKeyId"),
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "sns3",
            rule: "SNS3",
            what: "notification topic policy without the TLS-only deny",
            breaks: |t| {
                let document = at(t, &["RunNotificationTopicPolicy", "Properties"])
                    .get_mut("PolicyDocument")
                    .expect("topic policy has a PolicyDocument");
                let statements = document["Statement"].as_array_mut().expect("Statement is a list");
                let before = statements.len();
                statements.retain(|s| s["Effect"] != "Deny");
                assert_eq!(statements.len(), before - 1, "exactly one Deny to remove");
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "kms5",
            rule: "KMS5",
            what: "notification key without rotation",
            breaks: |t| {
                set(
                    t,
                    &["RunNotificationKey", "Properties"],
                    "EnableKeyRotation",
                    Value::Bool(false),
                )
            },
        },
        Case {
            template: "pipeline.yaml",
            rule_file: "lambda_permission_source",
            rule: "LAMBDA_PERMISSION_SOURCE",
            what: "EventBridge may invoke the watcher for any rule",
            breaks: |t| remove(t, &["StoppedRunCleanupPermission", "Properties"], "SourceArn"),
        },
    ]
}

/// Runs `cfn-guard validate` on one data file with one rules file; returns (exit code, stdout+stderr).
fn validate(data: &Path, rules: &Path) -> (i32, String) {
    let output = Command::new(cfn_guard())
        .arg("validate")
        .arg("-d")
        .arg(data)
        .arg("-r")
        .arg(rules)
        .args(["-S", "none", "-z", "-o", "json"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} (set NTON_CFN_GUARD or put cfn-guard 3.2.1 on PATH; tests/tools.sh installs it): {e}",
                cfn_guard()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn every_broken_variant_fails_its_rule_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        let rules = cfn_dir().join("guard").join(format!("{}.guard", case.rule_file));
        assert!(rules.is_file(), "{} missing", rules.display());

        // The real template passes the rule ...
        let (code, out) = validate(&cfn_dir().join(case.template), &rules);
        assert_eq!(code, 0, "{} fails {} before being broken:\n{out}", case.template, case.rule);

        // ... and the broken one fails it, naming the rule and printing its message.
        let mut template = load(case.template);
        (case.breaks)(&mut template);
        let path = dir.path().join(format!("{i:02}-{}", case.template));
        // Written as JSON (long-form intrinsics), which cfn-guard reads as it reads YAML.
        std::fs::write(&path, serde_json::to_string_pretty(&template).unwrap()).unwrap();
        let (code, out) = validate(&path, &rules);
        let named = out.contains(&format!("\"name\": \"{}\"", case.rule));
        let message = out.contains(&format!("{} - ", case.rule));
        if code != 19 || !named || !message {
            failures.push(format!(
                "{} ({}): exit {code}, rule named: {named}, message shown: {message}\n{out}",
                case.what, case.rule
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_rule_file_has_a_broken_variant() {
    let covered: Vec<&str> = cases().iter().map(|c| c.rule_file).collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(cfn_dir().join("guard")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "guard") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if !covered.contains(&stem.as_str()) {
                missing.push(stem);
            }
        }
    }
    assert!(missing.is_empty(), "rule files without a broken variant: {missing:?}");
}

#[test]
fn every_rule_file_has_a_header_a_message_and_tests() {
    let guard = cfn_dir().join("guard");
    for entry in std::fs::read_dir(&guard).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "guard") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(text.starts_with("#\n# "), "{name}: no header comment");
        for word in ["Checks:", "Fix:"] {
            assert!(text.contains(word), "{name}: header does not say {word}");
        }
        assert!(
            text.contains("Violation:") || text.contains("Warning:"),
            "{name}: no Violation message"
        );
        assert_eq!(text.matches("\nrule ").count(), 1, "{name}: one rule per file");
        let stem = path.file_stem().unwrap().to_string_lossy();
        let tests = guard.join("tests").join(format!("{stem}_tests.yaml"));
        let cases =
            std::fs::read_to_string(&tests).unwrap_or_else(|e| panic!("{}: {e}", tests.display()));
        for outcome in ["SKIP", "PASS", "FAIL"] {
            assert!(
                cases.contains(&format!(": {outcome}")),
                "{}: no {outcome} case",
                tests.display()
            );
        }
        assert!(
            cases.contains("suppressed with a reason")
                || cases.contains("is suppressed with a reason"),
            "{}: no suppressed case",
            tests.display()
        );
    }
}
