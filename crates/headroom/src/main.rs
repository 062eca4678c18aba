//! `headroom`: the command-line interface. Thin: it parses arguments, wires
//! sources to sinks and prints; the work happens in the library crates.

mod act;
mod backtest;
mod cli;
mod collect;
mod forecast;
mod inspect;
mod logging;
mod operator;
mod output;
mod plan;
mod service;
mod train;

use std::process::ExitCode;

use clap::Parser;
use headroom_core::{Interrupt, Interrupted};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon says what it does at `info`; one-shot commands only warn.
    let default = if matches!(cli.command, Command::Run(_) | Command::Operator(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEADROOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.log.as_deref().unwrap_or(default)));
    #[cfg(windows)]
    if let Command::Run(args) = &cli.command
        && args.service
    {
        return run_windows_service(args, filter);
    }
    logging::init(cli.log_format, filter);
    // One TLS provider for every connection (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let interrupt = Interrupt::new();
    let result = runtime.block_on(run(cli, interrupt.clone()));
    // A signal stopped the work: say so, with the conventional exit code
    // (130 for SIGINT, 143 for SIGTERM). Every output file is written whole
    // or not at all (temporary file, then rename), so nothing partial is left.
    if let Some(stop) = interrupt.raised()
        && result.as_ref().is_err_and(|e| e.chain().any(|c| c.downcast_ref::<Interrupted>().is_some()))
    {
        eprintln!("{stop}; nothing partial was written");
        return ExitCode::from(stop.exit_code());
    }
    match result {
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
            ExitCode::from(exit_code(&err))
        }
    }
}

/// 2 for input that cannot be used (a config file, a data or limits file,
/// a time or duration), as the README documents; 1 for anything else
/// (a file that cannot be read, a network, a platform, a model).
fn exit_code(err: &anyhow::Error) -> u8 {
    use headroom_collect::Error as Collect;
    use headroom_remediate::Error as Config;
    let config = |e: &Config| matches!(e, Config::Parse { .. } | Config::Invalid { .. });
    let data = |e: &Collect| {
        matches!(e, Collect::Parse { .. } | Collect::File { .. } | Collect::Invalid { .. } | Collect::Config(_))
    };
    let bad_input = err.chain().any(|c| {
        // The backtest's errors pass other crates' on unchanged: judge those.
        let c = c.downcast_ref::<headroom_backtest::Error>().and_then(headroom_backtest::Error::wrapped).unwrap_or(c);
        c.downcast_ref::<Config>().is_some_and(config)
            || c.downcast_ref::<Collect>().is_some_and(data)
            || match c.downcast_ref::<headroom_engine::Error>() {
                Some(headroom_engine::Error::Remediate(e)) => config(e),
                Some(headroom_engine::Error::Collect(e)) => data(e),
                _ => false,
            }
            || matches!(
            c.downcast_ref::<headroom_core::Error>(),
            Some(headroom_core::Error::Timestamp { .. } | headroom_core::Error::Duration { .. })
        )
            || matches!(c.downcast_ref::<headroom_daemon::Error>(), Some(headroom_daemon::Error::Config(e)) if config(e))
            || matches!(c.downcast_ref::<headroom_service::Error>(), Some(headroom_service::Error::Invalid(_)))
    });
    if bad_input { 2 } else { 1 }
}

/// `headroom run --service` on Windows: the daemon under the SCM's
/// dispatcher, its logs to the Event Log; a stop, preshutdown or shutdown
/// control is the daemon's graceful shutdown. (Type-checked only through
/// headroom-service: the binary is not built for Windows here.)
#[cfg(windows)]
fn run_windows_service(args: &crate::cli::RunArgs, filter: tracing_subscriber::EnvFilter) -> ExitCode {
    use headroom_service::scm::RunOutcome;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let name = args.service_name.as_str();
    if let Ok(layer) = headroom_service::windows::event_log_layer(name) {
        tracing_subscriber::registry().with(filter).with(layer).init();
    }
    let options = headroom_daemon::Options { config: args.config.clone(), enforce: args.enforce };
    let body = Box::new(move |stop: CancellationToken| {
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return RunOutcome::Failed(format!("cannot start the async runtime: {e}")),
        };
        match runtime.block_on(headroom_daemon::run(options, stop)) {
            Ok(headroom_daemon::Shutdown { clean: true }) => RunOutcome::Clean,
            Ok(headroom_daemon::Shutdown { clean: false }) => {
                RunOutcome::Unclean("jobs still ran after daemon.shutdown_timeout".into())
            }
            Err(e) => RunOutcome::Failed(e.to_string()),
        }
    });
    match headroom_service::windows::run_as_service(name, body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A command that blocks (reads files, forecasts): run off the async threads.
type Blocking = Box<dyn FnOnce(&Interrupt) -> anyhow::Result<ExitCode> + Send>;

async fn run(cli: Cli, interrupt: Interrupt) -> anyhow::Result<ExitCode> {
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone(), interrupt.clone()));
    // The blocking commands run off the async threads, so the signal task is
    // always free to raise the flag they check between units of work.
    let blocking = |f: Blocking| {
        let interrupt = interrupt.clone();
        async move { tokio::task::spawn_blocking(move || f(&interrupt)).await? }
    };
    match cli.command {
        Command::Collect(args) => collect::run(args, &cancel).await,
        Command::Forecast(args) => blocking(Box::new(|i| forecast::run(args, i))).await,
        Command::Inspect(args) => blocking(Box::new(|_| inspect::run(args))).await,
        Command::Train(args) => blocking(Box::new(|i| train::run(args, i))).await,
        Command::Backtest(args) => blocking(Box::new(|i| backtest::run(args, i))).await,
        Command::Plan(args) => blocking(Box::new(|i| plan::run(args, i))).await,
        Command::Act(args) => act::run(args, &interrupt).await,
        Command::Operator(args) => operator::run(args, cancel).await,
        Command::Service(args) => service::run(args).await,
        Command::Run(args) if args.service => {
            anyhow::bail!(
                "--service: only a Windows service runs under the SCM's dispatcher; systemd starts `headroom run` as it is"
            )
        }
        Command::Run(args) => {
            // The daemon stops gracefully on the first signal and exits 0.
            let options = headroom_daemon::Options { config: args.config, enforce: args.enforce };
            headroom_daemon::run(options, cancel).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// On the first Ctrl-C or SIGTERM: raises `interrupt` (long work stops at its
/// next check, `act` after the action in flight) and cancels `token` (a
/// collection stops and keeps what it has). On a second one: exits at once.
async fn stop_on_signal(token: CancellationToken, interrupt: Interrupt) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        let mut first = true;
        loop {
            let signal = tokio::select! {
                _ = int.recv() => 2,
                _ = term.recv() => 15,
            };
            if !first {
                eprintln!("{}: stopping at once", headroom_core::interrupt::signal_name(signal));
                std::process::exit(128 + signal);
            }
            first = false;
            eprintln!(
                "{}: stopping after the current step (again to stop at once)",
                headroom_core::interrupt::signal_name(signal)
            );
            interrupt.raise(signal);
            token.cancel();
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("Ctrl-C: stopping after the current step");
        interrupt.raise(2);
        token.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    }
}
