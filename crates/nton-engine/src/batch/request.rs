//! The `batch:submitJob` request as the state machine's Task passes it (PascalCase, as Step
//! Functions sends it), read and checked the way AWS Batch checks a `SubmitJob` call. What
//! needs the Batch's state (queues, definitions, dependency jobs) is checked by the state.

use std::collections::BTreeMap;
use std::time::Duration;

use nton_core::batch::{ArrayDependencyType, BatchApiError};
use serde_json::{Map, Value};

use super::client_error;
use super::shapes::{
    self, ApiForm, RawContainerOverrides, RawRetryStrategy, RawTimeout, Resources,
};
use super::spec::RetryStrategy;

/// AWS Batch limits on one submission.
pub(crate) const MIN_ARRAY_SIZE: u64 = 2;
pub(crate) const MAX_ARRAY_SIZE: u64 = 10_000;
pub(crate) const MAX_DEPENDENCIES: usize = 20;
pub(crate) const MAX_JOB_NAME_CHARS: usize = 128;
pub(crate) const MAX_PAYLOAD_BYTES: usize = 30 * 1024;
const MIN_ATTEMPT_DURATION_SECONDS: u64 = 60;

const FIELDS: &[&str] = &[
    "JobName",
    "JobQueue",
    "JobDefinition",
    "ArrayProperties",
    "DependsOn",
    "ContainerOverrides",
    "RetryStrategy",
    "Timeout",
    "Parameters",
    "Tags",
    "PropagateTags",
    "ShareIdentifier",
    "SchedulingPriorityOverride",
];

/// A submission that passed every check not needing the Batch's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SubmitRequest {
    pub job_name: String,
    pub job_queue: String,
    pub job_definition: String,
    pub array_size: Option<u32>,
    pub depends_on: Vec<Dependency>,
    pub environment: Vec<(String, String)>,
    pub command: Option<Vec<String>>,
    pub vcpus: Option<f64>,
    pub memory_mib: Option<u64>,
    pub retry: Option<RetryStrategy>,
    pub attempt_timeout: Option<Duration>,
    pub parameters: BTreeMap<String, String>,
}

/// One `DependsOn` entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Dependency {
    pub job_id: Option<String>,
    pub kind: Option<ArrayDependencyType>,
}

fn invalid(message: impl std::fmt::Display) -> BatchApiError {
    client_error(format!("Error executing request, Exception : {message}"))
}

pub(crate) fn parse(request: &Value) -> Result<SubmitRequest, BatchApiError> {
    let object = request
        .as_object()
        .ok_or_else(|| invalid("the SubmitJob request must be a JSON object"))?;
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "The field '{unknown}' is not supported by Step Functions for batch:submitJob"
        )));
    }
    // AWS measures the whole request; the PascalCase JSON is within a few bytes of it.
    let payload = serde_json::to_vec(request).map_or(0, |bytes| bytes.len());
    if payload > MAX_PAYLOAD_BYTES {
        return Err(invalid(format!(
            "Job size must be less than 30 KiB, got {} KiB",
            payload.div_ceil(1024)
        )));
    }

    let job_name = required_string(object, "JobName")?;
    if !valid_job_name(&job_name) {
        return Err(invalid("Job name should match valid pattern"));
    }
    let mut parsed = SubmitRequest {
        job_name,
        job_queue: required_string(object, "JobQueue")?,
        job_definition: required_string(object, "JobDefinition")?,
        ..SubmitRequest::default()
    };

    if let Some(array) = object.get("ArrayProperties") {
        let array = as_object(array, "ArrayProperties")?;
        if let Some(size) = array.get("Size") {
            let size =
                size.as_u64().ok_or_else(|| invalid("ArrayProperties.Size must be an integer"))?;
            if !(MIN_ARRAY_SIZE..=MAX_ARRAY_SIZE).contains(&size) {
                return Err(invalid(format!(
                    "Array size must be between {MIN_ARRAY_SIZE} and {MAX_ARRAY_SIZE}, got {size}"
                )));
            }
            parsed.array_size = Some(size as u32);
        }
    }

    if let Some(deps) = object.get("DependsOn") {
        let deps = deps.as_array().ok_or_else(|| invalid("DependsOn must be a list"))?;
        if deps.len() > MAX_DEPENDENCIES {
            return Err(invalid(format!(
                "A job can depend on at most {MAX_DEPENDENCIES} jobs, got {}",
                deps.len()
            )));
        }
        for dep in deps {
            parsed.depends_on.push(parse_dependency(dep)?);
        }
    }

    if let Some(overrides) = object.get("ContainerOverrides") {
        let overrides = shapes::read(overrides, "ContainerOverrides").map_err(invalid)?;
        container_overrides(overrides, &mut parsed)?;
    }

    if let Some(retry) = object.get("RetryStrategy") {
        let strategy = shapes::read::<RawRetryStrategy<ApiForm>>(retry, "RetryStrategy")
            .and_then(|raw| raw.validate("RetryStrategy"))
            .map_err(invalid)?;
        parsed.retry = Some(strategy);
    }

    if let Some(timeout) = object.get("Timeout") {
        let timeout: RawTimeout<ApiForm> = shapes::read(timeout, "Timeout").map_err(invalid)?;
        if let Some(seconds) = timeout.attempt_duration_seconds {
            if seconds < MIN_ATTEMPT_DURATION_SECONDS {
                return Err(invalid(format!(
                    "The minimum value for the timeout is {MIN_ATTEMPT_DURATION_SECONDS} seconds, got {seconds}"
                )));
            }
            parsed.attempt_timeout = Some(Duration::from_secs(seconds));
        }
    }

    if let Some(parameters) = object.get("Parameters") {
        parsed.parameters = string_map(parameters, "Parameters")?;
    }
    // Accepted and checked for shape only: tags, fair-share scheduling and priorities do not
    // change how one machine runs the children.
    if let Some(tags) = object.get("Tags") {
        string_map(tags, "Tags")?;
    }
    if let Some(propagate) = object.get("PropagateTags")
        && !propagate.is_boolean()
    {
        return Err(invalid("PropagateTags must be a boolean"));
    }
    if let Some(share) = object.get("ShareIdentifier")
        && !share.is_string()
    {
        return Err(invalid("ShareIdentifier must be a string"));
    }
    if let Some(priority) = object.get("SchedulingPriorityOverride")
        && priority.as_u64().is_none_or(|p| p > 9999)
    {
        return Err(invalid("SchedulingPriorityOverride must be an integer from 0 to 9999"));
    }
    Ok(parsed)
}

/// 1..=128 of letters, digits, `-` and `_`, starting with a letter or digit.
pub(crate) fn valid_job_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= MAX_JOB_NAME_CHARS
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_dependency(dep: &Value) -> Result<Dependency, BatchApiError> {
    let dep = as_object(dep, "DependsOn entry")?;
    if let Some(unknown) = dep.keys().find(|k| *k != "JobId" && *k != "Type") {
        return Err(invalid(format!("The field '{unknown}' is not supported in DependsOn")));
    }
    let job_id = match dep.get("JobId") {
        None => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return Err(invalid("DependsOn JobId must be a string")),
    };
    let kind = match dep.get("Type").map(|t| t.as_str()) {
        None => None,
        Some(Some("N_TO_N")) => Some(ArrayDependencyType::NToN),
        Some(Some("SEQUENTIAL")) => Some(ArrayDependencyType::Sequential),
        Some(other) => {
            return Err(invalid(format!(
                "DependsOn Type must be N_TO_N or SEQUENTIAL, got {}",
                other.unwrap_or("a non-string")
            )));
        }
    };
    if job_id.is_none() && kind != Some(ArrayDependencyType::Sequential) {
        return Err(invalid("DependsOn JobId is required unless the type is SEQUENTIAL"));
    }
    Ok(Dependency { job_id, kind })
}

fn container_overrides(
    overrides: RawContainerOverrides<ApiForm>,
    parsed: &mut SubmitRequest,
) -> Result<(), BatchApiError> {
    for pair in overrides.environment {
        // AWS reserves the prefix for the variables it sets itself.
        if pair.name.starts_with("AWS_BATCH") {
            return Err(invalid(format!(
                "Environment variable {}: names starting with AWS_BATCH are reserved",
                pair.name
            )));
        }
        parsed.environment.push((pair.name, pair.value));
    }
    parsed.command = overrides.command;
    if let Some(vcpus) = overrides.vcpus {
        if !(vcpus.is_finite() && vcpus > 0.0) {
            return Err(invalid("ContainerOverrides.Vcpus must be positive"));
        }
        parsed.vcpus = Some(vcpus);
    }
    let legacy = Resources { vcpus: parsed.vcpus, memory_mib: overrides.memory };
    let resources = legacy
        .require(&overrides.resource_requirements, "ContainerOverrides.ResourceRequirements")
        .map_err(invalid)?;
    parsed.vcpus = resources.vcpus;
    parsed.memory_mib = resources.memory_mib;
    Ok(())
}

fn as_object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, BatchApiError> {
    value.as_object().ok_or_else(|| invalid(format!("{what} must be an object")))
}

fn required_string(object: &Map<String, Value>, key: &str) -> Result<String, BatchApiError> {
    optional_string(object, key)?.ok_or_else(|| invalid(format!("{key} is required")))
}

fn optional_string(
    object: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, BatchApiError> {
    match object.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(invalid(format!("{key} must be a string"))),
    }
}

fn string_map(value: &Value, what: &str) -> Result<BTreeMap<String, String>, BatchApiError> {
    as_object(value, what)?
        .iter()
        .map(|(k, v)| match v {
            Value::String(text) => Ok((k.clone(), text.clone())),
            _ => Err(invalid(format!("{what}.{k} must be a string"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::batch::RetryAction;

    fn base() -> Value {
        json!({"JobName": "nton-procure-wf1", "JobQueue": "q", "JobDefinition": "d"})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut request = base();
        request[field] = value;
        request
    }

    #[test]
    fn reads_the_templates_array_submission() {
        let request = json!({
            "JobName": "nton-process-wf1",
            "JobQueue": "arn:aws:batch:local-1:000000000000:job-queue/ProcessJobQueue",
            "JobDefinition": "arn:aws:batch:local-1:000000000000:job-definition/ProcessJobDefinition:1",
            "ArrayProperties": {"Size": 40},
            "DependsOn": [{"JobId": "abc", "Type": "N_TO_N"}],
            "ContainerOverrides": {
                "Environment": [{"Name": "NTON_WORKFLOW_ID", "Value": "wf1"}],
                "ResourceRequirements": [{"Type": "VCPU", "Value": "0.5"}, {"Type": "MEMORY", "Value": "1024"}]
            },
            "RetryStrategy": {"Attempts": 2, "EvaluateOnExit": [{"OnExitCode": "3", "Action": "exit"}]},
            "Timeout": {"AttemptDurationSeconds": 120},
            "Parameters": {"codec": "mp4"},
            "Tags": {"team": "x"}, "PropagateTags": true
        });
        let parsed = parse(&request).unwrap();
        assert_eq!(parsed.array_size, Some(40));
        assert_eq!(
            parsed.depends_on,
            vec![Dependency { job_id: Some("abc".into()), kind: Some(ArrayDependencyType::NToN) }]
        );
        assert_eq!(parsed.environment, vec![("NTON_WORKFLOW_ID".into(), "wf1".into())]);
        assert_eq!(parsed.vcpus, Some(0.5));
        assert_eq!(parsed.memory_mib, Some(1024));
        let retry = parsed.retry.unwrap();
        assert_eq!(retry.attempts, 2);
        assert_eq!(retry.evaluate_on_exit[0].action, RetryAction::Exit);
        assert_eq!(parsed.attempt_timeout, Some(Duration::from_secs(120)));
        assert_eq!(parsed.parameters["codec"], "mp4");
    }

    #[test]
    fn array_size_must_be_2_to_10000() {
        for (size, ok) in [(1, false), (2, true), (10_000, true), (10_001, false)] {
            let result = parse(&with("ArrayProperties", json!({"Size": size})));
            assert_eq!(result.is_ok(), ok, "size {size}");
        }
    }

    #[test]
    fn job_names_follow_aws_pattern() {
        assert!(valid_job_name("a"));
        assert!(valid_job_name("nton-procure_W1"));
        assert!(valid_job_name(&"x".repeat(128)));
        assert!(!valid_job_name(""));
        assert!(!valid_job_name("-lead"));
        assert!(!valid_job_name("has space"));
        assert!(!valid_job_name("dot.ted"));
        assert!(!valid_job_name(&"x".repeat(129)));
        let err = parse(&with("JobName", json!("bad name"))).unwrap_err();
        assert!(err.message.contains("Job name should match valid pattern"));
    }

    #[test]
    fn rejects_what_aws_rejects() {
        let too_many: Vec<Value> = (0..21).map(|i| json!({"JobId": format!("j{i}")})).collect();
        let cases = [
            with("DependsOn", json!(too_many)),
            with("DependsOn", json!([{"Type": "N_TO_N"}])),
            with("DependsOn", json!([{"JobId": "a", "Type": "ALL"}])),
            with("Timeout", json!({"AttemptDurationSeconds": 59})),
            with("RetryStrategy", json!({"Attempts": 11})),
            with(
                "ContainerOverrides",
                json!({"Environment": [{"Name": "AWS_BATCH_JOB_ID", "Value": "x"}]}),
            ),
            with("ContainerOverrides", json!({"Environment": [{"Name": "N", "Value": 3}]})),
            with("Unknown", json!(1)),
            with("Parameters", json!({"p": "x".repeat(31 * 1024)})),
            json!({"JobName": "n", "JobQueue": "q"}),
            json!("not an object"),
        ];
        for case in cases {
            let err = parse(&case).unwrap_err();
            assert_eq!(err.code, "ClientException");
            assert!(
                err.message.starts_with("Error executing request, Exception : "),
                "{}",
                err.message
            );
        }
    }

    /// Step Functions passes the Task's JSON to Batch's SubmitJob, whose `retryStrategy.attempts`
    /// and `timeout.attemptDurationSeconds` are Integers and `resourceRequirements[].value` a
    /// String (Batch API reference): a string count or a numeric Value is refused, naming the
    /// field. (A job definition in the template takes `"3"`: see `shapes.rs`.)
    #[test]
    fn submissions_keep_the_apis_types_and_errors_name_the_field() {
        let cases = [
            (
                "RetryStrategy",
                json!({"Attempts": "3"}),
                "RetryStrategy.Attempts: invalid type: string \"3\"",
            ),
            (
                "Timeout",
                json!({"AttemptDurationSeconds": "120"}),
                "Timeout.AttemptDurationSeconds: invalid type",
            ),
            (
                "ContainerOverrides",
                json!({"ResourceRequirements": [{"Type": "MEMORY", "Value": 1024}]}),
                "ContainerOverrides.ResourceRequirements[0].Value: invalid type",
            ),
            (
                "ContainerOverrides",
                json!({"Secrets": []}),
                "ContainerOverrides.Secrets: unknown field `Secrets`",
            ),
        ];
        for (field, value, expected) in cases {
            let err = parse(&with(field, value)).unwrap_err();
            let message =
                err.message.strip_prefix("Error executing request, Exception : ").unwrap();
            assert!(message.starts_with(expected), "{message}");
        }
        let parsed = parse(&with("RetryStrategy", json!({"Attempts": 3}))).unwrap();
        assert_eq!(parsed.retry.unwrap().attempts, 3);
    }

    #[test]
    fn payload_limit_names_the_size() {
        let err = parse(&with("Parameters", json!({"p": "x".repeat(47 * 1024)}))).unwrap_err();
        assert!(
            err.message.contains("Job size must be less than 30 KiB, got 48 KiB"),
            "{}",
            err.message
        );
    }

    #[test]
    fn sequential_needs_no_job_id() {
        let parsed = parse(&with("DependsOn", json!([{"Type": "SEQUENTIAL"}]))).unwrap();
        assert_eq!(parsed.depends_on[0].job_id, None);
    }
}
