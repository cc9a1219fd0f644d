//! `nton run` to S3 on LocalStack (issue 9): a local `nton run --output s3://...` whose egress children
//! upload every result as a multipart upload (threshold 1 byte) to LocalStack's S3, the objects'
//! bytes equal to the results on the local "EFS", and a second egress of a node (what a retried
//! Batch child does) leaves the same keys and bytes. The moto counterparts are egress_s3.rs and
//! engine_s3.rs; LocalStack is a second, independent S3 the same code must satisfy.

use std::collections::BTreeMap;
use std::process::Command;

use nton_tests::cli::{expect_success, json_summary, nton_run};
use nton_tests::localstack;
use nton_tests::{binary_dir, workspace_root};

async fn objects(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        for object in page.unwrap().contents() {
            let key = object.key().unwrap().to_string();
            let body = s3.get_object().bucket(bucket).key(&key).send().await.unwrap();
            let bytes = body.body.collect().await.unwrap().into_bytes().to_vec();
            found.insert(key, bytes);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_run_egresses_to_localstack_s3_in_parts_and_a_second_egress_changes_nothing() {
    let mock = workspace_root().join("tests/localstack/sfn-mock-config.json");
    let server = localstack::shared(&mock).expect("LocalStack");
    let config = server.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
    );
    s3.create_bucket().bucket("nton-results").send().await.unwrap();

    let data_dir = tempfile::tempdir().unwrap();
    let output = expect_success(
        nton_run(data_dir.path())
            .envs(server.env())
            .args(["--ids", "40", "--ids-per-node", "10", "--keep-data"])
            .args(["--output", "s3://nton-results/runs/daily"])
            .args(["--job-env", "NTON_S3_MULTIPART_THRESHOLD_BYTES=1"]),
    );
    let summary = json_summary(&output.stdout);
    let workflow = summary["workflowId"].as_str().unwrap().to_string();
    assert_eq!(summary["results"], format!("s3://nton-results/runs/daily/{workflow}/"));

    // Every object is the result file of the same key on the local EFS, byte for byte.
    let efs = data_dir.path().join(&workflow).join("efs");
    let prefix = format!("runs/daily/{workflow}/");
    let uploaded = objects(&s3, "nton-results", &prefix).await;
    assert_eq!(uploaded.len(), 40, "{:?}", uploaded.keys().collect::<Vec<_>>());
    for (key, bytes) in &uploaded {
        let relative = key.strip_prefix("runs/daily/").unwrap();
        let local = std::fs::read(efs.join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"));
        assert_eq!(bytes, &local, "{key}");
    }

    // Multipart uploads have an ETag of the form "<md5 of the parts' md5s>-<part count>".
    for key in uploaded.keys() {
        let head = s3.head_object().bucket("nton-results").key(key).send().await.unwrap();
        let etag = head.e_tag().unwrap_or_default();
        assert!(
            etag.trim_matches('"').ends_with("-1"),
            "{key}: ETag {etag} is not a one-part upload's"
        );
    }

    // Node 2's egress again, as a retried Batch child would run it: same keys, same bytes.
    let again = Command::new(binary_dir().join("nton-job"))
        .arg("egress")
        .env_clear()
        .envs(server.env())
        .env("AWS_BATCH_JOB_ARRAY_INDEX", "2")
        .env("NTON_WORKFLOW_ID", &workflow)
        .env("NTON_DATA_ROOT", &efs)
        .env("NTON_RESULTS_URL", "s3://nton-results/runs/daily")
        .env("NTON_S3_MULTIPART_THRESHOLD_BYTES", "1")
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(objects(&s3, "nton-results", &prefix).await, uploaded);
    // No multipart upload was left open by either egress.
    let open = s3.list_multipart_uploads().bucket("nton-results").send().await.unwrap();
    assert!(open.uploads().is_empty(), "{:?}", open.uploads());
}
