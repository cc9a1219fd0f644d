//! Egress to S3 against a moto server over real HTTP with the real SDK: in-process through
//! `nton_job::egress_to_s3` and `nton_job::s3::upload`, and through the built `nton-job` binary
//! with the emulator's environment. Every object is read back and compared with its file.
//! moto 5.2.5 (tests/tools.sh) answers CompleteMultipartUpload as S3 does (5.2.1 did not), so
//! multipart uploads go through the SDK's own HTTP client like everything else.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_s3::Client;
use nton_core::layout::{Layout, format_ids};
use nton_core::plan::WorkflowId;
use nton_core::stage::{self, EgressItem, Stage};
use nton_job::WorkerConfig;
use nton_job::s3::{self, UploadOptions};
use nton_tests::moto::MotoServer;
use uuid::Uuid;

const MIB: usize = 1024 * 1024;

/// A data root with `nodes` nodes procured and processed, as egress finds it.
struct Run {
    root: tempfile::TempDir,
    wf: WorkflowId,
}

impl Run {
    fn new(nodes: u32, ids_per_node: usize) -> Run {
        let root = tempfile::tempdir().unwrap();
        let wf = WorkflowId::new_v4();
        let layout = Layout::new(root.path());
        for node in 0..nodes {
            let ids: Vec<Uuid> = (0..ids_per_node).map(|_| Uuid::new_v4()).collect();
            fs::create_dir_all(layout.prep_dir(&wf, node)).unwrap();
            fs::write(layout.prep_ids_file(&wf, node), format_ids(&ids)).unwrap();
            stage::procure(&layout, &wf, node).unwrap();
            stage::process(&layout, &wf, node).unwrap();
        }
        Run { root, wf }
    }

    fn items(&self, node: u32) -> Vec<EgressItem> {
        stage::egress_items(&Layout::new(self.root.path()), &self.wf, node).unwrap()
    }

    fn vars(&self, node: u32, url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut vars = vec![
            ("AWS_BATCH_JOB_ARRAY_INDEX".to_string(), node.to_string()),
            ("NTON_WORKFLOW_ID".to_string(), self.wf.to_string()),
            ("NTON_DATA_ROOT".to_string(), self.root.path().display().to_string()),
            ("NTON_RESULTS_URL".to_string(), url.to_string()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        vars
    }
}

async fn s3_client(moto: &MotoServer) -> Client {
    s3::client(&moto.sdk_config().await, true)
}

async fn create_bucket(client: &Client, bucket: &str) {
    client.create_bucket().bucket(bucket).send().await.unwrap();
}

/// Every object of the bucket under `prefix`, key -> bytes.
async fn objects(client: &Client, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .unwrap();
    let mut objects = BTreeMap::new();
    for object in pages.iter().flat_map(|page| page.contents()) {
        let key = object.key().unwrap().to_string();
        let body = client.get_object().bucket(bucket).key(&key).send().await.unwrap().body;
        objects.insert(key, body.collect().await.unwrap().to_vec());
    }
    objects
}

/// What the bucket must hold after egress of `items` under `prefix`: key -> the file's bytes.
fn expected(items: &[EgressItem], prefix: Option<&str>) -> BTreeMap<String, Vec<u8>> {
    items
        .iter()
        .map(|item| (s3::object_key(prefix, &item.key), fs::read(&item.path).unwrap()))
        .collect()
}

/// The built worker binary, beside this test's own executable in the target directory
/// (`cargo build --workspace --bins` builds it, as tests/run-all does before the tests).
fn worker_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let binary = dir.join("nton-job");
    assert!(
        binary.is_file(),
        "{} is missing: build it first with `cargo build -p nton-job`",
        binary.display()
    );
    binary
}

fn run_worker(moto: &MotoServer, vars: &[(String, String)]) -> std::process::Output {
    Command::new(worker_binary())
        .arg("egress")
        .env_clear()
        .envs(moto.env())
        .envs(vars.iter().cloned())
        .output()
        .unwrap()
}

#[tokio::test]
async fn in_process_egress_uploads_every_result_under_the_prefix() {
    let moto = MotoServer::start().unwrap();
    let client = s3_client(&moto).await;
    create_bucket(&client, "results").await;
    let run = Run::new(2, 25);

    let vars: std::collections::HashMap<String, String> = run
        .vars(1, "s3://results/team/daily/", &[("AWS_ENDPOINT_URL", &moto.endpoint())])
        .into_iter()
        .collect();
    let config = WorkerConfig::from_vars(Stage::Egress, &vars).unwrap();
    assert!(config.s3.force_path_style, "an endpoint URL turns on path-style addressing");
    let report = nton_job::egress_to_s3(&config, &moto.sdk_config().await).await.unwrap();

    let items = run.items(1);
    assert_eq!(report.files, 25);
    assert_eq!(report.bytes, items.iter().map(|i| i.len).sum::<u64>());
    let want = expected(&items, Some("team/daily"));
    assert!(want.keys().all(|k| k.starts_with(&format!("team/daily/{}/1/results/", run.wf))));
    // Only node 1's results, and nothing outside the prefix.
    assert_eq!(objects(&client, "results", "").await, want);

    let head = client
        .head_object()
        .bucket("results")
        .key(want.keys().next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/json"));

    // Re-running overwrites the same keys with the same bytes.
    nton_job::egress_to_s3(&config, &moto.sdk_config().await).await.unwrap();
    assert_eq!(objects(&client, "results", "").await, want);
}

#[tokio::test]
async fn large_files_go_up_in_parts() {
    let moto = MotoServer::start().unwrap();
    let client = s3_client(&moto).await;
    create_bucket(&client, "big-results").await;
    let dir = tempfile::tempdir().unwrap();

    // 12 MiB + 3 bytes of varied bytes in 5 MiB parts: three parts, the last short.
    let big: Vec<u8> = (0..12 * MIB + 3).map(|i| (i % 251) as u8).collect();
    let big_path = dir.path().join("big.json");
    fs::write(&big_path, &big).unwrap();
    let small_path = dir.path().join("small.json");
    fs::write(&small_path, b"[1,2,3]").unwrap();
    let items = vec![
        EgressItem { key: "wf/0/results/big.json".into(), path: big_path, len: big.len() as u64 },
        EgressItem { key: "wf/0/results/small.json".into(), path: small_path, len: 7 },
    ];
    let options = UploadOptions {
        concurrency: 2,
        multipart_threshold: 6 * MIB as u64,
        part_size: 5 * MIB as u64,
    };
    let report = s3::upload(&client, "big-results", None, &items, &options).await.unwrap();
    assert_eq!(report.files, 2);
    assert_eq!(report.bytes, big.len() as u64 + 7);

    assert_eq!(objects(&client, "big-results", "").await, expected(&items, None));
    // A multipart object's ETag ends in -<parts>; a single PUT's does not.
    let etag = |key: &'static str| {
        let client = client.clone();
        async move {
            let head = client.head_object().bucket("big-results").key(key).send().await.unwrap();
            head.e_tag().unwrap().trim_matches('"').to_string()
        }
    };
    assert!(etag("wf/0/results/big.json").await.ends_with("-3"));
    assert!(!etag("wf/0/results/small.json").await.contains('-'));
}

#[tokio::test]
async fn a_lowered_threshold_sends_every_result_as_multipart() {
    let moto = MotoServer::start().unwrap();
    let sdk_config = moto.sdk_config().await;
    let client = s3::client(&sdk_config, true);
    create_bucket(&client, "parts").await;
    let run = Run::new(1, 8);
    let vars: std::collections::HashMap<String, String> = run
        .vars(
            0,
            "s3://parts/p",
            &[("NTON_S3_MULTIPART_THRESHOLD_BYTES", "1"), ("NTON_S3_FORCE_PATH_STYLE", "true")],
        )
        .into_iter()
        .collect();
    let config = WorkerConfig::from_vars(Stage::Egress, &vars).unwrap();
    let report = nton_job::egress_to_s3(&config, &sdk_config).await.unwrap();
    assert_eq!(report.files, 8);

    let want = expected(&run.items(0), Some("p"));
    assert_eq!(objects(&client, "parts", "").await, want);
    for key in want.keys() {
        let head = client.head_object().bucket("parts").key(key).send().await.unwrap();
        assert!(
            head.e_tag().unwrap().trim_matches('"').ends_with("-1"),
            "{key} went up as one part"
        );
        assert_eq!(head.content_type(), Some("application/json"));
    }
    // No upload is left open.
    let open = client.list_multipart_uploads().bucket("parts").send().await.unwrap();
    assert!(open.uploads().is_empty());
}

#[tokio::test]
async fn an_upload_to_a_missing_bucket_names_the_key() {
    let moto = MotoServer::start().unwrap();
    let client = s3_client(&moto).await;
    let run = Run::new(1, 2);
    let items = run.items(0);
    let error = s3::upload(&client, "no-such-bucket", Some("p"), &items, &UploadOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("egress of "), "{error}");
    assert!(error.contains(&format!("to s3://no-such-bucket/p/{}/0/results/", run.wf)), "{error}");
    assert!(error.contains("NoSuchBucket"), "{error}");
}

#[tokio::test]
async fn the_binary_uploads_with_the_emulator_environment() {
    let moto = MotoServer::start().unwrap();
    let client = s3_client(&moto).await;
    create_bucket(&client, "bin-results").await;
    let run = Run::new(3, 10);

    // Node 2, no prefix, single PUTs.
    let output = run_worker(&moto, &run.vars(2, "s3://bin-results", &[]));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let finished: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(finished["fields"]["message"], "stage finished");
    assert_eq!(finished["fields"]["files"], 10);
    let node2 = expected(&run.items(2), None);
    assert_eq!(objects(&client, "bin-results", "").await, node2);

    // Node 0, under a prefix; a re-run writes the same objects again.
    for _ in 0..2 {
        let output = run_worker(&moto, &run.vars(0, "s3://bin-results/out/", &[]));
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let node0 = expected(&run.items(0), Some("out"));
    assert_eq!(objects(&client, "bin-results", "out/").await, node0);
    assert_eq!(objects(&client, "bin-results", "").await.len(), 20);

    // A missing bucket: exit 1 and one line naming node, key and the service's error.
    let output = run_worker(&moto, &run.vars(1, "s3://missing-bucket", &[]));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("nton-job egress: node 1: egress of "), "{stderr}");
    assert!(stderr.contains("to s3://missing-bucket/"), "{stderr}");
    assert!(stderr.contains("NoSuchBucket"), "{stderr}");
}
