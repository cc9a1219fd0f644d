//! Starts a moto server (the AWS emulator that runs without Docker) on a free loopback port,
//! configured before any resource is created, and stops it when dropped.
//!
//! Each test gets its own server, so tests run in parallel without sharing state. A port taken
//! between choosing it and moto binding it is retried on another.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// moto's fixed account id.
pub const ACCOUNT_ID: &str = "123456789012";
/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// How many ports [`MotoServer::start`] tries before it gives up.
const START_ATTEMPTS: usize = 5;

/// A running moto server; killed on drop.
pub struct MotoServer {
    child: Child,
    port: u16,
    /// moto's standard error, read to tell a taken port from a ready server.
    log: tempfile::NamedTempFile,
}

impl MotoServer {
    /// Starts `moto_server` (from `$NTON_MOTO_SERVER`, else `moto_server` on PATH) and posts the
    /// configuration that must precede resource creation: Batch and Lambda without Docker,
    /// Step Functions executing Pass/Wait/Choice states.
    pub fn start() -> anyhow::Result<MotoServer> {
        MotoServer::start_with_env(&[])
    }

    /// [`MotoServer::start`] and an SDK config pointed at it: the first two lines of most moto
    /// tests.
    pub async fn start_with_config() -> anyhow::Result<(MotoServer, aws_config::SdkConfig)> {
        let server = MotoServer::start()?;
        let config = server.sdk_config().await;
        Ok((server, config))
    }

    /// A server whose Batch fails every job (`MOTO_SIMPLE_BATCH_FAIL_AFTER=0`, which moto reads
    /// when a job is submitted): the watcher's and the CLI's failure paths.
    pub fn start_failing_batch() -> anyhow::Result<MotoServer> {
        MotoServer::start_with_env(&[("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")])
    }

    /// [`MotoServer::start`] with more of moto's environment variables: settings moto reads only
    /// from its environment (Batch failures, the request recorder's file).
    pub fn start_with_env(env: &[(&str, &str)]) -> anyhow::Result<MotoServer> {
        MotoServer::start_on_ports(env, free_port)
    }

    /// Starts moto on the port `next_port` gives, and on the next one when that port was taken
    /// in the meantime (a free port is found by binding port 0 and letting it go, so another
    /// process may bind it before moto does): up to [`START_ATTEMPTS`] times.
    fn start_on_ports(
        env: &[(&str, &str)],
        mut next_port: impl FnMut() -> anyhow::Result<u16>,
    ) -> anyhow::Result<MotoServer> {
        let program =
            std::env::var("NTON_MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_string());
        let mut taken = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = next_port()?;
            match MotoServer::start_on(&program, port, env)? {
                Some(server) => {
                    server.post(
                        "/moto-api/config",
                        r#"{"batch":{"use_docker":false},"lambda":{"use_docker":false},"stepfunctions":{"execute_state_machine":true}}"#,
                    )?;
                    return Ok(server);
                }
                None => taken.push(port),
            }
        }
        bail!("{program}: every port tried was taken by another program: {taken:?}")
    }

    /// One start on `port`: the server once it is ready, `None` when the port was taken.
    fn start_on(
        program: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Option<MotoServer>> {
        // moto's log (werkzeug's): where it says it listens, or that the port is in use.
        let log = tempfile::NamedTempFile::new()?;
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()
            .with_context(|| {
                format!("starting {program} (pip install \"moto[server]\"; .ci/run installs it)")
            })?;
        let mut server = MotoServer { child, port, log };
        match server.wait_until_ready(Duration::from_secs(30)) {
            Ok(()) => Ok(Some(server)),
            Err(_) if server.port_was_taken() => Ok(None),
            Err(error) => Err(error),
        }
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

    /// Ready when moto's log says it listens on our port and it answers there: an answer alone
    /// could come from another server that took the port first.
    fn wait_until_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let listening = format!("Running on http://127.0.0.1:{}", self.port);
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto on port {} exited with {status}: {}", self.port, self.log_text());
            }
            if self.log_text().contains(&listening) && self.get("/moto-api/").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("moto server on port {} not ready after {limit:?}: {}", self.port, self.log_text())
    }

    /// werkzeug's words when the port is bound already ("Address already in use").
    fn port_was_taken(&self) -> bool {
        self.log_text().contains("Address already in use")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
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

/// A job queue and a job definition on an unmanaged compute environment: the least moto's Batch
/// needs to accept submissions (without Docker it ends every job at once). `name` names all
/// three and the Batch service role.
pub struct BatchQueue {
    pub queue: String,
    pub definition: String,
}

/// Creates a [`BatchQueue`] on the moto server `config` points at.
pub async fn batch_queue(config: &aws_config::SdkConfig, name: &str) -> BatchQueue {
    use aws_sdk_batch::types::{
        CeState, CeType, ComputeEnvironmentOrder, ContainerProperties, JobDefinitionType, JqState,
        ResourceRequirement, ResourceType, RetryStrategy,
    };
    let role = aws_sdk_iam::Client::new(config)
        .create_role()
        .role_name(format!("{name}-batch-service"))
        .assume_role_policy_document(
            serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("moto creates the Batch service role");
    let batch = aws_sdk_batch::Client::new(config);
    let environment = batch
        .create_compute_environment()
        .compute_environment_name(name)
        .r#type(CeType::Unmanaged)
        .state(CeState::Enabled)
        .service_role(role.role().expect("a role").arn())
        .send()
        .await
        .expect("moto creates the compute environment");
    let queue = batch
        .create_job_queue()
        .job_queue_name(name)
        .state(JqState::Enabled)
        .priority(1)
        .compute_environment_order(
            ComputeEnvironmentOrder::builder()
                .order(1)
                .compute_environment(environment.compute_environment_arn().unwrap_or_default())
                .build(),
        )
        .send()
        .await
        .expect("moto creates the job queue");
    let requirement =
        |kind, value: &str| ResourceRequirement::builder().r#type(kind).value(value).build();
    let definition = batch
        .register_job_definition()
        .job_definition_name(name)
        .r#type(JobDefinitionType::Container)
        .container_properties(
            ContainerProperties::builder()
                .image("nton-job")
                .command("procure")
                .resource_requirements(requirement(ResourceType::Vcpu, "1"))
                .resource_requirements(requirement(ResourceType::Memory, "2048"))
                .build(),
        )
        .retry_strategy(RetryStrategy::builder().attempts(1).build())
        .send()
        .await
        .expect("moto registers the job definition");
    BatchQueue {
        queue: queue.job_queue_arn().unwrap_or_default().to_string(),
        definition: definition.job_definition_arn().unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port another program holds is recognised from moto's own message and the next port is
    /// used; the server answers there. Needs moto (`NTON_MOTO_SERVER`, as every moto test).
    #[test]
    fn a_taken_port_is_retried_on_the_next() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap().port();
        let mut ports = vec![free_port().unwrap(), taken];
        let server = MotoServer::start_on_ports(&[], || Ok(ports.pop().unwrap())).unwrap();
        assert_ne!(server.port, taken);
        assert!(ports.is_empty(), "both ports were tried");
        assert!(server.get("/moto-api/").is_ok());
    }

    /// Every port taken: an error naming them, not a server on someone else's port.
    #[test]
    fn all_ports_taken_is_an_error_naming_them() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap().port();
        let error = MotoServer::start_on_ports(&[], || Ok(taken)).err().unwrap();
        assert!(error.to_string().contains(&format!("{taken}")), "{error}");
    }
}
