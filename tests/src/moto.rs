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
        MotoServer::start_with_env(&[])
    }

    /// A server whose Batch fails every job (`MOTO_SIMPLE_BATCH_FAIL_AFTER=0`, which moto reads
    /// when a job is submitted): the watcher's and the CLI's failure paths.
    pub fn start_failing_batch() -> anyhow::Result<MotoServer> {
        MotoServer::start_with_env(&[("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")])
    }

    /// [`MotoServer::start`] with more of moto's environment variables: settings moto reads only
    /// from its environment (Batch failures, the request recorder's file).
    pub fn start_with_env(env: &[(&str, &str)]) -> anyhow::Result<MotoServer> {
        let program =
            std::env::var("NTON_MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_string());
        let port = free_port()?;
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
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
        bail!("moto server on port {} not ready after {limit:?}", self.port)
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
