//! Benchmark: init of the original's claimed scale, 400,000 ids over 10,000 nodes.
//!
//! `cargo bench -p nton-init --bench init`. Prints figures; asserts nothing. The baseline runs
//! in the same process on the same file system: it creates the same directories and files with
//! the same bytes (already in memory), temp file then rename, (a) one after another and (b) on
//! as many threads as init uses. Each run gets a new workflow directory; all are removed at the
//! end, untimed.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nton_core::fsutil;
use nton_core::layout::{Layout, format_ids};
use nton_core::plan::{RunPlan, WorkflowId};
use nton_init::{InitConfig, handle};
use serde_json::json;
use uuid::Uuid;

const IDS: u32 = 400_000;
const IDS_PER_NODE: u32 = 40;
const RUNS: usize = 5;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// What init writes for one node, by hand with std: node dir, prep dir, temp file, rename.
fn write_node_plain(node_dir: &Path, bytes: &[u8]) {
    let prep = node_dir.join("prep");
    fs::create_dir(node_dir).expect("node dir");
    fs::create_dir(&prep).expect("prep dir");
    let temp = prep.join(".ids.csv.tmp");
    fs::write(&temp, bytes).expect("write");
    fs::rename(&temp, prep.join("ids.csv")).expect("rename");
}

fn timed(run: impl FnOnce()) -> Duration {
    let start = Instant::now();
    run();
    start.elapsed()
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = Layout::new(dir.path());
    let config = InitConfig::new(dir.path());
    let event = |wf: &WorkflowId| json!({"ids": IDS, "idsPerNode": IDS_PER_NODE, "workflowId": wf.to_string()});

    // The baseline's bytes: one node's ids.csv per node, as init would write them.
    let plan = RunPlan::new(WorkflowId::new_v4(), IDS, IDS_PER_NODE).expect("plan");
    let node_bytes: Vec<Vec<u8>> = (0..plan.nodes)
        .map(|node| {
            let ids: Vec<Uuid> = plan.node_range(node).map(|_| Uuid::new_v4()).collect();
            format_ids(&ids)
        })
        .collect();
    let total_bytes: usize = node_bytes.iter().map(Vec::len).sum();
    println!(
        "init: {IDS} ids in groups of {IDS_PER_NODE} = {} nodes, {} bytes of prep; median of {RUNS} \
         runs; {} threads; data root on {}",
        plan.nodes,
        total_bytes,
        fsutil::IO_THREADS,
        dir.path().display()
    );

    let mut init_times = Vec::new();
    let mut rerun_times = Vec::new();
    let mut seq_times = Vec::new();
    let mut par_times = Vec::new();
    // Runs are removed only at the end: removing 30,000 entries right before a timed part
    // leaves the file system busy committing (and discarding) during it.
    let mut written_dirs = Vec::new();
    for _ in 0..RUNS {
        let wf = WorkflowId::new_v4();
        init_times.push(timed(|| {
            handle(event(&wf), &config).expect("init");
        }));
        let written: usize = (0..plan.nodes)
            .map(|n| fs::metadata(layout.prep_ids_file(&wf, n)).expect("prep").len() as usize)
            .sum();
        assert_eq!(written, total_bytes);
        // A re-run of init for the same workflow: checks every node, writes nothing.
        rerun_times.push(timed(|| {
            handle(event(&wf), &config).expect("re-run");
        }));
        written_dirs.push(layout.workflow_dir(&wf));

        let wf = WorkflowId::new_v4();
        seq_times.push(timed(|| {
            fs::create_dir(layout.workflow_dir(&wf)).expect("workflow dir");
            for (node, bytes) in node_bytes.iter().enumerate() {
                write_node_plain(&layout.node_dir(&wf, node as u32), bytes);
            }
        }));
        written_dirs.push(layout.workflow_dir(&wf));

        let wf = WorkflowId::new_v4();
        par_times.push(timed(|| {
            fs::create_dir(layout.workflow_dir(&wf)).expect("workflow dir");
            fsutil::for_each_parallel::<(), _>(node_bytes.len(), fsutil::IO_THREADS, |node| {
                write_node_plain(&layout.node_dir(&wf, node as u32), &node_bytes[node]);
                Ok(())
            })
            .expect("baseline");
        }));
        written_dirs.push(layout.workflow_dir(&wf));
    }
    // The machine is shared: say how busy it was, since absolute times depend on it (the
    // ratios to the baselines, measured interleaved, much less so).
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at the end (1/5/15 min): {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let init = median(init_times);
    let base = median(par_times);
    println!();
    println!(
        "init (handle: plan, 400,000 random ids, 10,000 nodes)  median {:.3} s  ({:.2}x baseline (b))",
        secs(init),
        secs(init) / secs(base)
    );
    println!(
        "  re-run, same workflowId (verify, write nothing)      median {:.3} s",
        secs(median(rerun_times))
    );
    println!(
        "  baseline (a): same dirs and bytes, sequential        median {:.3} s",
        secs(median(seq_times))
    );
    println!("  baseline (b): same dirs and bytes, parallel          median {:.3} s", secs(base));
    for dir in written_dirs {
        fs::remove_dir_all(dir).expect("clean up");
    }
}
