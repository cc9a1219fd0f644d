//! Starts a moto server (the AWS emulator that runs without Docker) on a free loopback port,
//! configured before any resource is created, and stops it when dropped.
//!
//! Each test gets its own server, so tests run in parallel without sharing state.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// moto's fixed account id.
pub const ACCOUNT_ID: &str = "123456789012";
/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// A running moto server; killed on drop.
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Starts `moto_server` (from `$NTON_MOTO_SERVER`, else `moto_server` on PATH) and posts the
    /// configuration that must precede resource creation: Batch and Lambda without Docker,
    /// Step Functions executing Pass/Wait/Choice states.
    pub fn start() -> anyhow::Result<MotoServer> {
        let program =
            std::env::var("NTON_MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_string());
        let port = free_port()?;
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {program} (pip install \"moto[server]\"; .ci/run installs it)")
            })?;
        let server = MotoServer { child, port };
        server.wait_until_ready(Duration::from_secs(30))?;
        server.post(
            "/moto-api/config",
            r#"{"batch":{"use_docker":false},"lambda":{"use_docker":false},"stepfunctions":{"execute_state_machine":true}}"#,
        )?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`: the value for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An SDK config pointed at this server, with dummy credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::for_tests())
            .load()
            .await
    }

    /// Environment variables that point a child process (a worker binary) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    fn wait_until_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.get("/moto-api/").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "moto server on port {} not ready after {limit:?}",
            self.port
        )
    }

    /// A bare HTTP/1.0 request: the harness needs two calls, not an HTTP client dependency.
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

    fn get(&self, path: &str) -> anyhow::Result<String> {
        self.request("GET", path, "")
    }

    /// POSTs JSON to a moto-api path (config, reset, canned Lambda answers).
    pub fn post(&self, path: &str, body: &str) -> anyhow::Result<String> {
        self.request("POST", path, body)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
