//! `docs/deploying.md`, executed: every shell command of the guide, in document order, run by
//! bash against emulators, with the guide's placeholders (region, GitHub repository, account)
//! replaced by values chosen here. A command that fails fails the test, naming its line in the
//! guide; a command the emulators cannot run is listed in [`NOT_RUN`] with its reason (and
//! still checked statically by `deploy_guide.rs`). So the guide cannot drift from the
//! templates, the params files and the CLI.
//!
//! Where each command runs:
//! - `aws ...` (the pinned aws CLI v1 of `tests/tools.sh`, `$NTON_AWS_CLI`) and `nton ...` (the
//!   built binary) talk to LocalStack (`AWS_ENDPOINT_URL`; one server for this test binary).
//!   Each environment gets its own account (LocalStack takes a 12-digit access key id as the
//!   account id): the guide puts prod in its own account.
//! - `aws ecr get-login-password` runs on moto: LocalStack's community edition has no ECR.
//! - No region is set in the environment: a command without `--region` fails.
//!
//! What the emulators cannot create is left out of the templates `nton deploy` reads (its
//! default `--template-dir cloudformation`, here a directory the test fills):
//! [`nton_tests::reduce`] drops Batch, EFS, ECR and Lambda functions and what refers to them,
//! as in `localstack_cfn.rs`; the state machine stays. `github-oidc.yaml` is deployed as it is
//! (LocalStack creates its roles; its `AWS::IAM::OIDCProvider` is a "fallback" without a real
//! ARN).
//!
//! `nton start` runs the real state machine that CloudFormation created; its Lambda and Batch
//! tasks exist only as stand-ins, so LocalStack answers them from a mock file. LocalStack picks
//! a mocked case only from a `#<case>` suffix on the state machine ARN that StartExecution
//! names, and `nton start` (rightly) sends the stack output's plain ARN: Step Functions calls go
//! through [`MockCaseProxy`] (`AWS_ENDPOINT_URL_SFN`), which adds the suffix to StartExecution
//! and passes everything else through unchanged.
//!
//! The aws CLI's `cloudformation deploy` sleeps 30 s between two checks of a stack (fixed in
//! its code); a `sitecustomize` on the CLI's `PYTHONPATH` caps botocore's waiter delays at one
//! second, which changes when it looks, not what it does.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nton_engine::template::Template;
use nton_tests::localstack;
use nton_tests::moto::MotoServer;
use nton_tests::reduce;
use serde_json::Value;

const GUIDE: &str = "docs/deploying.md";

/// The guide's placeholders and what the test puts in their place.
const PLACEHOLDERS: &[(&str, &str)] =
    &[("eu-west-1", "eu-central-1"), ("your-org/your-fork", "nton-guide-org/nton-guide-fork")];
const REGION: &str = "eu-central-1";
/// Account ids (LocalStack: the access key id) per environment.
const DEV_ACCOUNT: &str = "111111111111";
const PROD_ACCOUNT: &str = "222222222222";

/// LocalStack's `AWS::URLSuffix` (AWS's is `amazonaws.com`), which the registry stack's
/// `ImageRegistry` output ends in.
const LOCALSTACK_URL_SUFFIX: &str = "localhost.localstack.cloud";

/// The mocked case `nton start`'s execution runs (the mock file's `nton-sfn-cases`).
const MOCK_CASE: &str = "AllDoneAfterTwoPolls";

/// Commands of the guide that no emulator here can run, each with the reason. `moto_part`: a
/// leading part of the command that does run, on moto.
struct NotRun {
    command: &'static str,
    reason: &'static str,
    moto_part: Option<&'static str>,
}

const NOT_RUN: &[NotRun] = &[
    NotRun {
        command: r#"aws ecr get-login-password --region eu-west-1 | skopeo login --username AWS --password-stdin "${REGISTRY%%/*}""#,
        reason: "skopeo logs in to ECR's image registry, which no emulator here serves (LocalStack's \
                 community edition has no ECR; moto has its API but no registry). The \
                 get-login-password half runs on moto; the host it logs in to, `${REGISTRY%%/*}`, is \
                 checked through REGISTRY after the run.",
        moto_part: Some("aws ecr get-login-password --region eu-west-1"),
    },
    NotRun {
        command: r#"for name in nton-job nton-init nton-watch; do skopeo copy "docker-archive:result/$name.tar.gz" "docker://$REGISTRY/$name:$TAG"; done"#,
        reason: "pushes the image archives `nix build .#images` makes (only on GitHub) to ECR's \
                 registry; the destinations are checked by deploy_guide.rs \
                 (images_go_to_the_registry_stacks_repositories)",
        moto_part: None,
    },
];

/// Commands that ask on a terminal: run under `script` (a pseudo-terminal) with this answer.
const TERMINAL_ANSWERS: &[(&str, &str)] = &[("nton teardown --region eu-west-1 --env dev", "dev")];

/// One shell command of the guide: continuation lines joined, comments dropped, a `for ... do`
/// loop through its `done` as one command.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    /// 1-based line of the guide where the command starts.
    line: usize,
    command: String,
}

/// The commands of every ```sh (or unlabelled) fence, in document order.
fn steps(markdown: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut in_shell: Option<bool> = None;
    let mut pending = String::new();
    let mut pending_line = 0;
    // Inside a loop: its first line and the parts so far.
    let mut looping: Option<(usize, Vec<String>)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_shell = match in_shell {
                Some(_) => None,
                None => Some(matches!(trimmed, "```" | "```sh" | "```bash")),
            };
            continue;
        }
        if in_shell != Some(true) {
            continue;
        }
        let code = match trimmed.find(" #") {
            Some(at) => &trimmed[..at],
            None if trimmed.starts_with('#') => "",
            None => trimmed,
        }
        .trim();
        if pending.is_empty() {
            pending_line = index + 1;
        }
        if let Some(head) = code.strip_suffix('\\') {
            pending.push_str(head.trim_end());
            pending.push(' ');
            continue;
        }
        pending.push_str(code);
        let command = std::mem::take(&mut pending).trim().to_string();
        if command.is_empty() {
            continue;
        }
        match looping.as_mut() {
            None if command.starts_with("for ") && command.ends_with("; do") => {
                looping = Some((pending_line, vec![command]));
            }
            None => out.push(Step { line: pending_line, command }),
            Some((first, parts)) => {
                let done = command == "done";
                parts.push(command);
                if done {
                    // "for x in a b; do" + "body" + "done" -> "for x in a b; do body; done"
                    let (head, rest) = parts.split_first().unwrap();
                    let body = rest[..rest.len() - 1].join("; ");
                    out.push(Step { line: *first, command: format!("{head} {body}; done") });
                    looping = None;
                }
            }
        }
    }
    assert!(looping.is_none(), "a for loop without its done");
    out
}

fn substitute(command: &str) -> String {
    PLACEHOLDERS.iter().fold(command.to_string(), |c, (from, to)| c.replace(from, to))
}

/// The account an environment's command acts in: prod's commands name prod.
fn account_of(command: &str) -> &'static str {
    let prod = ["--env prod", "GitHubEnvironment=prod", "nton-github-prod"];
    if prod.iter().any(|p| command.contains(p)) { PROD_ACCOUNT } else { DEV_ACCOUNT }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Where the generated script sends each command.
struct Endpoints {
    localstack: String,
    moto: String,
    sfn: String,
}

/// The bash script that runs `steps` in order: each preceded by the environment it needs and
/// followed by a marker; the first failure prints which line failed and stops.
fn script(steps: &[Step], endpoints: &Endpoints) -> String {
    let mut out = String::from(
        "set -o pipefail\nexec 2>&1\n\
         guide_mark() { printf '@@nton-guide %s %s\\n' \"$*\" \"$(date +%s%3N)\"; }\n",
    );
    for step in steps {
        let line = step.line;
        let not_run = NOT_RUN.iter().find(|n| n.command == step.command);
        let command = substitute(&step.command);
        out.push_str(&format!(
            "\n# {GUIDE}:{line}\nguide_mark start {line}\n\
             export AWS_ACCESS_KEY_ID={} AWS_ENDPOINT_URL={} AWS_ENDPOINT_URL_SFN={}\n",
            account_of(&command),
            endpoints.localstack,
            endpoints.sfn
        ));
        let body = match (not_run, TERMINAL_ANSWERS.iter().find(|(c, _)| *c == step.command)) {
            (Some(NotRun { moto_part: None, .. }), _) => {
                out.push_str(&format!("guide_mark skipped {line}\n"));
                continue;
            }
            (Some(NotRun { moto_part: Some(part), .. }), _) => format!(
                "GUIDE_OUT=\"$(AWS_ENDPOINT_URL={} {})\" && test -n \"$GUIDE_OUT\"",
                endpoints.moto,
                substitute(part)
            ),
            (None, Some((_, answer))) => format!(
                "printf '%s\\n' {} | script -qec {} /dev/null",
                shell_quote(answer),
                shell_quote(&command)
            ),
            (None, None) => command,
        };
        out.push_str(&format!(
            "{body} || {{ guide_rc=$?; guide_mark failed {line} $guide_rc; exit 1; }}\n\
             guide_mark done {line}\n"
        ));
        if is_oidc_deploy(&step.command) {
            // Not the guide's: what the OIDC stack made, kept for the checks after the run
            // (the guide deletes the stack at its end).
            out.push_str(&format!(
                "aws iam list-roles --region {REGION} --output json > {OIDC_ROLES_PREFIX}{line}.json\n"
            ));
        }
    }
    // The variables the guide sets, for the checks after the run.
    out.push_str(
        "\nprintf '@@nton-guide var REGISTRY %s\\n' \"${REGISTRY-}\"\n\
         printf '@@nton-guide var TAG %s\\n' \"${TAG-}\"\n",
    );
    out
}

/// Where the script keeps the IAM roles present after each OIDC deploy (`<prefix><line>.json`).
const OIDC_ROLES_PREFIX: &str = "oidc-roles-after-line-";

fn is_oidc_deploy(command: &str) -> bool {
    command.starts_with("aws cloudformation deploy") && command.contains("github-oidc.yaml")
}

/// What a run of the script printed, cut at its markers.
#[derive(Debug, Default)]
struct Run {
    /// Per guide line: the command's output and how long it took.
    outputs: BTreeMap<usize, (String, Duration)>,
    skipped: Vec<usize>,
    failed: Option<(usize, i32)>,
    vars: BTreeMap<String, String>,
}

fn parse_run(output: &str) -> Run {
    let mut run = Run::default();
    let mut current: Option<(usize, u64, String)> = None;
    for line in output.lines() {
        let Some(mark) = line.strip_prefix("@@nton-guide ") else {
            if let Some((_, _, text)) = current.as_mut() {
                text.push_str(line);
                text.push('\n');
            }
            continue;
        };
        let words: Vec<&str> = mark.splitn(3, ' ').collect();
        match words.as_slice() {
            ["var", name, value] => {
                run.vars.insert(name.to_string(), value.to_string());
            }
            ["var", name] => {
                run.vars.insert(name.to_string(), String::new());
            }
            ["start", line, ms] => {
                current = Some((line.parse().unwrap(), ms.parse().unwrap(), String::new()));
            }
            ["skipped", line, _] => {
                run.skipped.push(line.parse().unwrap());
                current = None;
            }
            ["done", line, ms] | ["failed", line, ms] => {
                let (_, started, text) = current.take().expect("a started step");
                let ms: u64 = ms.rsplit(' ').next().unwrap().parse().unwrap();
                let line: usize = line.parse().unwrap();
                if words[0] == "failed" {
                    // "failed <line> <rc> <ms>": splitn(3) left "<rc> <ms>" in the last word.
                    let rc = words[2].split(' ').next().unwrap().parse().unwrap();
                    run.failed = Some((line, rc));
                }
                run.outputs.insert(line, (text, Duration::from_millis(ms.saturating_sub(started))));
            }
            other => panic!("unexpected marker {other:?}"),
        }
    }
    run
}

/// Runs the script with `env` in `dir`; a failed command is an error naming its guide line,
/// the command and its output.
fn run_script(
    script_text: &str,
    steps: &[Step],
    dir: &Path,
    env: &[(String, String)],
) -> Result<Run, String> {
    let script_path = dir.join("guide.sh");
    std::fs::write(&script_path, script_text).unwrap();
    let mut command = Command::new("bash");
    command
        .arg(&script_path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // No region, profile or credentials from the machine: the guide's commands say them.
    for name in
        ["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"]
    {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    // nton's deploy, watch and teardown poll every 5-10 s by default; against an emulator that
    // is most of this test's time, and the guide's commands stay as written.
    command.env("NTON_POLL_SECONDS", "0.5");
    let output = command.output().map_err(|e| format!("bash: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let run = parse_run(&text);
    if let Some((line, rc)) = run.failed {
        let step = steps.iter().find(|s| s.line == line).unwrap();
        return Err(format!(
            "{GUIDE}:{line}: `{}` failed (exit {rc}); its output:\n{}",
            step.command, run.outputs[&line].0
        ));
    }
    if !output.status.success() {
        return Err(format!(
            "the guide's script ended with {} outside any command:\n{text}",
            output.status
        ));
    }
    let ran = run.outputs.len() + run.skipped.len();
    if ran != steps.len() {
        return Err(format!("{ran} of {} commands reported back:\n{text}", steps.len()));
    }
    Ok(run)
}

/// Proxies Step Functions calls to LocalStack, adding `#<case>` to the state machine ARN of
/// each StartExecution. Hand-written (std only, one request per upstream connection) because
/// it is the one rewrite the test needs; it reads `Content-Length` bodies, as the SDK's JSON
/// calls send them.
struct MockCaseProxy {
    endpoint: String,
    /// The bodies of the StartExecution calls it rewrote.
    started: Arc<Mutex<Vec<Value>>>,
}

impl MockCaseProxy {
    fn start(upstream: &str, case: &'static str) -> MockCaseProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.strip_prefix("http://").expect("a plain http upstream").to_string();
        let started = Arc::new(Mutex::new(Vec::new()));
        let seen = started.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, seen) = (upstream.clone(), seen.clone());
                std::thread::spawn(move || {
                    let _ = proxy_connection(client, &upstream, case, &seen);
                });
            }
        });
        MockCaseProxy { endpoint, started }
    }
}

fn proxy_connection(
    client: TcpStream,
    upstream: &str,
    case: &str,
    started: &Mutex<Vec<Value>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let header = |name: &str| {
            head.iter().skip(1).find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let length: usize = header("content-length").map(|l| l.parse().unwrap_or(0)).unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if header("x-amz-target").as_deref() == Some("AWSStepFunctions.StartExecution")
            && let Ok(mut call) = serde_json::from_slice::<Value>(&body)
            && let Some(arn) = call["stateMachineArn"].as_str()
        {
            started.lock().unwrap().push(call.clone());
            call["stateMachineArn"] = Value::String(format!("{arn}#{case}"));
            body = serde_json::to_vec(&call).unwrap();
        }
        let mut request = format!("{}\r\n", head[0]);
        for h in head.iter().skip(1) {
            let name = h.split(':').next().unwrap_or_default().trim();
            if !name.eq_ignore_ascii_case("content-length")
                && !name.eq_ignore_ascii_case("connection")
            {
                request.push_str(h);
                request.push_str("\r\n");
            }
        }
        request.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
        let mut up = TcpStream::connect(upstream)?;
        up.write_all(request.as_bytes())?;
        up.write_all(&body)?;
        let mut response = Vec::new();
        up.read_to_end(&mut response)?;
        client.write_all(&response)?;
        client.flush()?;
    }
}

/// What LocalStack's CloudFormation cannot create (as in localstack_cfn.rs).
fn unsupported_on_localstack(resource_type: &str) -> bool {
    ["AWS::Batch::", "AWS::EFS::", "AWS::ECR::", "AWS::Lambda::Function"]
        .iter()
        .any(|prefix| resource_type.starts_with(prefix))
}

/// A checkout as the guide's commands see it: `cloudformation/` with the reduced registry and
/// pipeline templates, the real OIDC template and the real params files.
fn checkout() -> tempfile::TempDir {
    let root = nton_tests::workspace_root().join("cloudformation");
    let dir = tempfile::tempdir().unwrap();
    let cfn = dir.path().join("cloudformation");
    std::fs::create_dir_all(cfn.join("params")).unwrap();
    for (name, keep) in [("pipeline.yaml", &["StateMachine"][..]), ("registry.yaml", &[][..])] {
        let template = Template::load(root.join(name)).unwrap();
        let reduced = reduce::reduce(template.body(), unsupported_on_localstack, keep).unwrap();
        // JSON is YAML: CloudFormation and nton read it as the template.
        std::fs::write(cfn.join(name), serde_json::to_string_pretty(&reduced.template).unwrap())
            .unwrap();
    }
    std::fs::copy(root.join("github-oidc.yaml"), cfn.join("github-oidc.yaml")).unwrap();
    for entry in std::fs::read_dir(root.join("params")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), cfn.join("params").join(entry.file_name())).unwrap();
    }
    dir
}

/// The repository's mock file with its cases also under the dev pipeline's state machine name
/// (the stack name).
fn mock_config(dir: &Path) -> PathBuf {
    let source = nton_tests::workspace_root().join("tests/localstack/sfn-mock-config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(source).unwrap()).unwrap();
    let cases = config["StateMachines"]["nton-sfn-cases"].clone();
    assert!(cases["TestCases"][MOCK_CASE].is_object(), "{MOCK_CASE}");
    config["StateMachines"]["nton-dev-pipeline"] = cases;
    let path = dir.join("sfn-mock-config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Caps botocore's waiter delays (see the module comment).
const FAST_WAITERS: &str = r#"
import botocore.waiter as _waiter
_wait = _waiter.Waiter.wait
def _fast_wait(self, **kwargs):
    config = dict(kwargs.get("WaiterConfig") or {})
    config["Delay"] = min(config.get("Delay", self.config.delay), 1)
    config["MaxAttempts"] = 600
    kwargs["WaiterConfig"] = config
    return _wait(self, **kwargs)
_waiter.Waiter.wait = _fast_wait
"#;

fn stacks_left(endpoint: &str, account: &str, aws: &Path) -> Vec<String> {
    let output = Command::new(aws)
        .args([
            "cloudformation",
            "list-stacks",
            "--region",
            REGION,
            "--query",
            "StackSummaries[?StackStatus!='DELETE_COMPLETE'].[StackName,StackStatus]",
            "--output",
            "text",
        ])
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", account)
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_deploy_guide_runs_in_order_on_the_emulators() {
    let started = Instant::now();
    let guide = std::fs::read_to_string(nton_tests::workspace_root().join(GUIDE)).unwrap();
    let steps = steps(&guide);
    let aws = PathBuf::from(std::env::var("NTON_AWS_CLI").expect(
        "NTON_AWS_CLI is not set: `source tests/tools.sh` installs the aws CLI and sets it",
    ));
    assert!(aws.is_file(), "{}: `source tests/tools.sh`", aws.display());
    let bin_dir = nton_tests::workspace_binary("nton").parent().unwrap().to_path_buf();

    let work = tempfile::tempdir().unwrap();
    let checkout = checkout();
    let server = localstack::shared(&mock_config(work.path())).expect("LocalStack starts");
    let moto = MotoServer::start().expect("moto starts");
    let proxy = MockCaseProxy::start(server.endpoint(), MOCK_CASE);
    let python_path = work.path().join("fast-waiters");
    std::fs::create_dir_all(&python_path).unwrap();
    std::fs::write(python_path.join("sitecustomize.py"), FAST_WAITERS).unwrap();
    let git_dir = Command::new("git")
        .args(["rev-parse", "--absolute-git-dir"])
        .current_dir(nton_tests::workspace_root())
        .output()
        .unwrap();
    assert!(git_dir.status.success(), "{git_dir:?}");
    let path = format!(
        "{}:{}:{}",
        bin_dir.display(),
        aws.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Empty config and credentials files: nothing from the machine's ~/.aws.
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("no-config"), "").unwrap();
    std::fs::write(home.join("no-credentials"), "").unwrap();
    let env: Vec<(String, String)> = [
        ("PATH", path),
        ("HOME", home.display().to_string()),
        ("AWS_CONFIG_FILE", home.join("no-config").display().to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials").display().to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("PYTHONPATH", python_path.display().to_string()),
        ("GIT_DIR", String::from_utf8_lossy(&git_dir.stdout).trim().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let endpoints = Endpoints {
        localstack: server.endpoint().to_string(),
        moto: moto.endpoint(),
        sfn: proxy.endpoint.clone(),
    };
    let set_up = started.elapsed();

    let run = run_script(&script(&steps, &endpoints), &steps, checkout.path(), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut timings: Vec<String> = run
        .outputs
        .iter()
        .map(|(line, (_, took))| format!("  {GUIDE}:{line}  {took:.1?}"))
        .collect();
    timings.insert(0, format!("  set-up  {set_up:.1?}"));
    eprintln!(
        "deploy_guide_run: {} commands run, {} not run, {:.1?} so far\n{}",
        run.outputs.len(),
        run.skipped.len(),
        started.elapsed(),
        timings.join("\n")
    );

    // What the guide's commands produced, beyond their exit codes.
    let registry = &run.vars["REGISTRY"];
    let prefix = {
        let params: Value = serde_json::from_str(
            &std::fs::read_to_string(checkout.path().join("cloudformation/params/dev.json"))
                .unwrap(),
        )
        .unwrap();
        params["Parameters"]["RepositoryPrefix"].as_str().unwrap().to_string()
    };
    assert_eq!(
        registry,
        &format!("{DEV_ACCOUNT}.dkr.ecr.{REGION}.{LOCALSTACK_URL_SUFFIX}/{prefix}"),
        "REGISTRY: the registry deploy's imageRegistry, in the dev account and the region"
    );
    assert!(
        run.vars["TAG"].starts_with("git-") && run.vars["TAG"].len() > 8,
        "TAG={}",
        run.vars["TAG"]
    );
    let outputs_table = run
        .outputs
        .values()
        .find(|(text, _)| text.contains("DeployRoleArn"))
        .map(|(text, _)| text.clone())
        .expect("the OIDC stack's outputs were printed");
    assert!(
        outputs_table.contains(&format!("arn:aws:iam::{DEV_ACCOUNT}:role/nton-github-dev-")),
        "{outputs_table}"
    );
    // Each OIDC stack's deploy role trusts the fork's GitHub environment, in its own account.
    let (fork_placeholder, fork) = PLACEHOLDERS[1];
    assert_eq!(fork_placeholder, "your-org/your-fork");
    let mut trusted = Vec::new();
    for step in steps.iter().filter(|s| is_oidc_deploy(&s.command)) {
        let roles: Value = serde_json::from_str(
            &std::fs::read_to_string(
                checkout.path().join(format!("{OIDC_ROLES_PREFIX}{}.json", step.line)),
            )
            .unwrap(),
        )
        .unwrap();
        let env = if account_of(&step.command) == PROD_ACCOUNT { "prod" } else { "dev" };
        let deploy_role = roles["Roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["RoleName"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("nton-github-{env}-DeployRole")))
            })
            .unwrap_or_else(|| panic!("no deploy role of nton-github-{env}: {roles:#}"));
        let arn = deploy_role["Arn"].as_str().unwrap();
        assert!(
            arn.starts_with(&format!("arn:aws:iam::{}:role/", account_of(&step.command))),
            "{arn}"
        );
        let trust = deploy_role["AssumeRolePolicyDocument"].to_string();
        let subject = format!("repo:{fork}:environment:{env}");
        assert!(trust.contains(&subject), "{subject} in {trust}");
        trusted.push(env);
    }
    assert_eq!(trusted, ["dev", "prod"]);

    let calls = proxy.started.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one StartExecution, nton start's: {calls:?}");
    assert!(
        calls[0]["stateMachineArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{DEV_ACCOUNT}:stateMachine:nton-dev-pipeline")),
        "{calls:?}"
    );
    let input: Value = serde_json::from_str(calls[0]["input"].as_str().unwrap()).unwrap();
    assert_eq!(input, serde_json::json!({"ids": 4000, "idsPerNode": 40}));
    let watched = run
        .outputs
        .values()
        .find(|(text, _)| text.contains("SUCCEEDED") && text.contains("egress"))
        .map(|(text, _)| text.clone());
    assert!(watched.is_some(), "nton watch followed the run to SUCCEEDED");
    assert_eq!(run.skipped.len(), NOT_RUN.iter().filter(|n| n.moto_part.is_none()).count());

    // Followed to its end, the guide leaves nothing (delete-stack returns before the delete).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<String> = [DEV_ACCOUNT, PROD_ACCOUNT]
            .iter()
            .flat_map(|account| stacks_left(server.endpoint(), account, &aws))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "stacks left: {left:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("deploy_guide_run: {:.1?} in all", started.elapsed());
}

/// The lists of commands that are not run or are answered must name commands the guide has
/// (else they would hide nothing and rot), and every placeholder must occur in the guide.
#[test]
fn the_lists_of_special_commands_name_commands_of_the_guide() {
    let guide = std::fs::read_to_string(nton_tests::workspace_root().join(GUIDE)).unwrap();
    let commands: Vec<String> = steps(&guide).into_iter().map(|s| s.command).collect();
    for not_run in NOT_RUN {
        assert!(
            commands.iter().any(|c| c == not_run.command),
            "NOT_RUN names a command the guide no longer has: {}\n({})\nthe guide's: {commands:#?}",
            not_run.command,
            not_run.reason
        );
        if let Some(part) = not_run.moto_part {
            assert!(not_run.command.starts_with(part), "{part}");
        }
    }
    for (command, _) in TERMINAL_ANSWERS {
        assert!(
            commands.iter().any(|c| c == command),
            "TERMINAL_ANSWERS names a command the guide no longer has: {command}"
        );
    }
    for (placeholder, _) in PLACEHOLDERS {
        assert!(commands.iter().any(|c| c.contains(placeholder)), "{placeholder}");
    }
    // After the substitution no example value is left for an emulator to accept silently.
    for command in &commands {
        let substituted = substitute(command);
        for (placeholder, _) in PLACEHOLDERS {
            assert!(!substituted.contains(placeholder), "{substituted}");
        }
    }
}

/// The runner itself: commands run in order, with state carried from one to the next, a loop is
/// one command, and the first failure stops the run naming its line (no emulator needed).
#[test]
fn a_failing_command_stops_the_run_naming_its_guide_line() {
    let markdown = "# t\n\n```sh\nX=$(echo one)\nfor n in a b; do\n  echo \"$X-$n\"\ndone\ntest \"$X\" = two \\\n  && echo same\necho never\n```\n";
    let steps = steps(markdown);
    assert_eq!(
        steps,
        vec![
            Step { line: 4, command: "X=$(echo one)".into() },
            Step { line: 5, command: "for n in a b; do echo \"$X-$n\"; done".into() },
            Step { line: 8, command: "test \"$X\" = two && echo same".into() },
            Step { line: 10, command: "echo never".into() },
        ]
    );
    let endpoints = Endpoints {
        localstack: "http://127.0.0.1:9".into(),
        moto: "http://127.0.0.1:9".into(),
        sfn: "http://127.0.0.1:9".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let error = run_script(&script(&steps, &endpoints), &steps, dir.path(), &[]).unwrap_err();
    assert!(
        error.starts_with(&format!("{GUIDE}:8: `test \"$X\" = two && echo same` failed (exit 1)")),
        "{error}"
    );
    // The loop ran with the first command's variable before the failure.
    let good = &steps[..2];
    let run = run_script(&script(good, &endpoints), good, dir.path(), &[]).unwrap();
    assert_eq!(run.outputs[&5].0, "one-a\none-b\n");
}
