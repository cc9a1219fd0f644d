//! Egress to S3 on LocalStack: the built `nton-job egress` binary with the emulator's
//! environment, every result as a multipart upload (threshold 1 byte) for one node and as
//! single PUTs for another; every object is read back and compared with its file, and a
//! re-run of the same node (a retried Batch job) leaves the same objects and no open upload.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use aws_sdk_s3::Client;
use nton_core::layout::{Layout, format_ids};
use nton_core::plan::WorkflowId;
use nton_core::stage::{self, EgressItem};
use nton_job::s3;
use nton_tests::localstack::{self, LocalStack};
use uuid::Uuid;

/// A data root with `nodes` nodes procured and processed, as egress finds it.
fn prepared(root: &std::path::Path, wf: &WorkflowId, nodes: u32, ids_per_node: usize) {
    let layout = Layout::new(root);
    for node in 0..nodes {
        let ids: Vec<Uuid> = (0..ids_per_node).map(|_| Uuid::new_v4()).collect();
        fs::create_dir_all(layout.prep_dir(wf, node)).unwrap();
        fs::write(layout.prep_ids_file(wf, node), format_ids(&ids)).unwrap();
        stage::procure(&layout, wf, node).unwrap();
        stage::process(&layout, wf, node).unwrap();
    }
}

fn egress(
    server: &LocalStack,
    root: &std::path::Path,
    wf: &WorkflowId,
    node: u32,
    extra: &[(&str, &str)],
) {
    let output = Command::new(nton_tests::workspace_binary("nton-job"))
        .arg("egress")
        .env_clear()
        .envs(server.env())
        .env("AWS_BATCH_JOB_ARRAY_INDEX", node.to_string())
        .env("NTON_WORKFLOW_ID", wf.to_string())
        .env("NTON_DATA_ROOT", root)
        .env("NTON_RESULTS_URL", "s3://ls-results/daily")
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "egress of node {node}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn objects(client: &Client, bucket: &str) -> BTreeMap<String, (Vec<u8>, String)> {
    let mut found = BTreeMap::new();
    let listed = client.list_objects_v2().bucket(bucket).send().await.unwrap();
    assert!(!listed.is_truncated().unwrap_or(false));
    for object in listed.contents() {
        let key = object.key().unwrap().to_string();
        let got = client.get_object().bucket(bucket).key(&key).send().await.unwrap();
        let etag = got.e_tag().unwrap_or_default().trim_matches('"').to_string();
        let body = got.body.collect().await.unwrap().into_bytes().to_vec();
        found.insert(key, (body, etag));
    }
    found
}

fn expected(items: &[EgressItem]) -> BTreeMap<String, Vec<u8>> {
    items
        .iter()
        .map(|item| (s3::object_key(Some("daily"), &item.key), fs::read(&item.path).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_uploads_in_parts_and_singly_and_a_rerun_changes_nothing() {
    let started = std::time::Instant::now();
    let mock = nton_tests::workspace_root().join("tests/localstack/sfn-mock-config.json");
    let server = localstack::shared(&mock).expect("LocalStack starts");
    let client = s3::client(&server.sdk_config().await, true);
    client.create_bucket().bucket("ls-results").send().await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let wf = WorkflowId::new_v4();
    prepared(root.path(), &wf, 2, 6);
    let layout = Layout::new(root.path());
    let items = |node| stage::egress_items(&layout, &wf, node).unwrap();

    let multipart = [("NTON_S3_MULTIPART_THRESHOLD_BYTES", "1")];
    egress(server, root.path(), &wf, 0, &multipart);
    egress(server, root.path(), &wf, 1, &[]);
    let mut want = expected(&items(0));
    let parts: Vec<String> = want.keys().cloned().collect();
    want.extend(expected(&items(1)));
    let first = objects(&client, "ls-results").await;
    assert_eq!(
        first.iter().map(|(k, (b, _))| (k.clone(), b.clone())).collect::<BTreeMap<_, _>>(),
        want
    );
    for (key, (_, etag)) in &first {
        // A multipart object's ETag ends in -<parts>; a single PUT's does not.
        assert_eq!(etag.ends_with("-1"), parts.contains(key), "{key}: {etag}");
    }

    // A retried job uploads again: same keys, same bytes, nothing left open.
    egress(server, root.path(), &wf, 0, &multipart);
    egress(server, root.path(), &wf, 1, &[]);
    let again = objects(&client, "ls-results").await;
    assert_eq!(
        again.iter().map(|(k, (b, _))| (k.clone(), b.clone())).collect::<BTreeMap<_, _>>(),
        want
    );
    let open = client.list_multipart_uploads().bucket("ls-results").send().await.unwrap();
    assert!(open.uploads().is_empty(), "{:?}", open.uploads());
    eprintln!("localstack_s3 took {:?}", started.elapsed());
}
