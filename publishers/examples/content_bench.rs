//! Content-addressing throughput against `sha256sum`, on one core.
//!
//! Run: `cargo run --release -p shoal-publishers --example content_bench -- [SIZE_MIB]`
//!
//! Writes a SIZE_MIB (default 1024) file of pseudo-random bytes to a temp
//! directory, then times, best of two runs each with the file in the page
//! cache: `sha256sum FILE` (a spawned process), our CID computation in both
//! profiles, CommP, and the whole `shoal car` pipeline (CAR in DAG order
//! plus CommP of the CAR, written to a sink). Also `openssl dgst -sha256`
//! when installed, as the SHA-NI-accelerated yardstick. Prints MB/s (10^6
//! bytes per second) and the ratio to sha256sum.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_publishers::content::commp::CommPWriter;
use shoal_publishers::content::{Profile, import_file, piece_cid, write_car};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let size_mib: u64 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("SIZE_MIB must be a whole number, not {arg:?}"))?,
        None => 1024,
    };
    let bytes = size_mib << 20;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("payload.bin");
    write_payload(&path, bytes)?;
    let sha_ni = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains(" sha_ni"));
    println!("payload: {size_mib} MiB pseudo-random, page-cached; CPU has SHA-NI: {sha_ni}");

    let sha256sum = best_of_two(|| spawn("sha256sum", &[], &path))?;
    let openssl = best_of_two(|| spawn("openssl", &["dgst", "-sha256"], &path)).ok();
    let cid_v0 = best_of_two(|| Ok(import_file(&path, Profile::V0Default).map(drop)?))?;
    let cid_v1 = best_of_two(|| Ok(import_file(&path, Profile::V1RawLeaves).map(drop)?))?;
    let commp = best_of_two(|| Ok(piece_cid(File::open(&path)?).map(drop)?))?;
    let car = best_of_two(|| {
        let (_, out) = write_car(&path, Profile::V0Default, CommPWriter::new(io::sink()))?;
        Ok(out.finish().map(drop)?)
    })?;

    let mb_s = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!("| what | seconds | MB/s | vs sha256sum |");
    println!("| --- | ---: | ---: | ---: |");
    let rows = [
        ("sha256sum (coreutils, spawned)", Some(sha256sum)),
        ("openssl dgst -sha256 (spawned)", openssl),
        ("CID, `ipfs add` default (CIDv0)", Some(cid_v0)),
        ("CID, `--cid-version=1` (raw leaves)", Some(cid_v1)),
        ("CommP of the file", Some(commp)),
        ("`shoal car`: CAR (2 passes) + CommP of the CAR", Some(car)),
    ];
    for (name, time) in rows.into_iter().filter_map(|(n, t)| Some((n, t?))) {
        println!(
            "| {name} | {:.2} | {:.0} | {:.2} |",
            time.as_secs_f64(),
            mb_s(time),
            sha256sum.as_secs_f64() / time.as_secs_f64()
        );
    }
    Ok(())
}

type Run = Result<(), Box<dyn std::error::Error>>;

fn spawn(program: &str, args: &[&str], path: &Path) -> Run {
    let out = Command::new(program).args(args).arg(path).output()?;
    if !out.status.success() {
        return Err(format!("{program} failed").into());
    }
    Ok(())
}

fn best_of_two(mut run: impl FnMut() -> Run) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut best = Duration::MAX;
    for _ in 0..2 {
        let start = Instant::now();
        run()?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

/// xorshift64 bytes: incompressible enough, and fast to make.
fn write_payload(path: &Path, bytes: u64) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()
}
