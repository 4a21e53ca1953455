//! The `shoal-node` command line. The binary is a thin wrapper over
//! [`main`]; `shoal-testnet` reuses it to run nodes from its own binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use libp2p::Multiaddr;

use crate::daemon::{self, Overrides};

/// shoal compute node.
#[derive(Debug, Parser)]
#[command(name = "shoal-node", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a fresh home: config.toml (every setting, commented) and identity.key.
    Init {
        #[arg(long)]
        home: PathBuf,
        /// Overwrite an existing config and identity.
        #[arg(long)]
        force: bool,
    },
    /// Print the peer id of the node in --home.
    Id {
        #[arg(long)]
        home: PathBuf,
    },
    /// Remove blocks no live pin needs (and expired pins) from a stopped
    /// node's block store; a running node does this itself every 10 minutes.
    Gc {
        #[arg(long)]
        home: PathBuf,
    },
    /// Join the network and run until SIGINT/SIGTERM.
    Run {
        #[arg(long)]
        home: PathBuf,
        /// Listen multiaddr (repeatable); overrides network.listen.
        #[arg(long)]
        listen: Vec<Multiaddr>,
        /// Bootstrap multiaddr with /p2p/ID (repeatable); overrides network.bootstrap.
        #[arg(long)]
        bootstrap: Vec<Multiaddr>,
        /// HOST:PORT for GET /status; overrides status.addr.
        #[arg(long)]
        status_addr: Option<String>,
        /// Turn mDNS discovery off.
        #[arg(long)]
        no_mdns: bool,
    },
}

/// Runs a parsed command line; errors are printed with their causes.
pub fn main(cli: Cli) -> ExitCode {
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init { home, force } => {
            let peer = daemon::init(&home, force)?;
            println!("initialised {} (peer id {peer})", home.display());
            Ok(())
        }
        Command::Id { home } => {
            println!("{}", daemon::peer_id(&home)?);
            Ok(())
        }
        Command::Gc { home } => {
            let report = daemon::gc(&home)?;
            println!(
                "removed {} blocks ({} bytes), dropped {} expired pins, kept {} blocks",
                report.blocks_removed, report.bytes_freed, report.pins_expired, report.blocks_kept
            );
            Ok(())
        }
        Command::Run {
            home,
            listen,
            bootstrap,
            status_addr,
            no_mdns,
        } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(daemon::run(
                &home,
                Overrides {
                    listen,
                    bootstrap,
                    status_addr,
                    no_mdns,
                },
            ))
        }
    }
}

/// Runs `future` on a fresh multi-threaded runtime and turns its result into
/// an exit code, printing the error chain. Every shoal binary ends here.
pub fn block_on(future: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; RUST_LOG filters (default `info` for shoal, `warn` else).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,shoal=info,shoal_node=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
