//! `nton watch RUN_DIR` / `nton watch --latest` on a local run: a second process follows the
//! run record while `nton run` writes it, shows the per-stage lines, and exits with the run's
//! outcome; an ended run answers at once; a missing run directory is bad input.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nton_engine::record::RECORD_FILE;
use nton_tests::cli::{nton, nton_run};

fn nton_watch(args: &[&str], data_dir: &Path) -> std::process::Output {
    nton().arg("watch").args(args).arg("--data-dir").arg(data_dir).output().unwrap()
}

#[test]
fn watch_follows_a_local_run_in_progress_and_exits_with_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("runs");
    let mut run = nton_run(&data_dir)
        .args(["--ids", "60", "--ids-per-node", "10"])
        .args(["--job-env", "NTON_FAULT_DELAY_MS=procure:0:2500"])
        .args(["--job-env", "NTON_FAULT_FAIL=process:5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the run's record, then follow it while node 0 is still slow in procure.
    let deadline = Instant::now() + Duration::from_secs(30);
    let run_dir = loop {
        let found = std::fs::read_dir(&data_dir).ok().and_then(|entries| {
            entries.filter_map(Result::ok).map(|e| e.path()).find(|p| p.join(RECORD_FILE).is_file())
        });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "the run wrote no record");
        std::thread::sleep(Duration::from_millis(20));
    };
    let watch = nton_watch(&["--latest"], &data_dir);
    let run_status = run.wait().unwrap();
    assert_eq!(run_status.code(), Some(1), "the run fails on node 5");
    let stdout = String::from_utf8_lossy(&watch.stdout);
    let stderr = String::from_utf8_lossy(&watch.stderr);
    assert_eq!(watch.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("watching {}", run_dir.display())), "{stderr}");
    assert!(stdout.starts_with("FAILED after"), "{stdout}");
    assert!(stdout.contains("process failed on node 5"), "{stdout}");
    // It followed the run: at least one per-stage line before the end, with procure not yet
    // ended on every node (node 0 was slow).
    assert!(stderr.lines().any(|l| l.contains("procure") && !l.contains(" 6/6 ")), "{stderr}");

    // An ended run answers at once with the same outcome; JSON ends with a finished event.
    let again = nton_watch(&[run_dir.to_str().unwrap(), "--json"], &data_dir);
    assert_eq!(again.status.code(), Some(1));
    let last = String::from_utf8_lossy(&again.stdout)
        .lines()
        .last()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["status"], "FAILED");
}

#[test]
fn a_missing_run_directory_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let watch = nton_watch(&[missing.to_str().unwrap()], dir.path());
    assert_eq!(watch.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&watch.stderr);
    assert!(stderr.contains("no such run directory"), "{stderr}");
    let latest = nton_watch(&["--latest"], &dir.path().join("empty"));
    assert_eq!(latest.status.code(), Some(2), "{}", String::from_utf8_lossy(&latest.stderr));
}
