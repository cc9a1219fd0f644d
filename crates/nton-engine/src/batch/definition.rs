//! The local Batch's configuration from the template: its job queues (with the vCPU ceiling of
//! their compute environments and their `JobStateTimeLimitActions`) and its container job
//! definitions, each bound to the workspace binary its image names. The Batch shapes in them
//! are read by `shapes.rs` in CloudFormation's form ([`TemplateForm`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::shapes::{
    self, RawContainerProperties, RawRetryStrategy, RawTimeout, Resources, TemplateForm,
};
use super::{JobDefinitionSpec, QueueSpec, RetryStrategy, StateTimeLimit};
use crate::template::{LocalContext, Template};

/// Why a job definition cannot run locally.
#[derive(Debug, PartialEq, Eq)]
pub enum DefinitionError {
    /// The template says something the local Batch cannot take.
    Invalid(String),
    /// The binary its image names is not built (an environment problem, not the template's).
    MissingBinary(String),
}

impl From<String> for DefinitionError {
    fn from(message: String) -> Self {
        DefinitionError::Invalid(message)
    }
}

/// The job queues the template creates, with the vCPU ceiling of their compute environments
/// and their `JobStateTimeLimitActions`.
pub fn read_queues(
    template: &Template,
    ctx: &LocalContext,
) -> Result<Vec<(QueueSpec, Vec<StateTimeLimit>)>, String> {
    let mut queues = Vec::new();
    for (logical_id, properties) in
        template.created_resources("AWS::Batch::JobQueue", ctx).map_err(|e| e.to_string())?
    {
        let logical_id = logical_id.as_str();
        let arn = scalar_text(
            &template.resolve(&json!({"Ref": logical_id}), ctx).map_err(|e| e.to_string())?,
        );
        let name = properties["JobQueueName"].as_str().unwrap_or(logical_id).to_string();
        let mut max_vcpus = 0.0;
        let mut compute_environment = String::new();
        for entry in properties["ComputeEnvironmentOrder"].as_array().into_iter().flatten() {
            let ce_arn = scalar_text(&entry["ComputeEnvironment"]);
            let ce_id = template.logical_id_for_arn(&ce_arn).ok_or_else(|| {
                format!(
                    "job queue {logical_id}: compute environment {ce_arn} is not in the template"
                )
            })?;
            let ce = template.resolved_properties(ce_id, ctx).map_err(|e| e.to_string())?;
            if compute_environment.is_empty() {
                compute_environment =
                    ce["ComputeEnvironmentName"].as_str().unwrap_or(ce_id).to_string();
            }
            // An unmanaged environment has no ceiling of its own: the machine's is the limit.
            max_vcpus += number_of(&ce["ComputeResources"]["MaxvCpus"]).unwrap_or(f64::MAX / 4.0);
        }
        let time_limits = properties["JobStateTimeLimitActions"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, entry)| {
                StateTimeLimit::from_template(entry).map_err(|e| {
                    format!("job queue {logical_id}: JobStateTimeLimitActions[{i}].{e}")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        queues.push((QueueSpec { arn, name, max_vcpus, compute_environment }, time_limits));
    }
    Ok(queues)
}

/// The container job definitions the template creates, each bound to the workspace binary its
/// image names (in `bin_dir`), with `env_overrides` over the environment the template gives.
pub fn read_job_definitions(
    template: &Template,
    ctx: &LocalContext,
    bin_dir: &Path,
    env_overrides: &BTreeMap<String, String>,
) -> Result<Vec<JobDefinitionSpec>, DefinitionError> {
    let mut definitions = Vec::new();
    for (logical_id, properties) in
        template.created_resources("AWS::Batch::JobDefinition", ctx).map_err(|e| e.to_string())?
    {
        let arn = scalar_text(
            &template.resolve(&json!({"Ref": logical_id}), ctx).map_err(|e| e.to_string())?,
        );
        definitions.push(job_definition(&logical_id, &properties, arn, bin_dir, env_overrides)?);
    }
    Ok(definitions)
}

/// One job definition's resolved `Properties`.
fn job_definition(
    logical_id: &str,
    properties: &Value,
    arn: String,
    bin_dir: &Path,
    env_overrides: &BTreeMap<String, String>,
) -> Result<JobDefinitionSpec, DefinitionError> {
    let at = |field: &str| format!("job definition {logical_id}: {field}");
    let container =
        properties.get("ContainerProperties").filter(|c| c.is_object()).ok_or_else(|| {
            format!(
                "{}: only container job definitions run locally (no ContainerProperties)",
                at("Type")
            )
        })?;
    let container: RawContainerProperties<TemplateForm> =
        shapes::read(container, &at("ContainerProperties"))?;
    let image = container
        .image
        .as_ref()
        .map(|image| image.0.as_str())
        .ok_or_else(|| format!("{} is missing", at("ContainerProperties.Image")))?;
    let binary = crate::local::image_binary(image);
    let program = bin_dir.join(binary);
    if !program.is_file() {
        return Err(DefinitionError::MissingBinary(format!(
            "{}: image {image} runs the workspace binary {binary}, not found at {} \
             (build it: cargo build --bins, or point --bin-dir at it)",
            at("ContainerProperties.Image"),
            program.display()
        )));
    }
    let mut environment: BTreeMap<String, String> = container
        .environment
        .iter()
        .map(|pair| (pair.name.0.clone(), pair.value.0.clone()))
        .collect();
    environment.extend(env_overrides.clone());
    // The legacy Vcpus/Memory, then ResourceRequirements over them; AWS's defaults otherwise.
    let legacy = Resources {
        vcpus: container.vcpus.map(|v| u64::from(v) as f64),
        memory_mib: container.memory.map(u64::from),
    };
    let resources = legacy.require(
        &container.resource_requirements,
        &at("ContainerProperties.ResourceRequirements"),
    )?;
    let retry = match properties.get("RetryStrategy") {
        None | Some(Value::Null) => RetryStrategy::default(),
        Some(retry) => shapes::read::<RawRetryStrategy<TemplateForm>>(retry, &at("RetryStrategy"))?
            .validate(&at("RetryStrategy"))?,
    };
    let attempt_timeout = match properties.get("Timeout") {
        None | Some(Value::Null) => None,
        Some(timeout) => shapes::read::<RawTimeout<TemplateForm>>(timeout, &at("Timeout"))?
            .attempt_duration_seconds
            // The engine may give any duration here (a test's short one, say); AWS's minimum
            // of 60 s is held to on submissions.
            .map(|seconds| Duration::from_secs(u64::from(seconds).max(1))),
    };
    let parameters = properties["Parameters"]
        .as_object()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), scalar_text(v))).collect())
        .unwrap_or_default();
    Ok(JobDefinitionSpec {
        arn,
        name: properties["JobDefinitionName"].as_str().unwrap_or(logical_id).to_string(),
        program,
        command: container.command.into_iter().map(|arg| arg.0).collect(),
        environment,
        parameters,
        vcpus: resources.vcpus.unwrap_or(1.0),
        memory_mib: resources.memory_mib.unwrap_or(2048),
        retry,
        attempt_timeout,
    })
}

/// A scalar as the text CloudFormation would pass (numbers and booleans as written).
pub fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A number CloudFormation may hand over as a number or as a string ("1", "0.5").
pub fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::RetryAction;

    fn definition(properties: Value) -> Result<JobDefinitionSpec, DefinitionError> {
        // Any existing file stands in for the binary: the test binary itself.
        let exe = std::env::current_exe().unwrap();
        let (dir, name) = (exe.parent().unwrap(), exe.file_name().unwrap().to_str().unwrap());
        let mut properties = properties;
        properties["ContainerProperties"]["Image"] = json!(format!("registry/nton/{name}:tag"));
        job_definition("Job", &properties, "arn".into(), dir, &BTreeMap::new())
    }

    #[test]
    fn numbers_come_as_numbers_or_strings() {
        assert_eq!(number_of(&json!(2)), Some(2.0));
        assert_eq!(number_of(&json!("0.5")), Some(0.5));
        assert_eq!(number_of(&json!("x")), None);
        assert_eq!(number_of(&Value::Null), None);
    }

    /// A `Ref` to a Number parameter gives a string (CloudFormation User Guide, Parameters),
    /// which CloudFormation takes for the Integer `Attempts` and `AttemptDurationSeconds`.
    #[test]
    fn a_job_definition_reads_as_cloudformation_takes_it() {
        let spec = definition(json!({
            "ContainerProperties": {
                "Command": ["procure", 3],
                "Environment": [{"Name": "A", "Value": 1}],
                "ResourceRequirements": [{"Type": "VCPU", "Value": "0.5"}, {"Type": "MEMORY", "Value": "1024"}],
                "User": "1000:1000"
            },
            "RetryStrategy": {
                "Attempts": "3",
                "EvaluateOnExit": [{"OnStatusReason": "Host EC2*", "Action": "RETRY"}, {"OnReason": "*", "Action": "EXIT"}]
            },
            "Timeout": {"AttemptDurationSeconds": "120"}
        }))
        .unwrap();
        assert_eq!(spec.command, ["procure", "3"]);
        assert_eq!(spec.environment["A"], "1");
        assert_eq!((spec.vcpus, spec.memory_mib), (0.5, 1024));
        assert_eq!(spec.retry.attempts, 3);
        assert_eq!(spec.retry.evaluate_on_exit[1].action, RetryAction::Exit);
        assert_eq!(spec.attempt_timeout, Some(Duration::from_secs(120)));
        let spec = definition(json!({"ContainerProperties": {}})).unwrap();
        assert_eq!((spec.vcpus, spec.memory_mib, spec.retry.attempts), (1.0, 2048, 1));
    }

    #[test]
    fn bad_job_definitions_name_the_field() {
        let error = |properties: Value| match definition(properties).unwrap_err() {
            DefinitionError::Invalid(message) => message,
            other => panic!("{other:?}"),
        };
        let message = error(json!({"ContainerProperties": {}, "RetryStrategy": {"Attempts": 2,
            "EvaluateOnExit": [{"Action": "MAYBE"}]}}));
        assert_eq!(
            message,
            "job definition Job: RetryStrategy.EvaluateOnExit[0].Action: \"MAYBE\" must be RETRY or EXIT"
        );
        let message = error(json!({"ContainerProperties": {}, "RetryStrategy": {"Attempts": 11}}));
        assert!(message.starts_with("job definition Job: RetryStrategy: "), "{message}");
        let message = error(json!({"ContainerProperties": {"Memory": "lots"}}));
        assert!(
            message.starts_with("job definition Job: ContainerProperties.Memory: invalid value"),
            "{message}"
        );
        let message = error(
            json!({"ContainerProperties": {"ResourceRequirements": [{"Type": "CPU", "Value": "1"}]}}),
        );
        assert_eq!(
            message,
            "job definition Job: ContainerProperties.ResourceRequirements[0].Type: must be VCPU, MEMORY or GPU, got \"CPU\""
        );
        let missing = job_definition(
            "Job",
            &json!({"ContainerProperties": {"Image": "r/nton-nothing:1"}}),
            "arn".into(),
            Path::new("/nonexistent"),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(matches!(missing, DefinitionError::MissingBinary(m) if m.contains("nton-nothing")));
    }
}
