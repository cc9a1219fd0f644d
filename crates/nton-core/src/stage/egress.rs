//! Egress: ship a node's results out, under the same relative paths.
//!
//! [`egress_items`] lists what to ship (and fails if any id lacks its result, rather than
//! shipping a partial node); [`egress_to_dir`] copies to a local directory. The S3 upload is in
//! `nton-job` and uses the same items, so S3 keys and local paths cannot drift apart.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::records::for_each_record;
use super::{StageError, StageReport};
use crate::fsutil;
use crate::layout::Layout;
use crate::plan::WorkflowId;

/// One result file to ship.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressItem {
    /// `<wf>/<node>/results/<id>.json`: the object key, and the path under a local destination.
    pub key: String,
    /// The result file on the data root.
    pub path: PathBuf,
    /// Its size in bytes.
    pub len: u64,
}

/// The result files of every id of `node`, in the order of `prep/ids.csv`. A missing result is
/// an error naming the node and the file.
pub fn egress_items(
    layout: &Layout,
    wf: &WorkflowId,
    node: u32,
) -> Result<Vec<EgressItem>, StageError> {
    let ids = layout.read_ids(wf, node)?;
    ids.iter()
        .map(|id| {
            let path = layout.result_file(wf, node, id);
            let metadata = fs::metadata(&path).map_err(|err| {
                StageError::io(
                    node,
                    &path,
                    err,
                    "process writes it; did process succeed for this node?",
                )
            })?;
            if !metadata.is_file() {
                return Err(StageError::WrongShape {
                    node,
                    path,
                    detail: "it is not a regular file".to_string(),
                });
            }
            Ok(EgressItem { key: layout.result_key(wf, node, id), path, len: metadata.len() })
        })
        .collect()
}

/// Copies each item to `dest_root/<key>`, atomically, creating directories as needed. Keys
/// must be relative paths without `..` (they always are when they come from
/// [`egress_items`]); anything else is refused rather than written outside `dest_root`.
pub fn egress_to_dir(items: &[EgressItem], dest_root: &Path) -> Result<StageReport, StageError> {
    for_each_record(items.len(), |index| {
        let item = &items[index];
        let to = dest_root.join(&item.key);
        let copy_error = |source: io::Error| StageError::Copy {
            key: item.key.clone(),
            from: item.path.clone(),
            to: to.clone(),
            source,
        };
        if !is_plain_relative(&item.key) {
            return Err(copy_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the key must be a relative path without `..`",
            )));
        }
        if let Some(parent) = to.parent() {
            fsutil::create_dir_all_idempotent(parent).map_err(copy_error)?;
        }
        fsutil::copy_atomic(&item.path, &to).map_err(copy_error)
    })
    .inspect(|_| remove_stale_temps(items, dest_root))
}

/// Removes the temp files an earlier, killed egress of these items left beside their targets
/// (`.<name>.<random>.tmp`, see [`fsutil::write_atomic_with`]): a child stopped mid-copy (the
/// engine's Ctrl-C, a Batch timeout) cannot clean up after itself, and its re-run writes the
/// real file under a new temp name. Once per directory after the copies, so a node's egress
/// costs one listing per directory, not one per file; best effort, since a leftover costs
/// space, not correctness.
fn remove_stale_temps(items: &[EgressItem], dest_root: &Path) {
    let mut targets: std::collections::BTreeMap<PathBuf, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for item in items {
        let to = dest_root.join(&item.key);
        if let (Some(dir), Some(name)) = (to.parent(), to.file_name()) {
            targets
                .entry(dir.to_path_buf())
                .or_default()
                .insert(name.to_string_lossy().into_owned());
        }
    }
    for (dir, names) in targets {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            let stale = file_name
                .strip_prefix('.')
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .and_then(|rest| rest.rsplit_once('.'))
                .is_some_and(|(name, _random)| names.contains(name));
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn is_plain_relative(key: &str) -> bool {
    !key.is_empty()
        && Path::new(key).components().all(|component| matches!(component, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::test_support::processed_node;

    #[test]
    fn items_list_every_result_with_its_key_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, wf, ids) = processed_node(dir.path(), 6, 5);
        let items = egress_items(&layout, &wf, 6).unwrap();
        assert_eq!(items.len(), 5);
        for (item, id) in items.iter().zip(&ids) {
            assert_eq!(item.key, format!("{wf}/6/results/{id}.json"));
            assert_eq!(item.path, layout.result_file(&wf, 6, id));
            assert_eq!(item.len, fs::metadata(&item.path).unwrap().len());
        }
    }

    #[test]
    fn a_missing_result_names_the_node_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, wf, ids) = processed_node(dir.path(), 2, 3);
        let gone = layout.result_file(&wf, 2, &ids[2]);
        fs::remove_file(&gone).unwrap();
        let err = egress_items(&layout, &wf, 2).unwrap_err();
        assert!(
            matches!(&err, StageError::Missing { node: 2, path, .. } if *path == gone),
            "{err}"
        );
        assert!(err.to_string().contains("did process succeed for this node?"));
    }

    #[test]
    fn a_rerun_removes_the_temp_files_a_killed_copy_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let (layout, wf, _) = processed_node(dir.path(), 2, 3);
        let items = egress_items(&layout, &wf, 2).unwrap();
        let target = dest.path().join(&items[0].key);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        // What a copy killed between create and rename leaves, and a file that is not ours.
        let stale = target.with_file_name(format!(".{name}.Ab12Cd.tmp"));
        let foreign = target.with_file_name(".notes.txt.Zz99.tmp");
        fs::write(&stale, b"half").unwrap();
        fs::write(&foreign, b"keep").unwrap();
        egress_to_dir(&items, dest.path()).unwrap();
        assert!(!stale.exists(), "the stale temp of a shipped file is removed");
        assert!(foreign.exists(), "other files are left alone");
        assert!(target.is_file());
    }

    #[test]
    fn egress_to_dir_copies_every_result_under_its_key_and_reruns_safely() {
        let dir = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let (layout, wf, ids) = processed_node(dir.path(), 0, 7);
        let items = egress_items(&layout, &wf, 0).unwrap();
        let report = egress_to_dir(&items, dest.path()).unwrap();
        assert_eq!(report.files, 7);
        assert_eq!(report.bytes, items.iter().map(|i| i.len).sum::<u64>());
        for id in &ids {
            let copied = dest.path().join(format!("{wf}/0/results/{id}.json"));
            assert_eq!(
                fs::read(&copied).unwrap(),
                fs::read(layout.result_file(&wf, 0, id)).unwrap()
            );
        }
        // Again, over the existing copies: same result, no stray files.
        assert_eq!(egress_to_dir(&items, dest.path()).unwrap(), report);
        let results = dest.path().join(format!("{wf}/0/results"));
        assert_eq!(fs::read_dir(results).unwrap().count(), 7);
    }

    #[test]
    fn egress_refuses_keys_that_leave_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let (layout, wf, _) = processed_node(dir.path(), 0, 1);
        let mut items = egress_items(&layout, &wf, 0).unwrap();
        for key in ["../escape.json", "/abs.json", "a/../../b.json", ""] {
            items[0].key = key.to_string();
            let err = egress_to_dir(&items, dest.path()).unwrap_err().to_string();
            assert!(err.contains("relative path without `..`"), "{key}: {err}");
        }
        assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_vanished_source_is_a_copy_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let (layout, wf, _) = processed_node(dir.path(), 4, 1);
        let items = egress_items(&layout, &wf, 4).unwrap();
        fs::remove_file(&items[0].path).unwrap();
        let err = egress_to_dir(&items, dest.path()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("egress of {}: copying", items[0].key)), "{err}");
    }
}
