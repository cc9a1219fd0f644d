//! The real CloudFormation templates are clean: cfn-lint (errors and warnings, with the default
//! parameters and with every cloudformation/params/<env>.json), cfn-guard validate against every
//! error-level rule, and the guard rules' own unit tests. Also checks the parameter files and the
//! contracts the local engine relies on.
//!
//! Tools come from `$NTON_CFN_LINT` / `$NTON_CFN_GUARD`, else `cfn-lint` / `cfn-guard` on PATH
//! (tests/tools.sh installs them, pinned).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

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
    nton_engine::template::parse_document(
        &std::fs::read_to_string(cfn_dir().join("pipeline.yaml")).unwrap(),
    )
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
            vec![format!("ComputeType={compute}"), "EgressMode=NatGateway".into()],
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
    let declared = template["Parameters"].as_object().unwrap();
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
            object.keys().all(|k| k == "Parameters" || k == "Tags" || k == "StackPolicy"),
            "{}: only Parameters, Tags, StackPolicy belong in a template configuration",
            file.display()
        );
        for (key, value) in json["Parameters"].as_object().unwrap() {
            assert!(
                declared.contains_key(key.as_str()),
                "{}: {key} is not a parameter",
                file.display()
            );
            assert!(value.is_string(), "{}: {key} must be a string", file.display());
        }
        for (key, value) in json["Tags"].as_object().unwrap() {
            assert!(value.is_string(), "{}: tag {key} must be a string", file.display());
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
    assert!(errors.len() >= 25, "only {} error rules found", errors.len());
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
            assert_eq!(code, 0, "warning rule {} on {template}:\n{out}", rules.display());
        }
    }
}

#[test]
fn cfn_guard_rule_unit_tests_pass() {
    let guard = tool("NTON_CFN_GUARD", "cfn-guard");
    let (code, out) = run(&guard, &["test".into(), "-d".into(), path_arg(cfn_dir().join("guard"))]);
    assert_eq!(code, 0, "cfn-guard test:\n{out}");
    let cases = out.matches("Test Case #").count();
    assert!(cases >= 200, "only {cases} guard test cases ran:\n{out}");
}

#[test]
fn templates_fit_where_they_are_deployed_from() {
    // CloudFormation takes at most 51,200 bytes inline (TemplateBody) and 1 MB from S3.
    for (template, limit) in
        [("registry.yaml", 51_200), ("github-oidc.yaml", 51_200), ("pipeline.yaml", 1_000_000)]
    {
        let size = std::fs::metadata(cfn_dir().join(template)).unwrap().len();
        assert!(size <= limit, "{template} is {size} bytes, over {limit}");
    }
}

#[test]
fn the_engine_contract_holds() {
    let template = pipeline();
    let resources = template["Resources"].as_object().unwrap();
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
            .as_object()
            .unwrap();
    let mut keys: Vec<&str> = substitutions.keys().map(String::as_str).collect();
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
    assert_eq!(init["Environment"]["Variables"]["NTON_DATA_ROOT"], "/mnt/efs");
    for stage in ["Procure", "Process", "Egress"] {
        let container = &template["Resources"][format!("{stage}JobDefinition").as_str()]["Properties"]
            ["ContainerProperties"];
        assert_eq!(container["MountPoints"][0]["ContainerPath"], "/mnt/efs");
        assert_eq!(container["Environment"][0]["Name"], "NTON_DATA_ROOT");
        assert_eq!(container["Environment"][0]["Value"], "/mnt/efs");
        // Image strings end in /<binary><ImageTag>: the last path segment names the binary.
        let image = container["Image"].to_string();
        assert!(image.contains("/nton-job"), "{stage} image: {image}");
    }
}

/// The pipeline resolved as the local engine resolves it, with `params` over the defaults.
fn resolved(
    params: &[(&str, &str)],
) -> (nton_engine::template::Template, nton_engine::template::LocalContext) {
    let template = nton_engine::template::Template::load(cfn_dir().join("pipeline.yaml")).unwrap();
    let mut ctx = nton_engine::template::LocalContext::new("nton-test");
    for (name, value) in params {
        ctx = ctx.with_parameter(*name, *value);
    }
    (template, ctx)
}

fn params_of(file: &std::path::Path) -> Vec<(String, String)> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    json["Parameters"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// Defect 7: a deploy with a new image tag registers new job-definition revisions. Executions
/// already running submit the revision their definition named when they started, so the old
/// revision must stay ACTIVE and the role must allow every revision.
#[test]
fn runs_in_flight_can_still_submit_the_job_definition_revision_they_started_with() {
    let (template, ctx) = resolved(&[]);
    let role = template.resolved_properties("StateMachineRole", &ctx).unwrap();
    let statements = role["Policies"][0]["PolicyDocument"]["Statement"].as_array().unwrap();
    let submit = statements
        .iter()
        .find(|s| s["Action"] == "batch:SubmitJob")
        .expect("a statement allowing batch:SubmitJob");
    let resources: Vec<&str> =
        submit["Resource"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    for stage in ["Procure", "Process", "Egress"] {
        let id = format!("{stage}JobDefinition");
        let revision = template.resolve(&serde_json::json!({"Ref": id}), &ctx).unwrap();
        let revision = revision.as_str().unwrap();
        let (family, number) = revision.rsplit_once(':').unwrap();
        assert!(number.parse::<u32>().is_ok(), "{revision}");
        assert!(
            resources.contains(&format!("{family}:*").as_str()),
            "SubmitJob must allow every revision of {family}: {resources:?}"
        );
        assert!(
            !resources.contains(&revision),
            "an exact revision ({revision}) stops matching after the next deploy"
        );
        let definition = template.resolved_properties(&id, &ctx).unwrap();
        assert_eq!(
            definition["ResourceRetentionPolicy"]["SkipDeregisterOnUpdate"], true,
            "{id}: the revision in-flight runs submit must stay ACTIVE after an update"
        );
    }
}

/// Defect 8: a new account's Lambda concurrency quota (as low as 10, 100 kept unreserved)
/// refuses any reservation, so by default none is made; 0 leaves the property out.
#[test]
fn reserved_concurrency_is_left_out_unless_asked_for() {
    let dev = params_of(&cfn_dir().join("params/dev.json"));
    let dev: Vec<(&str, &str)> = dev.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (what, params) in [("the defaults", vec![]), ("dev.json", dev)] {
        let (template, ctx) = resolved(&params);
        for function in ["InitFunction", "WatchFunction"] {
            let props = template.resolved_properties(function, &ctx).unwrap();
            assert!(
                props.get("ReservedConcurrentExecutions").is_none(),
                "{what}: {function} reserves {:?}",
                props["ReservedConcurrentExecutions"]
            );
        }
    }
    let (template, ctx) =
        resolved(&[("InitReservedConcurrency", "2"), ("WatchReservedConcurrency", "5")]);
    let init = template.resolved_properties("InitFunction", &ctx).unwrap();
    let watch = template.resolved_properties("WatchFunction", &ctx).unwrap();
    assert_eq!(init["ReservedConcurrentExecutions"], "2");
    assert_eq!(watch["ReservedConcurrentExecutions"], "5");
}

/// Defect 6: the execution's TimeoutSeconds is RunTimeoutHours as a JSON number, init is told
/// the same hours, and no parameter set polls often enough to fill the 25,000-event history.
#[test]
fn the_run_timeout_is_a_number_init_knows_and_the_poll_interval_fits_the_history() {
    let template = pipeline();
    let allowed: Vec<String> = template["Parameters"]["RunTimeoutHours"]["AllowedValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    assert!(!allowed.is_empty());
    for hours in &allowed {
        let (template, ctx) = resolved(&[("RunTimeoutHours", hours)]);
        let (_, definition) = template.state_machine(&ctx, None).unwrap();
        let expected = hours.parse::<u64>().unwrap() * 3600;
        assert_eq!(
            definition["TimeoutSeconds"].as_u64(),
            Some(expected),
            "RunTimeoutHours {hours}: TimeoutSeconds {:?} (must be a number)",
            definition["TimeoutSeconds"]
        );
        let init = template.resolved_properties("InitFunction", &ctx).unwrap();
        assert_eq!(
            init["Environment"]["Variables"]["NTON_RUN_TIMEOUT_HOURS"].as_str(),
            Some(hours.as_str())
        );
    }
    let default_of = |name: &str| template["Parameters"][name]["Default"].to_string();
    let mut sets = vec![("defaults".to_string(), vec![])];
    for file in params_files() {
        sets.push((file.display().to_string(), params_of(&file)));
    }
    for (what, params) in sets {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| default_of(name))
        };
        let hours: u64 = get("RunTimeoutHours").parse().unwrap();
        let poll: u64 = get("PollSeconds").parse().unwrap();
        let floor = nton_init::min_poll_seconds(hours * 3600);
        assert!(
            poll >= floor,
            "{what}: PollSeconds {poll} is below {floor}, the floor for RunTimeoutHours {hours}"
        );
        assert!(allowed.contains(&hours.to_string()), "{what}: RunTimeoutHours {hours}");
    }
}

/// Defect 6: every job queue cancels a child stuck RUNNABLE for a reason no wait cures, within
/// the limits AWS Batch accepts (600 to 86,400 s).
#[test]
fn every_job_queue_cancels_children_stuck_runnable() {
    let template = pipeline();
    let limit = &template["Parameters"]["RunnableTimeLimitSeconds"];
    assert!(limit["MinValue"].as_u64().unwrap() >= 600);
    assert!(limit["MaxValue"].as_u64().unwrap() <= 86_400);
    let (resolved_template, ctx) = resolved(&[("RunnableTimeLimitSeconds", "900")]);
    for queue in ["ProcureJobQueue", "ProcessJobQueue", "EgressJobQueue"] {
        let props = resolved_template.resolved_properties(queue, &ctx).unwrap();
        let actions = props["JobStateTimeLimitActions"]
            .as_array()
            .unwrap_or_else(|| panic!("{queue} has no JobStateTimeLimitActions"));
        let mut reasons: Vec<&str> = actions
            .iter()
            .map(|a| {
                assert_eq!(a["State"], "RUNNABLE", "{queue}: {a}");
                assert_eq!(a["Action"], "CANCEL", "{queue}: {a}");
                assert_eq!(a["MaxTimeSeconds"], "900", "{queue}: {a}");
                a["Reason"].as_str().unwrap()
            })
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            [
                "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
                "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
                "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
            ],
            "{queue}"
        );
    }
}

/// CloudFormation refuses a template holding a null anywhere ("'null' values are not allowed in
/// templates"), even inside a JSON-typed property such as a state machine's `Definition`; the
/// state machine's own `ResultPath: null` must therefore be written another way. cfn-lint lets
/// some through, and LocalStack's CreateChangeSet fails on them ("Unsupported type NoneType").
#[test]
fn no_template_holds_a_null_value() {
    fn nulls(value: &Value, path: String, found: &mut Vec<String>) {
        match value {
            Value::Null => found.push(path),
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    nulls(item, format!("{path}/{index}"), found);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    nulls(item, format!("{path}/{key}"), found);
                }
            }
            _ => {}
        }
    }
    for name in ["pipeline.yaml", "registry.yaml", "github-oidc.yaml"] {
        let text = std::fs::read_to_string(cfn_dir().join(name)).unwrap();
        let template = nton_engine::template::parse_document(&text).unwrap();
        let mut found = Vec::new();
        nulls(&template, String::new(), &mut found);
        assert!(found.is_empty(), "{name}: null values at {found:?}");
    }
}
