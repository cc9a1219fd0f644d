//! The init Lambda's entry point: wiring only (logging, configuration, the Lambda runtime).

use std::process::ExitCode;
use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use nton_init::{InitConfig, check_lambda_env, handle};
use serde_json::Value;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    if let Err(line) = check_lambda_env("nton-init", env) {
        eprintln!("{line}");
        return ExitCode::from(2);
    }
    init_tracing();
    let config = match InitConfig::from_env() {
        Ok(config) => Arc::new(config),
        Err(err) => {
            eprintln!("nton-init: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("nton-init: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let handler = service_fn(move |event: LambdaEvent<Value>| {
        let config = Arc::clone(&config);
        async move {
            // The handler blocks on file I/O; keep it off the runtime's only thread.
            match tokio::task::spawn_blocking(move || handle(event.payload, &config)).await {
                Ok(result) => result.map_err(Diagnostic::from),
                Err(err) => Err(Diagnostic {
                    error_type: "InternalError".to_string(),
                    error_message: format!("the init handler did not finish: {err}"),
                }),
            }
        }
    });
    match runtime.block_on(lambda_runtime::run(handler)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let api = env("AWS_LAMBDA_RUNTIME_API").unwrap_or_default();
            eprintln!("nton-init: the Lambda runtime API at {api} failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// JSON logs (what CloudWatch Logs Insights queries best), level from `AWS_LAMBDA_LOG_LEVEL`
/// (set by Lambda's logging config) or `RUST_LOG`, else info.
fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string())
        .to_lowercase();
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .without_time() // CloudWatch stamps every line already.
        .with_target(false)
        .init();
}
