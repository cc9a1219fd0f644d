//! The workspace-level tests, built as one test binary (`[[test]] integration` in
//! `tests/Cargo.toml`, `autotests = false`): one link instead of one per file, and one place that
//! lists them. Each file stays a module of its own; a new file must be declared here, which
//! [`every_test_file_is_declared`] checks.
//!
//! Servers: a moto server per test ([`nton_tests::moto`]); LocalStack one per test process and
//! mock file ([`nton_tests::localstack::shared`]). cargo-nextest runs every test in its own
//! process, so cases that should share one LocalStack sit in one test function.

// CloudFormation templates: lint, guard rules, deploy and delete on moto.
mod cfn_guard_broken;
mod cfn_moto_deploy;
mod cfn_templates;
// The CLI's AWS commands, what the workflows read from them, and snapshots of what it prints.
mod cli_aws;
mod cli_snapshots;
mod cli_summary;
// docs/deploying.md: its commands checked, then executed on LocalStack and moto.
mod deploy_guide;
mod deploy_guide_run;
// The worker's S3 egress against moto.
mod egress_s3;
// `nton run` end to end: the local engine on real and test templates.
mod engine_distributed_map;
mod engine_four_stage;
mod engine_map_parallel;
mod engine_queue_limits;
mod engine_run;
mod engine_s3;
mod engine_timeouts;
// IAM: every policy against the calls the code makes, the handlers' lists and the reference.
mod iam_runtime_calls;
mod iam_service_role;
mod iam_template_facts;
mod iam_validity;
// The images' root filesystems from nix/images.json, run with bwrap (or docker).
mod image_contract;
// LocalStack: the state machine, CloudFormation, S3, and generated machines against nton's.
mod localstack_cfn;
mod localstack_run_s3;
mod localstack_s3;
mod localstack_sfn;
mod localstack_sfn_gen;
// What teardown and failed runs leave behind.
mod ops_teardown;
mod ops_templates;
// `nton report`: of an execution on moto, and its page in a real browser.
mod report_aws;
mod report_html;
// `nton retry`: locally and of an execution on moto.
mod retry_local;
mod retry_moto;
// The watcher: `nton watch` on a local run, the Lambda against moto's Batch.
mod watch_local;
mod watch_moto;

/// With `autotests = false` cargo builds only this file's modules: a test file not declared above
/// would never run. Fails naming it.
#[test]
fn every_test_file_is_declared() {
    let dir = nton_tests::workspace_root().join("tests/tests");
    let this = std::fs::read_to_string(dir.join("integration.rs")).unwrap();
    let declared: std::collections::BTreeSet<&str> =
        this.lines().filter_map(|line| line.strip_prefix("mod ")?.strip_suffix(';')).collect();
    let mut files = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(module) = name.strip_suffix(".rs")
            && module != "integration"
        {
            files.insert(module.to_string());
        }
    }
    let missing: Vec<&String> = files.iter().filter(|f| !declared.contains(f.as_str())).collect();
    assert!(missing.is_empty(), "tests/tests/integration.rs does not declare: {missing:?}");
    assert!(declared.len() >= 30, "found only {declared:?}");
}
