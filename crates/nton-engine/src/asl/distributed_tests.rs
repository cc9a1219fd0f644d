//! Distributed Map (issue 11 item 1): loading its fields, reading items from S3, batching,
//! tolerated failures and exporting results, against an in-memory object store. Each test
//! cites the developer guide page whose documented behaviour it checks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::super::{
    ExecutionContext, ExecutionOutcome, NullObserver, ObjectStore, ObjectSummary, StateMachine,
    TaskCall, TaskExecutor, TaskFailure, run_execution,
};

/// Objects by (bucket, key); writes to a bucket named `read-only` fail.
#[derive(Default)]
struct Memory(Mutex<BTreeMap<(String, String), Vec<u8>>>);

impl Memory {
    fn put(&self, bucket: &str, key: &str, body: &str) {
        self.0.lock().unwrap().insert((bucket.into(), key.into()), body.as_bytes().to_vec());
    }
    fn get(&self, bucket: &str, key: &str) -> Option<Value> {
        let objects = self.0.lock().unwrap();
        objects.get(&(bucket.to_string(), key.to_string())).map(|b| {
            serde_json::from_slice(b).unwrap_or_else(|_| json!(String::from_utf8_lossy(b)))
        })
    }
    fn keys(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().map(|(b, k)| format!("{b}/{k}")).collect()
    }
}

impl ObjectStore for Memory {
    fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        let objects = self.0.lock().unwrap();
        objects
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
            .ok_or_else(|| format!("s3://{bucket}/{key}: no such key"))
    }
    fn list_objects(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectSummary>, String> {
        let objects = self.0.lock().unwrap();
        Ok(objects
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((_, k), body)| ObjectSummary {
                key: k.clone(),
                etag: "\"e\"".into(),
                last_modified: 1_700_000_000,
                size: body.len() as u64,
            })
            .collect())
    }
    fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> Result<(), String> {
        if bucket == "read-only" {
            return Err(format!("s3://{bucket}/{key}: access denied"));
        }
        self.0.lock().unwrap().insert((bucket.into(), key.into()), body.to_vec());
        Ok(())
    }
}

/// `arn:check` fails with `Bad` when its parameters hold `"fail": true` anywhere, and
/// answers them otherwise.
#[derive(Default)]
struct Fake {
    store: Memory,
}

#[async_trait::async_trait]
impl TaskExecutor for Fake {
    async fn invoke(&self, call: TaskCall<'_>) -> Result<Value, TaskFailure> {
        assert_eq!(call.resource, "arn:check");
        if call.parameters.to_string().contains("\"fail\":true") {
            return Err(TaskFailure::new("Bad", format!("bad item {}", call.parameters)));
        }
        Ok(call.parameters)
    }
    async fn wait(&self, _: &str, _: Duration) {}
    fn object_store(&self) -> Option<&dyn ObjectStore> {
        Some(&self.store)
    }
}

/// A machine whose one state S is a Distributed Map (STANDARD children) running `arn:check`
/// on each item or batch, with `extra` fields.
fn dmap(extra: Value) -> Value {
    let mut state = json!({
        "Type": "Map",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Check",
            "States": {"Check": {"Type": "Task", "Resource": "arn:check", "End": true}}
        },
        "End": true
    });
    for (k, v) in extra.as_object().unwrap() {
        state[k] = v.clone();
    }
    json!({"StartAt": "S", "States": {"S": state}})
}

fn refused(definition: Value) -> String {
    match StateMachine::from_json(&definition) {
        Ok(_) => panic!("loaded, but should have been refused: {definition}"),
        Err(e) => e.to_string(),
    }
}

async fn run(definition: Value, input: Value, fake: &Fake) -> ExecutionOutcome {
    let machine = StateMachine::from_json(&definition).unwrap_or_else(|e| panic!("{e}"));
    run_execution(&machine, input, fake, &NullObserver, ExecutionContext::new("sm")).await
}

fn output(outcome: ExecutionOutcome) -> Value {
    match outcome {
        ExecutionOutcome::Succeeded { output } => output,
        other => panic!("not a success: {other:?}"),
    }
}

fn failure(outcome: ExecutionOutcome) -> (String, String) {
    match outcome {
        ExecutionOutcome::Failed { error, cause, .. } => (error, cause),
        other => panic!("not a failure: {other:?}"),
    }
}

#[test]
fn distributed_fields_are_checked_at_load_by_name() {
    // "Using Map state in Distributed mode": ProcessorConfig names Mode DISTRIBUTED and the
    // ExecutionType of the child workflows.
    let mut no_type = dmap(json!({}));
    no_type["States"]["S"]["ItemProcessor"]["ProcessorConfig"] = json!({"Mode": "DISTRIBUTED"});
    assert_eq!(
        refused(no_type),
        "state S: field ItemProcessor.ProcessorConfig.ExecutionType: missing: a Distributed Map needs ExecutionType STANDARD or EXPRESS"
    );
    let cases = [
        // "ItemReader (Map)": InputType CSV, JSON, JSONL (MANIFEST is not read here).
        (
            json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "MANIFEST"},
                "Parameters": {"Bucket": "b-in", "Key": "k"}}}),
            "state S: field ItemReader.ReaderConfig.InputType: MANIFEST is not read by the local engine (CSV, JSON or JSONL)",
        ),
        (
            json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "CSV"},
                "Parameters": {"Bucket": "b-in", "Key": "k"}}}),
            "state S: field ItemReader.ReaderConfig.CSVHeaderLocation: missing: InputType CSV needs FIRST_ROW or GIVEN",
        ),
        (
            json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "GIVEN"},
                "Parameters": {"Bucket": "b-in", "Key": "k"}}}),
            "state S: field ItemReader.ReaderConfig.CSVHeaders: missing: CSVHeaderLocation GIVEN needs the column names",
        ),
        (
            json!({"ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2",
                "ReaderConfig": {"Transformation": "LOAD_AND_FLATTEN"},
                "Parameters": {"Bucket": "b-in"}}}),
            "state S: field ItemReader.ReaderConfig.Transformation: LOAD_AND_FLATTEN (reading each listed object) is not run by the local engine",
        ),
        (
            json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "JSON", "MaxItems": 100_000_001u64},
                "Parameters": {"Bucket": "b-in", "Key": "k"}}}),
            "state S: field ItemReader.ReaderConfig.MaxItems: must be 0 to 100000000, got 100000001",
        ),
        (
            json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "JSON"},
                "Parameters": {"Bucket": "b-in", "Key": "k", "VersionId": "v1"}}}),
            "state S: field ItemReader.Parameters.VersionId: object versions are not kept by the local engine",
        ),
        // "ItemBatcher (Map)": one of the maximums must be given; a batch is at most 256 KiB.
        (
            json!({"ItemBatcher": {}}),
            "state S: field ItemBatcher: needs MaxItemsPerBatch(Path) or MaxInputBytesPerBatch(Path)",
        ),
        (
            json!({"ItemBatcher": {"MaxInputBytesPerBatch": 262_145}}),
            "state S: field ItemBatcher.MaxInputBytesPerBatch: must be 1 to 262144, got 262145",
        ),
        (
            json!({"ItemBatcher": {"MaxItemsPerBatch": 2, "MaxItemsPerBatchPath": "$.n"}}),
            "state S: field ItemBatcher.MaxItemsPerBatchPath: ItemBatcher.MaxItemsPerBatch is set too; use one",
        ),
        // "ResultWriter (Map)": the field cannot be empty.
        (
            json!({"ResultWriter": {}}),
            "state S: field ResultWriter: cannot be empty: give WriterConfig, or Resource and Parameters, or all three",
        ),
        (
            json!({"ResultWriter": {"WriterConfig": {"Transformation": "SQUASH"}}}),
            "state S: field ResultWriter.WriterConfig.Transformation: must be NONE, COMPACT or FLATTEN, got 'SQUASH'",
        ),
        // "Tolerated failure threshold": a percentage from 0 to 100.
        (
            json!({"ToleratedFailurePercentage": 101}),
            "state S: field ToleratedFailurePercentage: must be a number from 0 to 100, got 101",
        ),
        (
            json!({"ToleratedFailureCount": -1}),
            "state S: field ToleratedFailureCount: must be a non-negative integer, got -1",
        ),
        (
            json!({"ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                "Arguments": {"Bucket": "b-out"}}}),
            "state S: field ResultWriter.Arguments: is the JSONata form of Parameters; the local engine's Distributed Map reads Parameters (JSONPath)",
        ),
        (
            json!({"Label": "has space"}),
            "state S: field Label: ' ' is not allowed (no whitespace, brackets, wildcards, control characters or any of <>{}[]?*\"#%\\^|~`$&,;:/)",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(refused(dmap(extra.clone())), want, "{extra}");
    }
}

#[test]
fn express_children_cannot_wait_for_jobs() {
    // "Choosing workflow type in Step Functions": Express workflows support request-response
    // integrations only, not .sync.
    let mut machine = dmap(json!({}));
    machine["States"]["S"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = json!("EXPRESS");
    machine["States"]["S"]["ItemProcessor"]["States"]["Check"]["Resource"] =
        json!("arn:aws:states:::batch:submitJob.sync");
    assert_eq!(
        refused(machine.clone()),
        "state Check: field Resource: arn:aws:states:::batch:submitJob.sync: a child of the EXPRESS Distributed Map S cannot wait for a job (.sync); use ExecutionType STANDARD"
    );
    machine["States"]["S"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = json!("STANDARD");
    StateMachine::from_json(&machine).unwrap();
}

#[test]
fn an_inline_map_refuses_distributed_fields_by_name() {
    // "Using Map state in Distributed mode": these fields are the Distributed Map's.
    for (field, value) in [
        ("ItemReader", json!({"Resource": "arn:aws:states:::s3:getObject"})),
        ("ItemBatcher", json!({"MaxItemsPerBatch": 2})),
        ("ResultWriter", json!({"WriterConfig": {}})),
        ("ToleratedFailurePercentage", json!(10)),
        ("ToleratedFailureCount", json!(1)),
        ("Label", json!("x")),
    ] {
        let mut machine = dmap(json!({ field: value }));
        machine["States"]["S"]["ItemProcessor"]["ProcessorConfig"] = json!({"Mode": "INLINE"});
        assert_eq!(
            refused(machine),
            format!(
                "state S: field {field}: is a Distributed Map field (ItemProcessor.ProcessorConfig.Mode DISTRIBUTED)"
            )
        );
    }
}

#[tokio::test]
async fn items_come_from_a_json_array_json_lines_or_csv_object() {
    // "ItemReader (Map)": s3:getObject of a JSON array, JSON Lines or CSV file; MaxItems
    // limits the items read. "How Step Functions parses input CSV files": fields are strings,
    // quotes hold delimiters, a short row gets empty strings, a long row loses its extras.
    let fake = Fake::default();
    fake.store.put("data-in", "a.json", r#"[{"n":1},{"n":2},{"n":3}]"#);
    fake.store.put("data-in", "a.jsonl", "{\"n\":1}\n\n{\"n\":2}\n");
    fake.store.put("data-in", "a.csv", "name,qty\nbolt,\"1,5\"\nnut\nwasher,3,extra\n");
    fake.store.put("data-in", "b.csv", "x;y\n");
    let reader = |input_type: &str, extra: Value| {
        let mut config = json!({"InputType": input_type});
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        dmap(json!({"ItemReader": {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": config,
            "Parameters": {"Bucket": "data-in", "Key.$": "$.key"}
        }}))
    };
    let out = output(run(reader("JSON", json!({})), json!({"key": "a.json"}), &fake).await);
    assert_eq!(out, json!([{"n": 1}, {"n": 2}, {"n": 3}]));
    let out = output(
        run(
            reader("JSON", json!({"MaxItemsPath": "$.max"})),
            json!({"key": "a.json", "max": 2}),
            &fake,
        )
        .await,
    );
    assert_eq!(out, json!([{"n": 1}, {"n": 2}]));
    let out = output(run(reader("JSONL", json!({})), json!({"key": "a.jsonl"}), &fake).await);
    assert_eq!(out, json!([{"n": 1}, {"n": 2}]));
    let out = output(
        run(
            reader("CSV", json!({"CSVHeaderLocation": "FIRST_ROW"})),
            json!({"key": "a.csv"}),
            &fake,
        )
        .await,
    );
    assert_eq!(
        out,
        json!([
            {"name": "bolt", "qty": "1,5"},
            {"name": "nut", "qty": ""},
            {"name": "washer", "qty": "3"}
        ])
    );
    // "ItemReader (Map)": a CSV header of up to 10 KiB.
    fake.store.put("data-in", "wide.csv", &format!("{}\n1\n", "h".repeat(10 * 1024)));
    let (error, cause) = failure(
        run(
            reader("CSV", json!({"CSVHeaderLocation": "FIRST_ROW"})),
            json!({"key": "wide.csv"}),
            &fake,
        )
        .await,
    );
    assert_eq!(error, "States.ItemReaderFailed");
    assert!(cause.contains("the CSV header has 10241 bytes, more than the 10240"), "{cause}");
    let given = json!({"CSVHeaderLocation": "GIVEN", "CSVHeaders": ["a", "b"], "CSVDelimiter": "SEMICOLON"});
    let out = output(run(reader("CSV", given), json!({"key": "b.csv"}), &fake).await);
    assert_eq!(out, json!([{"a": "x", "b": "y"}]));

    // A missing object or one that is not a JSON array fails the state with
    // States.ItemReaderFailed ("Handling errors in Step Functions workflows").
    let (error, cause) =
        failure(run(reader("JSON", json!({})), json!({"key": "a.csv"}), &fake).await);
    assert_eq!(error, "States.ItemReaderFailed");
    assert!(cause.starts_with("s3://data-in/a.csv: the object is not JSON"), "{cause}");
    let (error, cause) =
        failure(run(reader("JSON", json!({})), json!({"key": "none.json"}), &fake).await);
    assert_eq!(
        (error.as_str(), cause.as_str()),
        ("States.ItemReaderFailed", "s3://data-in/none.json: no such key")
    );
}

#[tokio::test]
async fn items_can_be_the_objects_under_a_prefix() {
    // "ItemReader (Map)": s3:listObjectsV2 with a Prefix gives one item per object with its
    // Etag, Key, LastModified, Size and StorageClass.
    let fake = Fake::default();
    fake.store.put("data-in", "img/1.jpg", "abc");
    fake.store.put("data-in", "img/2.jpg", "de");
    fake.store.put("data-in", "txt/3.txt", "f");
    let machine = dmap(json!({
        "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2",
            "Parameters": {"Bucket": "data-in", "Prefix": "img/"}},
        "ItemSelector": {"key.$": "$$.Map.Item.Value.Key", "size.$": "$$.Map.Item.Value.Size",
            "class.$": "$$.Map.Item.Value.StorageClass", "index.$": "$$.Map.Item.Index"}
    }));
    let out = output(run(machine, json!({}), &fake).await);
    assert_eq!(
        out,
        json!([
            {"key": "img/1.jpg", "size": 3, "class": "STANDARD", "index": 0},
            {"key": "img/2.jpg", "size": 2, "class": "STANDARD", "index": 1}
        ])
    );
}

#[tokio::test]
async fn batches_hold_items_and_the_batch_input() {
    // "ItemBatcher (Map)": each child gets {"Items": [...]} of at most MaxItemsPerBatch items
    // (1130 items by 100 make 12 batches, the last of 30), with BatchInput alongside.
    let fake = Fake::default();
    let machine = dmap(json!({
        "ItemBatcher": {"MaxItemsPerBatchPath": "$.per", "BatchInput": {"run.$": "$.run"}},
        "ItemsPath": "$.items"
    }));
    let items: Vec<Value> = (1..=5).map(|n| json!(n)).collect();
    let out = output(run(machine, json!({"items": items, "per": 2, "run": "r1"}), &fake).await);
    assert_eq!(
        out,
        json!([
            {"BatchInput": {"run": "r1"}, "Items": [1, 2]},
            {"BatchInput": {"run": "r1"}, "Items": [3, 4]},
            {"BatchInput": {"run": "r1"}, "Items": [5]}
        ])
    );
    // MaxInputBytesPerBatch: no batch goes over the size; {"Items":["aaaa","bbbb"]} is 25 bytes.
    let machine = dmap(json!({"ItemBatcher": {"MaxInputBytesPerBatch": 25}}));
    let out = output(run(machine, json!(["aaaa", "bbbb", "cccc"]), &fake).await);
    assert_eq!(out, json!([{"Items": ["aaaa", "bbbb"]}, {"Items": ["cccc"]}]));
}

#[tokio::test]
async fn a_failed_child_fails_the_map_run_unless_tolerated() {
    // "Tolerated failure threshold": the default is 0%, so one failed child fails the Map Run
    // with States.ExceedToleratedFailureThreshold; ToleratedFailureCount tolerates that many
    // failed items, and a failed child's result comes back unchanged (as Transformation NONE,
    // "ResultWriter (Map)").
    let fake = Fake::default();
    let items = json!([{"n": 1}, {"n": 2, "fail": true}, {"n": 3}]);
    let (error, cause) = failure(run(dmap(json!({})), items.clone(), &fake).await);
    assert_eq!(error, "States.ExceedToleratedFailureThreshold");
    assert_eq!(cause, "The specified tolerated failure threshold was exceeded");

    let out = output(run(dmap(json!({"ToleratedFailureCount": 1})), items.clone(), &fake).await);
    assert_eq!(out[0], json!({"n": 1}));
    assert_eq!(out[2], json!({"n": 3}));
    assert_eq!(out[1]["Status"], "FAILED");
    assert_eq!(out[1]["Error"], "Bad");
    assert_eq!(out[1]["Input"], json!({"n": 2, "fail": true}).to_string());
    assert!(
        out[1]["ExecutionArn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:states:local-1:000000000000:execution:sm/S:"),
        "{}",
        out[1]
    );

    // The percentage is of all items: 1 of 3 is 33.3%, over 33 and not over 34.
    let (error, _) =
        failure(run(dmap(json!({"ToleratedFailurePercentage": 33})), items.clone(), &fake).await);
    assert_eq!(error, "States.ExceedToleratedFailureThreshold");
    // The path form reads the effective input: $[0].n is 1 (1%), and 33.3% failed.
    let (error, _) = failure(
        run(dmap(json!({"ToleratedFailurePercentagePath": "$[0].n"})), items.clone(), &fake).await,
    );
    assert_eq!(error, "States.ExceedToleratedFailureThreshold");
    output(run(dmap(json!({"ToleratedFailurePercentage": 34})), items, &fake).await);

    // A failed batch counts each of its items: 2 items in the failed batch exceed a count of 1.
    let batched = dmap(json!({"ItemBatcher": {"MaxItemsPerBatch": 2}, "ToleratedFailureCount": 1}));
    let items = json!([{"n": 1, "fail": true}, {"n": 2}, {"n": 3}]);
    let (error, _) = failure(run(batched, items, &fake).await);
    assert_eq!(error, "States.ExceedToleratedFailureThreshold");

    // The error is the Map state's, so its Catch sees it.
    let mut caught = dmap(json!({}));
    caught["States"]["S"]["Catch"] =
        json!([{"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "Next": "Caught"}]);
    caught["States"]["S"].as_object_mut().unwrap().remove("End");
    caught["States"]["S"]["Next"] = json!("End");
    caught["States"]["End"] = json!({"Type": "Pass", "End": true});
    caught["States"]["Caught"] = json!({"Type": "Pass", "Result": "caught", "End": true});
    let out = output(run(caught, json!([{"fail": true}]), &fake).await);
    assert_eq!(out, json!("caught"));
}

#[tokio::test]
async fn results_are_exported_as_aws_writes_them() {
    // "ResultWriter (Map)", exporting to Amazon S3: SUCCEEDED_0.json, FAILED_0.json and
    // manifest.json under <Prefix>/<Map Run id>/; the state returns the Map Run ARN and the
    // manifest's bucket and key; each record has the child's metadata and its Input and Output
    // as JSON text.
    let fake = Fake::default();
    let machine = dmap(json!({
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "data-out", "Prefix": "jobs"}},
        "ToleratedFailureCount": 1,
        "Label": "Orders"
    }));
    let out = output(run(machine, json!([{"n": 1}, {"n": 2, "fail": true}]), &fake).await);
    let arn = out["MapRunArn"].as_str().unwrap();
    let id = arn.rsplit(':').next().unwrap();
    assert_eq!(arn, format!("arn:aws:states:local-1:000000000000:mapRun:sm/Orders:{id}"));
    assert_eq!(
        out["ResultWriterDetails"],
        json!({"Bucket": "data-out", "Key": format!("jobs/{id}/manifest.json")})
    );
    let manifest = fake.store.get("data-out", &format!("jobs/{id}/manifest.json")).unwrap();
    let succeeded = fake.store.get("data-out", &format!("jobs/{id}/SUCCEEDED_0.json")).unwrap();
    let failed = fake.store.get("data-out", &format!("jobs/{id}/FAILED_0.json")).unwrap();
    assert_eq!(manifest["DestinationBucket"], "data-out");
    assert_eq!(manifest["MapRunArn"], arn);
    assert_eq!(manifest["ResultFiles"]["PENDING"], json!([]));
    assert_eq!(
        manifest["ResultFiles"]["SUCCEEDED"],
        json!([{"Key": format!("jobs/{id}/SUCCEEDED_0.json"),
            "Size": serde_json::to_vec(&succeeded).unwrap().len()}])
    );
    assert_eq!(succeeded.as_array().unwrap().len(), 1);
    let s = &succeeded[0];
    assert_eq!(s["Status"], "SUCCEEDED");
    assert_eq!(s["Input"], "{\"n\":1}");
    assert_eq!(s["Output"], "{\"n\":1}");
    assert_eq!(s["InputDetails"], json!({"Included": true}));
    assert_eq!(s["RedriveStatus"], "NOT_REDRIVABLE");
    assert_eq!(s["StateMachineArn"], "arn:aws:states:local-1:000000000000:stateMachine:sm/Orders");
    assert!(s["StartDate"].as_str().unwrap().ends_with('Z'));
    assert_eq!(failed[0]["Status"], "FAILED");
    assert_eq!(failed[0]["Error"], "Bad");
    assert_eq!(fake.store.keys().len(), 3, "{:?}", fake.store.keys());
}

#[tokio::test]
async fn a_failed_write_fails_the_state_with_result_writer_failed() {
    // "Handling errors in Step Functions workflows": States.ResultWriterFailed when the Map
    // cannot write its results; a Bucket.$ is read from the effective input.
    let fake = Fake::default();
    let machine = dmap(json!({
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket.$": "$.out", "Prefix": "p"}},
        "ItemsPath": "$.items"
    }));
    let (error, cause) =
        failure(run(machine, json!({"out": "read-only", "items": [1]}), &fake).await);
    assert_eq!(error, "States.ResultWriterFailed");
    assert!(
        cause.starts_with("s3://read-only/p/") && cause.ends_with(": access denied"),
        "{cause}"
    );
}

#[tokio::test]
async fn children_left_unstarted_are_pending_and_results_are_still_exported() {
    // "ResultWriter (Map)": PENDING_n.json holds the children not started because the Map Run
    // failed. One child at a time, the first one failing: the other two never start.
    let fake = Fake::default();
    let machine = dmap(json!({
        "MaxConcurrency": 1,
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "data-out"}}
    }));
    let (error, _) =
        failure(run(machine, json!([{"fail": true}, {"n": 2}, {"n": 3}]), &fake).await);
    assert_eq!(error, "States.ExceedToleratedFailureThreshold");
    let keys = fake.store.keys();
    let manifest_key = keys.iter().find(|k| k.ends_with("/manifest.json")).unwrap();
    let manifest =
        fake.store.get("data-out", manifest_key.trim_start_matches("data-out/")).unwrap();
    assert_eq!(manifest["ResultFiles"]["SUCCEEDED"], json!([]));
    let pending_key = manifest["ResultFiles"]["PENDING"][0]["Key"].as_str().unwrap();
    let pending = fake.store.get("data-out", pending_key).unwrap();
    assert_eq!(pending.as_array().unwrap().len(), 2);
    assert_eq!(pending[0]["Status"], "PENDING");
}

#[tokio::test]
async fn a_writer_config_alone_shapes_the_state_result() {
    // "ResultWriter (Map)": WriterConfig without Resource and Parameters formats the results
    // and passes them on; FLATTEN splices children's arrays into one.
    let fake = Fake::default();
    let machine = dmap(json!({
        "ItemBatcher": {"MaxItemsPerBatch": 2},
        "ResultSelector": {"flat.$": "$"},
        "ResultWriter": {"WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSON"}},
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "Items",
            "States": {"Items": {"Type": "Pass", "OutputPath": "$.Items", "End": true}}
        }
    }));
    let out = output(run(machine, json!([1, 2, 3]), &fake).await);
    assert_eq!(out, json!({"flat": [1, 2, 3]}));
}

#[tokio::test]
async fn each_child_is_an_execution_with_its_own_context() {
    // "Accessing execution data from the Context object": $$.Execution names the execution
    // and holds its input; a child's is the child's, whose record ("ResultWriter (Map)")
    // carries the same name.
    let fake = Fake::default();
    let machine = dmap(json!({
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "data-out"}},
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Who",
            "States": {"Who": {"Type": "Pass", "End": true, "Parameters": {
                "name.$": "$$.Execution.Name", "id.$": "$$.Execution.Id",
                "input.$": "$$.Execution.Input", "machine.$": "$$.StateMachine.Name"}}}
        }
    }));
    output(run(machine, json!([{"n": 7}]), &fake).await);
    let key = fake.store.keys().into_iter().find(|k| k.ends_with("SUCCEEDED_0.json")).unwrap();
    let records = fake.store.get("data-out", key.trim_start_matches("data-out/")).unwrap();
    let seen: Value = serde_json::from_str(records[0]["Output"].as_str().unwrap()).unwrap();
    assert_eq!(seen["name"], records[0]["Name"]);
    assert_eq!(seen["id"], records[0]["ExecutionArn"]);
    assert_eq!(seen["input"], json!({"n": 7}));
    assert_eq!(seen["machine"], "sm/S");
}

#[tokio::test]
async fn children_do_not_see_the_parents_variables() {
    // "Passing data between states with variables": child workflows of a Distributed Map
    // cannot reference variables of outer scopes.
    let fake = Fake::default();
    let machine = json!({"StartAt": "Set", "States": {
        "Set": {"Type": "Pass", "Assign": {"outer": 1}, "Next": "S"},
        "S": {"Type": "Map", "End": true, "ToleratedFailureCount": 5,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Read",
                "States": {"Read": {"Type": "Pass", "Parameters": {"v.$": "$outer"}, "End": true}}
            }}
    }});
    let out = output(run(machine, json!([1]), &fake).await);
    assert_eq!(out[0]["Status"], "FAILED", "{out}");
    assert_eq!(out[0]["Error"], "States.Runtime");
}

#[test]
fn buckets_named_in_the_definition_are_listed_for_binding() {
    let machine = StateMachine::from_json(&dmap(json!({
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON"},
            "Parameters": {"Bucket": "data-in", "Key": "k"}},
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket.$": "$.out"}}
    })))
    .unwrap();
    let uses = machine.s3_buckets();
    assert_eq!(uses.len(), 1, "a Bucket.$ is known only at run time: {uses:?}");
    assert_eq!(
        (uses[0].state.as_str(), uses[0].field, uses[0].bucket.as_str()),
        ("S", "ItemReader.Parameters.Bucket", "data-in")
    );
}
