//! A LocalStack endpoint for the tests, started one of three ways (`NTON_LOCALSTACK`):
//!
//! - unset or `host`: a host process (`$NTON_LOCALSTACK_PYTHON -m localstack.runtime.main`,
//!   installed by `tests/tools.sh`) on a free loopback port with its own temporary
//!   `FILESYSTEM_ROOT`;
//! - `docker`: a container through `testcontainers-modules`' LocalStack module (only with the
//!   `localstack-docker` feature of nton-tests; `LOCALSTACK_AUTH_TOKEN` is passed when set);
//! - `http://...` or `https://...`: a LocalStack already running there.
//!
//! Tests see only an endpoint. A LocalStack that cannot be started is an error, never a skip.
//!
//! Start costs seconds, so a test process shares one server per mock file ([`shared`]). Under
//! nextest every test is its own process: cases that should share a server belong in one test
//! function.
//! The host process is stopped by PID when the [`LocalStack`] is dropped, and also when the
//! test process ends without dropping it (the shared instance lives in a static): a small
//! shell parent holds LocalStack as its child and kills it when its stdin, a pipe from the
//! test process, closes. That needs no `unsafe` (no `prctl(PR_SET_PDEATHSIG)`) and leaves no
//! orphan even when the test process is killed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// LocalStack's default account id.
pub const ACCOUNT_ID: &str = "000000000000";
/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// How long a start may take: 2-5 s on an idle machine, 20 s measured on a loaded one.
const START_LIMIT: Duration = Duration::from_secs(120);

/// A running LocalStack endpoint.
pub struct LocalStack {
    endpoint: String,
    sfn_mock_config: PathBuf,
    _backend: Backend,
}

// Each backend is held for its Drop (which stops the server), never read.
#[allow(dead_code)]
enum Backend {
    Host(HostProcess),
    #[cfg(feature = "localstack-docker")]
    Docker(Box<docker::Container>),
    /// `NTON_LOCALSTACK=<url>`: someone else's server.
    External,
}

/// The process group started on the host: `sh` (the parent) and LocalStack (its child).
struct HostProcess {
    parent: Child,
    /// Closing it tells the parent to stop LocalStack.
    stop: Option<ChildStdin>,
    root: PathBuf,
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        drop(self.stop.take());
        // The parent kills LocalStack by PID, waits for it and removes the root; give it
        // the time LocalStack takes to shut down, then make sure.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.parent.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.parent.kill();
        let _ = self.parent.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The one server of this test process for `sfn_mock_config` (its `SFN_MOCK_CONFIG`), started
/// on first use. Under cargo-nextest every test is a process of its own; under `cargo test` the
/// whole suite is one process, and each mock file gets its own server (LocalStack re-reads the
/// file, so its content may change between executions).
pub fn shared(sfn_mock_config: &Path) -> anyhow::Result<&'static LocalStack> {
    // A failed start is remembered: trying again would cost the same wait for the same error.
    // Leaked: a server lives as long as the process (the host mode's parent stops it at exit).
    type Started = &'static Result<LocalStack, String>;
    static SHARED: OnceLock<Mutex<BTreeMap<PathBuf, Started>>> = OnceLock::new();
    let key = sfn_mock_config.canonicalize().unwrap_or_else(|_| sfn_mock_config.to_path_buf());
    let mut servers =
        SHARED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let server = *servers.entry(key).or_insert_with(|| {
        Box::leak(Box::new(LocalStack::start(sfn_mock_config).map_err(|e| format!("{e:#}"))))
    });
    server.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}

impl LocalStack {
    /// Starts (or connects to) LocalStack as `NTON_LOCALSTACK` says, with `sfn_mock_config`
    /// (a Step Functions Local style mock file) as its `SFN_MOCK_CONFIG`.
    pub fn start(sfn_mock_config: &Path) -> anyhow::Result<LocalStack> {
        let sfn_mock_config = sfn_mock_config
            .canonicalize()
            .with_context(|| format!("the SFN mock config {}", sfn_mock_config.display()))?;
        let mode = std::env::var("NTON_LOCALSTACK").unwrap_or_default();
        let (endpoint, backend) = match mode.as_str() {
            "" | "host" => start_host(&sfn_mock_config)?,
            "docker" => start_docker(&sfn_mock_config)?,
            url if url.starts_with("http://") || url.starts_with("https://") => {
                (url.trim_end_matches('/').to_string(), Backend::External)
            }
            other => bail!(
                "NTON_LOCALSTACK={other:?}: expected host (the default), docker, or an http(s):// endpoint"
            ),
        };
        let server = LocalStack { endpoint, sfn_mock_config, _backend: backend };
        if !matches!(server._backend, Backend::Host(_)) {
            // A container or someone else's server: check it answers, and for the latter say
            // what it must have been given.
            server.wait_until_ready(Duration::from_secs(10)).with_context(|| {
                format!(
                    "NTON_LOCALSTACK={}: start it with SFN_MOCK_CONFIG={}",
                    server.endpoint,
                    server.sfn_mock_config.display()
                )
            })?;
        }
        Ok(server)
    }

    /// `http://127.0.0.1:<port>` (or the container's or given URL): the value for
    /// `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An SDK config pointed at this endpoint, with dummy credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint.clone())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::for_tests())
            .load()
            .await
    }

    /// Environment variables that point a child process (a CLI or worker binary) here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    /// Polls `/_localstack/health` until Step Functions is up.
    fn wait_until_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            match health(&self.endpoint) {
                Ok(body) if stepfunctions_ready(&body) => return Ok(()),
                Ok(body) => last = body,
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("LocalStack at {} not ready after {limit:?}; last answer: {last}", self.endpoint)
    }
}

fn stepfunctions_ready(health: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(health)
        .ok()
        .and_then(|h| {
            h.pointer("/services/stepfunctions")
                .and_then(|s| s.as_str())
                .map(|s| s == "available" || s == "running")
        })
        .unwrap_or(false)
}

/// GET `/_localstack/health` over a bare HTTP/1.0 request (the harness needs this one call,
/// not an HTTP client dependency). Only plain `http://host:port` endpoints.
fn health(endpoint: &str) -> anyhow::Result<String> {
    let authority = endpoint
        .strip_prefix("http://")
        .with_context(|| format!("{endpoint}: the readiness check speaks plain http only"))?;
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /_localstack/health HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status_line = response.lines().next().unwrap_or_default();
    if !status_line.contains(" 200") {
        bail!("GET /_localstack/health answered {status_line:?}");
    }
    Ok(response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}

fn start_host(sfn_mock_config: &Path) -> anyhow::Result<(String, Backend)> {
    let python = std::env::var("NTON_LOCALSTACK_PYTHON").context(
        "NTON_LOCALSTACK_PYTHON is not set: `source tests/tools.sh` installs LocalStack (localstack-core in a Python 3.13 venv) and sets it; or set NTON_LOCALSTACK=docker|<url>",
    )?;
    if !Path::new(&python).is_file() {
        bail!(
            "NTON_LOCALSTACK_PYTHON={python} does not exist: `source tests/tools.sh` installs LocalStack"
        );
    }
    // Kept until the parent shell removes it (it outlives a static that is never dropped).
    let root = tempfile::Builder::new().prefix("nton-localstack-").tempdir()?.keep();
    let port = free_port()?;
    let log = root.join("localstack.log");
    // $1 python, $2 the root to remove at the end; LocalStack's output goes to the log.
    // `read` returns when the test process closes the pipe (drop or exit, even SIGKILL);
    // if LocalStack exits first, the parent exits with its status.
    const PARENT: &str = r#"
        python="$1"; root="$2"
        exec 3<&0
        "$python" -m localstack.runtime.main >"$root/localstack.log" 2>&1 </dev/null 3<&- &
        child=$!
        # An asynchronous list's stdin is /dev/null: read the pipe through fd 3.
        # LocalStack's graceful shutdown takes seconds; its state is thrown away anyway.
        ( read -r _ <&3; kill -TERM "$child" 2>/dev/null; sleep 2; kill -KILL "$child" 2>/dev/null ) &
        exec 3<&-
        wait "$child"; status=$?
        rm -rf "$root"
        exit "$status"
    "#;
    let mut parent = Command::new("sh")
        .args(["-c", PARENT, "nton-localstack"])
        .arg(&python)
        .arg(&root)
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        // The VM looks like a container to LocalStack; without this it writes under /var/lib.
        .env("OVERRIDE_IN_DOCKER", "0")
        .env("FILESYSTEM_ROOT", root.join("fs"))
        .env("DNS_ADDRESS", "0")
        .env("DISABLE_EVENTS", "1")
        .env("SKIP_SSL_CERT_DOWNLOAD", "1")
        .env("SFN_MOCK_CONFIG", sfn_mock_config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting sh for LocalStack")?;
    let stop = parent.stdin.take();
    let host = HostProcess { parent, stop, root: root.clone() };
    let endpoint = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    let mut host = host;
    loop {
        if let Some(status) = host.parent.try_wait()? {
            let tail = log_tail(&log);
            bail!("LocalStack exited with {status} before it was ready; its log ends:\n{tail}");
        }
        if health(&endpoint).is_ok_and(|body| stepfunctions_ready(&body)) {
            return Ok((endpoint, Backend::Host(host)));
        }
        if start.elapsed() > START_LIMIT {
            let tail = log_tail(&log);
            bail!(
                "LocalStack on {endpoint} not ready after {START_LIMIT:?}; its log ends:\n{tail}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(not(feature = "localstack-docker"))]
fn start_docker(_: &Path) -> anyhow::Result<(String, Backend)> {
    bail!(
        "NTON_LOCALSTACK=docker needs the localstack-docker feature: cargo nextest run -p nton-tests --features localstack-docker"
    )
}

#[cfg(feature = "localstack-docker")]
fn start_docker(sfn_mock_config: &Path) -> anyhow::Result<(String, Backend)> {
    let (endpoint, container) = docker::start(sfn_mock_config)?;
    Ok((endpoint, Backend::Docker(Box::new(container))))
}

#[cfg(feature = "localstack-docker")]
mod docker {
    use std::path::Path;

    use anyhow::Context;
    use testcontainers_modules::localstack::LocalStack;
    use testcontainers_modules::testcontainers::core::{CopyDataSource, IntoContainerPort};
    use testcontainers_modules::testcontainers::runners::SyncRunner;
    use testcontainers_modules::testcontainers::{Container as SyncContainer, ImageExt};

    pub(super) type Container = SyncContainer<LocalStack>;

    /// Where the mock file goes inside the container.
    const MOCK_PATH: &str = "/tmp/nton-sfn-mock-config.json";

    pub(super) fn start(sfn_mock_config: &Path) -> anyhow::Result<(String, Container)> {
        let mock = std::fs::read(sfn_mock_config)
            .with_context(|| format!("reading {}", sfn_mock_config.display()))?;
        let mut image = LocalStack::default()
            .with_env_var("SFN_MOCK_CONFIG", MOCK_PATH)
            .with_env_var("SERVICES", "s3,stepfunctions,cloudformation,iam,sts,lambda,logs")
            .with_copy_to(MOCK_PATH, CopyDataSource::Data(mock));
        if let Ok(token) = std::env::var("LOCALSTACK_AUTH_TOKEN")
            && !token.is_empty()
        {
            image = image.with_env_var("LOCALSTACK_AUTH_TOKEN", token);
        }
        // The blocking runner has its own runtime: start it off any test's tokio runtime.
        let container = std::thread::spawn(move || image.start())
            .join()
            .map_err(|_| anyhow::anyhow!("the thread starting the LocalStack container panicked"))?
            .context("starting the LocalStack container (is Docker running?)")?;
        let host = container.get_host().context("the container's host")?;
        let port = container.get_host_port_ipv4(4566.tcp()).context("the container's port 4566")?;
        Ok((format!("http://{host}:{port}"), container))
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
