use std::process::ExitCode;

use clap::Parser;
use nton::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NTON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nton: cannot start the async runtime: {error}");
            return ExitCode::from(nton::exit::ENVIRONMENT);
        }
    };
    nton::exit::report(runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => nton::run::run(args).await,
            Command::Report(args) => nton::report::report(args).await,
            Command::Retry(args) => nton::retry::retry(args).await,
            Command::Deploy(args) => nton::aws::deploy(args).await,
            Command::Start(args) => nton::aws::start(args).await,
            Command::Watch(args) => match args.local_run() {
                Ok(Some(run)) => {
                    nton::local_watch::watch_local(&run, &args.watch.watch_state, args.watch.json)
                        .await
                }
                Ok(None) => {
                    nton::aws::execution::watch_cli(&args.watch, args.summary_markdown.as_deref())
                        .await
                }
                Err(error) => Err(error),
            },
            Command::Teardown(args) => nton::confirm::teardown(args).await,
        }
    }))
}
