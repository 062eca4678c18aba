//! `headroom`: the command-line interface. Thin: it parses arguments, wires
//! sources to sinks and prints; the work happens in the library crates.

mod act;
mod backtest;
mod cli;
mod collect;
mod decisions;
mod forecast;
mod inspect;
mod output;
mod plan;
mod report;
mod train;

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEADROOM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log)),
        )
        .init();
    // One TLS provider for every connection (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // `headroom inspect … | head`: the reader left; that is not an error.
        Err(err)
            if err.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    match cli.command {
        Command::Collect(args) => collect::run(args, &cancel).await,
        Command::Forecast(args) => forecast::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Train(args) => train::run(args),
        Command::Backtest(args) => backtest::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Act(args) => act::run(args).await,
    }
}

/// Cancels `token` on Ctrl-C or SIGTERM, so long collections stop cleanly.
async fn cancel_on_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else { return };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::warn!("stop requested: finishing the current step");
    token.cancel();
}
