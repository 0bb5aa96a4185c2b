//! The `presenced` command line: `run` starts the daemon, `check-config` validates a
//! configuration file. Every subcommand that touches data takes the same `--db`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use argh::FromArgs;
use futures_lite::StreamExt;

use presenced::clock::SystemClock;
use presenced::config::{Config, ListenAddr};

/// presenced: a SIP presence server with an embedded database.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Run(RunArgs),
    CheckConfig(CheckConfigArgs),
}

/// Run the presence server.
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct RunArgs {
    /// configuration file (TOML); every option has a default
    #[argh(option)]
    config: Option<PathBuf>,
    /// database directory (default: presenced.db in the working directory)
    #[argh(option)]
    db: Option<PathBuf>,
    /// listen address, e.g. udp:127.0.0.1:5060 or tcp:[::1]:5060 (repeatable; replaces
    /// the configured list)
    #[argh(option)]
    listen: Vec<ListenAddr>,
}

/// Validate a configuration file and print the effective configuration.
#[derive(FromArgs)]
#[argh(subcommand, name = "check-config")]
struct CheckConfigArgs {
    /// the configuration file to check
    #[argh(positional)]
    file: PathBuf,
}

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match cli.command {
        Command::Run(args) => run(args),
        Command::CheckConfig(args) => check_config(args),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("presenced: {msg}");
    ExitCode::FAILURE
}

fn run(args: RunArgs) -> ExitCode {
    let (mut config, source) = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => (c, path.display().to_string()),
            Err(e) => return fail(e),
        },
        None => (Config::default(), "built-in defaults".to_string()),
    };
    if let Some(db) = args.db {
        config.db = db;
    }
    if !args.listen.is_empty() {
        config.listen = args.listen;
    }
    let signals =
        match async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int]) {
            Ok(s) => s,
            Err(e) => return fail(format!("cannot install signal handlers: {e}")),
        };
    log::info!(
        "starting: database {}, configuration from {source}",
        config.db.display()
    );
    let handle = match presenced::daemon::start(config, Arc::new(SystemClock)) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let mut signals = signals;
    if let Some(Ok(sig)) = smol::block_on(signals.next()) {
        log::info!("received {sig:?}");
    }
    match handle.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn check_config(args: CheckConfigArgs) -> ExitCode {
    match Config::load(&args.file) {
        Ok(c) => {
            print!("{}", c.to_toml_string());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
