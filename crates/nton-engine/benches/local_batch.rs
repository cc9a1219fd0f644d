//! The local Batch's overhead at full scale: 10,000 nodes x 3 stages chained N_TO_N, each
//! child `/bin/true`, against `xargs -P <cores>` running `/bin/true` 30,000 times, measured
//! in the same run. Both spawn the same processes on the same cores; the difference is what
//! the Batch adds (scheduling, dependencies, events, pipes, logs). Target: within 1.2x.
//!
//! `cargo bench -p nton-engine --bench local_batch`; `NTON_BENCH_NODES` (default 10000) and
//! `NTON_BENCH_ROUNDS` (default 1; the best of each is reported) change the size.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nton_engine::batch::{JobDefinitionSpec, LocalBatch, LocalBatchConfig, QueueSpec};
use serde_json::json;

const STAGES: [&str; 3] = ["procure", "process", "egress"];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn xargs(cores: usize, count: usize) -> Duration {
    let started = Instant::now();
    let mut child = Command::new("xargs")
        .args(["-P", &cores.to_string(), "-n", "1", "/bin/true"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("xargs");
    let mut input = String::with_capacity(count * 6);
    for i in 0..count {
        input.push_str(&i.to_string());
        input.push('\n');
    }
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "xargs failed: {status}");
    started.elapsed()
}

fn local_batch(runtime: &tokio::runtime::Runtime, cores: usize, nodes: usize) -> Duration {
    let logs = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let mut config = LocalBatchConfig::new(logs.path());
        config.max_parallel_total = Some(cores);
        config.base_env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
        let batch = LocalBatch::new(config);
        for stage in STAGES {
            batch.add_queue(
                QueueSpec {
                    arn: format!("arn:aws:batch:local-1:000000000000:job-queue/{stage}"),
                    name: stage.to_string(),
                    max_vcpus: cores as f64,
                    compute_environment: format!("{stage}-ce"),
                },
                cores,
            );
            batch.add_job_definition(JobDefinitionSpec {
                arn: format!("arn:aws:batch:local-1:000000000000:job-definition/{stage}:1"),
                name: stage.to_string(),
                program: "/bin/true".into(),
                vcpus: 1.0,
                memory_mib: 512,
                ..JobDefinitionSpec::default()
            });
        }
        // The engine always listens (progress display, --json); so does the benchmark.
        let mut events = batch.subscribe();
        let listener = tokio::spawn(async move {
            let mut count = 0u64;
            while events.recv().await.is_some() {
                count += 1;
            }
            count
        });

        let started = Instant::now();
        let mut previous: Option<String> = None;
        for stage in STAGES {
            let mut request = json!({
                "JobName": format!("nton-{stage}-bench"),
                "JobQueue": stage,
                "JobDefinition": stage,
                "ArrayProperties": {"Size": nodes},
                "ContainerOverrides": {"Environment": [{"Name": "NTON_WORKFLOW_ID", "Value": "bench"}]}
            });
            if let Some(id) = &previous {
                request["DependsOn"] = json!([{"JobId": id, "Type": "N_TO_N"}]);
            }
            let answer = batch.submit_job(&request).expect("submit");
            previous = Some(answer["JobId"].as_str().unwrap().to_string());
        }
        batch.wait_all_terminal().await;
        let elapsed = started.elapsed();

        let summary = nton_core::batch::BatchApi::describe_jobs(&batch, &[previous.unwrap()])
            .await
            .unwrap();
        assert_eq!(
            summary[0].status,
            nton_core::batch::JobStatus::Succeeded,
            "the last stage did not succeed"
        );
        drop(batch);
        let seen = listener.await.unwrap();
        println!("  local batch: {seen} events");
        elapsed
    })
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let nodes = env_number("NTON_BENCH_NODES", 10_000);
    let rounds = env_number("NTON_BENCH_ROUNDS", 1).max(1);
    let children = nodes * STAGES.len();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "local_batch: {nodes} nodes x {} stages N_TO_N of /bin/true, {cores} cores",
        STAGES.len()
    );

    let mut best_xargs = Duration::MAX;
    let mut best_batch = Duration::MAX;
    for round in 1..=rounds {
        let x = xargs(cores, children);
        let b = local_batch(&runtime, cores, nodes);
        println!(
            "  round {round}: xargs -P {cores} {:.2} s, local batch {:.2} s",
            x.as_secs_f64(),
            b.as_secs_f64()
        );
        best_xargs = best_xargs.min(x);
        best_batch = best_batch.min(b);
    }
    let per_second = |d: Duration| children as f64 / d.as_secs_f64();
    println!(
        "xargs -P {cores}: {:.2} s ({:.0} processes/s)",
        best_xargs.as_secs_f64(),
        per_second(best_xargs)
    );
    println!(
        "local batch:    {:.2} s ({:.0} children/s)",
        best_batch.as_secs_f64(),
        per_second(best_batch)
    );
    println!(
        "ratio local batch / xargs: {:.3} (target <= 1.2)",
        best_batch.as_secs_f64() / best_xargs.as_secs_f64()
    );
}
