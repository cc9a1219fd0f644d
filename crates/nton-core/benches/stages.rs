//! Benchmark: procure and process of one 40-id node, against "just writing the same bytes".
//!
//! `cargo bench -p nton-core --bench stages`. Prints figures; asserts nothing but correctness.
//!
//! The baselines run in the same process, on the same file system, interleaved with the
//! stages in a rotating order (so a noisy neighbour, or the file system's own background work,
//! slows both alike). They write the same number of files with the
//! same bytes (already in memory) into the same directory structure, creating the directory
//! and writing each file as temp file + rename: (a) one file after another, (b) on as many
//! threads as a stage uses. A stage's time over (b) is what generating, reading and parsing add
//! to the writes it cannot avoid.
//!
//! Two cases: a node's first run (fresh directories: the normal case) and a re-run over its own
//! earlier output (a retried node), which on ext4 costs more because renaming over an existing
//! file makes the kernel start writing the new file's blocks at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nton_core::fsutil;
use nton_core::layout::{Layout, format_ids};
use nton_core::plan::WorkflowId;
use nton_core::stage::{RECORD_THREADS, process, process_record, procure, procure_record};
use uuid::Uuid;

const IDS: usize = 40;
const REPS: usize = 300;
const WARMUP: usize = 10;
/// The original's time per stage per node (Python, one 40-id node).
const ORIGINAL_SECONDS: f64 = 0.24;

/// Durations of one measured thing.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn time<T>(&mut self, run: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = run();
        self.0.push(start.elapsed());
        out
    }

    fn median(&self) -> Duration {
        self.sorted()[self.0.len() / 2]
    }

    fn p90(&self) -> Duration {
        self.sorted()[self.0.len() * 9 / 10]
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut times = self.0.clone();
        times.sort();
        times
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The baseline's write: plain std, temp file then rename, as little as writing can be.
fn write_plain(path: &Path, bytes: &[u8]) {
    let temp = path.with_extension("json.tmp");
    fs::write(&temp, bytes).expect("baseline write");
    fs::rename(&temp, path).expect("baseline rename");
}

/// Writes `files` (name, bytes) into `dir`, creating it first, one after another or on
/// `RECORD_THREADS` threads.
fn baseline(dir: &Path, files: &[(String, Vec<u8>)], parallel: bool) {
    fs::create_dir_all(dir).expect("baseline dir");
    let threads = if parallel { RECORD_THREADS } else { 1 };
    fsutil::for_each_parallel::<(), _>(files.len(), threads, |i| {
        write_plain(&dir.join(&files[i].0), &files[i].1);
        Ok(())
    })
    .expect("baseline");
}

/// A fresh workflow whose node 0 has `ids` in its prep file (not timed).
fn fresh_node(layout: &Layout, ids: &[Uuid]) -> WorkflowId {
    let wf = WorkflowId::new_v4();
    fs::create_dir_all(layout.prep_dir(&wf, 0)).expect("prep dir");
    fs::write(layout.prep_ids_file(&wf, 0), format_ids(ids)).expect("ids.csv");
    wf
}

fn row(name: &str, samples: &Samples, against: Option<&Samples>) {
    let versus = against
        .map(|b| format!("  = {:.2}x baseline (b)", ms(samples.median()) / ms(b.median())))
        .unwrap_or_default();
    println!(
        "{name:<46} median {:>7.3} ms   p90 {:>7.3} ms{versus}",
        ms(samples.median()),
        ms(samples.p90())
    );
}

#[derive(Default)]
struct Case {
    procure: Samples,
    procure_a: Samples,
    procure_b: Samples,
    process: Samples,
    process_a: Samples,
    process_b: Samples,
}

impl Case {
    fn print(&self, title: &str) {
        println!("\n{title}");
        row("procure (40 records)", &self.procure, Some(&self.procure_b));
        row("  baseline (a): same files, sequential", &self.procure_a, None);
        row("  baseline (b): same files, parallel", &self.procure_b, None);
        row("process (40 records)", &self.process, Some(&self.process_b));
        row("  baseline (a): same files, sequential", &self.process_a, None);
        row("  baseline (b): same files, parallel", &self.process_b, None);
    }
}

/// Where one repetition writes: the stages into `wf`, the baselines into `a` and `b`.
struct Targets<'a> {
    layout: &'a Layout,
    wf: WorkflowId,
    a: WorkflowId,
    b: WorkflowId,
    data: &'a [(String, Vec<u8>)],
    results: &'a [(String, Vec<u8>)],
}

impl Targets<'_> {
    /// One repetition: the stages (procure then process, which reads procure's output) and
    /// the four baselines, starting at a different one each time, so that no measurement
    /// always comes first or right after the previous repetition's clean-up.
    fn measure(&self, rep: usize, into: &mut Case) {
        let Targets { layout, wf, a, b, data, results } = self;
        let mut case = Case::default();
        for unit in 0..5 {
            match (unit + rep) % 5 {
                0 => {
                    case.procure.time(|| procure(layout, wf, 0).expect("procure"));
                    case.process.time(|| process(layout, wf, 0).expect("process"));
                }
                1 => case.procure_a.time(|| baseline(&layout.data_dir(a, 0), data, false)),
                2 => case.procure_b.time(|| baseline(&layout.data_dir(b, 0), data, true)),
                3 => case.process_a.time(|| baseline(&layout.results_dir(a, 0), results, false)),
                _ => case.process_b.time(|| baseline(&layout.results_dir(b, 0), results, true)),
            };
        }
        if rep >= WARMUP {
            into.procure.0.extend(case.procure.0);
            into.process.0.extend(case.process.0);
            into.procure_a.0.extend(case.procure_a.0);
            into.procure_b.0.extend(case.procure_b.0);
            into.process_a.0.extend(case.process_a.0);
            into.process_b.0.extend(case.process_b.0);
        }
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = Layout::new(dir.path());
    let ids: Vec<Uuid> = (0..IDS).map(|_| Uuid::new_v4()).collect();

    // One reference run: the bytes each stage writes, for the baselines and the figures.
    let wf = fresh_node(&layout, &ids);
    let procured = procure(&layout, &wf, 0).expect("procure");
    let processed = process(&layout, &wf, 0).expect("process");
    let read = |path: PathBuf| fs::read(path).expect("output file");
    let name = |id: &Uuid| format!("{id}.json");
    let data: Vec<(String, Vec<u8>)> =
        ids.iter().map(|id| (name(id), read(layout.data_file(&wf, 0, id)))).collect();
    let results: Vec<(String, Vec<u8>)> =
        ids.iter().map(|id| (name(id), read(layout.result_file(&wf, 0, id)))).collect();
    let total = |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.1.len() as u64).sum::<u64>();
    assert_eq!(total(&data), procured.bytes);
    assert_eq!(total(&results), processed.bytes);
    fs::remove_dir_all(layout.workflow_dir(&wf)).expect("clean up");

    println!(
        "one node, {IDS} ids: procure writes {} files / {} bytes; process reads them and writes \
         {} files / {} bytes. {REPS} repetitions after {WARMUP} warm-up; {RECORD_THREADS} threads \
         per node; data root {} (ext4)",
        procured.files,
        procured.bytes,
        processed.files,
        processed.bytes,
        dir.path().display()
    );

    // First run of a node: every repetition in fresh directories, removed untimed afterwards.
    let mut first = Case::default();
    for rep in 0..WARMUP + REPS {
        let wf = fresh_node(&layout, &ids);
        let (a, b) = (WorkflowId::new_v4(), WorkflowId::new_v4());
        let targets = Targets { layout: &layout, wf, a, b, data: &data, results: &results };
        targets.measure(rep, &mut first);
        for wf in [wf, a, b] {
            fs::remove_dir_all(layout.workflow_dir(&wf)).expect("clean up");
        }
    }

    // Re-runs: the same node over and over, each run replacing its own earlier files.
    let mut rerun = Case::default();
    let wf = fresh_node(&layout, &ids);
    let (a, b) = (WorkflowId::new_v4(), WorkflowId::new_v4());
    let targets = Targets { layout: &layout, wf, a, b, data: &data, results: &results };
    for rep in 0..WARMUP + REPS {
        targets.measure(rep, &mut rerun);
    }

    // The CPU part alone, in memory, one thread.
    let mut generate = Samples::default();
    let mut transform = Samples::default();
    let mut out = Vec::with_capacity(32 * 1024);
    for _ in 0..WARMUP + REPS {
        generate.time(|| {
            for id in &ids {
                out.clear();
                procure_record(id, &mut out);
            }
        });
        transform.time(|| {
            for (_, bytes) in &data {
                out.clear();
                process_record(bytes, &mut out).expect("process record");
            }
        });
    }
    generate.0.drain(..WARMUP);
    transform.0.drain(..WARMUP);

    // The machine is shared: say how busy it was, since absolute times depend on it (the
    // ratios to the baselines, measured interleaved, much less so).
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at the end (1/5/15 min): {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    first.print("First run of a node (fresh directories):");
    rerun.print("Re-run of a node (replacing its earlier files):");
    println!("\nCPU only, in memory, one thread:");
    row("procure: generate + serialize 40 records", &generate, None);
    row("process: parse + transform + serialize 40", &transform, None);
    println!("\nAgainst the original's {ORIGINAL_SECONDS} s per stage per node (first run):");
    for (name, samples) in [("procure", &first.procure), ("process", &first.process)] {
        println!(
            "{name}: {:.0}x faster at the median, {:.0}x at p90",
            ORIGINAL_SECONDS / samples.median().as_secs_f64(),
            ORIGINAL_SECONDS / samples.p90().as_secs_f64()
        );
    }
}
