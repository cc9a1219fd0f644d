//! The guard rules for the run-notification and stopped-run-cleanup resources (sns2, sns3, kms5,
//! lambda_permission_source) catch a broken variant of the real pipeline template, as
//! tests/tests/cfn_guard_broken.rs does for the other rules: the template passes the rule, the
//! variant with one mistake exits 19 naming the rule and printing its Violation message.
//! (These cases belong in cfn_guard_broken.rs's `cases()`; they live here until they move.)

use std::process::Command;

use serde_yaml_ng::Value;

fn cfn_dir() -> std::path::PathBuf {
    nton_tests::workspace_root().join("cloudformation")
}

fn validate(data: &std::path::Path, rule_file: &str) -> (i32, String) {
    let guard = std::env::var("NTON_CFN_GUARD").unwrap_or_else(|_| "cfn-guard".to_string());
    let rules = cfn_dir().join("guard").join(format!("{rule_file}.guard"));
    let output = Command::new(&guard)
        .arg("validate")
        .arg("-d")
        .arg(data)
        .arg("-r")
        .arg(&rules)
        .args(["-S", "none", "-z", "-o", "json"])
        .output()
        .unwrap_or_else(|e| panic!("running {guard} (tests/tools.sh installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

fn properties<'a>(template: &'a mut Value, id: &str) -> &'a mut serde_yaml_ng::Mapping {
    template["Resources"][id]["Properties"]
        .as_mapping_mut()
        .unwrap_or_else(|| panic!("{id} has no Properties"))
}

type Break = fn(&mut Value);

#[test]
fn each_new_rule_catches_its_broken_variant_of_the_pipeline() {
    let cases: [(&str, &str, &str, Break); 4] = [
        ("sns2", "SNS2", "topic without KmsMasterKeyId", |t| {
            assert!(
                properties(t, "RunNotificationTopic")
                    .remove("KmsMasterKeyId")
                    .is_some()
            );
        }),
        (
            "sns3",
            "SNS3",
            "topic policy without the TLS-only deny",
            |t| {
                let statements = properties(t, "RunNotificationTopicPolicy")
                    .get_mut("PolicyDocument")
                    .unwrap()["Statement"]
                    .as_sequence_mut()
                    .unwrap();
                let before = statements.len();
                statements.retain(|s| s["Effect"] != "Deny");
                assert_eq!(statements.len(), before - 1);
            },
        ),
        ("kms5", "KMS5", "key without rotation", |t| {
            properties(t, "RunNotificationKey")
                .insert("EnableKeyRotation".into(), Value::Bool(false));
        }),
        (
            "lambda_permission_source",
            "LAMBDA_PERMISSION_SOURCE",
            "EventBridge may invoke the watcher for any rule",
            |t| {
                assert!(
                    properties(t, "StoppedRunCleanupPermission")
                        .remove("SourceArn")
                        .is_some()
                );
            },
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(cfn_dir().join("pipeline.yaml")).unwrap();
    let mut failures = Vec::new();
    for (i, (rule_file, rule, what, breaks)) in cases.iter().enumerate() {
        let (code, out) = validate(&cfn_dir().join("pipeline.yaml"), rule_file);
        assert_eq!(
            code, 0,
            "pipeline.yaml fails {rule} before being broken:\n{out}"
        );
        let mut template: Value = serde_yaml_ng::from_str(&text).unwrap();
        breaks(&mut template);
        let path = dir.path().join(format!("{i}-pipeline.yaml"));
        std::fs::write(&path, serde_yaml_ng::to_string(&template).unwrap()).unwrap();
        let (code, out) = validate(&path, rule_file);
        let named = out.contains(&format!("\"name\": \"{rule}\""));
        let message = out.contains(&format!("{rule} - "));
        if code != 19 || !named || !message {
            failures.push(format!(
                "{what} ({rule}): exit {code}, rule named: {named}, message shown: {message}\n{out}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
