//! Where every file of a run lives under the data root (EFS in AWS, a directory locally).
//!
//! ```text
//! <root>/<workflowId>/<node>/prep/ids.csv        one record id per line, written by init
//! <root>/<workflowId>/<node>/data/<id>.json      written by procure
//! <root>/<workflowId>/<node>/results/<id>.json   written by process, copied out by egress
//! <root>/<workflowId>/node-map.json              a retry's nodes, written by init (see below)
//! ```
//!
//! A retry re-runs some nodes of a run through the same state machine, as arrays as large as
//! the number of nodes it re-runs. Init writes `node-map.json` (`{"nodes": [7, 3]}`: array
//! index 0 is node 7, index 1 is node 3) and every worker reads its node from it, so each
//! retried node works in its own directory and its results keep their keys. Init removes the
//! file when the run's whole plan is prepared again, so a file present means a retry.
//!
//! Nothing else builds these paths. The egress object key of a result is its path relative to
//! the root, so a run's S3 prefix mirrors its EFS directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::fsutil;
use crate::plan::WorkflowId;
use crate::stage::StageError;

/// The paths of runs under one data root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `data_root` (`NTON_DATA_ROOT`).
    pub fn new(data_root: impl Into<PathBuf>) -> Layout {
        Layout { root: data_root.into() }
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<wf>`: everything of one run.
    pub fn workflow_dir(&self, wf: &WorkflowId) -> PathBuf {
        self.root.join(wf.to_string())
    }

    /// `<root>/<wf>/<node>`: everything of one array node.
    pub fn node_dir(&self, wf: &WorkflowId, node: u32) -> PathBuf {
        let mut path = self.workflow_dir(wf);
        path.push(node.to_string());
        path
    }

    /// `<root>/<wf>/<node>/prep`.
    pub fn prep_dir(&self, wf: &WorkflowId, node: u32) -> PathBuf {
        self.node_dir(wf, node).join("prep")
    }

    /// `<root>/<wf>/<node>/prep/ids.csv`: the node's record ids, one per line.
    pub fn prep_ids_file(&self, wf: &WorkflowId, node: u32) -> PathBuf {
        self.prep_dir(wf, node).join("ids.csv")
    }

    /// `<root>/<wf>/<node>/data`.
    pub fn data_dir(&self, wf: &WorkflowId, node: u32) -> PathBuf {
        self.node_dir(wf, node).join("data")
    }

    /// `<root>/<wf>/<node>/data/<id>.json`: procure's output for one record.
    pub fn data_file(&self, wf: &WorkflowId, node: u32, id: &Uuid) -> PathBuf {
        self.data_dir(wf, node).join(id_file_name(id))
    }

    /// `<root>/<wf>/<node>/results`.
    pub fn results_dir(&self, wf: &WorkflowId, node: u32) -> PathBuf {
        self.node_dir(wf, node).join("results")
    }

    /// `<root>/<wf>/<node>/results/<id>.json`: process's output for one record.
    pub fn result_file(&self, wf: &WorkflowId, node: u32, id: &Uuid) -> PathBuf {
        self.results_dir(wf, node).join(id_file_name(id))
    }

    /// `<wf>/<node>/results/<id>.json`: the object key of a result under an egress
    /// destination, identical to the result's path relative to the root.
    pub fn result_key(&self, wf: &WorkflowId, node: u32, id: &Uuid) -> String {
        format!("{wf}/{node}/results/{}", id_file_name(id))
    }

    /// `<root>/<wf>/node-map.json`: which original node each array index of a retry runs.
    pub fn node_map_file(&self, wf: &WorkflowId) -> PathBuf {
        self.workflow_dir(wf).join(NODE_MAP_FILE)
    }

    /// Writes the retry's node map atomically (array index `i` runs `nodes[i]`).
    pub fn write_node_map(&self, wf: &WorkflowId, nodes: &[u32]) -> io::Result<()> {
        let bytes =
            serde_json::to_vec(&NodeMapFile { nodes: nodes.to_vec() }).map_err(io::Error::other)?;
        fsutil::write_atomic(&self.node_map_file(wf), &bytes)
    }

    /// Removes the node map, if any: the run is no longer a retry.
    pub fn remove_node_map(&self, wf: &WorkflowId) -> io::Result<()> {
        ignore_not_found(fs::remove_file(self.node_map_file(wf)))
    }

    /// The node a worker at `index` runs: `nodes[index]` of the node map when there is one (a
    /// retry), else `index` itself. An index past the map's end is an error naming both.
    pub fn node_of_index(&self, wf: &WorkflowId, index: u32) -> Result<u32, StageError> {
        let path = self.node_map_file(wf);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(index),
            Err(err) => return Err(StageError::io(index, &path, err, "init writes it")),
        };
        let wrong =
            |detail: String| StageError::WrongShape { node: index, path: path.clone(), detail };
        let map: NodeMapFile =
            serde_json::from_str(&text).map_err(|err| wrong(format!("not a node map ({err})")))?;
        map.nodes.get(index as usize).copied().ok_or_else(|| {
            wrong(format!("array index {index} is past its {} nodes", map.nodes.len()))
        })
    }

    /// Reads a node's `prep/ids.csv`.
    pub fn read_ids(&self, wf: &WorkflowId, node: u32) -> Result<Vec<Uuid>, StageError> {
        let path = self.prep_ids_file(wf, node);
        let text = fs::read_to_string(&path)
            .map_err(|err| StageError::io(node, &path, err, "init writes it; was init run?"))?;
        parse_ids(&text).map_err(|detail| StageError::WrongShape { node, path, detail })
    }
}

/// The node map's file name inside a run's directory.
pub const NODE_MAP_FILE: &str = "node-map.json";

/// `node-map.json`'s contents.
#[derive(serde::Serialize, serde::Deserialize)]
struct NodeMapFile {
    nodes: Vec<u32>,
}

fn id_file_name(id: &Uuid) -> String {
    let mut buffer = Uuid::encode_buffer();
    let mut name = String::with_capacity(41);
    name.push_str(id.hyphenated().encode_lower(&mut buffer));
    name.push_str(".json");
    name
}

/// The bytes of an `ids.csv`: each id in hyphenated form on its own line.
pub fn format_ids(ids: &[Uuid]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * (uuid::fmt::Hyphenated::LENGTH + 1));
    let mut buffer = Uuid::encode_buffer();
    for id in ids {
        out.extend_from_slice(id.hyphenated().encode_lower(&mut buffer).as_bytes());
        out.push(b'\n');
    }
    out
}

/// Parses an `ids.csv`: one UUID per line (a trailing newline and CRLF line ends are fine),
/// at least one. The error says which line is wrong.
pub fn parse_ids(text: &str) -> Result<Vec<Uuid>, String> {
    let mut ids = Vec::with_capacity(text.len() / (uuid::fmt::Hyphenated::LENGTH + 1));
    for (index, line) in text.lines().enumerate() {
        let id = Uuid::try_parse(line).map_err(|err| {
            format!(
                "line {}: {} is not a record id ({err})",
                index + 1,
                serde_json::Value::from(line)
            )
        })?;
        ids.push(id);
    }
    if ids.is_empty() {
        return Err("it has no record ids (must hold one per line)".to_string());
    }
    Ok(ids)
}

/// Removes the run directories under the root whose modification time is more than
/// `older_than` before `now`, and returns their ids (sorted). Only entries whose name is a
/// workflow id are considered, so nothing else on the file system is ever touched. A missing
/// root removes nothing.
///
/// A run directory's mtime is when its last node directory was created (init), or when init
/// last re-used it; later writes inside the nodes do not change it. So `older_than` must be
/// longer than the longest run.
///
/// Why it exists: the original never removed finished runs from EFS, where storage is billed
/// by the byte-month. Node directories are removed in parallel because each of a big run's
/// ~800,000 files is a network round trip to remove on EFS.
pub fn prune_workflows(
    layout: &Layout,
    older_than: Duration,
    now: SystemTime,
) -> io::Result<Vec<WorkflowId>> {
    let entries = match fs::read_dir(layout.root()) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut pruned = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(wf) = entry.file_name().to_str().and_then(|name| WorkflowId::parse(name).ok())
        else {
            continue;
        };
        // symlink_metadata: a symlink named like a run is not followed (nor removed).
        let metadata = match fs::symlink_metadata(entry.path()) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        if !metadata.is_dir() {
            continue;
        }
        let age = now.duration_since(metadata.modified()?).unwrap_or(Duration::ZERO);
        if age > older_than {
            remove_tree_parallel(&entry.path())?;
            pruned.push(wf);
        }
    }
    pruned.sort();
    Ok(pruned)
}

/// Removes a run directory: its children in parallel, then itself. Something already gone
/// (another init pruning at the same time) is not an error.
fn remove_tree_parallel(dir: &Path) -> io::Result<()> {
    let children: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => {
            entries.map(|entry| entry.map(|entry| entry.path())).collect::<io::Result<_>>()?
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    fsutil::for_each_parallel(children.len(), fsutil::IO_THREADS, |index| {
        let child = &children[index];
        let removed = if child.is_dir() && !child.is_symlink() {
            fs::remove_dir_all(child)
        } else {
            fs::remove_file(child)
        };
        ignore_not_found(removed)
    })?;
    ignore_not_found(fs::remove_dir_all(dir))
}

fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    const WF: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
    const ID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

    fn wf() -> WorkflowId {
        WorkflowId::parse(WF).unwrap()
    }

    fn id() -> Uuid {
        Uuid::parse_str(ID).unwrap()
    }

    #[test]
    fn every_path_sits_where_the_layout_says() {
        let layout = Layout::new("/mnt/efs");
        let (wf, id) = (wf(), id());
        assert_eq!(layout.root(), Path::new("/mnt/efs"));
        assert_eq!(layout.workflow_dir(&wf), Path::new(&format!("/mnt/efs/{WF}")));
        assert_eq!(layout.node_dir(&wf, 7), Path::new(&format!("/mnt/efs/{WF}/7")));
        assert_eq!(
            layout.prep_ids_file(&wf, 7),
            Path::new(&format!("/mnt/efs/{WF}/7/prep/ids.csv"))
        );
        assert_eq!(layout.data_dir(&wf, 0), Path::new(&format!("/mnt/efs/{WF}/0/data")));
        assert_eq!(
            layout.data_file(&wf, 9999, &id),
            Path::new(&format!("/mnt/efs/{WF}/9999/data/{ID}.json"))
        );
        assert_eq!(layout.results_dir(&wf, 3), Path::new(&format!("/mnt/efs/{WF}/3/results")));
        assert_eq!(
            layout.result_file(&wf, 3, &id),
            Path::new(&format!("/mnt/efs/{WF}/3/results/{ID}.json"))
        );
        assert_eq!(layout.result_key(&wf, 3, &id), format!("{WF}/3/results/{ID}.json"));
    }

    #[test]
    fn the_result_key_is_the_path_relative_to_the_root() {
        let layout = Layout::new("/data/root");
        let relative = layout
            .result_file(&wf(), 12, &id())
            .strip_prefix("/data/root")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(layout.result_key(&wf(), 12, &id()), relative);
    }

    #[test]
    fn ids_round_trip_through_ids_csv() {
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        let bytes = format_ids(&ids);
        assert_eq!(bytes.len(), 5 * 37);
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 5);
        assert_eq!(parse_ids(std::str::from_utf8(&bytes).unwrap()).unwrap(), ids);
        assert_eq!(parse_ids(&format!("{ID}\r\n{ID}")).unwrap(), [id(), id()]);
    }

    #[test]
    fn read_ids_names_the_node_and_file_when_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let path = layout.prep_ids_file(&wf(), 4);

        let err = layout.read_ids(&wf(), 4).unwrap_err();
        assert!(matches!(err, StageError::Missing { node: 4, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("node 4: {} is missing (init writes it; was init run?)", path.display())
        );

        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("{ID}\nnot-an-id\n")).unwrap();
        let err = layout.read_ids(&wf(), 4).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "node 4: {} has the wrong shape: line 2: \"not-an-id\"",
                path.display()
            )),
            "{err}"
        );

        fs::write(&path, "").unwrap();
        let err = layout.read_ids(&wf(), 4).unwrap_err().to_string();
        assert!(
            err.ends_with("has the wrong shape: it has no record ids (must hold one per line)"),
            "{err}"
        );

        fs::write(&path, format!("{ID}\n")).unwrap();
        assert_eq!(layout.read_ids(&wf(), 4).unwrap(), [id()]);
    }

    #[test]
    fn a_node_map_maps_array_indices_to_original_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let wf = wf();
        // No map: the index is the node.
        assert_eq!(layout.node_of_index(&wf, 5).unwrap(), 5);
        fs::create_dir_all(layout.workflow_dir(&wf)).unwrap();
        layout.write_node_map(&wf, &[7, 3]).unwrap();
        assert_eq!(
            layout.node_map_file(&wf),
            Path::new(&format!("{}/{WF}/node-map.json", dir.path().display()))
        );
        assert_eq!(layout.node_of_index(&wf, 0).unwrap(), 7);
        assert_eq!(layout.node_of_index(&wf, 1).unwrap(), 3);
        let err = layout.node_of_index(&wf, 2).unwrap_err().to_string();
        assert!(err.ends_with("has the wrong shape: array index 2 is past its 2 nodes"), "{err}");
        fs::write(layout.node_map_file(&wf), b"[1,2]").unwrap();
        let err = layout.node_of_index(&wf, 0).unwrap_err().to_string();
        assert!(err.contains("not a node map"), "{err}");
        layout.remove_node_map(&wf).unwrap();
        layout.remove_node_map(&wf).unwrap();
        assert_eq!(layout.node_of_index(&wf, 1).unwrap(), 1);
    }

    fn set_mtime(path: &Path, time: SystemTime) {
        File::open(path).unwrap().set_modified(time).unwrap();
    }

    #[test]
    fn prune_removes_only_old_workflow_directories() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let now = SystemTime::now();
        let old = WorkflowId::new_v4();
        let fresh = WorkflowId::new_v4();
        for wf in [old, fresh] {
            for node in 0..3 {
                fs::create_dir_all(layout.data_dir(&wf, node)).unwrap();
                fs::write(layout.data_file(&wf, node, &id()), b"[]").unwrap();
            }
        }
        // Old-looking things that are not runs must survive.
        let stranger = dir.path().join("lost+found");
        fs::create_dir(&stranger).unwrap();
        let file_named_like_a_run = dir.path().join(WorkflowId::new_v4().to_string());
        fs::write(&file_named_like_a_run, b"").unwrap();
        let week = Duration::from_secs(7 * 24 * 3600);
        let long_ago = now - week - Duration::from_secs(60);
        for path in [&layout.workflow_dir(&old), &stranger, &file_named_like_a_run] {
            set_mtime(path, long_ago);
        }
        set_mtime(&layout.workflow_dir(&fresh), now - Duration::from_secs(3600));

        assert_eq!(prune_workflows(&layout, week, now).unwrap(), [old]);
        assert!(!layout.workflow_dir(&old).exists());
        assert!(layout.data_file(&fresh, 2, &id()).exists());
        assert!(stranger.is_dir() && file_named_like_a_run.is_file());

        // Re-running finds nothing more to do.
        assert!(prune_workflows(&layout, week, now).unwrap().is_empty());
        // A later "now" makes the fresh one old too.
        let later = now + week;
        assert_eq!(prune_workflows(&layout, week, later).unwrap(), [fresh]);
    }

    #[test]
    fn prune_of_a_missing_root_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("absent"));
        assert!(prune_workflows(&layout, Duration::ZERO, SystemTime::now()).unwrap().is_empty());
    }
}
