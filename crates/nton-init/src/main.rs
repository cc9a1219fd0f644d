//! The init Lambda's entry point: wiring only (the shared bootstrap, configuration, the Lambda
//! runtime).

use std::process::ExitCode;
use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use nton_init::{InitConfig, handle};
use serde_json::Value;

const BINARY: &str = "nton-init";

fn main() -> ExitCode {
    let api = match nton_lambda::bootstrap(BINARY) {
        Ok(api) => api,
        Err(code) => return code,
    };
    let config = match InitConfig::from_env() {
        Ok(config) => Arc::new(config),
        Err(error) => return nton_lambda::config_failed(BINARY, &error),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{BINARY}: cannot start the async runtime: {err}");
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
        Err(error) => nton_lambda::runtime_failed(BINARY, &api, &error),
    }
}
