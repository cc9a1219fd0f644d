//! Process: turn each record's data into results, as the original's process-data job did.
//!
//! For every id of the node, `results/<id>.json` is `[{"timestamp": t, "open": value > 15000}]`,
//! one entry per point of `data/<id>.json`, in the same order.

use std::fs;

use serde::Serialize;
use uuid::Uuid;

use super::json::write_result_points;
use super::records::for_each_record;
use super::{DataPoint, StageError, StageReport};
use crate::fsutil;
use crate::layout::Layout;
use crate::plan::WorkflowId;

/// A point is open when its value is above this.
pub const OPEN_ABOVE: i64 = 15_000;

/// One entry of a record's results file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ResultPoint {
    pub timestamp: u64,
    pub open: bool,
}

/// Appends the results of one record's data file (`data`, its bytes) to `out`. The error is
/// serde's, for the caller to turn into "not valid JSON" or "wrong shape".
pub fn process_record(data: &[u8], out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let points: Vec<DataPoint> = serde_json::from_slice(data)?;
    let results = points
        .iter()
        .map(|point| ResultPoint { timestamp: point.timestamp, open: point.value > OPEN_ABOVE });
    // Straight from the iterator into the buffer: no second Vec, no allocation per point.
    write_result_points(results, out);
    Ok(())
}

/// Writes `results/<id>.json` for every id of `node` from its `data/<id>.json`, and reports
/// files and bytes written.
pub fn process(layout: &Layout, wf: &WorkflowId, node: u32) -> Result<StageReport, StageError> {
    let ids = layout.read_ids(wf, node)?;
    let dir = layout.results_dir(wf, node);
    fsutil::create_dir_all_idempotent(&dir).map_err(|err| StageError::io(node, &dir, err, ""))?;
    for_each_record(ids.len(), |index| process_one(layout, wf, node, &ids[index]))
}

fn process_one(layout: &Layout, wf: &WorkflowId, node: u32, id: &Uuid) -> Result<u64, StageError> {
    let input = layout.data_file(wf, node, id);
    let data = fs::read(&input).map_err(|err| {
        StageError::io(node, &input, err, "procure writes it; did procure succeed for this node?")
    })?;
    // Results are about a third of the data's size ("open":false vs "value":12345).
    let mut bytes = Vec::with_capacity(data.len());
    process_record(&data, &mut bytes).map_err(|err| StageError::json(node, &input, err))?;
    let output = layout.result_file(wf, node, id);
    fsutil::write_atomic(&output, &bytes).map_err(|err| StageError::io(node, &output, err, ""))?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::procure_record;
    use crate::stage::test_support::procured_node;

    fn results(bytes: &[u8]) -> Vec<ResultPoint> {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn open_means_value_above_15000() {
        let data = br#"[{"timestamp":1,"value":15000},{"timestamp":2,"value":15001},
            {"timestamp":3,"value":10},{"timestamp":4,"value":19999}]"#;
        let mut out = Vec::new();
        process_record(data, &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"[{"timestamp":1,"open":false},{"timestamp":2,"open":true},{"timestamp":3,"open":false},{"timestamp":4,"open":true}]"#
        );
    }

    #[test]
    fn results_follow_procured_data_point_by_point() {
        let mut data = Vec::new();
        procure_record(&Uuid::new_v4(), &mut data);
        let points: Vec<DataPoint> = serde_json::from_slice(&data).unwrap();
        let mut out = Vec::new();
        process_record(&data, &mut out).unwrap();
        let results = results(&out);
        assert_eq!(results.len(), 500);
        for (point, result) in points.iter().zip(&results) {
            assert_eq!(result.timestamp, point.timestamp);
            assert_eq!(result.open, point.value > 15_000);
        }
        // About a quarter of uniform values in [10, 20000) are above 15000.
        let open = results.iter().filter(|r| r.open).count();
        assert!((75..175).contains(&open), "{open}");
    }

    #[test]
    fn process_writes_one_result_per_id_and_a_rerun_is_identical() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, wf, ids) = procured_node(dir.path(), 2, 40);
        let report = process(&layout, &wf, 2).unwrap();
        assert_eq!(report.files, 40);
        let mut total = 0;
        let mut first = Vec::new();
        for id in &ids {
            let bytes = fs::read(layout.result_file(&wf, 2, id)).unwrap();
            assert_eq!(results(&bytes).len(), 500);
            total += bytes.len() as u64;
            first.push(bytes);
        }
        assert_eq!(report.bytes, total);
        assert_eq!(process(&layout, &wf, 2).unwrap(), report);
        for (id, bytes) in ids.iter().zip(&first) {
            assert_eq!(&fs::read(layout.result_file(&wf, 2, id)).unwrap(), bytes);
        }
        assert_eq!(fs::read_dir(layout.results_dir(&wf, 2)).unwrap().count(), 40);
    }

    #[test]
    fn missing_data_names_the_node_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, wf, ids) = procured_node(dir.path(), 1, 3);
        let gone = layout.data_file(&wf, 1, &ids[1]);
        fs::remove_file(&gone).unwrap();
        let err = process(&layout, &wf, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "node 1: {} is missing (procure writes it; did procure succeed for this node?)",
                gone.display()
            )
        );
    }

    #[test]
    fn corrupt_data_names_the_node_and_file_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, wf, ids) = procured_node(dir.path(), 0, 2);
        let path = layout.data_file(&wf, 0, &ids[0]);
        let cases: [(&[u8], &str); 4] = [
            (b"[{\"timestamp\":1,\"val", "is not valid JSON"),
            (b"not json", "is not valid JSON"),
            (b"{\"timestamp\":1}", "has the wrong shape: invalid type: map"),
            (
                b"[{\"timestamp\":1,\"value\":\"high\"}]",
                "has the wrong shape: invalid type: string",
            ),
        ];
        for (bytes, expected) in cases {
            fs::write(&path, bytes).unwrap();
            let err = process(&layout, &wf, 0).unwrap_err();
            assert_eq!(err.node(), Some(0));
            assert_eq!(err.path(), path);
            let text = err.to_string();
            assert!(text.starts_with(&format!("node 0: {} {expected}", path.display())), "{text}");
        }
        let err = process(&layout, &wf, 0).unwrap_err();
        assert!(matches!(err, StageError::WrongShape { .. }));
        // The bad record got no result file, partial or otherwise.
        assert!(!layout.result_file(&wf, 0, &ids[0]).exists());
    }
}
