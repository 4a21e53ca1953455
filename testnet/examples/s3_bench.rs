//! Publishes 1 GiB to a local S3 API server (moto) as (a) one file and (b)
//! many small files, with shoal's S3 publisher, `aws s3 cp --recursive` and
//! `rclone copy`, in the same run against the same server.
//!
//! cargo run --release -p shoal-testnet --example s3_bench -- [MiB] [files]
//!
//! Needs `aws` (awscli from PyPI) and `rclone` on PATH, or AWS_CLI / RCLONE
//! set to their paths.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_publishers::content::{self, Profile};
use shoal_publishers::s3::{S3Publisher, S3PublisherConfig};
use shoal_publishers::target::{S3Target, Target};
use shoal_publishers::{Output, Publisher};
use shoal_testnet::s3::{self as local_s3, MotoServer};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let files: usize = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(mib, files))
}

fn fill(path: &Path, len: usize, seed: u64) -> std::io::Result<()> {
    let mut x = seed | 1;
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    std::fs::write(path, data)
}

async fn run(mib: usize, files: usize) -> anyhow::Result<()> {
    let aws = std::env::var("AWS_CLI").unwrap_or_else(|_| "aws".into());
    let rclone = std::env::var("RCLONE").unwrap_or_else(|_| "rclone".into());
    for (tool, exe) in [("aws", &aws), ("rclone", &rclone)] {
        Command::new(exe)
            .arg("--version")
            .output()
            .with_context(|| format!("{tool} not found ({exe}); install it or set its path"))?;
    }
    let server = MotoServer::start(&[]).await?;
    let client = local_s3::client(&server.endpoint).await;
    let work = tempfile::tempdir()?;
    let total = mib << 20;

    let one = work.path().join("one");
    std::fs::create_dir_all(&one)?;
    fill(&one.join("big.bin"), total, 1)?;
    let many = work.path().join("many");
    std::fs::create_dir_all(&many)?;
    let small = total / files;
    // 100 files per directory: one flat directory of 10,000 would need a
    // HAMT-sharded UnixFS directory, which the importer does not build.
    for i in 0..files {
        let sub = many.join(format!("d{:03}", i / 100));
        std::fs::create_dir_all(&sub)?;
        fill(&sub.join(format!("f{i:05}.bin")), small, i as u64 + 2)?;
    }
    println!(
        "moto {} ; data: 1 x {mib} MiB and {files} x {} KiB",
        server.endpoint,
        small >> 10
    );
    println!();
    println!("| case | tool | seconds | MB/s | shoal speed-up |");
    println!("|---|---|---:|---:|---:|");
    for (case, dir) in [("one file", &one), ("many files", &many)] {
        let bucket = if case == "one file" {
            "bench-one"
        } else {
            "bench-many"
        };
        local_s3::create_bucket(&client, bucket).await?;
        let shoal = shoal_publish(&server.endpoint, bucket, dir).await?;
        let aws_t = timed(|| {
            let mut c = Command::new(&aws);
            c.args([
                "s3",
                "cp",
                "--recursive",
                "--quiet",
                "--endpoint-url",
                &server.endpoint,
            ])
            .arg(dir)
            .arg(format!("s3://{bucket}/aws/"))
            .envs(local_s3::env());
            c
        })?;
        let rclone_t = timed(|| {
            let mut c = Command::new(&rclone);
            c.args([
                "copy",
                "--s3-provider=Other",
                &format!("--s3-endpoint={}", server.endpoint),
                &format!("--s3-access-key-id={}", local_s3::ACCESS_KEY_ID),
                &format!("--s3-secret-access-key={}", local_s3::SECRET_ACCESS_KEY),
                "--s3-region=us-east-1",
            ])
            .arg(dir)
            .arg(format!(":s3:{bucket}/rclone/"))
            // A CA bundle is for TLS; this server is plain HTTP on loopback.
            .env_remove("AWS_CA_BUNDLE");
            c
        })?;
        for (tool, t) in [
            ("shoal", shoal),
            ("aws s3 cp", aws_t),
            ("rclone copy", rclone_t),
        ] {
            let mbps = total as f64 / 1e6 / t.as_secs_f64();
            let ratio = t.as_secs_f64() / shoal.as_secs_f64();
            println!(
                "| {case} | {tool} | {:.2} | {mbps:.1} | {ratio:.2} x |",
                t.as_secs_f64()
            );
        }
    }
    server.stop().await;
    Ok(())
}

async fn shoal_publish(endpoint: &str, bucket: &str, dir: &Path) -> anyhow::Result<Duration> {
    let publisher = S3Publisher::new(S3PublisherConfig {
        settings: local_s3::settings(endpoint),
        allow: vec![bucket.into()],
        part_size: env_or("SHOAL_PART_MB", 8) << 20,
        concurrency: env_or("SHOAL_CONCURRENCY", 16),
    })
    .await
    .map_err(anyhow::Error::msg)?;
    // The node hashes its output before publishing; not part of the upload.
    let cid = content::import_path(dir, Profile::V1RawLeaves)?;
    let target = Target::S3(S3Target {
        bucket: bucket.into(),
        prefix: "shoal/{shard}".into(),
    });
    let output = Output {
        job: "bench",
        shard: 0,
        node: "bench",
        dir,
        cid: &cid,
    };
    let start = Instant::now();
    publisher.publish(&target, output).await?;
    Ok(start.elapsed())
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn timed(make: impl Fn() -> Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let out = make().output()?;
    let t = start.elapsed();
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            make().get_program(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(t)
}
