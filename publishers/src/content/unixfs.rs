//! The UnixFS importer: files and directory trees to a DAG whose root CID is
//! the one kubo's `ipfs add` prints.
//!
//! Files are cut into fixed-size chunks and laid out as kubo's balanced DAG
//! (go-unixfs `balanced.Layout`): every leaf sits at the same depth, a node
//! is closed once it has `max_links` children, a one-chunk file is just its
//! leaf, and a lone trailing chunk still gets its own internal node. The
//! builder keeps one open node per level, so memory is one chunk plus
//! `max_links` links per level, whatever the file size.
//!
//! Directories are plain UnixFS directory nodes with links sorted by name.
//! kubo turns a directory into a HAMT shard once the sum of its links'
//! `len(name) + len(cid)` reaches 256 KiB; we do not build HAMTs, so such a
//! directory is an error rather than a CID that kubo would not print.
//! Hidden files are included (kubo skips them unless `--hidden` is given);
//! symlinks become UnixFS symlink nodes as in kubo; other special files are
//! refused.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cid::Version;

use super::pb::{self, DataType, PbLink, PbNode, UnixFsData};
use super::{
    BlockSink, Cid, DAG_PB, HAMT_SHARDING_SIZE, ImportOptions, MAX_CHUNK_SIZE, NullSink, RAW,
    block_cid,
};

/// Deepest directory nesting we follow before giving up.
const MAX_DIR_DEPTH: usize = 512;
/// Room before and after a chunk in the leaf buffer for the dag-pb framing.
const FRAME_ROOM: usize = 16;

/// Why a path or stream could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading a file or directory failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Reading an in-memory or streamed input failed.
    #[error("cannot read input: {0}")]
    Read(io::Error),
    /// The block sink (CAR writer, store) refused a block.
    #[error("cannot store block: {0}")]
    Sink(io::Error),
    /// A file name that UnixFS cannot hold.
    #[error("{}: file name is not valid UTF-8; rename it", path.display())]
    NonUtf8Name {
        /// The offending entry.
        path: PathBuf,
    },
    /// A directory kubo would store as a HAMT shard.
    #[error(
        "{}: directory too large ({estimated_size} estimated bytes of links >= {HAMT_SHARDING_SIZE}); \
         kubo would shard it as a HAMT, which is not supported: split it into subdirectories",
        path.display()
    )]
    NeedsSharding {
        /// The directory.
        path: PathBuf,
        /// Sum of `len(name) + len(cid)` over its links.
        estimated_size: usize,
    },
    /// Not a regular file, directory or symlink (a FIFO, socket, device).
    #[error("{}: unsupported file type (only files, directories and symlinks can be added)", path.display())]
    UnsupportedFileType {
        /// The offending entry.
        path: PathBuf,
    },
    /// Directories nested deeper than we follow.
    #[error("{}: directories nested more than {MAX_DIR_DEPTH} levels deep", path.display())]
    TooDeep {
        /// The directory where we stopped.
        path: PathBuf,
    },
    /// Settings kubo itself would refuse.
    #[error("invalid import options: {0}")]
    InvalidOptions(&'static str),
}

/// One imported node: its CID and the sizes a parent link needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Root CID of the file, directory or symlink.
    pub cid: Cid,
    /// Serialized size of the whole DAG under (and including) this node.
    pub tsize: u64,
    /// File bytes it holds (sum over the tree for a directory).
    pub content_size: u64,
}

/// The root CID of one regular file, as `ipfs add FILE` prints it (a
/// symlink is followed here; [`import_path`] adds the link itself, as kubo does).
pub fn import_file(path: &Path, options: impl Into<ImportOptions>) -> Result<Cid, ImportError> {
    let mut importer = Importer::new(options.into(), NullSink)?;
    Ok(importer.file(path)?.cid)
}

/// The root CID of a file, directory tree or symlink, as `ipfs add -r PATH` prints it.
pub fn import_path(path: &Path, options: impl Into<ImportOptions>) -> Result<Cid, ImportError> {
    Ok(import_path_to_sink(path, options, &mut NullSink)?.cid)
}

/// Imports `path` and hands every block to `sink` (children before parents).
pub fn import_path_to_sink<S: BlockSink>(
    path: &Path,
    options: impl Into<ImportOptions>,
    sink: &mut S,
) -> Result<Imported, ImportError> {
    let mut importer = Importer::new(options.into(), sink)?;
    importer.path(path, 0)
}

/// Imports a byte stream as one file and hands every block to `sink`.
pub fn import_reader<R: Read, S: BlockSink>(
    reader: R,
    options: impl Into<ImportOptions>,
    sink: &mut S,
) -> Result<Imported, ImportError> {
    let options = options.into();
    let mut leaves = LeafEncoder::new(options)?;
    file_dag(reader, &mut leaves, sink).map_err(|e| match e {
        FileDagError::Read(e) => ImportError::Read(e),
        FileDagError::Sink(e) => ImportError::Sink(e),
    })
}

/// Checks settings the way kubo does before building anything.
pub(crate) fn validate(options: &ImportOptions) -> Result<(), ImportError> {
    if options.chunk_size == 0 || options.chunk_size > MAX_CHUNK_SIZE {
        return Err(ImportError::InvalidOptions(
            "chunk size must be between 1 byte and 1 MiB",
        ));
    }
    if options.max_links < 2 {
        return Err(ImportError::InvalidOptions(
            "a file node needs room for at least 2 links",
        ));
    }
    if options.raw_leaves && options.cid_version == Version::V0 {
        return Err(ImportError::InvalidOptions("raw leaves need CIDv1"));
    }
    Ok(())
}

/// Walks a path and feeds the sink; owns the one reusable chunk buffer.
struct Importer<S: BlockSink> {
    leaves: LeafEncoder,
    sink: S,
}

impl<S: BlockSink> Importer<S> {
    fn new(options: ImportOptions, sink: S) -> Result<Self, ImportError> {
        Ok(Importer {
            leaves: LeafEncoder::new(options)?,
            sink,
        })
    }

    fn path(&mut self, path: &Path, depth: usize) -> Result<Imported, ImportError> {
        let meta = fs::symlink_metadata(path).map_err(|source| io_at(path, source))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            self.directory(path, depth)
        } else if kind.is_file() {
            self.file(path)
        } else if kind.is_symlink() {
            self.symlink(path)
        } else {
            Err(ImportError::UnsupportedFileType {
                path: path.to_path_buf(),
            })
        }
    }

    fn file(&mut self, path: &Path) -> Result<Imported, ImportError> {
        let file = File::open(path).map_err(|source| io_at(path, source))?;
        file_dag(file, &mut self.leaves, &mut self.sink).map_err(|e| match e {
            FileDagError::Read(source) => io_at(path, source),
            FileDagError::Sink(e) => ImportError::Sink(e),
        })
    }

    fn symlink(&mut self, path: &Path) -> Result<Imported, ImportError> {
        let target = fs::read_link(path).map_err(|source| io_at(path, source))?;
        let mut unixfs = UnixFsData::new(DataType::Symlink);
        unixfs.data = Some(target.as_os_str().as_encoded_bytes());
        let data = pb::encode(&unixfs);
        let block = pb::encode(&PbNode {
            links: Vec::new(),
            data: Some(&data),
        });
        let cid = block_cid(self.leaves.options.cid_version, DAG_PB, &block);
        self.sink.put(&cid, &block).map_err(ImportError::Sink)?;
        Ok(Imported {
            cid,
            tsize: block.len() as u64,
            content_size: 0,
        })
    }

    fn directory(&mut self, path: &Path, depth: usize) -> Result<Imported, ImportError> {
        if depth >= MAX_DIR_DEPTH {
            return Err(ImportError::TooDeep {
                path: path.to_path_buf(),
            });
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(path).map_err(|source| io_at(path, source))? {
            let entry = entry.map_err(|source| io_at(path, source))?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| ImportError::NonUtf8Name { path: entry.path() })?;
            names.push(name);
        }
        // kubo (go-merkledag) sorts directory links by the bytes of their names.
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));

        let mut children = Vec::with_capacity(names.len());
        let mut estimated_size = 0;
        for name in names {
            let child = self.path(&path.join(&name), depth + 1)?;
            estimated_size += name.len() + child.cid.encoded_len();
            if estimated_size >= HAMT_SHARDING_SIZE {
                return Err(ImportError::NeedsSharding {
                    path: path.to_path_buf(),
                    estimated_size,
                });
            }
            children.push((name, child));
        }
        let (block, cid) = directory_block(self.leaves.options.cid_version, &children);
        self.sink.put(&cid, &block).map_err(ImportError::Sink)?;
        Ok(Imported {
            cid,
            tsize: block.len() as u64 + children.iter().map(|(_, c)| c.tsize).sum::<u64>(),
            content_size: children.iter().map(|(_, c)| c.content_size).sum(),
        })
    }
}

fn io_at(path: &Path, source: io::Error) -> ImportError {
    ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Encodes a UnixFS directory node over `(name, child)` entries sorted by name.
pub(crate) fn directory_block(version: Version, children: &[(String, Imported)]) -> (Vec<u8>, Cid) {
    let hashes: Vec<Vec<u8>> = children.iter().map(|(_, c)| c.cid.to_bytes()).collect();
    let links = children
        .iter()
        .zip(&hashes)
        .map(|((name, child), hash)| PbLink {
            hash,
            name: Some(name),
            tsize: Some(child.tsize),
        })
        .collect();
    let data = pb::encode(&UnixFsData::new(DataType::Directory));
    let block = pb::encode(&PbNode {
        links,
        data: Some(&data),
    });
    let cid = block_cid(version, DAG_PB, &block);
    (block, cid)
}

/// Why building a file DAG stopped: the input or the sink.
pub(crate) enum FileDagError {
    Read(io::Error),
    Sink(io::Error),
}

/// Builds the balanced file DAG of `reader`'s bytes.
pub(crate) fn file_dag<R: Read, S: BlockSink>(
    mut reader: R,
    leaves: &mut LeafEncoder,
    sink: &mut S,
) -> Result<Imported, FileDagError> {
    let mut layout = Balanced::new(leaves.options);
    loop {
        let n = leaves
            .read_chunk(&mut reader, leaves.options.chunk_size)
            .map_err(FileDagError::Read)?;
        // An empty input still yields one (empty) leaf; otherwise EOF ends the file.
        if n == 0 && layout.leaves > 0 {
            break;
        }
        let (cid, block) = leaves.leaf(n);
        sink.put(&cid, block).map_err(FileDagError::Sink)?;
        let leaf = Imported {
            cid,
            tsize: block.len() as u64,
            content_size: n as u64,
        };
        layout.push_leaf(leaf, sink).map_err(FileDagError::Sink)?;
        if n < leaves.options.chunk_size {
            break;
        }
    }
    layout.finish(sink).map_err(FileDagError::Sink)
}

/// Builds leaf blocks in place around chunks read into one reusable buffer.
pub(crate) struct LeafEncoder {
    pub(crate) options: ImportOptions,
    buf: Vec<u8>,
}

impl LeafEncoder {
    pub(crate) fn new(options: ImportOptions) -> Result<Self, ImportError> {
        validate(&options)?;
        let buf = vec![0; FRAME_ROOM + options.chunk_size + FRAME_ROOM];
        Ok(LeafEncoder { options, buf })
    }

    /// Reads up to `want` (at most the chunk size) bytes, stopping early only at EOF.
    pub(crate) fn read_chunk(&mut self, reader: &mut impl Read, want: usize) -> io::Result<usize> {
        let want = want.min(self.options.chunk_size);
        let region = &mut self.buf[FRAME_ROOM..FRAME_ROOM + want];
        let mut filled = 0;
        while filled < want {
            match reader.read(&mut region[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }

    /// The leaf block (and its CID) for the `n` bytes just read.
    pub(crate) fn leaf(&mut self, n: usize) -> (Cid, &[u8]) {
        let start = FRAME_ROOM;
        if self.options.raw_leaves {
            let block = &self.buf[start..start + n];
            return (block_cid(Version::V1, RAW, block), block);
        }
        let (prefix, suffix) = pb::file_leaf_frame(n);
        let first = start - prefix.len();
        self.buf[first..start].copy_from_slice(&prefix);
        self.buf[start + n..start + n + suffix.len()].copy_from_slice(&suffix);
        let block = &self.buf[first..start + n + suffix.len()];
        (block_cid(self.options.cid_version, DAG_PB, block), block)
    }
}

/// kubo's balanced layout, built bottom-up one leaf at a time.
///
/// `levels[0]` holds the links of the open depth-1 node, `levels[1]` those of
/// the open depth-2 node, and so on. A node is closed as soon as it is full,
/// which reproduces go-unixfs's depth-first `fillNodeRec`.
struct Balanced {
    options: ImportOptions,
    levels: Vec<Vec<Imported>>,
    leaves: u64,
}

impl Balanced {
    fn new(options: ImportOptions) -> Self {
        Balanced {
            options,
            levels: Vec::new(),
            leaves: 0,
        }
    }

    fn push_leaf<S: BlockSink>(&mut self, leaf: Imported, sink: &mut S) -> io::Result<()> {
        self.leaves += 1;
        self.push(0, leaf, sink)
    }

    fn push<S: BlockSink>(
        &mut self,
        mut level: usize,
        mut child: Imported,
        sink: &mut S,
    ) -> io::Result<()> {
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::with_capacity(self.options.max_links));
            }
            self.levels[level].push(child);
            if self.levels[level].len() < self.options.max_links {
                return Ok(());
            }
            child = self.close(level, sink)?;
            level += 1;
        }
    }

    /// Closes the open node at `level` into a block and returns its link.
    fn close<S: BlockSink>(&mut self, level: usize, sink: &mut S) -> io::Result<Imported> {
        let children = std::mem::take(&mut self.levels[level]);
        let (block, cid) = file_node_block(self.options.cid_version, &children);
        sink.put(&cid, &block)?;
        Ok(Imported {
            cid,
            tsize: block.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>(),
            content_size: children.iter().map(|c| c.content_size).sum(),
        })
    }

    fn finish<S: BlockSink>(mut self, sink: &mut S) -> io::Result<Imported> {
        // Close every partly filled node below the top, bottom up; a push may
        // fill (and close) a parent on the way.
        let mut level = 0;
        while level + 1 < self.levels.len() {
            if !self.levels[level].is_empty() {
                let node = self.close(level, sink)?;
                self.push(level + 1, node, sink)?;
            }
            level += 1;
        }
        let top = self.levels.len().saturating_sub(1);
        match self.levels.get(top).map(Vec::len) {
            // A single leaf is the whole file; a single closed node is the root.
            Some(1) => Ok(self.levels[top].remove(0)),
            Some(_) => self.close(top, sink),
            None => Err(io::Error::other("a file DAG needs at least one leaf")),
        }
    }
}

/// Encodes an internal file node: `Data{Type: File, filesize, blocksizes}`
/// and one unnamed link per child.
fn file_node_block(version: Version, children: &[Imported]) -> (Vec<u8>, Cid) {
    let hashes: Vec<Vec<u8>> = children.iter().map(|c| c.cid.to_bytes()).collect();
    let links = children
        .iter()
        .zip(&hashes)
        .map(|(child, hash)| PbLink {
            hash,
            name: Some(""),
            tsize: Some(child.tsize),
        })
        .collect();
    let mut unixfs = UnixFsData::new(DataType::File);
    unixfs.filesize = Some(children.iter().map(|c| c.content_size).sum());
    unixfs.blocksizes = children.iter().map(|c| c.content_size).collect();
    let data = pb::encode(&unixfs);
    let block = pb::encode(&PbNode {
        links,
        data: Some(&data),
    });
    let cid = block_cid(version, DAG_PB, &block);
    (block, cid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Profile;

    fn cid_of(bytes: &[u8], profile: Profile) -> String {
        import_reader(bytes, profile, &mut NullSink)
            .map(|i| i.cid.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn kubo_sharness_single_files() {
        // kubo test/sharness/t0040-add-and-cat.sh: `ipfs add` of small files.
        assert_eq!(
            cid_of(b"Hello Worlds!\n", Profile::V0Default),
            "QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH"
        );
        assert_eq!(
            cid_of(b"Helloo Worlds!\n", Profile::V0Default),
            "Qmf35k66MZNW2GijohUmXQEWKZU4cCGTCwK6idfnt152wJ"
        );
        assert_eq!(
            cid_of(b"Hello Venus!\n", Profile::V0Default),
            "QmU5kp3BH3B8tnWUU2Pikdb2maksBNkb92FHRr56hyghh4"
        );
        assert_eq!(
            cid_of(b"", Profile::V0Default),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        // `ipfs add --cid-version=1` (raw leaves): a one-chunk file is its raw leaf.
        assert_eq!(
            cid_of(b"", Profile::V1RawLeaves),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(
            cid_of(b"Hello Mars!\n", Profile::V1RawLeaves),
            "bafkreibmlvvgdyihetgocpof6xk64kjjzdeq2e4c7hqs3krdheosk4tgj4"
        );
    }

    #[test]
    fn tsize_and_sizes_add_up_across_levels() {
        let options = ImportOptions {
            chunk_size: 4,
            max_links: 2,
            ..Profile::V0Default.options()
        };
        let imported = import_reader(&[1u8; 13][..], options, &mut NullSink).ok();
        assert_eq!(imported.as_ref().map(|i| i.content_size), Some(13));
        // 4 leaves of (8-byte frame + data) => tsize larger than the data.
        assert!(imported.is_some_and(|i| i.tsize > 13 + 4 * 8));
    }

    #[test]
    fn options_kubo_refuses_are_refused() {
        let bad = [
            ImportOptions {
                chunk_size: 0,
                ..Profile::V0Default.options()
            },
            ImportOptions {
                chunk_size: MAX_CHUNK_SIZE + 1,
                ..Profile::V0Default.options()
            },
            ImportOptions {
                max_links: 1,
                ..Profile::V0Default.options()
            },
            ImportOptions {
                raw_leaves: true,
                ..Profile::V0Default.options()
            },
        ];
        for options in bad {
            assert!(matches!(
                validate(&options),
                Err(ImportError::InvalidOptions(_))
            ));
        }
    }
}
