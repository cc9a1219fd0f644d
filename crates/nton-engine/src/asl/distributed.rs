//! Distributed Map: a Map state whose `ItemProcessor.ProcessorConfig.Mode` is `DISTRIBUTED`
//! (developer guide, "Using Map state in Distributed mode"). Each item, or each batch of items,
//! runs as a child workflow execution: its own block of states with no variables of the parent
//! ("Passing data between states with variables": a Distributed Map's child workflows cannot
//! reach outer variables). Besides what an inline Map has, it reads its items from S3
//! (`ItemReader`), groups them (`ItemBatcher`), tolerates failed items
//! (`ToleratedFailurePercentage`/`ToleratedFailureCount`, their `Path` forms) and writes its
//! children's results to S3 (`ResultWriter`).
//!
//! This module knows no S3 client: reading and writing an `s3://bucket/key` object goes through
//! [`ObjectStore`], which the engine binding the machine supplies
//! ([`super::TaskExecutor::object_store`]); the local engine maps buckets to directories.
//!
//! Load: [`compile`] validates every field, refusing by name what is not run here (MANIFEST
//! and PARQUET readers, `ReaderConfig.Transformation`, `ItemsPointer`, object versions).
//! Run: [`Run::attempt_distributed_map`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::error::{AslError, StateError, excerpt, names};
use super::interp::{Attempt, BoxFuture, Lane, Run};
use super::model::{self, Block, Kind};
use super::path::{Env, Path, Vars};
use super::payload::Payload;
use super::raw;

/// Error names of Distributed Map failures (developer guide, "Handling errors in Step
/// Functions workflows").
pub(crate) const EXCEED_TOLERATED_FAILURE: &str = "States.ExceedToleratedFailureThreshold";
pub(crate) const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
pub(crate) const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";

/// The cause AWS gives with `States.ExceedToleratedFailureThreshold`.
const EXCEEDED_CAUSE: &str = "The specified tolerated failure threshold was exceeded";

const GET_OBJECT: &str = "arn:aws:states:::s3:getObject";
const LIST_OBJECTS: &str = "arn:aws:states:::s3:listObjectsV2";
const PUT_OBJECT: &str = "arn:aws:states:::s3:putObject";

/// "ItemReader (Map)": MaxItems may be at most 100,000,000.
const MAX_ITEMS_LIMIT: u64 = 100_000_000;
/// "ItemReader (Map)": a CSV header is at most 10 KiB.
const MAX_CSV_HEADER_BYTES: usize = 10 * 1024;
/// "ItemBatcher (Map)": a batch is at most 256 KiB.
const MAX_BATCH_BYTES: u64 = 256 * 1024;
/// "Using Map state in Distributed mode": a Label has at most 40 characters.
const MAX_LABEL: usize = 40;

/// One object of a bucket listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    /// With its double quotes, as S3 gives it (`"\"9a0364b9e99bb480dd25e1f0284c8555\""`).
    pub etag: String,
    /// Seconds since the Unix epoch.
    pub last_modified: i64,
    pub size: u64,
}

/// Where `s3://bucket/key` objects are read and written. The interpreter asks for it only when
/// a Distributed Map reads or writes; an error is a sentence naming the bucket and key.
pub trait ObjectStore: Send + Sync {
    fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String>;
    /// Every object whose key starts with `prefix`, in key order (S3's UTF-8 binary order).
    fn list_objects(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectSummary>, String>;
    fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExecutionType {
    Standard,
    Express,
}

/// A number given in the definition or read from the effective input by a reference path.
#[derive(Debug, Clone)]
pub(crate) enum Amount<T> {
    Fixed(T),
    Path(Path),
}

#[derive(Debug, Clone)]
pub(crate) enum Format {
    Json,
    JsonLines,
    /// `headers: None` reads them from the first row (`CSVHeaderLocation: FIRST_ROW`).
    Csv {
        headers: Option<Vec<String>>,
        delimiter: u8,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    GetObject(Format),
    ListObjects,
}

#[derive(Debug, Clone)]
pub(crate) struct ItemReader {
    pub source: Source,
    pub parameters: Payload,
    pub raw_parameters: Value,
    pub max_items: Option<Amount<u64>>,
}

#[derive(Debug, Clone)]
pub(crate) struct ItemBatcher {
    pub max_items: Option<Amount<u64>>,
    pub max_bytes: Option<Amount<u64>>,
    pub batch_input: Option<Payload>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transformation {
    None,
    Compact,
    Flatten,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputType {
    Json,
    JsonLines,
}

#[derive(Debug, Clone)]
pub(crate) struct ResultWriter {
    /// `Resource` and `Parameters` (`Bucket`, `Prefix`): where the results go; `None` with a
    /// `WriterConfig` alone, whose formatted results become the state's result.
    pub target: Option<(Payload, Value)>,
    pub transformation: Transformation,
    pub output_type: OutputType,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Tolerance {
    pub percentage: Option<Amount<f64>>,
    pub count: Option<Amount<u64>>,
}

/// What a Map state runs in Distributed mode, besides what every Map has.
#[derive(Debug, Clone)]
pub(crate) struct Distributed {
    /// The `Label`, or the state's name: the Map Run's and its children's names.
    pub label: String,
    pub execution_type: ExecutionType,
    pub reader: Option<ItemReader>,
    pub batcher: Option<ItemBatcher>,
    pub writer: Option<ResultWriter>,
    pub tolerance: Tolerance,
}

/// The Distributed Map fields of a Map state, as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawDistributed {
    item_reader: Option<Value>,
    item_batcher: Option<Value>,
    result_writer: Option<Value>,
    tolerated_failure_percentage: Option<Value>,
    tolerated_failure_percentage_path: Option<String>,
    tolerated_failure_count: Option<Value>,
    tolerated_failure_count_path: Option<String>,
    label: Option<String>,
}

/// The fields only a Distributed Map has: an inline Map refuses them at load.
pub(crate) const DISTRIBUTED_FIELDS: &[&str] = &[
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
    "ToleratedFailurePercentage",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCount",
    "ToleratedFailureCountPath",
    "Label",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawItemReader {
    resource: String,
    parameters: Option<Value>,
    reader_config: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReaderConfig {
    #[serde(rename = "InputType")]
    input_type: Option<String>,
    #[serde(rename = "CSVHeaderLocation")]
    csv_header_location: Option<String>,
    #[serde(rename = "CSVHeaders")]
    csv_headers: Option<Vec<String>>,
    #[serde(rename = "CSVDelimiter")]
    csv_delimiter: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<u64>,
    #[serde(rename = "MaxItemsPath")]
    max_items_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawItemBatcher {
    max_items_per_batch: Option<u64>,
    max_items_per_batch_path: Option<String>,
    max_input_bytes_per_batch: Option<u64>,
    max_input_bytes_per_batch_path: Option<String>,
    batch_input: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawResultWriter {
    resource: Option<String>,
    parameters: Option<Value>,
    writer_config: Option<RawWriterConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawWriterConfig {
    transformation: Option<String>,
    output_type: Option<String>,
}

/// ReaderConfig fields Step Functions has that the local engine does not run, with why.
const UNSUPPORTED_READER_FIELDS: &[(&str, &str)] = &[
    (
        "Transformation",
        "LOAD_AND_FLATTEN (reading each listed object) is not run by the local engine",
    ),
    ("ManifestType", "S3 inventory and Athena manifests are not read by the local engine"),
    ("ItemsPointer", "selecting items inside a JSON object is not run by the local engine"),
];

fn read_field<T: for<'de> Deserialize<'de>>(
    state: &str,
    field: &str,
    value: &Value,
) -> Result<T, AslError> {
    if value.get("Arguments").is_some() {
        return Err(AslError::field(
            state,
            format!("{field}.Arguments"),
            "is the JSONata form of Parameters; the local engine's Distributed Map reads Parameters (JSONPath)",
        ));
    }
    raw::read(value).map_err(|(at, message)| {
        let at = match at {
            Some(at) => format!("{field}.{}", at.trim_start_matches('.')),
            None => field.to_string(),
        };
        let message = if message.starts_with("unknown field") {
            "unknown field".to_string()
        } else {
            message
        };
        AslError::field(state, at, message)
    })
}

fn reference(state: &str, field: &str, text: &str) -> Result<Path, AslError> {
    let p = Path::parse(text).map_err(|m| AslError::field(state, field, m))?;
    if !p.is_definite() {
        return Err(AslError::field(
            state,
            field,
            format!("'{text}' must be a reference path (selecting a single value)"),
        ));
    }
    Ok(p)
}

fn amount(
    state: &str,
    (field, fixed): (&str, Option<u64>),
    path: (&str, Option<String>),
    range: (u64, u64),
) -> Result<Option<Amount<u64>>, AslError> {
    match (fixed, path.1) {
        (Some(_), Some(_)) => {
            Err(AslError::field(state, path.0, format!("{field} is set too; use one")))
        }
        (Some(n), None) if !(range.0..=range.1).contains(&n) => Err(AslError::field(
            state,
            field,
            format!("must be {} to {}, got {n}", range.0, range.1),
        )),
        (Some(n), None) => Ok(Some(Amount::Fixed(n))),
        (None, Some(p)) => Ok(Some(Amount::Path(reference(state, path.0, &p)?))),
        (None, None) => Ok(None),
    }
}

/// The `Parameters` of an `ItemReader` or `ResultWriter`: an object whose fields (with or
/// without `.$`) are among `allowed`.
fn s3_parameters(
    state: &str,
    field: &str,
    value: Option<Value>,
    allowed: &[&str],
    required: &[&str],
) -> Result<(Payload, Value), AslError> {
    let at = format!("{field}.Parameters");
    let Some(value) = value else {
        return Err(AslError::field(state, at, "missing: the S3 bucket (and key or prefix)"));
    };
    let Value::Object(map) = &value else {
        return Err(AslError::field(state, at, "must be an object"));
    };
    for key in map.keys() {
        let name = key.strip_suffix(".$").unwrap_or(key);
        if name == "VersionId" {
            return Err(AslError::field(
                state,
                format!("{at}.{key}"),
                "object versions are not kept by the local engine",
            ));
        }
        if !allowed.contains(&name) {
            return Err(AslError::field(
                state,
                format!("{at}.{key}"),
                format!("unknown field (expected {})", allowed.join(", ")),
            ));
        }
    }
    for name in required {
        if !map.contains_key(*name) && !map.contains_key(&format!("{name}.$")) {
            return Err(AslError::field(state, format!("{at}.{name}"), "missing"));
        }
    }
    let payload = Payload::compile(&value, &at).map_err(|(f, m)| AslError::field(state, f, m))?;
    Ok((payload, value))
}

/// Compiles a Distributed Map's fields. `config` is its `ProcessorConfig` (Mode DISTRIBUTED
/// already checked); `fields` is the whole state.
pub(crate) fn compile(
    state: &str,
    processor_field: &str,
    config: &Map<String, Value>,
    fields: &Value,
) -> Result<Distributed, AslError> {
    let at = format!("{processor_field}.ProcessorConfig.ExecutionType");
    // "Using Map state in Distributed mode": a Distributed Map names the type of its child
    // workflow executions.
    let execution_type = match config.get("ExecutionType").map(|v| (v, v.as_str())) {
        Some((_, Some("STANDARD"))) => ExecutionType::Standard,
        Some((_, Some("EXPRESS"))) => ExecutionType::Express,
        Some((other, _)) => {
            return Err(AslError::field(
                state,
                at,
                format!("must be STANDARD or EXPRESS, got {other}"),
            ));
        }
        None => {
            return Err(AslError::field(
                state,
                at,
                "missing: a Distributed Map needs ExecutionType STANDARD or EXPRESS",
            ));
        }
    };
    let r: RawDistributed = serde_json::from_value(fields.clone())
        .map_err(|e| AslError::state(state, e.to_string()))?;
    let label = match r.label {
        Some(label) => {
            check_label(state, &label)?;
            label
        }
        None => state.to_string(),
    };
    let reader = r.item_reader.map(|v| item_reader(state, &v)).transpose()?;
    if reader.is_some() && fields.get("ItemsPath").is_some() {
        return Err(AslError::field(
            state,
            "ItemsPath",
            "ItemReader is set too: the items come from the reader",
        ));
    }
    let batcher = r.item_batcher.map(|v| item_batcher(state, &v)).transpose()?;
    let writer = r.result_writer.map(|v| result_writer(state, &v)).transpose()?;
    let percentage = match (r.tolerated_failure_percentage, r.tolerated_failure_percentage_path) {
        (Some(_), Some(_)) => {
            return Err(AslError::field(
                state,
                "ToleratedFailurePercentagePath",
                "ToleratedFailurePercentage is set too; use one",
            ));
        }
        (Some(v), None) => match v.as_f64() {
            Some(p) if (0.0..=100.0).contains(&p) => Some(Amount::Fixed(p)),
            _ => {
                return Err(AslError::field(
                    state,
                    "ToleratedFailurePercentage",
                    format!("must be a number from 0 to 100, got {v}"),
                ));
            }
        },
        (None, Some(p)) => {
            Some(Amount::Path(reference(state, "ToleratedFailurePercentagePath", &p)?))
        }
        (None, None) => None,
    };
    let count = match (r.tolerated_failure_count, r.tolerated_failure_count_path) {
        (Some(_), Some(_)) => {
            return Err(AslError::field(
                state,
                "ToleratedFailureCountPath",
                "ToleratedFailureCount is set too; use one",
            ));
        }
        (Some(v), None) => match v.as_u64() {
            Some(n) => Some(Amount::Fixed(n)),
            None => {
                return Err(AslError::field(
                    state,
                    "ToleratedFailureCount",
                    format!("must be a non-negative integer, got {v}"),
                ));
            }
        },
        (None, Some(p)) => Some(Amount::Path(reference(state, "ToleratedFailureCountPath", &p)?)),
        (None, None) => None,
    };
    Ok(Distributed {
        label,
        execution_type,
        reader,
        batcher,
        writer,
        tolerance: Tolerance { percentage, count },
    })
}

/// "Using Map state in Distributed mode", Label: up to 40 characters, none of whitespace,
/// brackets, wildcards, the listed punctuation or control characters.
fn check_label(state: &str, label: &str) -> Result<(), AslError> {
    const FORBIDDEN: &str = "<>{}[]?*\"#%\\^|~`$&,;:/";
    if label.is_empty() || label.chars().count() > MAX_LABEL {
        return Err(AslError::field(
            state,
            "Label",
            format!("must be 1 to {MAX_LABEL} characters"),
        ));
    }
    if let Some(c) =
        label.chars().find(|c| c.is_whitespace() || c.is_control() || FORBIDDEN.contains(*c))
    {
        return Err(AslError::field(
            state,
            "Label",
            format!(
                "{c:?} is not allowed (no whitespace, brackets, wildcards, control characters or any of {FORBIDDEN})"
            ),
        ));
    }
    Ok(())
}

fn item_reader(state: &str, value: &Value) -> Result<ItemReader, AslError> {
    let r: RawItemReader = read_field(state, "ItemReader", value)?;
    let config = r.reader_config.unwrap_or_else(|| json!({}));
    if let Value::Object(map) = &config
        && let Some((field, why)) =
            UNSUPPORTED_READER_FIELDS.iter().find(|(f, _)| map.contains_key(*f))
    {
        return Err(AslError::field(state, format!("ItemReader.ReaderConfig.{field}"), *why));
    }
    let c: RawReaderConfig = read_field(state, "ItemReader.ReaderConfig", &config)?;
    let max_items = amount(
        state,
        ("ItemReader.ReaderConfig.MaxItems", c.max_items),
        ("ItemReader.ReaderConfig.MaxItemsPath", c.max_items_path.clone()),
        (0, MAX_ITEMS_LIMIT),
    )?;
    let input_type_at = "ItemReader.ReaderConfig.InputType";
    let (source, allowed, required): (Source, &[&str], &[&str]) = match r.resource.as_str() {
        GET_OBJECT => {
            let format = match c.input_type.as_deref() {
                Some("JSON") => Format::Json,
                Some("JSONL") => Format::JsonLines,
                Some("CSV") => csv_format(state, &c)?,
                Some(other @ ("MANIFEST" | "PARQUET")) => {
                    return Err(AslError::field(
                        state,
                        input_type_at,
                        format!("{other} is not read by the local engine (CSV, JSON or JSONL)"),
                    ));
                }
                Some(other) => {
                    return Err(AslError::field(
                        state,
                        input_type_at,
                        format!("must be CSV, JSON or JSONL, got '{other}'"),
                    ));
                }
                None => {
                    return Err(AslError::field(
                        state,
                        input_type_at,
                        "missing: s3:getObject needs the object's InputType (CSV, JSON or JSONL)",
                    ));
                }
            };
            (Source::GetObject(format), &["Bucket", "Key"], &["Bucket", "Key"])
        }
        LIST_OBJECTS => {
            if let Some(t) = &c.input_type {
                return Err(AslError::field(
                    state,
                    input_type_at,
                    format!("'{t}': s3:listObjectsV2 lists objects and takes no InputType"),
                ));
            }
            (Source::ListObjects, &["Bucket", "Prefix"], &["Bucket"])
        }
        other => {
            return Err(AslError::field(
                state,
                "ItemReader.Resource",
                format!(
                    "'{other}': the local engine reads items with {GET_OBJECT} or {LIST_OBJECTS}"
                ),
            ));
        }
    };
    if !matches!(source, Source::GetObject(Format::Csv { .. }))
        && (c.csv_header_location.is_some() || c.csv_headers.is_some() || c.csv_delimiter.is_some())
    {
        return Err(AslError::field(
            state,
            "ItemReader.ReaderConfig",
            "CSVHeaderLocation, CSVHeaders and CSVDelimiter are for InputType CSV only",
        ));
    }
    let (parameters, raw_parameters) =
        s3_parameters(state, "ItemReader", r.parameters, allowed, required)?;
    Ok(ItemReader { source, parameters, raw_parameters, max_items })
}

/// "ItemReader (Map)": CSVHeaderLocation FIRST_ROW (the first line is the header) or GIVEN
/// (CSVHeaders in the definition); CSVDelimiter COMMA (default), PIPE, SEMICOLON, SPACE or TAB.
fn csv_format(state: &str, c: &RawReaderConfig) -> Result<Format, AslError> {
    let at = "ItemReader.ReaderConfig.CSVHeaderLocation";
    let headers = match (c.csv_header_location.as_deref(), &c.csv_headers) {
        (Some("FIRST_ROW"), None) => None,
        (Some("FIRST_ROW"), Some(_)) => {
            return Err(AslError::field(
                state,
                "ItemReader.ReaderConfig.CSVHeaders",
                "is for CSVHeaderLocation GIVEN; FIRST_ROW reads the header from the file",
            ));
        }
        (Some("GIVEN"), Some(h)) if !h.is_empty() => Some(h.clone()),
        (Some("GIVEN"), _) => {
            return Err(AslError::field(
                state,
                "ItemReader.ReaderConfig.CSVHeaders",
                "missing: CSVHeaderLocation GIVEN needs the column names",
            ));
        }
        (Some(other), _) => {
            return Err(AslError::field(
                state,
                at,
                format!("must be FIRST_ROW or GIVEN, got '{other}'"),
            ));
        }
        (None, _) => {
            return Err(AslError::field(
                state,
                at,
                "missing: InputType CSV needs FIRST_ROW or GIVEN",
            ));
        }
    };
    let delimiter = match c.csv_delimiter.as_deref() {
        None | Some("COMMA") => b',',
        Some("PIPE") => b'|',
        Some("SEMICOLON") => b';',
        Some("SPACE") => b' ',
        Some("TAB") => b'\t',
        Some(other) => {
            return Err(AslError::field(
                state,
                "ItemReader.ReaderConfig.CSVDelimiter",
                format!("must be COMMA, PIPE, SEMICOLON, SPACE or TAB, got '{other}'"),
            ));
        }
    };
    Ok(Format::Csv { headers, delimiter })
}

fn item_batcher(state: &str, value: &Value) -> Result<ItemBatcher, AslError> {
    let r: RawItemBatcher = read_field(state, "ItemBatcher", value)?;
    let max_items = amount(
        state,
        ("ItemBatcher.MaxItemsPerBatch", r.max_items_per_batch),
        ("ItemBatcher.MaxItemsPerBatchPath", r.max_items_per_batch_path),
        (1, MAX_ITEMS_LIMIT),
    )?;
    let max_bytes = amount(
        state,
        ("ItemBatcher.MaxInputBytesPerBatch", r.max_input_bytes_per_batch),
        ("ItemBatcher.MaxInputBytesPerBatchPath", r.max_input_bytes_per_batch_path),
        (1, MAX_BATCH_BYTES),
    )?;
    // "ItemBatcher (Map)": "You must specify one of these values to batch items."
    if max_items.is_none() && max_bytes.is_none() {
        return Err(AslError::field(
            state,
            "ItemBatcher",
            "needs MaxItemsPerBatch(Path) or MaxInputBytesPerBatch(Path)",
        ));
    }
    let batch_input = r
        .batch_input
        .map(|v| {
            Payload::compile(&v, "ItemBatcher.BatchInput")
                .map_err(|(f, m)| AslError::field(state, f, m))
        })
        .transpose()?;
    Ok(ItemBatcher { max_items, max_bytes, batch_input })
}

fn result_writer(state: &str, value: &Value) -> Result<ResultWriter, AslError> {
    let r: RawResultWriter = read_field(state, "ResultWriter", value)?;
    // "ResultWriter (Map)", required field combinations: WriterConfig alone, Resource and
    // Parameters, or all three.
    let target = match (r.resource, r.parameters) {
        (None, None) if r.writer_config.is_none() => {
            return Err(AslError::field(
                state,
                "ResultWriter",
                "cannot be empty: give WriterConfig, or Resource and Parameters, or all three",
            ));
        }
        (None, None) => None,
        (Some(resource), parameters) => {
            if resource != PUT_OBJECT {
                return Err(AslError::field(
                    state,
                    "ResultWriter.Resource",
                    format!("'{resource}': results are written with {PUT_OBJECT}"),
                ));
            }
            Some(s3_parameters(
                state,
                "ResultWriter",
                parameters,
                &["Bucket", "Prefix"],
                &["Bucket"],
            )?)
        }
        (None, Some(_)) => {
            return Err(AslError::field(
                state,
                "ResultWriter.Resource",
                format!("missing: Parameters needs Resource {PUT_OBJECT}"),
            ));
        }
    };
    let config =
        r.writer_config.unwrap_or(RawWriterConfig { transformation: None, output_type: None });
    // NONE is the default when exporting to S3 without a WriterConfig; COMPACT without a
    // ResultWriter (which has no ResultWriter value here at all).
    let transformation = match config.transformation.as_deref() {
        None | Some("NONE") => Transformation::None,
        Some("COMPACT") => Transformation::Compact,
        Some("FLATTEN") => Transformation::Flatten,
        Some(other) => {
            return Err(AslError::field(
                state,
                "ResultWriter.WriterConfig.Transformation",
                format!("must be NONE, COMPACT or FLATTEN, got '{other}'"),
            ));
        }
    };
    let output_type = match config.output_type.as_deref() {
        None | Some("JSON") => OutputType::Json,
        Some("JSONL") => OutputType::JsonLines,
        Some(other) => {
            return Err(AslError::field(
                state,
                "ResultWriter.WriterConfig.OutputType",
                format!("must be JSON or JSONL, got '{other}'"),
            ));
        }
    };
    Ok(ResultWriter { target, transformation, output_type })
}

/// EXPRESS children run only request-response integrations: neither `.sync` nor
/// `.waitForTaskToken` (developer guide, "Choosing workflow type in Step Functions", service
/// integration patterns). Refused at load, naming the nested state.
pub(crate) fn check_children(
    state: &str,
    dist: &Distributed,
    processor: &Block,
) -> Result<(), AslError> {
    if dist.execution_type != ExecutionType::Express {
        return Ok(());
    }
    fn walk(state: &str, block: &Block) -> Result<(), AslError> {
        for (name, inner) in &block.states {
            if let Kind::Task(t) = &inner.kind
                && (t.resource.ends_with(".sync") || t.resource.contains(".sync:"))
            {
                return Err(AslError::field(
                    name,
                    "Resource",
                    format!(
                        "{}: a child of the EXPRESS Distributed Map {state} cannot wait for a job (.sync); use ExecutionType STANDARD",
                        t.resource
                    ),
                ));
            }
            for b in inner.blocks() {
                walk(state, b)?;
            }
        }
        Ok(())
    }
    walk(state, processor)
}

/// A bucket named in the definition, with the state and field that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUse {
    pub state: String,
    pub field: &'static str,
    pub bucket: String,
}

/// Every bucket written literally in a Distributed Map's `ItemReader` or `ResultWriter`
/// (`"Bucket": "name"`; a `Bucket.$` is known only at run time), nested blocks included.
pub(crate) fn static_buckets(block: &Block, out: &mut Vec<BucketUse>) {
    for name in &block.order {
        let state = &block.states[name];
        if let Kind::Map(map) = &state.kind
            && let Some(d) = &map.distributed
        {
            let mut add = |field, parameters: &Value| {
                if let Some(bucket) = parameters.get("Bucket").and_then(Value::as_str) {
                    out.push(BucketUse { state: name.clone(), field, bucket: bucket.to_string() });
                }
            };
            if let Some(r) = &d.reader {
                add("ItemReader.Parameters.Bucket", &r.raw_parameters);
            }
            if let Some((_, raw)) = d.writer.as_ref().and_then(|w| w.target.as_ref()) {
                add("ResultWriter.Parameters.Bucket", raw);
            }
        }
        for inner in state.blocks() {
            static_buckets(inner, out);
        }
    }
}

fn reader_error(message: impl Into<String>) -> StateError {
    StateError::new(ITEM_READER_FAILED, message)
}

fn writer_error(message: impl Into<String>) -> StateError {
    StateError::new(RESULT_WRITER_FAILED, message)
}

fn resolve_u64(a: &Amount<u64>, env: &Env<'_>, what: &str) -> Result<u64, StateError> {
    match a {
        Amount::Fixed(n) => Ok(*n),
        Amount::Path(p) => {
            let v = p.read(env);
            v.as_ref().and_then(Value::as_u64).ok_or_else(|| {
                StateError::runtime(format!(
                    "The {what} '{}' must select a non-negative integer, found {}",
                    p.text(),
                    v.as_ref().map_or("nothing".to_string(), excerpt)
                ))
            })
        }
    }
}

/// Reads `Bucket` (and `Key` or `Prefix`) from evaluated parameters.
fn location<'v>(params: &'v Value, key: &str) -> Result<Option<&'v str>, String> {
    match params.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("{key} must be a string, found {}", excerpt(other))),
    }
}

/// The items an `ItemReader` reads (developer guide, "ItemReader (Map)").
fn read_items(
    reader: &ItemReader,
    env: &Env<'_>,
    store: Option<&dyn ObjectStore>,
) -> Result<Vec<Value>, StateError> {
    let params = reader.parameters.eval(env)?;
    let bucket = location(&params, "Bucket").map_err(reader_error)?.unwrap_or_default();
    let store = store.ok_or_else(|| {
        reader_error(format!("s3://{bucket}: no S3 objects can be read by this engine"))
    })?;
    let mut items = match &reader.source {
        Source::ListObjects => {
            let prefix = location(&params, "Prefix").map_err(reader_error)?.unwrap_or("");
            // Each item as the guide shows it: Etag, Key, LastModified (epoch seconds), Size,
            // StorageClass.
            store
                .list_objects(bucket, prefix)
                .map_err(reader_error)?
                .into_iter()
                .map(|o| {
                    json!({
                        "Etag": o.etag,
                        "Key": o.key,
                        "LastModified": o.last_modified,
                        "Size": o.size,
                        "StorageClass": "STANDARD",
                    })
                })
                .collect()
        }
        Source::GetObject(format) => {
            let key = location(&params, "Key").map_err(reader_error)?.unwrap_or_default();
            let body = store.get_object(bucket, key).map_err(reader_error)?;
            parse_object(format, &body)
                .map_err(|m| reader_error(format!("s3://{bucket}/{key}: {m}")))?
        }
    };
    if let Some(max) = &reader.max_items {
        let max = resolve_u64(max, env, "MaxItemsPath")?;
        // "ItemReader (Map)", MaxItems: 0 (the default) reads every item.
        if max > 0 {
            items.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        }
    }
    Ok(items)
}

/// Parses an object's bytes into items. CSV follows "How Step Functions parses input CSV
/// files": every field is a string; quoted fields may hold delimiters, newlines and doubled
/// quotes; a short row gets empty strings for its missing fields and a long row loses its extra
/// ones. The `csv` crate reads RFC 4180 quoting, which those rules are.
pub(crate) fn parse_object(format: &Format, body: &[u8]) -> Result<Vec<Value>, String> {
    let text = || std::str::from_utf8(body).map_err(|e| format!("not UTF-8 text: {e}"));
    match format {
        Format::Json => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) => Ok(items),
            Ok(other) => Err(format!("the object is not a JSON array: {}", excerpt(&other))),
            Err(e) => Err(format!("the object is not JSON: {e}")),
        },
        Format::JsonLines => text()?
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| format!("line {} is not JSON: {e}", i + 1))
            })
            .collect(),
        Format::Csv { headers, delimiter } => {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(*delimiter)
                .has_headers(false)
                .flexible(true)
                .from_reader(text()?.as_bytes());
            let mut records = reader.records();
            let headers: Vec<String> = match headers {
                Some(given) => given.clone(),
                None => match records.next() {
                    Some(first) => first
                        .map_err(|e| format!("the header row: {e}"))?
                        .iter()
                        .map(str::to_string)
                        .collect(),
                    None => return Ok(Vec::new()),
                },
            };
            // "ItemReader (Map)": Step Functions supports CSV headers of up to 10 KiB.
            let header_bytes = headers.iter().map(|h| h.len() + 1).sum::<usize>();
            if header_bytes > MAX_CSV_HEADER_BYTES {
                return Err(format!(
                    "the CSV header has {header_bytes} bytes, more than the {MAX_CSV_HEADER_BYTES} Step Functions reads"
                ));
            }
            records
                .map(|record| {
                    let record = record.map_err(|e| format!("CSV: {e}"))?;
                    let mut item = Map::new();
                    for (i, name) in headers.iter().enumerate() {
                        item.insert(name.clone(), json!(record.get(i).unwrap_or("")));
                    }
                    Ok(Value::Object(item))
                })
                .collect()
        }
    }
}

/// Groups items into child inputs `{"Items": [...], "BatchInput": ...}` (developer guide,
/// "ItemBatcher (Map)"): at most MaxItemsPerBatch items, and no batch over
/// MaxInputBytesPerBatch (256 KiB when only a count is given). Returns each batch's input
/// with its number of items.
fn batch(
    batcher: &ItemBatcher,
    items: Vec<Value>,
    env: &Env<'_>,
) -> Result<Vec<(Value, u64)>, StateError> {
    let max_items = batcher
        .max_items
        .as_ref()
        .map(|a| resolve_u64(a, env, "MaxItemsPerBatchPath"))
        .transpose()?
        .unwrap_or(u64::MAX)
        .max(1);
    let max_bytes = batcher
        .max_bytes
        .as_ref()
        .map(|a| resolve_u64(a, env, "MaxInputBytesPerBatchPath"))
        .transpose()?
        .unwrap_or(MAX_BATCH_BYTES)
        .min(MAX_BATCH_BYTES);
    let batch_input = batcher.batch_input.as_ref().map(|p| p.eval(env)).transpose()?;
    let wrap = |items: Vec<Value>| {
        let mut input = Map::new();
        if let Some(b) = &batch_input {
            input.insert("BatchInput".to_string(), b.clone());
        }
        input.insert("Items".to_string(), Value::Array(items));
        Value::Object(input)
    };
    let size = |items: &[Value]| wrap(items.to_vec()).to_string().len() as u64;
    let mut batches = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    for item in items {
        current.push(item);
        if current.len() > 1 && size(&current) > max_bytes {
            let item = current.pop().expect("pushed above");
            let n = current.len() as u64;
            batches.push((wrap(std::mem::take(&mut current)), n));
            current.push(item);
        }
        if size(&current) > max_bytes {
            // The guide does not say what an item too big for any batch does; it is over the
            // limit the batcher promises, so it fails as data over a limit does.
            return Err(StateError::new(
                names::DATA_LIMIT,
                format!(
                    "an item alone makes a batch of {} bytes, more than MaxInputBytesPerBatch ({max_bytes})",
                    size(&current)
                ),
            ));
        }
        if current.len() as u64 >= max_items {
            let n = current.len() as u64;
            batches.push((wrap(std::mem::take(&mut current)), n));
        }
    }
    if !current.is_empty() {
        let n = current.len() as u64;
        batches.push((wrap(current), n));
    }
    Ok(batches)
}

/// The items `ItemsPath` selects from the effective input (no `ItemReader`), as for an inline
/// Map.
fn items_at(
    map: &model::MapState,
    effective: &Value,
    env: &Env<'_>,
) -> Result<Vec<Value>, StateError> {
    let items = match &map.items_path {
        None => effective.clone(),
        Some(p) => p.read(env).ok_or_else(|| {
            StateError::runtime(format!(
                "Invalid path '{}': The ItemsPath '{}' could not be found in the input '{}'",
                p.text(),
                p.text(),
                excerpt(&p.source(env))
            ))
        })?,
    };
    match items {
        Value::Array(items) => Ok(items),
        other => Err(StateError::runtime(format!(
            "The Map state's items must be a JSON array, found {}",
            excerpt(&other)
        ))),
    }
}

/// Children running at once: `MaxConcurrency` (or its path); 0 or none is no limit here (AWS
/// runs up to 10,000 at once).
fn concurrency(map: &model::MapState, env: &Env<'_>, children: usize) -> Result<usize, StateError> {
    let n = match &map.concurrency {
        model::Concurrency::Fixed(n) => *n,
        model::Concurrency::Path(p) => {
            resolve_u64(&Amount::Path(p.clone()), env, "MaxConcurrencyPath")?
        }
    };
    Ok(match usize::try_from(n) {
        Ok(0) | Err(_) => children.max(1),
        Ok(n) => n,
    })
}

/// The failure threshold, resolved over the effective input.
struct Threshold {
    percentage: f64,
    count: Option<u64>,
}

impl Threshold {
    fn resolve(t: &Tolerance, env: &Env<'_>) -> Result<Threshold, StateError> {
        let percentage = match &t.percentage {
            None => 0.0,
            Some(Amount::Fixed(p)) => *p,
            Some(Amount::Path(p)) => {
                let v = p.read(env);
                v.as_ref().and_then(Value::as_f64).filter(|p| (0.0..=100.0).contains(p)).ok_or_else(
                    || {
                        StateError::runtime(format!(
                            "The ToleratedFailurePercentagePath '{}' must select a number from 0 to 100, found {}",
                            p.text(),
                            v.as_ref().map_or("nothing".to_string(), excerpt)
                        ))
                    },
                )?
            }
        };
        let count = t
            .count
            .as_ref()
            .map(|c| resolve_u64(c, env, "ToleratedFailureCountPath"))
            .transpose()?;
        // With a count alone, the percentage does not also apply at its default of zero.
        let percentage = if count.is_some() && t.percentage.is_none() { 100.0 } else { percentage };
        Ok(Threshold { percentage, count })
    }

    /// "Tolerated failure threshold": the Map Run fails when the failed (or timed-out) items
    /// exceed either the count or the percentage of all items.
    fn exceeded(&self, failed: u64, total: u64) -> bool {
        if self.count.is_some_and(|c| failed > c) {
            return true;
        }
        total > 0 && (failed as f64) * 100.0 / (total as f64) > self.percentage
    }
}

/// How one child workflow execution ended.
enum Child {
    Succeeded {
        name: String,
        input: Value,
        output: Value,
        started: OffsetDateTime,
        stopped: OffsetDateTime,
    },
    Failed {
        name: String,
        input: Value,
        error: String,
        cause: String,
        started: OffsetDateTime,
        stopped: OffsetDateTime,
    },
    /// Not started: the threshold was exceeded first.
    Pending { input: Value },
}

fn iso(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
}

/// The names of a Map Run and its children: `…:mapRun:<machine>/<label>:<id>`, children
/// `…:execution:<machine>/<label>:<id>` of state machine `…:stateMachine:<machine>/<label>`.
struct MapRun {
    id: String,
    arn: String,
    child_machine: String,
    child_prefix: String,
}

impl MapRun {
    /// Express children's ARNs say `express` where Standard ones say `execution`.
    fn new(machine_arn: &str, label: &str, execution_type: ExecutionType) -> MapRun {
        let id = uuid::Uuid::new_v4().to_string();
        let kind = match execution_type {
            ExecutionType::Standard => ":execution:",
            ExecutionType::Express => ":express:",
        };
        MapRun {
            arn: format!("{}/{label}:{id}", machine_arn.replacen(":stateMachine:", ":mapRun:", 1)),
            child_machine: format!("{machine_arn}/{label}"),
            child_prefix: format!("{}/{label}", machine_arn.replacen(":stateMachine:", kind, 1)),
            id,
        }
    }
}

/// A child's context object: the parent's, with the child's own execution and state machine.
fn child_context(
    parent: &Value,
    run: &MapRun,
    name: &str,
    input: &Value,
    start: OffsetDateTime,
) -> Value {
    let mut context = parent.clone();
    context["Execution"]["Id"] = json!(format!("{}:{name}", run.child_prefix));
    context["Execution"]["Name"] = json!(name);
    context["Execution"]["Input"] = input.clone();
    context["Execution"]["StartTime"] = json!(iso(start));
    context["StateMachine"]["Id"] = json!(run.child_machine);
    let machine_name = run.child_machine.rsplit(":stateMachine:").next().unwrap_or_default();
    context["StateMachine"]["Name"] = json!(machine_name);
    context
}

/// A child's record with its metadata (Transformation NONE), as "ResultWriter (Map)" shows it:
/// `Input` and `Output` are JSON text.
fn record(run: &MapRun, child: &Child) -> Value {
    let base = |name: &str, input: &Value, status: &str| {
        json!({
            "ExecutionArn": format!("{}:{name}", run.child_prefix),
            "Input": input.to_string(),
            "InputDetails": {"Included": true},
            "Name": name,
            "RedriveCount": 0,
            "StateMachineArn": run.child_machine,
            "Status": status,
        })
    };
    match child {
        Child::Succeeded { name, input, output, started, stopped } => {
            let mut r = base(name, input, "SUCCEEDED");
            r["Output"] = json!(output.to_string());
            r["OutputDetails"] = json!({"Included": true});
            r["RedriveStatus"] = json!("NOT_REDRIVABLE");
            r["RedriveStatusReason"] = json!("Execution is SUCCEEDED and cannot be redriven");
            r["StartDate"] = json!(iso(*started));
            r["StopDate"] = json!(iso(*stopped));
            r
        }
        Child::Failed { name, input, error, cause, started, stopped } => {
            let mut r = base(name, input, "FAILED");
            r["Error"] = json!(error);
            r["Cause"] = json!(cause);
            // A failed child of a Map Run is redriven with its Map Run (API reference,
            // ExecutionRedriveStatus).
            r["RedriveStatus"] = json!("REDRIVABLE_BY_MAP_RUN");
            r["StartDate"] = json!(iso(*started));
            r["StopDate"] = json!(iso(*stopped));
            r
        }
        // The guide gives no fields for a child that never started; its input and status are
        // what a redrive would need.
        Child::Pending { input } => json!({
            "Input": input.to_string(),
            "InputDetails": {"Included": true},
            "Status": "PENDING",
        }),
    }
}

/// The results as a Transformation gives them: NONE the records; COMPACT the outputs; FLATTEN
/// the outputs with arrays spliced in. A failed child stays a NONE record whatever the
/// Transformation ("ResultWriter (Map)", the note under WriterConfig).
fn transform(t: Transformation, run: &MapRun, children: &[&Child]) -> Vec<Value> {
    let mut out = Vec::with_capacity(children.len());
    for child in children {
        match (t, child) {
            (Transformation::Compact, Child::Succeeded { output, .. }) => out.push(output.clone()),
            (Transformation::Flatten, Child::Succeeded { output: Value::Array(items), .. }) => {
                out.extend(items.iter().cloned())
            }
            (Transformation::Flatten, Child::Succeeded { output, .. }) => out.push(output.clone()),
            _ => out.push(record(run, child)),
        }
    }
    out
}

fn serialize(output_type: OutputType, values: &[Value]) -> Vec<u8> {
    match output_type {
        OutputType::Json => Value::Array(values.to_vec()).to_string().into_bytes(),
        OutputType::JsonLines => {
            let mut text = String::new();
            for v in values {
                text.push_str(&v.to_string());
                text.push('\n');
            }
            text.into_bytes()
        }
    }
}

/// Writes `SUCCEEDED_0.json`, `FAILED_0.json`, `PENDING_0.json` (each only when it has
/// results) and `manifest.json` under `<Prefix>/<Map Run id>/`, and returns what the state
/// returns: the Map Run ARN and where the manifest is ("ResultWriter (Map)", exporting to
/// Amazon S3). One file per status: the guide splits a file only past 5 GB.
fn export(
    writer: &ResultWriter,
    (payload, _): &(Payload, Value),
    run: &MapRun,
    children: &[Child],
    env: &Env<'_>,
    store: Option<&dyn ObjectStore>,
) -> Result<Value, StateError> {
    let params = payload.eval(env)?;
    let bucket = location(&params, "Bucket").map_err(writer_error)?.unwrap_or_default();
    let prefix = location(&params, "Prefix").map_err(writer_error)?.unwrap_or("");
    let store = store.ok_or_else(|| {
        writer_error(format!("s3://{bucket}: no S3 objects can be written by this engine"))
    })?;
    let dir = match prefix.trim_end_matches('/') {
        "" => run.id.clone(),
        p => format!("{p}/{}", run.id),
    };
    let mut files = BTreeMap::new();
    for (status, wanted) in [("FAILED", 1), ("PENDING", 2), ("SUCCEEDED", 0)] {
        let of_status: Vec<&Child> = children
            .iter()
            .filter(|c| {
                wanted
                    == match c {
                        Child::Succeeded { .. } => 0,
                        Child::Failed { .. } => 1,
                        Child::Pending { .. } => 2,
                    }
            })
            .collect();
        let mut list = Vec::new();
        if !of_status.is_empty() {
            let key = format!("{dir}/{status}_0.json");
            let body =
                serialize(writer.output_type, &transform(writer.transformation, run, &of_status));
            store.put_object(bucket, &key, &body).map_err(writer_error)?;
            list.push(json!({"Key": key, "Size": body.len()}));
        }
        files.insert(status, Value::Array(list));
    }
    let manifest = json!({
        "DestinationBucket": bucket,
        "MapRunArn": run.arn,
        "ResultFiles": files,
    });
    let key = format!("{dir}/manifest.json");
    store.put_object(bucket, &key, manifest.to_string().as_bytes()).map_err(writer_error)?;
    Ok(json!({
        "MapRunArn": run.arn,
        "ResultWriterDetails": {"Bucket": bucket, "Key": key},
    }))
}

impl Run<'_> {
    /// A Distributed Map's attempt: items from the reader (or `ItemsPath`), `ItemSelector` per
    /// item, batches, one child execution per item or batch with no outer variables, at most
    /// `MaxConcurrency` at once. Children stop being started once the failed items exceed the
    /// threshold (those left are PENDING); the results are exported if a `ResultWriter` says
    /// so, then an exceeded threshold fails the state with
    /// `States.ExceedToleratedFailureThreshold` (its default is 0%: any failed child).
    pub(super) async fn attempt_distributed_map(
        &self,
        state: &model::State,
        map: &model::MapState,
        dist: &Distributed,
        raw: &Value,
        at: &Attempt<'_>,
    ) -> Result<(Value, Option<Vars>), StateError> {
        use futures::StreamExt;

        let (context, vars, lane) = (at.context, at.vars, at.lane);
        let env = Env::new(raw, context, vars);
        let effective = state.input_path.apply(&env, "InputPath")?;
        let in_effective = env.with_data(&effective);
        let store = self.tasks.object_store();
        let items = match &dist.reader {
            Some(reader) => read_items(reader, &in_effective, store)?,
            None => items_at(map, &effective, &in_effective)?,
        };
        let limit = concurrency(map, &in_effective, items.len())?;
        let mut inputs = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            inputs.push(match &map.item_selector {
                Some(selector) => {
                    let mut item_context = context.clone();
                    item_context["Map"] = json!({"Item": {"Index": index, "Value": item}});
                    selector.eval(&Env::new(&effective, &item_context, vars))?
                }
                None => item,
            });
        }
        let total = inputs.len() as u64;
        let children: Vec<(Value, u64)> = match &dist.batcher {
            Some(b) => batch(b, inputs, &in_effective)?,
            None => inputs.into_iter().map(|i| (i, 1)).collect(),
        };
        let threshold = Threshold::resolve(&dist.tolerance, &in_effective)?;
        let run = MapRun::new(
            self.base_context["StateMachine"]["Id"].as_str().unwrap_or_default(),
            &dist.label,
            dist.execution_type,
        );
        let failed = AtomicU64::new(0);
        let no_vars = Vars::new();
        let lanes: Vec<Lane> = children.iter().map(|_| Lane::new(lane.skipped())).collect();
        // Each child is an execution of its own: its context object names it and holds its
        // input ("Accessing execution data from the Context object").
        let names: Vec<String> =
            children.iter().map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let child_runs: Vec<Run<'_>> = children
            .iter()
            .zip(&names)
            .map(|((input, _), name)| Run {
                machine: self.machine,
                tasks: self.tasks,
                observer: self.observer,
                clock: self.clock,
                base_context: child_context(&self.base_context, &run, name, input, self.now(lane)),
            })
            .collect();
        let mut runs: Vec<BoxFuture<'_, Result<Child, StateError>>> = Vec::new();
        for (((input, count), child_lane), (child, name)) in
            children.into_iter().zip(&lanes).zip(child_runs.iter().zip(names))
        {
            let (failed, threshold, no_vars) = (&failed, &threshold, &no_vars);
            runs.push(Box::pin(async move {
                if threshold.exceeded(failed.load(Ordering::SeqCst), total) {
                    return Ok(Child::Pending { input });
                }
                let started = child.now(child_lane);
                let result = child
                    .run_block(&map.processor, input.clone(), no_vars.clone(), child_lane)
                    .await;
                let stopped = child.now(child_lane);
                match result {
                    Ok(output) => Ok(Child::Succeeded { name, input, output, started, stopped }),
                    // The execution's own timeout ends the parent too.
                    Err((e, _)) if e.execution_timeout => Err(e),
                    Err((e, _)) => {
                        failed.fetch_add(count, Ordering::SeqCst);
                        Ok(Child::Failed {
                            name,
                            input,
                            error: e.error,
                            cause: e.cause,
                            started,
                            stopped,
                        })
                    }
                }
            }));
        }
        let outcomes: Vec<Result<Child, StateError>> =
            futures::stream::iter(runs).buffered(limit).collect().await;
        for child_lane in &lanes {
            lane.skip_to(child_lane.skipped());
        }
        let children = outcomes.into_iter().collect::<Result<Vec<Child>, StateError>>()?;
        let exported = match dist.writer.as_ref().map(|w| (w, w.target.as_ref())) {
            Some((writer, Some(target))) => {
                Some(export(writer, target, &run, &children, &in_effective, store)?)
            }
            _ => None,
        };
        if threshold.exceeded(failed.load(Ordering::SeqCst), total) {
            return Err(StateError::new(EXCEED_TOLERATED_FAILURE, EXCEEDED_CAUSE));
        }
        let result = match (exported, &dist.writer) {
            (Some(pointer), _) => pointer,
            (None, Some(writer)) => {
                let all: Vec<&Child> = children.iter().collect();
                Value::Array(transform(writer.transformation, &run, &all))
            }
            // No ResultWriter: the children's outputs, a failed one as its record.
            (None, None) => {
                let all: Vec<&Child> = children.iter().collect();
                Value::Array(transform(Transformation::Compact, &run, &all))
            }
        };
        self.finish(state, (map.result_selector.as_ref(), &map.result_path), result, raw, at)
    }
}

#[cfg(test)]
#[path = "distributed_tests.rs"]
mod tests;
