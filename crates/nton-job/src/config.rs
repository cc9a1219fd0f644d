//! The worker's environment contract, parsed once into a validated [`WorkerConfig`].
//!
//! | variable | meaning |
//! |---|---|
//! | `AWS_BATCH_JOB_ARRAY_INDEX` | the node; set by Batch for array children. Absent: node 0 (a plain job of a one-node run). In a retry, the index into the run's node map (`<root>/<wf>/node-map.json`) |
//! | `NTON_WORKFLOW_ID` | the run (canonical UUID); required |
//! | `NTON_DATA_ROOT` | the data root (EFS mount); required, must be an existing directory |
//! | `NTON_RESULTS_URL` | egress only, required there: `s3://bucket[/prefix]`, an absolute directory path, or `file:///dir` |
//! | `NTON_S3_FORCE_PATH_STYLE` | `true`/`false`: path-style S3 addressing (emulators need it); default on when `AWS_ENDPOINT_URL[_S3]` is set |
//! | `NTON_S3_MULTIPART_THRESHOLD_BYTES` | files this large or larger go up as multipart uploads (default 8 MiB) |
//! | `NTON_FAULT_FAIL`, `NTON_FAULT_DELAY_MS` | fault injection, see [`crate::fault`] |
//!
//! The parser takes a map, not the process environment, so every rule is unit-tested with
//! plain maps. Each error names the variable, the value and the rule.

use std::collections::HashMap;
use std::path::PathBuf;

use nton_core::layout::Layout;
use nton_core::plan::{MAX_NODES, WorkflowId};
use nton_core::stage::Stage;

use crate::fault::Faults;

/// Default size from which a result goes up as a multipart upload.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;

/// A variable is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set ({hint})")]
    Missing { var: &'static str, hint: &'static str },
    #[error("{var}={value:?} is invalid: {rule}")]
    Invalid { var: &'static str, value: String, rule: String },
}

impl ConfigError {
    pub(crate) fn invalid(var: &'static str, value: &str, rule: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { var, value: value.to_string(), rule: rule.into() }
    }
}

pub use nton_core::results::ResultsTarget;

/// Parses `NTON_RESULTS_URL` (the rules live in [`nton_core::results`], shared with the CLI).
pub(crate) fn parse_results_url(value: &str) -> Result<ResultsTarget, ConfigError> {
    ResultsTarget::parse(value)
        .map_err(|problem| ConfigError::invalid("NTON_RESULTS_URL", value, problem))
}

/// S3 client settings for egress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    pub force_path_style: bool,
    pub multipart_threshold: u64,
}

/// Everything one worker run needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    pub stage: Stage,
    /// The node this worker runs: the array index (0 for a plain job), or for a retry the
    /// original node the run's node map gives for that index.
    pub node: u32,
    /// The array index (0 for a plain job), as Batch gave it.
    pub array_index: u32,
    /// Whether `AWS_BATCH_JOB_ARRAY_INDEX` was set (an array child rather than a plain job).
    pub array_child: bool,
    pub workflow_id: WorkflowId,
    pub data_root: PathBuf,
    /// Egress only.
    pub results: Option<ResultsTarget>,
    pub s3: S3Settings,
    pub faults: Faults,
}

impl WorkerConfig {
    /// Reads and validates the variables for `stage`.
    pub fn from_vars(
        stage: Stage,
        vars: &HashMap<String, String>,
    ) -> Result<WorkerConfig, ConfigError> {
        let get = |name: &str| vars.get(name).map(String::as_str);

        let (array_index, array_child) = match get("AWS_BATCH_JOB_ARRAY_INDEX") {
            None => (0, false),
            Some(text) => match text.parse::<u32>() {
                Ok(index) if index < MAX_NODES => (index, true),
                _ => {
                    return Err(ConfigError::invalid(
                        "AWS_BATCH_JOB_ARRAY_INDEX",
                        text,
                        format!("must be a whole number from 0 to {}", MAX_NODES - 1),
                    ));
                }
            },
        };

        let workflow_id = match get("NTON_WORKFLOW_ID") {
            None => {
                return Err(ConfigError::Missing {
                    var: "NTON_WORKFLOW_ID",
                    hint: "the state machine sets it in the job's container overrides",
                });
            }
            Some(text) => WorkflowId::parse(text).map_err(|_| {
                ConfigError::invalid(
                    "NTON_WORKFLOW_ID",
                    text,
                    "must be a lowercase hyphenated UUID like 0f8fad5b-d9cb-469f-a165-70867728950e",
                )
            })?,
        };

        let data_root = match get("NTON_DATA_ROOT") {
            None | Some("") => {
                return Err(ConfigError::Missing {
                    var: "NTON_DATA_ROOT",
                    hint: "the job definition sets it to the EFS mount point",
                });
            }
            Some(text) => {
                let path = PathBuf::from(text);
                if !path.is_dir() {
                    return Err(ConfigError::invalid(
                        "NTON_DATA_ROOT",
                        text,
                        "must be an existing directory (is the file system mounted?)",
                    ));
                }
                path
            }
        };

        // A retry runs some of the run's nodes as a smaller array: init's node map says which
        // node each index stands for, so the node's own files and result keys are used.
        let node =
            Layout::new(&data_root).node_of_index(&workflow_id, array_index).map_err(|err| {
                ConfigError::invalid(
                    "AWS_BATCH_JOB_ARRAY_INDEX",
                    &array_index.to_string(),
                    format!("has no node in the retry's node map: {err}"),
                )
            })?;

        let results = match stage {
            Stage::Egress => match get("NTON_RESULTS_URL") {
                None | Some("") => {
                    return Err(ConfigError::Missing {
                        var: "NTON_RESULTS_URL",
                        hint: "egress needs s3://bucket[/prefix] or a local directory",
                    });
                }
                Some(text) => Some(parse_results_url(text)?),
            },
            // Other stages do not ship anything; the variable is not theirs to judge.
            Stage::Procure | Stage::Process => None,
        };

        let endpoint_set = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
            .iter()
            .any(|name| get(name).is_some_and(|v| !v.is_empty()));
        let force_path_style = match get("NTON_S3_FORCE_PATH_STYLE") {
            None | Some("") => endpoint_set,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "NTON_S3_FORCE_PATH_STYLE",
                    other,
                    "must be true or false",
                ));
            }
        };
        let multipart_threshold = match get("NTON_S3_MULTIPART_THRESHOLD_BYTES") {
            None | Some("") => DEFAULT_MULTIPART_THRESHOLD,
            Some(text) => match text.parse::<u64>() {
                Ok(bytes) if bytes >= 1 => bytes,
                _ => {
                    return Err(ConfigError::invalid(
                        "NTON_S3_MULTIPART_THRESHOLD_BYTES",
                        text,
                        "must be a whole number of bytes, at least 1",
                    ));
                }
            },
        };

        let faults = Faults::from_vars(get("NTON_FAULT_FAIL"), get("NTON_FAULT_DELAY_MS"))?;

        Ok(WorkerConfig {
            stage,
            node,
            array_index,
            array_child,
            workflow_id,
            data_root,
            results,
            s3: S3Settings { force_path_style, multipart_threshold },
            faults,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WF: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn vars(root: &std::path::Path, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> =
            [("NTON_WORKFLOW_ID", WF), ("NTON_DATA_ROOT", root.to_str().unwrap())]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        vars
    }

    fn error(stage: Stage, vars: &HashMap<String, String>) -> String {
        WorkerConfig::from_vars(stage, vars).unwrap_err().to_string()
    }

    #[test]
    fn a_plain_job_is_node_zero() {
        let root = tempfile::tempdir().unwrap();
        let config = WorkerConfig::from_vars(Stage::Procure, &vars(root.path(), &[])).unwrap();
        assert_eq!(config.node, 0);
        assert!(!config.array_child);
        assert_eq!(config.workflow_id.to_string(), WF);
        assert_eq!(config.data_root, root.path());
        assert_eq!(config.results, None);
        assert_eq!(config.faults, Faults::default());
        assert_eq!(
            config.s3,
            S3Settings {
                force_path_style: false,
                multipart_threshold: DEFAULT_MULTIPART_THRESHOLD
            }
        );
    }

    #[test]
    fn in_a_retry_the_node_map_gives_the_node_of_each_index() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::new(root.path());
        let wf = WorkflowId::parse(WF).unwrap();
        std::fs::create_dir_all(layout.workflow_dir(&wf)).unwrap();
        layout.write_node_map(&wf, &[7, 3]).unwrap();
        for (index, node) in [(Some("0"), 7), (Some("1"), 3), (None, 7)] {
            let extra: Vec<(&str, &str)> =
                index.map(|i| vec![("AWS_BATCH_JOB_ARRAY_INDEX", i)]).unwrap_or_default();
            let config =
                WorkerConfig::from_vars(Stage::Procure, &vars(root.path(), &extra)).unwrap();
            assert_eq!(config.node, node, "{index:?}");
            assert_eq!(config.array_index, index.map_or(0, |i| i.parse().unwrap()));
        }
        let message =
            error(Stage::Procure, &vars(root.path(), &[("AWS_BATCH_JOB_ARRAY_INDEX", "2")]));
        assert!(
            message.starts_with(
                "AWS_BATCH_JOB_ARRAY_INDEX=\"2\" is invalid: has no node in the retry's node map"
            ),
            "{message}"
        );
        assert!(message.contains("array index 2 is past its 2 nodes"), "{message}");
    }

    #[test]
    fn the_array_index_is_the_node() {
        let root = tempfile::tempdir().unwrap();
        for (text, node) in [("0", 0), ("7", 7), ("9999", 9999)] {
            let config = WorkerConfig::from_vars(
                Stage::Process,
                &vars(root.path(), &[("AWS_BATCH_JOB_ARRAY_INDEX", text)]),
            )
            .unwrap();
            assert_eq!(config.node, node);
            assert!(config.array_child);
        }
        for bad in ["", "-1", "10000", "3.0", "x", " 4"] {
            assert_eq!(
                error(Stage::Process, &vars(root.path(), &[("AWS_BATCH_JOB_ARRAY_INDEX", bad)])),
                format!(
                    "AWS_BATCH_JOB_ARRAY_INDEX={bad:?} is invalid: must be a whole number from 0 to 9999"
                )
            );
        }
    }

    #[test]
    fn workflow_id_and_data_root_are_required_and_checked() {
        let root = tempfile::tempdir().unwrap();
        let mut missing = vars(root.path(), &[]);
        missing.remove("NTON_WORKFLOW_ID");
        assert_eq!(
            error(Stage::Procure, &missing),
            "NTON_WORKFLOW_ID is not set (the state machine sets it in the job's container overrides)"
        );
        for bad in ["nope", "0F8FAD5B-D9CB-469F-A165-70867728950E", "../etc"] {
            let message = error(Stage::Procure, &vars(root.path(), &[("NTON_WORKFLOW_ID", bad)]));
            assert!(
                message.starts_with(&format!(
                    "NTON_WORKFLOW_ID={bad:?} is invalid: must be a lowercase hyphenated UUID"
                )),
                "{message}"
            );
        }
        let mut no_root = vars(root.path(), &[]);
        no_root.remove("NTON_DATA_ROOT");
        assert_eq!(
            error(Stage::Procure, &no_root),
            "NTON_DATA_ROOT is not set (the job definition sets it to the EFS mount point)"
        );
        let gone = root.path().join("not-there");
        let message = error(
            Stage::Procure,
            &vars(root.path(), &[("NTON_DATA_ROOT", gone.to_str().unwrap())]),
        );
        assert_eq!(
            message,
            format!(
                "NTON_DATA_ROOT={:?} is invalid: must be an existing directory (is the file system mounted?)",
                gone.to_str().unwrap()
            )
        );
    }

    #[test]
    fn egress_needs_a_results_url_others_ignore_it() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            error(Stage::Egress, &vars(root.path(), &[])),
            "NTON_RESULTS_URL is not set (egress needs s3://bucket[/prefix] or a local directory)"
        );
        let config = WorkerConfig::from_vars(
            Stage::Procure,
            &vars(root.path(), &[("NTON_RESULTS_URL", "ftp://nope")]),
        )
        .unwrap();
        assert_eq!(config.results, None);
    }

    #[test]
    fn results_urls_parse_to_targets() {
        let cases = [
            ("s3://my-bucket", ResultsTarget::S3 { bucket: "my-bucket".into(), prefix: None }),
            ("s3://my-bucket/", ResultsTarget::S3 { bucket: "my-bucket".into(), prefix: None }),
            (
                "s3://my.bucket-1/runs/daily/",
                ResultsTarget::S3 {
                    bucket: "my.bucket-1".into(),
                    prefix: Some("runs/daily".into()),
                },
            ),
            ("/srv/results", ResultsTarget::Dir("/srv/results".into())),
            ("file:///srv/results", ResultsTarget::Dir("/srv/results".into())),
        ];
        for (url, target) in cases {
            assert_eq!(parse_results_url(url), Ok(target), "{url}");
        }
        let bad = [
            ("s3://", "the bucket name \"\" has 0 characters; it must have 3 to 63"),
            ("s3://ab", "the bucket name \"ab\" has 2 characters; it must have 3 to 63"),
            (
                "s3://My_Bucket/x",
                "the bucket name \"My_Bucket\" must be lowercase letters, digits, '.' and '-', beginning and ending with a letter or digit",
            ),
            ("s3://bucket/a/../b", "the prefix must not have empty, `.` or `..` segments"),
            ("s3://bucket/a//b", "the prefix must not have empty, `.` or `..` segments"),
            ("results", "must be s3://bucket[/prefix], an absolute directory path or file:///dir"),
            (
                "file://relative/dir",
                "must be s3://bucket[/prefix], an absolute directory path or file:///dir",
            ),
            (
                "https://example.com/x",
                "must be s3://bucket[/prefix], an absolute directory path or file:///dir",
            ),
        ];
        for (url, rule) in bad {
            assert_eq!(
                parse_results_url(url).unwrap_err().to_string(),
                format!("NTON_RESULTS_URL={url:?} is invalid: {rule}")
            );
        }
    }

    #[test]
    fn s3_settings_follow_the_endpoint_and_the_overrides() {
        let root = tempfile::tempdir().unwrap();
        let s3 = |extra: &[(&str, &str)]| {
            let mut all = vec![("NTON_RESULTS_URL", "s3://bucket")];
            all.extend_from_slice(extra);
            WorkerConfig::from_vars(Stage::Egress, &vars(root.path(), &all)).map(|c| c.s3)
        };
        assert!(!s3(&[]).unwrap().force_path_style);
        assert!(s3(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]).unwrap().force_path_style);
        assert!(s3(&[("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:5000")]).unwrap().force_path_style);
        assert!(s3(&[("NTON_S3_FORCE_PATH_STYLE", "true")]).unwrap().force_path_style);
        assert!(
            !s3(&[("AWS_ENDPOINT_URL", "http://x"), ("NTON_S3_FORCE_PATH_STYLE", "false")])
                .unwrap()
                .force_path_style
        );
        assert_eq!(
            s3(&[("NTON_S3_FORCE_PATH_STYLE", "yes")]).unwrap_err().to_string(),
            "NTON_S3_FORCE_PATH_STYLE=\"yes\" is invalid: must be true or false"
        );
        assert_eq!(
            s3(&[("NTON_S3_MULTIPART_THRESHOLD_BYTES", "1024")]).unwrap().multipart_threshold,
            1024
        );
        for bad in ["0", "-1", "8MiB"] {
            assert_eq!(
                s3(&[("NTON_S3_MULTIPART_THRESHOLD_BYTES", bad)]).unwrap_err().to_string(),
                format!(
                    "NTON_S3_MULTIPART_THRESHOLD_BYTES={bad:?} is invalid: must be a whole number of bytes, at least 1"
                )
            );
        }
    }

    #[test]
    fn fault_variables_are_parsed_with_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let config = WorkerConfig::from_vars(
            Stage::Procure,
            &vars(
                root.path(),
                &[("NTON_FAULT_FAIL", "procure:3"), ("AWS_BATCH_JOB_ARRAY_INDEX", "3")],
            ),
        )
        .unwrap();
        assert!(config.faults.fails(Stage::Procure, 3));
        assert!(
            error(Stage::Procure, &vars(root.path(), &[("NTON_FAULT_FAIL", "procure")]))
                .starts_with("NTON_FAULT_FAIL=\"procure\" is invalid")
        );
    }
}
