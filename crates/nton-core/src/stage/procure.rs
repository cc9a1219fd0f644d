//! Procure: make each record's data, as the original's get-data job did.
//!
//! For every id of the node, `data/<id>.json` is a JSON array of [`POINTS`] hourly points
//! `{"timestamp": FIRST_TIMESTAMP_MS + k * STEP_MS, "value": v}` (k = 1..=500), v a uniform
//! integer in [`VALUE_MIN`]..[`VALUE_MAX`]. The random generator is seeded from the id, so a
//! re-run writes the same bytes: a retried node cannot change data a later stage already read.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::json::write_data_points;
use super::records::for_each_record;
use super::{StageError, StageReport};
use crate::fsutil;
use crate::layout::Layout;
use crate::plan::WorkflowId;

/// Points per record.
pub const POINTS: u64 = 500;
/// The original's base timestamp (ms since the epoch); the first point is one step after it.
pub const FIRST_TIMESTAMP_MS: u64 = 1_663_639_968_158;
/// One hour, in ms.
pub const STEP_MS: u64 = 3_600_000;
/// Smallest value (inclusive).
pub const VALUE_MIN: i64 = 10;
/// Largest value (exclusive).
pub const VALUE_MAX: i64 = 20_000;

/// One point of a record's data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPoint {
    pub timestamp: u64,
    pub value: i64,
}

/// The generator for one record: ChaCha8 (fast, and its output is fixed by its algorithm, not
/// by the platform) keyed by the id's 16 bytes and a constant naming this use.
fn record_rng(id: &Uuid) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(id.as_bytes());
    seed[16..].copy_from_slice(b"nton procure v1\0");
    ChaCha8Rng::from_seed(seed)
}

/// Appends the data file of record `id` to `out`.
pub fn procure_record(id: &Uuid, out: &mut Vec<u8>) {
    let mut rng = record_rng(id);
    let points = (1..=POINTS).map(move |k| DataPoint {
        timestamp: FIRST_TIMESTAMP_MS + k * STEP_MS,
        value: rng.random_range(VALUE_MIN..VALUE_MAX),
    });
    // Straight from the generator into the buffer: no Vec of points, no allocation per point.
    write_data_points(points, out);
}

/// Writes `data/<id>.json` for every id of `node` and reports files and bytes written.
pub fn procure(layout: &Layout, wf: &WorkflowId, node: u32) -> Result<StageReport, StageError> {
    let ids = layout.read_ids(wf, node)?;
    let dir = layout.data_dir(wf, node);
    fsutil::create_dir_all_idempotent(&dir).map_err(|err| StageError::io(node, &dir, err, ""))?;
    for_each_record(ids.len(), |index| {
        let id = &ids[index];
        let mut bytes = Vec::with_capacity(24 * 1024);
        procure_record(id, &mut bytes);
        let path = layout.data_file(wf, node, id);
        fsutil::write_atomic(&path, &bytes).map_err(|err| StageError::io(node, &path, err, ""))?;
        Ok(bytes.len() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::test_support::node_with_ids;
    use std::fs;

    fn points(bytes: &[u8]) -> Vec<DataPoint> {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn a_record_has_500_hourly_points_in_range() {
        let mut bytes = Vec::new();
        procure_record(&Uuid::new_v4(), &mut bytes);
        let points = points(&bytes);
        assert_eq!(points.len(), 500);
        assert_eq!(points[0].timestamp, 1_663_639_968_158 + 3_600_000);
        assert_eq!(points[499].timestamp, 1_663_639_968_158 + 500 * 3_600_000);
        for pair in points.windows(2) {
            assert_eq!(pair[1].timestamp - pair[0].timestamp, 3_600_000);
        }
        assert!(points.iter().all(|p| (10..20_000).contains(&p.value)));
        // Uniform over 19,990 values: 500 draws are not all alike and spread across the range.
        let min = points.iter().map(|p| p.value).min().unwrap();
        let max = points.iter().map(|p| p.value).max().unwrap();
        assert!(min < 2_000 && max > 18_000, "{min}..{max}");
    }

    #[test]
    fn the_file_has_exactly_the_original_fields() {
        let mut bytes = Vec::new();
        procure_record(&Uuid::new_v4(), &mut bytes);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let first = value[0].as_object().unwrap();
        let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["timestamp", "value"]);
        assert!(first["value"].is_u64());
    }

    #[test]
    fn the_same_id_gives_the_same_bytes_and_another_id_other_bytes() {
        let id = Uuid::new_v4();
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        procure_record(&id, &mut a);
        procure_record(&id, &mut b);
        procure_record(&Uuid::new_v4(), &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn values_are_spread_uniformly() {
        // 100 records = 50,000 draws; each of 10 equal bins should get about 5,000.
        let mut bins = [0u32; 10];
        let mut bytes = Vec::new();
        for n in 0..100u128 {
            bytes.clear();
            procure_record(&Uuid::from_u128(n), &mut bytes);
            for p in points(&bytes) {
                bins[((p.value - VALUE_MIN) * 10 / (VALUE_MAX - VALUE_MIN)) as usize] += 1;
            }
        }
        assert!(bins.iter().all(|&n| (4_500..5_500).contains(&n)), "{bins:?}");
    }

    #[test]
    fn procure_writes_one_file_per_id_and_a_rerun_rewrites_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, wf, ids) = node_with_ids(dir.path(), 3, 40);
        let report = procure(&layout, &wf, 3).unwrap();
        assert_eq!(report.files, 40);
        let mut total = 0;
        let mut first = Vec::new();
        for id in &ids {
            let bytes = fs::read(layout.data_file(&wf, 3, id)).unwrap();
            let mut expected = Vec::new();
            procure_record(id, &mut expected);
            assert_eq!(bytes, expected);
            total += bytes.len() as u64;
            first.push(bytes);
        }
        assert_eq!(report.bytes, total);
        assert_eq!(fs::read_dir(layout.data_dir(&wf, 3)).unwrap().count(), 40);

        // Damage a file, re-run: everything is back to the same bytes, nothing else appears.
        fs::write(layout.data_file(&wf, 3, &ids[0]), b"garbage").unwrap();
        assert_eq!(procure(&layout, &wf, 3).unwrap(), report);
        for (id, bytes) in ids.iter().zip(&first) {
            assert_eq!(&fs::read(layout.data_file(&wf, 3, id)).unwrap(), bytes);
        }
        assert_eq!(fs::read_dir(layout.data_dir(&wf, 3)).unwrap().count(), 40);
    }

    #[test]
    fn procure_without_prep_names_the_node_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let wf = WorkflowId::new_v4();
        let err = procure(&layout, &wf, 5).unwrap_err();
        assert!(
            matches!(&err, StageError::Missing { node: 5, path, .. }
            if *path == layout.prep_ids_file(&wf, 5)),
            "{err}"
        );
    }

    #[test]
    fn a_failed_write_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, wf, ids) = node_with_ids(dir.path(), 0, 4);
        // A directory where one data file should go makes that write's rename fail.
        let blocked = layout.data_file(&wf, 0, &ids[2]);
        fs::create_dir_all(blocked.join("x")).unwrap();
        let err = procure(&layout, &wf, 0).unwrap_err();
        assert!(matches!(&err, StageError::Io { node: 0, path, .. } if *path == blocked), "{err}");
        for entry in fs::read_dir(layout.data_dir(&wf, 0)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(!name.starts_with('.'), "temp file left behind: {name}");
            assert!(name.ends_with(".json"));
        }
    }
}
