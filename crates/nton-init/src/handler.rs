//! The init handler: plan the run, write every node's `prep/ids.csv`, return the plan.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use nton_core::fsutil;
use nton_core::layout::{self, Layout};
use nton_core::plan::{PlanInput, RetryNodes, RunPlan};
use nton_core::stage::StageError;
use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{InitConfig, InitError};

/// What [`prepare`] did: nodes whose prep it wrote, and nodes whose existing prep it kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    pub written: u32,
    pub reused: u32,
}

/// Handles one init event (see `nton_core::plan::PlanInput` for its fields) and returns
/// `{"workflowId", "nodes", "ids", "idsPerNode", "pollSeconds", "timeoutSeconds", "nodeMap"}`
/// for the state machine: `nodes` is the size of the stage arrays to submit.
///
/// Re-running with the same `workflowId` is safe: prep files that exist and fit the plan are
/// kept (the ids already being processed stay the same), missing ones are written, and prep
/// that disagrees with the plan is an error. Afterwards, run directories older than the
/// configured retention are removed.
///
/// A retry (`retryNodes`, with the run's `workflowId`, `ids` and `idsPerNode`) prepares
/// nothing: it checks that the run exists and that each listed node's prep fits the plan,
/// writes the node map (array index -> node, [`Layout::node_map_file`]) and returns `nodes` =
/// the number of listed nodes and `nodeMap` = the list, which the watcher uses to name the
/// original nodes. Otherwise `nodeMap` is null.
pub fn handle(event: Value, config: &InitConfig) -> Result<Value, InitError> {
    let input = PlanInput::from_json(&event, &config.defaults)?;
    let retry = RetryNodes::from_json(&event, &input)?;
    // Before anything is written: a run polling this often could end by filling its history.
    crate::check_poll_interval(u64::from(input.poll_seconds), config.run_timeout_seconds)
        .map_err(InitError::PollInterval)?;
    let plan = input.to_plan();
    let layout = Layout::new(&config.data_root);
    let array_size = match &retry {
        Some(retry) => {
            prepare_retry(&layout, &plan, retry)?;
            tracing::info!(
                workflow_id = %plan.workflow_id,
                retried = retry.len(),
                nodes = plan.nodes,
                "prepared a retry"
            );
            retry.len()
        }
        None => {
            let prepared = prepare(&layout, &plan)?;
            // The whole plan runs again: no array index stands for another node any more.
            layout.remove_node_map(&plan.workflow_id).map_err(|err| {
                InitError::storage("removing", layout.node_map_file(&plan.workflow_id), err)
            })?;
            tracing::info!(
                workflow_id = %plan.workflow_id,
                nodes = plan.nodes,
                ids = plan.ids,
                ids_per_node = plan.ids_per_node,
                written = prepared.written,
                reused = prepared.reused,
                "prepared the run"
            );
            plan.nodes
        }
    };
    // Pruning comes after this run's prep, which has just created or touched its directory, so
    // it can never remove the run it is preparing.
    if let Some(retention) = config.retention {
        match layout::prune_workflows(&layout, retention, SystemTime::now()) {
            Ok(pruned) if !pruned.is_empty() => {
                let pruned: Vec<String> = pruned.iter().map(ToString::to_string).collect();
                tracing::info!(
                    ?pruned,
                    retention_hours = retention.as_secs() / 3600,
                    "removed old runs"
                );
            }
            Ok(_) => {}
            // Old runs left behind cost storage, not correctness: today's run goes ahead and
            // the next init tries again.
            Err(err) => tracing::warn!(error = %err, "could not remove old runs"),
        }
    }
    Ok(json!({
        "workflowId": plan.workflow_id.to_string(),
        "nodes": array_size,
        "ids": plan.ids,
        "idsPerNode": plan.ids_per_node,
        "pollSeconds": input.poll_seconds,
        "timeoutSeconds": config.run_timeout_seconds,
        "nodeMap": retry.as_ref().map(RetryNodes::nodes),
    }))
}

/// Checks that a retry's run exists with prep fitting its plan for every listed node, then
/// writes the node map. Nothing is written when a check fails.
pub fn prepare_retry(layout: &Layout, plan: &RunPlan, retry: &RetryNodes) -> Result<(), InitError> {
    let wf = &plan.workflow_id;
    let workflow_dir = layout.workflow_dir(wf);
    if !workflow_dir.is_dir() {
        return Err(InitError::UnknownWorkflow {
            workflow_id: *wf,
            root: layout.root().to_path_buf(),
        });
    }
    let existing = existing_nodes(&workflow_dir)?;
    if let Some(&extra) = existing.last().filter(|&&last| last >= plan.nodes) {
        return Err(InitError::PlanMismatch {
            workflow_id: *wf,
            detail: format!(
                "it has node {extra}, but {} ids in groups of {} make {} nodes (0..={})",
                plan.ids,
                plan.ids_per_node,
                plan.nodes,
                plan.nodes - 1
            ),
        });
    }
    for &node in retry.nodes() {
        if !check_node(layout, plan, node)? {
            return Err(InitError::PlanMismatch {
                workflow_id: *wf,
                detail: format!(
                    "node {node} has no {} to retry with",
                    layout.prep_ids_file(wf, node).display()
                ),
            });
        }
    }
    // The run is in use again: restart its retention clock so no prune removes it.
    touch(&workflow_dir).map_err(|err| InitError::storage("touching", &workflow_dir, err))?;
    layout
        .write_node_map(wf, retry.nodes())
        .map_err(|err| InitError::storage("writing", layout.node_map_file(wf), err))
}

/// Makes sure every node of `plan` has its `prep/ids.csv`: fresh random ids for nodes without
/// one, a check of the ones already there. Nodes are written in parallel: on EFS each node
/// costs about five network round trips (two mkdirs, create, write+close, rename), so 10,000
/// nodes one after another would take tens of seconds, while [`fsutil::IO_THREADS`] threads
/// overlap the waits.
pub fn prepare(layout: &Layout, plan: &RunPlan) -> Result<Prepared, InitError> {
    let root = layout.root();
    match fs::metadata(root) {
        Ok(metadata) if metadata.is_dir() => {}
        // Never create the root: on Lambda a missing root means EFS is not mounted, and
        // writing to the bare mount point would lose the run.
        Ok(_) => {
            return Err(InitError::storage(
                "the data root is not a directory:",
                root,
                io::Error::from(io::ErrorKind::NotADirectory),
            ));
        }
        Err(err) => {
            return Err(InitError::storage(
                "the data root is not usable (is the file system mounted?):",
                root,
                err,
            ));
        }
    }
    let wf = &plan.workflow_id;
    let workflow_dir = layout.workflow_dir(wf);
    let existing = existing_nodes(&workflow_dir)?;
    if let Some(&extra) = existing.last().filter(|&&last| last >= plan.nodes) {
        return Err(InitError::PlanMismatch {
            workflow_id: *wf,
            detail: format!(
                "it has node {extra}, but {} ids in groups of {} make {} nodes (0..={})",
                plan.ids,
                plan.ids_per_node,
                plan.nodes,
                plan.nodes - 1
            ),
        });
    }
    if existing.is_empty() {
        fsutil::create_dir_all_idempotent(&workflow_dir)
            .map_err(|err| InitError::storage("creating", &workflow_dir, err))?;
    } else {
        // The run is in use again: restart its retention clock so no prune removes it.
        touch(&workflow_dir).map_err(|err| InitError::storage("touching", &workflow_dir, err))?;
    }

    let written = AtomicU32::new(0);
    let reused = AtomicU32::new(0);
    fsutil::for_each_parallel(plan.nodes as usize, fsutil::IO_THREADS, |index| {
        let node = index as u32;
        if existing.contains(&node) && check_node(layout, plan, node)? {
            reused.fetch_add(1, Ordering::Relaxed);
        } else {
            write_node(layout, plan, node)?;
            written.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<(), InitError>(())
    })?;
    Ok(Prepared { written: written.into_inner(), reused: reused.into_inner() })
}

/// The node numbers that have a directory under the run's directory (none if it is absent).
fn existing_nodes(workflow_dir: &std::path::Path) -> Result<BTreeSet<u32>, InitError> {
    let entries = match fs::read_dir(workflow_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(err) => return Err(InitError::storage("listing", workflow_dir, err)),
    };
    let mut nodes = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|err| InitError::storage("listing", workflow_dir, err))?;
        // Only canonical decimal names are nodes ("007" is not node 7).
        if let Some(node) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok().filter(|n| n.to_string() == name))
        {
            nodes.insert(node);
        }
    }
    Ok(nodes)
}

/// Whether the node's existing prep fits the plan: `Ok(true)` if it does, `Ok(false)` if it has
/// none yet (an earlier init stopped part way), an error if it holds something else.
fn check_node(layout: &Layout, plan: &RunPlan, node: u32) -> Result<bool, InitError> {
    let wf = plan.workflow_id;
    match layout.read_ids(&wf, node) {
        Ok(ids) if ids.len() == plan.node_len(node) => Ok(true),
        Ok(ids) => Err(InitError::PlanMismatch {
            workflow_id: wf,
            detail: format!(
                "node {node}: {} holds {} ids, but {} ids in groups of {} give it {}",
                layout.prep_ids_file(&wf, node).display(),
                ids.len(),
                plan.ids,
                plan.ids_per_node,
                plan.node_len(node)
            ),
        }),
        Err(StageError::Missing { .. }) => Ok(false),
        Err(StageError::Io { path, source, .. }) => {
            Err(InitError::storage("reading", path, source))
        }
        Err(other) => Err(InitError::PlanMismatch { workflow_id: wf, detail: other.to_string() }),
    }
}

/// Writes fresh random ids for `node`: its directory, `prep/`, and `prep/ids.csv` atomically.
fn write_node(layout: &Layout, plan: &RunPlan, node: u32) -> Result<(), InitError> {
    let wf = &plan.workflow_id;
    // Two single mkdirs rather than create_dir_all(prep): that would first try prep, fail
    // because the node is missing, and only then make both: one wasted round trip on EFS.
    let node_dir = layout.node_dir(wf, node);
    let prep_dir = layout.prep_dir(wf, node);
    for dir in [&node_dir, &prep_dir] {
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(err) => return Err(InitError::storage("creating", dir, err)),
        }
    }
    let ids = random_ids(plan.node_len(node));
    let path = layout.prep_ids_file(wf, node);
    fsutil::write_atomic(&path, &layout::format_ids(&ids))
        .map_err(|err| InitError::storage("writing", &path, err))
}

/// `count` random (v4) UUIDs from the thread's generator (seeded from the OS, reseeded
/// periodically): one getrandom call per UUID, as `Uuid::new_v4` makes, would be 400,000
/// system calls for a big run.
fn random_ids(count: usize) -> Vec<Uuid> {
    let mut rng = rand::rng();
    (0..count).map(|_| uuid::Builder::from_random_bytes(rng.random()).into_uuid()).collect()
}

fn touch(dir: &std::path::Path) -> io::Result<()> {
    File::open(dir)?.set_modified(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nton_core::plan::WorkflowId;
    use std::path::Path;
    use std::time::Duration;

    fn config(root: &Path) -> InitConfig {
        InitConfig::new(root)
    }

    fn all_ids(layout: &Layout, wf: &WorkflowId, nodes: u32) -> Vec<Vec<Uuid>> {
        (0..nodes).map(|n| layout.read_ids(wf, n).unwrap()).collect()
    }

    #[test]
    fn init_writes_every_nodes_prep_and_returns_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let out = handle(json!({"ids": 403, "idsPerNode": 40}), &config(dir.path())).unwrap();
        let wf = WorkflowId::parse(out["workflowId"].as_str().unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"workflowId": wf.to_string(), "nodes": 11, "ids": 403, "idsPerNode": 40, "pollSeconds": 30, "timeoutSeconds": 43200, "nodeMap": null})
        );
        let layout = Layout::new(dir.path());
        let ids = all_ids(&layout, &wf, 11);
        let sizes: Vec<usize> = ids.iter().map(Vec::len).collect();
        assert_eq!(sizes, [40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 3]);
        let unique: BTreeSet<&Uuid> = ids.iter().flatten().collect();
        assert_eq!(unique.len(), 403);
        assert!(unique.iter().all(|id| id.get_version_num() == 4));
        let text = fs::read_to_string(layout.prep_ids_file(&wf, 10)).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with('\n'));
        // Nothing but the 11 node directories, each with only prep/ids.csv.
        assert_eq!(fs::read_dir(layout.workflow_dir(&wf)).unwrap().count(), 11);
        assert_eq!(fs::read_dir(layout.prep_dir(&wf, 0)).unwrap().count(), 1);
        assert_eq!(fs::read_dir(layout.node_dir(&wf, 0)).unwrap().count(), 1);
    }

    #[test]
    fn a_retry_keeps_the_prep_writes_the_node_map_and_sizes_the_arrays_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let wf = WorkflowId::new_v4();
        let event = json!({"ids": 100, "idsPerNode": 10, "workflowId": wf.to_string()});
        handle(event.clone(), &config(dir.path())).unwrap();
        let layout = Layout::new(dir.path());
        let before = all_ids(&layout, &wf, 10);
        let mut retry = event.clone();
        retry["retryNodes"] = json!([7, 2]);
        let out = handle(retry, &config(dir.path())).unwrap();
        assert_eq!(out["nodes"], 2);
        assert_eq!(out["nodeMap"], json!([7, 2]));
        assert_eq!((out["ids"].clone(), out["idsPerNode"].clone()), (json!(100), json!(10)));
        assert_eq!(all_ids(&layout, &wf, 10), before, "the prep is kept");
        assert_eq!(layout.node_of_index(&wf, 0).unwrap(), 7);
        assert_eq!(layout.node_of_index(&wf, 1).unwrap(), 2);
        // The whole plan again: the map goes, and indices are nodes once more.
        let out = handle(event, &config(dir.path())).unwrap();
        assert_eq!((out["nodes"].clone(), out["nodeMap"].clone()), (json!(10), Value::Null));
        assert!(!layout.node_map_file(&wf).exists());
        assert_eq!(layout.node_of_index(&wf, 1).unwrap(), 1);
    }

    #[test]
    fn a_retry_of_nothing_that_exists_is_refused_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let wf = WorkflowId::new_v4();
        let retry =
            json!({"ids": 100, "idsPerNode": 10, "workflowId": wf.to_string(), "retryNodes": [1]});
        let error = handle(retry.clone(), &config(dir.path())).unwrap_err();
        assert_eq!(error.error_type(), "InvalidInput");
        assert_eq!(
            error.to_string(),
            format!(
                "workflowId: {wf} does not exist under {} (a retry re-runs nodes of a run init \
                 prepared)",
                dir.path().display()
            )
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

        let layout = Layout::new(dir.path());
        handle(
            json!({"ids": 100, "idsPerNode": 10, "workflowId": wf.to_string()}),
            &config(dir.path()),
        )
        .unwrap();
        fs::remove_file(layout.prep_ids_file(&wf, 4)).unwrap();
        for (nodes, want) in [
            (json!([4]), "node 4 has no "),
            (json!([10]), "retryNodes: node 10 is not a node of the run"),
            (json!([1, 1]), "retryNodes: node 1 is listed twice"),
            (json!([]), "retryNodes: the list is empty"),
        ] {
            let mut event = retry.clone();
            event["retryNodes"] = nodes;
            let error = handle(event, &config(dir.path())).unwrap_err().to_string();
            assert!(error.contains(want), "{error}");
        }
        // Another plan for the same run is a mismatch, not a retry of other nodes.
        let mut other = retry.clone();
        other["idsPerNode"] = json!(20);
        let error = handle(other, &config(dir.path())).unwrap_err();
        assert_eq!(error.error_type(), "PlanMismatch", "{error}");
        assert!(!layout.node_map_file(&wf).exists());
    }

    #[test]
    fn the_defaults_come_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.defaults = nton_core::plan::PlanDefaults::new(5, 2, 9).unwrap();
        config.run_timeout_seconds = 3600;
        let out = handle(json!({"Comment": "Insert your JSON here"}), &config).unwrap();
        assert_eq!(
            (&out["nodes"], &out["ids"], &out["idsPerNode"], &out["pollSeconds"]),
            (&json!(3), &json!(5), &json!(2), &json!(9))
        );
    }

    #[test]
    fn a_poll_interval_that_could_fill_the_history_is_refused_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        // The default 12 h timeout allows 2,666 polls: 17 s apart at least.
        let error = handle(json!({"ids": 10, "pollSeconds": 16}), &config(dir.path())).unwrap_err();
        assert_eq!(error.error_type(), "InvalidInput");
        assert!(error.to_string().starts_with("pollSeconds: 16 is below 17"), "{error}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let out = handle(json!({"ids": 10, "pollSeconds": 17}), &config(dir.path())).unwrap();
        assert_eq!(out["timeoutSeconds"], 43_200);
    }

    #[test]
    fn one_id_makes_one_node() {
        let dir = tempfile::tempdir().unwrap();
        let out = handle(json!({"ids": 1}), &config(dir.path())).unwrap();
        assert_eq!(out["nodes"], 1);
        let wf = WorkflowId::parse(out["workflowId"].as_str().unwrap()).unwrap();
        assert_eq!(Layout::new(dir.path()).read_ids(&wf, 0).unwrap().len(), 1);
    }

    #[test]
    fn a_rerun_with_the_same_workflow_id_keeps_the_ids() {
        let dir = tempfile::tempdir().unwrap();
        let wf = WorkflowId::new_v4();
        let event = json!({"ids": 100, "idsPerNode": 30, "workflowId": wf.to_string()});
        let first = handle(event.clone(), &config(dir.path())).unwrap();
        assert_eq!(first["workflowId"], wf.to_string());
        let layout = Layout::new(dir.path());
        let before = all_ids(&layout, &wf, 4);
        let prep = layout.prep_ids_file(&wf, 2);
        let mtime = fs::metadata(&prep).unwrap().modified().unwrap();

        assert_eq!(handle(event, &config(dir.path())).unwrap(), first);
        assert_eq!(all_ids(&layout, &wf, 4), before);
        assert_eq!(fs::metadata(&prep).unwrap().modified().unwrap(), mtime, "rewritten");
    }

    #[test]
    fn a_rerun_after_a_partial_init_writes_only_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let plan = RunPlan::new(WorkflowId::new_v4(), 100, 10).unwrap();
        assert_eq!(prepare(&layout, &plan).unwrap(), Prepared { written: 10, reused: 0 });
        let kept = layout.read_ids(&plan.workflow_id, 3).unwrap();
        // As if init had stopped before these nodes: no prep file, or no node directory.
        fs::remove_file(layout.prep_ids_file(&plan.workflow_id, 4)).unwrap();
        fs::remove_dir_all(layout.node_dir(&plan.workflow_id, 9)).unwrap();
        assert_eq!(prepare(&layout, &plan).unwrap(), Prepared { written: 2, reused: 8 });
        assert_eq!(layout.read_ids(&plan.workflow_id, 3).unwrap(), kept);
        assert_eq!(layout.read_ids(&plan.workflow_id, 4).unwrap().len(), 10);
        assert_eq!(layout.read_ids(&plan.workflow_id, 9).unwrap().len(), 10);
    }

    #[test]
    fn a_rerun_with_another_plan_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wf = WorkflowId::new_v4().to_string();
        handle(json!({"ids": 100, "idsPerNode": 10, "workflowId": wf}), &config(dir.path()))
            .unwrap();

        let err =
            handle(json!({"ids": 100, "idsPerNode": 20, "workflowId": wf}), &config(dir.path()))
                .unwrap_err();
        assert_eq!(err.error_type(), "PlanMismatch");
        assert_eq!(
            err.to_string(),
            format!(
                "workflow {wf} already has prep files for another plan: it has node 9, but 100 ids \
                 in groups of 20 make 5 nodes (0..=4)"
            )
        );

        let err =
            handle(json!({"ids": 95, "idsPerNode": 10, "workflowId": wf}), &config(dir.path()))
                .unwrap_err()
                .to_string();
        assert!(
            err.ends_with("9/prep/ids.csv holds 10 ids, but 95 ids in groups of 10 give it 5"),
            "{err}"
        );

        let layout = Layout::new(dir.path());
        let wf = WorkflowId::parse(&wf).unwrap();
        fs::write(layout.prep_ids_file(&wf, 1), "garbage\n").unwrap();
        let err = handle(
            json!({"ids": 100, "idsPerNode": 10, "workflowId": wf.to_string()}),
            &config(dir.path()),
        )
        .unwrap_err();
        assert_eq!(err.error_type(), "PlanMismatch");
        assert!(err.to_string().contains("node 1: "), "{err}");
        assert!(err.to_string().contains("line 1: \"garbage\" is not a record id"), "{err}");
    }

    #[test]
    fn bad_input_is_invalid_input_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for (event, start) in [
            (json!({"idsPerNode": 0}), "idsPerNode: 0 is out of range"),
            (json!({"ids": 400001, "idsPerNode": 40}), "ids/idsPerNode: 400001 ids"),
            (json!({"ids": "many"}), "ids: \"many\" is not an integer"),
            (json!({"workflowId": "../../etc"}), "workflowId: \"../../etc\""),
            (json!(42), "init event: 42 is not a JSON object"),
        ] {
            let err = handle(event, &config(dir.path())).unwrap_err();
            assert_eq!(err.error_type(), "InvalidInput");
            assert!(err.to_string().starts_with(start), "{err}");
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_data_root_is_a_storage_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("not-mounted");
        let err = handle(json!({}), &config(&root)).unwrap_err();
        assert_eq!(err.error_type(), "StorageError");
        assert!(err.to_string().contains("is the file system mounted?"), "{err}");
        assert!(!root.exists());
    }

    #[test]
    fn init_prunes_old_runs_but_never_the_one_it_prepares() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.retention = Some(Duration::from_secs(3600));
        let layout = Layout::new(dir.path());
        let old = WorkflowId::new_v4();
        let reused = WorkflowId::new_v4();
        for wf in [old, reused] {
            handle(json!({"ids": 3, "workflowId": wf.to_string()}), &config).unwrap();
            let long_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
            File::open(layout.workflow_dir(&wf)).unwrap().set_modified(long_ago).unwrap();
        }
        // Re-using an old run keeps it (and restarts its clock); the other old one goes.
        handle(json!({"ids": 3, "workflowId": reused.to_string()}), &config).unwrap();
        assert!(!layout.workflow_dir(&old).exists());
        assert_eq!(layout.read_ids(&reused, 0).unwrap().len(), 3);
        // With no retention nothing is pruned.
        config.retention = None;
        let long_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
        File::open(layout.workflow_dir(&reused)).unwrap().set_modified(long_ago).unwrap();
        handle(json!({}), &config).unwrap();
        assert!(layout.workflow_dir(&reused).exists());
    }
}
