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
    /// Fetch a job's shard outputs from where they were published, verify
    /// each against its CID, and write them to DIR/<shard index>/.
    Get {
        /// Job id.
        job: String,
        /// Directory to write shards into.
        #[arg(short = 'o', long = "out", default_value = ".")]
        out: PathBuf,
        /// Only this shard.
        #[arg(long)]
        shard: Option<u32>,
        /// S3-compatible endpoint for s3:// locations (else the AWS chain's,
        /// e.g. AWS_ENDPOINT_URL); implies path-style addressing.
        #[arg(long, env = "SHOAL_S3_ENDPOINT")]
        s3_endpoint: Option<String>,
        /// Fetch ipfs:// locations through this trustless gateway (e.g. a
        /// node's status URL) instead of over Bitswap from their providers.
        #[arg(long, env = "SHOAL_IPFS_GATEWAY")]
        ipfs_gateway: Option<String>,
    },
    /// Print the root CID of a file or directory, exactly as `ipfs add` does.
    Cid(cli_content::CidArgs),
    /// Pack a file or directory into a CARv1; print root CID and piece CID.
    Car(cli_content::CarArgs),
    /// Check a path or a .car file against a CID.
    Verify(cli_content::VerifyArgs),
}

/// The requester's libp2p addresses (`.../p2p/<id>`), from its `/status`;
/// empty when it does not say.
async fn requester_addrs(client: &client::Client) -> Vec<String> {
    let Ok(status) = client.get::<serde_json::Value>("/status").await else {
        return Vec::new();
    };
    let peer = status["peer_id"].as_str().unwrap_or_default();
    status["listen_addrs"]
        .as_array()
        .map(|addrs| {
            addrs
                .iter()
                .filter_map(|a| a.as_str())
                .filter(|_| !peer.is_empty())
                .map(|a| format!("{a}/p2p/{peer}"))
                .collect()
        })
        .unwrap_or_default()
}

async fn get(
    client: &client::Client,
    format: Format,
    job: &str,
    out: &std::path::Path,
    shard: Option<u32>,
    fetcher: &crate::get::Fetcher,
) -> anyhow::Result<ExitCode> {
    let manifest: crate::model::Manifest = client.get(&format!("/jobs/{job}/results")).await?;
    let results = crate::get::get_job(fetcher, &manifest, out, shard, |index, outcome| {
        if format == Format::Text {
            match outcome {
                Ok(crate::get::Outcome::Fetched { from }) => {
                    println!("shard {index}: verified, from {from}")
                }
                Ok(crate::get::Outcome::Present) => {
                    println!("shard {index}: already present and verified")
                }
                Err(e) => eprintln!("error: {e}"),
            }
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if format == Format::Json {
        let shards: Vec<serde_json::Value> = results
            .iter()
            .map(|(index, r)| match r {
                Ok(crate::get::Outcome::Fetched { from }) => {
                    serde_json::json!({"shard": index, "verified": true, "from": from})
                }
                Ok(crate::get::Outcome::Present) => {
                    serde_json::json!({"shard": index, "verified": true, "from": null})
                }
                Err(e) => serde_json::json!({"shard": index, "verified": false, "error": e}),
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"job": job, "dir": out, "shards": shards, "failed": failed})
        );
    } else {
        println!(
            "{} of {} shards verified into {}",
            results.len() - failed,
            results.len(),
            out.display()
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
        Command::Get {
            job,
            out,
            shard,
            s3_endpoint,
            ipfs_gateway,
        } => {
            let client = client::Client::new(&cli.api)?;
            let fetcher = crate::get::Fetcher {
                s3: shoal_publishers::s3::Settings {
                    force_path_style: s3_endpoint.is_some(),
                    endpoint_url: s3_endpoint,
                    ..Default::default()
                },
                ipfs_gateway,
                bootstrap: requester_addrs(&client).await,
            };
            get(&client, cli.output, &job, &out, shard, &fetcher).await
        }
        Command::Cid(args) => cli_content::run_cid(args).await.map(|()| ExitCode::SUCCESS),
        Command::Car(args) => cli_content::run_car(args).await.map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => cli_content::run_verify(args)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}
