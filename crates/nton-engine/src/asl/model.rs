//! Stage two of loading: the validated state machine the interpreter runs. Every path,
//! payload template, intrinsic, choice rule, retrier, catcher and transition is checked and
//! compiled here, so that a definition that loads can only fail at run time on its data.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::choice::{self, Choice};
use super::error::{AslError, StateError, names};
use super::intrinsic::{Call, looks_like_call};
use super::path::{Env, Path, ReferencePath, Segment};
use super::payload::Payload;
use super::raw::{self, RawBlock, RawCatcher, RawRetrier};

#[path = "model_jsonata.rs"]
mod jsonata_fields;
pub(crate) use jsonata_fields::JsonataState;

/// A state's query language: the machine's `QueryLanguage` (default JSONPath), or the
/// state's own (developer guide, "Transforming data with JSONata in Step Functions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum QueryLanguage {
    #[default]
    JsonPath,
    Jsonata,
}

impl QueryLanguage {
    fn read(value: Option<&Value>) -> Result<Option<QueryLanguage>, String> {
        match value {
            None => Ok(None),
            Some(Value::String(s)) if s == "JSONPath" => Ok(Some(QueryLanguage::JsonPath)),
            Some(Value::String(s)) if s == "JSONata" => Ok(Some(QueryLanguage::Jsonata)),
            Some(other) => Err(format!("must be JSONPath or JSONata, got {other}")),
        }
    }
}

/// Largest number Step Functions accepts for seconds and attempt counts.
const MAX_SECONDS: u64 = 99_999_999;
/// `MaxDelaySeconds` must stay below a year (in seconds).
const MAX_DELAY_SECONDS: u64 = 31_622_400;
/// Step Functions' limit on state names.
const MAX_STATE_NAME: usize = 80;
/// Step Functions' limit on variable names (developer guide, "Passing data between states
/// with variables").
const MAX_VARIABLE_NAME: usize = 80;
/// Fields of the States Language this engine does not run, by the state types that have them,
/// with what they are: refused at load by name, so that nothing fails later for want of them
/// (issue 11 item 2).
const UNSUPPORTED_FIELDS: &[(&str, &[&str], &str)] =
    &[("Credentials", &["Task"], "cross-account task credentials are not run by the local engine")];

/// `InputPath` / `OutputPath`.
#[derive(Debug, Clone)]
pub(crate) enum DataPath {
    /// Absent or `$`: the data as is.
    Identity,
    /// `null`: an empty object.
    Empty,
    Path(Path),
}

impl DataPath {
    fn compile(raw: Option<Option<String>>, state: &str, field: &str) -> Result<Self, AslError> {
        match raw {
            None => Ok(DataPath::Identity),
            Some(None) => Ok(DataPath::Empty),
            Some(Some(text)) if text == "$" => Ok(DataPath::Identity),
            Some(Some(text)) => {
                Path::parse(&text).map(DataPath::Path).map_err(|m| AslError::field(state, field, m))
            }
        }
    }

    /// Selects from `env.data`.
    pub fn apply(&self, env: &Env<'_>, _field: &str) -> Result<Value, StateError> {
        match self {
            DataPath::Identity => Ok(env.data.clone()),
            DataPath::Empty => Ok(Value::Object(Map::new())),
            // AWS's wording (its JSONPath library's), the path in bracket notation:
            // "Invalid path '$.r1' : No results for path: $['r1']".
            DataPath::Path(p) => p.read(env).ok_or_else(|| {
                let brackets: String = p
                    .segments()
                    .unwrap_or_default()
                    .iter()
                    .map(|s| match s {
                        Segment::Field(f) => format!("['{f}']"),
                        Segment::Index(i) => format!("[{i}]"),
                    })
                    .collect();
                StateError::runtime(format!(
                    "Invalid path '{}' : No results for path: ${brackets}",
                    p.text()
                ))
            }),
        }
    }
}

/// `ResultPath`.
#[derive(Debug, Clone)]
pub(crate) enum ResultPath {
    /// Absent or `$`: the result replaces the input.
    Replace,
    /// `null`: the result is dropped, the input passes through.
    Discard,
    At(ReferencePath),
}

impl ResultPath {
    fn compile(raw: Option<Option<String>>, state: &str, field: &str) -> Result<Self, AslError> {
        match raw {
            None => Ok(ResultPath::Replace),
            Some(None) => Ok(ResultPath::Discard),
            Some(Some(text)) => {
                let p =
                    ReferencePath::parse(&text).map_err(|m| AslError::field(state, field, m))?;
                Ok(if text == "$" { ResultPath::Replace } else { ResultPath::At(p) })
            }
        }
    }

    /// Combines the state's raw input with a result.
    pub fn apply(&self, input: Value, result: Value) -> Result<Value, StateError> {
        match self {
            ResultPath::Replace => Ok(result),
            ResultPath::Discard => Ok(input),
            ResultPath::At(p) => {
                p.assign(input, result).map_err(|m| StateError::new(names::RESULT_PATH, m))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Transition {
    Next(String),
    End,
}

#[derive(Debug, Clone)]
pub(crate) struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: u64,
    pub max_attempts: u64,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub full_jitter: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    pub result_path: ResultPath,
    /// Evaluated over the error output (`{"Error", "Cause"}`).
    pub assign: Option<Payload>,
}

/// States of their own: a Parallel branch or a Map's item processor.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub start_at: String,
    pub states: BTreeMap<String, State>,
    /// State names in breadth-first order from `StartAt`.
    pub order: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Parallel {
    pub branches: Vec<Block>,
    pub parameters: Option<Payload>,
    pub result_selector: Option<Payload>,
    pub result_path: ResultPath,
    pub retriers: Vec<Retrier>,
    pub catchers: Vec<Catcher>,
    pub transition: Transition,
}

/// `MaxConcurrency` (0: no limit) or `MaxConcurrencyPath`.
#[derive(Debug, Clone)]
pub(crate) enum Concurrency {
    Fixed(u64),
    Path(Path),
}

#[derive(Debug, Clone)]
pub(crate) struct MapState {
    pub processor: Block,
    /// `None`: the effective input is the list.
    pub items_path: Option<Path>,
    pub item_selector: Option<Payload>,
    pub concurrency: Concurrency,
    pub result_selector: Option<Payload>,
    pub result_path: ResultPath,
    pub retriers: Vec<Retrier>,
    pub catchers: Vec<Catcher>,
    pub transition: Transition,
    /// Mode DISTRIBUTED: what else the Map runs.
    pub distributed: Option<super::distributed::Distributed>,
}

/// Whether a Retry/Catch `ErrorEquals` list covers an error. `States.ALL` covers every
/// error that reaches it; `States.TaskFailed` every error but `States.Timeout`. Neither
/// wildcard covers `States.DataLimitExceeded`, which only its own name catches, nor
/// `States.Runtime`, which nothing catches (developer guide, "Handling errors in Step
/// Functions workflows", error names).
pub(crate) fn error_matches(error_equals: &[String], error: &str) -> bool {
    if error == names::RUNTIME {
        return false;
    }
    if error == names::DATA_LIMIT {
        return error_equals.iter().any(|e| e == error);
    }
    error_equals.iter().any(|e| {
        e == error || e == names::ALL || (e == names::TASK_FAILED && error != names::TIMEOUT)
    })
}

impl Retrier {
    /// The wait before retry number `count + 1` of this retrier.
    pub fn delay(&self, count: u64) -> Duration {
        let exponent = i32::try_from(count).unwrap_or(i32::MAX);
        let mut seconds = self.interval_seconds as f64 * self.backoff_rate.powi(exponent);
        if let Some(max) = self.max_delay_seconds {
            seconds = seconds.min(max as f64);
        }
        seconds = seconds.min(MAX_SECONDS as f64);
        if self.full_jitter {
            use rand::Rng;
            seconds = rand::rng().random_range(0.0..=seconds);
        }
        Duration::from_secs_f64(seconds)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum TaskTimeout {
    Seconds(u64),
    Path(Path),
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub resource: String,
    pub raw_parameters: Option<Value>,
    pub parameters: Option<Payload>,
    pub result_selector: Option<Payload>,
    pub result_path: ResultPath,
    pub retriers: Vec<Retrier>,
    pub catchers: Vec<Catcher>,
    pub timeout: Option<TaskTimeout>,
    pub transition: Transition,
}

#[derive(Debug, Clone)]
pub(crate) struct Pass {
    pub parameters: Option<Payload>,
    pub result: Option<Value>,
    pub result_path: ResultPath,
    pub transition: Transition,
}

#[derive(Debug, Clone)]
pub(crate) enum WaitFor {
    Seconds(u64),
    SecondsPath(Path),
    Timestamp(OffsetDateTime),
    TimestampPath(Path),
}

#[derive(Debug, Clone)]
pub(crate) struct Wait {
    pub wait_for: WaitFor,
    pub transition: Transition,
}

#[derive(Debug, Clone)]
pub(crate) struct ChoiceState {
    pub choices: Vec<Choice>,
    /// Each rule's `Assign`, by rule.
    pub rule_assigns: Vec<Option<Payload>>,
    pub default: Option<String>,
}

/// Where a Fail state's `Error` or `Cause` comes from.
#[derive(Debug, Clone)]
pub(crate) enum Text {
    Literal(String),
    Path(Path),
    Call(Call),
}

#[derive(Debug, Clone)]
pub(crate) struct Fail {
    pub error: Option<Text>,
    pub cause: Option<Text>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    // Boxed: a Task holds far more than the other kinds.
    Task(Box<Task>),
    Pass(Pass),
    Wait(Wait),
    Choice(ChoiceState),
    Succeed,
    Fail(Fail),
    Parallel(Box<Parallel>),
    Map(Box<MapState>),
}

#[derive(Debug, Clone)]
pub(crate) struct State {
    pub input_path: DataPath,
    pub output_path: DataPath,
    /// The state's `Assign` (for a Choice state: when no rule matches).
    pub assign: Option<Payload>,
    pub kind: Kind,
    /// A JSONata state's fields (its paths above are then the identity and its JSONPath
    /// `Assign` is `None`).
    pub jsonata: Option<Box<JsonataState>>,
}

impl State {
    fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Task(_) => "Task",
            Kind::Pass(_) => "Pass",
            Kind::Wait(_) => "Wait",
            Kind::Choice(_) => "Choice",
            Kind::Succeed => "Succeed",
            Kind::Fail(_) => "Fail",
            Kind::Parallel(_) => "Parallel",
            Kind::Map(_) => "Map",
        }
    }

    /// The blocks of states this one runs (branches, item processor).
    pub fn blocks(&self) -> Vec<&Block> {
        match &self.kind {
            Kind::Parallel(p) => p.branches.iter().collect(),
            Kind::Map(m) => vec![&m.processor],
            _ => Vec::new(),
        }
    }

    /// Every state this one may lead to, with the field that says so.
    fn targets(&self) -> Vec<(String, &str)> {
        fn transition<'s>(out: &mut Vec<(String, &'s str)>, t: &'s Transition) {
            if let Transition::Next(n) = t {
                out.push(("Next".to_string(), n.as_str()));
            }
        }
        fn catchers<'s>(out: &mut Vec<(String, &'s str)>, catchers: &'s [Catcher]) {
            for (i, c) in catchers.iter().enumerate() {
                out.push((format!("Catch[{i}].Next"), c.next.as_str()));
            }
        }
        let mut out = Vec::new();
        match &self.kind {
            Kind::Task(t) => {
                transition(&mut out, &t.transition);
                catchers(&mut out, &t.catchers);
            }
            Kind::Parallel(p) => {
                transition(&mut out, &p.transition);
                catchers(&mut out, &p.catchers);
            }
            Kind::Map(m) => {
                transition(&mut out, &m.transition);
                catchers(&mut out, &m.catchers);
            }
            Kind::Pass(p) => transition(&mut out, &p.transition),
            Kind::Wait(w) => transition(&mut out, &w.transition),
            Kind::Choice(c) => {
                for (i, choice) in c.choices.iter().enumerate() {
                    out.push((format!("Choices[{i}].Next"), choice.next.as_str()));
                }
                if let Some(d) = &c.default {
                    out.push(("Default".to_string(), d.as_str()));
                }
            }
            Kind::Succeed | Kind::Fail(_) => {}
        }
        if let Some(j) = &self.jsonata {
            for (i, rule) in j.rules.iter().enumerate() {
                out.push((format!("Choices[{i}].Next"), rule.next.as_str()));
            }
        }
        out
    }
}

/// A Task state's resource, as the engine binds it to something that runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResource<'a> {
    pub state: &'a str,
    pub resource: &'a str,
    /// `Parameters` as written (with its `.$` keys), so that static fields such as
    /// `FunctionName` or `JobQueue` can be bound at load.
    pub parameters: Option<&'a Value>,
}

/// A validated state machine (JSONPath query language; Task, Pass, Wait, Choice, Succeed,
/// Fail, Parallel and inline Map states; variables).
#[derive(Debug, Clone)]
pub struct StateMachine {
    pub(crate) comment: Option<String>,
    pub(crate) root: Block,
    pub(crate) timeout_seconds: Option<u64>,
    pub(crate) version: Option<String>,
    /// Every state's type, nested ones included (state names are unique machine-wide).
    pub(crate) types: BTreeMap<String, &'static str>,
}

/// What loading tracks across nested blocks.
#[derive(Default)]
struct Loader {
    /// Every state name seen so far: Step Functions requires them unique in the whole machine.
    names: BTreeSet<String>,
    types: BTreeMap<String, &'static str>,
    /// The machine's `QueryLanguage`, which states inherit.
    language: QueryLanguage,
}

/// Where a block sits, for its error messages.
struct BlockAt<'a> {
    /// The Parallel or Map state that owns it (`None`: the machine itself).
    owner: Option<&'a str>,
    /// The field holding it (`Branches[0]`, `ItemProcessor`), empty for the machine.
    field: String,
}

impl BlockAt<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> AslError {
        match self.owner {
            None => AslError::machine(Some(field), message),
            Some(owner) => AslError::field(owner, format!("{}.{field}", self.field), message),
        }
    }
}

impl StateMachine {
    /// Validates a definition. Every error names the state and the field at fault.
    pub fn from_json(definition: &Value) -> Result<StateMachine, AslError> {
        let Value::Object(top) = definition else {
            return Err(AslError::machine(None, "the definition is not a JSON object"));
        };
        let language = QueryLanguage::read(top.get("QueryLanguage"))
            .map_err(|m| AslError::machine(Some("QueryLanguage"), m))?
            .unwrap_or_default();
        let raw: raw::RawMachine = raw::read(definition).map_err(|(field, message)| {
            let (field, message) = explain_serde(field, message, "the state machine");
            AslError { state: None, field, message }
        })?;
        if let Some(t) = raw.timeout_seconds
            && !(1..=MAX_SECONDS).contains(&t)
        {
            return Err(AslError::machine(
                Some("TimeoutSeconds"),
                format!("must be 1 to {MAX_SECONDS}, got {t}"),
            ));
        }
        let mut loader = Loader { language, ..Loader::default() };
        let at = BlockAt { owner: None, field: String::new() };
        let root = compile_block(&raw.start_at, &raw.states, &at, &mut loader, &BTreeSet::new())?;
        Ok(StateMachine {
            comment: raw.comment,
            root,
            timeout_seconds: raw.timeout_seconds,
            version: raw.version,
            types: loader.types,
        })
    }

    pub fn start_at(&self) -> &str {
        &self.root.start_at
    }

    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The execution's `TimeoutSeconds`, if set.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_seconds.map(Duration::from_secs)
    }

    /// The top-level state names, breadth-first from `StartAt`.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.root.order.iter().map(String::as_str)
    }

    /// Every state name, nested ones (in Parallel branches and Map item processors) right
    /// after the state that holds them, in flow order.
    pub fn all_state_names(&self) -> Vec<&str> {
        fn walk<'m>(block: &'m Block, out: &mut Vec<&'m str>) {
            for name in &block.order {
                out.push(name);
                for inner in block.states[name].blocks() {
                    walk(inner, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// Every S3 bucket a Distributed Map names literally, with its state and field, so that
    /// an engine can check it can reach each before anything runs.
    pub fn s3_buckets(&self) -> Vec<super::distributed::BucketUse> {
        let mut out = Vec::new();
        super::distributed::static_buckets(&self.root, &mut out);
        out
    }

    /// A state's `Type`, nested states included.
    pub fn state_type(&self, name: &str) -> Option<&'static str> {
        self.types.get(name).copied()
    }

    /// Every Task state with its `Resource` and raw `Parameters`, in flow order, nested ones
    /// (in Parallel branches and Map item processors) included.
    pub fn task_resources(&self) -> Vec<TaskResource<'_>> {
        fn walk<'m>(block: &'m Block, out: &mut Vec<TaskResource<'m>>) {
            for name in &block.order {
                let state = &block.states[name];
                if let Kind::Task(t) = &state.kind {
                    out.push(TaskResource {
                        state: name,
                        resource: &t.resource,
                        parameters: t.raw_parameters.as_ref(),
                    });
                }
                for inner in state.blocks() {
                    walk(inner, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }
}

/// The variable names a block's own states assign (not those of nested blocks).
fn assigned_names(states: &BTreeMap<String, Value>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |assign: Option<&Value>| {
        if let Some(Value::Object(map)) = assign {
            for key in map.keys() {
                out.insert(key.strip_suffix(".$").unwrap_or(key).to_string());
            }
        }
    };
    for state in states.values() {
        add(state.get("Assign"));
        for list in ["Choices", "Catch"] {
            if let Some(Value::Array(items)) = state.get(list) {
                for item in items {
                    add(item.get("Assign"));
                }
            }
        }
    }
    out
}

fn compile_block(
    start_at: &str,
    raw_states: &BTreeMap<String, Value>,
    at: &BlockAt<'_>,
    loader: &mut Loader,
    outer_vars: &BTreeSet<String>,
) -> Result<Block, AslError> {
    if raw_states.is_empty() {
        return Err(at.error("States", "has no states"));
    }
    // The variables visible to nested blocks: those of every enclosing scope and this one's.
    let mut visible = outer_vars.clone();
    visible.extend(assigned_names(raw_states));
    let mut states = BTreeMap::new();
    for (name, value) in raw_states {
        if !loader.names.insert(name.clone()) {
            return Err(AslError::state(
                name,
                "a state name must be unique in the whole state machine, nested states included",
            ));
        }
        let state = compile_state(name, value, loader, outer_vars, &visible)?;
        loader.types.insert(name.clone(), state.type_name());
        states.insert(name.clone(), state);
    }
    if !states.contains_key(start_at) {
        return Err(at.error("StartAt", format!("no state named '{start_at}'")));
    }
    for (name, state) in &states {
        for (field, target) in state.targets() {
            if !states.contains_key(target) {
                let message = if loader.names.contains(target) {
                    format!(
                        "no state named '{target}' here: a transition cannot leave or enter a Parallel branch or a Map item processor"
                    )
                } else {
                    format!("no state named '{target}'")
                };
                return Err(AslError::field(name, field, message));
            }
        }
    }
    let mut order = Vec::new();
    let mut queue = VecDeque::from([start_at.to_string()]);
    while let Some(name) = queue.pop_front() {
        if order.contains(&name) {
            continue;
        }
        for (_, target) in states[&name].targets() {
            queue.push_back(target.to_string());
        }
        order.push(name);
    }
    if let Some(unreachable) = states.keys().find(|n| !order.contains(n)) {
        return Err(AslError::state(unreachable, "is not reachable from StartAt"));
    }
    Ok(Block { start_at: start_at.to_string(), states, order })
}

/// Compiles an `Assign` object (JSONPath: `"name.$"` values are paths or intrinsics, as in
/// `Parameters`). Names follow the developer guide ("Passing data between states with
/// variables"): a letter or `_`, then letters, digits or `_`, at most 80 characters, not the
/// reserved `states`; and a state in a Parallel branch or Map iteration cannot assign a
/// variable an enclosing scope assigns.
fn assign(
    state: &str,
    field: &str,
    value: Option<&Value>,
    outer_vars: &BTreeSet<String>,
) -> Result<Option<Payload>, AslError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let Value::Object(map) = value else {
        return Err(AslError::field(state, field, "must be an object"));
    };
    for key in map.keys() {
        let name = key.strip_suffix(".$").unwrap_or(key);
        let at = format!("{field}.{key}");
        let valid = name.len() <= MAX_VARIABLE_NAME
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(AslError::field(
                state,
                at,
                format!(
                    "'{name}' is not a variable name (a letter or _, then letters, digits or _, at most {MAX_VARIABLE_NAME} characters)"
                ),
            ));
        }
        if name == "states" {
            return Err(AslError::field(state, at, "$states is reserved by Step Functions"));
        }
        if outer_vars.contains(name) {
            return Err(AslError::field(
                state,
                at,
                format!(
                    "'{name}' is assigned in an enclosing scope; a Parallel branch or Map iteration cannot assign an outer variable"
                ),
            ));
        }
    }
    Payload::compile(value, field).map(Some).map_err(|(f, m)| AslError::field(state, f, m))
}

/// Turns serde's messages into ones that name the field.
fn explain_serde(field: Option<String>, message: String, what: &str) -> (Option<String>, String) {
    let quoted = |m: &str| m.split('`').nth(1).map(str::to_string);
    if message.starts_with("unknown field") {
        // The path already ends with the unknown name.
        let field = field.or_else(|| quoted(&message));
        let nested = field.as_deref().is_some_and(|f| f.contains(['.', '[']));
        let message =
            if nested { "unknown field".to_string() } else { format!("not a field of {what}") };
        return (field, message);
    }
    if message.starts_with("missing field") {
        let name = quoted(&message);
        let prefix = field.map(|f| format!("{f}.")).unwrap_or_default();
        return (name.map(|n| format!("{prefix}{n}")), "missing".to_string());
    }
    (field, message)
}

fn compile_state(
    name: &str,
    value: &Value,
    loader: &mut Loader,
    outer_vars: &BTreeSet<String>,
    visible_vars: &BTreeSet<String>,
) -> Result<State, AslError> {
    if name.is_empty() || name.chars().count() > MAX_STATE_NAME {
        return Err(AslError::state(
            name,
            format!("a state name must be 1 to {MAX_STATE_NAME} characters"),
        ));
    }
    let Value::Object(fields) = value else {
        return Err(AslError::state(name, "is not a JSON object"));
    };
    let ty = match fields.get("Type") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(AslError::field(name, "Type", format!("must be a string, got {other}")));
        }
        None => return Err(AslError::field(name, "Type", "missing")),
    };
    match ty {
        "Task" | "Pass" | "Wait" | "Choice" | "Succeed" | "Fail" | "Map" | "Parallel" => {}
        other => {
            return Err(AslError::field(name, "Type", format!("unknown state type '{other}'")));
        }
    }
    let own_language = QueryLanguage::read(fields.get("QueryLanguage"))
        .map_err(|m| AslError::field(name, "QueryLanguage", m))?;
    // "If JSONata is specified at the top level, JSONPath cannot be used in the state machine
    // definition" (CDK's account of the rule Step Functions enforces).
    if own_language == Some(QueryLanguage::JsonPath) && loader.language == QueryLanguage::Jsonata {
        return Err(AslError::field(
            name,
            "QueryLanguage",
            "JSONPath is not allowed in a state machine whose QueryLanguage is JSONata",
        ));
    }
    let language = own_language.unwrap_or(loader.language);
    if let Some((field, _, why)) = UNSUPPORTED_FIELDS
        .iter()
        .find(|(f, types, _)| types.contains(&ty) && fields.contains_key(*f))
    {
        return Err(AslError::field(name, *field, *why));
    }
    let lifted;
    let (value, jsonata) = match language {
        QueryLanguage::JsonPath => {
            if let Some((field, _)) = jsonata_fields::JSONATA_ONLY
                .iter()
                .find(|(f, types)| types.contains(&ty) && fields.contains_key(*f))
            {
                return Err(AslError::field(
                    name,
                    *field,
                    "is a JSONata field, not allowed in a JSONPath state (set QueryLanguage to JSONata on the state or the state machine)",
                ));
            }
            (value, None)
        }
        QueryLanguage::Jsonata => {
            let (rest, fields) = jsonata_fields::lift(name, ty, fields, outer_vars)?;
            lifted = rest;
            (&lifted, Some(Box::new(fields)))
        }
    };
    let what = format!("a {ty} state");
    let at = StateAt { name, what: &what, outer_vars, visible_vars };
    let (input_path, output_path, assign_raw, mut kind) = match ty {
        "Choice" if jsonata.is_some() => compile_jsonata_choice(&at, value)?,
        "Task" => compile_task(&at, value)?,
        "Pass" => compile_pass(&at, value)?,
        "Wait" => compile_wait(&at, value)?,
        "Choice" => compile_choice(&at, value)?,
        "Succeed" => compile_succeed(&at, value)?,
        "Fail" => compile_fail(&at, value)?,
        "Parallel" => compile_parallel(&at, value, loader)?,
        "Map" => compile_map(&at, value, loader)?,
        _ => unreachable!("checked above"),
    };
    if let (Kind::Task(task), Some(j)) = (&mut kind, &jsonata) {
        task.raw_parameters = j.raw_arguments.clone();
    }
    Ok(State {
        input_path: DataPath::compile(input_path, name, "InputPath")?,
        output_path: DataPath::compile(output_path, name, "OutputPath")?,
        assign: assign(name, "Assign", assign_raw.as_ref(), outer_vars)?,
        kind,
        jsonata,
    })
}

/// A JSONata Choice state once its rules, `Output` and `Assign` are lifted: only `Default`
/// is left to read.
fn compile_jsonata_choice(at: &StateAt<'_>, value: &Value) -> Result<Parts, AslError> {
    let mut default = None;
    for (key, v) in value.as_object().into_iter().flatten() {
        match (key.as_str(), v) {
            ("Type" | "Comment" | "QueryLanguage", _) => {}
            ("Default", Value::String(d)) => default = Some(d.clone()),
            ("Default", other) => {
                return Err(AslError::field(
                    at.name,
                    "Default",
                    format!("must be a state name, got {other}"),
                ));
            }
            _ => {
                return Err(AslError::field(
                    at.name,
                    key.clone(),
                    format!("not a field of {}", at.what),
                ));
            }
        }
    }
    let choice = ChoiceState { choices: Vec::new(), rule_assigns: Vec::new(), default };
    Ok((None, None, None, Kind::Choice(choice)))
}

/// The fields every state shares, as read (`InputPath`, `OutputPath`, `Assign`), with the
/// state's compiled kind: what each state type's compiler returns to [`compile_state`].
type Parts = (Option<Option<String>>, Option<Option<String>>, Option<Value>, Kind);

/// The state being compiled, for the per-type compilers.
#[derive(Clone, Copy)]
struct StateAt<'a> {
    name: &'a str,
    /// "a Task state", for serde's messages.
    what: &'a str,
    /// Variables of the enclosing scopes (a nested state cannot assign them).
    outer_vars: &'a BTreeSet<String>,
    /// Variables nested blocks may read.
    visible_vars: &'a BTreeSet<String>,
}

impl StateAt<'_> {
    /// Reads the state's raw serde type, errors naming the state and field. The fields every
    /// state has are taken out first (`Type` chose the compiler, `QueryLanguage` is read by
    /// `model_jsonata`, `Comment` is only checked to be a string): each raw type denies unknown
    /// fields, which serde cannot combine with a flattened common part, so this is where the
    /// common part is handled, once.
    fn read<T: for<'de> serde::Deserialize<'de>>(&self, value: &Value) -> Result<T, AslError> {
        let mut own = value.clone();
        if let Some(fields) = own.as_object_mut() {
            if fields.get("Comment").is_some_and(|comment| !comment.is_string()) {
                return Err(AslError::field(self.name, "Comment", "must be a string"));
            }
            for common in ["Type", "Comment", "QueryLanguage"] {
                fields.remove(common);
            }
        }
        raw::read(&own).map_err(|(field, message)| {
            let (field, message) = explain_serde(field, message, self.what);
            AslError { state: Some(self.name.to_string()), field, message }
        })
    }
}

/// A Task state.
fn compile_task(at: &StateAt<'_>, value: &Value) -> Result<Parts, AslError> {
    let StateAt { name, outer_vars, .. } = *at;
    let r: raw::RawTask = at.read(value)?;
    let parameters = payload(name, "Parameters", r.parameters.as_ref())?;
    let result_selector = payload(name, "ResultSelector", r.result_selector.as_ref())?;
    let timeout = match (r.timeout_seconds, r.timeout_seconds_path) {
        (Some(_), Some(_)) => {
            return Err(AslError::field(
                name,
                "TimeoutSecondsPath",
                "TimeoutSeconds is set too; use one",
            ));
        }
        (Some(t), None) => {
            check_range(name, "TimeoutSeconds", t, 1, MAX_SECONDS)?;
            Some(TaskTimeout::Seconds(t))
        }
        (None, Some(p)) => Some(TaskTimeout::Path(reference(name, "TimeoutSecondsPath", &p)?)),
        (None, None) => None,
    };
    // Heartbeats concern callback and activity tasks, which the local engine does not
    // run; the fields are checked for shape only.
    if r.heartbeat_seconds.is_some() && r.heartbeat_seconds_path.is_some() {
        return Err(AslError::field(
            name,
            "HeartbeatSecondsPath",
            "HeartbeatSeconds is set too; use one",
        ));
    }
    if let Some(h) = r.heartbeat_seconds {
        check_range(name, "HeartbeatSeconds", h, 1, MAX_SECONDS)?;
        if let Some(TaskTimeout::Seconds(t)) = timeout
            && h >= t
        {
            return Err(AslError::field(
                name,
                "HeartbeatSeconds",
                format!("must be below TimeoutSeconds ({t})"),
            ));
        }
    }
    if let Some(p) = &r.heartbeat_seconds_path {
        reference(name, "HeartbeatSecondsPath", p)?;
    }
    // Heartbeats are sent by callback and activity workers, and those tasks are
    // refused below: for the tasks that run here the fields change nothing.
    check_resource_pattern(name, &r.resource)?;
    let task = Task {
        resource: r.resource,
        raw_parameters: r.parameters,
        parameters,
        result_selector,
        result_path: ResultPath::compile(r.result_path, name, "ResultPath")?,
        retriers: retriers(name, r.retry.unwrap_or_default())?,
        catchers: catchers(name, r.catch.unwrap_or_default(), outer_vars)?,
        timeout,
        transition: transition(name, "Task", r.next, r.end)?,
    };
    Ok((r.input_path, r.output_path, r.assign, Kind::Task(Box::new(task))))
}

/// A Pass state.
fn compile_pass(at: &StateAt<'_>, value: &Value) -> Result<Parts, AslError> {
    let name = at.name;
    let r: raw::RawPass = at.read(value)?;
    let pass = Pass {
        parameters: payload(name, "Parameters", r.parameters.as_ref())?,
        result: r.result.map(|v| v.unwrap_or(Value::Null)),
        result_path: ResultPath::compile(r.result_path, name, "ResultPath")?,
        transition: transition(name, "Pass", r.next, r.end)?,
    };
    Ok((r.input_path, r.output_path, r.assign, Kind::Pass(pass)))
}

/// A Wait state.
fn compile_wait(at: &StateAt<'_>, value: &Value) -> Result<Parts, AslError> {
    let name = at.name;
    let r: raw::RawWait = at.read(value)?;
    let set = [
        r.seconds.is_some(),
        r.seconds_path.is_some(),
        r.timestamp.is_some(),
        r.timestamp_path.is_some(),
    ];
    if set.iter().filter(|b| **b).count() != 1 {
        return Err(AslError::state(
            name,
            "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath",
        ));
    }
    let wait_for = if let Some(s) = r.seconds {
        check_range(name, "Seconds", s, 0, MAX_SECONDS)?;
        WaitFor::Seconds(s)
    } else if let Some(p) = r.seconds_path {
        WaitFor::SecondsPath(reference(name, "SecondsPath", &p)?)
    } else if let Some(t) = r.timestamp {
        WaitFor::Timestamp(choice::parse_timestamp(&t).ok_or_else(|| {
            AslError::field(
                name,
                "Timestamp",
                format!("'{t}' is not an RFC 3339 timestamp such as 2016-03-14T01:59:00Z"),
            )
        })?)
    } else {
        let p = r.timestamp_path.expect("counted above");
        WaitFor::TimestampPath(reference(name, "TimestampPath", &p)?)
    };
    let wait = Wait { wait_for, transition: transition(name, "Wait", r.next, r.end)? };
    Ok((r.input_path, r.output_path, r.assign, Kind::Wait(wait)))
}

/// A Choice state.
fn compile_choice(at: &StateAt<'_>, value: &Value) -> Result<Parts, AslError> {
    let StateAt { name, outer_vars, .. } = *at;
    let r: raw::RawChoice = at.read(value)?;
    let choices =
        choice::compile_choices(r.choices).map_err(|(f, m)| AslError::field(name, f, m))?;
    let rule_assigns = choices
        .iter()
        .enumerate()
        .map(|(i, c)| assign(name, &format!("Choices[{i}].Assign"), c.assign.as_ref(), outer_vars))
        .collect::<Result<_, _>>()?;
    Ok((
        r.input_path,
        r.output_path,
        r.assign,
        Kind::Choice(ChoiceState { choices, rule_assigns, default: r.default }),
    ))
}

/// A Succeed state.
fn compile_succeed(at: &StateAt<'_>, value: &Value) -> Result<Parts, AslError> {
    let r: raw::RawSucceed = at.read(value)?;
    Ok((r.input_path, r.output_path, None, Kind::Succeed))
}

/// A Fail state.
fn compile_fail(at: &StateAt<'_>, value: &Value) -> Result<Parts, AslError> {
    let name = at.name;
    let r: raw::RawFail = at.read(value)?;
    let error = text(name, ("Error", r.error), ("ErrorPath", r.error_path))?;
    let cause = text(name, ("Cause", r.cause), ("CausePath", r.cause_path))?;
    Ok((None, None, None, Kind::Fail(Fail { error, cause })))
}

/// A Parallel state.
fn compile_parallel(
    at: &StateAt<'_>,
    value: &Value,
    loader: &mut Loader,
) -> Result<Parts, AslError> {
    let StateAt { name, outer_vars, visible_vars, .. } = *at;
    let r: raw::RawParallel = at.read(value)?;
    if r.branches.is_empty() {
        return Err(AslError::field(name, "Branches", "must hold at least one branch"));
    }
    let mut branches = Vec::with_capacity(r.branches.len());
    for (i, branch) in r.branches.iter().enumerate() {
        let field = format!("Branches[{i}]");
        if branch.processor_config.is_some() {
            return Err(AslError::field(
                name,
                format!("{field}.ProcessorConfig"),
                "is a field of a Map's ItemProcessor, not of a branch",
            ));
        }
        let at = BlockAt { owner: Some(name), field };
        branches.push(compile_block(&branch.start_at, &branch.states, &at, loader, visible_vars)?);
    }
    let parallel = Parallel {
        branches,
        parameters: payload(name, "Parameters", r.parameters.as_ref())?,
        result_selector: payload(name, "ResultSelector", r.result_selector.as_ref())?,
        result_path: ResultPath::compile(r.result_path, name, "ResultPath")?,
        retriers: retriers(name, r.retry.unwrap_or_default())?,
        catchers: catchers(name, r.catch.unwrap_or_default(), outer_vars)?,
        transition: transition(name, "Parallel", r.next, r.end)?,
    };
    Ok((r.input_path, r.output_path, r.assign, Kind::Parallel(Box::new(parallel))))
}

/// A Map state.
fn compile_map(at: &StateAt<'_>, value: &Value, loader: &mut Loader) -> Result<Parts, AslError> {
    let StateAt { name, outer_vars, visible_vars, .. } = *at;
    let r: raw::RawMap = at.read(value)?;
    let (processor_field, processor) = match (r.item_processor, r.iterator) {
        (Some(_), Some(_)) => {
            return Err(AslError::field(
                name,
                "Iterator",
                "ItemProcessor is set too; use one (Iterator is its old name)",
            ));
        }
        (Some(p), None) => ("ItemProcessor", p),
        (None, Some(p)) => ("Iterator", p),
        (None, None) => {
            return Err(AslError::field(
                name,
                "ItemProcessor",
                "missing: a Map state needs ItemProcessor (or its old name Iterator)",
            ));
        }
    };
    let distributed = match check_processor_config(name, processor_field, &processor)? {
        Some(config) => Some(super::distributed::compile(name, processor_field, config, value)?),
        None => {
            let fields = value.as_object().expect("a state is an object");
            if let Some(field) =
                super::distributed::DISTRIBUTED_FIELDS.iter().find(|f| fields.contains_key(**f))
            {
                return Err(AslError::field(
                    name,
                    *field,
                    format!(
                        "is a Distributed Map field ({processor_field}.ProcessorConfig.Mode DISTRIBUTED)"
                    ),
                ));
            }
            None
        }
    };
    let item_selector = match (r.item_selector, r.parameters) {
        (Some(_), Some(_)) => {
            return Err(AslError::field(
                name,
                "Parameters",
                "ItemSelector is set too; use one (Parameters is its old name)",
            ));
        }
        (Some(v), None) => payload(name, "ItemSelector", Some(&v))?,
        (None, Some(v)) => payload(name, "Parameters", Some(&v))?,
        (None, None) => None,
    };
    let concurrency = match (r.max_concurrency, r.max_concurrency_path) {
        (Some(_), Some(_)) => {
            return Err(AslError::field(
                name,
                "MaxConcurrencyPath",
                "MaxConcurrency is set too; use one",
            ));
        }
        (Some(n), None) => {
            check_range(name, "MaxConcurrency", n, 0, MAX_SECONDS)?;
            Concurrency::Fixed(n)
        }
        (None, Some(p)) => Concurrency::Path(reference(name, "MaxConcurrencyPath", &p)?),
        (None, None) => Concurrency::Fixed(0),
    };
    let items_path = match r.items_path {
        None => None,
        Some(p) if p == "$" => None,
        Some(p) => Some(reference(name, "ItemsPath", &p)?),
    };
    let at = BlockAt { owner: Some(name), field: processor_field.to_string() };
    // A Distributed Map's children are executions of their own, outside every outer scope.
    let no_vars = BTreeSet::new();
    let visible_vars = if distributed.is_some() { &no_vars } else { visible_vars };
    let processor =
        compile_block(&processor.start_at, &processor.states, &at, loader, visible_vars)?;
    if let Some(d) = &distributed {
        super::distributed::check_children(name, d, &processor)?;
    }
    let map = MapState {
        processor,
        items_path,
        item_selector,
        concurrency,
        result_selector: payload(name, "ResultSelector", r.result_selector.as_ref())?,
        result_path: ResultPath::compile(r.result_path, name, "ResultPath")?,
        retriers: retriers(name, r.retry.unwrap_or_default())?,
        catchers: catchers(name, r.catch.unwrap_or_default(), outer_vars)?,
        transition: transition(name, "Map", r.next, r.end)?,
        distributed,
    };
    Ok((r.input_path, r.output_path, r.assign, Kind::Map(Box::new(map))))
}

/// `ProcessorConfig`: Mode INLINE (the default, `None`) or DISTRIBUTED (the config, whose
/// ExecutionType [`super::distributed::compile`] reads).
fn check_processor_config<'b>(
    state: &str,
    field: &str,
    block: &'b RawBlock,
) -> Result<Option<&'b Map<String, Value>>, AslError> {
    let Some(config) = &block.processor_config else {
        return Ok(None);
    };
    let Value::Object(config) = config else {
        return Err(AslError::field(
            state,
            format!("{field}.ProcessorConfig"),
            "must be an object",
        ));
    };
    // Mode first, then the rest by name: the first error must not depend on the JSON map's
    // order (serde_json keeps insertion order when another crate of the build enables
    // `preserve_order`, and sorts keys otherwise), and Mode is the root of the others.
    let mut entries: Vec<(&String, &Value)> = config.iter().collect();
    entries.sort_by_key(|(key, _)| (key.as_str() != "Mode", key.as_str()));
    let mut distributed = false;
    for (key, value) in entries {
        let at = format!("{field}.ProcessorConfig.{key}");
        match (key.as_str(), value.as_str()) {
            ("Mode", Some("INLINE")) => {}
            ("Mode", Some("DISTRIBUTED")) => distributed = true,
            ("ExecutionType", _) if distributed => {}
            ("Mode", _) => {
                return Err(AslError::field(
                    state,
                    at,
                    format!("must be INLINE or DISTRIBUTED, got {value}"),
                ));
            }
            ("ExecutionType", _) => {
                return Err(AslError::field(
                    state,
                    at,
                    "is a Distributed Map field (Mode DISTRIBUTED)",
                ));
            }
            _ => return Err(AslError::field(state, at, "unknown field")),
        }
    }
    Ok(distributed.then_some(config))
}

/// Task resources the local engine can never run, refused at load by name: callback tasks
/// (`.waitForTaskToken`, which wait for a `SendTaskSuccess` nothing here sends) and activities.
fn check_resource_pattern(state: &str, resource: &str) -> Result<(), AslError> {
    if resource.ends_with(".waitForTaskToken") {
        return Err(AslError::field(
            state,
            "Resource",
            format!(
                "{resource}: callback tasks (.waitForTaskToken) are not run by the local engine"
            ),
        ));
    }
    if resource.starts_with("arn:") && resource.split(':').nth(5) == Some("activity") {
        return Err(AslError::field(
            state,
            "Resource",
            format!("{resource}: activities are not run by the local engine"),
        ));
    }
    Ok(())
}

fn payload(state: &str, field: &str, value: Option<&Value>) -> Result<Option<Payload>, AslError> {
    value
        .map(|v| Payload::compile(v, field).map_err(|(f, m)| AslError::field(state, f, m)))
        .transpose()
}

pub(super) fn reference(state: &str, field: &str, text: &str) -> Result<Path, AslError> {
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

fn check_range(state: &str, field: &str, value: u64, min: u64, max: u64) -> Result<(), AslError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(AslError::field(state, field, format!("must be {min} to {max}, got {value}")))
    }
}

fn transition(
    state: &str,
    ty: &str,
    next: Option<String>,
    end: Option<bool>,
) -> Result<Transition, AslError> {
    match (next, end) {
        (Some(_), Some(true)) => {
            Err(AslError::field(state, "End", "End: true and Next are both set"))
        }
        (Some(n), _) => Ok(Transition::Next(n)),
        (None, Some(true)) => Ok(Transition::End),
        (None, _) => Err(AslError::field(
            state,
            "Next",
            format!("missing: a {ty} state needs Next or End: true"),
        )),
    }
}

fn text(
    state: &str,
    literal: (&str, Option<String>),
    path: (&str, Option<String>),
) -> Result<Option<Text>, AslError> {
    match (literal.1, path.1) {
        (Some(_), Some(_)) => {
            Err(AslError::field(state, path.0, format!("{} is set too; use one", literal.0)))
        }
        (Some(l), None) => Ok(Some(Text::Literal(l))),
        (None, Some(p)) if looks_like_call(&p) => Call::parse(&p)
            .map(|c| Some(Text::Call(c)))
            .map_err(|m| AslError::field(state, path.0, m)),
        (None, Some(p)) => reference(state, path.0, &p).map(|p| Some(Text::Path(p))),
        (None, None) => Ok(None),
    }
}

fn error_equals(state: &str, at: &str, list: &[String], last: bool) -> Result<(), AslError> {
    let field = format!("{at}.ErrorEquals");
    if list.is_empty() {
        return Err(AslError::field(state, field, "must name at least one error"));
    }
    if list.iter().any(String::is_empty) {
        return Err(AslError::field(state, field, "an error name is empty"));
    }
    if list.iter().any(|e| e == names::ALL) {
        if list.len() > 1 {
            return Err(AslError::field(state, field, "States.ALL must appear alone"));
        }
        if !last {
            return Err(AslError::field(state, field, "States.ALL must be in the last entry"));
        }
    }
    Ok(())
}

fn retriers(state: &str, raw: Vec<RawRetrier>) -> Result<Vec<Retrier>, AslError> {
    let n = raw.len();
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("Retry[{i}]");
            error_equals(state, &at, &r.error_equals, i + 1 == n)?;
            let interval = r.interval_seconds.unwrap_or(1);
            check_range(state, &format!("{at}.IntervalSeconds"), interval, 1, MAX_SECONDS)?;
            let max_attempts = r.max_attempts.unwrap_or(3);
            check_range(state, &format!("{at}.MaxAttempts"), max_attempts, 0, MAX_SECONDS)?;
            let backoff = r.backoff_rate.unwrap_or(2.0);
            if !(backoff >= 1.0 && backoff.is_finite()) {
                return Err(AslError::field(
                    state,
                    format!("{at}.BackoffRate"),
                    format!("must be at least 1.0, got {backoff}"),
                ));
            }
            if let Some(d) = r.max_delay_seconds {
                check_range(state, &format!("{at}.MaxDelaySeconds"), d, 1, MAX_DELAY_SECONDS)?;
            }
            let full_jitter = match r.jitter_strategy.as_deref() {
                None | Some("NONE") => false,
                Some("FULL") => true,
                Some(other) => {
                    return Err(AslError::field(
                        state,
                        format!("{at}.JitterStrategy"),
                        format!("must be FULL or NONE, got '{other}'"),
                    ));
                }
            };
            Ok(Retrier {
                error_equals: r.error_equals,
                interval_seconds: interval,
                max_attempts,
                backoff_rate: backoff,
                max_delay_seconds: r.max_delay_seconds,
                full_jitter,
            })
        })
        .collect()
}

fn catchers(
    state: &str,
    raw: Vec<RawCatcher>,
    outer_vars: &BTreeSet<String>,
) -> Result<Vec<Catcher>, AslError> {
    let n = raw.len();
    raw.into_iter()
        .enumerate()
        .map(|(i, c)| {
            let at = format!("Catch[{i}]");
            error_equals(state, &at, &c.error_equals, i + 1 == n)?;
            Ok(Catcher {
                assign: assign(state, &format!("{at}.Assign"), c.assign.as_ref(), outer_vars)?,
                error_equals: c.error_equals,
                next: c.next,
                result_path: ResultPath::compile(
                    c.result_path,
                    state,
                    &format!("{at}.ResultPath"),
                )?,
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
