//! Test fixtures shared by the stage modules' tests: a node with prep ids, procured, processed.

use std::fs;
use std::path::Path;

use uuid::Uuid;

use crate::layout::{Layout, format_ids};
use crate::plan::WorkflowId;

/// A fresh workflow whose `node` has `count` random ids in its prep file, as init leaves it.
pub fn node_with_ids(dir: &Path, node: u32, count: usize) -> (Layout, WorkflowId, Vec<Uuid>) {
    let layout = Layout::new(dir);
    let wf = WorkflowId::new_v4();
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    fs::create_dir_all(layout.prep_dir(&wf, node)).unwrap();
    fs::write(layout.prep_ids_file(&wf, node), format_ids(&ids)).unwrap();
    (layout, wf, ids)
}

/// The same node after procure.
pub fn procured_node(dir: &Path, node: u32, count: usize) -> (Layout, WorkflowId, Vec<Uuid>) {
    let (layout, wf, ids) = node_with_ids(dir, node, count);
    super::procure(&layout, &wf, node).unwrap();
    (layout, wf, ids)
}

/// The same node after procure and process.
pub fn processed_node(dir: &Path, node: u32, count: usize) -> (Layout, WorkflowId, Vec<Uuid>) {
    let (layout, wf, ids) = procured_node(dir, node, count);
    super::process(&layout, &wf, node).unwrap();
    (layout, wf, ids)
}
