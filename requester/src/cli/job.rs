//! `shoal job ...` and `shoal node ...`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;
use shoal_node::protocol::membership::NodeInfo;

use super::Format;
use super::client::Client;
use crate::model::{JobState, JobSummary, JobView, Manifest, ShardState};

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job spec (YAML); with --wait, follow it to the end.
    Run {
        spec: PathBuf,
        #[arg(long)]
        wait: bool,
    },
    /// List jobs, newest first.
    List,
    /// Show a job and every shard.
    Describe { id: String },
    /// Show a job's manifest: where each shard's output was published.
    Results { id: String },
    /// Cancel a job; running shards are stopped.
    Cancel { id: String },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List live members as the requester sees them.
    List,
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(client: &Client, format: Format, command: JobCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobCommand::Run { spec, wait } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("cannot read job spec {}", spec.display()))?;
            let view: JobView = client
                .post("/jobs", text)
                .await
                .with_context(|| format!("job spec {} rejected", spec.display()))?;
            if !wait {
                match format {
                    Format::Json => print_json(&view)?,
                    Format::Text => println!("{}", view.id),
                }
                return Ok(ExitCode::SUCCESS);
            }
            if format == Format::Text {
                println!("job {} submitted: {} shards", view.id, view.shards.len());
            }
            let view = follow(client, &view.id, format).await?;
            match format {
                Format::Json => print_json(&view)?,
                Format::Text => print_describe(&view),
            }
            Ok(exit_for(&view))
        }
        JobCommand::List => {
            let jobs: Vec<JobSummary> = client.get("/jobs").await?;
            match format {
                Format::Json => print_json(&jobs)?,
                Format::Text => {
                    println!(
                        "{:<22} {:<20} {:<10} {:>7}  progress",
                        "ID", "NAME", "STATE", "SHARDS"
                    );
                    for j in jobs {
                        println!(
                            "{:<22} {:<20} {:<10} {:>7}  {}",
                            j.id,
                            j.name,
                            state_name(j.state),
                            j.shard_count,
                            counts_line(&j.counts)
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Describe { id } => {
            let view: JobView = client.get(&format!("/jobs/{id}")).await?;
            match format {
                Format::Json => print_json(&view)?,
                Format::Text => print_describe(&view),
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Results { id } => {
            let manifest: Manifest = client.get(&format!("/jobs/{id}/results")).await?;
            match format {
                Format::Json => print_json(&manifest)?,
                Format::Text => print_manifest(&manifest),
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Cancel { id } => {
            let view: JobView = client
                .post(&format!("/jobs/{id}/cancel"), String::new())
                .await?;
            match format {
                Format::Json => print_json(&view)?,
                Format::Text => println!("cancelling {}", view.id),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn run_node(
    client: &Client,
    format: Format,
    command: NodeCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        NodeCommand::List => {
            let nodes: Vec<NodeInfo> = client.get("/nodes").await?;
            match format {
                Format::Json => print_json(&nodes)?,
                Format::Text => {
                    println!(
                        "{:<54} {:<10} {:>5} {:>5}  executors / publishers",
                        "PEER ID", "ROLES", "SLOTS", "FREE"
                    );
                    for n in nodes {
                        let roles: Vec<String> = n
                            .roles
                            .iter()
                            .map(|r| format!("{r:?}").to_lowercase())
                            .collect();
                        println!(
                            "{:<54} {:<10} {:>5} {:>5}  {} / {}",
                            n.peer_id,
                            roles.join(","),
                            n.capacity.slots,
                            n.free_slots,
                            n.executors.join(","),
                            n.publishers.join(",")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Polls the job until it finishes, showing progress.
pub async fn follow(client: &Client, id: &str, format: Format) -> anyhow::Result<JobView> {
    let tty = std::io::stderr().is_terminal() && format == Format::Text;
    let bar = tty.then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} published  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut last = String::new();
    loop {
        let view: JobView = client.get(&format!("/jobs/{id}")).await?;
        let line = counts_line(&view.counts);
        if let Some(bar) = &bar {
            bar.set_length(view.shards.len() as u64);
            bar.set_position(u64::from(
                view.counts
                    .get(&ShardState::Published)
                    .copied()
                    .unwrap_or(0),
            ));
            bar.set_message(line.clone());
        } else if line != last && format == Format::Text {
            eprintln!("{}: {line}", state_name(view.state));
        }
        last = line;
        if view.state != JobState::Running {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Ok(view);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Non-zero unless every shard was published.
pub fn exit_for(view: &JobView) -> ExitCode {
    if view.state == JobState::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn state_name<T: Serialize>(state: T) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn counts_line(counts: &std::collections::BTreeMap<ShardState, u32>) -> String {
    counts
        .iter()
        .map(|(state, n)| format!("{} {n}", state_name(*state)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

/// Prints a job and its shards as text.
pub fn print_describe(view: &JobView) {
    println!(
        "job {} ({}): {}",
        view.id,
        view.name,
        state_name(view.state)
    );
    println!("shards: {}", counts_line(&view.counts));
    for d in &view.disagreements {
        println!(
            "outvoted: shard {} node {} cid {} (majority {})",
            d.shard, d.node, d.cid, d.majority_cid
        );
    }
    println!(
        "{:>5} {:<10} {:<8} {:>4} {:>4}  cid / location / reasons",
        "SHARD", "STATE", "NODE", "BIDS", "TRY"
    );
    for s in &view.shards {
        println!(
            "{:>5} {:<10} {:<8} {:>4} {:>4}  {}",
            s.index,
            state_name(s.state),
            s.node.as_deref().map(short).unwrap_or("-"),
            s.bid_requests_sent,
            s.attempts,
            s.cid.as_deref().unwrap_or("-")
        );
        for l in &s.locations {
            println!("{:>38}{}", "", l.url);
        }
        if s.state == ShardState::Failed {
            for r in &s.reasons {
                println!("{:>38}reason: {r}", "");
            }
        }
    }
}

/// Prints a manifest as text.
pub fn print_manifest(m: &Manifest) {
    println!("job {}: {}", m.job, state_name(m.state));
    println!("{:>5}  {:<8}  {:<60}  location", "SHARD", "NODE", "CID");
    for s in &m.shards {
        let locations: Vec<&str> = s.locations.iter().map(|l| l.url.as_str()).collect();
        println!(
            "{:>5}  {:<8}  {:<60}  {}",
            s.shard,
            s.node.as_deref().map(short).unwrap_or("-"),
            s.cid.as_deref().unwrap_or("-"),
            if locations.is_empty() {
                "-".to_owned()
            } else {
                locations.join(" ")
            }
        );
    }
}
