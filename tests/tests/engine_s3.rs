//! `nton run --output s3://...`: a local run whose egress children upload to S3 (a moto server
//! over real HTTP), with the same keys a deployed run writes.

use nton_tests::cli::{expect_success, json_summary, nton_run};
use nton_tests::moto::MotoServer;
use serde_json::Value;

#[tokio::test]
async fn a_local_run_egresses_to_s3_under_the_workflow_prefix() {
    let moto = MotoServer::start().expect("moto server");
    let config = moto.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
    );
    s3.create_bucket().bucket("results").send().await.unwrap();

    let data_dir = tempfile::tempdir().unwrap();
    let output = expect_success(
        nton_run(data_dir.path())
            .envs(moto.env())
            .args(["--ids", "60", "--ids-per-node", "20"])
            .args(["--output", "s3://results/runs"]),
    );
    let summary = json_summary(&output.stdout);
    let workflow = summary["workflowId"].as_str().unwrap();
    assert_eq!(summary["results"], format!("s3://results/runs/{workflow}/"));

    let listed = s3
        .list_objects_v2()
        .bucket("results")
        .prefix(format!("runs/{workflow}/"))
        .send()
        .await
        .unwrap();
    let keys: Vec<String> =
        listed.contents().iter().filter_map(|object| object.key().map(str::to_string)).collect();
    assert_eq!(keys.len(), 60, "{keys:?}");
    for key in &keys {
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 5, "runs/<wf>/<node>/results/<id>.json: {key}");
        assert!(["0", "1", "2"].contains(&parts[2]), "{key}");
        assert_eq!(parts[3], "results");
    }
    // One object's content is a real result: 500 points with the open flag.
    let body = s3
        .get_object()
        .bucket("results")
        .key(&keys[0])
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let points: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(points.len(), 500);
    assert!(points.iter().all(|point| point["open"].is_boolean()));
}
