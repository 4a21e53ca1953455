//! A UnixFS file or directory written back out of a CAR to a path.
//!
//! The CAR is indexed once (every block checked against its CID on the
//! way), then the DAG is walked from the root, each block read again by
//! offset and checked again. Output never escapes the target path: entry
//! names that are empty, `.`, `..` or contain `/`, `\` or NUL are refused,
//! duplicate names are refused, and every file and directory is created
//! new (`O_EXCL`), so nothing existing is overwritten or followed through a
//! symlink. Symlink nodes and HAMT-sharded directories are refused rather
//! than half exported. A failed export may leave a partial tree behind.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::car::{CarError, CarReader};
use super::pb::{DataType, PbError, PbNode, UnixFsData};
use super::{Cid, DAG_PB, RAW, cid_matches};

/// Deepest DAG (directories plus file levels) we follow.
const MAX_DEPTH: usize = 1024;

/// Why a CAR could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The CAR is unreadable or a block is forged.
    #[error(transparent)]
    Car(#[from] CarError),
    /// Reading the CAR again by offset failed.
    #[error("cannot re-read the CAR: {0}")]
    Read(io::Error),
    /// Writing the output failed (it may already exist).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A block the DAG needs is not in the CAR.
    #[error("block {cid} (needed for {}) is not in the CAR", path.display())]
    MissingBlock {
        /// The missing CID.
        cid: Cid,
        /// Where it would have gone.
        path: PathBuf,
    },
    /// A block changed between indexing and export.
    #[error("block {cid} no longer matches its CID; was the CAR modified?")]
    Changed {
        /// The block.
        cid: Cid,
    },
    /// A block is not valid dag-pb / UnixFS.
    #[error("block {cid} (for {}): {source}", path.display())]
    BadNode {
        /// The block.
        cid: Cid,
        /// Where it would have gone.
        path: PathBuf,
        /// The decoding error.
        source: PbError,
    },
    /// A directory entry name that could escape the output or clash.
    #[error("directory {} has an unsafe or duplicate entry name {name:?}", path.display())]
    BadName {
        /// The directory.
        path: PathBuf,
        /// The name as found.
        name: String,
    },
    /// A node kind we do not export.
    #[error("{}: cannot export {what}", path.display())]
    Unsupported {
        /// Where it would have gone.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// A file whose blocks do not add up to its declared size.
    #[error("{}: file blocks hold {actual} bytes but the file node says {declared}", path.display())]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Bytes the UnixFS node declares.
        declared: u64,
        /// Bytes its blocks hold.
        actual: u64,
    },
    /// A DAG deeper than we follow.
    #[error("{}: DAG deeper than {MAX_DEPTH} levels", path.display())]
    TooDeep {
        /// Where we stopped.
        path: PathBuf,
    },
}

/// What [`export_car`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Regular files written.
    pub files: u64,
    /// Directories created (the root included, if it is one).
    pub directories: u64,
    /// File bytes written.
    pub bytes: u64,
}

/// Writes the UnixFS DAG under `root` from a CAR to the new path `out`
/// (like `ipfs get -o out`): a file, or a directory tree. `out` must not
/// exist; its parent must.
pub fn export_car<R: Read + Seek>(
    mut car: R,
    root: &Cid,
    out: &Path,
) -> Result<ExportSummary, ExportError> {
    let start = car.stream_position().map_err(ExportError::Read)?;
    let mut index = HashMap::new();
    {
        let mut reader = CarReader::new(&mut car)?;
        while let Some((cid, _)) = reader.next_block()? {
            let (offset, len) = reader.last_block_span();
            index.insert(cid, (start + offset, len));
        }
    }
    let mut export = Export {
        car,
        index,
        summary: ExportSummary::default(),
    };
    export.node(root, out, 0)?;
    Ok(export.summary)
}

struct Export<R> {
    car: R,
    index: HashMap<Cid, (u64, usize)>,
    summary: ExportSummary,
}

impl<R: Read + Seek> Export<R> {
    /// Reads a block by its indexed offset and checks it again.
    fn load(&mut self, cid: &Cid, path: &Path) -> Result<Vec<u8>, ExportError> {
        let &(offset, len) = self
            .index
            .get(cid)
            .ok_or_else(|| ExportError::MissingBlock {
                cid: *cid,
                path: path.to_path_buf(),
            })?;
        self.car
            .seek(SeekFrom::Start(offset))
            .map_err(ExportError::Read)?;
        let mut data = vec![0; len];
        self.car.read_exact(&mut data).map_err(ExportError::Read)?;
        if cid_matches(cid, &data) != Some(true) {
            return Err(ExportError::Changed { cid: *cid });
        }
        Ok(data)
    }

    fn node(&mut self, cid: &Cid, path: &Path, depth: usize) -> Result<(), ExportError> {
        if depth > MAX_DEPTH {
            return Err(ExportError::TooDeep {
                path: path.to_path_buf(),
            });
        }
        let block = self.load(cid, path)?;
        if cid.codec() == RAW {
            let mut out = create_file(path)?;
            write_all(&mut out, &block, path)?;
            return self.close_file(out, block.len() as u64, path);
        }
        let (node, unixfs) = decode(cid, &block, path)?;
        match unixfs.kind {
            DataType::Directory => self.directory(cid, &node, path, depth),
            DataType::File | DataType::Raw => {
                let mut out = create_file(path)?;
                let written = self.file_content(cid, &node, &unixfs, &mut out, path, depth)?;
                self.close_file(out, written, path)
            }
            DataType::Symlink => Err(unsupported(path, "a symlink")),
            DataType::HamtShard => Err(unsupported(path, "a HAMT-sharded directory")),
            DataType::Metadata => Err(unsupported(path, "a UnixFS metadata node")),
        }
    }

    fn directory(
        &mut self,
        cid: &Cid,
        node: &PbNode,
        path: &Path,
        depth: usize,
    ) -> Result<(), ExportError> {
        fs::create_dir(path).map_err(|source| ExportError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        self.summary.directories += 1;
        let mut names = HashSet::new();
        for link in &node.links {
            let name = link.name.unwrap_or_default();
            if !is_safe_name(name) || !names.insert(name) {
                return Err(ExportError::BadName {
                    path: path.to_path_buf(),
                    name: name.to_string(),
                });
            }
            let child = link_cid(cid, link.hash, path)?;
            self.node(&child, &path.join(name), depth + 1)?;
        }
        Ok(())
    }

    /// Writes a file node's own data and then its children's, in order.
    fn file_content(
        &mut self,
        cid: &Cid,
        node: &PbNode,
        unixfs: &UnixFsData,
        out: &mut impl Write,
        path: &Path,
        depth: usize,
    ) -> Result<u64, ExportError> {
        if depth > MAX_DEPTH {
            return Err(ExportError::TooDeep {
                path: path.to_path_buf(),
            });
        }
        let mut written = 0;
        if let Some(data) = unixfs.data {
            write_all(out, data, path)?;
            written += data.len() as u64;
        }
        for link in &node.links {
            let child = link_cid(cid, link.hash, path)?;
            let block = self.load(&child, path)?;
            if child.codec() == RAW {
                write_all(out, &block, path)?;
                written += block.len() as u64;
                continue;
            }
            let (child_node, child_unixfs) = decode(&child, &block, path)?;
            if !matches!(child_unixfs.kind, DataType::File | DataType::Raw) {
                return Err(unsupported(path, "a file chunk that is not a file node"));
            }
            written +=
                self.file_content(&child, &child_node, &child_unixfs, out, path, depth + 1)?;
        }
        if let Some(declared) = unixfs.filesize.filter(|&d| d != written) {
            return Err(ExportError::SizeMismatch {
                path: path.to_path_buf(),
                declared,
                actual: written,
            });
        }
        Ok(written)
    }

    fn close_file(
        &mut self,
        mut out: BufWriter<fs::File>,
        written: u64,
        path: &Path,
    ) -> Result<(), ExportError> {
        out.flush().map_err(|source| ExportError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        self.summary.files += 1;
        self.summary.bytes += written;
        Ok(())
    }
}

/// A name that stays inside its directory on any common filesystem.
pub(crate) fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

fn decode<'a>(
    cid: &Cid,
    block: &'a [u8],
    path: &Path,
) -> Result<(PbNode<'a>, UnixFsData<'a>), ExportError> {
    let bad = |source| ExportError::BadNode {
        cid: *cid,
        path: path.to_path_buf(),
        source,
    };
    if cid.codec() != DAG_PB {
        return Err(unsupported(
            path,
            &format!("a block with codec 0x{:x}", cid.codec()),
        ));
    }
    let node = PbNode::decode(block).map_err(bad)?;
    let data = node.data.ok_or_else(|| {
        bad(PbError::Invalid {
            message: "UnixFS node",
            reason: "no Data",
        })
    })?;
    let unixfs = UnixFsData::decode(data).map_err(bad)?;
    Ok((node, unixfs))
}

fn link_cid(parent: &Cid, hash: &[u8], path: &Path) -> Result<Cid, ExportError> {
    Cid::try_from(hash).map_err(|_| ExportError::BadNode {
        cid: *parent,
        path: path.to_path_buf(),
        source: PbError::Invalid {
            message: "PBLink",
            reason: "Hash is not a CID",
        },
    })
}

fn create_file(path: &Path) -> Result<BufWriter<fs::File>, ExportError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| ExportError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(BufWriter::with_capacity(256 * 1024, file))
}

fn write_all(out: &mut impl Write, data: &[u8], path: &Path) -> Result<(), ExportError> {
    out.write_all(data).map_err(|source| ExportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn unsupported(path: &Path, what: &str) -> ExportError {
    ExportError::Unsupported {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_are_unsafe() {
        for name in ["", ".", "..", "a/b", "/abs", "..\\x", "nul\0"] {
            assert!(!is_safe_name(name), "{name:?} should be unsafe");
        }
        for name in ["a", "..a", "a..", ".hidden", "ü.txt", "with space"] {
            assert!(is_safe_name(name), "{name:?} should be safe");
        }
    }
}
