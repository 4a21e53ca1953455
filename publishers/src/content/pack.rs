//! A file or directory tree written as a CARv1 in DAG order.
//!
//! The CAR lists the root first and then walks the DAG depth-first in link
//! order, each block once (the order `ipfs dag export` uses), so a reader
//! can check blocks as they stream in. The root CID must be in the header
//! before any block, so this takes two passes over the data:
//!
//! 1. import the path, keeping only the internal nodes (directory and file
//!    nodes with links: about 50 bytes per 256 KiB chunk) in memory;
//! 2. walk the DAG from the root, writing internal nodes from memory and
//!    re-reading file chunks from disk; every re-read chunk must hash to the
//!    CID from pass 1, so a file that changes in between is an error, never
//!    a CAR with blocks that do not match their CIDs.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::car::{CarError, CarWriter};
use super::pb::{DataType, PbError, PbNode, UnixFsData};
use super::unixfs::{ImportError, LeafEncoder, import_path_to_sink};
use super::{BlockSink, Cid, ImportOptions, RAW};

/// Why a CAR could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Importing the path failed.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// Writing the CAR failed.
    #[error(transparent)]
    Car(#[from] CarError),
    /// Re-reading a file failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file's content changed between the two passes.
    #[error("{} changed while the CAR was being written; write it again", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// A block from pass 1 did not decode (a bug, not an input problem).
    #[error("internal node {cid} does not decode: {source}")]
    Internal {
        /// The block.
        cid: Cid,
        /// The decoding error.
        source: PbError,
    },
}

/// What [`write_car`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// Root CID (the only root in the header).
    pub root: Cid,
    /// Distinct blocks written.
    pub blocks: u64,
    /// Bytes of CAR written.
    pub car_bytes: u64,
}

/// Writes `path` (file, directory tree or symlink) to `out` as a CARv1 in
/// DAG order and returns the root CID with the writer, flushed.
pub fn write_car<W: Write>(
    path: &Path,
    options: impl Into<ImportOptions>,
    out: W,
) -> Result<(Packed, W), PackError> {
    let options = options.into();
    let mut interior = InteriorNodes::default();
    let root = import_path_to_sink(path, options, &mut interior)?.cid;

    let mut walk = Walk {
        car: CarWriter::new(out, &[root])?,
        interior: interior.blocks,
        leaves: LeafEncoder::new(options)?,
        blocks: 0,
    };
    walk.node(&root, path)?;
    let car_bytes = walk.car.bytes_written();
    let blocks = walk.blocks;
    let out = walk.car.finish().map_err(CarError::Io)?;
    Ok((
        Packed {
            root,
            blocks,
            car_bytes,
        },
        out,
    ))
}

/// Pass-1 sink: keeps every block except file data leaves.
#[derive(Default)]
struct InteriorNodes {
    blocks: HashMap<Cid, Vec<u8>>,
}

impl BlockSink for InteriorNodes {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> io::Result<()> {
        if !is_file_leaf(cid, data) {
            self.blocks.entry(*cid).or_insert_with(|| data.to_vec());
        }
        Ok(())
    }
}

/// A raw block, or a dag-pb UnixFS file node without links.
fn is_file_leaf(cid: &Cid, data: &[u8]) -> bool {
    if cid.codec() == RAW {
        return true;
    }
    match PbNode::decode(data) {
        Ok(node) if node.links.is_empty() => node
            .data
            .and_then(|d| UnixFsData::decode(d).ok())
            .is_some_and(|u| matches!(u.kind, DataType::File | DataType::Raw)),
        _ => false,
    }
}

/// Pass 2: the depth-first walk that writes the CAR.
struct Walk<W: Write> {
    car: CarWriter<W>,
    interior: HashMap<Cid, Vec<u8>>,
    leaves: LeafEncoder,
    blocks: u64,
}

impl<W: Write> Walk<W> {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> Result<(), PackError> {
        if self.car.put(cid, data).map_err(CarError::Io)? {
            self.blocks += 1;
        }
        Ok(())
    }

    /// Writes the node `cid` found at `path`, then its children.
    fn node(&mut self, cid: &Cid, path: &Path) -> Result<(), PackError> {
        if self.car.contains(cid) {
            return Ok(());
        }
        // A block is written once, so it can leave the map when it is.
        let Some(block) = self.interior.remove(cid) else {
            return self.single_leaf_file(cid, path);
        };
        self.put(cid, &block)?;
        let internal = |source| PackError::Internal { cid: *cid, source };
        let node = PbNode::decode(&block).map_err(internal)?;
        let unixfs = UnixFsData::decode(node.data.unwrap_or_default()).map_err(internal)?;
        match unixfs.kind {
            DataType::Directory => {
                for link in &node.links {
                    let child = link_cid(cid, link.hash)?;
                    self.node(&child, &path.join(link.name.unwrap_or_default()))?;
                }
                Ok(())
            }
            DataType::File => {
                let mut file = File::open(path).map_err(|source| io_at(path, source))?;
                self.file_children(cid, &node, &unixfs, &mut file, path)
            }
            _ => Ok(()), // symlinks have no children
        }
    }

    /// Writes the chunks under a file node, reading them from `file` in order.
    fn file_children(
        &mut self,
        cid: &Cid,
        node: &PbNode,
        unixfs: &UnixFsData,
        file: &mut File,
        path: &Path,
    ) -> Result<(), PackError> {
        for (link, &size) in node.links.iter().zip(&unixfs.blocksizes) {
            let child = link_cid(cid, link.hash)?;
            if self.car.contains(&child) {
                // Same bytes as a subtree already written: skip them.
                let offset =
                    i64::try_from(size).map_err(|_| PackError::Changed { path: path.into() })?;
                file.seek(SeekFrom::Current(offset))
                    .map_err(|source| io_at(path, source))?;
                continue;
            }
            if let Some(block) = self.interior.remove(&child) {
                self.put(&child, &block)?;
                let internal = |source| PackError::Internal { cid: child, source };
                let child_node = PbNode::decode(&block).map_err(internal)?;
                let child_unixfs =
                    UnixFsData::decode(child_node.data.unwrap_or_default()).map_err(internal)?;
                self.file_children(&child, &child_node, &child_unixfs, file, path)?;
                continue;
            }
            let want = usize::try_from(size).unwrap_or(usize::MAX);
            let n = self
                .leaves
                .read_chunk(file, want)
                .map_err(|source| io_at(path, source))?;
            let (leaf_cid, leaf) = self.leaves.leaf(n);
            if n != want || leaf_cid != child {
                return Err(PackError::Changed { path: path.into() });
            }
            // Field borrows, not `self.put`: the leaf lives in `self.leaves`.
            if self.car.put(&child, leaf).map_err(CarError::Io)? {
                self.blocks += 1;
            }
        }
        Ok(())
    }

    /// A file of at most one chunk: its leaf is the file node.
    fn single_leaf_file(&mut self, cid: &Cid, path: &Path) -> Result<(), PackError> {
        let mut file = File::open(path).map_err(|source| io_at(path, source))?;
        let chunk_size = self.leaves.options.chunk_size;
        let n = self
            .leaves
            .read_chunk(&mut file, chunk_size)
            .map_err(|source| io_at(path, source))?;
        let grew = file
            .read(&mut [0u8; 1])
            .map_err(|source| io_at(path, source))?
            > 0;
        let (leaf_cid, leaf) = self.leaves.leaf(n);
        if grew || leaf_cid != *cid {
            return Err(PackError::Changed { path: path.into() });
        }
        if self.car.put(cid, leaf).map_err(CarError::Io)? {
            self.blocks += 1;
        }
        Ok(())
    }
}

fn link_cid(parent: &Cid, hash: &[u8]) -> Result<Cid, PackError> {
    Cid::try_from(hash).map_err(|_| PackError::Internal {
        cid: *parent,
        source: PbError::Invalid {
            message: "PBLink",
            reason: "Hash is not a CID",
        },
    })
}

fn io_at(path: &Path, source: io::Error) -> PackError {
    PackError::Io {
        path: path.to_path_buf(),
        source,
    }
}
