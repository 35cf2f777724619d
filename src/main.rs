//! The `strangler` command line: run, check, explain, shift, demo. Everything it does
//! lives in the library; this file parses arguments, sets up logging and the
//! runtime, and turns errors into messages and exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use strangler::config::{Config, ConfigDiff, ConfigError, SourceFile};
use strangler::edit::{self, ShiftError};
use strangler::telemetry::{self, LogFormat};
use strangler::{demo, report, run};

#[derive(Parser)]
#[command(
    name = "strangler",
    version,
    about = "A reverse proxy for strangler-fig migrations",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (also STRANGLER_CONFIG); plain `strangler --config FILE` runs the proxy.
    #[arg(long, short = 'c', env = "STRANGLER_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log lines for humans or one JSON object per line.
    #[arg(long, value_enum, default_value_t = Format::Pretty, global = true)]
    log_format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Pretty,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run,
    /// Validate the config and print the route table (or, with --against,
    /// what changed since another version of it).
    Check {
        /// Instead of the route table, print what changes going from this
        /// (older) file to --config: the lines a reload would log.
        #[arg(long, value_name = "OLD")]
        against: Option<PathBuf>,
    },
    /// Show where one request would go.
    Explain {
        /// e.g. GET
        method: String,
        /// e.g. /api/orders/17?expand=lines
        path: String,
        /// A request header, `name: value` (repeatable), e.g. -H 'host: shop.example.com'
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
    },
    /// Set a route's shift.percent in the config file, keeping every comment
    /// and the layout; a running proxy watching the file picks it up.
    Shift {
        /// The route's name (or its pattern, when it has no name).
        route: String,
        /// 0 to 100, at most two decimals, e.g. 25 or 12.5.
        #[arg(allow_hyphen_values = true)]
        percent: String,
    },
    /// Start the bundled monolith and services behind the proxy (config/demo.toml).
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = telemetry::init(match cli.log_format {
        Format::Pretty => LogFormat::Pretty,
        Format::Json => LogFormat::Json,
    });
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => config_path(&cli.config).and_then(|p| run_proxy(&p)),
        Command::Check { against: None } => config_path(&cli.config).and_then(|p| check(&p)),
        Command::Check { against: Some(old) } => {
            config_path(&cli.config).and_then(|p| check_against(&p, &old))
        }
        Command::Explain {
            method,
            path,
            headers,
        } => config_path(&cli.config).and_then(|p| explain(&p, &method, &path, &headers)),
        Command::Shift { route, percent } => {
            config_path(&cli.config).and_then(|p| shift(&p, &route, &percent))
        }
        Command::Demo => run_demo(cli.config.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strangler: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_path(p: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    p.clone()
        .context("no config file: pass --config FILE or set STRANGLER_CONFIG")
}

/// Loads a config, printing every problem as `FILE:LINE:COL: message`.
fn load(path: &Path) -> Result<Config, ExitCode> {
    match Config::load(path) {
        Ok(c) => Ok(c),
        Err(e) => {
            print_config_error(&e);
            Err(ExitCode::FAILURE)
        }
    }
}

fn print_config_error(e: &ConfigError) {
    for line in e.messages() {
        eprintln!("{line}");
    }
}

fn print_warnings(config: &Config) {
    for w in &config.warnings {
        eprintln!("{}:{}:{}: warning: {}", w.file, w.line, w.col, w.message);
    }
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let rt = match workers {
        // One worker: a single-threaded runtime avoids cross-thread wake-ups.
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    rt.context("cannot start the async runtime")
}

fn run_proxy(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let rt = runtime(config.server.workers)?;
    rt.block_on(async {
        let signals = run::ShutdownSignals::install().context("cannot listen for signals")?;
        let bound = run::Bound::new(config).await?;
        bound.serve(signals.first()).await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    print_warnings(&config);
    print!("{}", report::route_table(&config));
    Ok(ExitCode::SUCCESS)
}

/// `check --config NEW --against OLD`: both must be valid; prints what a
/// reload from OLD to NEW would log.
fn check_against(new: &Path, old: &Path) -> anyhow::Result<ExitCode> {
    let (old, new) = (load(old), load(new));
    let (Ok(old), Ok(new)) = (old, new) else {
        return Ok(ExitCode::FAILURE);
    };
    print_warnings(&new);
    print!("{}", ConfigDiff::between(&old, &new));
    Ok(ExitCode::SUCCESS)
}

fn shift(path: &Path, route: &str, percent: &str) -> anyhow::Result<ExitCode> {
    match edit::shift_file(path, route, percent) {
        Ok(done) => {
            println!("{done}");
            Ok(ExitCode::SUCCESS)
        }
        Err(ShiftError::Config(e)) => {
            print_config_error(&e);
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

fn explain(
    path: &Path,
    method: &str,
    target: &str,
    headers: &[String],
) -> anyhow::Result<ExitCode> {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    print!("{}", report::explain(&config, method, target, headers)?);
    Ok(ExitCode::SUCCESS)
}

fn run_demo(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let default = Path::new("config/demo.toml");
    let file = path.or(default.exists().then_some(default));
    // A demo config read from a file is watched and reloaded like any other,
    // so `strangler shift` and edits take effect live; the built-in copy
    // (for a binary run outside the repository) is not.
    let (name, config) = match file {
        Some(p) => (p.display().to_string(), Config::load(p)),
        None => {
            let name = "(built-in demo config)".to_owned();
            let src = SourceFile::new(name.clone(), demo::BUILTIN_CONFIG.to_owned());
            (name, Config::parse(&src))
        }
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            print_config_error(&e);
            return Ok(ExitCode::FAILURE);
        }
    };
    let rt = runtime(config.server.workers)?;
    rt.block_on(async {
        let signals = run::ShutdownSignals::install().context("cannot listen for signals")?;
        let demo = demo::start(config).await?;
        println!("{}", demo.banner(&name));
        let demo::Demo { services, proxy } = demo;
        proxy.serve(signals.first()).await;
        for (_, s) in services {
            s.shutdown().await;
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// mimalloc instead of the system allocator: request handling makes many
/// small, short-lived allocations, and alternating runs of the keep-alive
/// benchmark put mimalloc ahead of glibc's allocator, at an idle RSS still
/// well under the 20 MiB budget (bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
