//! Stage one of loading: the definition as written, read by serde. Nothing here is checked
//! beyond shape (field names and JSON types); [`super::model`] validates and compiles it.
//! Fields named `_x` are accepted because the language allows them, and not used further
//! (comments; `QueryLanguage`, which is checked before deserializing).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `null` and absence differ for `InputPath`, `OutputPath`, `ResultPath` and `Result`:
/// absent is `None`, `null` is `Some(None)`.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawMachine {
    pub comment: Option<String>,
    pub start_at: String,
    pub states: BTreeMap<String, Value>,
    pub timeout_seconds: Option<u64>,
    pub version: Option<String>,
    #[serde(rename = "QueryLanguage")]
    pub _query_language: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawTask {
    pub resource: String,
    #[serde(default, deserialize_with = "nullable")]
    pub input_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub output_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub result_path: Option<Option<String>>,
    pub parameters: Option<Value>,
    pub result_selector: Option<Value>,
    pub retry: Option<Vec<RawRetrier>>,
    pub catch: Option<Vec<RawCatcher>>,
    pub timeout_seconds: Option<u64>,
    pub timeout_seconds_path: Option<String>,
    pub heartbeat_seconds: Option<u64>,
    pub heartbeat_seconds_path: Option<String>,
    pub next: Option<String>,
    pub end: Option<bool>,
    pub assign: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawPass {
    #[serde(default, deserialize_with = "nullable")]
    pub input_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub output_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub result_path: Option<Option<String>>,
    pub parameters: Option<Value>,
    #[serde(default, deserialize_with = "nullable")]
    pub result: Option<Option<Value>>,
    pub next: Option<String>,
    pub end: Option<bool>,
    pub assign: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawWait {
    #[serde(default, deserialize_with = "nullable")]
    pub input_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub output_path: Option<Option<String>>,
    pub seconds: Option<u64>,
    pub seconds_path: Option<String>,
    pub timestamp: Option<String>,
    pub timestamp_path: Option<String>,
    pub next: Option<String>,
    pub end: Option<bool>,
    pub assign: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawChoice {
    #[serde(default, deserialize_with = "nullable")]
    pub input_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub output_path: Option<Option<String>>,
    pub choices: Vec<RawChoiceRule>,
    pub default: Option<String>,
    pub assign: Option<Value>,
}

/// A choice rule: a boolean combination (`And`/`Or`/`Not`) or a data test (`Variable` and one
/// comparison operator). The operators are many and uniform, so they are collected here by
/// name and recognised by [`super::choice`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawChoiceRule {
    pub variable: Option<String>,
    pub next: Option<String>,
    #[serde(rename = "Comment")]
    pub _comment: Option<String>,
    pub and: Option<Vec<RawChoiceRule>>,
    pub or: Option<Vec<RawChoiceRule>>,
    pub not: Option<Box<RawChoiceRule>>,
    pub assign: Option<Value>,
    #[serde(flatten)]
    pub operators: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawSucceed {
    #[serde(default, deserialize_with = "nullable")]
    pub input_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub output_path: Option<Option<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawFail {
    pub error: Option<String>,
    pub cause: Option<String>,
    pub error_path: Option<String>,
    pub cause_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawRetrier {
    pub error_equals: Vec<String>,
    #[serde(rename = "Comment")]
    pub _comment: Option<String>,
    pub interval_seconds: Option<u64>,
    pub max_attempts: Option<u64>,
    pub backoff_rate: Option<f64>,
    pub max_delay_seconds: Option<u64>,
    pub jitter_strategy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawCatcher {
    pub error_equals: Vec<String>,
    #[serde(rename = "Comment")]
    pub _comment: Option<String>,
    pub next: String,
    #[serde(default, deserialize_with = "nullable")]
    pub result_path: Option<Option<String>>,
    pub assign: Option<Value>,
}

/// A Parallel branch, or a Map's `ItemProcessor` (`Iterator`): states of their own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawBlock {
    #[serde(rename = "Comment")]
    pub _comment: Option<String>,
    pub start_at: String,
    pub states: BTreeMap<String, Value>,
    /// `ItemProcessor` only: `{"Mode": "INLINE" | "DISTRIBUTED", "ExecutionType": ...}`.
    pub processor_config: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawParallel {
    pub branches: Vec<RawBlock>,
    #[serde(default, deserialize_with = "nullable")]
    pub input_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub output_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub result_path: Option<Option<String>>,
    pub parameters: Option<Value>,
    pub result_selector: Option<Value>,
    pub retry: Option<Vec<RawRetrier>>,
    pub catch: Option<Vec<RawCatcher>>,
    pub assign: Option<Value>,
    pub next: Option<String>,
    pub end: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawMap {
    pub item_processor: Option<RawBlock>,
    /// The name `ItemProcessor` had before 2022.
    pub iterator: Option<RawBlock>,
    pub items_path: Option<String>,
    pub item_selector: Option<Value>,
    /// The name `ItemSelector` had before 2022.
    pub parameters: Option<Value>,
    pub max_concurrency: Option<u64>,
    pub max_concurrency_path: Option<String>,
    /// Distributed Map fields: read again from the state's JSON by `super::distributed`.
    #[serde(rename = "ItemReader")]
    pub _item_reader: Option<Value>,
    #[serde(rename = "ItemBatcher")]
    pub _item_batcher: Option<Value>,
    #[serde(rename = "ResultWriter")]
    pub _result_writer: Option<Value>,
    #[serde(rename = "ToleratedFailurePercentage")]
    pub _tolerated_failure_percentage: Option<Value>,
    #[serde(rename = "ToleratedFailurePercentagePath")]
    pub _tolerated_failure_percentage_path: Option<Value>,
    #[serde(rename = "ToleratedFailureCount")]
    pub _tolerated_failure_count: Option<Value>,
    #[serde(rename = "ToleratedFailureCountPath")]
    pub _tolerated_failure_count_path: Option<Value>,
    #[serde(rename = "Label")]
    pub _label: Option<Value>,
    #[serde(default, deserialize_with = "nullable")]
    pub input_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub output_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub result_path: Option<Option<String>>,
    pub result_selector: Option<Value>,
    pub retry: Option<Vec<RawRetrier>>,
    pub catch: Option<Vec<RawCatcher>>,
    pub assign: Option<Value>,
    pub next: Option<String>,
    pub end: Option<bool>,
}

/// Deserializes one raw type, naming the field that is wrong (`Retry[0].MaxAttempts`).
pub(crate) fn read<T: for<'de> Deserialize<'de>>(
    value: &Value,
) -> Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        (field, e.into_inner().to_string())
    })
}
