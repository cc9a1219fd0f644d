//! The real CloudFormation templates are clean: cfn-lint (errors and warnings, with the default
//! parameters and with every cloudformation/params/<env>.json), cfn-guard validate against every
//! error-level rule, and the guard rules' own unit tests. Also checks the parameter files and the
//! contracts the local engine relies on.
//!
//! Tools come from `$NTON_CFN_LINT` / `$NTON_CFN_GUARD`, else `cfn-lint` / `cfn-guard` on PATH
//! (tests/tools.sh installs them, pinned).

use std::path::PathBuf;
use std::process::Command;

use serde_yaml_ng::Value;

const TEMPLATES: [&str; 3] = ["pipeline.yaml", "registry.yaml", "github-oidc.yaml"];
/// Rule files reported as warnings (cdk-nag's VPC3 is a warning): validated separately.
const WARNING_RULES: [&str; 1] = ["vpc3.guard"];

fn cfn_dir() -> PathBuf {
    nton_tests::workspace_root().join("cloudformation")
}

fn tool(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

fn run(program: &str, args: &[String]) -> (i32, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} (tests/tools.sh installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

fn path_arg(path: PathBuf) -> String {
    path.to_string_lossy().into_owned()
}

fn params_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cfn_dir().join("params"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn pipeline() -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(cfn_dir().join("pipeline.yaml")).unwrap())
        .unwrap()
}

#[test]
fn cfn_lint_is_clean_on_every_template() {
    let lint = tool("NTON_CFN_LINT", "cfn-lint");
    for template in TEMPLATES {
        let (code, out) = run(&lint, &[path_arg(cfn_dir().join(template))]);
        assert_eq!(code, 0, "cfn-lint {template}:\n{out}");
    }
}

#[test]
fn cfn_lint_is_clean_with_every_environment_and_compute_type() {
    let lint = tool("NTON_CFN_LINT", "cfn-lint");
    let mut sets: Vec<(String, Vec<String>)> = params_files()
        .into_iter()
        .map(|file| {
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let params = json["Parameters"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect();
            (file.display().to_string(), params)
        })
        .collect();
    for compute in ["EC2", "SPOT"] {
        sets.push((
            format!("ComputeType={compute}, NAT"),
            vec![
                format!("ComputeType={compute}"),
                "EgressMode=NatGateway".into(),
            ],
        ));
    }
    sets.push((
        "existing VPC".into(),
        vec![
            "ExistingVpcId=vpc-0123456789abcdef0".into(),
            "ExistingSubnetAId=subnet-0123456789abcdef0".into(),
            "ExistingSubnetBId=subnet-0123456789abcdef1".into(),
        ],
    ));
    for (name, params) in sets {
        let mut args = vec!["-t".to_string(), path_arg(cfn_dir().join("pipeline.yaml"))];
        args.push("--parameters".into());
        args.extend(params);
        let (code, out) = run(&lint, &args);
        assert_eq!(code, 0, "cfn-lint pipeline.yaml with {name}:\n{out}");
    }
}

#[test]
fn params_files_name_only_real_parameters_in_the_template_configuration_format() {
    let template = pipeline();
    let declared = template["Parameters"].as_mapping().unwrap();
    let names: Vec<String> = params_files()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for env in ["dev", "prod"] {
        assert!(names.iter().any(|n| n == env), "no params/{env}.json");
    }
    for file in params_files() {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let object = json.as_object().unwrap();
        assert!(
            object
                .keys()
                .all(|k| k == "Parameters" || k == "Tags" || k == "StackPolicy"),
            "{}: only Parameters, Tags, StackPolicy belong in a template configuration",
            file.display()
        );
        for (key, value) in json["Parameters"].as_object().unwrap() {
            assert!(
                declared.contains_key(key.as_str()),
                "{}: {key} is not a parameter",
                file.display()
            );
            assert!(
                value.is_string(),
                "{}: {key} must be a string",
                file.display()
            );
        }
        for (key, value) in json["Tags"].as_object().unwrap() {
            assert!(
                value.is_string(),
                "{}: tag {key} must be a string",
                file.display()
            );
        }
    }
}

#[test]
fn cfn_guard_validate_passes_every_template() {
    let guard = tool("NTON_CFN_GUARD", "cfn-guard");
    let rules_dir = cfn_dir().join("guard");
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for entry in std::fs::read_dir(&rules_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "guard") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if WARNING_RULES.contains(&name.as_str()) {
                warnings.push(path);
            } else {
                errors.push(path);
            }
        }
    }
    assert!(
        errors.len() >= 25,
        "only {} error rules found",
        errors.len()
    );
    for template in TEMPLATES {
        let mut args = vec![
            "validate".to_string(),
            "-d".into(),
            path_arg(cfn_dir().join(template)),
            "--show-summary".into(),
            "fail".into(),
        ];
        for rules in &errors {
            args.push("-r".into());
            args.push(path_arg(rules.clone()));
        }
        let (code, out) = run(&guard, &args);
        assert_eq!(code, 0, "cfn-guard validate {template}:\n{out}");
        // Warnings never fail the build, but our templates have none either.
        for rules in &warnings {
            let (code, out) = run(
                &guard,
                &[
                    "validate".into(),
                    "-d".into(),
                    path_arg(cfn_dir().join(template)),
                    "-r".into(),
                    path_arg(rules.clone()),
                ],
            );
            assert_eq!(
                code,
                0,
                "warning rule {} on {template}:\n{out}",
                rules.display()
            );
        }
    }
}

#[test]
fn cfn_guard_rule_unit_tests_pass() {
    let guard = tool("NTON_CFN_GUARD", "cfn-guard");
    let (code, out) = run(
        &guard,
        &[
            "test".into(),
            "-d".into(),
            path_arg(cfn_dir().join("guard")),
        ],
    );
    assert_eq!(code, 0, "cfn-guard test:\n{out}");
    let cases = out.matches("Test Case #").count();
    assert!(cases >= 200, "only {cases} guard test cases ran:\n{out}");
}

#[test]
fn templates_fit_where_they_are_deployed_from() {
    // CloudFormation takes at most 51,200 bytes inline (TemplateBody) and 1 MB from S3.
    for (template, limit) in [
        ("registry.yaml", 51_200),
        ("github-oidc.yaml", 51_200),
        ("pipeline.yaml", 1_000_000),
    ] {
        let size = std::fs::metadata(cfn_dir().join(template)).unwrap().len();
        assert!(size <= limit, "{template} is {size} bytes, over {limit}");
    }
}

#[test]
fn the_engine_contract_holds() {
    let template = pipeline();
    let resources = template["Resources"].as_mapping().unwrap();
    for id in [
        "InitFunction",
        "WatchFunction",
        "ProcureComputeEnvironment",
        "ProcessComputeEnvironment",
        "EgressComputeEnvironment",
        "ProcureJobQueue",
        "ProcessJobQueue",
        "EgressJobQueue",
        "ProcureJobDefinition",
        "ProcessJobDefinition",
        "EgressJobDefinition",
        "ResultsBucket",
        "StateMachine",
    ] {
        assert!(resources.contains_key(id), "{id} is gone");
    }
    let substitutions =
        template["Resources"]["StateMachine"]["Properties"]["DefinitionSubstitutions"]
            .as_mapping()
            .unwrap();
    let mut keys: Vec<&str> = substitutions.keys().map(|k| k.as_str().unwrap()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "EgressJobDefinitionArn",
            "EgressJobQueueArn",
            "InitFunctionArn",
            "ProcessJobDefinitionArn",
            "ProcessJobQueueArn",
            "ProcureJobDefinitionArn",
            "ProcureJobQueueArn",
            "WatchFunctionArn",
        ]
    );
    let text = std::fs::read_to_string(cfn_dir().join("pipeline.yaml")).unwrap();
    assert!(!text.contains("Fn::ImportValue") && !text.contains("!ImportValue"));
    // The init Lambda mounts EFS where the jobs do, and where NTON_DATA_ROOT points.
    let init = &template["Resources"]["InitFunction"]["Properties"];
    assert_eq!(init["FileSystemConfigs"][0]["LocalMountPath"], "/mnt/efs");
    assert_eq!(
        init["Environment"]["Variables"]["NTON_DATA_ROOT"],
        "/mnt/efs"
    );
    for stage in ["Procure", "Process", "Egress"] {
        let container = &template["Resources"][format!("{stage}JobDefinition").as_str()]["Properties"]
            ["ContainerProperties"];
        assert_eq!(container["MountPoints"][0]["ContainerPath"], "/mnt/efs");
        assert_eq!(container["Environment"][0]["Name"], "NTON_DATA_ROOT");
        assert_eq!(container["Environment"][0]["Value"], "/mnt/efs");
        // Image strings end in /<binary><ImageTag>: the last path segment names the binary.
        let image = serde_yaml_ng::to_string(&container["Image"]).unwrap();
        assert!(image.contains("/nton-job"), "{stage} image: {image}");
    }
}
