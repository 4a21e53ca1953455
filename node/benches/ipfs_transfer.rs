//! IPFS transfer benchmark: one node publishes an output (imported into its
//! block store), a second node fetches it over Bitswap on loopback and
//! writes it out (verified), next to a plain TCP copy of the same bytes in
//! the same run. Prints markdown.
//!
//! Run with `cargo bench -p shoal-node --bench ipfs_transfer`;
//! `SHOAL_BENCH_MB` sets the output size (default 1024), `SHOAL_BENCH_WINDOW`
//! the Bitswap requests in flight (default: `FetchOptions::default()`).

// FetchError names CIDs (80 bytes each), as the content module's errors do.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_node::daemon::{self, Overrides, RunningNode};
use shoal_node::ipfs::{FetchOptions, NodeHook, export_from_store, fetch_dag};
use shoal_node::libp2p::Multiaddr;
use shoal_publishers::content::{Profile, import_path};
use shoal_publishers::ipfs::{IpfsConfig, IpfsNode, IpfsPublisher};
use shoal_publishers::target::{IpfsTarget, Target};
use shoal_publishers::{Output, Publisher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: f64 = 1024.0 * 1024.0;

async fn start_node(home: &Path) -> RunningNode {
    daemon::init(home, false).expect("init");
    std::fs::write(
        home.join("config.toml"),
        "[network]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nmdns = false\n\n[publishers.ipfs]\nenabled = true\n",
    )
    .expect("config");
    daemon::start(home, Overrides::default())
        .await
        .expect("start")
}

/// Incompressible bytes, so nothing dedups and no layer compresses.
fn write_output(path: &Path, mib: usize) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        std::io::Write::write_all(&mut file, &chunk).expect("write");
    }
    std::io::Write::flush(&mut file).expect("flush");
}

async fn tcp_copy(src: &Path, dest: &Path) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let dest = dest.to_owned();
    let receiver = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut out = tokio::fs::File::create(&dest).await.expect("create");
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = socket.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).await.expect("write");
        }
        out.flush().await.expect("flush");
    });
    let start = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let mut file = tokio::fs::File::open(src).await.expect("open");
    tokio::io::copy(&mut file, &mut socket).await.expect("copy");
    socket.shutdown().await.expect("shutdown");
    receiver.await.expect("receiver");
    start.elapsed()
}

fn rate(bytes: u64, took: Duration) -> String {
    format!("{:.0}", bytes as f64 / MIB / took.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mib: usize = std::env::var("SHOAL_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("output");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("data.bin");
    write_output(&file, mib);
    let bytes = (mib as u64) << 20;
    let cid = import_path(&dir, Profile::V1RawLeaves).expect("cid");

    let a = start_node(&tmp.path().join("a")).await;
    let b = start_node(&tmp.path().join("b")).await;
    let hook = Arc::new(NodeHook::default());
    hook.attach(a.net.clone());
    let publisher = IpfsPublisher::new(
        Arc::clone(&a.blocks),
        hook as Arc<dyn IpfsNode>,
        IpfsConfig::default(),
    );
    let start = Instant::now();
    let location = publisher
        .publish(
            &Target::Ipfs(IpfsTarget {}),
            Output {
                job: "bench",
                shard: 0,
                node: &a.run_info.peer_id,
                dir: &dir,
                cid: &cid,
            },
        )
        .await
        .expect("publish");
    let publish_took = start.elapsed();
    let hints: Vec<Multiaddr> = location
        .providers
        .iter()
        .map(|p| p.parse().expect("multiaddr"))
        .collect();

    let mut options = FetchOptions::default();
    if let Some(window) = std::env::var("SHOAL_BENCH_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.window = window;
    }
    let start = Instant::now();
    let (report, lease) = fetch_dag(&b.net, &b.blocks, cid, &hints, &options)
        .await
        .expect("fetch");
    let fetch_took = start.elapsed();
    let out = tmp.path().join("fetched");
    let store = Arc::clone(&b.blocks);
    let (export_out, export_cid) = (out.clone(), cid);
    let start = Instant::now();
    tokio::task::spawn_blocking(move || export_from_store(&store, &export_cid, &export_out))
        .await
        .expect("export task")
        .expect("export");
    let export_took = start.elapsed();
    drop(lease);

    let tcp_took = tcp_copy(&file, &tmp.path().join("tcp-copy.bin")).await;

    println!("## IPFS transfer: {mib} MiB, two nodes on loopback\n");
    println!(
        "root {cid}, {} blocks, {} block requests in flight\n",
        report.blocks, options.window
    );
    println!("| step | seconds | MiB/s |");
    println!("|---|---:|---:|");
    let row = |name: &str, took: Duration| {
        println!(
            "| {name} | {:.2} | {} |",
            took.as_secs_f64(),
            rate(bytes, took)
        )
    };
    row("publish (import + pin into block store)", publish_took);
    row("fetch over Bitswap into block store", fetch_took);
    row("export + verify_path to a directory", export_took);
    row("fetch + export total", fetch_took + export_took);
    row(
        "plain TCP copy, same bytes (file to socket to file, no fsync)",
        tcp_took,
    );

    a.shutdown().await;
    b.shutdown().await;
}
