//! Random but valid Step Functions state machines, with inputs and mocked task answers, for
//! the differential test `tests/localstack_sfn_gen.rs` (LocalStack's Step Functions against
//! nton's interpreter).
//!
//! Each machine is a function of `(seed, index)` alone: a ChaCha8 generator seeded from both
//! (`rand_chacha`, already a workspace dependency). ChaCha's output stream is specified by the
//! algorithm and `rand_chacha` promises it stays the same across releases and platforms,
//! whereas `rand::rngs::StdRng` documents that its algorithm may change; a printed seed must
//! reproduce the same machine next year. proptest's strategies would give shrinking for free,
//! but its shrinker works on the generator's choices while a run against LocalStack costs a
//! second per try; the test shrinks the definition itself instead (drop states and fields).
//!
//! Shape: states `S0`..`Sk` in a line; every transition (Next, Choice rules, Default, Catch)
//! goes forward, so every execution ends; states nothing reaches are pruned. The input's
//! top-level fields (see [`input`]) are never changed by a state that another state follows:
//! results go to `$.r<i>`, `$.obj.r<i>` or nowhere (`ResultPath: null`), caught errors to
//! `$.e<i>`. So every later state can read the input's fields by path, and the data paths
//! ([`Construct::Paths`]) that replace the whole data are kept for the state that ends the
//! machine. A few references deliberately miss (`$.missing`), to compare the errors (in
//! Choice rules always; elsewhere while [`PENDING_ENGINE_FIXES`] does not hold them back).
//!
//! Values that no two runs share (`States.UUID`, `States.MathRandom`) sit only at the top of
//! a Parameters field whose key starts with [`RANDOM_KEY_PREFIX`]; the test compares their
//! shape, not their value.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

/// A construct the generator can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Construct {
    Pass,
    Choice,
    /// `Seconds: 0` only: LocalStack waits in real time.
    Wait,
    Succeed,
    Fail,
    /// `arn:aws:states:::lambda:invoke`, answered by the mock file.
    Task,
    /// Retry and Catch on Task states.
    RetryCatch,
    /// Intrinsic functions in Parameters, ResultSelector and Fail's ErrorPath/CausePath.
    Intrinsics,
    /// InputPath, ResultSelector, ResultPath, OutputPath beyond the default.
    Paths,
    /// Inline Map over an input array.
    Map,
    /// Parallel with two or three branches.
    Parallel,
    /// `QueryLanguage: JSONata` on single states (`Output` with `{% %}` expressions).
    Jsonata,
    /// Variables: `Assign` on the first state, read back as `$name` later.
    Assign,
}

/// Every construct the generator knows.
pub const ALL: &[Construct] = &[
    Construct::Pass,
    Construct::Choice,
    Construct::Wait,
    Construct::Succeed,
    Construct::Fail,
    Construct::Task,
    Construct::RetryCatch,
    Construct::Intrinsics,
    Construct::Paths,
    Construct::Map,
    Construct::Parallel,
    Construct::Jsonata,
    Construct::Assign,
];

/// What is compared today: everything but JSONata, which nton's interpreter still refuses at
/// load (the one line to change once it runs). Machines that read a variable are compared
/// with AWS's documented answer, not with LocalStack's: see [`reads_variables`].
pub const ENABLED: &[Construct] = &[
    Construct::Pass,
    Construct::Choice,
    Construct::Wait,
    Construct::Succeed,
    Construct::Fail,
    Construct::Task,
    Construct::RetryCatch,
    Construct::Intrinsics,
    Construct::Paths,
    Construct::Map,
    Construct::Parallel,
    Construct::Assign,
];

/// The variables the first state may assign, each from an input field (`Assign` with
/// `"<name>.$": "<path>"`), in the order [`Gen::assign_state`] takes them.
pub const VARIABLES: &[(&str, &str)] = &[("va", "$.n"), ("vb", "$.strs"), ("vc", "$.obj")];

/// The key prefix of a Parameters field that reads a variable: `var_<name><j>.$`, so that a
/// result names the variable it holds.
pub const VARIABLE_KEY_PREFIX: &str = "var_";

/// Whether the machine reads a variable (`"$name"` in a `.$` field). LocalStack 2026.3.0
/// evaluates every variable reference, in JSONPath states too, as a JSONata expression on a
/// JVM (`localstack/services/stepfunctions/asl/component/common/string/string_expression.py`,
/// `StringVariableSample`, calling `asl/jsonata/jsonata.py`'s `eval_jsonata_expression`),
/// and installs that JVM on first use: Java 21 from GitHub and `com.dashjoin:jsonata` from
/// Maven Central (`services/stepfunctions/packages.py`). Where neither can be reached (this
/// workplace) each read fails the execution with `States.Runtime` "PackageException
/// (Installation of java 21 failed.)" after about 10 s of download retries, one execution at a
/// time (the installer holds a lock), so a run of a few hundred machines outlasts any limit;
/// inside a Parallel branch LocalStack then fails again renaming the error ("Custom Error
/// Names MUST NOT begin with the prefix 'States.'"). Such machines do not go to LocalStack:
/// nton's trace is held to the developer guide's answer instead (the value assigned).
pub fn reads_variables(definition: &Value) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(fields) => fields.iter().any(|(k, v)| {
                (k.ends_with(".$")
                    && v.as_str()
                        .is_some_and(|s| VARIABLES.iter().any(|(name, _)| s == format!("${name}"))))
                    || walk(v)
            }),
            Value::Array(items) => items.iter().any(walk),
            _ => false,
        }
    }
    walk(definition)
}

/// A narrow construct the generator leaves out while nton's interpreter answers it
/// differently from AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Avoid {
    /// A JSONPath outside Choice rules (Parameters, intrinsic arguments, ResultSelector,
    /// OutputPath) that is not in the state's input.
    MissingPath,
}

/// A bug of nton's interpreter found by the differential test, with a minimal reproduction.
pub struct PendingFix {
    pub avoid: Avoid,
    pub bug: &'static str,
    pub repro: &'static str,
}

/// Bugs in `nton_engine::asl` (not this crate's to fix): each keeps the generator from
/// producing exactly its construct until the interpreter is fixed and the entry removed.
/// Empty since the States.Runtime causes of a missing JSONPath (in an intrinsic's argument,
/// an OutputPath or InputPath) are worded as AWS words them (issue 11 item 3; the tests are
/// in `nton_engine::asl`'s payload and interp tests).
pub const PENDING_ENGINE_FIXES: &[PendingFix] = &[];

/// Constructs kept out because LocalStack answers them unlike AWS in a way the test cannot
/// yet tell apart from a divergence (none today; a missing JSONPath once was, before the
/// departure `states-all-retries-states-runtime` named why).
const AVOIDED_FOR_LOCALSTACK: &[Avoid] = &[];

fn avoided(avoid: Avoid) -> bool {
    PENDING_ENGINE_FIXES.iter().any(|p| p.avoid == avoid) || AVOIDED_FOR_LOCALSTACK.contains(&avoid)
}

/// The key prefix of Parameters fields that hold a value no two runs share.
pub const RANDOM_KEY_PREFIX: &str = "random_";

/// The Lambda function every Task state invokes (the mock answers for it).
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:nton-gen";

/// One mocked answer of a Task state.
#[derive(Debug, Clone, PartialEq)]
pub enum MockAnswer {
    Return(Value),
    Throw { error: String, cause: String },
}

/// A generated machine, its input, and its Task states' answers in invocation order (the
/// last one repeats).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub name: String,
    pub definition: Value,
    pub input: Value,
    pub mocks: BTreeMap<String, Vec<MockAnswer>>,
}

/// The machine of `(seed, index)` using only `enabled` constructs.
pub fn generate(seed: u64, index: u64, enabled: &[Construct]) -> Generated {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // One stream per machine, so a machine does not depend on the ones before it.
    rng.set_stream(index);
    let input = input(&mut rng);
    let mut g = Gen {
        rng,
        on: enabled.iter().copied().collect(),
        obj_keys: input["obj"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), Ty::of(v))).collect())
            .unwrap_or_default(),
        arr_len: input["arr"].as_array().map_or(0, Vec::len),
        vars: Vec::new(),
        mocks: BTreeMap::new(),
    };
    let definition = g.machine();
    // Pruned states need no answers.
    let mut mocks = g.mocks;
    mocks.retain(|state, _| definition["States"].get(state).is_some());
    Generated { name: format!("gen-{seed}-{index}"), definition, input, mocks }
}

/// The mock file (`SFN_MOCK_CONFIG`) for these machines: one test case, `Case`, per machine.
pub fn mock_config(machines: &[&Generated]) -> Value {
    let mut state_machines = Map::new();
    let mut responses = Map::new();
    for m in machines {
        let mut case = Map::new();
        for (state, answers) in &m.mocks {
            let name = format!("{}-{state}", m.name);
            case.insert(state.clone(), json!(name));
            let mut entries = Map::new();
            for (i, answer) in answers.iter().enumerate() {
                // The last answer repeats for every further invocation.
                let key = if i + 1 == answers.len() { format!("{i}-999") } else { i.to_string() };
                let entry = match answer {
                    MockAnswer::Return(v) => json!({"Return": v}),
                    MockAnswer::Throw { error, cause } => {
                        json!({"Throw": {"Error": error, "Cause": cause}})
                    }
                };
                entries.insert(key, entry);
            }
            responses.insert(name, Value::Object(entries));
        }
        state_machines.insert(m.name.clone(), json!({"TestCases": {"Case": case}}));
    }
    json!({"StateMachines": state_machines, "MockedResponses": responses})
}

/// The test case name [`mock_config`] gives every machine.
pub const TEST_CASE: &str = "Case";

/// Whether the machine runs branches or iterations whose states may enter in any order.
pub fn has_concurrency(definition: &Value) -> bool {
    definition.to_string().contains("\"Type\":\"Parallel\"")
        || definition.to_string().contains("\"Type\":\"Map\"")
}

// ---- input --------------------------------------------------------------------------------

const WORDS: &[&str] = &["ab", "cd", "x", "yz", "alpha", "beta", "a b", "Z9", "", "é"];
const OBJ_KEYS: &[&str] = &["k", "b", "a2", "zed", "m1", "c"];

/// The execution input: a fixed set of top-level fields with random values.
fn input(rng: &mut ChaCha8Rng) -> Value {
    let word = |rng: &mut ChaCha8Rng| WORDS.choose(rng).unwrap().to_string();
    let mut obj = Map::new();
    let mut keys: Vec<&str> = OBJ_KEYS.to_vec();
    // A random subset of the keys. (Their order does not survive: this crate's serde_json
    // keeps object keys sorted, so key order is not explored.)
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.random_range(0..=i));
    }
    for key in keys.iter().take(rng.random_range(1..=4)) {
        let v =
            if rng.random_bool(0.5) { json!(rng.random_range(-9..=9)) } else { json!(word(rng)) };
        obj.insert(key.to_string(), v);
    }
    let mut obj2 = Map::new();
    for key in OBJ_KEYS.iter().take(rng.random_range(0..=3)) {
        obj2.insert(key.to_string(), json!(rng.random_range(0..=5)));
    }
    let arr: Vec<i64> = (0..rng.random_range(0..=6)).map(|_| rng.random_range(0..=4)).collect();
    let strs: Vec<String> = (0..rng.random_range(0..=4)).map(|_| word(rng)).collect();
    let s = (0..rng.random_range(1..=3)).map(|_| word(rng)).collect::<Vec<_>>().join(",");
    let nested = json!({"v": rng.random_range(0..=3), "w": [word(rng)]});
    let json_text = [
        nested.to_string(),
        json!(arr).to_string(),
        rng.random_range(-5..=5).to_string(),
        json!(word(rng)).to_string(),
    ]
    .choose(rng)
    .unwrap()
    .clone();
    json!({
        "n": rng.random_range(-20..=20),
        "m": rng.random_range(0..=6),
        "x": ([1.5, -0.5, 2.0, 7.25, 0.0])[rng.random_range(0..5)],
        "s": s,
        "t": word(rng),
        "flag": rng.random_bool(0.5),
        "nul": null,
        "arr": arr,
        "strs": strs,
        "obj": obj,
        "obj2": obj2,
        "json": json_text,
        "b64": base64_of(&word(rng)),
    })
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The type of a value a path or an intrinsic gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    Num,
    Str,
    Bool,
    Null,
    IntArr,
    StrArr,
    Obj,
}

impl Ty {
    fn of(v: &Value) -> Ty {
        match v {
            Value::Number(n) if n.is_i64() => Ty::Int,
            Value::Number(_) => Ty::Num,
            Value::String(_) => Ty::Str,
            Value::Bool(_) => Ty::Bool,
            Value::Null => Ty::Null,
            Value::Array(_) => Ty::IntArr,
            Value::Object(_) => Ty::Obj,
        }
    }
}

/// The input's top-level fields by type.
const ROOT: &[(&str, Ty)] = &[
    ("n", Ty::Int),
    ("m", Ty::Int),
    ("x", Ty::Num),
    ("s", Ty::Str),
    ("t", Ty::Str),
    ("flag", Ty::Bool),
    ("nul", Ty::Null),
    ("arr", Ty::IntArr),
    ("strs", Ty::StrArr),
    ("obj", Ty::Obj),
    ("obj2", Ty::Obj),
];

// ---- machines -----------------------------------------------------------------------------

struct Gen {
    rng: ChaCha8Rng,
    on: BTreeSet<Construct>,
    /// The input's `obj` fields (the scope of a state with `InputPath: $.obj`).
    obj_keys: Vec<(String, Ty)>,
    /// The length of the input's `arr`.
    arr_len: usize,
    /// Variables the first state assigns.
    vars: Vec<String>,
    mocks: BTreeMap<String, Vec<MockAnswer>>,
}

/// Where a state's paths read from.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    Root,
    Obj,
}

impl Gen {
    fn on(&self, c: Construct) -> bool {
        self.on.contains(&c)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn machine(&mut self) -> Value {
        let count = self.rng.random_range(2..=7);
        let mut states = Map::new();
        for i in 0..count {
            let name = format!("S{i}");
            let last = i + 1 == count;
            let state = self.state(i, count, last);
            states.insert(name, state);
        }
        let mut definition = json!({
            "Comment": "generated by nton-tests sfn_gen",
            "StartAt": "S0",
            "States": states,
        });
        prune_unreachable(&mut definition);
        definition
    }

    /// The name of a random state after `i`.
    fn later(&mut self, i: usize, count: usize) -> String {
        format!("S{}", self.rng.random_range(i + 1..count))
    }

    fn state(&mut self, i: usize, count: usize, last: bool) -> Value {
        if i == 0 && self.on(Construct::Assign) && !last && self.chance(0.5) {
            return self.assign_state(i);
        }
        let mut kinds = vec![Construct::Pass];
        for c in [Construct::Task, Construct::Map, Construct::Parallel, Construct::Jsonata] {
            if self.on(c) {
                kinds.push(c);
            }
        }
        if !last {
            for c in [Construct::Choice, Construct::Wait] {
                if self.on(c) {
                    kinds.push(c);
                }
            }
        }
        for c in [Construct::Succeed, Construct::Fail] {
            // In the middle only now and then: what follows becomes reachable only through
            // a Choice or a Catch.
            if self.on(c) && (last || self.chance(0.1)) {
                kinds.push(c);
            }
        }
        let kind = *kinds.choose(&mut self.rng).unwrap();
        let next = (!last).then(|| format!("S{}", i + 1));
        let mut state = match kind {
            Construct::Pass => self.pass(i, last),
            Construct::Task => self.task(i, count, last),
            Construct::Choice => return self.choice(i, count),
            Construct::Wait => json!({"Type": "Wait", "Seconds": 0}),
            Construct::Succeed => return self.succeed(),
            Construct::Fail => return self.fail(),
            Construct::Map => self.map(i),
            Construct::Parallel => self.parallel(i),
            Construct::Jsonata => self.jsonata(i),
            _ => unreachable!("not a state kind"),
        };
        if kind != Construct::Jsonata && kind != Construct::Wait {
            self.input_output_paths(&mut state, i, last);
        }
        match next {
            Some(next) => state["Next"] = json!(next),
            None => state["End"] = json!(true),
        }
        state
    }

    /// InputPath, ResultPath and OutputPath of a Pass, Task, Map or Parallel state.
    fn input_output_paths(&mut self, state: &mut Value, i: usize, last: bool) {
        let paths = self.on(Construct::Paths);
        if paths && state.get("InputPath").is_none() && self.chance(0.15) {
            state["InputPath"] = json!("$");
        }
        let result_path = if last && paths {
            [None, Some(json!("$")), Some(json!(format!("$.r{i}"))), Some(Value::Null)]
                .choose(&mut self.rng)
                .unwrap()
                .clone()
        } else if paths {
            [Some(json!(format!("$.r{i}"))), Some(json!(format!("$.obj.r{i}"))), Some(Value::Null)]
                .choose(&mut self.rng)
                .unwrap()
                .clone()
        } else {
            Some(json!(format!("$.r{i}")))
        };
        if let Some(p) = result_path {
            state["ResultPath"] = p;
        }
        if paths && last && self.chance(0.3) {
            let mut choices = vec!["$".to_string()];
            let result_at_r = state["ResultPath"] == json!(format!("$.r{i}"));
            // The input's fields are still there unless the result replaced them.
            let input_kept = match state.get("ResultPath") {
                Some(Value::Null) => true,
                Some(Value::String(p)) => p != "$",
                _ => false,
            };
            if !avoided(Avoid::MissingPath) {
                choices.push("$.missing".to_string());
            }
            if input_kept || !avoided(Avoid::MissingPath) {
                choices.push("$.obj".to_string());
            }
            if result_at_r || !avoided(Avoid::MissingPath) {
                choices.push(format!("$.r{i}"));
            }
            state["OutputPath"] = json!(choices.choose(&mut self.rng).unwrap());
        }
    }

    fn scope(&mut self, state: &mut Value) -> Scope {
        if self.on(Construct::Paths) && self.chance(0.2) {
            state["InputPath"] = json!("$.obj");
            Scope::Obj
        } else {
            Scope::Root
        }
    }

    fn pass(&mut self, i: usize, _last: bool) -> Value {
        let mut state = json!({"Type": "Pass"});
        match self.rng.random_range(0..3) {
            0 => {
                state["Result"] = json!({"fixed": i, "list": [1, "two", null]});
            }
            1 => {
                let scope = self.scope(&mut state);
                state["Parameters"] = self.payload(scope, true);
            }
            _ => {}
        }
        state
    }

    /// A Parameters-style object: a few fields, static, paths, intrinsics, the context
    /// object, variables.
    fn payload(&mut self, scope: Scope, allow_random: bool) -> Value {
        let mut fields = Map::new();
        let count = self.rng.random_range(1..=3);
        for j in 0..count {
            let roll = self.rng.random_range(0..10);
            if roll < 2 {
                fields.insert(format!("lit{j}"), json!([j, "v", {"deep": true}]));
            } else if roll < 5 || !self.on(Construct::Intrinsics) {
                let path = self.path(scope, None);
                fields.insert(format!("p{j}.$"), json!(path));
            } else if roll == 5 && allow_random && self.on(Construct::Intrinsics) {
                let call = if self.chance(0.5) {
                    "States.UUID()".to_string()
                } else {
                    let lo = self.rng.random_range(-5..=5);
                    format!("States.MathRandom({lo}, {})", lo + self.rng.random_range(1..=9))
                };
                fields.insert(format!("{RANDOM_KEY_PREFIX}{j}.$"), json!(call));
            } else if roll == 6 && !self.vars.is_empty() {
                let var = self.vars.choose(&mut self.rng).unwrap().clone();
                fields.insert(format!("{VARIABLE_KEY_PREFIX}{var}{j}.$"), json!(format!("${var}")));
            } else if roll == 7 {
                let ctx = ["$$.State.Name", "$$.StateMachine.Name", "$$.Execution.Input.n"]
                    .choose(&mut self.rng)
                    .unwrap();
                fields.insert(format!("ctx{j}.$"), json!(ctx));
            } else {
                let ty = *[Ty::Int, Ty::Str, Ty::Bool, Ty::IntArr, Ty::StrArr, Ty::Obj]
                    .choose(&mut self.rng)
                    .unwrap();
                let e = self.intrinsic(ty, scope, 2);
                fields.insert(format!("f{j}.$"), json!(e));
            }
        }
        if self.chance(0.15) {
            let inner = self.payload(scope, false);
            fields.insert("nested".into(), inner);
        }
        Value::Object(fields)
    }

    /// A path to a field of type `ty` (any type when `None`) in `scope`; now and then one
    /// that misses.
    fn path(&mut self, scope: Scope, ty: Option<Ty>) -> String {
        let may_miss = !avoided(Avoid::MissingPath);
        if may_miss && self.chance(0.03) {
            return "$.missing".into();
        }
        let fields: Vec<(String, Ty)> = match scope {
            Scope::Root => ROOT.iter().map(|(k, t)| (k.to_string(), *t)).collect(),
            Scope::Obj => self.obj_keys.clone(),
        };
        let matching: Vec<&(String, Ty)> =
            fields.iter().filter(|(_, t)| ty.is_none_or(|ty| *t == ty)).collect();
        match matching.choose(&mut self.rng) {
            Some((k, _)) => {
                let indexes = if may_miss { 3 } else { self.arr_len.min(3) };
                if scope == Scope::Root && k == "arr" && indexes > 0 && self.chance(0.2) {
                    format!("$.arr[{}]", self.rng.random_range(0..indexes))
                } else {
                    format!("$.{k}")
                }
            }
            None if scope == Scope::Obj => "$".into(),
            None => "$.missing".into(),
        }
    }

    /// `root_path` when the state reads the input's top level, else a field of `ty` in scope.
    fn field(&mut self, scope: Scope, root_path: &str, ty: Ty) -> String {
        match scope {
            Scope::Root => root_path.to_string(),
            Scope::Obj => self.path(scope, Some(ty)),
        }
    }

    fn literal_str(&mut self) -> String {
        let w = ["abc", "x y", "", "Q", "1,2"].choose(&mut self.rng).unwrap();
        format!("'{w}'")
    }

    /// An intrinsic call (or a path) giving a value of `ty`.
    fn intrinsic(&mut self, ty: Ty, scope: Scope, depth: u32) -> String {
        // Arguments from the root scope: paths of `obj` rarely have the right type.
        let s = if scope == Scope::Obj { Scope::Obj } else { Scope::Root };
        let leaf = depth == 0 || self.chance(0.35);
        let arg = |g: &mut Gen, ty: Ty| -> String {
            if depth == 0 || g.chance(0.6) {
                if scope == Scope::Obj {
                    g.path(s, Some(ty))
                } else {
                    g.path(Scope::Root, Some(ty))
                }
            } else {
                g.intrinsic(ty, scope, depth - 1)
            }
        };
        match ty {
            Ty::Int => match self.rng.random_range(0..5) {
                _ if leaf => self.path(s, Some(Ty::Int)),
                0 => format!("States.ArrayLength({})", arg(self, Ty::IntArr)),
                1 => {
                    let b = if self.chance(0.8) {
                        self.rng.random_range(-3..=3).to_string()
                    } else {
                        arg(self, Ty::Int)
                    };
                    format!("States.MathAdd({}, {b})", arg(self, Ty::Int))
                }
                2 => format!(
                    "States.ArrayGetItem({}, {})",
                    arg(self, Ty::IntArr),
                    self.rng.random_range(0..3)
                ),
                _ => format!("States.ArrayLength({})", arg(self, Ty::StrArr)),
            },
            Ty::Str => match self.rng.random_range(0..7) {
                _ if leaf => self.path(s, Some(Ty::Str)),
                0 => {
                    let holes = self.rng.random_range(0..=3);
                    let mut template = String::from("v");
                    let mut args = Vec::new();
                    for h in 0..holes {
                        template.push_str(&format!(" {{}}-{h}"));
                        let t = *[Ty::Int, Ty::Str, Ty::Bool, Ty::Null, Ty::Num]
                            .choose(&mut self.rng)
                            .unwrap();
                        let hole = if t == Ty::Str { arg(self, t) } else { self.path(s, Some(t)) };
                        // `$` (an object: no field of that type in scope) is not a value the
                        // developer guide lets States.Format take, and LocalStack formats it
                        // anyway ("{x=1.5}", gen-2-38): a literal instead.
                        args.push(if hole == "$" { self.literal_str() } else { hole });
                    }
                    let mut call = format!("States.Format('{template}'");
                    for a in args {
                        call.push_str(", ");
                        call.push_str(&a);
                    }
                    call.push(')');
                    call
                }
                1 => {
                    let p = self.path(s, None);
                    format!("States.JsonToString({p})")
                }
                2 => format!("States.Base64Encode({})", arg(self, Ty::Str)),
                3 => format!("States.Base64Decode({})", self.field(scope, "$.b64", Ty::Str)),
                4 => {
                    let alg = ["MD5", "SHA-1", "SHA-256", "SHA-384", "SHA-512"]
                        .choose(&mut self.rng)
                        .unwrap();
                    format!("States.Hash({}, '{alg}')", arg(self, Ty::Str))
                }
                5 => format!(
                    "States.ArrayGetItem({}, {})",
                    self.field(scope, "$.strs", Ty::StrArr),
                    self.rng.random_range(0..3)
                ),
                _ => format!("States.Format({})", self.literal_str()),
            },
            Ty::Bool => match self.rng.random_range(0..2) {
                _ if leaf => self.path(s, Some(Ty::Bool)),
                0 => format!(
                    "States.ArrayContains({}, {})",
                    arg(self, Ty::IntArr),
                    self.rng.random_range(0..5)
                ),
                _ => format!(
                    "States.ArrayContains({}, {})",
                    self.field(scope, "$.strs", Ty::StrArr),
                    arg(self, Ty::Str)
                ),
            },
            Ty::IntArr => match self.rng.random_range(0..4) {
                _ if leaf => self.path(s, Some(Ty::IntArr)),
                0 => {
                    let items: Vec<String> =
                        (0..self.rng.random_range(0..=3)).map(|_| arg(self, Ty::Int)).collect();
                    format!("States.Array({})", items.join(", "))
                }
                1 => {
                    let a = self.rng.random_range(-3..=5);
                    let b = self.rng.random_range(-3..=8);
                    let step = *[1, 2, 3, -1, -2].choose(&mut self.rng).unwrap();
                    format!("States.ArrayRange({a}, {b}, {step})")
                }
                // A path, not a call: States.ArrayPartition gives an array of arrays.
                2 => format!("States.ArrayUnique({})", self.path(s, Some(Ty::IntArr))),
                _ => format!(
                    "States.ArrayPartition({}, {})",
                    arg(self, Ty::IntArr),
                    self.rng.random_range(1..=3)
                ),
            },
            Ty::StrArr => match self.rng.random_range(0..3) {
                _ if leaf => self.path(s, Some(Ty::StrArr)),
                0 => {
                    let delim = [",", " ", "b", ",,"].choose(&mut self.rng).unwrap();
                    format!("States.StringSplit({}, '{delim}')", arg(self, Ty::Str))
                }
                1 => format!("States.ArrayUnique({})", arg(self, Ty::StrArr)),
                _ => format!("States.Array({}, {})", arg(self, Ty::Str), self.literal_str()),
            },
            Ty::Obj => match self.rng.random_range(0..2) {
                _ if leaf => self.path(s, Some(Ty::Obj)),
                0 => format!(
                    "States.JsonMerge({}, {}, false)",
                    self.field(scope, "$.obj", Ty::Obj),
                    self.field(scope, "$.obj2", Ty::Obj)
                ),
                _ => format!("States.StringToJson({})", self.field(scope, "$.json", Ty::Str)),
            },
            Ty::Num | Ty::Null => self.path(s, Some(ty)),
        }
    }

    fn task(&mut self, i: usize, count: usize, last: bool) -> Value {
        let name = format!("S{i}");
        let mut state = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke"});
        let scope = self.scope(&mut state);
        let payload = if self.chance(0.3) {
            json!({"FunctionName": FUNCTION_ARN, "Payload.$": "$"})
        } else {
            json!({"FunctionName": FUNCTION_ARN, "Payload": self.payload(scope, false)})
        };
        state["Parameters"] = payload;
        let answer = json!({
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": {"x": self.rng.random_range(0..9), "y": WORDS.choose(&mut self.rng).unwrap()},
        });
        if self.on(Construct::Paths) && self.chance(0.5) {
            let kinds = if avoided(Avoid::MissingPath) { 2 } else { 3 };
            state["ResultSelector"] = match self.rng.random_range(0..kinds) {
                0 => json!({"x.$": "$.Payload.x", "code.$": "$.StatusCode"}),
                1 => {
                    json!({"p.$": "$.Payload", "len.$": "States.ArrayLength(States.Array($.Payload.x, $.Payload.y))"})
                }
                _ => json!({"gone.$": "$.Payload.nothing"}),
            };
        }
        const ERRORS: &[&str] = &["Custom.A", "Custom.B", "Lambda.ServiceException"];
        let mut answers = Vec::new();
        let throws = if self.on(Construct::RetryCatch) { self.rng.random_range(0..=3) } else { 0 };
        for t in 0..throws {
            let error = ERRORS.choose(&mut self.rng).unwrap().to_string();
            answers
                .push(MockAnswer::Throw { cause: format!("mocked failure {t} of {name}"), error });
        }
        if throws == 0 || self.chance(0.7) {
            answers.push(MockAnswer::Return(answer));
        }
        self.mocks.insert(name, answers);
        if self.on(Construct::RetryCatch) {
            if self.chance(0.6) {
                let retriers: Vec<Value> = (0..self.rng.random_range(1..=2))
                    .map(|_| {
                        let mut errors = vec![
                            *[
                                "Custom.A",
                                "Custom.B",
                                "States.TaskFailed",
                                "States.ALL",
                                "Lambda.ServiceException",
                            ]
                            .choose(&mut self.rng)
                            .unwrap(),
                        ];
                        if errors[0] != "States.ALL" && self.chance(0.3) {
                            errors.push("Custom.B");
                        }
                        json!({
                            "ErrorEquals": errors,
                            "IntervalSeconds": 1,
                            "MaxAttempts": self.rng.random_range(0..=2),
                            "BackoffRate": ([1.0, 1.5])[self.rng.random_range(0..2)],
                        })
                    })
                    .collect();
                // States.ALL must be alone in its retrier and the last one.
                let mut retriers = retriers;
                if let Some(pos) = retriers.iter().position(|r| r["ErrorEquals"][0] == "States.ALL")
                {
                    retriers.truncate(pos + 1);
                }
                state["Retry"] = json!(retriers);
            }
            if !last && self.chance(0.6) {
                let errors = [
                    vec!["Custom.A"],
                    vec!["States.TaskFailed"],
                    vec!["States.ALL"],
                    vec!["Custom.B", "Lambda.ServiceException"],
                ]
                .choose(&mut self.rng)
                .unwrap()
                .clone();
                let mut catcher = json!({"ErrorEquals": errors, "Next": self.later(i, count)});
                // Without a ResultPath the error output would replace the input that later
                // states read.
                catcher["ResultPath"] =
                    if self.chance(0.7) { json!(format!("$.e{i}")) } else { Value::Null };
                state["Catch"] = json!([catcher]);
            }
        }
        state
    }

    fn choice(&mut self, i: usize, count: usize) -> Value {
        let rules: Vec<Value> = (0..self.rng.random_range(1..=3))
            .map(|_| {
                let mut rule = self.rule(2);
                rule["Next"] = json!(self.later(i, count));
                rule
            })
            .collect();
        let mut state = json!({"Type": "Choice", "Choices": rules});
        if self.chance(0.85) {
            state["Default"] = json!(self.later(i, count));
        }
        state
    }

    fn rule(&mut self, depth: u32) -> Value {
        if depth > 0 && self.chance(0.2) {
            let op = ["And", "Or", "Not"].choose(&mut self.rng).unwrap();
            if *op == "Not" {
                return json!({"Not": self.rule(depth - 1)});
            }
            let inner: Vec<Value> =
                (0..self.rng.random_range(1..=2)).map(|_| self.rule(depth - 1)).collect();
            return json!({ *op: inner });
        }
        // Now and then a type the operator does not expect.
        let mismatch = self.chance(0.08);
        match self.rng.random_range(0..6) {
            0 => {
                let ty = if mismatch { Ty::Str } else { Ty::Int };
                let op = [
                    "NumericEquals",
                    "NumericLessThan",
                    "NumericGreaterThan",
                    "NumericLessThanEquals",
                    "NumericGreaterThanEquals",
                ]
                .choose(&mut self.rng)
                .unwrap();
                let var = self.path(Scope::Root, Some(ty));
                if self.chance(0.3) {
                    let other = self.path(Scope::Root, Some(Ty::Int));
                    json!({"Variable": var, format!("{op}Path"): other})
                } else if self.chance(0.2) {
                    let literal =
                        [json!(0.0), json!(1.5), json!(2)][self.rng.random_range(0..3)].clone();
                    json!({"Variable": "$.x", *op: literal})
                } else {
                    json!({"Variable": var, *op: self.rng.random_range(-5..=5)})
                }
            }
            1 => {
                let ty = if mismatch { Ty::Int } else { Ty::Str };
                let op = ["StringEquals", "StringLessThan", "StringGreaterThanEquals"]
                    .choose(&mut self.rng)
                    .unwrap();
                let var = self.path(Scope::Root, Some(ty));
                json!({"Variable": var, *op: *WORDS.choose(&mut self.rng).unwrap()})
            }
            2 => {
                let pattern = ["a*", "*b*", "*", "x", "a\\*"].choose(&mut self.rng).unwrap();
                json!({"Variable": self.path(Scope::Root, Some(Ty::Str)), "StringMatches": pattern})
            }
            3 => {
                let ty = if mismatch { Ty::Int } else { Ty::Bool };
                json!({"Variable": self.path(Scope::Root, Some(ty)), "BooleanEquals": self.chance(0.5)})
            }
            _ => {
                let test = ["IsPresent", "IsNull", "IsNumeric", "IsString", "IsBoolean"]
                    .choose(&mut self.rng)
                    .unwrap();
                let var = if self.chance(0.2) {
                    "$.missing".to_string()
                } else {
                    self.path(Scope::Root, None)
                };
                json!({"Variable": var, *test: self.chance(0.7)})
            }
        }
    }

    fn succeed(&mut self) -> Value {
        let mut state = json!({"Type": "Succeed"});
        if self.on(Construct::Paths) && self.chance(0.3) {
            let mut choices = vec!["$.obj", "$.arr", "$"];
            if !avoided(Avoid::MissingPath) {
                // Exists only when S1 ran and put its result there.
                choices.push("$.r1");
            }
            state["OutputPath"] = json!(*choices.choose(&mut self.rng).unwrap());
        }
        state
    }

    fn fail(&mut self) -> Value {
        let mut state = json!({"Type": "Fail"});
        match self.rng.random_range(0..4) {
            0 => {
                state["Error"] = json!("Gen.Failed");
                state["Cause"] = json!("generated failure");
            }
            1 => {
                state["Error"] = json!("Gen.Failed");
            }
            2 if self.on(Construct::Intrinsics) => {
                state["ErrorPath"] = json!("$.t");
                state["CausePath"] = json!(self.intrinsic(Ty::Str, Scope::Root, 1));
            }
            _ => {}
        }
        state
    }

    fn assign_state(&mut self, _i: usize) -> Value {
        let mut assign = Map::new();
        for &(name, path) in VARIABLES.iter().take(self.rng.random_range(1..=3)) {
            assign.insert(format!("{name}.$"), json!(path));
            self.vars.push(name.to_string());
        }
        json!({"Type": "Pass", "Assign": assign, "Next": "S1"})
    }

    fn map(&mut self, i: usize) -> Value {
        let items = ["$.arr", "$.strs"].choose(&mut self.rng).unwrap();
        let inner = format!("S{i}M0");
        let mut processor_states = Map::new();
        processor_states.insert(
            inner.clone(),
            json!({"Type": "Pass", "Parameters": {"item.$": "$.item", "index.$": "$.index", "twice.$": "States.Array($.item, $.item)"}, "End": true}),
        );
        json!({
            "Type": "Map",
            "ItemsPath": items,
            "ItemSelector": {"item.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
            // One at a time: the states inside enter in a defined order.
            "MaxConcurrency": 1,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": inner,
                "States": processor_states,
            },
        })
    }

    fn parallel(&mut self, i: usize) -> Value {
        let branches: Vec<Value> = (0..self.rng.random_range(2..=3))
            .map(|b| {
                let name = format!("S{i}B{b}");
                let mut states = Map::new();
                let body = if self.chance(0.15) {
                    json!({"Type": "Fail", "Error": format!("Branch{b}.Failed"), "Cause": "branch failed"})
                } else {
                    let payload = self.payload(Scope::Root, false);
                    json!({"Type": "Pass", "Parameters": payload, "End": true})
                };
                states.insert(name.clone(), body);
                json!({"StartAt": name, "States": states})
            })
            .collect();
        json!({"Type": "Parallel", "Branches": branches})
    }

    fn jsonata(&mut self, i: usize) -> Value {
        let expr = [
            "$states.input.n + $states.input.m",
            "$uppercase($states.input.t)",
            "$count($states.input.arr)",
            "$sum($states.input.arr)",
            "$string($states.input.flag)",
            "$states.input.s & '-' & $states.input.t",
            "$states.input.arr[0]",
            "$keys($states.input.obj)",
        ]
        .choose(&mut self.rng)
        .unwrap();
        json!({
            "Type": "Pass",
            "QueryLanguage": "JSONata",
            "Output": format!("{{% $merge([$states.input, {{'r{i}': {expr}}}]) %}}"),
        })
    }
}

/// Removes the states no transition reaches from StartAt (a Succeed or Fail in the middle
/// cuts the line).
pub fn prune_unreachable(definition: &mut Value) {
    let reachable = reachable_states(definition);
    if let Some(states) = definition["States"].as_object_mut() {
        states.retain(|name, _| reachable.contains(name));
    }
}

/// The states reachable from StartAt.
pub fn reachable_states(definition: &Value) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![definition["StartAt"].as_str().unwrap_or_default().to_string()];
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let state = &definition["States"][&name];
        todo.extend(targets(state));
    }
    seen
}

/// Every state name a state may go to.
pub fn targets(state: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: &Value| {
        if let Some(s) = v.as_str() {
            out.push(s.to_string());
        }
    };
    push(&state["Next"]);
    push(&state["Default"]);
    for rule in state["Choices"].as_array().into_iter().flatten() {
        push(&rule["Next"]);
    }
    for catcher in state["Catch"].as_array().into_iter().flatten() {
        push(&catcher["Next"]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_and_index_give_the_same_machine_every_time() {
        for index in 0..50 {
            assert_eq!(generate(7, index, ALL), generate(7, index, ALL));
        }
        let distinct: BTreeSet<String> =
            (0..50).map(|i| generate(7, i, ENABLED).definition.to_string()).collect();
        assert!(distinct.len() > 45, "only {} distinct machines", distinct.len());
        assert_ne!(generate(7, 0, ENABLED), generate(8, 0, ENABLED));
    }

    #[test]
    fn every_generated_machine_passes_ntons_loader() {
        for index in 0..500 {
            let m = generate(11, index, ENABLED);
            if let Err(e) = nton_engine::asl::StateMachine::from_json(&m.definition) {
                panic!(
                    "machine {index} is refused: {e}\n{}",
                    serde_json::to_string_pretty(&m.definition).unwrap()
                );
            }
            for state in m.mocks.keys() {
                assert_eq!(m.definition["States"][state]["Type"], "Task");
            }
        }
    }

    #[test]
    fn the_enabled_constructs_bound_what_is_generated() {
        let only_pass = [Construct::Pass];
        for index in 0..100 {
            let m = generate(3, index, &only_pass);
            for state in m.definition["States"].as_object().unwrap().values() {
                assert_eq!(state["Type"], "Pass", "{state}");
                assert!(state.get("Parameters").is_none_or(|p| !p.to_string().contains("States.")));
            }
        }
        let with_all: String =
            (0..200).map(|i| generate(3, i, ALL).definition.to_string()).collect();
        for needle in ["\"Map\"", "\"Parallel\"", "JSONata", "\"Assign\""] {
            assert!(with_all.contains(needle), "no {needle} with every construct on");
        }
    }
}
