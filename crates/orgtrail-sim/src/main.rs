//! `orgtrail-sim`: the Atlassian Organizations API simulator as a standalone binary.

use clap::Parser;

/// Simulator of the Atlassian Organizations REST API (audit events) for tests, benchmarks and demos.
#[derive(Parser)]
#[command(name = "orgtrail-sim", version, about)]
struct Cli {
    #[command(flatten)]
    sim: orgtrail_sim::SimArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match orgtrail_sim::run(cli.sim).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orgtrail-sim: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
