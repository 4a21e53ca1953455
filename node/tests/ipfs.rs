//! Two (or three) real shoal nodes on loopback: one publishes a directory
//! into IPFS, another fetches it by CID over Bitswap; a node serving a
//! forged block is not believed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shoal_node::daemon::{self, Overrides, RunningNode};
use shoal_node::ipfs::{FetchError, FetchOptions, NodeHook, fetch_to_dir};
use shoal_node::libp2p::Multiaddr;
use shoal_publishers::content::{Cid, Profile, RAW, block_cid, import_path};
use shoal_publishers::ipfs::{IpfsConfig, IpfsNode, IpfsPublisher};
use shoal_publishers::target::{IpfsTarget, Target};
use shoal_publishers::{Output, Publisher};

async fn start_node(home: &Path, bootstrap: Vec<Multiaddr>) -> RunningNode {
    daemon::init(home, false).unwrap();
    std::fs::write(
        home.join("config.toml"),
        r#"
[network]
listen = ["/ip4/127.0.0.1/tcp/0"]
mdns = false
announce_interval_ms = 300

[status]
addr = "127.0.0.1:0"

[publishers.ipfs]
enabled = true
pin_hours = 0
"#,
    )
    .unwrap();
    daemon::start(
        home,
        Overrides {
            bootstrap,
            ..Overrides::default()
        },
    )
    .await
    .unwrap()
}

fn addrs(node: &RunningNode) -> Vec<Multiaddr> {
    node.run_info
        .listen_addrs
        .iter()
        .map(|a| {
            format!("{a}/p2p/{}", node.run_info.peer_id)
                .parse()
                .unwrap()
        })
        .collect()
}

/// A shard output: a 1.5 MiB file (internal nodes, 6 chunks), a small file
/// and a subdirectory.
fn output_dir(root: &Path) -> (PathBuf, Cid) {
    let dir = root.join("output");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let data: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("result.bin"), &data).unwrap();
    std::fs::write(dir.join("logs/run.log"), b"shard 0 done\n").unwrap();
    let cid = import_path(&dir, Profile::V1RawLeaves).unwrap();
    (dir, cid)
}

async fn publish(node: &RunningNode, dir: &Path, cid: &Cid) -> shoal_publishers::target::Location {
    let hook = Arc::new(NodeHook::default());
    hook.attach(node.net.clone());
    let publisher = IpfsPublisher::new(
        Arc::clone(&node.blocks),
        hook as Arc<dyn IpfsNode>,
        IpfsConfig::default(),
    );
    publisher
        .publish(
            &Target::Ipfs(IpfsTarget {}),
            Output {
                job: "job-1",
                shard: 0,
                node: &node.run_info.peer_id,
                dir,
                cid,
            },
        )
        .await
        .unwrap()
}

fn same_tree(a: &Path, b: &Path) {
    for rel in ["result.bin", "logs/run.log"] {
        assert_eq!(
            std::fs::read(a.join(rel)).unwrap(),
            std::fs::read(b.join(rel)).unwrap(),
            "{rel} differs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_published_by_one_node_is_fetched_by_another_over_bitswap() {
    let tmp = tempfile::tempdir().unwrap();
    let publisher = start_node(&tmp.path().join("a"), Vec::new()).await;
    let fetcher = start_node(&tmp.path().join("b"), Vec::new()).await;
    let (dir, cid) = output_dir(tmp.path());

    let location = publish(&publisher, &dir, &cid).await;
    assert_eq!(location.driver, "ipfs");
    assert_eq!(location.url, format!("ipfs://{cid}"));
    assert!(
        location
            .providers
            .iter()
            .all(|p| p.ends_with(&format!("/p2p/{}", publisher.run_info.peer_id))),
        "{:?}",
        location.providers
    );
    let hints: Vec<Multiaddr> = location
        .providers
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(!hints.is_empty());

    let dest = tmp.path().join("fetched");
    let (report, summary) = fetch_to_dir(
        &fetcher.net,
        &fetcher.blocks,
        cid,
        &hints,
        &dest,
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.files, 2);
    assert_eq!(summary.bytes, 1_500_000 + 13);
    assert_eq!(report.providers.len(), 1);
    assert_eq!(import_path(&dest, Profile::V1RawLeaves).unwrap(), cid);
    same_tree(&dir, &dest);

    publisher.shutdown().await;
    fetcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_hints_the_provider_is_found_in_the_dht() {
    let tmp = tempfile::tempdir().unwrap();
    let publisher = start_node(&tmp.path().join("a"), Vec::new()).await;
    let fetcher = start_node(&tmp.path().join("b"), addrs(&publisher)).await;
    let (dir, cid) = output_dir(tmp.path());
    publish(&publisher, &dir, &cid).await;

    // The provider record is announced in the background: poll, with a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = fetcher.net.find_providers(cid).await.unwrap_or_default();
        if found
            .iter()
            .any(|p| p.to_string() == publisher.run_info.peer_id)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the DHT never named the publisher as provider of {cid}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dest = tmp.path().join("fetched");
    fetch_to_dir(
        &fetcher.net,
        &fetcher.blocks,
        cid,
        &[],
        &dest,
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    same_tree(&dir, &dest);

    publisher.shutdown().await;
    fetcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_block_is_rejected_and_an_honest_provider_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let honest = start_node(&tmp.path().join("honest"), Vec::new()).await;
    let forger = start_node(&tmp.path().join("forger"), Vec::new()).await;
    let (dir, cid) = output_dir(tmp.path());
    publish(&honest, &dir, &cid).await;

    // The forger holds the same DAG, except that the small log file's block
    // carries other bytes under the true CID.
    let log = block_cid(cid::Version::V1, RAW, b"shard 0 done\n");
    let mut car = Vec::new();
    honest.blocks.write_car(&cid, &mut car).unwrap();
    let mut reader = shoal_publishers::content::CarReader::new(car.as_slice()).unwrap();
    let mut forged_any = false;
    while let Some((block, data)) = reader.next_block().unwrap() {
        if block == log {
            forger
                .blocks
                .put_unverified_for_testing(&block, b"shard 0 FAILED\n")
                .unwrap();
            forged_any = true;
        } else {
            forger.blocks.put(&block, data).unwrap();
        }
    }
    assert!(forged_any);
    forger.blocks.pin(&cid, None).unwrap();

    // Only the forger: the fetch fails, naming the block and the peer.
    let fetcher = start_node(&tmp.path().join("fetcher"), Vec::new()).await;
    let options = FetchOptions {
        block_timeout: Duration::from_secs(4),
        ..FetchOptions::default()
    };
    let dest = tmp.path().join("from-forger");
    let err = fetch_to_dir(
        &fetcher.net,
        &fetcher.blocks,
        cid,
        &addrs(&forger),
        &dest,
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::BlockUnavailable { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&log.to_string()), "{message}");
    assert!(message.contains(&forger.run_info.peer_id), "{message}");
    assert!(
        !fetcher.blocks.has(&log).unwrap(),
        "forged block was stored"
    );
    assert!(!dest.exists());

    // With an honest provider as well, the true block wins.
    let mut hints = addrs(&forger);
    hints.extend(addrs(&honest));
    let dest = tmp.path().join("from-both");
    // Success returns as soon as the blocks arrive; the long budget only
    // matters on a loaded machine.
    let options = FetchOptions {
        block_timeout: Duration::from_secs(30),
        ..FetchOptions::default()
    };
    fetch_to_dir(&fetcher.net, &fetcher.blocks, cid, &hints, &dest, &options)
        .await
        .unwrap();
    same_tree(&dir, &dest);
    assert_eq!(
        std::fs::read(dest.join("logs/run.log")).unwrap(),
        b"shard 0 done\n"
    );

    for node in [honest, forger, fetcher] {
        node.shutdown().await;
    }
}

#[test]
fn shoal_node_gc_removes_unpinned_blocks_of_a_stopped_node() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    daemon::init(&home, false).unwrap();
    let (dir, cid) = output_dir(tmp.path());
    let loose = block_cid(cid::Version::V1, RAW, b"left over from a fetch");
    {
        let config = shoal_node::config::Config::load(&home.join("config.toml")).unwrap();
        let store = Arc::new(daemon::open_block_store(&config, &home).unwrap());
        store.import_path(&dir, &cid, None).unwrap();
        store.put(&loose, b"left over from a fetch").unwrap();
        // While the store is open (as in a running node), gc says so.
        let err = daemon::gc(&home).unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
    }
    let report = daemon::gc(&home).unwrap();
    assert_eq!(report.blocks_removed, 1);
    assert_eq!(report.bytes_freed, 22);
    assert!(report.blocks_kept > 5);
}

/// Regression: the Bitswap server used to keep every served want, hit its
/// 1024-entry cap per peer, and ignore further wants for up to 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dag_of_more_than_1024_blocks_is_fetched_without_stalling() {
    let tmp = tempfile::tempdir().unwrap();
    let publisher = start_node(&tmp.path().join("a"), Vec::new()).await;
    let fetcher = start_node(&tmp.path().join("b"), Vec::new()).await;
    let dir = tmp.path().join("many");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..1500 {
        std::fs::write(dir.join(format!("f{i:04}")), format!("file number {i}\n")).unwrap();
    }
    let cid = import_path(&dir, Profile::V1RawLeaves).unwrap();
    let location = publish(&publisher, &dir, &cid).await;
    let hints: Vec<Multiaddr> = location
        .providers
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let options = FetchOptions {
        block_timeout: Duration::from_secs(10),
        ..FetchOptions::default()
    };
    let started = std::time::Instant::now();
    let dest = tmp.path().join("fetched");
    let (report, summary) =
        fetch_to_dir(&fetcher.net, &fetcher.blocks, cid, &hints, &dest, &options)
            .await
            .unwrap();
    assert_eq!(report.blocks, 1501);
    assert_eq!(summary.files, 1500);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "took {:?}",
        started.elapsed()
    );
    publisher.shutdown().await;
    fetcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_block_is_fetched_by_cid_with_a_provider_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let publisher = start_node(&tmp.path().join("a"), Vec::new()).await;
    let fetcher = start_node(&tmp.path().join("b"), Vec::new()).await;
    let (dir, cid) = output_dir(tmp.path());
    publish(&publisher, &dir, &cid).await;
    let log = block_cid(cid::Version::V1, RAW, b"shard 0 done\n");
    let block = shoal_node::ipfs::fetch_block(
        &fetcher.net,
        &fetcher.blocks,
        log,
        &addrs(&publisher),
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(block, b"shard 0 done\n");
    publisher.shutdown().await;
    fetcher.shutdown().await;
}
