//! IPFS end to end with real node processes: a job's output published to
//! IPFS becomes the input directory of a second, sharded job, which
//! publishes to IPFS too; `shoal get` then fetches every shard over Bitswap
//! and verifies it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_requester::model::{JobState, Manifest};
use shoal_testnet::demo::{post_job, wait_for_job};
use shoal_testnet::{Options, Testnet, files_under, shoal_cli};

fn options() -> Options {
    let mut options = Options::new(PathBuf::from(env!("CARGO_BIN_EXE_shoal-testnet")));
    options.converge_timeout = Duration::from_secs(30);
    options.configure = Box::new(|_, config| config.publishers.ipfs.enabled = true);
    options
}

fn spec(name: &str, script: &str, inputs: &str, batch: u32) -> String {
    format!(
        r#"name: {name}
executor:
  type: shell
  command: ["sh", "-c", {script:?}]
inputs: {inputs}
sharding: {{batch_size: {batch}}}
resources: {{cpu: 1, timeout: 120s}}
publish: [{{ipfs: {{}}}}]
"#
    )
}

async fn manifest(api: &str, id: &str) -> Manifest {
    reqwest::get(format!("{api}/jobs/{id}/results"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sharded_job_over_an_ipfs_directory_publishes_to_ipfs_and_shoal_get_verifies_every_shard()
{
    let mut net = Testnet::start(3, options()).await.unwrap();
    let api = net.start_requester(&[]).await.unwrap();
    let http = reqwest::Client::new();

    // Job 1 makes a directory of 12 files (two levels) and publishes it.
    let make = r#"mkdir -p "$SHOAL_OUTPUT/more"; for i in 0 1 2 3 4 5 6 7; do echo "doc $i $(seq 1 $i)" > "$SHOAL_OUTPUT/doc$i.txt"; done; for i in 8 9 10 11; do head -c 300000 /dev/urandom > "$SHOAL_OUTPUT/more/blob$i.bin"; done"#;
    let job1 = post_job(
        &http,
        &api,
        spec("make-dir", make, "{inline: [{name: seed, content: x}]}", 1),
    )
    .await
    .unwrap();
    let done = wait_for_job(&http, &api, &job1.id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    let dir_cid = manifest(&api, &job1.id).await.shards[0]
        .cid
        .clone()
        .unwrap();

    // Job 2 reads that directory by CID alone: providers come from the DHT.
    let copy = r#"cd "$SHOAL_INPUTS" && find . -type f | while read f; do mkdir -p "$SHOAL_OUTPUT/$(dirname "$f")"; cp "$f" "$SHOAL_OUTPUT/$f"; done"#;
    let inputs = format!("{{ipfs: {{cid: {dir_cid}}}}}");
    let job2 = post_job(&http, &api, spec("use-dir", copy, &inputs, 3))
        .await
        .unwrap();
    assert_eq!(job2.shards.len(), 4, "12 files in batches of 3");
    let done = wait_for_job(&http, &api, &job2.id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    let m = manifest(&api, &job2.id).await;
    for shard in &m.shards {
        let l = &shard.locations[0];
        assert_eq!(l.url, format!("ipfs://{}", shard.cid.as_deref().unwrap()));
        assert!(!l.providers.is_empty(), "provider hints are recorded");
    }

    // `shoal get` (a separate process, its own libp2p peer) fetches every
    // shard over Bitswap and verifies it.
    let out = tempfile::tempdir().unwrap();
    let cli = shoal(&api)
        .args(["get", &job2.id, "-o"])
        .arg(out.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout).into_owned();
    assert!(
        cli.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(text.contains("4 of 4 shards verified"), "{text}");

    // Every input file was processed exactly once, byte for byte: compare
    // with job 1's directory, fetched the same way.
    let original = tempfile::tempdir().unwrap();
    let cli = shoal(&api)
        .args(["get", &job1.id, "-o"])
        .arg(original.path())
        .output()
        .unwrap();
    assert!(cli.status.success());
    let read_all = |root: &Path| -> BTreeMap<String, Vec<u8>> {
        let mut map = BTreeMap::new();
        for shard_dir in std::fs::read_dir(root).unwrap().flatten() {
            for f in files_under(&shard_dir.path()) {
                let rel = f
                    .strip_prefix(shard_dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let previous = map.insert(rel.clone(), std::fs::read(&f).unwrap());
                assert!(previous.is_none(), "{rel} appears in two shards");
            }
        }
        map
    };
    let want = read_all(original.path());
    assert_eq!(want.len(), 12);
    assert_eq!(read_all(out.path()), want);

    // Without provider hints, the fetcher finds providers in the DHT it
    // joins through the requester (as `shoal get` does).
    let mut unhinted = m.clone();
    for shard in &mut unhinted.shards {
        for l in &mut shard.locations {
            l.providers.clear();
        }
    }
    let status: serde_json::Value = reqwest::get(format!("{api}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requester = status["peer_id"].as_str().unwrap().to_string();
    let fetcher = shoal_requester::get::Fetcher {
        bootstrap: status["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}/p2p/{requester}", a.as_str().unwrap()))
            .collect(),
        ..Default::default()
    };
    let via_dht = tempfile::tempdir().unwrap();
    let results =
        shoal_requester::get::get_job(&fetcher, &unhinted, via_dht.path(), None, |_, _| {})
            .await
            .unwrap();
    for (shard, outcome) in results {
        outcome.unwrap_or_else(|e| panic!("shard {shard} via the DHT: {e}"));
    }
    assert_eq!(read_all(via_dht.path()), want);

    // `--shard` fetches one shard only, here through the trustless gateway
    // of the node that published it.
    let shard = &m.shards[1];
    let publisher = net
        .nodes
        .iter()
        .find(|n| Some(n.run.peer_id.as_str()) == shard.node.as_deref())
        .expect("a testnet node published shard 1");
    let one = tempfile::tempdir().unwrap();
    let cli = shoal(&api)
        .args(["get", &job2.id, "--shard", "1"])
        .args([
            "--ipfs-gateway",
            publisher.status_url().trim_end_matches("/status"),
            "-o",
        ])
        .arg(one.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout).into_owned();
    assert!(
        cli.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(text.contains("shard 1: verified, from ipfs://"), "{text}");
    assert!(text.contains("1 of 1 shards verified"), "{text}");
    assert_eq!(std::fs::read_dir(one.path()).unwrap().count(), 1);

    // With that node gone, its shards fail with errors naming shard and
    // location, and every other shard still comes down verified.
    let gone = publisher.run.peer_id.clone();
    let lost: Vec<u32> = m
        .shards
        .iter()
        .filter(|s| s.node.as_deref() == Some(gone.as_str()))
        .map(|s| s.shard)
        .collect();
    let index = net
        .nodes
        .iter()
        .position(|n| n.run.peer_id == gone)
        .unwrap();
    net.nodes[index]
        .signal(nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    net.nodes[index].wait().await.unwrap();
    let partial = tempfile::tempdir().unwrap();
    let cli = shoal(&api)
        .args(["get", &job2.id, "-o"])
        .arg(partial.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout).into_owned();
    let errors = String::from_utf8_lossy(&cli.stderr).into_owned();
    assert!(!cli.status.success(), "{text}");
    assert!(
        text.contains(&format!("{} of 4 shards verified", 4 - lost.len())),
        "{text}{errors}"
    );
    for shard in &lost {
        let cid = m.shards[*shard as usize].cid.clone().unwrap();
        assert!(
            errors.contains(&format!("shard {shard}: ipfs://{cid}")),
            "the error should name shard {shard} and its location: {errors}"
        );
        assert!(!partial.path().join(shard.to_string()).exists());
    }
    net.stop().await.unwrap();
}

/// The `shoal` CLI, pointed at `api`.
fn shoal(api: &str) -> std::process::Command {
    shoal_cli(Path::new(env!("CARGO_BIN_EXE_shoal-testnet")), api)
}
