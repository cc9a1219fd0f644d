//! The Batch worker's entry point: wiring only (command line, logging, environment, exit code).

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
use nton_job::cli::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stage = cli.stage.stage();

    // JSON lines on stdout (CloudWatch keeps one event per line); RUST_LOG sets the level. The
    // SDK's own info lines (credential loading) are noise in a job log.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stdout)
        .init();

    // Lossy: a variable that is not UTF-8 shows up in the error that names it, not as a panic.
    let vars: HashMap<String, String> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect();
    match nton_job::run(stage, &vars) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nton-job {stage}: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
