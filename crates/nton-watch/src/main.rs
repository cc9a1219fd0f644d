//! The watcher Lambda's entry point: wiring only (the shared bootstrap, settings, the SDK
//! clients, the Lambda runtime loop). Two events reach it: the Watch state's poll, handled by
//! `nton_watch::handle_with`, and EventBridge's status change of a stopped or timed-out
//! execution, handled by `nton_watch::cleanup::handle`.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use nton_watch::cleanup::{self, SdkCleanup};
use nton_watch::{SdkBatch, config};
use serde_json::Value;

const BINARY: &str = "nton-watch";

#[tokio::main]
async fn main() -> ExitCode {
    let api = match nton_lambda::bootstrap(BINARY) {
        Ok(api) => api,
        Err(code) => return code,
    };
    let options = match config::status_options(|name| std::env::var(name).ok()) {
        Ok(options) => options,
        Err(error) => return nton_lambda::config_failed(BINARY, &error),
    };

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
        Err(error) => nton_lambda::runtime_failed(BINARY, &api, &error),
    }
}
