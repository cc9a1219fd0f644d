//! `nton report --execution` against moto: three stage jobs submitted as the state machine
//! does (arrays chained N_TO_N, or plain jobs for one node), an execution whose history holds
//! their ids where the submitJob states put them (`$.jobs.<stage>.JobId`) and a Watch state,
//! then the report. The page must hold one bar per child attempt moto reports (moto without
//! Docker ends every child at once with one attempt), one row per node, a tick per Watch entry,
//! and open in a real headless Chromium.

use std::time::{Duration, Instant};

use aws_sdk_batch::types::{ArrayJobDependency, ArrayProperties, JobDependency, JobStatus};
use aws_sdk_sfn::types::ExecutionStatus;
use nton::cli::ReportArgs;
use nton_tests::browser::{dom, screenshot_colour};
use nton_tests::moto::{BatchQueue, MotoServer, batch_queue};
use serde_json::{Value, json};

/// Submits procure, process and egress as the template's state machine does; their job ids.
async fn submit_stages(config: &aws_config::SdkConfig, nodes: i32) -> Vec<String> {
    let BatchQueue { queue, definition } = batch_queue(config, "nton-report").await;
    let batch = aws_sdk_batch::Client::new(config);
    let workflow = uuid::Uuid::new_v4();
    let mut ids: Vec<String> = Vec::new();
    for stage in ["procure", "process", "egress"] {
        let mut submit = batch
            .submit_job()
            .job_name(format!("nton-{stage}-{workflow}"))
            .job_queue(&queue)
            .job_definition(&definition);
        if nodes > 1 {
            submit = submit.array_properties(ArrayProperties::builder().size(nodes).build());
        }
        if let Some(previous) = ids.last() {
            let mut dependency = JobDependency::builder().job_id(previous);
            if nodes > 1 {
                dependency = dependency.r#type(ArrayJobDependency::NToN);
            }
            submit = submit.depends_on(dependency.build());
        }
        ids.push(submit.send().await.unwrap().job_id().unwrap().to_string());
    }
    ids
}

/// An execution shaped like the pipeline's: three states whose results land at
/// `$.jobs.<stage>` as the submitJob states' do, then Watch entered twice (a Wait between).
async fn run_execution(config: &aws_config::SdkConfig, ids: &[String]) -> String {
    let submit = |stage: &str, id: &str, next: &str| json!({"Type": "Pass", "Result": {"JobId": id}, "ResultPath": format!("$.jobs.{stage}"), "Next": next});
    let definition = json!({
        "StartAt": "SubmitProcure",
        "States": {
            "SubmitProcure": submit("procure", &ids[0], "SubmitProcess"),
            "SubmitProcess": submit("process", &ids[1], "SubmitEgress"),
            "SubmitEgress": submit("egress", &ids[2], "Watch"),
            "Watch": {"Type": "Pass", "Result": {"done": true, "failed": false},
                      "ResultPath": "$.status", "Next": "WaitForJobs"},
            "WaitForJobs": {"Type": "Wait", "Seconds": 1, "Next": "WatchAgain"},
            "WatchAgain": {"Type": "Pass", "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    });
    let sfn = aws_sdk_sfn::Client::new(config);
    let machine = sfn
        .create_state_machine()
        .name("nton-report")
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/nton-test")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_string();
    let execution = sfn
        .start_execution()
        .state_machine_arn(&machine)
        .input("{}")
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_string();
    let started = Instant::now();
    loop {
        let described = sfn.describe_execution().execution_arn(&execution).send().await.unwrap();
        if *described.status() != ExecutionStatus::Running {
            assert_eq!(*described.status(), ExecutionStatus::Succeeded);
            return execution;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still running");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every attempt moto reports for the children of `parents` (or the plain jobs themselves).
async fn attempts_reported(
    config: &aws_config::SdkConfig,
    parents: &[String],
    nodes: i32,
) -> usize {
    let batch = aws_sdk_batch::Client::new(config);
    let mut ids: Vec<String> = Vec::new();
    for parent in parents {
        if nodes == 1 {
            ids.push(parent.clone());
            continue;
        }
        let listed = batch
            .list_jobs()
            .array_job_id(parent)
            .job_status(JobStatus::Succeeded)
            .send()
            .await
            .unwrap();
        ids.extend(listed.job_summary_list().iter().map(|s| s.job_id().unwrap().to_string()));
    }
    let described = batch.describe_jobs().set_jobs(Some(ids)).send().await.unwrap();
    described.jobs().iter().map(|job| job.attempts().len()).sum()
}

fn report_args(execution: &str, html: &std::path::Path, json: bool) -> ReportArgs {
    ReportArgs {
        run_dir: None,
        execution: Some(execution.to_string()),
        env: None,
        prefix: "nton".into(),
        state_machine_arn: None,
        watch_state: "Watch".into(),
        aws: Default::default(),
        data_dir: "nton-runs".into(),
        json,
        html: Some(html.to_path_buf()),
    }
}

#[tokio::test]
async fn an_array_execution_on_moto_draws_a_bar_per_child_attempt_in_a_real_browser() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let ids = submit_stages(&config, 4).await;
    let execution = run_execution(&config, &ids).await;
    let attempts = attempts_reported(&config, &ids, 4).await;
    assert_eq!(attempts, 12, "moto gives each of 3 x 4 children one attempt");

    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("execution.html");
    let text = nton::report::aws_report_with(&config, &report_args(&execution, &html, false))
        .await
        .unwrap();
    assert!(text.starts_with(&format!("execution {execution}: SUCCEEDED in ")), "{text}");
    assert!(
        text.contains("  nton-procure     4 succeeded, 0 failed, 0 retried attempts\n"),
        "{text}"
    );
    assert!(text.ends_with(&format!("timeline: {}\n", html.display())), "{text}");

    let dom = dom(&html);
    assert_eq!(dom.matches("<rect class=\"bar\"").count(), attempts, "{dom}");
    assert_eq!(dom.matches("data-outcome=\"SUCCEEDED\"").count(), attempts);
    assert_eq!(dom.matches("<g class=\"node\"").count(), 4, "one row per node");
    for node in 0..4 {
        assert!(dom.contains(&format!("data-node=\"{node}\"")), "node {node}");
    }
    assert_eq!(
        dom.matches("<line class=\"poll\"").count(),
        1,
        "one tick per entry of the Watch state"
    );
    for stage in ["nton-procure", "nton-process", "nton-egress"] {
        assert_eq!(dom.matches(&format!("data-stage=\"{stage}\"")).count(), 4, "{stage}");
    }
    let (coloured, total) = screenshot_colour(&html, &dir.path().join("execution.png"));
    // moto ends every child at once, so each bar is its narrowest (1 px by 12): the page must
    // show more colour than its legend's five 12 x 12 swatches alone.
    let legend = 5 * 12 * 12;
    assert!(
        coloured > legend + 12 * 4,
        "the screenshot shows the bars ({coloured} of {total} pixels coloured)"
    );

    // --json: the same data.
    let json_html = dir.path().join("json.html");
    let printed =
        nton::report::aws_report_with(&config, &report_args(&execution, &json_html, true))
            .await
            .unwrap();
    let value: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(value["executionArn"], json!(execution));
    assert_eq!(value["status"], json!("SUCCEEDED"));
    assert_eq!(value["timeline"]["nodeCount"], json!(4));
    assert_eq!(value["timeline"]["pollState"], json!("Watch"));
    assert_eq!(value["timeline"]["polls"].as_array().unwrap().len(), 1);
    assert_eq!(
        value["timeline"]["stages"].as_array().unwrap().len(),
        3,
        "{}",
        value["timeline"]["stages"]
    );
    let drawn: usize = value["timeline"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["attempts"].as_array().unwrap().len())
        .sum();
    assert_eq!(drawn, attempts);
    assert_eq!(value["html"], json!(json_html));
    assert!(json_html.is_file());
}

#[tokio::test]
async fn a_one_node_execution_reports_its_plain_jobs_as_node_zero() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let ids = submit_stages(&config, 1).await;
    let execution = run_execution(&config, &ids).await;
    assert_eq!(attempts_reported(&config, &ids, 1).await, 3);
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("one.html");
    nton::report::aws_report_with(&config, &report_args(&execution, &html, false)).await.unwrap();
    let dom = dom(&html);
    assert_eq!(dom.matches("<rect class=\"bar\"").count(), 3, "{dom}");
    assert_eq!(dom.matches("<g class=\"node\" data-node=\"0\"").count(), 1);
}

#[tokio::test]
async fn a_name_that_is_no_execution_is_bad_input_and_nothing_is_written() {
    let (_moto, config) = MotoServer::start_with_config().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("never.html");
    let mut args = report_args("a b", &html, false);
    args.state_machine_arn = Some("arn:aws:states:us-east-1:123456789012:stateMachine:m".into());
    let error = nton::report::aws_report_with(&config, &args).await.unwrap_err();
    assert!(error.to_string().starts_with("--execution: "), "{error}");
    assert!(!html.exists());
}

#[tokio::test]
async fn failed_children_are_red_bars_and_named_as_failed_nodes() {
    let moto = MotoServer::start_failing_batch().unwrap();
    let config = moto.sdk_config().await;
    let ids = submit_stages(&config, 3).await;
    let execution = run_execution(&config, &ids).await;
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("failed.html");
    let text = nton::report::aws_report_with(&config, &report_args(&execution, &html, false))
        .await
        .unwrap();
    assert!(
        text.contains("  nton-procure     0 succeeded, 3 failed, 0 retried attempts\n"),
        "{text}"
    );
    assert!(text.contains("  failed nodes     0, 1, 2\n"), "{text}");
    let dom = dom(&html);
    // moto fails every child of every stage, each with one attempt.
    assert_eq!(dom.matches("data-outcome=\"FAILED\"").count(), 9, "{dom}");
    assert_eq!(dom.matches("data-outcome=\"SUCCEEDED\"").count(), 0);
    assert!(dom.contains("Failed nodes: 0, 1, 2"), "{dom}");
}
