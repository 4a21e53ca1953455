//! Multi-process job tests: real node processes and a real requester
//! process on 127.0.0.1, real sharded jobs, real publication.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use shoal_node::placement::{self, Candidate};
use shoal_requester::model::{JobState, JobView, ShardState};
use shoal_testnet::demo::{make_inputs, post_job, verify_locations, wait_for_job};
use shoal_testnet::{Options, Testnet};

fn options() -> Options {
    let mut options = Options::new(PathBuf::from(env!("CARGO_BIN_EXE_shoal-testnet")));
    options.converge_timeout = Duration::from_secs(30);
    options
}

/// `nodes` nodes, a requester started with `flags`, and `files` input files;
/// returns the network, the API URL and the inputs directory.
async fn network(
    nodes: usize,
    options: Options,
    flags: &[&str],
    files: usize,
) -> (Testnet, String, PathBuf) {
    let mut net = Testnet::start(nodes, options).await.unwrap();
    let api = net.start_requester(flags).await.unwrap();
    let inputs = net.root().join("inputs");
    make_inputs(&inputs, files).unwrap();
    (net, api, inputs)
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// A job over `n` generated files whose shell command is `script`.
fn spec(inputs: &Path, script: &str, extra: &str) -> String {
    format!(
        r#"name: test-job
executor:
  type: shell
  command: ["sh", "-c", {script:?}]
inputs:
  local: {{path: "{}"}}
sharding: {{glob: "*.txt", batch_size: 1}}
resources: {{cpu: 1, timeout: 60s}}
publish: [{{local: {{path: out}}}}]
{extra}
"#,
        inputs.display()
    )
}

const COUNT: &str =
    r#"for f in "$SHOAL_INPUTS"/*; do wc -c < "$f" > "$SHOAL_OUTPUT/$(basename "$f").n"; done"#;

async fn describe(api: &str, id: &str) -> JobView {
    http()
        .get(format!("{api}/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the job until `ready` holds (30 s at most) and returns that view.
async fn wait_for_view(
    api: &str,
    id: &str,
    what: &str,
    ready: impl Fn(&JobView) -> bool,
) -> JobView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = describe(api, id).await;
        if ready(&view) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn manifest(api: &str, id: &str) -> shoal_requester::model::Manifest {
    http()
        .get(format!("{api}/jobs/{id}/results"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Published shard directories for `job` across every node.
fn published_dirs(net: &Testnet, job: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for node in &net.nodes {
        let dir = node.home.join("published/out").join(job);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    out.push((node.run.peer_id.clone(), name));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_job_on_four_nodes_publishes_every_shard_matching_its_cid() {
    let mut net = Testnet::start(4, options()).await.unwrap();
    let api = net.start_requester(&[]).await.unwrap();
    let view = shoal_testnet::demo::run(&net, &api, 12, &shoal_testnet::demo::Publish::Local)
        .await
        .unwrap();
    assert_eq!(view.state, JobState::Completed, "{view:?}");
    assert_eq!(view.shards.len(), 12);
    for shard in &view.shards {
        assert_eq!(shard.state, ShardState::Published);
        assert!(shard.cid.is_some() && !shard.locations.is_empty());
    }
    net.stop().await.unwrap();
}

struct Ranked(Vec<u8>, f64);
impl Candidate for Ranked {
    fn id(&self) -> &[u8] {
        &self.0
    }
    fn weight(&self) -> f64 {
        self.1
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bid_requests_go_to_exactly_the_top_k_ranked_nodes() {
    let (net, api, inputs) = network(12, options(), &[], 16).await;
    let job = post_job(
        &http(),
        &api,
        spec(&inputs, COUNT, "placement: {bidders: 3}"),
    )
    .await
    .unwrap();
    let view = wait_for_job(&http(), &api, &job.id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(view.state, JobState::Completed);
    let members: Vec<Ranked> = net
        .nodes
        .iter()
        .map(|n| {
            let peer: shoal_node::libp2p::PeerId = n.run.peer_id.parse().unwrap();
            Ranked(peer.to_bytes(), 2.0) // every testnet node has 2 slots
        })
        .collect();
    for shard in &view.shards {
        let key = hex::decode(&shard.placement_key).unwrap();
        let top3: Vec<String> = placement::choose(&key, &members, 3, |_| true)
            .into_iter()
            .map(|m| {
                shoal_node::libp2p::PeerId::from_bytes(&m.0)
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            shard.bid_requests_sent, 3,
            "shard {} widened: {:?}",
            shard.index, shard.reasons
        );
        assert_eq!(shard.bidders_asked, top3, "shard {}", shard.index);
        assert_eq!(
            shard.node.as_ref(),
            Some(&top3[0]),
            "the best-ranked bidder wins"
        );
    }
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn shard_completes_on_another_node_when_its_node_is_killed() {
    let (mut net, api, inputs) = network(3, options(), &["--heartbeat-timeout", "2"], 1).await;
    // Long enough to be caught running, short enough to rerun.
    let script = format!("sleep 3; {COUNT}");
    let job = post_job(&http(), &api, spec(&inputs, &script, ""))
        .await
        .unwrap();
    let view = wait_for_view(&api, &job.id, "the shard runs", |v| {
        v.shards[0].state == ShardState::Running
    })
    .await;
    let victim = view.shards[0]
        .replicas
        .iter()
        .find(|r| r.is_active())
        .unwrap()
        .node
        .clone();
    let node = net
        .nodes
        .iter_mut()
        .find(|n| n.run.peer_id == victim)
        .unwrap();
    node.signal(Signal::SIGKILL).unwrap();
    node.wait().await.unwrap();
    let view = wait_for_job(&http(), &api, &job.id, Duration::from_secs(60))
        .await
        .unwrap();
    let shard = &view.shards[0];
    assert_eq!(view.state, JobState::Completed, "{view:?}");
    assert_ne!(shard.node.as_ref(), Some(&victim));
    assert!(shard.excluded.contains(&victim));
    assert!(shard.attempts >= 2);
    verify_locations(&manifest(&api, &job.id).await).unwrap();
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn requester_restart_mid_job_completes_and_publishes_nothing_twice() {
    let (mut net, api, inputs) = network(3, options(), &[], 8).await;
    let script = format!("sleep 1; {COUNT}");
    let job = post_job(&http(), &api, spec(&inputs, &script, ""))
        .await
        .unwrap();
    // Kill the requester hard while shards are in flight.
    wait_for_view(&api, &job.id, "a shard runs", |v| {
        v.shards.iter().any(|s| s.state == ShardState::Running)
    })
    .await;
    let requester = net.requester.as_mut().unwrap();
    requester.signal(Signal::SIGKILL).unwrap();
    requester.wait().await.unwrap();
    net.requester = None;
    let api = net.start_requester(&[]).await.unwrap();
    let view = wait_for_job(&http(), &api, &job.id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(view.state, JobState::Completed, "{view:?}");
    let published = published_dirs(&net, &job.id);
    let mut shards: Vec<&str> = published.iter().map(|(_, s)| s.as_str()).collect();
    shards.sort();
    let before = shards.len();
    shards.dedup();
    assert_eq!(
        before,
        shards.len(),
        "a shard was published twice: {published:?}"
    );
    assert_eq!(shards.len(), 8);
    verify_locations(&manifest(&api, &job.id).await).unwrap();
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn deterministic_verification_outvotes_a_corrupting_node() {
    let mut options = options();
    options.node_env = Box::new(|i| {
        if i == 1 {
            vec![("SHOAL_TEST_CORRUPT_OUTPUT".into(), "1".into())]
        } else {
            vec![]
        }
    });
    let (net, api, inputs) = network(3, options, &[], 4).await;
    let corrupt = net.nodes[1].run.peer_id.clone();
    let extra = "placement: {bidders: 3, replicas: 3}\nverify: deterministic";
    let job = post_job(&http(), &api, spec(&inputs, COUNT, extra))
        .await
        .unwrap();
    let view = wait_for_job(&http(), &api, &job.id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(view.state, JobState::Completed, "{view:?}");
    for shard in &view.shards {
        assert_ne!(shard.node.as_ref(), Some(&corrupt), "shard {}", shard.index);
        assert!(
            view.disagreements
                .iter()
                .any(|d| d.shard == shard.index && d.node == corrupt)
        );
    }
    assert!(
        published_dirs(&net, &job.id)
            .iter()
            .all(|(node, _)| node != &corrupt),
        "the outvoted node published"
    );
    verify_locations(&manifest(&api, &job.id).await).unwrap();
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_specs_are_rejected_naming_the_field() {
    let (net, api, inputs) = network(1, options(), &[], 1).await;
    let good = spec(&inputs, COUNT, "");
    let cases = [
        (good.replace("sharding:", "shardin:"), "shardin"),
        (
            good.replace("batch_size: 1", "batch_size: 0"),
            "sharding.batch_size",
        ),
        (
            good.clone() + "placement: {bidders: 2, replicas: 3}\n",
            "placement.replicas",
        ),
        (good.replace("path: out", "path: ../escape"), "publish"),
        (good.replace("path: out", "path: /abs/out"), "publish"),
        (
            good.replace(
                "resources: {cpu: 1, timeout: 60s}",
                "resources: {cpu: 1, timeout: 60s, gpu: 1}",
            ),
            "gpu",
        ),
    ];
    for (body, field) in cases {
        let response = http()
            .post(format!("{api}/jobs"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "case {field}");
        let text = response.text().await.unwrap();
        assert!(
            text.contains(field),
            "error for {field} does not name it: {text}"
        );
    }
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn job_no_node_will_run_fails_listing_the_decline_reasons() {
    let mut options = options();
    // Every node only takes work from some other requester.
    let stranger = shoal_node::libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
        .to_string();
    options.configure = Box::new(move |_, config| {
        config.compute.allow_requesters = vec![stranger.clone()];
    });
    let (net, api, inputs) = network(2, options, &[], 1).await;
    let job = post_job(&http(), &api, spec(&inputs, COUNT, ""))
        .await
        .unwrap();
    let view = wait_for_job(&http(), &api, &job.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(view.state, JobState::Failed);
    let shard = &view.shards[0];
    assert_eq!(shard.state, ShardState::Failed);
    let declines = shard
        .reasons
        .iter()
        .filter(|r| r.contains("declined") && r.contains("allow_requesters"))
        .count();
    assert_eq!(declines, 2, "{:?}", shard.reasons);
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_running_shards() {
    let (net, api, inputs) = network(2, options(), &[], 2).await;
    let job = post_job(&http(), &api, spec(&inputs, "sleep 300", ""))
        .await
        .unwrap();
    wait_for_view(&api, &job.id, "every shard runs", |v| {
        v.shards.iter().all(|s| s.state == ShardState::Running)
    })
    .await;
    let response = http()
        .post(format!("{api}/jobs/{}/cancel", job.id))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let view = wait_for_job(&http(), &api, &job.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(view.state, JobState::Cancelled);
    assert!(view.shards.iter().all(|s| s.state == ShardState::Cancelled));
    // The nodes killed the executors and removed the shards' work dirs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: usize = net
            .nodes
            .iter()
            .map(|n| {
                std::fs::read_dir(n.home.join("work").join(&job.id))
                    .map(|d| d.count())
                    .unwrap_or(0)
            })
            .sum();
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} work dirs left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_job_run_wait_prints_the_job_as_json_and_exits_zero() {
    let (net, api, inputs) = network(2, options(), &[], 3).await;
    let spec_path = net.root().join("job.yaml");
    std::fs::write(&spec_path, spec(&inputs, COUNT, "")).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal-testnet"))
        .args([
            "__shoal", "--api", &api, "--output", "json", "job", "run", "--wait",
        ])
        .arg(&spec_path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["state"], "completed");
    let shards = json["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    for s in shards {
        for field in [
            "index",
            "state",
            "node",
            "cid",
            "locations",
            "bid_requests_sent",
            "attempts",
            "reasons",
        ] {
            assert!(s.get(field).is_some(), "missing {field}");
        }
        assert_eq!(s["state"], "published");
    }
    net.stop().await.unwrap();
}
