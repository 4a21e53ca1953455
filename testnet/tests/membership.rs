//! Multi-process membership tests: real `shoal-node` processes (run from the
//! testnet binary) on 127.0.0.1 with OS-picked ports.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use shoal_node::net::{self, NetConfig};
use shoal_node::protocol::membership::{self, Announcement, Capacity, NodeInfo, Role};
use shoal_testnet::{Options, Testnet};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shoal-testnet"))
}

fn options(announce_ms: u64, ttl_ms: u64) -> Options {
    let mut options = Options::new(exe());
    options.configure = Box::new(move |_, config| {
        config.network.announce_interval_ms = announce_ms;
        config.network.ttl_ms = ttl_ms;
    });
    options.converge_timeout = Duration::from_secs(30);
    options
}

#[tokio::test(flavor = "multi_thread")]
async fn five_nodes_converge_to_a_full_view() {
    let net = Testnet::start(5, options(1000, 0)).await.unwrap();
    let mut ids: Vec<String> = net.nodes.iter().map(|n| n.run.peer_id.clone()).collect();
    ids.sort();
    for node in &net.nodes {
        let status = net.status(node).await.unwrap();
        assert_eq!(status.peer_id, node.run.peer_id);
        let mut seen: Vec<String> = status.members.iter().map(|m| m.peer_id.clone()).collect();
        seen.sort();
        assert_eq!(seen, ids, "{} has a partial view", node.name);
    }
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_node_leaves_every_view_after_the_ttl() {
    // 500 ms announcements, 2 s TTL.
    let mut net = Testnet::start(3, options(500, 2000)).await.unwrap();
    let victim = net.nodes[2].run.peer_id.clone();
    net.nodes[2].signal(Signal::SIGKILL).unwrap();
    net.nodes[2].wait().await.unwrap();
    let gone = victim.clone();
    net.wait_until("the killed node expires", Duration::from_secs(20), |s| {
        s.members.len() == 2 && s.members.iter().all(|m| m.peer_id != gone)
    })
    .await
    .unwrap();
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupted_node_leaves_at_once() {
    // A TTL of 10 minutes: only the Leaving announcement can remove it in time.
    let mut net = Testnet::start(3, options(1000, 600_000)).await.unwrap();
    let leaver = net.nodes[1].run.peer_id.clone();
    net.nodes[1].signal(Signal::SIGINT).unwrap();
    net.nodes[1].wait().await.unwrap();
    net.wait_until(
        "the interrupted node is dropped",
        Duration::from_secs(20),
        |s| s.members.iter().all(|m| m.peer_id != leaver),
    )
    .await
    .unwrap();
    net.stop().await.unwrap();
}

fn run_node(home: &std::path::Path) -> std::process::Output {
    std::process::Command::new(exe())
        .args(["__node", "run", "--home"])
        .arg(home)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .output()
        .unwrap()
}

fn init_home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    shoal_node::daemon::init(dir.path(), false).unwrap();
    dir
}

#[test]
fn corrupt_identity_is_a_clear_error_naming_the_file() {
    let home = init_home();
    std::fs::write(home.path().join("identity.key"), b"garbage").unwrap();
    let out = run_node(home.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("identity.key") && err.contains("corrupt"),
        "{err}"
    );
}

#[test]
fn missing_identity_is_a_clear_error_naming_the_file() {
    let home = init_home();
    std::fs::remove_file(home.path().join("identity.key")).unwrap();
    let out = run_node(home.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("identity.key") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn bad_config_is_a_clear_error_naming_the_file_and_field() {
    let home = init_home();
    std::fs::write(
        home.path().join("config.toml"),
        "[capacity]\nslots = \"many\"\n",
    )
    .unwrap();
    let out = run_node(home.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("config.toml") && err.contains("slots"),
        "{err}"
    );
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let home = init_home();
    let out = std::process::Command::new(exe())
        .args(["__node", "init", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
}

fn info_for(peer_id: String) -> NodeInfo {
    NodeInfo {
        peer_id,
        roles: vec![Role::Compute],
        listen_addrs: vec![],
        version: "forged".into(),
        capacity: Capacity {
            cpu: 1.0,
            memory: 0,
            disk: 0,
            slots: 1,
        },
        free_slots: 1,
        executors: vec![],
        publishers: vec![],
        labels: Default::default(),
        seq: u64::MAX / 2,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_gossip_is_dropped_and_counted_and_the_node_keeps_working() {
    let net = Testnet::start(2, options(500, 0)).await.unwrap();
    let target = &net.nodes[0];
    // An attacker: a real libp2p peer in this process, joined like any node.
    let attacker_key = shoal_node::libp2p::identity::Keypair::generate_ed25519();
    let attacker = net::start(
        attacker_key.clone(),
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: vec![target.tcp_multiaddr().unwrap().parse().unwrap()],
            mdns: false,
            announce_interval: Duration::from_millis(500),
            ttl: Duration::from_secs(60),
            info: info_for(String::new()),
        },
        None,
    )
    .await
    .unwrap();
    let attacker_id = attacker.peer_id().to_string();
    let id = attacker_id.clone();
    net.wait_until("the attacker is a member", Duration::from_secs(20), |s| {
        s.members.iter().any(|m| m.peer_id == id)
    })
    .await
    .unwrap();

    // Garbled bytes.
    attacker
        .publish_raw(b"\x00\x01 not an envelope".to_vec())
        .await
        .unwrap();
    // Oversized (but within gossipsub's transmit limit).
    attacker
        .publish_raw(vec![7u8; membership::MAX_ANNOUNCEMENT_BYTES + 100])
        .await
        .unwrap();
    // Signed by the attacker, claiming to be node 1.
    let victim = net.nodes[1].run.peer_id.clone();
    let forged = Announcement::Alive(info_for(victim.clone()));
    attacker
        .publish_raw(membership::encode(&attacker_key, &forged))
        .await
        .unwrap();
    // A genuine announcement with its signature broken.
    let mut tampered = membership::encode(
        &attacker_key,
        &Announcement::Alive(info_for(attacker_id.clone())),
    );
    let last = tampered.len() - 1;
    tampered[last] ^= 0x55;
    attacker.publish_raw(tampered).await.unwrap();

    // Counted by the node the attacker is connected to. Nodes reject, and so
    // never forward, these messages: others see them only over a direct
    // connection, which the attacker may not have opened yet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = net.status(target).await.unwrap();
        let counted = ["garbled", "oversized", "wrong_author", "bad_signature"]
            .iter()
            .all(|k| status.dropped_messages.get(*k).copied().unwrap_or(0) >= 1);
        if counted {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every bad message was counted: {:?}",
            status.dropped_messages
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing forged got in: node 1's entry still has its real version.
    for node in &net.nodes {
        let status = net.status(node).await.unwrap();
        assert_eq!(
            status.members.len(),
            3,
            "{} lost or gained members",
            node.name
        );
    }
    // And the network still works: a new node joins and is seen by all.
    let mut net = net;
    net.add_node().await.unwrap();
    net.wait_converged(4).await.unwrap();
    attacker.shutdown().await;
    net.stop().await.unwrap();
}
