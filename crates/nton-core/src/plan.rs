//! The run plan: which workflow, how many record ids, how they are split into array nodes.
//!
//! Everything a run's input may say is validated here, once, with errors that name the field,
//! the value and the limit. The rest of the code only ever sees a valid [`RunPlan`].

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Most array nodes a run may have: AWS Batch's largest array size.
pub const MAX_NODES: u32 = 10_000;

/// Most record ids one run may have. Init holds no more than one node's ids in memory at a time,
/// but it writes 37 bytes of prep per id to EFS and every stage touches a file per id; ten
/// million ids (25 times the original's claimed 400,000) bounds a mistyped input's cost.
pub const MAX_IDS: u32 = 10_000_000;

/// Longest wait between two checks of the stage jobs, in seconds.
pub const MAX_POLL_SECONDS: u32 = 3_600;

/// A run's plan could not be made: the message names the field, the value and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// An integer outside its allowed range.
    #[error("{field}: {value} is out of range (must be {rule})")]
    OutOfRange { field: &'static str, value: String, rule: String },
    /// A value that is not an integer at all (a string, a fraction, a boolean...).
    #[error("{field}: {value} is not an integer (must be {rule})")]
    NotAnInteger { field: &'static str, value: String, rule: String },
    /// More array nodes than AWS Batch allows in one array job.
    #[error(
        "ids/idsPerNode: {ids} ids in groups of {ids_per_node} make {nodes} nodes; \
         at most {MAX_NODES} nodes are allowed"
    )]
    TooManyNodes { ids: u64, ids_per_node: u64, nodes: u64 },
    /// A workflow id that is not a canonical UUID.
    #[error(
        "workflowId: {value} is not a canonical UUID (must be lowercase and hyphenated, \
         like 0f8fad5b-d9cb-469f-a165-70867728950e)"
    )]
    InvalidWorkflowId { value: String },
    /// The `retryNodes` list of a retry is not a usable list of this run's nodes.
    #[error("retryNodes: {problem} (must be {RETRY_NODES_RULE})")]
    InvalidRetryNodes { problem: String },
    /// The init event is not a JSON object.
    #[error(
        "init event: {value} is not a JSON object (must be an object such as \
         {{\"ids\": 400, \"idsPerNode\": 40}}, every field optional)"
    )]
    NotAnObject { value: String },
}

/// What a run's `retryNodes` must be, for error messages.
pub const RETRY_NODES_RULE: &str = "a list of 1 to 10000 distinct node numbers of the run, each below its node count, \
     with the run's workflowId";

/// The nodes a retry re-runs, in array order: array index `i` of the retry's stage jobs is
/// original node `nodes()[i]`. Validated against the run's plan: non-empty, at most
/// [`MAX_NODES`], no duplicate, every node one of the plan's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RetryNodes(Vec<u32>);

impl RetryNodes {
    /// Checks a list of nodes against the run's plan, keeping its order.
    pub fn new(nodes: Vec<u32>, plan: &RunPlan) -> Result<RetryNodes, PlanError> {
        let invalid = |problem: String| PlanError::InvalidRetryNodes { problem };
        if nodes.is_empty() {
            return Err(invalid("the list is empty".to_string()));
        }
        if nodes.len() > MAX_NODES as usize {
            return Err(invalid(format!("{} nodes is more than {MAX_NODES}", nodes.len())));
        }
        let mut seen = std::collections::BTreeSet::new();
        for &node in &nodes {
            if node >= plan.nodes {
                return Err(invalid(format!(
                    "node {node} is not a node of the run: {} ids in groups of {} make nodes \
                     0..={}",
                    plan.ids,
                    plan.ids_per_node,
                    plan.nodes - 1
                )));
            }
            if !seen.insert(node) {
                return Err(invalid(format!("node {node} is listed twice")));
            }
        }
        Ok(RetryNodes(nodes))
    }

    /// Reads the init event's `retryNodes` field (absent or null: not a retry) and checks it
    /// against the plan. A retry must name its run: without `workflowId` the list is refused.
    pub fn from_json(event: &Value, input: &PlanInput) -> Result<Option<RetryNodes>, PlanError> {
        let invalid = |problem: String| PlanError::InvalidRetryNodes { problem };
        let list = match event.get("retryNodes") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(invalid(format!("{} is not a list", brief(other))));
            }
        };
        let Some(workflow_id) = input.workflow_id else {
            return Err(invalid("a retry without workflowId names no run to re-run".to_string()));
        };
        if list.len() > MAX_NODES as usize {
            return Err(invalid(format!("{} nodes is more than {MAX_NODES}", list.len())));
        }
        let nodes = list
            .iter()
            .map(|value| {
                value
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| invalid(format!("{} is not a node number", brief(value))))
            })
            .collect::<Result<Vec<u32>, PlanError>>()?;
        let plan = RunPlan { workflow_id, ..input.to_plan() };
        RetryNodes::new(nodes, &plan).map(Some)
    }

    /// The original nodes, in array order.
    pub fn nodes(&self) -> &[u32] {
        &self.0
    }

    /// How many nodes the retry runs: its array size.
    pub fn len(&self) -> u32 {
        // new() bounds the length by MAX_NODES.
        self.0.len() as u32
    }

    /// Never true: a retry has at least one node.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A short rendering of a JSON value for an error message.
fn brief(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        None => text,
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// The id of one run. It names the run's directory on EFS and its prefix in S3, so only the
/// canonical hyphenated lowercase form is ever accepted: no two spellings name one run, and
/// nothing that could escape a directory (`..`, `/`) gets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkflowId(Uuid);

impl WorkflowId {
    /// A fresh random (v4) id.
    pub fn new_v4() -> Self {
        WorkflowId(Uuid::new_v4())
    }

    /// Parses the canonical form, e.g. `0f8fad5b-d9cb-469f-a165-70867728950e`.
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let invalid = || PlanError::InvalidWorkflowId { value: Value::from(text).to_string() };
        // uuid also accepts the simple, braced and URN forms and upper case; comparing with
        // the re-formatted value keeps exactly one spelling per id.
        let uuid = Uuid::try_parse(text).map_err(|_| invalid())?;
        let mut buffer = Uuid::encode_buffer();
        if uuid.hyphenated().encode_lower(&mut buffer) != text {
            return Err(invalid());
        }
        Ok(WorkflowId(uuid))
    }

    /// The UUID itself.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for WorkflowId {
    type Err = PlanError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        WorkflowId::parse(text)
    }
}

impl TryFrom<String> for WorkflowId {
    type Error = PlanError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        WorkflowId::parse(&text)
    }
}

impl From<WorkflowId> for String {
    fn from(id: WorkflowId) -> String {
        id.to_string()
    }
}

/// A validated plan: `ids` record ids in contiguous groups of `ids_per_node`, one group per
/// array node, `nodes` = ceil(ids / ids_per_node) in 1..=[`MAX_NODES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPlan {
    pub workflow_id: WorkflowId,
    pub ids: u32,
    pub ids_per_node: u32,
    pub nodes: u32,
}

impl RunPlan {
    /// Checks the numbers and derives the node count.
    pub fn new(workflow_id: WorkflowId, ids: u32, ids_per_node: u32) -> Result<RunPlan, PlanError> {
        let ids = IDS.check(u64::from(ids))?;
        let ids_per_node = IDS_PER_NODE.check(u64::from(ids_per_node))?;
        let nodes = node_count(ids, ids_per_node)?;
        Ok(RunPlan { workflow_id, ids, ids_per_node, nodes })
    }

    /// The positions (in the run's list of ids) of the ids that belong to `node`. Nodes are
    /// contiguous groups of `ids_per_node`; the last one holds the remainder. A node past the
    /// last gets an empty range.
    pub fn node_range(&self, node: u32) -> Range<usize> {
        let ids = self.ids as usize;
        let start = (node as usize).saturating_mul(self.ids_per_node as usize).min(ids);
        let end = start.saturating_add(self.ids_per_node as usize).min(ids);
        start..end
    }

    /// How many ids `node` holds.
    pub fn node_len(&self, node: u32) -> usize {
        self.node_range(node).len()
    }
}

/// ceil(ids / ids_per_node), rejected above [`MAX_NODES`].
fn node_count(ids: u32, ids_per_node: u32) -> Result<u32, PlanError> {
    let nodes = u64::from(ids).div_ceil(u64::from(ids_per_node));
    if nodes > u64::from(MAX_NODES) {
        return Err(PlanError::TooManyNodes {
            ids: u64::from(ids),
            ids_per_node: u64::from(ids_per_node),
            nodes,
        });
    }
    // nodes <= MAX_NODES, so it fits.
    Ok(nodes as u32)
}

/// One integer field of the init event and its allowed range.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
}

const IDS: Field = Field { name: "ids", min: 1, max: MAX_IDS };
const IDS_PER_NODE: Field = Field { name: "idsPerNode", min: 1, max: MAX_IDS };
const POLL_SECONDS: Field = Field { name: "pollSeconds", min: 1, max: MAX_POLL_SECONDS };

impl Field {
    fn rule(&self) -> String {
        format!("an integer in {}..={}", self.min, self.max)
    }

    fn out_of_range(&self, value: String) -> PlanError {
        PlanError::OutOfRange { field: self.name, value, rule: self.rule() }
    }

    fn check(&self, value: u64) -> Result<u32, PlanError> {
        if value < u64::from(self.min) || value > u64::from(self.max) {
            return Err(self.out_of_range(value.to_string()));
        }
        Ok(value as u32)
    }

    /// Reads the field from a JSON number. Whole floats (`40.0`) count as integers because a
    /// JSON producer may not distinguish them; fractions, strings and the rest do not.
    fn read_json(&self, value: &Value) -> Result<u32, PlanError> {
        let shown = value.to_string();
        match value {
            Value::Number(number) => {
                if let Some(n) = number.as_u64() {
                    self.check(n)
                } else if number.is_i64() {
                    Err(self.out_of_range(shown))
                } else {
                    let f = number.as_f64().unwrap_or(f64::NAN);
                    if f.fract() != 0.0 || !f.is_finite() {
                        Err(PlanError::NotAnInteger {
                            field: self.name,
                            value: shown,
                            rule: self.rule(),
                        })
                    } else if f < f64::from(self.min) || f > f64::from(self.max) {
                        Err(self.out_of_range(shown))
                    } else {
                        Ok(f as u32)
                    }
                }
            }
            _ => Err(PlanError::NotAnInteger { field: self.name, value: shown, rule: self.rule() }),
        }
    }
}

/// What a run uses when its input leaves a field out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanDefaults {
    pub ids: u32,
    pub ids_per_node: u32,
    pub poll_seconds: u32,
}

impl Default for PlanDefaults {
    /// 400 ids in groups of 40 (10 nodes), checked every 30 s.
    fn default() -> Self {
        PlanDefaults { ids: 400, ids_per_node: 40, poll_seconds: 30 }
    }
}

impl PlanDefaults {
    /// Checks each default against the same limits as a run's input, and that the default ids
    /// and group size together make at most [`MAX_NODES`] nodes.
    /// Takes u64 so that a value read from text is checked as written, not truncated first.
    pub fn new(ids: u64, ids_per_node: u64, poll_seconds: u64) -> Result<PlanDefaults, PlanError> {
        let ids = IDS.check(ids)?;
        let ids_per_node = IDS_PER_NODE.check(ids_per_node)?;
        let poll_seconds = POLL_SECONDS.check(poll_seconds)?;
        node_count(ids, ids_per_node)?;
        Ok(PlanDefaults { ids, ids_per_node, poll_seconds })
    }
}

/// The init event, validated: `{"ids": N, "idsPerNode": M, "pollSeconds": S, "workflowId": "..."}`.
/// A retry's `retryNodes` is read apart, against the plan, by [`RetryNodes::from_json`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanInput {
    /// The caller's workflow id, if it gave one (a re-run of init for the same workflow).
    pub workflow_id: Option<WorkflowId>,
    pub ids: u32,
    pub ids_per_node: u32,
    pub poll_seconds: u32,
}

impl PlanInput {
    /// Parses the init event. Every field is optional and falls back to `defaults`. Other
    /// fields are ignored: the state machine passes its whole execution input, which may carry
    /// anything (the console's default input is `{"Comment": "..."}`). `null` counts as `{}`.
    pub fn from_json(event: &Value, defaults: &PlanDefaults) -> Result<PlanInput, PlanError> {
        let empty = serde_json::Map::new();
        let object = match event {
            Value::Object(object) => object,
            Value::Null => &empty,
            other => {
                return Err(PlanError::NotAnObject { value: other.to_string() });
            }
        };
        let field = |spec: &Field, default: u32| -> Result<u32, PlanError> {
            match object.get(spec.name) {
                None => spec.check(u64::from(default)),
                Some(value) => spec.read_json(value),
            }
        };
        let ids = field(&IDS, defaults.ids)?;
        let ids_per_node = field(&IDS_PER_NODE, defaults.ids_per_node)?;
        let poll_seconds = field(&POLL_SECONDS, defaults.poll_seconds)?;
        node_count(ids, ids_per_node)?;
        let workflow_id = match object.get("workflowId") {
            None => None,
            Some(Value::String(text)) => Some(WorkflowId::parse(text)?),
            Some(other) => {
                return Err(PlanError::InvalidWorkflowId { value: other.to_string() });
            }
        };
        Ok(PlanInput { workflow_id, ids, ids_per_node, poll_seconds })
    }

    /// The plan, for the caller's workflow id or a fresh one.
    pub fn to_plan(&self) -> RunPlan {
        RunPlan {
            workflow_id: self.workflow_id.unwrap_or_else(WorkflowId::new_v4),
            ids: self.ids,
            ids_per_node: self.ids_per_node,
            // from_json checked the node count.
            nodes: u64::from(self.ids).div_ceil(u64::from(self.ids_per_node)) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WF: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn wf() -> WorkflowId {
        WorkflowId::parse(WF).unwrap()
    }

    fn parse(event: Value) -> Result<PlanInput, PlanError> {
        PlanInput::from_json(&event, &PlanDefaults::default())
    }

    fn message(event: Value) -> String {
        parse(event).unwrap_err().to_string()
    }

    #[test]
    fn workflow_id_accepts_only_the_canonical_form() {
        assert_eq!(wf().to_string(), WF);
        assert_eq!(WF.parse::<WorkflowId>().unwrap(), wf());
        for bad in [
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "0f8fad5bd9cb469fa16570867728950e",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
            "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
            " 0f8fad5b-d9cb-469f-a165-70867728950e",
            "../etc",
            "",
        ] {
            let err = WorkflowId::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("workflowId: "), "{err}");
            assert!(err.contains(&Value::from(bad).to_string()), "{err}");
        }
    }

    #[test]
    fn workflow_id_round_trips_through_serde() {
        let text = serde_json::to_string(&wf()).unwrap();
        assert_eq!(text, format!("\"{WF}\""));
        assert_eq!(serde_json::from_str::<WorkflowId>(&text).unwrap(), wf());
        assert!(serde_json::from_str::<WorkflowId>("\"nope\"").is_err());
    }

    #[test]
    fn node_count_is_the_ceiling_of_ids_over_group_size() {
        for (ids, per, nodes) in [
            (1, 1, 1),
            (1, 40, 1),
            (39, 40, 1),
            (40, 40, 1),
            (41, 40, 2),
            (400, 40, 10),
            (401, 40, 11),
            (400_000, 40, 10_000),
            (10_000, 1, 10_000),
        ] {
            let plan = RunPlan::new(wf(), ids, per).unwrap();
            assert_eq!(plan.nodes, nodes, "{ids}/{per}");
        }
    }

    #[test]
    fn ten_thousand_and_one_nodes_are_rejected() {
        assert_eq!(
            RunPlan::new(wf(), 400_001, 40).unwrap_err().to_string(),
            "ids/idsPerNode: 400001 ids in groups of 40 make 10001 nodes; \
             at most 10000 nodes are allowed"
        );
        assert!(matches!(
            RunPlan::new(wf(), 10_001, 1),
            Err(PlanError::TooManyNodes { nodes: 10_001, .. })
        ));
    }

    #[test]
    fn node_ranges_are_contiguous_and_cover_every_id_once() {
        for (ids, per) in [(1, 1), (1, 40), (41, 40), (400, 40), (403, 40), (7, 3)] {
            let plan = RunPlan::new(wf(), ids, per).unwrap();
            let mut next = 0;
            for node in 0..plan.nodes {
                let range = plan.node_range(node);
                assert_eq!(range.start, next, "{ids}/{per} node {node}");
                assert!(!range.is_empty() && range.len() <= per as usize);
                next = range.end;
            }
            assert_eq!(next, ids as usize);
            assert!(plan.node_range(plan.nodes).is_empty());
            assert!(plan.node_range(u32::MAX).is_empty());
        }
        let plan = RunPlan::new(wf(), 403, 40).unwrap();
        assert_eq!(plan.node_range(10), 400..403);
        assert_eq!(plan.node_len(10), 3);
    }

    #[test]
    fn run_plan_rejects_zero() {
        assert_eq!(
            RunPlan::new(wf(), 0, 40).unwrap_err().to_string(),
            "ids: 0 is out of range (must be an integer in 1..=10000000)"
        );
        assert_eq!(
            RunPlan::new(wf(), 40, 0).unwrap_err().to_string(),
            "idsPerNode: 0 is out of range (must be an integer in 1..=10000000)"
        );
    }

    #[test]
    fn empty_event_takes_the_defaults() {
        let defaults = PlanDefaults::new(100, 7, 5).unwrap();
        for event in [json!({}), Value::Null, json!({"Comment": "Insert your JSON here"})] {
            let input = PlanInput::from_json(&event, &defaults).unwrap();
            assert_eq!(
                input,
                PlanInput { workflow_id: None, ids: 100, ids_per_node: 7, poll_seconds: 5 }
            );
            assert_eq!(input.to_plan().nodes, 15);
        }
    }

    #[test]
    fn event_fields_override_the_defaults() {
        let input =
            parse(json!({"ids": 400000, "idsPerNode": 40, "pollSeconds": 3600, "workflowId": WF}))
                .unwrap();
        assert_eq!(input.workflow_id, Some(wf()));
        let plan = input.to_plan();
        assert_eq!(
            (plan.workflow_id, plan.ids, plan.ids_per_node, plan.nodes),
            (wf(), 400_000, 40, 10_000)
        );
        assert_eq!(input.poll_seconds, 3600);
        assert_eq!(parse(json!({"ids": 40.0})).unwrap().ids, 40);
    }

    #[test]
    fn a_fresh_plan_gets_a_fresh_workflow_id() {
        let input = parse(json!({})).unwrap();
        assert_ne!(input.to_plan().workflow_id, input.to_plan().workflow_id);
    }

    #[test]
    fn bad_values_name_the_field_the_value_and_the_limit() {
        let cases = [
            (json!({"ids": 0}), "ids: 0 is out of range (must be an integer in 1..=10000000)"),
            (json!({"ids": -5}), "ids: -5 is out of range (must be an integer in 1..=10000000)"),
            (
                json!({"ids": 10000001}),
                "ids: 10000001 is out of range (must be an integer in 1..=10000000)",
            ),
            (
                json!({"idsPerNode": 0}),
                "idsPerNode: 0 is out of range (must be an integer in 1..=10000000)",
            ),
            (
                json!({"idsPerNode": 2.5}),
                "idsPerNode: 2.5 is not an integer (must be an integer in 1..=10000000)",
            ),
            (
                json!({"idsPerNode": -1.0}),
                "idsPerNode: -1.0 is out of range (must be an integer in 1..=10000000)",
            ),
            (
                json!({"ids": "40"}),
                "ids: \"40\" is not an integer (must be an integer in 1..=10000000)",
            ),
            (
                json!({"ids": null}),
                "ids: null is not an integer (must be an integer in 1..=10000000)",
            ),
            (
                json!({"pollSeconds": 0}),
                "pollSeconds: 0 is out of range (must be an integer in 1..=3600)",
            ),
            (
                json!({"pollSeconds": 3601}),
                "pollSeconds: 3601 is out of range (must be an integer in 1..=3600)",
            ),
            (
                json!({"pollSeconds": true}),
                "pollSeconds: true is not an integer (must be an integer in 1..=3600)",
            ),
            (
                json!({"ids": 400001, "idsPerNode": 40}),
                "ids/idsPerNode: 400001 ids in groups of 40 make 10001 nodes; \
                 at most 10000 nodes are allowed",
            ),
            (
                json!({"ids": 10001, "idsPerNode": 1}),
                "ids/idsPerNode: 10001 ids in groups of 1 make 10001 nodes; \
                 at most 10000 nodes are allowed",
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(message(event.clone()), expected, "{event}");
        }
    }

    #[test]
    fn bad_workflow_ids_and_events_are_rejected() {
        assert!(message(json!({"workflowId": "x/../y"})).starts_with("workflowId: \"x/../y\""));
        assert!(message(json!({"workflowId": 7})).starts_with("workflowId: 7 is not"));
        assert!(message(json!([1, 2])).starts_with("init event: [1,2] is not a JSON object"));
        assert!(message(json!("ids")).starts_with("init event: \"ids\""));
    }

    #[test]
    fn retry_nodes_are_checked_against_the_plan() {
        let retry = |event: Value| {
            let input = parse(event.clone()).unwrap();
            RetryNodes::from_json(&event, &input)
        };
        let ok =
            retry(json!({"ids": 400, "idsPerNode": 40, "workflowId": WF, "retryNodes": [7, 3]}))
                .unwrap()
                .unwrap();
        assert_eq!((ok.nodes(), ok.len()), (&[7, 3][..], 2));
        assert_eq!(retry(json!({"workflowId": WF})).unwrap(), None);
        assert_eq!(retry(json!({"workflowId": WF, "retryNodes": null})).unwrap(), None);
        let cases = [
            (json!({"workflowId": WF, "retryNodes": []}), "retryNodes: the list is empty"),
            (
                json!({"workflowId": WF, "retryNodes": [1, 2, 1]}),
                "retryNodes: node 1 is listed twice",
            ),
            (
                json!({"workflowId": WF, "retryNodes": [10]}),
                "retryNodes: node 10 is not a node of the run: 400 ids in groups of 40 make nodes 0..=9",
            ),
            (json!({"workflowId": WF, "retryNodes": [-1]}), "retryNodes: -1 is not a node number"),
            (
                json!({"workflowId": WF, "retryNodes": ["3"]}),
                "retryNodes: \"3\" is not a node number",
            ),
            (json!({"workflowId": WF, "retryNodes": 3}), "retryNodes: 3 is not a list"),
            (
                json!({"retryNodes": [3]}),
                "retryNodes: a retry without workflowId names no run to re-run",
            ),
            (
                json!({"workflowId": WF, "ids": 20000, "idsPerNode": 1, "retryNodes": []}),
                "ids/idsPerNode",
            ),
        ];
        for (event, want) in cases {
            let message = match parse(event.clone()) {
                Err(error) => error.to_string(),
                Ok(input) => RetryNodes::from_json(&event, &input).unwrap_err().to_string(),
            };
            assert!(message.starts_with(want), "{event}: {message}");
        }
        let too_many: Vec<u32> = (0..10_001).collect();
        let event =
            json!({"workflowId": WF, "ids": 10000, "idsPerNode": 1, "retryNodes": too_many});
        let input = parse(json!({"workflowId": WF, "ids": 10000, "idsPerNode": 1})).unwrap();
        assert_eq!(
            RetryNodes::from_json(&event, &input).unwrap_err().to_string(),
            format!("retryNodes: 10001 nodes is more than 10000 (must be {RETRY_NODES_RULE})")
        );
        let all: Vec<u32> = (0..10_000).rev().collect();
        let event = json!({"workflowId": WF, "ids": 10000, "idsPerNode": 1, "retryNodes": all});
        assert_eq!(RetryNodes::from_json(&event, &input).unwrap().unwrap().len(), 10_000);
    }

    #[test]
    fn defaults_are_checked_like_input() {
        assert!(PlanDefaults::new(400, 40, 30).is_ok());
        assert_eq!(
            PlanDefaults::new(0, 40, 30).unwrap_err().to_string(),
            "ids: 0 is out of range (must be an integer in 1..=10000000)"
        );
        assert!(matches!(
            PlanDefaults::new(400, 40, 0),
            Err(PlanError::OutOfRange { field: "pollSeconds", .. })
        ));
        assert!(matches!(PlanDefaults::new(400_001, 40, 30), Err(PlanError::TooManyNodes { .. })));
    }
}
