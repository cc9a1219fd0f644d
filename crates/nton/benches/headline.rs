//! The original sample's headline scale, end to end: `nton run` of 400,000 ids over 10,000
//! nodes on the real template, with the engine's peak memory, against a baseline measured in
//! the same run: the same 30,000 worker runs (10,000 nodes x 3 stages) started by
//! `xargs -P <cores>` with no engine, no state machine and no N_TO_N overlap.
//!
//! Run: `cargo build --release --bins && cargo bench -p nton --bench headline`
//! (`NTON_BENCH_IDS`, `NTON_BENCH_IDS_PER_NODE` change the scale; `NTON_BIN_DIR` picks the
//! binaries, default `target/release`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let ids: u64 = env_number("NTON_BENCH_IDS", 400_000);
    let ids_per_node: u64 = env_number("NTON_BENCH_IDS_PER_NODE", 40);
    let nodes = ids.div_ceil(ids_per_node);
    let bin_dir = binaries();
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scratch = tempfile::tempdir_in(std::env::temp_dir()).expect("a scratch directory");
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    println!("headline: {ids} ids, {ids_per_node} per node = {nodes} nodes, {cores} cores");
    println!("binaries: {}", bin_dir.display());

    // 1. The engine, end to end, keeping the data so the baseline can re-run the same nodes.
    let started = Instant::now();
    let mut child = Command::new(bin_dir.join("nton"))
        .current_dir(&workspace)
        .args(["run", "--json", "--keep-data"])
        .args(["--ids", &ids.to_string(), "--ids-per-node", &ids_per_node.to_string()])
        .arg("--data-dir")
        .arg(scratch.path())
        .arg("--bin-dir")
        .arg(&bin_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nton starts");
    let pid = child.id();
    let mut peak_kib = 0;
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        // Only the summary matters here; the event lines are drained so the engine never blocks.
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|line| line.contains("\"summary\""))
            .last()
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting on nton") {
            break status;
        }
        peak_kib = peak_kib.max(vm_hwm_kib(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(50));
    };
    let engine_elapsed = started.elapsed();
    let summary: serde_json::Value = reader
        .join()
        .expect("reader")
        .and_then(|line| serde_json::from_str(&line).ok())
        .expect("a summary line");
    assert!(status.success(), "the run failed: {summary}");
    let workflow = summary["workflowId"].as_str().expect("workflow id").to_string();
    println!(
        "engine:   {:>8.1} s end to end (state machine {:.1} s), peak RSS of the engine {:.1} MiB",
        engine_elapsed.as_secs_f64(),
        summary["seconds"].as_f64().unwrap_or_default(),
        peak_kib as f64 / 1024.0
    );

    // 2. Baseline: the same worker runs, stage after stage, by xargs.
    let efs = scratch.path().join(&workflow).join("efs");
    let results = scratch.path().join("baseline-results");
    let started = Instant::now();
    for stage in ["procure", "process", "egress"] {
        let mut xargs = Command::new("xargs")
            .args(["-P", &cores.to_string(), "-I{}", "env", "AWS_BATCH_JOB_ARRAY_INDEX={}"])
            .arg(format!("NTON_WORKFLOW_ID={workflow}"))
            .arg(format!("NTON_DATA_ROOT={}", efs.display()))
            .arg(format!("NTON_RESULTS_URL={}", results.display()))
            .arg("RUST_LOG=warn")
            .arg(bin_dir.join("nton-job"))
            .arg(stage)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("xargs starts");
        {
            use std::io::Write;
            let mut stdin = xargs.stdin.take().expect("piped stdin");
            for node in 0..nodes {
                writeln!(stdin, "{node}").expect("feeding xargs");
            }
        }
        assert!(xargs.wait().expect("xargs ends").success(), "baseline {stage} failed");
    }
    let baseline_elapsed = started.elapsed();
    println!(
        "baseline: {:>8.1} s for the same {} worker runs by xargs -P {cores}",
        baseline_elapsed.as_secs_f64(),
        nodes * 3
    );
    println!(
        "ratio:    {:.2}x (engine end to end / baseline); target: end to end <= 180 s",
        engine_elapsed.as_secs_f64() / baseline_elapsed.as_secs_f64()
    );
    remove_quietly(scratch.path());
}

/// Peak resident set of a live process, from /proc (Linux).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

fn binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("NTON_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("release");
    assert!(
        dir.join("nton").is_file() && dir.join("nton-job").is_file(),
        "build the release binaries first: cargo build --release --bins (or set NTON_BIN_DIR)"
    );
    dir
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|text| text.parse().unwrap_or_else(|_| panic!("{name}: {text:?} is not a number")))
        .unwrap_or(default)
}

fn remove_quietly(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}
