//! Content addressing: UnixFS DAGs and CIDs identical to kubo's `ipfs add`,
//! CARv1 files, Filecoin piece commitments (CommP) and verification.
//!
//! Everything here is pure library code over `std::io` readers, writers and
//! local paths; there is no network I/O. Memory use is bounded by the chunk
//! size times the DAG depth when computing a CID, and by `O(log n)` hashes
//! for CommP, whatever the input size.
//!
//! - [`unixfs`]: the importer (`import_path`, `import_reader`), chunking and
//!   the balanced file layout kubo uses.
//! - [`pb`]: dag-pb and UnixFS protobuf messages (strict, bounded decoding).
//! - [`car`]: a streaming CARv1 writer and a verifying CARv1 reader.
//! - [`pack`]: a path written as a CAR with its blocks in DAG order.
//! - [`export`]: a CAR written back out to a path, safely.
//! - [`commp`]: fr32 padding, the sha2-256-trunc254-padded tree and piece CIDs.
//! - [`verify`]: recompute and compare, naming the block or file that differs.

// Errors carry the CIDs (80 bytes each) they are about, so that messages can
// name them; every call returning one does file I/O, so the size is moot.
#![allow(clippy::result_large_err)]
#![warn(missing_docs)]

pub mod car;
pub mod commp;
pub mod export;
pub mod pack;
pub mod pb;
pub mod unixfs;
pub mod verify;

use std::io;

pub use cid::Cid;
use multihash::Multihash;
use sha2::{Digest, Sha256};

pub use car::{CarError, CarReader, CarWriter};
pub use commp::{CommP, CommPError, CommPWriter, PieceCommitment, piece_cid};
pub use export::{ExportError, ExportSummary, export_car};
pub use pack::{PackError, Packed, write_car};
pub use unixfs::{
    ImportError, Imported, import_file, import_path, import_path_to_sink, import_reader,
};
pub use verify::{CarSummary, VerifyError, diff_path_against_car, verify_car, verify_path};

/// Multicodec of dag-pb blocks (UnixFS nodes).
pub const DAG_PB: u64 = 0x70;
/// Multicodec of raw blocks (file data without a UnixFS wrapper).
pub const RAW: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of the identity hash (the digest is the data itself).
pub const IDENTITY: u64 = 0x00;

/// kubo's default chunk size (`--chunker=size-262144`).
pub const DEFAULT_CHUNK_SIZE: usize = 262_144;
/// kubo's default maximum number of links per file node (balanced layout).
pub const DEFAULT_MAX_LINKS: usize = 174;
/// kubo's `HAMTShardingSize`: a directory whose estimated size (sum of name
/// and CID byte lengths of its links) reaches this is sharded by kubo.
pub const HAMT_SHARDING_SIZE: usize = 262_144;
/// The largest chunk size accepted (kubo refuses chunks above 1 MiB too).
pub const MAX_CHUNK_SIZE: usize = 1 << 20;

/// The two `ipfs add` settings whose CIDs we reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// `ipfs add`: CIDv0, dag-pb UnixFS leaves, 256 KiB chunks, 174 links.
    #[default]
    V0Default,
    /// `ipfs add --cid-version=1`: CIDv1 (base32), raw leaves, 256 KiB chunks, 174 links.
    V1RawLeaves,
}

impl Profile {
    /// The importer settings this profile stands for.
    pub fn options(self) -> ImportOptions {
        match self {
            Profile::V0Default => ImportOptions {
                cid_version: cid::Version::V0,
                raw_leaves: false,
                chunk_size: DEFAULT_CHUNK_SIZE,
                max_links: DEFAULT_MAX_LINKS,
            },
            Profile::V1RawLeaves => ImportOptions {
                cid_version: cid::Version::V1,
                raw_leaves: true,
                chunk_size: DEFAULT_CHUNK_SIZE,
                max_links: DEFAULT_MAX_LINKS,
            },
        }
    }

    /// The profile `ipfs add --cid-version=N` uses (0 or 1).
    pub fn from_cid_version(version: u64) -> Option<Profile> {
        match version {
            0 => Some(Profile::V0Default),
            1 => Some(Profile::V1RawLeaves),
            _ => None,
        }
    }
}

/// Importer settings; [`Profile::options`] gives kubo's. Other values match
/// kubo's corresponding flags (`--chunker=size-N`, `--raw-leaves`) but are
/// only tested against the JS reference importer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// CID version of every block (v0 needs dag-pb leaves).
    pub cid_version: cid::Version,
    /// Store file data in raw blocks instead of UnixFS file leaves.
    pub raw_leaves: bool,
    /// Fixed chunk size in bytes (1..=1 MiB).
    pub chunk_size: usize,
    /// Maximum links per file node in the balanced layout (at least 2).
    pub max_links: usize,
}

impl From<Profile> for ImportOptions {
    fn from(profile: Profile) -> Self {
        profile.options()
    }
}

/// A consumer of the blocks an import produces (a CAR writer, a block store).
///
/// Blocks arrive children first; the same block may arrive more than once
/// (identical chunks), so a sink that must store each block once dedupes.
pub trait BlockSink {
    /// Takes one block; `data` hashes to `cid`.
    fn put(&mut self, cid: &Cid, data: &[u8]) -> io::Result<()>;
}

impl<T: BlockSink + ?Sized> BlockSink for &mut T {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> io::Result<()> {
        (**self).put(cid, data)
    }
}

/// A sink that drops every block: for computing a CID only.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl BlockSink for NullSink {
    fn put(&mut self, _cid: &Cid, _data: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// The sha2-256 CID of `data` stored as a block of `codec` under `version`
/// (a CIDv0 is always dag-pb, whatever `codec` says).
pub fn block_cid(version: cid::Version, codec: u64, data: &[u8]) -> Cid {
    let digest = Sha256::digest(data);
    let hash = Multihash::<64>::wrap(SHA2_256, &digest)
        .expect("a 32-byte digest always fits a 64-byte multihash");
    match version {
        // Only dag-pb blocks ever get CIDv0; the importer never asks otherwise.
        cid::Version::V0 => Cid::new_v0(hash).expect("sha2-256 is valid for CIDv0"),
        cid::Version::V1 => Cid::new_v1(codec, hash),
    }
}

/// Whether `data` is the content `cid` names: true, false, or `None` when
/// the CID's hash function is not one we can compute.
pub fn cid_matches(cid: &Cid, data: &[u8]) -> Option<bool> {
    let hash = cid.hash();
    match hash.code() {
        SHA2_256 => Some(hash.digest() == Sha256::digest(data).as_slice()),
        IDENTITY => Some(hash.digest() == data),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_follow_ipfs_add_defaults() {
        let v0 = Profile::V0Default.options();
        assert_eq!(v0.cid_version, cid::Version::V0);
        assert!(!v0.raw_leaves);
        assert_eq!((v0.chunk_size, v0.max_links), (262_144, 174));
        let v1 = Profile::from_cid_version(1).map(Profile::options);
        assert_eq!(
            v1.map(|o| (o.cid_version, o.raw_leaves)),
            Some((cid::Version::V1, true))
        );
        assert_eq!(Profile::from_cid_version(2), None);
    }

    #[test]
    fn empty_raw_block_has_kubos_cid() {
        // From kubo test/sharness/t0040-add-and-cat.sh (`ipfs add --raw-leaves` of an empty file).
        let cid = block_cid(cid::Version::V1, RAW, b"");
        assert_eq!(
            cid.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(cid_matches(&cid, b""), Some(true));
        assert_eq!(cid_matches(&cid, b"x"), Some(false));
    }
}
