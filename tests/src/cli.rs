//! The CLI as the tests drive it: the built `nton` binary started in the workspace root with
//! its exit code checked, and the arguments the AWS commands' tests (deploy, teardown) share.

use std::path::Path;
use std::process::{Command, Output};

use nton::aws::{DeployArgs, StackArgs, TeardownArgs};
use serde_json::Value;

use crate::{binary_dir, workspace_binary, workspace_root};

/// The environment every AWS command test deploys (`cloudformation/params/dev.json`).
pub const ENV: &str = "dev";

/// The built `nton`, started in the workspace root (where the default template is).
pub fn nton() -> Command {
    let mut command = Command::new(workspace_binary("nton"));
    command.current_dir(workspace_root());
    command
}

/// `nton run --json` with its data under `data_dir` and this build's workers (`--bin-dir`, so
/// nothing is built at run time); add the test's own flags.
pub fn nton_run(data_dir: &Path) -> Command {
    let mut command = nton();
    command.args(["run", "--json", "--data-dir"]).arg(data_dir).arg("--bin-dir").arg(binary_dir());
    command
}

/// Runs `command` to its end and checks it exited with `code` (`nton::exit`); a panic shows
/// both outputs.
#[track_caller]
pub fn expect_exit(command: &mut Command, code: u8) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    assert_eq!(
        output.status.code(),
        Some(i32::from(code)),
        "{command:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// [`expect_exit`] with success: "run nton and check it succeeded".
#[track_caller]
pub fn expect_success(command: &mut Command) -> Output {
    expect_exit(command, nton::exit::SUCCESS)
}

/// The `summary` event of a `--json` output (its last line of that event), or `Null`.
pub fn json_summary(stdout: &[u8]) -> Value {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find_map(|line| {
            serde_json::from_str::<Value>(line).ok().filter(|value| value["event"] == "summary")
        })
        .unwrap_or(Value::Null)
}

/// Every JSON line of a `--json` output (the events), in order.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// A `nton run --json` that exited 0 with a SUCCEEDED summary.
pub struct SucceededRun {
    /// Every event it printed.
    pub events: Vec<Value>,
    /// Its `summary` event.
    pub summary: Value,
    /// The summary's workflow id: the run's directory under the data dir.
    pub workflow_id: String,
}

impl SucceededRun {
    /// The states the run entered, in order (its `stateEntered` events).
    pub fn entered(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["event"] == "stateEntered")
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect()
    }
}

/// `nton run --json` ([`nton_run`]) with `args`, checked to succeed: the exit code and the
/// summary's status; a panic shows stderr or the summary.
#[track_caller]
pub fn run_succeeded(data_dir: &Path, args: &[&str]) -> SucceededRun {
    let output = expect_success(nton_run(data_dir).args(args));
    let events = json_lines(&output.stdout);
    let summary = json_summary(&output.stdout);
    assert_eq!(summary["status"], "SUCCEEDED", "{summary}\nevents: {events:?}");
    let workflow_id = summary["workflowId"].as_str().expect("a workflow id").to_string();
    SucceededRun { events, summary, workflow_id }
}

/// `nton ARGS --data-dir DATA_DIR` to its end, whatever its exit code (the caller checks).
pub fn nton_with_data(args: &[&str], data_dir: &Path) -> Output {
    nton().args(args).arg("--data-dir").arg(data_dir).output().expect("nton runs")
}

/// The stacks of [`ENV`] with the default prefix, deployed without a service role.
pub fn stack_args() -> StackArgs {
    StackArgs { env: ENV.into(), prefix: "nton".into(), cfn_role_arn: None }
}

/// `nton deploy` of the templates in `template_dir` with an image tag, waiting for the end
/// and polling fast (emulators answer at once).
pub fn deploy_args(template_dir: &Path) -> DeployArgs {
    DeployArgs {
        stack: stack_args(),
        template_dir: template_dir.to_path_buf(),
        template_bucket: None,
        params_file: None,
        image_tag: Some(":git-1a2b3c4".into()),
        only: None,
        no_wait: false,
        dry_run: false,
        json: false,
        poll_seconds: 0.1,
        aws: Default::default(),
    }
}

/// `nton teardown --yes` of both stacks, polling fast.
pub fn teardown_args() -> TeardownArgs {
    TeardownArgs {
        stack: stack_args(),
        yes: true,
        only: None,
        keep_logs: false,
        poll_seconds: 0.1,
        aws: Default::default(),
    }
}
