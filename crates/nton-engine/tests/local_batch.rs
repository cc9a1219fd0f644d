//! The local Batch against AWS Batch's documented semantics: submissions and their limits,
//! child lifecycle, N_TO_N / SEQUENTIAL / whole-job dependencies, parallelism bounds, retries,
//! timeouts, the container environment, logs, the BatchApi read calls, resume and shutdown.
//! Children are small `/bin/sh` scripts; ordering is read from the event stream (its `seq`)
//! and from files the children write, never from wall-clock durations.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use nton_core::batch::{BatchApi, DEPENDENCY_FAILED_REASON, JobStatus};
use nton_engine::batch::{
    BatchEvent, EvaluateOnExit, EventReceiver, JobDefinitionSpec, LocalBatch, LocalBatchConfig,
    QueueSpec, RESUMED_REASON, RetryAction, RetryStrategy, SHUTDOWN_REASON,
};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Long enough for any of these runs on a loaded machine; only a hang reaches it.
const HANG_GUARD: Duration = Duration::from_secs(120);

struct Rig {
    batch: LocalBatch,
    dir: TempDir,
    events: EventReceiver,
}

fn queue_arn(name: &str) -> String {
    format!("arn:aws:batch:local-1:000000000000:job-queue/{name}")
}

fn definition_arn(name: &str) -> String {
    format!("arn:aws:batch:local-1:000000000000:job-definition/{name}:1")
}

impl Rig {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(adjust: impl FnOnce(&mut LocalBatchConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LocalBatchConfig::new(dir.path().join("logs"));
        config.base_env = BTreeMap::from([
            ("PATH".to_string(), std::env::var("PATH").unwrap()),
            ("T_DIR".to_string(), dir.path().display().to_string()),
        ]);
        config.kill_grace = Duration::from_secs(5);
        adjust(&mut config);
        let batch = LocalBatch::new(config);
        let events = batch.subscribe();
        Self { batch, dir, events }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn queue(&self, name: &str, max_vcpus: f64, cap: usize) {
        self.batch.add_queue(
            QueueSpec {
                arn: queue_arn(name),
                name: name.to_string(),
                max_vcpus,
                compute_environment: format!("{name}-ce"),
            },
            cap,
        );
    }

    /// A definition running `script` with /bin/sh, 1 vCPU, one attempt.
    fn script(&self, name: &str, script: &str) {
        self.define(sh_definition(name, script));
    }

    fn define(&self, definition: JobDefinitionSpec) {
        self.batch.add_job_definition(definition);
    }

    fn submit(&self, request: Value) -> String {
        let answer = self.batch.submit_job(&request).expect("submit_job");
        answer["JobId"].as_str().unwrap().to_string()
    }

    /// Waits until every job ended and returns every event so far.
    async fn finish(&mut self) -> Vec<BatchEvent> {
        tokio::time::timeout(HANG_GUARD, self.batch.wait_all_terminal())
            .await
            .expect("jobs did not end");
        let mut events = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
        let seqs: Vec<u64> = events.iter().map(BatchEvent::seq).collect();
        // In order and none missing: the stream is numbered without gaps.
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "events out of order or lost");
        let mut ended = std::collections::HashSet::new();
        for event in &events {
            if let BatchEvent::JobEnded { job_id, .. } = event {
                assert!(ended.insert(job_id.clone()), "job {job_id} ended twice");
            }
        }
        events
    }

    async fn describe(&self, id: &str) -> nton_core::batch::JobDetail {
        let mut found = self.batch.describe_jobs(&[id.to_string()]).await.unwrap();
        assert_eq!(found.len(), 1, "{id}");
        found.remove(0)
    }
}

fn sh_definition(name: &str, script: &str) -> JobDefinitionSpec {
    JobDefinitionSpec {
        arn: definition_arn(name),
        name: name.to_string(),
        program: PathBuf::from("/bin/sh"),
        command: vec!["-c".to_string(), script.to_string()],
        vcpus: 1.0,
        memory_mib: 512,
        ..JobDefinitionSpec::default()
    }
}

fn request(name: &str, queue: &str, definition: &str) -> Value {
    json!({"JobName": name, "JobQueue": queue_arn(queue), "JobDefinition": definition_arn(definition)})
}

fn array(name: &str, queue: &str, definition: &str, size: u32) -> Value {
    let mut r = request(name, queue, definition);
    r["ArrayProperties"] = json!({"Size": size});
    r
}

fn depending(mut r: Value, deps: Value) -> Value {
    r["DependsOn"] = deps;
    r
}

/// One child's view of the stream.
#[derive(Debug, Clone)]
struct Seen {
    seq: u64,
    status: JobStatus,
    attempt: u32,
    reason: Option<String>,
    exit_code: Option<i32>,
    tail: Option<String>,
}

/// Child transitions by child id, in order.
fn by_child(events: &[BatchEvent]) -> HashMap<String, Vec<Seen>> {
    let mut map: HashMap<String, Vec<Seen>> = HashMap::new();
    for event in events {
        if let BatchEvent::ChildChanged {
            seq,
            job_id,
            status,
            attempt,
            status_reason,
            exit_code,
            stderr_tail,
            ..
        } = event
        {
            map.entry(job_id.clone()).or_default().push(Seen {
                seq: *seq,
                status: *status,
                attempt: *attempt,
                reason: status_reason.clone(),
                exit_code: *exit_code,
                tail: stderr_tail.clone(),
            });
        }
    }
    map
}

fn statuses(seen: &[Seen]) -> Vec<JobStatus> {
    seen.iter().map(|s| s.status).collect()
}

/// The seq of the first time `child` reached `status`.
fn seq_of(map: &HashMap<String, Vec<Seen>>, child: &str, status: JobStatus) -> u64 {
    map[child]
        .iter()
        .find(|s| s.status == status)
        .unwrap_or_else(|| panic!("{child} never {status}"))
        .seq
}

fn reached(map: &HashMap<String, Vec<Seen>>, child: &str, status: JobStatus) -> bool {
    map.get(child).is_some_and(|seen| seen.iter().any(|s| s.status == status))
}

/// Most children holding a slot (STARTING or RUNNING) at once, per queue and in total.
fn peak_occupancy(events: &[BatchEvent]) -> (HashMap<String, usize>, usize) {
    let mut holding: HashMap<String, (String, bool)> = HashMap::new();
    let mut per_queue: HashMap<String, usize> = HashMap::new();
    let mut peaks: HashMap<String, usize> = HashMap::new();
    let (mut total, mut peak_total) = (0usize, 0usize);
    for event in events {
        if let BatchEvent::ChildChanged { job_id, queue, status, .. } = event {
            let holds = matches!(status, JobStatus::Starting | JobStatus::Running);
            let held = holding.get(job_id).is_some_and(|(_, h)| *h);
            let count = per_queue.entry(queue.clone()).or_default();
            match (held, holds) {
                (false, true) => {
                    *count += 1;
                    total += 1;
                }
                (true, false) => {
                    *count -= 1;
                    total -= 1;
                }
                _ => {}
            }
            let peak = peaks.entry(queue.clone()).or_default();
            *peak = (*peak).max(*count);
            peak_total = peak_total.max(total);
            holding.insert(job_id.clone(), (queue.clone(), holds));
        }
    }
    (peaks, peak_total)
}

fn job_ended(events: &[BatchEvent], id: &str) -> (u64, JobStatus) {
    events
        .iter()
        .find_map(|e| match e {
            BatchEvent::JobEnded { seq, job_id, status, .. } if job_id == id => {
                Some((*seq, *status))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("job {id} never ended"))
}

fn summary_of(detail: &nton_core::batch::JobDetail) -> BTreeMap<JobStatus, u32> {
    detail
        .array_properties
        .as_ref()
        .and_then(|a| a.status_summary.clone())
        .expect("a parent has a statusSummary")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ----- submissions and their limits -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_size_must_be_2_to_10000_and_one_node_is_a_plain_job() {
    let mut rig = Rig::new();
    rig.queue("q", 4.0, 4);
    rig.script("ok", "exit 0");
    rig.script("fail", "exit 1");

    for size in [1, 10_001] {
        let err = rig.batch.submit_job(&array("a", "q", "ok", size)).unwrap_err();
        assert_eq!(err.code, "ClientException");
        assert!(err.message.contains("Array size"), "{}", err.message);
    }

    let two = rig.submit(array("two", "q", "ok", 2));
    let single = rig.submit(request("single", "q", "ok"));
    // 10,000 children, all held back by a plain job that fails: accepted, and every one of
    // them fails without running.
    let gate = rig.submit(request("gate", "q", "fail"));
    let big = rig.submit(depending(array("big", "q", "ok", 10_000), json!([{"JobId": gate}])));
    let events = rig.finish().await;
    let map = by_child(&events);

    assert_eq!(rig.describe(&two).await.status, JobStatus::Succeeded);
    let single_detail = rig.describe(&single).await;
    assert_eq!(single_detail.status, JobStatus::Succeeded);
    assert_eq!(single_detail.array_properties, None);

    let big_detail = rig.describe(&big).await;
    assert_eq!(big_detail.status, JobStatus::Failed);
    let props = big_detail.array_properties.clone().unwrap();
    assert_eq!(props.size, Some(10_000));
    assert_eq!(summary_of(&big_detail), BTreeMap::from([(JobStatus::Failed, 10_000)]));
    for i in [0, 4_999, 9_999] {
        let child = format!("{big}:{i}");
        assert_eq!(
            statuses(&map[&child]),
            [JobStatus::Submitted, JobStatus::Pending, JobStatus::Failed]
        );
        assert_eq!(map[&child][2].reason.as_deref(), Some(DEPENDENCY_FAILED_REASON));
    }
    let failed = rig.batch.list_array_children(&big, JobStatus::Failed).await.unwrap();
    assert_eq!(failed.len(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_are_checked_like_aws() {
    let rig = Rig::new();
    rig.queue("q", 4.0, 4);
    rig.script("ok", "exit 0");
    let a3 = rig.submit(array("a3", "q", "ok", 3));
    let plain = rig.submit(request("p", "q", "ok"));

    let unknown_queue = json!({"JobName": "x", "JobQueue": "nope", "JobDefinition": "ok"});
    let unknown_definition = json!({"JobName": "x", "JobQueue": "q", "JobDefinition": "nope"});
    let cases = [
        (unknown_queue, "JobQueue nope not found."),
        (unknown_definition, "JobDefinition nope not found."),
        (
            depending(request("x", "q", "ok"), json!([{"JobId": "no-such-job"}])),
            "Dependent job no-such-job not found",
        ),
        (
            depending(array("x", "q", "ok", 2), json!([{"JobId": a3, "Type": "N_TO_N"}])),
            "same size",
        ),
        (depending(request("x", "q", "ok"), json!([{"JobId": a3, "Type": "N_TO_N"}])), "same size"),
        (
            depending(array("x", "q", "ok", 2), json!([{"JobId": plain, "Type": "N_TO_N"}])),
            "same size",
        ),
        (
            depending(request("x", "q", "ok"), json!([{"Type": "SEQUENTIAL"}])),
            "only allowed for an array job",
        ),
        (
            depending(
                request("x", "q", "ok"),
                json!((0..21).map(|_| json!({"JobId": plain})).collect::<Vec<_>>()),
            ),
            "at most 20",
        ),
        (request("bad name!", "q", "ok"), "Job name should match"),
    ];
    for (case, expected) in cases {
        let err = rig.batch.submit_job(&case).unwrap_err();
        assert_eq!(err.code, "ClientException");
        assert!(err.message.contains(expected), "{case}: {} (wanted {expected})", err.message);
    }

    // The short forms SubmitJob accepts for queue and definition.
    for (queue, definition) in [("q", "ok"), ("q", "ok:1")] {
        let r = json!({"JobName": "short", "JobQueue": queue, "JobDefinition": definition});
        let answer = rig.batch.submit_job(&r).unwrap();
        let id = answer["JobId"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        assert_eq!(answer["JobName"], "short");
        assert_eq!(answer["JobArn"], format!("arn:aws:batch:local-1:000000000000:job/{id}"));
    }
}

// ----- dependencies -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_to_n_children_pipeline_across_queues() {
    let mut rig = Rig::new();
    rig.queue("qa", 2.0, 2);
    rig.queue("qb", 2.0, 2);
    // A:0 cannot end before B:1 has run: it waits for the file B:1 writes. Without real
    // N_TO_N pipelining, A:0 gives up and fails.
    rig.script(
        "a",
        r#"if [ "$AWS_BATCH_JOB_ARRAY_INDEX" = 0 ]; then
             n=0; while [ ! -f "$T_DIR/b1" ]; do n=$((n+1)); [ $n -gt 3000 ] && exit 9; sleep 0.02; done
           fi"#,
    );
    rig.script("b", r#"[ "$AWS_BATCH_JOB_ARRAY_INDEX" = 1 ] && touch "$T_DIR/b1"; exit 0"#);
    let a = rig.submit(array("A", "qa", "a", 2));
    let b =
        rig.submit(depending(array("B", "qb", "b", 2), json!([{"JobId": a, "Type": "N_TO_N"}])));
    let events = rig.finish().await;
    let map = by_child(&events);

    for child in [format!("{a}:0"), format!("{a}:1"), format!("{b}:0"), format!("{b}:1")] {
        assert_eq!(map[&child].last().unwrap().status, JobStatus::Succeeded, "{child}");
    }
    // B:1 ran and ended while A:0 was still running ...
    assert!(
        seq_of(&map, &format!("{b}:1"), JobStatus::Succeeded)
            < seq_of(&map, &format!("{a}:0"), JobStatus::Succeeded)
    );
    // ... after A:1, its own dependency; and B:0 only started after A:0 ended.
    assert!(
        seq_of(&map, &format!("{a}:1"), JobStatus::Succeeded)
            < seq_of(&map, &format!("{b}:1"), JobStatus::Runnable)
    );
    assert!(
        seq_of(&map, &format!("{a}:0"), JobStatus::Succeeded)
            < seq_of(&map, &format!("{b}:0"), JobStatus::Starting)
    );
    // Event times never go backwards along the stream.
    let times: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            BatchEvent::ChildChanged { at_ms, .. } => Some(*at_ms),
            _ => None,
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let b1 = rig.describe(&format!("{b}:1")).await;
    assert_eq!(b1.depends_on[0].job_id.as_deref(), Some(format!("{a}:1").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dependency_fails_dependents_without_running_them() {
    let mut rig = Rig::new();
    rig.queue("qa", 4.0, 4);
    rig.queue("qb", 4.0, 4);
    rig.script(
        "a",
        r#"[ "$AWS_BATCH_JOB_ARRAY_INDEX" = 1 ] && { echo "bad input" >&2; exit 4; }; exit 0"#,
    );
    rig.script("b", "exit 0");
    let a = rig.submit(array("A", "qa", "a", 3));
    let b =
        rig.submit(depending(array("B", "qb", "b", 3), json!([{"JobId": a, "Type": "N_TO_N"}])));
    let c = rig.submit(depending(request("C", "qb", "b"), json!([{"JobId": b}])));
    let events = rig.finish().await;
    let map = by_child(&events);

    let a1 = &map[&format!("{a}:1")];
    assert_eq!(a1.last().unwrap().exit_code, Some(4));
    assert_eq!(a1.last().unwrap().tail.as_deref(), Some("bad input"));
    let b1 = format!("{b}:1");
    assert_eq!(statuses(&map[&b1]), [JobStatus::Submitted, JobStatus::Pending, JobStatus::Failed]);
    assert_eq!(map[&b1].last().unwrap().reason.as_deref(), Some(DEPENDENCY_FAILED_REASON));
    assert!(rig.describe(&b1).await.attempts.is_empty());
    for ok in [format!("{b}:0"), format!("{b}:2")] {
        assert_eq!(map[&ok].last().unwrap().status, JobStatus::Succeeded);
    }
    // C depends on the whole of B, which failed: C fails without starting.
    assert!(!reached(&map, &c, JobStatus::Starting));
    let c_detail = rig.describe(&c).await;
    assert_eq!(c_detail.status, JobStatus::Failed);
    assert_eq!(c_detail.status_reason.as_deref(), Some(DEPENDENCY_FAILED_REASON));

    let a_detail = rig.describe(&a).await;
    assert_eq!(a_detail.status, JobStatus::Failed);
    assert_eq!(
        summary_of(&a_detail),
        BTreeMap::from([(JobStatus::Succeeded, 2), (JobStatus::Failed, 1)])
    );
    assert_eq!(job_ended(&events, &b).1, JobStatus::Failed);

    let failed = rig.batch.list_array_children(&a, JobStatus::Failed).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].job_id, format!("{a}:1"));
    assert_eq!(failed[0].container.as_ref().unwrap().exit_code, Some(4));
    let failed_b = rig.batch.list_array_children(&b, JobStatus::Failed).await.unwrap();
    assert_eq!(failed_b.len(), 1);
    assert_eq!(failed_b[0].container, None);
    assert_eq!(failed_b[0].status_reason.as_deref(), Some(DEPENDENCY_FAILED_REASON));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_children_run_in_index_order() {
    let mut rig = Rig::new();
    rig.queue("q", 8.0, 8);
    rig.script("s", r#"echo "$AWS_BATCH_JOB_ARRAY_INDEX" >> "$T_DIR/order""#);
    let s = rig.submit(depending(array("S", "q", "s", 5), json!([{"Type": "SEQUENTIAL"}])));
    let events = rig.finish().await;
    let map = by_child(&events);
    assert_eq!(read(&rig.path("order")), "0\n1\n2\n3\n4\n");
    for i in 1..5 {
        assert!(
            seq_of(&map, &format!("{s}:{}", i - 1), JobStatus::Succeeded)
                < seq_of(&map, &format!("{s}:{i}"), JobStatus::Starting)
        );
    }
    let (peaks, _) = peak_occupancy(&events);
    assert_eq!(peaks["q"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_early_in_a_long_sequential_array_fails_the_rest() {
    let mut rig = Rig::new();
    rig.queue("q", 8.0, 8);
    rig.script("s", r#"[ "$AWS_BATCH_JOB_ARRAY_INDEX" = 1 ] && exit 3; exit 0"#);
    let s = rig.submit(depending(array("S", "q", "s", 10_000), json!([{"Type": "SEQUENTIAL"}])));
    let events = rig.finish().await;
    let detail = rig.describe(&s).await;
    assert_eq!(
        summary_of(&detail),
        BTreeMap::from([(JobStatus::Succeeded, 1), (JobStatus::Failed, 9_999)])
    );
    let map = by_child(&events);
    assert!(!reached(&map, &format!("{s}:2"), JobStatus::Starting));
    assert!(!reached(&map, &format!("{s}:9999"), JobStatus::Starting));
    assert_eq!(
        map[&format!("{s}:9999")].last().unwrap().reason.as_deref(),
        Some(DEPENDENCY_FAILED_REASON)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_id_dependency_waits_for_the_whole_job() {
    let mut rig = Rig::new();
    rig.queue("q", 8.0, 8);
    rig.script("ok", "exit 0");
    let x = rig.submit(array("X", "q", "ok", 3));
    let y = rig.submit(depending(request("Y", "q", "ok"), json!([{"JobId": x}])));
    let w = rig.submit(depending(array("W", "q", "ok", 2), json!([{"JobId": y}])));
    let events = rig.finish().await;
    let map = by_child(&events);

    let (x_end, x_status) = job_ended(&events, &x);
    assert_eq!(x_status, JobStatus::Succeeded);
    for i in 0..3 {
        assert!(seq_of(&map, &format!("{x}:{i}"), JobStatus::Succeeded) < x_end);
    }
    assert!(x_end < seq_of(&map, &y, JobStatus::Runnable));
    let (y_end, _) = job_ended(&events, &y);
    for i in 0..2 {
        let child = format!("{w}:{i}");
        assert_eq!(
            statuses(&map[&child])[..3],
            [JobStatus::Submitted, JobStatus::Pending, JobStatus::Runnable]
        );
        assert!(y_end < seq_of(&map, &child, JobStatus::Runnable));
    }
    assert_eq!(rig.describe(&w).await.status, JobStatus::Succeeded);
}

// ----- queues -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_bound_parallelism_by_vcpus_and_cap_fifo() {
    let mut rig = Rig::new();
    rig.queue("by-vcpus", 2.0, 8);
    rig.queue("by-cap", 16.0, 3);
    rig.queue("big-jobs", 2.0, 8);
    rig.script("nap", "sleep 0.05");
    let v = rig.submit(array("V", "by-vcpus", "nap", 6));
    rig.submit(array("C", "by-cap", "nap", 6));
    let mut big = array("B", "big-jobs", "nap", 3);
    big["ContainerOverrides"] = json!({"ResourceRequirements": [{"Type": "VCPU", "Value": "2"}]});
    rig.submit(big);
    let events = rig.finish().await;

    let (peaks, _) = peak_occupancy(&events);
    // The first slots are filled at submission, so each bound is reached, never passed.
    assert_eq!(peaks["by-vcpus"], 2);
    assert_eq!(peaks["by-cap"], 3);
    assert_eq!(peaks["big-jobs"], 1);

    // FIFO: children of one array start in index order.
    let map = by_child(&events);
    let starts: Vec<u64> =
        (0..6).map(|i| seq_of(&map, &format!("{v}:{i}"), JobStatus::Starting)).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]));
    for i in 0..6 {
        assert_eq!(
            statuses(&map[&format!("{v}:{i}")]),
            [
                JobStatus::Submitted,
                JobStatus::Runnable,
                JobStatus::Starting,
                JobStatus::Running,
                JobStatus::Succeeded
            ]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_queue_dispatches_by_submission_then_index() {
    let mut rig = Rig::new();
    rig.queue("one", 1.0, 1);
    // X:1 fails once and is retried: it goes back to RUNNABLE, and ahead of Y, which was
    // submitted later.
    rig.define(JobDefinitionSpec {
        retry: RetryStrategy { attempts: 2, evaluate_on_exit: vec![] },
        ..sh_definition(
            "x",
            r#"[ "$AWS_BATCH_JOB_ARRAY_INDEX$AWS_BATCH_JOB_ATTEMPT" = 11 ] && exit 1; exit 0"#,
        )
    });
    rig.script("y", "exit 0");
    let x = rig.submit(array("X", "one", "x", 3));
    let y = rig.submit(array("Y", "one", "y", 3));
    let events = rig.finish().await;
    let order: Vec<(String, u32)> = events
        .iter()
        .filter_map(|e| match e {
            BatchEvent::ChildChanged { job_id, status: JobStatus::Starting, attempt, .. } => {
                Some((job_id.clone(), *attempt))
            }
            _ => None,
        })
        .collect();
    let expected: Vec<(String, u32)> = [
        (format!("{x}:0"), 1),
        (format!("{x}:1"), 1),
        (format!("{x}:1"), 2),
        (format!("{x}:2"), 1),
        (format!("{y}:0"), 1),
        (format!("{y}:1"), 1),
        (format!("{y}:2"), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(order, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_bound_holds_across_queues_and_every_queue_moves() {
    let mut rig = Rig::with(|c| c.max_parallel_total = Some(3));
    rig.queue("qa", 8.0, 8);
    rig.queue("qb", 8.0, 8);
    rig.script("nap", "sleep 0.02");
    let a = rig.submit(array("A", "qa", "nap", 12));
    let b =
        rig.submit(depending(array("B", "qb", "nap", 12), json!([{"JobId": a, "Type": "N_TO_N"}])));
    let events = rig.finish().await;
    let (peaks, total) = peak_occupancy(&events);
    assert_eq!(total, 3);
    assert!(peaks["qa"] <= 3 && peaks["qb"] <= 3);
    // Round-robin between queues: B starts as soon as one of its dependencies ended, not
    // after all of A.
    let map = by_child(&events);
    let first_b =
        (0..12).map(|i| seq_of(&map, &format!("{b}:{i}"), JobStatus::Starting)).min().unwrap();
    assert!(first_b < seq_of(&map, &format!("{a}:11"), JobStatus::Starting));
}

// ----- attempts -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_evaluate_on_exit() {
    let mut rig = Rig::new();
    rig.queue("q", 8.0, 8);
    // Exits 2 on attempt 1, 3 on attempt 2: no rule matches 2 (retry), EXIT on 3.
    rig.define(JobDefinitionSpec {
        retry: RetryStrategy {
            attempts: 3,
            evaluate_on_exit: vec![EvaluateOnExit {
                on_status_reason: None,
                on_reason: None,
                on_exit_code: Some("3".into()),
                action: RetryAction::Exit,
            }],
        },
        ..sh_definition("exit-on-3", r#"exit $((AWS_BATCH_JOB_ATTEMPT + 1))"#)
    });
    // Fails once, then succeeds; retried on the status reason.
    rig.define(JobDefinitionSpec {
        retry: RetryStrategy {
            attempts: 3,
            evaluate_on_exit: vec![
                EvaluateOnExit {
                    on_status_reason: Some("Essential container*".into()),
                    on_reason: None,
                    on_exit_code: None,
                    action: RetryAction::Retry,
                },
                EvaluateOnExit {
                    on_status_reason: None,
                    on_reason: Some("*".into()),
                    on_exit_code: None,
                    action: RetryAction::Exit,
                },
            ],
        },
        ..sh_definition("flaky", r#"[ "$AWS_BATCH_JOB_ATTEMPT" = 1 ] && exit 1; exit 0"#)
    });
    // The template's rules: infrastructure reasons retry, anything else exits at once.
    let template_rules = ["Host EC2*", "CannotPullContainerError*"]
        .into_iter()
        .map(|p| EvaluateOnExit {
            on_status_reason: Some(p.into()),
            on_reason: None,
            on_exit_code: None,
            action: RetryAction::Retry,
        })
        .chain([EvaluateOnExit {
            on_status_reason: None,
            on_reason: Some("*".into()),
            on_exit_code: None,
            action: RetryAction::Exit,
        }])
        .collect();
    rig.define(JobDefinitionSpec {
        retry: RetryStrategy { attempts: 3, evaluate_on_exit: template_rules },
        ..sh_definition("template", "exit 1")
    });
    rig.script("once", "exit 5");
    rig.define(JobDefinitionSpec {
        program: PathBuf::from("/nonexistent/program"),
        retry: RetryStrategy { attempts: 2, evaluate_on_exit: vec![] },
        ..sh_definition("missing", "")
    });

    let exit_on_3 = rig.submit(request("E", "q", "exit-on-3"));
    let flaky = rig.submit(request("F", "q", "flaky"));
    let template = rig.submit(request("T", "q", "template"));
    let mut overridden = request("O", "q", "once");
    overridden["RetryStrategy"] = json!({"Attempts": 2});
    let overridden = rig.submit(overridden);
    let missing = rig.submit(request("M", "q", "missing"));
    let events = rig.finish().await;
    let map = by_child(&events);

    let e = rig.describe(&exit_on_3).await;
    assert_eq!(e.status, JobStatus::Failed);
    let codes: Vec<Option<i32>> =
        e.attempts.iter().map(|a| a.container.as_ref().unwrap().exit_code).collect();
    assert_eq!(codes, [Some(2), Some(3)]);
    assert_eq!(
        statuses(&map[&exit_on_3]),
        [
            JobStatus::Submitted,
            JobStatus::Runnable,
            JobStatus::Starting,
            JobStatus::Running,
            JobStatus::Runnable,
            JobStatus::Starting,
            JobStatus::Running,
            JobStatus::Failed
        ]
    );
    let retry_event = &map[&exit_on_3][4];
    assert_eq!((retry_event.attempt, retry_event.exit_code), (2, Some(2)));
    assert_eq!(map[&exit_on_3][5].attempt, 2);

    let f = rig.describe(&flaky).await;
    assert_eq!(f.status, JobStatus::Succeeded);
    assert_eq!(f.attempts.len(), 2);
    assert_eq!(f.attempts[0].status_reason.as_deref(), Some("Essential container in task exited"));

    let t = rig.describe(&template).await;
    assert_eq!((t.status, t.attempts.len()), (JobStatus::Failed, 1));

    let o = rig.describe(&overridden).await;
    assert_eq!((o.status, o.attempts.len()), (JobStatus::Failed, 2));

    let m = rig.describe(&missing).await;
    assert_eq!((m.status, m.attempts.len()), (JobStatus::Failed, 2));
    let reason = m.status_reason.unwrap();
    assert!(reason.starts_with("CannotStartContainerError: /nonexistent/program"), "{reason}");
    assert!(!reached(&map, &missing, JobStatus::Running));
    let container = m.attempts[0].container.as_ref().unwrap();
    assert_eq!(container.exit_code, None);
    assert!(container.reason.as_deref().unwrap().starts_with("CannotStartContainerError"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_past_its_timeout_is_stopped_and_not_retried() {
    let mut rig = Rig::with(|c| c.kill_grace = Duration::from_millis(300));
    rig.queue("q", 8.0, 8);
    let timed = |name: &str, script: &str| JobDefinitionSpec {
        attempt_timeout: Some(Duration::from_millis(300)),
        retry: RetryStrategy { attempts: 3, evaluate_on_exit: vec![] },
        ..sh_definition(name, script)
    };
    // Leaves on SIGTERM, saying so.
    rig.define(timed("polite", r#"trap 'echo stopping >&2; exit 7' TERM; sleep 60 & wait"#));
    // Ignores SIGTERM (so does its sleep, which inherits that): SIGKILL after the grace.
    rig.define(timed("stubborn", r#"trap '' TERM; sleep 60"#));
    let polite = rig.submit(request("P", "q", "polite"));
    let stubborn = rig.submit(request("S", "q", "stubborn"));
    let events = rig.finish().await;
    let map = by_child(&events);

    for (id, code) in [(&polite, 7), (&stubborn, 137)] {
        let detail = rig.describe(id).await;
        assert_eq!(detail.status, JobStatus::Failed);
        assert_eq!(detail.status_reason.as_deref(), Some("Job attempt duration exceeded timeout"));
        assert_eq!(detail.attempts.len(), 1, "a timed-out attempt is not retried");
        assert_eq!(detail.attempts[0].container.as_ref().unwrap().exit_code, Some(code));
    }
    assert_eq!(map[&polite].last().unwrap().tail.as_deref(), Some("stopping"));
}

// ----- what a child sees -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_get_the_batch_environment_and_not_the_engines() {
    assert!(
        std::env::var("CARGO_MANIFEST_DIR").is_ok(),
        "the test needs a variable of its own environment to look for"
    );
    let mut rig = Rig::with(|c| {
        c.base_env.insert("BASE_ONLY".into(), "base".into());
        c.base_env.insert("SHADOWED".into(), "base".into());
    });
    rig.queue("envq", 8.0, 8);
    rig.define(JobDefinitionSpec {
        environment: BTreeMap::from([
            ("SHADOWED".to_string(), "definition".to_string()),
            ("DEF_ONLY".to_string(), "definition".to_string()),
        ]),
        ..sh_definition("dump", r#"env > "$T_DIR/env.$AWS_BATCH_JOB_ID""#)
    });
    let mut with_override = array("E", "envq", "dump", 2);
    with_override["ContainerOverrides"] =
        json!({"Environment": [{"Name": "SHADOWED", "Value": "override"}]});
    let e = rig.submit(with_override);
    let plain = rig.submit(request("P", "envq", "dump"));
    rig.finish().await;

    let env_of = |id: &str| -> BTreeMap<String, String> {
        read(&rig.path(&format!("env.{id}")))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    for i in 0..2u32 {
        let id = format!("{e}:{i}");
        let env = env_of(&id);
        assert_eq!(env["AWS_BATCH_JOB_ID"], id);
        assert_eq!(env["AWS_BATCH_JOB_ARRAY_INDEX"], i.to_string());
        assert_eq!(env["AWS_BATCH_JOB_ATTEMPT"], "1");
        assert_eq!(env["AWS_BATCH_JQ_NAME"], "envq");
        assert_eq!(env["AWS_BATCH_CE_NAME"], "envq-ce");
        assert_eq!(env["SHADOWED"], "override");
        assert_eq!(env["BASE_ONLY"], "base");
        assert_eq!(env["DEF_ONLY"], "definition");
        assert!(!env.contains_key("CARGO_MANIFEST_DIR"));
    }
    let env = env_of(&plain);
    assert_eq!(env["AWS_BATCH_JOB_ID"], plain);
    assert!(!env.contains_key("AWS_BATCH_JOB_ARRAY_INDEX"));
    assert_eq!(env["SHADOWED"], "definition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_overrides_and_parameters_shape_the_arguments() {
    let mut rig = Rig::new();
    rig.queue("q", 8.0, 8);
    rig.define(JobDefinitionSpec {
        parameters: BTreeMap::from([("word".to_string(), "default".to_string())]),
        ..sh_definition("say", r#"echo "Ref::word" > "$T_DIR/said.$AWS_BATCH_JOB_ID""#)
    });
    let defaulted = rig.submit(request("D", "q", "say"));
    let mut given = request("G", "q", "say");
    given["Parameters"] = json!({"word": "given"});
    let given = rig.submit(given);
    let mut replaced = request("R", "q", "say");
    replaced["ContainerOverrides"] =
        json!({"Command": ["-c", "echo replaced > \"$T_DIR/said.$AWS_BATCH_JOB_ID\""]});
    let replaced = rig.submit(replaced);
    rig.finish().await;
    for (id, said) in [(&defaulted, "default"), (&given, "given"), (&replaced, "replaced")] {
        assert_eq!(read(&rig.path(&format!("said.{id}"))).trim(), said);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_goes_to_one_prefixed_log_per_job() {
    let mut rig = Rig::new();
    rig.queue("q", 8.0, 8);
    rig.script(
        "talk",
        r#"i=$AWS_BATCH_JOB_ARRAY_INDEX; echo "out $i"; echo "err $i" >&2; echo "last $i" >&2"#,
    );
    rig.script("quiet", "exit 0");
    let talk = rig.submit(array("talk", "q", "talk", 3));
    let quiet = rig.submit(request("quiet", "q", "quiet"));
    let events = rig.finish().await;
    let map = by_child(&events);

    let log = rig.batch.log_path(&talk).unwrap();
    assert_eq!(log.parent().unwrap(), rig.path("logs"));
    let text = read(&log);
    for i in 0..3 {
        assert!(text.contains(&format!("[{i} a1 stdout] out {i}\n")), "{text}");
        assert!(text.contains(&format!("[{i} a1 stderr] err {i}\n")), "{text}");
        let child = format!("{talk}:{i}");
        let end = map[&child].last().unwrap();
        assert_eq!(end.tail.as_deref(), Some(format!("last {i}").as_str()));
        let detail = rig.describe(&child).await;
        assert_eq!(
            detail.attempts[0].container.as_ref().unwrap().log_stream_name.as_deref(),
            Some(log.display().to_string().as_str())
        );
    }
    assert_eq!(text.lines().count(), 9);
    assert!(!rig.batch.log_path(&quiet).unwrap().exists());
    let files = std::fs::read_dir(rig.path("logs")).unwrap().count();
    assert_eq!(files, 1, "one file for the whole array, none for a silent job");
}

// ----- reading it back -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_list_answer_in_the_api_shape() {
    let mut rig = Rig::new();
    rig.queue("q", 8.0, 8);
    rig.script("mixed", r#"[ "$AWS_BATCH_JOB_ARRAY_INDEX" = 2 ] && exit 6; exit 0"#);
    let a = rig.submit(array("A", "q", "mixed", 4));
    let b =
        rig.submit(depending(array("B", "q", "mixed", 4), json!([{"JobId": a, "Type": "N_TO_N"}])));
    rig.finish().await;
    let api: &dyn BatchApi = &rig.batch;

    let ids =
        vec![a.clone(), format!("{a}:2"), "not-a-job".to_string(), format!("{a}:4"), b.clone()];
    let found = api.describe_jobs(&ids).await.unwrap();
    assert_eq!(
        found.iter().map(|d| d.job_id.as_str()).collect::<Vec<_>>(),
        [a.as_str(), format!("{a}:2").as_str(), b.as_str()],
        "unknown ids are left out"
    );
    let parent = &found[0];
    assert_eq!(parent.job_name, "A");
    assert_eq!(parent.job_queue, queue_arn("q"));
    assert_eq!(parent.job_definition, definition_arn("mixed"));
    assert_eq!(parent.status, JobStatus::Failed);
    assert!(parent.attempts.is_empty());
    let created = parent.created_at.unwrap();
    assert!(created <= parent.started_at.unwrap());
    assert!(parent.started_at <= parent.stopped_at);
    assert_eq!(
        summary_of(parent),
        BTreeMap::from([(JobStatus::Succeeded, 3), (JobStatus::Failed, 1)])
    );

    let child = &found[1];
    assert_eq!(child.array_properties.as_ref().unwrap().index, Some(2));
    assert_eq!(child.status, JobStatus::Failed);
    assert_eq!(child.status_reason.as_deref(), Some("Essential container in task exited"));
    assert_eq!(child.attempts[0].container.as_ref().unwrap().exit_code, Some(6));
    assert!(child.started_at.unwrap() <= child.stopped_at.unwrap());

    let b_parent = &found[2];
    assert_eq!(b_parent.depends_on[0].job_id.as_deref(), Some(a.as_str()));
    // B:2 failed on its dependency, B:0 and B:3 succeeded; B:1 ran too (A:1 succeeded), but
    // the same script fails only index 2.
    assert_eq!(
        summary_of(b_parent),
        BTreeMap::from([(JobStatus::Succeeded, 3), (JobStatus::Failed, 1)])
    );

    let succeeded = api.list_array_children(&a, JobStatus::Succeeded).await.unwrap();
    let mut indices: Vec<u32> =
        succeeded.iter().map(|s| s.array_properties.as_ref().unwrap().index.unwrap()).collect();
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 3]);
    assert!(api.list_array_children(&a, JobStatus::Running).await.unwrap().is_empty());
    assert_eq!(
        api.list_array_children("not-a-job", JobStatus::Failed).await.unwrap_err().code,
        "ClientException"
    );
    let too_many: Vec<String> = (0..101).map(|i| format!("id{i}")).collect();
    let err = api.describe_jobs(&too_many).await.unwrap_err();
    assert_eq!(err.code, "ClientException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_stays_pending_until_its_last_child_ends() {
    let mut rig = Rig::new();
    rig.queue("q", 8.0, 8);
    rig.script("ok", "exit 0");
    rig.script("gate", r#"while [ ! -f "$T_DIR/open" ]; do sleep 0.02; done"#);
    let gate = rig.submit(request("G", "q", "gate"));
    let held = rig.submit(depending(array("H", "q", "ok", 3), json!([{"JobId": gate}])));

    let parent = rig.describe(&held).await;
    assert_eq!(parent.status, JobStatus::Pending);
    assert_eq!(summary_of(&parent), BTreeMap::from([(JobStatus::Pending, 3)]));
    assert!(!rig.batch.all_terminal());
    std::fs::write(rig.path("open"), "").unwrap();
    rig.finish().await;
    assert!(rig.batch.all_terminal());
    let parent = rig.describe(&held).await;
    assert_eq!(parent.status, JobStatus::Succeeded);
    assert_eq!(summary_of(&parent), BTreeMap::from([(JobStatus::Succeeded, 3)]));
}

// ----- resume, changes, termination -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_finished_in_an_earlier_run_succeed_without_running() {
    let mut rig = Rig::new();
    rig.queue("qa", 8.0, 8);
    rig.queue("qb", 8.0, 8);
    rig.script("mark", r#"touch "$T_DIR/ran.$AWS_BATCH_JQ_NAME.$AWS_BATCH_JOB_ARRAY_INDEX""#);
    rig.batch.mark_succeeded_before(|name, index| name == "A" && matches!(index, Some(0 | 2)));
    let a = rig.submit(array("A", "qa", "mark", 3));
    let b =
        rig.submit(depending(array("B", "qb", "mark", 3), json!([{"JobId": a, "Type": "N_TO_N"}])));
    let events = rig.finish().await;
    let map = by_child(&events);

    for i in [0, 2] {
        let child = format!("{a}:{i}");
        assert_eq!(statuses(&map[&child]), [JobStatus::Submitted, JobStatus::Succeeded]);
        let detail = rig.describe(&child).await;
        assert_eq!(detail.status_reason.as_deref(), Some(RESUMED_REASON));
        assert!(detail.attempts.is_empty());
        assert!(!rig.path(&format!("ran.qa.{i}")).exists());
    }
    assert!(rig.path("ran.qa.1").exists());
    for i in 0..3 {
        assert!(rig.path(&format!("ran.qb.{i}")).exists(), "B:{i} ran");
    }
    // B:0's dependency was already done: it never waited.
    assert_eq!(statuses(&map[&format!("{b}:0")])[..2], [JobStatus::Submitted, JobStatus::Runnable]);
    assert_eq!(rig.describe(&a).await.status, JobStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_resolves_at_the_next_change() {
    let mut rig = Rig::new();
    rig.queue("q", 8.0, 8);
    rig.script("ok", "exit 0");
    let batch = rig.batch.clone();
    let mut changed = pin!(batch.changed());
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(changed.as_mut().poll(&mut cx), Poll::Pending);
    rig.submit(request("J", "q", "ok"));
    // The submission itself is a change, seen without any further wait.
    assert_eq!(changed.as_mut().poll(&mut cx), Poll::Ready(()));
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_a_job_fails_its_children_and_their_dependents() {
    let mut rig = Rig::new();
    rig.queue("q", 8.0, 8);
    rig.script("ok", "exit 0");
    rig.script("gate", r#"while [ ! -f "$T_DIR/open" ]; do sleep 0.02; done"#);
    let gate = rig.submit(request("G", "q", "gate"));
    let a = rig.submit(depending(array("A", "q", "ok", 2), json!([{"JobId": gate}])));
    let b =
        rig.submit(depending(array("B", "q", "ok", 2), json!([{"JobId": a, "Type": "N_TO_N"}])));
    rig.batch.terminate_job(&a, "Stopped by the test").unwrap();
    std::fs::write(rig.path("open"), "").unwrap();
    let events = rig.finish().await;
    let map = by_child(&events);
    assert_eq!(rig.describe(&gate).await.status, JobStatus::Succeeded);
    for i in 0..2 {
        let ai = rig.describe(&format!("{a}:{i}")).await;
        assert_eq!(ai.status_reason.as_deref(), Some("Stopped by the test"));
        let bi = format!("{b}:{i}");
        assert!(!reached(&map, &bi, JobStatus::Starting));
        assert_eq!(
            rig.describe(&bi).await.status_reason.as_deref(),
            Some(DEPENDENCY_FAILED_REASON)
        );
    }
    assert_eq!(rig.batch.terminate_job("not-a-job", "x").unwrap_err().code, "ClientException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_running_children_and_fails_the_rest() {
    let mut rig = Rig::with(|c| c.kill_grace = Duration::from_secs(2));
    rig.queue("q", 1.0, 1);
    rig.script("long", r#"echo $$ > "$T_DIR/pid.$AWS_BATCH_JOB_ARRAY_INDEX"; exec sleep 60"#);
    let job = rig.submit(array("L", "q", "long", 3));
    // Wait until the first child runs.
    loop {
        match tokio::time::timeout(HANG_GUARD, rig.events.recv()).await {
            Ok(Some(BatchEvent::ChildChanged { status: JobStatus::Running, .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("no child ran: {other:?}"),
        }
    }
    while !rig.path("pid.0").exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = read(&rig.path("pid.0")).trim().to_string();
    tokio::time::timeout(HANG_GUARD, rig.batch.shutdown()).await.expect("shutdown hung");
    assert!(rig.batch.all_terminal());
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "child {pid} still alive");
    for i in 0..3 {
        let child = rig.describe(&format!("{job}:{i}")).await;
        assert_eq!(child.status, JobStatus::Failed);
        assert_eq!(child.status_reason.as_deref(), Some(SHUTDOWN_REASON));
    }
    // Nothing is taken after a shutdown.
    let err = rig.batch.submit_job(&request("after", "q", "long")).unwrap_err();
    assert_eq!(err.code, "ServerException");
}
