//! `shoal-testnet demo`: a whole sharded job on a local network, end to end.
//!
//! Makes sample text files, runs a word count per file with the shell
//! executor and the local publisher, prints the manifest and a tally per
//! node, and re-verifies every published output against its CID.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use shoal_publishers::content::{self, Cid};
use shoal_requester::model::{JobState, JobView, Manifest};

use crate::Testnet;

/// Writes `count` sample documents into `dir`.
pub fn make_inputs(dir: &Path, count: usize) -> anyhow::Result<()> {
    const WORDS: &[&str] = &[
        "shoal", "shard", "node", "peer", "cid", "publish", "verify", "bid", "award", "fish",
    ];
    std::fs::create_dir_all(dir)?;
    for i in 0..count {
        let words = 20 + (i * 7919) % 200;
        let text: Vec<&str> = (0..words)
            .map(|w| WORDS[(w * 31 + i) % WORDS.len()])
            .collect();
        std::fs::write(dir.join(format!("doc-{i:04}.txt")), text.join(" ") + "\n")?;
    }
    Ok(())
}

/// Where the demo publishes.
#[derive(Debug, Clone)]
pub enum Publish {
    /// Each node's local publish root.
    Local,
    /// A bucket on a local S3 API server at `endpoint`.
    S3 { endpoint: String, bucket: String },
    /// Each node's block store, served over Bitswap.
    Ipfs,
}

impl Publish {
    fn target(&self) -> String {
        match self {
            Publish::Local => "{local: {path: demo}}".into(),
            Publish::Ipfs => "{ipfs: {}}".into(),
            Publish::S3 { bucket, .. } => {
                format!("{{s3: {{bucket: {bucket}, prefix: \"wordcount/{{job}}/{{shard}}\"}}}}")
            }
        }
    }
}

/// The demo job: count the words of every input file.
pub fn spec(inputs: &Path, shards: usize) -> String {
    spec_to(inputs, shards, &Publish::Local)
}

/// The demo job, publishing to `publish`.
pub fn spec_to(inputs: &Path, shards: usize, publish: &Publish) -> String {
    format!(
        r#"name: wordcount-demo
executor:
  type: shell
  command: ["sh", "-c", "for f in \"$SHOAL_INPUTS\"/*; do wc -w < \"$f\" > \"$SHOAL_OUTPUT/$(basename \"$f\").words\"; done"]
inputs:
  local: {{path: "{}"}}
sharding: {{glob: "*.txt", batch_size: 1}}
resources: {{cpu: 1, timeout: 60s}}
placement: {{bidders: 3, replicas: 1}}
verify: none
publish: [{}]
# {shards} shards
"#,
        inputs.display(),
        publish.target()
    )
}

/// Runs the demo on `net` (which has a requester); returns the job.
pub async fn run(
    net: &Testnet,
    api: &str,
    shards: usize,
    publish: &Publish,
) -> anyhow::Result<JobView> {
    let inputs = net.root().join("inputs");
    make_inputs(&inputs, shards)?;
    let http = reqwest::Client::new();
    let view: JobView = post_job(&http, api, spec_to(&inputs, shards, publish)).await?;
    println!(
        "submitted job {} with {} shards",
        view.id,
        view.shards.len()
    );
    let view = wait_for_job(&http, api, &view.id, Duration::from_secs(600)).await?;
    let manifest: Manifest = http
        .get(format!("{api}/jobs/{}/results", view.id))
        .send()
        .await?
        .json()
        .await?;
    print_manifest(net, &manifest);
    match publish {
        Publish::Local => verify_locations(&manifest)?,
        Publish::S3 { endpoint, bucket } => {
            list_published(endpoint, bucket, &format!("wordcount/{}/", view.id)).await?;
            fetch_and_verify(net, &manifest, endpoint).await?;
        }
        Publish::Ipfs => {
            let fetcher = shoal_requester::get::Fetcher::default();
            fetch_with(net, &manifest, &fetcher, "the nodes over Bitswap").await?;
        }
    }
    Ok(view)
}

/// Submits a spec; errors carry the API's message.
pub async fn post_job(http: &reqwest::Client, api: &str, spec: String) -> anyhow::Result<JobView> {
    let response = http.post(format!("{api}/jobs")).body(spec).send().await?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        bail!("job rejected ({status}): {body}");
    }
    serde_json::from_str(&body).context("unexpected answer to job submission")
}

/// Polls until the job is no longer running.
pub async fn wait_for_job(
    http: &reqwest::Client,
    api: &str,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<JobView> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let view: JobView = http
            .get(format!("{api}/jobs/{id}"))
            .send()
            .await?
            .json()
            .await?;
        if view.state != JobState::Running {
            return Ok(view);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "job {id} still running after {timeout:?}: {:?}",
                view.counts
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_manifest(net: &Testnet, manifest: &Manifest) {
    let names: BTreeMap<&str, &str> = net
        .nodes
        .iter()
        .map(|n| (n.run.peer_id.as_str(), n.name.as_str()))
        .collect();
    println!();
    println!("manifest of job {} ({:?}):", manifest.job, manifest.state);
    println!("{:>5}  {:<7}  {:<59}  location", "shard", "node", "cid");
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &manifest.shards {
        let node = s
            .node
            .as_deref()
            .map(|p| names.get(p).copied().unwrap_or(p))
            .unwrap_or("-");
        *tally.entry(node).or_default() += 1;
        let location = s.locations.first().map(|l| l.url.as_str()).unwrap_or("-");
        println!(
            "{:>5}  {:<7}  {:<59}  {}",
            s.shard,
            node,
            s.cid.as_deref().unwrap_or("-"),
            location
        );
    }
    println!();
    println!("shards per node:");
    for (node, n) in tally {
        println!("  {node}: {n}");
    }
}

/// Re-hashes every published local output and compares it with its CID.
pub fn verify_locations(manifest: &Manifest) -> anyhow::Result<()> {
    let mut verified = 0;
    for s in &manifest.shards {
        let cid: Cid = s
            .cid
            .as_deref()
            .with_context(|| format!("shard {} has no CID", s.shard))?
            .parse()
            .with_context(|| format!("shard {} has a malformed CID", s.shard))?;
        if s.locations.is_empty() {
            bail!("shard {} has no published location", s.shard);
        }
        for l in &s.locations {
            let path = l
                .url
                .strip_prefix("file://")
                .with_context(|| format!("shard {}: not a local location: {}", s.shard, l.url))?;
            content::verify_path(Path::new(path), &cid)
                .with_context(|| format!("shard {}: {} does not match {cid}", s.shard, l.url))?;
            verified += 1;
        }
    }
    println!(
        "verified: {verified} published outputs match their CIDs ({} shards)",
        manifest.shards.len()
    );
    Ok(())
}

/// Prints what the nodes wrote to the bucket.
async fn list_published(endpoint: &str, bucket: &str, prefix: &str) -> anyhow::Result<()> {
    let client = crate::s3::client(endpoint).await;
    let objects = shoal_publishers::s3::list_objects(&client, bucket, prefix).await?;
    let bytes: u64 = objects.iter().map(|o| o.size).sum();
    let manifests = objects
        .iter()
        .filter(|o| o.key.ends_with(shoal_publishers::s3::MANIFEST))
        .count();
    println!();
    println!(
        "s3://{bucket}/{prefix}: {} objects, {bytes} bytes, {manifests} shard manifests (_shoal.json)",
        objects.len()
    );
    for o in objects.iter().take(6) {
        println!("  s3://{bucket}/{}  {} bytes", o.key, o.size);
    }
    if objects.len() > 6 {
        println!("  ... and {} more", objects.len() - 6);
    }
    Ok(())
}

/// Fetches every shard back from its published location (as `shoal get`
/// does) and checks it against its CID.
async fn fetch_and_verify(
    net: &Testnet,
    manifest: &Manifest,
    endpoint: &str,
) -> anyhow::Result<()> {
    let fetcher = shoal_requester::get::Fetcher {
        s3: crate::s3::settings(endpoint),
        ..Default::default()
    };
    fetch_with(net, manifest, &fetcher, "S3").await
}

/// Fetches every shard with `fetcher` into `<root>/fetched` and checks it
/// against its CID.
async fn fetch_with(
    net: &Testnet,
    manifest: &Manifest,
    fetcher: &shoal_requester::get::Fetcher,
    from: &str,
) -> anyhow::Result<()> {
    let dir = net.root().join("fetched");
    let results = shoal_requester::get::get_job(fetcher, manifest, &dir, None, |_, _| {})
        .await
        .map_err(anyhow::Error::msg)?;
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().cloned())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} shards failed verification: {}",
            failed.len(),
            failed.join("; ")
        );
    }
    println!(
        "verified: fetched all {} shards back from {from}; every byte matches its CID",
        results.len()
    );
    Ok(())
}

/// Figures of one `bench` run.
#[derive(Debug)]
pub struct BenchReport {
    pub shards: usize,
    pub submit: Duration,
    pub all_awarded: Duration,
    pub all_published: Duration,
    pub bid_requests: u64,
    pub state: JobState,
}

/// Submits a job of `shards` trivial shards and times it to all awarded and
/// to all published.
pub async fn bench(net: &Testnet, api: &str, shards: usize) -> anyhow::Result<BenchReport> {
    let inputs = net.root().join("bench-inputs");
    std::fs::create_dir_all(&inputs)?;
    for i in 0..shards {
        std::fs::write(inputs.join(format!("s{i:06}.txt")), format!("{i}\n"))?;
    }
    let spec = format!(
        r#"name: bench
executor: {{type: shell, command: ["true"]}}
inputs: {{local: {{path: "{}"}}}}
sharding: {{glob: "*.txt", batch_size: 1}}
resources: {{cpu: 1, timeout: 60s}}
publish: [{{local: {{path: bench}}}}]
"#,
        inputs.display()
    );
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    let view = post_job(&http, api, spec).await?;
    let submit = started.elapsed();
    let mut all_awarded = None;
    let deadline = started + Duration::from_secs(1800);
    loop {
        let jobs: Vec<shoal_requester::model::JobSummary> =
            http.get(format!("{api}/jobs")).send().await?.json().await?;
        let job = jobs
            .iter()
            .find(|j| j.id == view.id)
            .context("job vanished")?;
        use shoal_requester::model::ShardState::{Bidding, Pending};
        let waiting: u32 = [Pending, Bidding]
            .iter()
            .map(|s| job.counts.get(s).copied().unwrap_or(0))
            .sum();
        if all_awarded.is_none() && waiting == 0 {
            all_awarded = Some(started.elapsed());
        }
        if job.state != JobState::Running {
            let all_published = started.elapsed();
            let view: JobView = http
                .get(format!("{api}/jobs/{}", view.id))
                .send()
                .await?
                .json()
                .await?;
            return Ok(BenchReport {
                shards,
                submit,
                all_awarded: all_awarded.unwrap_or(all_published),
                all_published,
                bid_requests: view
                    .shards
                    .iter()
                    .map(|s| u64::from(s.bid_requests_sent))
                    .sum(),
                state: view.state,
            });
        }
        if std::time::Instant::now() > deadline {
            bail!("bench job still running after 30 minutes: {:?}", job.counts);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
