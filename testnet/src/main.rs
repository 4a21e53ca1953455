//! `shoal-testnet`: a whole shoal network on one machine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shoal_testnet::{NODE_SUBCOMMAND, Options, SHOAL_SUBCOMMAND, Testnet, demo};

/// Run a local multi-node shoal network.
#[derive(Debug, Parser)]
#[command(name = "shoal-testnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start N nodes on 127.0.0.1 and keep them running until Ctrl-C.
    Up {
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Keep node homes here instead of a temp dir (kept after exit).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seconds to wait for every node to see every other.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Also start a local S3 API server (moto) and give every node
        /// its endpoint and credentials.
        #[arg(long)]
        s3: bool,
        /// Enable every node's IPFS publisher (Bitswap + gateway).
        #[arg(long)]
        ipfs: bool,
    },
    /// Start a network, run a sharded word-count job, print where every
    /// shard was published, verify every output, and shut down.
    Demo {
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        #[arg(long, default_value_t = 20)]
        shards: usize,
        /// Keep node homes here instead of a temp dir (kept after exit).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Publish to a local S3 API server (moto) instead of each node's
        /// local directory, then list and fetch back what was published.
        #[arg(long, conflicts_with = "ipfs")]
        s3: bool,
        /// Publish into the nodes' IPFS block stores (served over Bitswap),
        /// then fetch every shard back over Bitswap, verified.
        #[arg(long)]
        ipfs: bool,
    },
    /// Time a job of many trivial shards: submit -> all awarded -> all published.
    Bench {
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        #[arg(long, default_value_t = 10_000)]
        shards: usize,
    },
}

/// Bucket the testnet creates on its S3 server.
const DEMO_BUCKET: &str = "shoal-demo";

/// Starts moto, creates the demo bucket, and points every node at it.
async fn start_s3(options: &mut Options) -> anyhow::Result<shoal_testnet::s3::MotoServer> {
    let server = shoal_testnet::s3::MotoServer::start(&[]).await?;
    let client = shoal_testnet::s3::client(&server.endpoint).await;
    shoal_testnet::s3::create_bucket(&client, DEMO_BUCKET).await?;
    options.env.extend(shoal_testnet::s3::env());
    let endpoint = server.endpoint.clone();
    options.configure = Box::new(move |_, config| {
        shoal_testnet::s3::configure_node(config, &endpoint, DEMO_BUCKET);
    });
    Ok(server)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(NODE_SUBCOMMAND) {
        args.remove(1);
        args[0] = "shoal-node".into();
        return shoal_node::cli::main(shoal_node::cli::Cli::parse_from(args));
    }
    if args.get(1).map(String::as_str) == Some(SHOAL_SUBCOMMAND) {
        args.remove(1);
        args[0] = "shoal".into();
        return shoal_requester::cli::main(shoal_requester::cli::Cli::parse_from(args));
    }
    let cli = Cli::parse();
    shoal_node::cli::block_on(async move { run(cli).await.map(|()| ExitCode::SUCCESS) })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up {
            nodes,
            dir,
            timeout,
            s3,
            ipfs,
        } => {
            let exe = std::env::current_exe().context("cannot find this binary")?;
            let mut options = Options::new(exe);
            options.dir = dir;
            options.converge_timeout = std::time::Duration::from_secs(timeout);
            let server = if s3 {
                Some(start_s3(&mut options).await?)
            } else {
                None
            };
            if ipfs {
                let s3_configure = std::mem::replace(&mut options.configure, Box::new(|_, _| {}));
                options.configure = Box::new(move |i, config| {
                    s3_configure(i, config);
                    config.publishers.ipfs.enabled = true;
                });
            }
            let mut net = Testnet::start(nodes, options).await?;
            let api = net.start_requester(&[]).await?;
            if let Some(server) = &server {
                println!("s3  {}  bucket {DEMO_BUCKET}", server.endpoint);
                for (k, v) in shoal_testnet::s3::env() {
                    println!("export {k}={v}");
                }
                println!("export SHOAL_S3_ENDPOINT={}", server.endpoint);
            }
            for node in &net.nodes {
                println!(
                    "{}  {}  {}  {}",
                    node.name,
                    node.run.peer_id,
                    node.tcp_multiaddr().unwrap_or_default(),
                    node.status_url()
                );
            }
            println!("requester  {api}");
            println!("export SHOAL_API={api}");
            println!("ready: {} nodes", net.nodes.len());
            shoal_node::daemon::wait_for_signal().await?;
            eprintln!("stopping {} nodes", net.nodes.len());
            net.stop().await
        }
        Command::Bench { nodes, shards } => {
            let exe = std::env::current_exe().context("cannot find this binary")?;
            let mut options = Options::new(exe);
            options.configure = Box::new(|_, config| {
                config.compute.heartbeat_ms = 2000;
                config.compute.max_queue = 4096;
            });
            let mut net = Testnet::start(nodes, options).await?;
            let api = net.start_requester(&["--heartbeat-timeout", "30"]).await?;
            let result = demo::bench(&net, &api, shards).await;
            net.stop().await?;
            let r = result?;
            println!(
                "| nodes | shards | submit (list + shard + store) | all awarded | all published | bid requests / shard | job |"
            );
            println!("|---:|---:|---:|---:|---:|---:|---|");
            println!(
                "| {nodes} | {} | {:.2} s | {:.2} s | {:.2} s | {:.2} | {:?} |",
                r.shards,
                r.submit.as_secs_f64(),
                r.all_awarded.as_secs_f64(),
                r.all_published.as_secs_f64(),
                r.bid_requests as f64 / r.shards.max(1) as f64,
                r.state
            );
            Ok(())
        }
        Command::Demo {
            nodes,
            shards,
            dir,
            s3,
            ipfs,
        } => {
            let exe = std::env::current_exe().context("cannot find this binary")?;
            let mut options = Options::new(exe);
            options.dir = dir;
            let (server, publish) = if ipfs {
                options.configure = Box::new(|_, config| config.publishers.ipfs.enabled = true);
                (None, demo::Publish::Ipfs)
            } else if s3 {
                let server = start_s3(&mut options).await?;
                println!("S3 API server (moto) on {}", server.endpoint);
                let publish = demo::Publish::S3 {
                    endpoint: server.endpoint.clone(),
                    bucket: DEMO_BUCKET.into(),
                };
                (Some(server), publish)
            } else {
                (None, demo::Publish::Local)
            };
            println!("starting {nodes} nodes and a requester on 127.0.0.1 ...");
            let mut net = Testnet::start(nodes, options).await?;
            let api = net.start_requester(&[]).await?;
            println!("network ready: {nodes} nodes, requester API {api}");
            let result = demo::run(&net, &api, shards, &publish).await;
            if let Some(server) = server {
                server.stop().await;
            }
            net.stop().await?;
            let view = result?;
            if view.state != shoal_requester::model::JobState::Completed {
                anyhow::bail!("job {} ended {:?}: {:?}", view.id, view.state, view.counts);
            }
            println!(
                "demo complete: job {} published all {} shards",
                view.id,
                view.shards.len()
            );
            Ok(())
        }
    }
}
