//! The AWS Batch worker: `nton-job <procure|process|egress>` runs one stage on one node.
//!
//! The node comes from `AWS_BATCH_JOB_ARRAY_INDEX` (absent: node 0, a plain job), through the
//! run's node map when the run is a retry (`nton_core::layout`); the rest of
//! the environment contract is in [`config`], fault injection in [`fault`], the S3 upload in
//! [`s3`]. The stage logic itself is `nton_core::stage`, shared with the local engine.
//!
//! Exit codes: 0 the stage succeeded on this node; 1 it failed (a file, an upload, an injected
//! fault); 2 the configuration or the command line is wrong. A failure prints one line on
//! stderr, `nton-job <stage>: node <n>: <what went wrong>`; logs are JSON lines on stdout.
//!
//! Startup stays cheap because the local engine may start this binary tens of thousands of
//! times: procure and process run without an async runtime, and only egress to S3 builds a
//! tokio runtime and an S3 client.

pub mod cli;
pub mod config;
pub mod fault;
pub mod s3;

use std::collections::HashMap;
use std::time::Instant;

use nton_core::layout::Layout;
use nton_core::stage::{self, EgressItem, Stage, StageError, StageReport};

pub use config::{ConfigError, ResultsTarget, WorkerConfig};
pub use fault::Faults;

/// Why the worker failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The environment is missing or wrong (exit code 2).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// `NTON_FAULT_FAIL` names this stage and node.
    #[error("node {node}: fault injected: NTON_FAULT_FAIL names {stage}:{node}")]
    Fault { stage: Stage, node: u32 },
    /// The stage failed on a file (the message names node and file).
    #[error("{0}")]
    Stage(#[from] StageError),
    /// An upload to S3 failed.
    #[error("node {node}: {source}")]
    Upload {
        node: u32,
        #[source]
        source: s3::UploadError,
    },
    /// The async runtime for the S3 upload could not start.
    #[error("node {node}: starting the async runtime for the S3 upload: {source}")]
    Runtime {
        node: u32,
        #[source]
        source: std::io::Error,
    },
}

impl JobError {
    /// The process exit code for this error (see the module doc).
    pub fn exit_code(&self) -> u8 {
        match self {
            JobError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// Parses the environment and runs `stage`, with the S3 client (for egress to S3) configured
/// from the process environment.
pub fn run(stage: Stage, vars: &HashMap<String, String>) -> Result<StageReport, JobError> {
    let config = WorkerConfig::from_vars(stage, vars)?;
    run_config(&config)
}

/// Runs one stage on one node: injected faults first, then the work, logging a line when it
/// starts and one when it ends.
pub fn run_config(config: &WorkerConfig) -> Result<StageReport, JobError> {
    let (stage, node) = (config.stage, config.node);
    let workflow_id = config.workflow_id.to_string();
    if config.faults.fails(stage, node) {
        tracing::warn!(stage = %stage, node, workflow_id, "fault injected: failing");
        return Err(JobError::Fault { stage, node });
    }
    let delay = config.faults.delay(stage, node);
    if !delay.is_zero() {
        tracing::info!(stage = %stage, node, workflow_id, delay_ms = delay.as_millis() as u64, "fault injected: delaying");
        std::thread::sleep(delay);
    }

    let started = Instant::now();
    tracing::info!(stage = %stage, node, workflow_id, array_child = config.array_child, array_index = config.array_index, "stage started");
    let result = execute(config);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match &result {
        Ok(report) => tracing::info!(
            stage = %stage, node, workflow_id, files = report.files, bytes = report.bytes, elapsed_ms,
            "stage finished"
        ),
        Err(error) => {
            tracing::error!(stage = %stage, node, workflow_id, elapsed_ms, error = %error, "stage failed")
        }
    }
    result
}

fn execute(config: &WorkerConfig) -> Result<StageReport, JobError> {
    let layout = Layout::new(&config.data_root);
    let (wf, node) = (&config.workflow_id, config.node);
    match config.stage {
        Stage::Procure => Ok(stage::procure(&layout, wf, node)?),
        Stage::Process => Ok(stage::process(&layout, wf, node)?),
        Stage::Egress => match results_target(config)? {
            ResultsTarget::Dir(dest) => {
                let items = stage::egress_items(&layout, wf, node)?;
                Ok(stage::egress_to_dir(&items, dest)?)
            }
            ResultsTarget::S3 { .. } => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| JobError::Runtime { node, source })?;
                runtime.block_on(async {
                    let sdk_config =
                        aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                    egress_to_s3(config, &sdk_config).await
                })
            }
        },
    }
}

fn results_target(config: &WorkerConfig) -> Result<&ResultsTarget, ConfigError> {
    config.results.as_ref().ok_or(ConfigError::Missing {
        var: "NTON_RESULTS_URL",
        hint: "egress needs s3://bucket[/prefix] or a local directory",
    })
}

/// Egress of one node to the S3 target of `config`, through a client built from `sdk_config`
/// (the process environment in the binary; an emulator's endpoint in tests).
pub async fn egress_to_s3(
    config: &WorkerConfig,
    sdk_config: &aws_config::SdkConfig,
) -> Result<StageReport, JobError> {
    let (bucket, prefix) = match results_target(config)? {
        ResultsTarget::S3 { bucket, prefix } => (bucket, prefix.as_deref()),
        ResultsTarget::Dir(dir) => {
            return Err(ConfigError::invalid(
                "NTON_RESULTS_URL",
                &dir.display().to_string(),
                "egress to S3 needs s3://bucket[/prefix]",
            )
            .into());
        }
    };
    let layout = Layout::new(&config.data_root);
    let items: Vec<EgressItem> = stage::egress_items(&layout, &config.workflow_id, config.node)?;
    let client = s3::client(sdk_config, config.s3.force_path_style);
    let options = s3::UploadOptions {
        multipart_threshold: config.s3.multipart_threshold,
        ..s3::UploadOptions::default()
    };
    s3::upload(&client, bucket, prefix, &items, &options)
        .await
        .map_err(|source| JobError::Upload { node: config.node, source })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use nton_core::plan::WorkflowId;
    use uuid::Uuid;

    use super::*;

    /// A data root with one node's prep file, as init leaves it.
    fn prepared(root: &Path, wf: &WorkflowId, node: u32, count: usize) -> Vec<Uuid> {
        let layout = Layout::new(root);
        let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
        fs::create_dir_all(layout.prep_dir(wf, node)).unwrap();
        fs::write(layout.prep_ids_file(wf, node), nton_core::layout::format_ids(&ids)).unwrap();
        ids
    }

    fn vars(root: &Path, wf: &WorkflowId, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars = HashMap::from([
            ("NTON_WORKFLOW_ID".to_string(), wf.to_string()),
            ("NTON_DATA_ROOT".to_string(), root.display().to_string()),
        ]);
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        vars
    }

    #[test]
    fn the_three_stages_run_a_node_to_a_local_directory() {
        let root = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let wf = WorkflowId::new_v4();
        let ids = prepared(root.path(), &wf, 4, 6);
        let vars = vars(
            root.path(),
            &wf,
            &[
                ("AWS_BATCH_JOB_ARRAY_INDEX", "4"),
                ("NTON_RESULTS_URL", &format!("file://{}", dest.path().display())),
            ],
        );
        let procured = run(Stage::Procure, &vars).unwrap();
        assert_eq!(procured.files, 6);
        let processed = run(Stage::Process, &vars).unwrap();
        assert_eq!(processed.files, 6);
        let shipped = run(Stage::Egress, &vars).unwrap();
        assert_eq!(shipped, processed, "egress ships exactly what process wrote");

        let layout = Layout::new(root.path());
        for id in &ids {
            let shipped = dest.path().join(layout.result_key(&wf, 4, id));
            assert_eq!(
                fs::read(&shipped).unwrap(),
                fs::read(layout.result_file(&wf, 4, id)).unwrap()
            );
        }
        // Re-running egress is safe and changes nothing.
        assert_eq!(run(Stage::Egress, &vars).unwrap(), shipped);
        assert_eq!(fs::read_dir(dest.path().join(format!("{wf}/4/results"))).unwrap().count(), 6);
    }

    #[test]
    fn an_injected_fault_fails_before_any_work() {
        let root = tempfile::tempdir().unwrap();
        let wf = WorkflowId::new_v4();
        prepared(root.path(), &wf, 3, 2);
        let vars = vars(
            root.path(),
            &wf,
            &[("AWS_BATCH_JOB_ARRAY_INDEX", "3"), ("NTON_FAULT_FAIL", "procure:3")],
        );
        let error = run(Stage::Procure, &vars).unwrap_err();
        assert_eq!(error.to_string(), "node 3: fault injected: NTON_FAULT_FAIL names procure:3");
        assert_eq!(error.exit_code(), 1);
        let data_dir = Layout::new(root.path()).data_dir(&wf, 3);
        assert!(!data_dir.exists(), "nothing was written");
        // Other nodes and stages are unaffected.
        let mut other = vars.clone();
        other.insert("NTON_FAULT_FAIL".into(), "procure:2".into());
        assert_eq!(run(Stage::Procure, &other).unwrap().files, 2);
    }

    #[test]
    fn an_injected_delay_waits_before_working() {
        let root = tempfile::tempdir().unwrap();
        let wf = WorkflowId::new_v4();
        prepared(root.path(), &wf, 0, 1);
        let vars = vars(root.path(), &wf, &[("NTON_FAULT_DELAY_MS", "procure:0:150")]);
        let started = Instant::now();
        run(Stage::Procure, &vars).unwrap();
        assert!(started.elapsed().as_millis() >= 150);
    }

    #[test]
    fn errors_name_the_node_and_the_file_or_variable() {
        let root = tempfile::tempdir().unwrap();
        let wf = WorkflowId::new_v4();
        let vars = vars(root.path(), &wf, &[("AWS_BATCH_JOB_ARRAY_INDEX", "5")]);
        let error = run(Stage::Procure, &vars).unwrap_err();
        let ids = Layout::new(root.path()).prep_ids_file(&wf, 5);
        assert!(
            error.to_string().starts_with(&format!("node 5: {} is missing", ids.display())),
            "{error}"
        );
        assert_eq!(error.exit_code(), 1);

        let mut bad = vars.clone();
        bad.insert("AWS_BATCH_JOB_ARRAY_INDEX".into(), "-1".into());
        let error = run(Stage::Procure, &bad).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().starts_with("AWS_BATCH_JOB_ARRAY_INDEX=\"-1\""), "{error}");
    }

    #[test]
    fn egress_to_a_missing_result_fails_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let wf = WorkflowId::new_v4();
        prepared(root.path(), &wf, 0, 2);
        let vars = vars(root.path(), &wf, &[("NTON_RESULTS_URL", dest.path().to_str().unwrap())]);
        run(Stage::Procure, &vars).unwrap();
        let error = run(Stage::Egress, &vars).unwrap_err().to_string();
        assert!(error.starts_with("node 0: "), "{error}");
        assert!(error.contains("did process succeed for this node?"), "{error}");
    }
}
