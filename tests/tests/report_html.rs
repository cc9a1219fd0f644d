//! `nton report`'s timeline picture, opened in a real headless Chromium: the page a person
//! opens after a run. A local run with a failed node and a slow node, then the report; the
//! browser's own DOM must hold one bar per attempt the record has, one row per node, the poll
//! ticks, and its screenshot must show the picture (not a blank or error page).

use nton_engine::record::{RECORD_FILE, RecordLine, read_record};
use nton_tests::browser::{dom, screenshot_colour};
use nton_tests::cli::{expect_exit, expect_success, nton, nton_run};

#[test]
fn the_timeline_renders_a_bar_per_attempt_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("runs");
    expect_exit(
        nton_run(&data_dir)
            .args(["--ids", "300", "--ids-per-node", "10"])
            .args(["--job-env", "NTON_FAULT_FAIL=process:4"])
            // Long enough that node 2 stays the slowest on a loaded machine: at load 25, 400 ms
            // was within the noise of process start-up and another node came first.
            .args(["--job-env", "NTON_FAULT_DELAY_MS=procure:2:2500"]),
        nton::exit::RUN_FAILED,
    );

    let html = dir.path().join("timeline.html");
    let report = expect_success(
        nton().args(["report", "--data-dir"]).arg(&data_dir).arg("--html").arg(&html),
    );
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert!(stdout.contains(&format!("timeline: {}", html.display())), "{stdout}");

    let run_dir = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.join(RECORD_FILE).is_file())
        .expect("a run directory");
    let lines = read_record(&run_dir.join(RECORD_FILE)).unwrap();
    let ran = lines
        .iter()
        .filter(|line| matches!(line, RecordLine::Child(child) if child.started_at.is_some()))
        .count();

    // The DOM as Chromium parsed it: SVG elements are there only if the page is well formed.
    let dom = dom(&html);
    assert_eq!(dom.matches("<rect class=\"bar\"").count(), ran, "one bar per attempt that ran");
    assert_eq!(dom.matches("<g class=\"node\"").count(), 30, "one row per node");
    assert_eq!(dom.matches("data-outcome=\"FAILED\"").count(), 1, "node 4's process");
    assert!(dom.matches("<line class=\"poll\"").count() >= 1, "the poll loop's ticks");
    assert!(dom.contains("Failed nodes: 4"), "the header names the failed node");
    assert!(dom.contains("Slowest nodes: 2 ("), "the slow node leads the slowest");

    let (coloured, total) = screenshot_colour(&html, &dir.path().join("timeline.png"));
    assert!(
        coloured * 100 > total,
        "the screenshot shows coloured bars ({coloured} of {total} pixels)"
    );
}
