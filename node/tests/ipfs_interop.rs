//! Interop with IPFS implementations we did not write:
//!
//! - Helia (JS) dials a shoal node and fetches a published output by CID
//!   over Bitswap (`tests/interop/helia-fetch.mjs`);
//! - `ipfs-car` reads the CAR the node's trustless gateway serves: the root
//!   in the header, and every block verified while unpacking.
//!
//! The npm packages come from `scripts/interop-setup` (`npm ci`); without
//! them these tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use shoal_node::daemon::{self, Overrides, RunningNode};
use shoal_node::ipfs::NodeHook;
use shoal_publishers::content::{Cid, Profile, import_path};
use shoal_publishers::ipfs::{IpfsConfig, IpfsNode, IpfsPublisher};
use shoal_publishers::target::{IpfsTarget, Target};
use shoal_publishers::{Output, Publisher};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop")
}

/// The interop npm packages, or a failure telling how to install them.
fn require_npm_deps() -> PathBuf {
    let dir = interop_dir();
    for package in ["helia", "@helia/unixfs", "@helia/bitswap", "ipfs-car"] {
        let manifest = dir.join("node_modules").join(package).join("package.json");
        assert!(
            manifest.exists(),
            "{} is missing: run scripts/interop-setup (npm ci in tests/interop) first",
            manifest.display()
        );
    }
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node (Node.js >= 20) is not on PATH: run scripts/interop-setup"
    );
    dir
}

async fn start_node(home: &Path) -> RunningNode {
    daemon::init(home, false).unwrap();
    std::fs::write(
        home.join("config.toml"),
        r#"
[network]
listen = ["/ip4/127.0.0.1/tcp/0"]
mdns = false

[status]
addr = "127.0.0.1:0"

[publishers.ipfs]
enabled = true
"#,
    )
    .unwrap();
    daemon::start(home, Overrides::default()).await.unwrap()
}

/// Files of the output and their sha256, by relative path.
fn output(root: &Path) -> (PathBuf, Cid, Vec<(String, Vec<u8>)>) {
    let dir = root.join("output");
    std::fs::create_dir_all(dir.join("part")).unwrap();
    let files = vec![
        (
            "data.bin".to_owned(),
            (0..12_000_000u32)
                .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
                .collect::<Vec<u8>>(),
        ),
        (
            "part/notes.txt".to_owned(),
            b"interop with helia\n".to_vec(),
        ),
    ];
    for (path, data) in &files {
        std::fs::write(dir.join(path), data).unwrap();
    }
    let cid = import_path(&dir, Profile::V1RawLeaves).unwrap();
    (dir, cid, files)
}

async fn publish(node: &RunningNode, dir: &Path, cid: &Cid) {
    let hook = Arc::new(NodeHook::default());
    hook.attach(node.net.clone());
    IpfsPublisher::new(
        Arc::clone(&node.blocks),
        hook as Arc<dyn IpfsNode>,
        IpfsConfig::default(),
    )
    .publish(
        &Target::Ipfs(IpfsTarget {}),
        Output {
            job: "interop",
            shard: 0,
            node: &node.run_info.peer_id,
            dir,
            cid,
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helia_fetches_a_published_output_over_bitswap() {
    let js = require_npm_deps();
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&tmp.path().join("home")).await;
    let (dir, cid, files) = output(tmp.path());
    publish(&node, &dir, &cid).await;

    let addr = format!(
        "{}/p2p/{}",
        node.run_info.listen_addrs[0], node.run_info.peer_id
    );
    let script = js.join("helia-fetch.mjs");
    let out = tokio::process::Command::new("node")
        .arg("--import")
        .arg(js.join("node20-polyfills.mjs"))
        .arg(&script)
        .arg(&addr)
        .arg(cid.to_string())
        .arg("60000")
        .current_dir(&js)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "helia failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.last().unwrap(),
        &serde_json::json!({"done": true, "root": cid.to_string()})
    );
    let mut got: Vec<(String, u64, String)> = lines
        .iter()
        .filter(|l| l.get("path").is_some())
        .map(|l| {
            (
                l["path"].as_str().unwrap().to_owned(),
                l["size"].as_u64().unwrap(),
                l["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, u64, String)> = files
        .iter()
        .map(|(p, d)| (p.clone(), d.len() as u64, hex::encode(Sha256::digest(d))))
        .collect();
    want.sort();
    assert_eq!(got, want);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipfs_car_reads_the_car_the_gateway_serves() {
    let js = require_npm_deps();
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&tmp.path().join("home")).await;
    let (dir, cid, files) = output(tmp.path());
    publish(&node, &dir, &cid).await;

    let base = node.run_info.status_url.clone().unwrap();
    let response = reqwest::get(format!("{base}/ipfs/{cid}?format=car"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let car_path = tmp.path().join("output.car");
    std::fs::write(&car_path, response.bytes().await.unwrap()).unwrap();

    let ipfs_car = js.join("node_modules/.bin/ipfs-car");
    let roots = Command::new(&ipfs_car)
        .arg("roots")
        .arg(&car_path)
        .output()
        .unwrap();
    assert!(roots.status.success(), "{roots:?}");
    assert_eq!(
        String::from_utf8_lossy(&roots.stdout).trim(),
        cid.to_string()
    );

    let unpacked = tmp.path().join("unpacked");
    let unpack = Command::new(&ipfs_car)
        .arg("unpack")
        .arg(&car_path)
        .arg("--output")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(
        unpack.status.success(),
        "ipfs-car unpack: {}",
        String::from_utf8_lossy(&unpack.stderr)
    );
    for (path, data) in &files {
        assert_eq!(&std::fs::read(unpacked.join(path)).unwrap(), data, "{path}");
    }
    node.shutdown().await;
}
