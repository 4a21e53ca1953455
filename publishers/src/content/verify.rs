//! Verification: recompute a CID and compare, naming what differs.
//!
//! - [`verify_path`] re-imports a file or tree with the profile the CID
//!   implies and compares roots. With only a root CID to go on it can name
//!   the path but not which file inside differs; [`diff_path_against_car`]
//!   does that when the expected DAG is at hand as a CAR.
//! - [`verify_car`] streams a CAR: every block must hash to its CID (the
//!   error gives the block's index and CID), the header must name the
//!   expected root, and every block reachable from it must be present.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use cid::Version;

use super::car::{CarError, CarReader};
use super::export::is_safe_name;
use super::pb::{DataType, PbError, PbNode, UnixFsData};
use super::unixfs::{ImportError, import_path};
use super::{Cid, DAG_PB, Profile, RAW};

/// What verification found wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The path could not be read.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The CAR is unreadable, or a block's bytes do not match its CID.
    #[error(transparent)]
    Car(#[from] CarError),
    /// The content at a path does not hash to the expected CID.
    #[error("{} has CID {actual}, expected {expected}", path.display())]
    Mismatch {
        /// The file or directory that differs.
        path: PathBuf,
        /// The CID it should have.
        expected: Cid,
        /// The CID it has.
        actual: Cid,
    },
    /// A directory entry is in one tree and not the other.
    #[error("{}: {what}", path.display())]
    EntryMismatch {
        /// The entry.
        path: PathBuf,
        /// "missing on disk" or "not in the expected DAG".
        what: &'static str,
    },
    /// The CID is not something `ipfs add` produces.
    #[error("{cid} is not a UnixFS CID (dag-pb or raw, sha2-256)")]
    NotUnixFs {
        /// The CID.
        cid: Cid,
    },
    /// The CAR's header does not name the expected root.
    #[error("the CAR's roots {roots:?} do not include {expected}")]
    RootNotInHeader {
        /// The CID asked for.
        expected: Cid,
        /// The roots the header names.
        roots: Vec<Cid>,
    },
    /// A block reachable from the root is missing from the CAR.
    #[error("block {cid} (linked from {parent}) is missing from the CAR")]
    MissingBlock {
        /// The missing block.
        cid: Cid,
        /// The block linking to it (the root links to itself).
        parent: Cid,
    },
    /// A dag-pb block does not decode.
    #[error("block #{index} ({cid}) is not valid dag-pb: {source}")]
    BadBlock {
        /// 0-based position in the CAR.
        index: u64,
        /// The block.
        cid: Cid,
        /// The decoding error.
        source: PbError,
    },
}

/// What a verified CAR holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CarSummary {
    /// Blocks in the CAR.
    pub blocks: u64,
    /// Blocks reachable from the verified root.
    pub reachable: u64,
    /// Bytes of the CAR read.
    pub bytes: u64,
}

/// Checks that `path` (file or tree) has the UnixFS CID `expected`.
///
/// A CIDv0 is checked with kubo's default profile, a CIDv1 with
/// `--cid-version=1`, and also as a CIDv0 written in v1 form
/// (`ipfs cid base32`).
pub fn verify_path(path: &Path, expected: &Cid) -> Result<(), VerifyError> {
    check_unixfs_cid(expected)?;
    let primary = match expected.version() {
        Version::V0 => Profile::V0Default,
        Version::V1 => Profile::V1RawLeaves,
    };
    let actual = import_path(path, primary)?;
    if actual == *expected {
        return Ok(());
    }
    if expected.version() == Version::V1 && expected.codec() == DAG_PB {
        let v0 = import_path(path, Profile::V0Default)?;
        if v0.hash() == expected.hash() {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch {
        path: path.to_path_buf(),
        expected: *expected,
        actual,
    })
}

fn check_unixfs_cid(cid: &Cid) -> Result<(), VerifyError> {
    let codec_ok = cid.codec() == DAG_PB || cid.codec() == RAW;
    if codec_ok && cid.hash().code() == super::SHA2_256 {
        Ok(())
    } else {
        Err(VerifyError::NotUnixFs { cid: *cid })
    }
}

/// Streams a CAR and checks it holds the complete, intact DAG of `expected`.
pub fn verify_car<R: Read>(reader: R, expected: &Cid) -> Result<CarSummary, VerifyError> {
    let mut car = CarReader::new(reader)?;
    if !car.roots().contains(expected) {
        return Err(VerifyError::RootNotInHeader {
            expected: *expected,
            roots: car.roots().to_vec(),
        });
    }
    let mut present = HashSet::new();
    let mut links: HashMap<Cid, Vec<Cid>> = HashMap::new();
    let mut index = 0;
    while let Some((cid, data)) = car.next_block()? {
        present.insert(cid);
        if cid.codec() == DAG_PB {
            let bad = |source| VerifyError::BadBlock { index, cid, source };
            let node = PbNode::decode(data).map_err(bad)?;
            let children = node
                .links
                .iter()
                .map(|l| {
                    Cid::try_from(l.hash).map_err(|_| {
                        bad(PbError::Invalid {
                            message: "PBLink",
                            reason: "Hash is not a CID",
                        })
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            links.insert(cid, children);
        }
        index += 1;
    }
    // Every block reachable from the root must be present.
    let mut reachable = HashSet::from([*expected]);
    let mut stack = vec![(*expected, *expected)];
    while let Some((cid, parent)) = stack.pop() {
        if !present.contains(&cid) {
            return Err(VerifyError::MissingBlock { cid, parent });
        }
        for child in links.get(&cid).into_iter().flatten() {
            if reachable.insert(*child) {
                stack.push((*child, cid));
            }
        }
    }
    Ok(CarSummary {
        blocks: car.blocks_read(),
        reachable: reachable.len() as u64,
        bytes: car.position(),
    })
}

/// Compares `path` with the expected DAG of `expected` held in a CAR and
/// names the first file or directory entry that differs.
pub fn diff_path_against_car<R: Read>(
    path: &Path,
    car: R,
    expected: &Cid,
) -> Result<(), VerifyError> {
    check_unixfs_cid(expected)?;
    let blocks = read_directory_blocks(car)?;
    let profile = match expected.version() {
        Version::V0 => Profile::V0Default,
        Version::V1 => Profile::V1RawLeaves,
    };
    diff(path, expected, &blocks, profile)
}

/// The directory nodes of a CAR (all we need to descend), checked on the way.
fn read_directory_blocks<R: Read>(car: R) -> Result<HashMap<Cid, Vec<u8>>, VerifyError> {
    let mut reader = CarReader::new(car)?;
    let mut dirs = HashMap::new();
    while let Some((cid, data)) = reader.next_block()? {
        if cid.codec() != DAG_PB {
            continue;
        }
        let is_dir = PbNode::decode(data)
            .ok()
            .and_then(|n| n.data.and_then(|d| UnixFsData::decode(d).ok()))
            .is_some_and(|u| u.kind == DataType::Directory);
        if is_dir {
            dirs.insert(cid, data.to_vec());
        }
    }
    Ok(dirs)
}

fn diff(
    path: &Path,
    expected: &Cid,
    dirs: &HashMap<Cid, Vec<u8>>,
    profile: Profile,
) -> Result<(), VerifyError> {
    let actual = import_path(path, profile)?;
    if actual == *expected {
        return Ok(());
    }
    let mismatch = || VerifyError::Mismatch {
        path: path.to_path_buf(),
        expected: *expected,
        actual,
    };
    // Descend only where both sides are directories; otherwise this is the culprit.
    let (Some(block), true) = (dirs.get(expected), path.is_dir()) else {
        return Err(mismatch());
    };
    let node = PbNode::decode(block).map_err(|_| mismatch())?;
    let mut expected_names = HashSet::new();
    for link in &node.links {
        let name = link.name.unwrap_or_default();
        let child = Cid::try_from(link.hash).map_err(|_| mismatch())?;
        if !is_safe_name(name) {
            return Err(mismatch());
        }
        expected_names.insert(name.to_string());
        let child_path = path.join(name);
        if fs::symlink_metadata(&child_path).is_err() {
            return Err(VerifyError::EntryMismatch {
                path: child_path,
                what: "missing on disk",
            });
        }
        diff(&child_path, &child, dirs, profile)?;
    }
    for entry in fs::read_dir(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })? {
        let entry = entry.map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !expected_names.contains(&name) {
            return Err(VerifyError::EntryMismatch {
                path: entry.path(),
                what: "not in the expected DAG",
            });
        }
    }
    Err(mismatch())
}
