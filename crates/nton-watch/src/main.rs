//! The watcher Lambda's entry point: wiring only (environment check, logging, the SDK
//! clients, the Lambda runtime loop). Two events reach it: the Watch state's poll, handled by
//! `nton_watch::handle_with`, and EventBridge's status change of a stopped or timed-out
//! execution, handled by `nton_watch::cleanup::handle`.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use nton_watch::cleanup::{self, SdkCleanup};
use nton_watch::{SdkBatch, lambda_env};
use serde_json::Value;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let var = |name: &str| std::env::var(name).ok();
    let api = match lambda_env::check_runtime_env(var) {
        Ok(api) => api,
        Err(line) => {
            eprintln!("nton-watch: {line}");
            return ExitCode::from(2);
        }
    };
    let options = match lambda_env::status_options(var) {
        Ok(options) => options,
        Err(line) => {
            eprintln!("nton-watch: {line}");
            return ExitCode::from(2);
        }
    };

    // JSON lines for CloudWatch; the level from Lambda's log settings, else RUST_LOG, else info.
    let level = var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|| var("RUST_LOG"))
        .unwrap_or_else(|| "info".to_string())
        .to_lowercase();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_target(false)
        .with_current_span(false)
        .init();

    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let batch = SdkBatch::from_sdk_config(&config);
    let cleanup_api = SdkCleanup::from_sdk_config(&config);
    let batch = &batch;
    let cleanup_api = &cleanup_api;
    let options = &options;
    let handler = service_fn(move |event: LambdaEvent<Value>| async move {
        if cleanup::is_status_change(&event.payload) {
            let result = cleanup::handle(event.payload, cleanup_api).await;
            return match result {
                Ok(done) => {
                    tracing::info!(cleanup = %done, "stopped run cleaned up");
                    Ok(done)
                }
                Err(error) => {
                    tracing::error!(error_type = error.error_type(), "{error}");
                    Err(Diagnostic::from(error))
                }
            };
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_millis() as i64)
            .unwrap_or(0);
        let result = nton_watch::handle_with(event.payload, batch, now_ms, options).await;
        if let Err(error) = &result {
            tracing::error!(error_type = error.error_type(), "{error}");
        }
        result.map_err(Diagnostic::from)
    });
    match lambda_runtime::run(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nton-watch: Lambda runtime API at {api}: {error}");
            ExitCode::FAILURE
        }
    }
}
