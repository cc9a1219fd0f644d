//! The Batch shapes a job definition and a submission share (`RetryStrategy`, `EvaluateOnExit`,
//! `ResourceRequirement`, `{Name, Value}`, `Timeout`, the container's properties and overrides),
//! read in two stages as `asl/raw.rs -> asl/model.rs` reads the state machine: serde types of the
//! PascalCase JSON first (a wrong type is an error naming its field path, through
//! serde_path_to_error), then the validated values the local Batch runs ([`RetryStrategy`] of
//! `spec.rs`, resources as numbers).
//!
//! The two sides write scalars differently, which the [`Form`] parameter says:
//! - [`TemplateForm`]: `AWS::Batch::JobDefinition` properties as CloudFormation takes them. A
//!   `Ref` to a parameter always gives a string, even of a `Number` parameter ("when you use the
//!   parameter elsewhere in your template (for example, by using the Ref intrinsic function),
//!   the parameter value becomes a string", CloudFormation User Guide, Parameters), and
//!   CloudFormation converts it for an `Integer` property; a number written where the schema
//!   says `String` (`Value: 1024`) is taken as its text. So `Attempts: "3"` is 3 here.
//! - [`ApiForm`]: a `batch:submitJob` Task's parameters, which Step Functions passes to Batch's
//!   `SubmitJob` as JSON: `attempts` and `attemptDurationSeconds` are `Integer` and
//!   `resourceRequirements[].value` a `String` in the Batch API reference, and JSON keeps the
//!   difference, so `"Attempts": "3"` is refused, as a number for `Value` is.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::Value;

use super::spec::{self, RetryAction};

/// How one side writes integers and strings.
pub trait Form: 'static {
    type Integer: DeserializeOwned + Copy + Into<u64> + fmt::Debug;
    type Text: DeserializeOwned + AsRef<str> + fmt::Debug;
}

/// A submission's JSON: integers are JSON numbers, strings JSON strings.
#[derive(Debug)]
pub enum ApiForm {}

impl Form for ApiForm {
    type Integer = u64;
    type Text = String;
}

/// A template's resolved properties: an integer may be a string of digits, a string may be
/// written as a number or a boolean.
#[derive(Debug)]
pub enum TemplateForm {}

impl Form for TemplateForm {
    type Integer = TemplateInteger;
    type Text = TemplateText;
}

/// An integer as CloudFormation takes it: a JSON number or a string holding one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateInteger(pub u64);

impl From<TemplateInteger> for u64 {
    fn from(value: TemplateInteger) -> u64 {
        value.0
    }
}

impl<'de> Deserialize<'de> for TemplateInteger {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntegerVisitor;
        impl Visitor<'_> for IntegerVisitor {
            type Value = TemplateInteger;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer, or a string holding one")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(TemplateInteger(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.trim().parse().map(TemplateInteger).map_err(|_| {
                    E::invalid_value(de::Unexpected::Str(v), &"a non-negative integer")
                })
            }
        }
        deserializer.deserialize_any(IntegerVisitor)
    }
}

/// A string as CloudFormation takes it: a number or boolean is its text (`1024`, `true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateText(pub String);

impl AsRef<str> for TemplateText {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TemplateText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Ok(TemplateText(text)),
            scalar @ (Value::Number(_) | Value::Bool(_)) => Ok(TemplateText(scalar.to_string())),
            other => Err(de::Error::invalid_type(unexpected(&other), &"a string")),
        }
    }
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Number(_) => de::Unexpected::Other("a number"),
    }
}

/// `RetryStrategy`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, bound = "")]
pub struct RawRetryStrategy<F: Form> {
    pub attempts: Option<F::Integer>,
    #[serde(default)]
    pub evaluate_on_exit: Vec<RawEvaluateOnExit<F>>,
}

/// One `EvaluateOnExit` rule.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, bound = "")]
pub struct RawEvaluateOnExit<F: Form> {
    pub action: F::Text,
    pub on_status_reason: Option<F::Text>,
    pub on_reason: Option<F::Text>,
    pub on_exit_code: Option<F::Text>,
}

/// One `ResourceRequirements` entry (`Value` is a string on both sides: "0.25", "2048").
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, bound = "")]
pub struct RawResourceRequirement<F: Form> {
    #[serde(rename = "Type")]
    pub kind: F::Text,
    pub value: F::Text,
}

/// A `{Name, Value}` pair (`Environment`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, bound = "")]
pub struct RawKeyValuePair<F: Form> {
    pub name: F::Text,
    pub value: F::Text,
}

/// `Timeout`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, bound = "")]
pub struct RawTimeout<F: Form> {
    pub attempt_duration_seconds: Option<F::Integer>,
}

/// The part of a job definition's `ContainerProperties` the local Batch runs by; the rest
/// (roles, volumes, users, logging) is AWS's business and is not read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", bound = "")]
pub struct RawContainerProperties<F: Form> {
    pub image: Option<F::Text>,
    #[serde(default)]
    pub command: Vec<F::Text>,
    #[serde(default)]
    pub environment: Vec<RawKeyValuePair<F>>,
    pub vcpus: Option<F::Integer>,
    pub memory: Option<F::Integer>,
    #[serde(default)]
    pub resource_requirements: Vec<RawResourceRequirement<F>>,
}

/// A submission's `ContainerOverrides`: only what Step Functions passes on for a container job.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, bound = "")]
pub struct RawContainerOverrides<F: Form> {
    #[serde(default)]
    pub environment: Vec<RawKeyValuePair<F>>,
    pub command: Option<Vec<F::Text>>,
    #[serde(default)]
    pub resource_requirements: Vec<RawResourceRequirement<F>>,
    pub vcpus: Option<f64>,
    pub memory: Option<F::Integer>,
    /// Accepted and ignored: this machine is the only instance.
    pub instance_type: Option<F::Text>,
}

/// Reads a raw shape from JSON; a wrong type or an unknown field is an error naming its field
/// path under `at` (`RetryStrategy.Attempts: invalid type: ...`).
pub fn read<T: DeserializeOwned>(value: &Value, at: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match path.as_str() {
            "." => format!("{at}: {inner}"),
            path => format!("{at}.{path}: {inner}"),
        }
    })
}

impl<F: Form> RawRetryStrategy<F> {
    /// The validated strategy: AWS's limits checked, actions parsed. `at` names the field in
    /// errors (`RetryStrategy`).
    pub fn validate(self, at: &str) -> Result<spec::RetryStrategy, String> {
        let attempts = match self.attempts {
            None => 1,
            Some(attempts) => u32::try_from(attempts.into())
                .map_err(|_| format!("{at}.Attempts: {attempts:?} is out of range"))?,
        };
        let evaluate_on_exit = self
            .evaluate_on_exit
            .into_iter()
            .enumerate()
            .map(|(i, rule)| {
                let action = rule.action.as_ref();
                let action = RetryAction::parse(action).ok_or_else(|| {
                    format!("{at}.EvaluateOnExit[{i}].Action: {action:?} must be RETRY or EXIT")
                })?;
                let text = |field: Option<F::Text>| field.map(|t| t.as_ref().to_string());
                Ok(spec::EvaluateOnExit {
                    on_status_reason: text(rule.on_status_reason),
                    on_reason: text(rule.on_reason),
                    on_exit_code: text(rule.on_exit_code),
                    action,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let strategy = spec::RetryStrategy { attempts, evaluate_on_exit };
        strategy.validate().map_err(|error| format!("{at}: {}", error.message))?;
        Ok(strategy)
    }
}

/// What `ResourceRequirements` asks for, read over the legacy `Vcpus`/`Memory` it overrides.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Resources {
    pub vcpus: Option<f64>,
    pub memory_mib: Option<u64>,
}

impl Resources {
    /// Applies `ResourceRequirements` (`at` names the list in errors): VCPU a positive number
    /// (fractions for Fargate), MEMORY whole MiB, GPU accepted and ignored (this machine has
    /// none to give), any other type refused, as AWS refuses it.
    pub fn require<F: Form>(
        mut self,
        requirements: &[RawResourceRequirement<F>],
        at: &str,
    ) -> Result<Resources, String> {
        for (i, requirement) in requirements.iter().enumerate() {
            let amount = requirement.value.as_ref().trim();
            let field = format!("{at}[{i}].Value");
            match requirement.kind.as_ref() {
                "VCPU" => {
                    let vcpus = amount.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0);
                    self.vcpus = Some(vcpus.ok_or_else(|| {
                        format!("{field}: VCPU must be a positive number, got {amount:?}")
                    })?);
                }
                "MEMORY" => {
                    self.memory_mib = Some(amount.parse().map_err(|_| {
                        format!("{field}: MEMORY must be a whole number of MiB, got {amount:?}")
                    })?);
                }
                "GPU" => {}
                other => {
                    return Err(format!(
                        "{at}[{i}].Type: must be VCPU, MEMORY or GPU, got {other:?}"
                    ));
                }
            }
        }
        Ok(self)
    }
}

/// Every object key with its first letter upper-cased, at every depth: Step Functions hands a
/// service's answer on with PascalCase keys (`JobId`, `Status`, ...), whatever the API's own
/// casing (`jobId`).
pub fn pascal_case_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let mut chars = key.chars();
                    let key = chars
                        .next()
                        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default();
                    (key, pascal_case_keys(value))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(pascal_case_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn retry<F: Form>(value: Value) -> Result<spec::RetryStrategy, String> {
        read::<RawRetryStrategy<F>>(&value, "RetryStrategy")?.validate("RetryStrategy")
    }

    /// CloudFormation: `Attempts` is an `Integer`, and a `Ref` to a parameter gives a string,
    /// which CloudFormation converts (User Guide, Parameters: "the parameter value becomes a
    /// string"). The local reading of a template takes both.
    #[test]
    fn a_template_takes_integers_as_numbers_or_strings() {
        assert_eq!(retry::<TemplateForm>(json!({"Attempts": 3})).unwrap().attempts, 3);
        assert_eq!(retry::<TemplateForm>(json!({"Attempts": "3"})).unwrap().attempts, 3);
        let error = retry::<TemplateForm>(json!({"Attempts": "three"})).unwrap_err();
        assert!(
            error.starts_with("RetryStrategy.Attempts: invalid value: string \"three\""),
            "{error}"
        );
        // A number where the schema says String is its text (`OnExitCode: 3`).
        let strategy = retry::<TemplateForm>(json!({
            "Attempts": 2, "EvaluateOnExit": [{"OnExitCode": 3, "Action": "exit"}]
        }))
        .unwrap();
        assert_eq!(strategy.evaluate_on_exit[0].on_exit_code.as_deref(), Some("3"));
        assert_eq!(strategy.evaluate_on_exit[0].action, RetryAction::Exit);
    }

    /// Batch's SubmitJob (what Step Functions' batch:submitJob calls with the Task's JSON):
    /// `retryStrategy.attempts` is an Integer and `evaluateOnExit[].onExitCode` a String (Batch
    /// API reference, RetryStrategy, EvaluateOnExit); JSON keeps the type, so a string for the
    /// count is refused, naming the field.
    #[test]
    fn a_submission_takes_integers_as_numbers_only() {
        assert_eq!(retry::<ApiForm>(json!({"Attempts": 3})).unwrap().attempts, 3);
        let error = retry::<ApiForm>(json!({"Attempts": "3"})).unwrap_err();
        assert!(error.starts_with("RetryStrategy.Attempts: invalid type: string \"3\""), "{error}");
        let error = retry::<ApiForm>(json!({
            "Attempts": 2, "EvaluateOnExit": [{"OnExitCode": 3, "Action": "EXIT"}]
        }))
        .unwrap_err();
        assert!(
            error.starts_with("RetryStrategy.EvaluateOnExit[0].OnExitCode: invalid type"),
            "{error}"
        );
    }

    /// Both sides: AWS's limits (1..=10 attempts, RETRY/EXIT in any case) and no unknown field.
    #[test]
    fn both_sides_check_the_same_limits() {
        let error = retry::<ApiForm>(json!({"Attempts": 11})).unwrap_err();
        assert!(error.starts_with("RetryStrategy: "), "{error}");
        assert!(retry::<TemplateForm>(json!({"Attempts": "11"})).is_err());
        let error =
            retry::<TemplateForm>(json!({"Attempts": 2, "EvaluateOnExit": [{"Action": "MAYBE"}]}))
                .unwrap_err();
        assert_eq!(
            error,
            "RetryStrategy.EvaluateOnExit[0].Action: \"MAYBE\" must be RETRY or EXIT"
        );
        let error = retry::<ApiForm>(json!({"Attempt": 2})).unwrap_err();
        assert!(error.starts_with("RetryStrategy.Attempt: unknown field `Attempt`"), "{error}");
        assert_eq!(retry::<ApiForm>(json!({})).unwrap(), spec::RetryStrategy::default());
    }

    #[test]
    fn resource_requirements_override_vcpus_and_memory() {
        let template: RawContainerProperties<TemplateForm> = read(
            &json!({"Image": "x", "Vcpus": "2", "Memory": 512, "ResourceRequirements": [
                {"Type": "VCPU", "Value": "0.5"}, {"Type": "MEMORY", "Value": 1024}, {"Type": "GPU", "Value": "1"}
            ]}),
            "ContainerProperties",
        )
        .unwrap();
        let legacy = Resources {
            vcpus: template.vcpus.map(|v| u64::from(v) as f64),
            memory_mib: template.memory.map(u64::from),
        };
        assert_eq!(legacy, Resources { vcpus: Some(2.0), memory_mib: Some(512) });
        let resources = legacy.require(&template.resource_requirements, "R").unwrap();
        assert_eq!(resources, Resources { vcpus: Some(0.5), memory_mib: Some(1024) });
        let bad: RawContainerProperties<ApiForm> =
            read(&json!({"ResourceRequirements": [{"Type": "VCPU", "Value": "0"}]}), "C").unwrap();
        let error = Resources::default().require(&bad.resource_requirements, "C.R").unwrap_err();
        assert_eq!(error, "C.R[0].Value: VCPU must be a positive number, got \"0\"");
        // The API's Value is a String: a number is refused there.
        let error = read::<RawContainerOverrides<ApiForm>>(
            &json!({"ResourceRequirements": [{"Type": "MEMORY", "Value": 1024}]}),
            "ContainerOverrides",
        )
        .unwrap_err();
        assert!(
            error.starts_with("ContainerOverrides.ResourceRequirements[0].Value: invalid type"),
            "{error}"
        );
    }

    #[test]
    fn sync_answers_use_pascal_case_keys_at_every_depth() {
        assert_eq!(
            pascal_case_keys(json!({"jobId": "a", "arrayProperties": {"statusSummary": {"x": 1}},
                "attempts": [{"exitCode": 0}]})),
            json!({"JobId": "a", "ArrayProperties": {"StatusSummary": {"X": 1}},
                "Attempts": [{"ExitCode": 0}]})
        );
    }
}
