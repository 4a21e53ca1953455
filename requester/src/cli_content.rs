//! `shoal cid`, `shoal car` and `shoal verify`: content addressing from the
//! command line, over the `shoal_publishers::content` library.
//!
//! - `shoal cid PATH [--cid-version 1]` prints the root CID `ipfs add` (or
//!   `ipfs add --cid-version=1`) would print for a file or directory.
//! - `shoal car PATH -o OUT.car` writes a CARv1 (blocks in DAG order) and
//!   prints its root CID, piece CID and padded piece size.
//! - `shoal verify PATH|CAR CID` recomputes and compares; a `.car` file is
//!   checked block by block, anything else as a file or directory.
//!
//! The work is blocking file I/O and hashing, so it runs on tokio's
//! blocking pool.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use shoal_publishers::content::commp::CommPWriter;
use shoal_publishers::content::verify::diff_path_against_car;
use shoal_publishers::content::{Cid, Profile, import_path, verify_car, verify_path, write_car};

/// `shoal cid`: print the CID of a file or directory.
#[derive(Debug, Clone, Args)]
pub struct CidArgs {
    /// File or directory to hash.
    pub path: PathBuf,
    /// 0: `ipfs add` defaults (CIDv0); 1: `ipfs add --cid-version=1` (raw leaves, base32).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1))]
    pub cid_version: u64,
}

/// `shoal car`: write a file or directory as a CARv1.
#[derive(Debug, Clone, Args)]
pub struct CarArgs {
    /// File or directory to pack.
    pub path: PathBuf,
    /// Where to write the CAR (must not exist).
    #[arg(short = 'o', long = "out", value_name = "OUT.car")]
    pub out: PathBuf,
    /// 0: `ipfs add` defaults (CIDv0); 1: `ipfs add --cid-version=1`.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1))]
    pub cid_version: u64,
}

/// `shoal verify`: check a path or a CAR against a CID.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// A file or directory, or a `.car` file.
    pub target: PathBuf,
    /// The CID it must have.
    #[arg(value_parser = parse_cid)]
    pub cid: Cid,
    /// A CAR with the expected DAG: on a mismatch, name the file that differs.
    #[arg(long, value_name = "EXPECTED.car")]
    pub against: Option<PathBuf>,
}

fn parse_cid(s: &str) -> Result<Cid, String> {
    s.parse().map_err(|e| format!("not a CID: {e}"))
}

fn profile(cid_version: u64) -> anyhow::Result<Profile> {
    Profile::from_cid_version(cid_version)
        .with_context(|| format!("--cid-version must be 0 or 1, not {cid_version}"))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("worker thread failed")?
}

/// Prints the root CID of `args.path`.
pub async fn run_cid(args: CidArgs) -> anyhow::Result<()> {
    let profile = profile(args.cid_version)?;
    let cid = blocking(move || {
        import_path(&args.path, profile)
            .with_context(|| format!("cannot compute the CID of {}", args.path.display()))
    })
    .await?;
    println!("{cid}");
    Ok(())
}

/// Writes `args.path` as a CAR to `args.out` and prints root CID, piece CID
/// and padded piece size.
pub async fn run_car(args: CarArgs) -> anyhow::Result<()> {
    let profile = profile(args.cid_version)?;
    let (packed, piece) = blocking(move || {
        if args.out.exists() {
            bail!(
                "{} already exists; choose another output path",
                args.out.display()
            );
        }
        // Write next to the target and rename, so a failed run leaves no half CAR.
        let partial = partial_path(&args.out);
        let result = (|| {
            let file = File::create(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let out = CommPWriter::new(BufWriter::with_capacity(1 << 20, file));
            let (packed, out) = write_car(&args.path, profile, out)
                .with_context(|| format!("cannot write a CAR of {}", args.path.display()))?;
            let (file, piece) = out.finish().context("cannot finish the CAR")?;
            file.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot flush {}", partial.display()))?;
            fs::rename(&partial, &args.out)
                .with_context(|| format!("cannot move the CAR to {}", args.out.display()))?;
            Ok((packed, piece))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&partial);
        }
        result
    })
    .await?;
    println!("root CID:          {}", packed.root);
    println!("piece CID:         {}", piece.cid());
    println!("padded piece size: {}", piece.padded_size);
    println!(
        "CAR size:          {} bytes, {} blocks",
        packed.car_bytes, packed.blocks
    );
    Ok(())
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// Checks a path or a `.car` file against a CID; an error says what differs.
pub async fn run_verify(args: VerifyArgs) -> anyhow::Result<()> {
    let message = blocking(move || {
        let VerifyArgs {
            target,
            cid,
            against,
        } = args;
        let is_car = target
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("car"))
            && target.is_file();
        if is_car {
            let file =
                File::open(&target).with_context(|| format!("cannot open {}", target.display()))?;
            let summary = verify_car(BufReader::new(file), &cid).with_context(|| {
                format!("{} does not hold an intact DAG for {cid}", target.display())
            })?;
            return Ok(format!(
                "ok: {} holds the complete DAG of {cid} ({} of {} blocks reachable)",
                target.display(),
                summary.reachable,
                summary.blocks
            ));
        }
        let result = match &against {
            Some(car) => {
                let file =
                    File::open(car).with_context(|| format!("cannot open {}", car.display()))?;
                diff_path_against_car(&target, BufReader::new(file), &cid)
            }
            None => verify_path(&target, &cid),
        };
        result.with_context(|| format!("{} does not match {cid}", target.display()))?;
        Ok(format!("ok: {} matches {cid}", target.display()))
    })
    .await?;
    println!("{message}");
    Ok(())
}
