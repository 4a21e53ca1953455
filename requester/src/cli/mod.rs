//! The `shoal` command line: parses, calls the requester API (or the
//! content library), prints. The binary is a thin wrapper over [`main`].

mod client;
mod job;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use shoal_node::libp2p::Multiaddr;

use crate::cli_content;
use crate::orchestrator::OrchestratorConfig;
use crate::service::{ServeOptions, serve};

/// shoal: sharded batch jobs on a network of compute nodes.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about)]
pub struct Cli {
    /// Requester API URL.
    #[arg(
        long,
        global = true,
        env = "SHOAL_API",
        default_value = "http://127.0.0.1:7070"
    )]
    pub api: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the requester service (API, job store, orchestration).
    Serve {
        #[arg(long)]
        home: PathBuf,
        /// HOST:PORT for the HTTP API.
        #[arg(
            long = "listen-api",
            visible_alias = "api-addr",
            default_value = "127.0.0.1:7070"
        )]
        api_addr: String,
        /// libp2p listen multiaddr (repeatable).
        #[arg(long, default_values_t = ["/ip4/0.0.0.0/tcp/0".parse::<Multiaddr>().expect("static")])]
        listen: Vec<Multiaddr>,
        /// Bootstrap multiaddr with /p2p/ID (repeatable).
        #[arg(long)]
        bootstrap: Vec<Multiaddr>,
        /// Turn mDNS discovery off.
        #[arg(long)]
        no_mdns: bool,
        /// Seconds without news after which a node loses its shard.
        #[arg(long, default_value_t = 10.0)]
        heartbeat_timeout: f64,
    },
    /// Submit and inspect jobs.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Inspect the network.
    #[command(subcommand)]
    Node(job::NodeCommand),
    /// Print the root CID of a file or directory, exactly as `ipfs add` does.
    Cid(cli_content::CidArgs),
    /// Pack a file or directory into a CARv1; print root CID and piece CID.
    Car(cli_content::CarArgs),
    /// Check a path or a .car file against a CID.
    Verify(cli_content::VerifyArgs),
}

/// Runs a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    shoal_node::cli::block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            home,
            api_addr,
            listen,
            bootstrap,
            no_mdns,
            heartbeat_timeout,
        } => {
            let orchestrator = OrchestratorConfig {
                heartbeat_timeout: Duration::from_secs_f64(heartbeat_timeout.max(0.1)),
                ..OrchestratorConfig::default()
            };
            serve(ServeOptions {
                home,
                api: api_addr,
                listen,
                bootstrap,
                mdns: !no_mdns,
                orchestrator,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Job(command) => {
            job::run(&client::Client::new(&cli.api)?, cli.output, command).await
        }
        Command::Node(command) => {
            job::run_node(&client::Client::new(&cli.api)?, cli.output, command).await
        }
        Command::Cid(args) => cli_content::run_cid(args).await.map(|()| ExitCode::SUCCESS),
        Command::Car(args) => cli_content::run_car(args).await.map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => cli_content::run_verify(args)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}
