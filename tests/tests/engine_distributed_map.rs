//! `nton run --template` on a Distributed Map (issue 11 item 1): `tests/templates/distributed-map.yaml`
//! reads its shards from a CSV object, batches them, tolerates a failed batch, exports the
//! children's results and lists objects under a prefix, with both buckets mapped to
//! directories by `--s3-bucket`. What the tests assert comes from the run record and the files
//! the run wrote, checked against the developer guide's pages "ItemReader (Map)", "ItemBatcher
//! (Map)", "ResultWriter (Map)" and "Tolerated failure threshold".

use std::path::Path;
use std::process::Command;

use nton_engine::record::{RECORD_FILE, RecordLine, read_record};
use nton_tests::{binary_dir, workspace_binary, workspace_root};
use serde_json::{Value, json};

const TEMPLATE: &str = "tests/templates/distributed-map.yaml";

fn nton(args: &[&str], data_dir: &Path) -> std::process::Output {
    Command::new(workspace_binary("nton"))
        .current_dir(workspace_root())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("nton runs")
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_distributed_map_reads_batches_tolerates_and_exports_through_mapped_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, results, data) =
        (dir.path().join("inputs"), dir.path().join("results"), dir.path().join("data"));
    std::fs::create_dir_all(inputs.join("extra")).unwrap();
    // "How Step Functions parses input CSV files": the first row names the fields, values are
    // strings.
    std::fs::write(inputs.join("shards.csv"), "shard,bad\ns1,no\ns2,no\ns3,yes\ns4,no\ns5,no\n")
        .unwrap();
    std::fs::write(inputs.join("extra/b.json"), "{}").unwrap();
    std::fs::write(inputs.join("extra/a.json"), "[1,2]").unwrap();
    std::fs::write(inputs.join("other.txt"), "not listed").unwrap();
    let inputs_arg = format!("nton-inputs={}", inputs.display());
    let results_arg = format!("nton-results={}", results.display());
    let bin_dir = binary_dir();
    let output = nton(
        &[
            "run",
            "--json",
            "--template",
            TEMPLATE,
            "--s3-bucket",
            &inputs_arg,
            "--s3-bucket",
            &results_arg,
            "--bin-dir",
            bin_dir.to_str().unwrap(),
        ],
        &data,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let events = json_lines(&output.stdout);
    let summary = events.iter().rev().find(|e| e["event"] == "summary").expect("a summary");
    assert_eq!(summary["status"], "SUCCEEDED", "{summary}");
    let workflow_id = summary["workflowId"].as_str().unwrap().to_string();

    let record = read_record(&data.join(&workflow_id).join(RECORD_FILE)).expect("a record");
    let out = record
        .iter()
        .find_map(|line| match line {
            RecordLine::End(end) => end.output.clone(),
            _ => None,
        })
        .expect("an output");

    // "ResultWriter (Map)": with an export, the state returns the Map Run ARN and the
    // manifest's bucket and key, <Prefix>/<Map Run id>/manifest.json.
    let shards = &out["shards"];
    let arn = shards["MapRunArn"].as_str().unwrap();
    let run_id = arn.rsplit(':').next().unwrap();
    assert!(arn.contains(":mapRun:Machine/Shards:"), "{arn}");
    let manifest_key = format!("runs/{workflow_id}/{run_id}/manifest.json");
    assert_eq!(
        shards["ResultWriterDetails"],
        json!({"Bucket": "nton-results", "Key": manifest_key})
    );
    let manifest = read_json(&results.join(&manifest_key));
    assert_eq!(manifest["DestinationBucket"], "nton-results");
    assert_eq!(manifest["MapRunArn"], arn);
    assert_eq!(manifest["ResultFiles"]["PENDING"], json!([]));

    // "ItemBatcher (Map)": 5 items two to a batch make 3 children, each given
    // {"BatchInput", "Items"}. The second batch starts with the bad shard and fails; its 2 items
    // of 5 (40%) stay within "Tolerated failure threshold"'s 50%.
    let succeeded_key = manifest["ResultFiles"]["SUCCEEDED"][0]["Key"].as_str().unwrap();
    let succeeded = read_json(&results.join(succeeded_key));
    let outputs: Vec<Value> = succeeded
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r["Output"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        outputs,
        [
            json!({"workflowId": workflow_id, "shards": ["s1", "s2"]}),
            json!({"workflowId": workflow_id, "shards": ["s5"]}),
        ]
    );
    assert_eq!(
        manifest["ResultFiles"]["SUCCEEDED"][0]["Size"],
        std::fs::metadata(results.join(succeeded_key)).unwrap().len()
    );
    let failed_key = manifest["ResultFiles"]["FAILED"][0]["Key"].as_str().unwrap();
    let failed = read_json(&results.join(failed_key));
    assert_eq!(failed.as_array().unwrap().len(), 1);
    assert_eq!(failed[0]["Status"], "FAILED");
    assert_eq!(failed[0]["Error"], "Shard.Rejected");
    let failed_input: Value = serde_json::from_str(failed[0]["Input"].as_str().unwrap()).unwrap();
    assert_eq!(
        failed_input,
        json!({"BatchInput": {"workflowId": workflow_id},
            "Items": [{"shard": "s3", "bad": "yes"}, {"shard": "s4", "bad": "no"}]})
    );

    // "ItemReader (Map)": listObjectsV2 with a Prefix lists only the keys under it, in key
    // order; WriterConfig COMPACT without Resource keeps the outputs as the state's result.
    assert_eq!(
        out["extras"],
        json!([{"key": "extra/a.json", "size": 5}, {"key": "extra/b.json", "size": 2}])
    );

    // The report reads the run like any other: the children's states are counted with the
    // others (3 batches checked, 2 accepted).
    let run_dir = data.join(&workflow_id);
    let report = nton(&["report", run_dir.to_str().unwrap()], &data);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&report.stdout),
        String::from_utf8_lossy(&report.stderr)
    );
    assert_eq!(report.status.code(), Some(0), "{text}");
    for count in ["Check x3", "Accept x2", "Shards x1", "Keep x2"] {
        assert!(text.contains(count), "the report lacks {count}: {text}");
    }
}

#[test]
fn an_unmapped_bucket_is_refused_before_anything_runs_naming_the_state_and_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let inputs_arg = format!("nton-inputs={}", dir.path().display());
    let bin_dir = binary_dir();
    let output = nton(
        &[
            "run",
            "--template",
            TEMPLATE,
            "--s3-bucket",
            &inputs_arg,
            "--bin-dir",
            bin_dir.to_str().unwrap(),
        ],
        &data,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "state Shards: field ResultWriter.Parameters.Bucket: bucket nton-results is not mapped to a directory (give nton run --s3-bucket nton-results=DIR)"
        ),
        "{stderr}"
    );
    // Nothing was written: no run directory, no record.
    assert!(
        !data.exists() || std::fs::read_dir(&data).unwrap().next().is_none(),
        "{}",
        data.display()
    );
}
