//! A moto server that records every request it answers (moto's own request recorder,
//! `MOTO_ENABLE_RECORDING`), for the check that the IAM roles allow what the code calls
//! (tests/tests/iam_runtime_calls.rs).
//!
//! Why not [`crate::moto::MotoServer`]: moto reads the recorder's file path from its environment
//! at start, and `MotoServer::start` gives the child no environment of its own; the default path
//! (`moto_recording` in the working directory) would be one file shared by every test. So this
//! starts its own server, with the file in a temporary directory.
//!
//! Each component signs with its own access key id (moto checks no signature), so every
//! recorded request names the component that made it: [`RecordingMoto::sdk_config_as`] for
//! in-process code, [`RecordingMoto::env_as`] for a child process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::moto::REGION;

/// A running moto server recording to its own file; killed on drop.
pub struct RecordingMoto {
    child: Child,
    port: u16,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl RecordingMoto {
    /// Starts `moto_server` (from `$NTON_MOTO_SERVER`) recording from its first request, with
    /// the same configuration as [`crate::moto::MotoServer::start`].
    pub fn start() -> anyhow::Result<RecordingMoto> {
        RecordingMoto::start_with_env(&[])
    }

    /// [`RecordingMoto::start`] with more of moto's environment variables (e.g.
    /// `MOTO_SIMPLE_BATCH_FAIL_AFTER=0`: Batch fails every job).
    pub fn start_with_env(env: &[(&str, &str)]) -> anyhow::Result<RecordingMoto> {
        let program =
            std::env::var("NTON_MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_string());
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("recording.jsonl");
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "1")
            .env("MOTO_RECORDER_FILEPATH", &file)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program} (tests/tools.sh installs it)"))?;
        let server = RecordingMoto {
            child,
            port,
            file,
            _dir: dir,
        };
        let start = Instant::now();
        while server.request("GET", "/moto-api/", "").is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("moto server on port {port} not ready after 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        server.request(
            "POST",
            "/moto-api/config",
            r#"{"batch":{"use_docker":false},"lambda":{"use_docker":false},"stepfunctions":{"execute_state_machine":true}}"#,
        )?;
        Ok(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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

    /// A bare HTTP/1.0 request for moto's own API (readiness and configuration).
    fn request(&self, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status_line = response.lines().next().unwrap_or_default();
        if !(status_line.contains(" 200") || status_line.contains(" 201")) {
            bail!("{method} {path} answered {status_line:?}");
        }
        Ok(response)
    }
}

impl Drop for RecordingMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
