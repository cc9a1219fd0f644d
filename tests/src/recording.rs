//! A moto server that records every request it answers (moto's own request recorder,
//! `MOTO_ENABLE_RECORDING`), for the check that the IAM roles allow what the code calls
//! (tests/tests/iam_runtime_calls.rs).
//!
//! moto reads the recorder's file path from its environment at start, so each server records
//! to its own file in a temporary directory (the default, `moto_recording` in the working
//! directory, would be one file shared by every test).
//!
//! Each component signs with its own access key id (moto checks no signature), so every
//! recorded request names the component that made it: [`RecordingMoto::sdk_config_as`] for
//! in-process code, [`RecordingMoto::env_as`] for a child process.

use std::path::PathBuf;

use anyhow::Context;

use crate::moto::{MotoServer, REGION};

/// A running moto server recording to its own file; killed on drop.
pub struct RecordingMoto {
    server: MotoServer,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl RecordingMoto {
    /// Starts `moto_server` recording from its first request, configured as
    /// [`MotoServer::start`] configures it.
    pub fn start() -> anyhow::Result<RecordingMoto> {
        RecordingMoto::start_with_env(&[])
    }

    /// [`RecordingMoto::start`] with more of moto's environment variables (e.g.
    /// `MOTO_SIMPLE_BATCH_FAIL_AFTER=0`: Batch fails every job).
    pub fn start_with_env(env: &[(&str, &str)]) -> anyhow::Result<RecordingMoto> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("recording.jsonl");
        let file_text = file.to_str().context("a UTF-8 temporary path")?;
        let mut all = vec![("MOTO_ENABLE_RECORDING", "1"), ("MOTO_RECORDER_FILEPATH", file_text)];
        all.extend_from_slice(env);
        let server = MotoServer::start_with_env(&all)?;
        Ok(RecordingMoto { server, file, _dir: dir })
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// An SDK config pointed at this server whose requests carry `access_key_id`.
    pub async fn sdk_config_as(&self, access_key_id: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                access_key_id,
                "testing",
                None,
                None,
                "recording-moto",
            ))
            .load()
            .await
    }

    /// Environment variables pointing a child process at this server as `access_key_id`.
    pub fn env_as(&self, access_key_id: &str) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), access_key_id.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    /// Every request recorded so far: one JSON object a line (`method`, `url`, `headers`,
    /// `body`, `body_encoded`), as moto's recorder writes them.
    pub fn recording(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).context("a line of moto's recording"))
            .collect()
    }
}
