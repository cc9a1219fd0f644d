//! What the CLI prints, as snapshots: the progress lines and summary of `nton run` without a
//! terminal, `nton report` of that run, and the deploy summary of `nton deploy` (on moto).
//! The variable parts (durations, ids, temporary paths) are redacted first; what is left is the
//! text a person reads, so a change to it shows here as a diff. `UPDATE_EXPECT=1 cargo test -p
//! nton-tests --test integration cli_snapshots` rewrites the snapshots (one process: under
//! nextest each test is a process of its own, and two rewriting one file get in each other's way).
//!
//! How often the watcher polls depends on when jobs end (the local engine ends a Wait state early
//! once a Batch job ends, `nton_engine::local`), so the poll loop's lines after the first loop and
//! its state counts are redacted too.

use std::path::Path;

use expect_test::expect;
use nton::aws::{self, Console};
use nton_tests::binary_dir;
use nton_tests::cli::{deploy_args, expect_exit, expect_success, nton};
use nton_tests::moto::MotoServer;
use regex::Regex;

/// `text` with `dir` as `<dir>`, every UUID as `<uuid>`, every duration as `<n> s`/`<n> ms` and
/// every time of day as `<hh:mm:ss>`.
fn redact(text: &str, dir: &Path) -> String {
    let text = text.replace(&dir.display().to_string(), "<dir>");
    let uuid = Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let duration = Regex::new(r"\b\d+(\.\d+)? (s|ms)\b").unwrap();
    let clock = Regex::new(r"\b\d{2}:\d{2}:\d{2}\b").unwrap();
    let text = uuid.replace_all(&text, "<uuid>");
    let text = clock.replace_all(&text, "<hh:mm:ss>");
    duration.replace_all(&text, "<n> $2").into_owned()
}

/// The poll loop's states (`Watch` -> `IsDone` -> `WaitForJobs`).
const POLL_STATES: [&str; 3] = ["Watch", "IsDone", "WaitForJobs"];

/// The progress lines with the poll loop's lines after its first round left out: how many
/// rounds a run takes, and where they fall between two job ends, is timing (a loaded machine
/// polls again before the first job ends).
fn redact_polls(progress: &str) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let kept: Vec<&str> = progress
        .lines()
        .filter(|line| match line.strip_prefix("state ") {
            Some(state) if POLL_STATES.contains(&state) => seen.insert(state),
            _ => true,
        })
        .collect();
    kept.join("\n") + "\n"
}

/// A two-node run whose node 1 fails in process, shaped so that its lines come in one order
/// only: node 0 is slow in procure (1 s), so no job ends before the first poll, and each stage's
/// job ends after the one before it (N_TO_N: node 0's children wait for each other).
fn failed_run(data_dir: &Path) -> std::process::Output {
    expect_exit(
        nton()
            .args(["run", "--data-dir"])
            .arg(data_dir)
            .arg("--bin-dir")
            .arg(binary_dir())
            .args(["--ids", "8", "--ids-per-node", "4", "--poll-seconds", "3"])
            // One hour: a 3 s poll is allowed (the default timeout asks for 17 s or more).
            .args(["--param", "RunTimeoutHours=1"])
            .args(["--job-env", "NTON_FAULT_DELAY_MS=procure:0:1000"])
            .args(["--job-env", "NTON_FAULT_FAIL=process:1"]),
        nton::exit::RUN_FAILED,
    )
}

#[test]
fn a_failed_run_prints_its_progress_summary_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let output = failed_run(dir.path());
    let stderr = redact_polls(&redact(&String::from_utf8_lossy(&output.stderr), dir.path()));
    expect![[r#"
        state Init
        state ChooseJobShape
        state SubmitProcureArray
        state SubmitProcessArray
        state SubmitEgressArray
        state Watch
        state IsDone
        state WaitForJobs
        job nton-procure-<uuid> SUCCEEDED
        job nton-process-<uuid> FAILED
        job nton-egress-<uuid> FAILED
        state Failed

        nton run: FAILED in <n> s
          workflow   <uuid>
          ids        8 (4 per node)
          procure    2 node(s): 2 succeeded, 0 failed
          process    2 node(s): 1 succeeded, 1 failed
          egress     2 node(s): 1 succeeded, 1 failed
          results    <dir>/results/<uuid>
          record     <dir>/results/<uuid>/run-record.jsonl
          failed     nton.NodesFailed in state Failed
          cause      1 of 2 nodes failed: process failed on node 1 (Essential container in task exited, exit code 1); egress did not run on that node.
          stderr     nton-process node 1: nton-job process: node 1: fault injected: NTON_FAULT_FAIL names process:1
          logs       <dir>/<uuid>/logs
    "#]].assert_eq(&stderr);

    let report = expect_success(nton().args(["report", "--data-dir"]).arg(dir.path()));
    let visits = Regex::new(r"\b(Watch|IsDone|WaitForJobs) x\d+").unwrap();
    let stdout = redact(&String::from_utf8_lossy(&report.stdout), dir.path());
    let stdout = visits.replace_all(&stdout, "$1 x<polls>");
    expect![[r#"
        run local-<uuid>: FAILED in <n> s
          nton-procure     2 succeeded, 0 failed, 0 retried attempts; per child <n> ms median, <n> ms p90, <n> ms max
          nton-process     1 succeeded, 1 failed, 0 retried attempts; per child <n> ms median, <n> ms p90, <n> ms max
          nton-egress      1 succeeded, 1 failed, 0 retried attempts; per child <n> ms median, <n> ms p90, <n> ms max
          states           ChooseJobShape x1, Failed x1, Init x1, IsDone x<polls>, SubmitEgressArray x1, SubmitProcessArray x1, SubmitProcureArray x1, WaitForJobs x<polls>, Watch x<polls>
          error            nton.NodesFailed
          cause            1 of 2 nodes failed: process failed on node 1 (Essential container in task exited, exit code 1); egress did not run on that node.
          failed           nton-egress node 1 attempt 0: Dependent Job failed
          failed           nton-process node 1 attempt 1: Essential container in task exited — nton-job process: node 1: fault injected: NTON_FAULT_FAIL names process:1
        timeline: <dir>/<uuid>/report.html
    "#]].assert_eq(&stdout);
}

/// Two small stacks moto's CloudFormation can make: what a deploy prints does not depend on
/// the resources, only on the stacks, their changes and their outputs.
const REGISTRY: &str = r#"
Parameters:
  RepositoryPrefix:
    Type: String
Resources:
  JobRepository:
    Type: AWS::ECR::Repository
    Properties:
      RepositoryName: !Sub "${RepositoryPrefix}/nton-job"
Outputs:
  JobRepositoryName:
    Value: !Ref JobRepository
"#;

const PIPELINE: &str = r#"
Parameters:
  ImageRegistry:
    Type: String
    Default: ""
  ImageTag:
    Type: String
    Default: ":latest"
  RepositoryPrefix:
    Type: String
    Default: nton
Resources:
  ResultsBucket:
    Type: AWS::S3::Bucket
Outputs:
  ResultsBucketName:
    Value: !Ref ResultsBucket
"#;

#[tokio::test]
async fn a_first_deploy_then_an_unchanged_one_print_their_summaries() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.yaml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), PIPELINE).unwrap();
    std::fs::create_dir_all(dir.path().join("params")).unwrap();
    std::fs::write(
        dir.path().join("params/dev.json"),
        r#"{"Parameters": {"RepositoryPrefix": "team-dev"}, "Tags": {"project": "nton"}}"#,
    )
    .unwrap();
    let deploy = || async {
        let (mut console, out, log) = Console::capture();
        let code = aws::deploy_with(&config, &deploy_args(dir.path()), &mut console).await.unwrap();
        assert_eq!(code, nton::exit::SUCCESS, "{}", log.text());
        format!("stdout:\n{}stderr:\n{}", out.text(), log.text())
    };
    let first = redact(&deploy().await, dir.path());
    expect![[r#"
        stdout:
        nton-dev-registry: CREATE_COMPLETE
        nton-dev-pipeline: CREATE_COMPLETE
        image registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com/team-dev
        stderr:
        nton-dev-registry: create (1 change)
          Add      AWS::ECR::Repository                 JobRepository
          <hh:mm:ss>  CREATE_IN_PROGRESS           AWS::CloudFormation::Stack           nton-dev-registry  User Initiated
          <hh:mm:ss>  CREATE_COMPLETE              AWS::CloudFormation::Stack           nton-dev-registry
        nton-dev-pipeline: create (1 change)
          Add      AWS::S3::Bucket                      ResultsBucket
          <hh:mm:ss>  CREATE_IN_PROGRESS           AWS::CloudFormation::Stack           nton-dev-pipeline  User Initiated
          <hh:mm:ss>  CREATE_COMPLETE              AWS::CloudFormation::Stack           nton-dev-pipeline
    "#]].assert_eq(&first);
    let unchanged = redact(&deploy().await, dir.path());
    expect![[r#"
        stdout:
        nton-dev-registry: no changes
        nton-dev-pipeline: no changes
        image registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com/team-dev
        stderr:
        nton-dev-registry: no changes
        nton-dev-pipeline: no changes
    "#]]
    .assert_eq(&unchanged);
}
