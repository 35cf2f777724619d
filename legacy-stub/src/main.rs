//! The `legacy-stub` binary: runs the fake monolith, an extracted service,
//! the test backend, or all three shop programs at once, outside any test,
//! e.g. to put a separately started `strangler` in front of them or to
//! benchmark against them. It prints one `legacy-stub <kind> listening on
//! http://ADDR` line per server (scripts wait for it) and runs until Ctrl-C
//! or SIGTERM, then shuts the servers down gracefully.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use legacy_stub::{Kind, Server};

/// Which program(s) to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Program {
    /// The legacy Tea & Co. monolith (default 127.0.0.1:9000).
    Monolith,
    /// The extracted orders service (default 127.0.0.1:9101).
    Orders,
    /// The extracted customers service (default 127.0.0.1:9201).
    Customers,
    /// The generic test backend (default 127.0.0.1:9300).
    Test,
    /// Monolith, orders and customers together on their default addresses.
    All,
}

/// Fake legacy monolith, extracted services and test backend for strangler.
#[derive(Debug, Parser)]
#[command(name = "legacy-stub", version, about)]
struct Cli {
    /// What to run.
    #[arg(value_enum)]
    program: Program,
    /// Address to listen on (not allowed with `all`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Name of the test backend, reported in `x-served-by` and echo JSON.
    #[arg(long, default_value = "test")]
    name: String,
}

/// The program's kind, its word on the command line, and its default address.
fn plan(program: Program, name: &str) -> Vec<(Kind, &'static str, SocketAddr)> {
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    match program {
        Program::Monolith => vec![(Kind::Monolith, "monolith", at(9000))],
        Program::Orders => vec![(Kind::Orders, "orders", at(9101))],
        Program::Customers => vec![(Kind::Customers, "customers", at(9201))],
        Program::Test => vec![(
            Kind::Test {
                name: name.to_owned(),
            },
            "test",
            at(9300),
        )],
        Program::All => vec![
            (Kind::Monolith, "monolith", at(9000)),
            (Kind::Orders, "orders", at(9101)),
            (Kind::Customers, "customers", at(9201)),
        ],
    }
}

/// Resolves on Ctrl-C, or on SIGTERM where there is such a thing.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.program == Program::All && cli.listen.is_some() {
        eprintln!("legacy-stub: --listen cannot be used with `all` (each server uses its default)");
        return ExitCode::from(2);
    }
    let mut servers: Vec<Server> = Vec::new();
    for (kind, word, default_addr) in plan(cli.program, &cli.name) {
        let addr = cli.listen.unwrap_or(default_addr);
        match legacy_stub::spawn(kind, addr).await {
            Ok(server) => {
                println!("legacy-stub {word} listening on {}", server.url());
                servers.push(server);
            }
            Err(e) => {
                eprintln!("legacy-stub: cannot start {word} on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    terminated().await;
    for server in servers {
        server.shutdown().await;
    }
    ExitCode::SUCCESS
}
