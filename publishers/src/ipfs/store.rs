//! The node's persistent block store: content-addressed blocks in one redb
//! file, pins with optional expiry, garbage collection and a size limit.
//!
//! - Every block is checked against its CID on the way in (sha2-256 and
//!   identity hashes; anything else is refused), so whatever the store
//!   serves over Bitswap or the gateway hashes to the CID it is served as.
//! - A pin names a root; it keeps every block reachable from that root
//!   through dag-pb links. A pin may expire; [`BlockStore::gc`] drops expired
//!   pins and every block no live pin reaches.
//! - Blocks being imported are not reachable from any pin until their root
//!   (written last) is stored and pinned, so imports hold a [`Lease`] that
//!   keeps the blocks put through it from being collected meanwhile.
//! - With a size limit, a put that would go over it first runs a gc, and
//!   fails with [`StoreError::Full`] if that did not free enough.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::content::pb::PbNode;
use crate::content::{
    BlockSink, CarWriter, Cid, DAG_PB, ImportError, Profile, cid_matches, import_path_to_sink,
};

/// CID bytes -> block bytes.
const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
/// Root CID bytes -> expiry in seconds since the Unix epoch ([`FOREVER`] = never).
const PINS: TableDefinition<&[u8], u64> = TableDefinition::new("pins");
/// Counters kept in step with `BLOCKS` in the same transactions.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `META` key: sum of the lengths of all stored blocks.
const USED_BYTES: &str = "used_bytes";
/// Pin expiry meaning "until unpinned".
const FOREVER: u64 = u64::MAX;
/// Blocks an import buffers before writing them in one transaction.
const IMPORT_BATCH_BYTES: usize = 8 << 20;

/// File name of the block store inside a node home.
pub const STORE_FILE: &str = "blocks.redb";

/// What went wrong in the block store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (usually the running node) has the store open.
    #[error(
        "block store {} is in use by another process (a running shoal-node?); stop it first",
        path.display()
    )]
    InUse {
        /// The store file.
        path: PathBuf,
    },
    /// The database failed.
    #[error("block store: {0}")]
    Db(String),
    /// A block whose bytes do not hash to its CID.
    #[error("block {cid}: content does not match its CID")]
    HashMismatch {
        /// The CID claimed.
        cid: Cid,
    },
    /// A CID whose hash function we cannot check.
    #[error(
        "block {cid}: unsupported hash function 0x{code:x}; only sha2-256 and identity are accepted"
    )]
    UnsupportedHash {
        /// The CID.
        cid: Cid,
        /// Its multihash code.
        code: u64,
    },
    /// The size limit is reached and gc could not free enough.
    #[error(
        "block store full: {needed} more bytes needed, {used} of {limit} bytes used by pinned blocks; \
         raise publishers.ipfs.max_store_mb, lower pin_hours or unpin outputs"
    )]
    Full {
        /// Bytes the refused put needed.
        needed: u64,
        /// Bytes in use after gc.
        used: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A block the DAG needs is not in the store.
    #[error("block {cid} (linked from {parent}) is not in the block store")]
    Missing {
        /// The missing block.
        cid: Cid,
        /// The block linking to it (the root names itself).
        parent: Cid,
    },
    /// A stored dag-pb block that does not decode.
    #[error("block {cid} is not valid dag-pb: {message}")]
    BadNode {
        /// The block.
        cid: Cid,
        /// The decoding error.
        message: String,
    },
    /// Importing a path failed.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The imported path does not have the CID it was published under.
    #[error("{} imports as {actual}, not the expected {expected}", path.display())]
    RootMismatch {
        /// The imported path.
        path: PathBuf,
        /// The CID the caller expected.
        expected: Cid,
        /// The CID the import produced.
        actual: Cid,
    },
    /// Writing a CAR out failed.
    #[error("cannot write the CAR: {0}")]
    Write(io::Error),
}

fn db_error<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into().to_string())
}

/// One pin: a root and when it lapses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The pinned root.
    pub root: Cid,
    /// When the pin lapses; `None` = until unpinned.
    pub expires: Option<SystemTime>,
}

/// What a gc removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blocks deleted.
    pub blocks_removed: u64,
    /// Bytes those blocks held.
    pub bytes_freed: u64,
    /// Pins dropped because they had expired.
    pub pins_expired: u64,
    /// Blocks kept.
    pub blocks_kept: u64,
}

/// What [`BlockStore::import_path`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The root CID (equal to the expected one).
    pub root: Cid,
    /// Blocks handed to the store (repeats included).
    pub blocks: u64,
    /// Bytes of blocks newly written.
    pub new_bytes: u64,
}

/// The persistent, verifying block store. Cheap to share behind an `Arc`.
pub struct BlockStore {
    db: Database,
    path: PathBuf,
    limit: Option<u64>,
    leases: Mutex<HashMap<u64, HashSet<Cid>>>,
    next_lease: AtomicU64,
    /// One gc at a time (two would only repeat each other's work).
    gc_lock: Mutex<()>,
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockStore")
            .field("path", &self.path)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl BlockStore {
    /// Opens (creating if needed) the store at `path`; `limit` caps the
    /// bytes of blocks it holds.
    pub fn open(path: &Path, limit: Option<u64>) -> Result<BlockStore, StoreError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
                path: path.to_owned(),
            },
            e => StoreError::Db(format!("cannot open {}: {e}", path.display())),
        })?;
        let txn = db.begin_write().map_err(db_error)?;
        {
            txn.open_table(BLOCKS).map_err(db_error)?;
            txn.open_table(PINS).map_err(db_error)?;
            txn.open_table(META).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok(BlockStore {
            db,
            path: path.to_owned(),
            limit,
            leases: Mutex::new(HashMap::new()),
            next_lease: AtomicU64::new(0),
            gc_lock: Mutex::new(()),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size limit in bytes, if any.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Bytes of blocks stored.
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let meta = txn.open_table(META).map_err(db_error)?;
        Ok(meta
            .get(USED_BYTES)
            .map_err(db_error)?
            .map_or(0, |v| v.value()))
    }

    /// Number of blocks stored.
    pub fn block_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let blocks = txn.open_table(BLOCKS).map_err(db_error)?;
        blocks.len().map_err(db_error)
    }

    /// The block `cid`, if stored.
    pub fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let blocks = txn.open_table(BLOCKS).map_err(db_error)?;
        Ok(blocks
            .get(cid.to_bytes().as_slice())
            .map_err(db_error)?
            .map(|v| v.value().to_vec()))
    }

    /// Whether the block `cid` is stored.
    pub fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let blocks = txn.open_table(BLOCKS).map_err(db_error)?;
        Ok(blocks
            .get(cid.to_bytes().as_slice())
            .map_err(db_error)?
            .is_some())
    }

    /// Stores one block after checking it hashes to `cid`; returns whether
    /// it was new. Durable when it returns.
    pub fn put(&self, cid: &Cid, data: &[u8]) -> Result<bool, StoreError> {
        Ok(self.put_many(&[(*cid, data)], Durability::Immediate)? > 0)
    }

    /// Stores blocks in one transaction after checking each; returns the
    /// bytes newly written. `durability` as in redb: imports write batches
    /// with `None` and make them durable with the pin that follows.
    pub fn put_many<D: AsRef<[u8]>>(
        &self,
        blocks: &[(Cid, D)],
        durability: Durability,
    ) -> Result<u64, StoreError> {
        for (cid, data) in blocks {
            verify(cid, data.as_ref())?;
        }
        self.put_checked(blocks, durability)
    }

    fn put_checked<D: AsRef<[u8]>>(
        &self,
        blocks: &[(Cid, D)],
        durability: Durability,
    ) -> Result<u64, StoreError> {
        match self.try_put(blocks, durability)? {
            Ok(new) => Ok(new),
            Err(_) => {
                // Over the limit: collect what no pin needs, then try once more.
                let report = self.gc()?;
                tracing::info!(
                    freed = report.bytes_freed,
                    "block store at its limit; garbage collected"
                );
                match self.try_put(blocks, durability)? {
                    Ok(new) => Ok(new),
                    Err((needed, used)) => Err(StoreError::Full {
                        needed,
                        used,
                        limit: self.limit.unwrap_or(0),
                    }),
                }
            }
        }
    }

    /// Inserts the blocks missing from the store, or reports `(needed,
    /// used)` when that would go over the limit (and writes nothing).
    #[allow(clippy::type_complexity)]
    fn try_put<D: AsRef<[u8]>>(
        &self,
        blocks: &[(Cid, D)],
        durability: Durability,
    ) -> Result<Result<u64, (u64, u64)>, StoreError> {
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(durability);
        let new_bytes;
        {
            let mut table = txn.open_table(BLOCKS).map_err(db_error)?;
            let mut meta = txn.open_table(META).map_err(db_error)?;
            let used = meta
                .get(USED_BYTES)
                .map_err(db_error)?
                .map_or(0, |v| v.value());
            let mut fresh = Vec::new();
            let mut seen = HashSet::new();
            for (cid, data) in blocks {
                let key = cid.to_bytes();
                if seen.contains(&key) || table.get(key.as_slice()).map_err(db_error)?.is_some() {
                    continue;
                }
                seen.insert(key.clone());
                fresh.push((key, data.as_ref()));
            }
            new_bytes = fresh.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
            if let Some(limit) = self.limit
                && used.saturating_add(new_bytes) > limit
            {
                drop((table, meta));
                txn.abort().map_err(db_error)?;
                return Ok(Err((new_bytes, used)));
            }
            for (key, data) in fresh {
                table.insert(key.as_slice(), data).map_err(db_error)?;
            }
            meta.insert(USED_BYTES, used + new_bytes)
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok(Ok(new_bytes))
    }

    /// Deletes the block `cid` (pinned or not); returns whether it was there.
    pub fn remove(&self, cid: &Cid) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let removed = {
            let mut blocks = txn.open_table(BLOCKS).map_err(db_error)?;
            let mut meta = txn.open_table(META).map_err(db_error)?;
            let len = blocks
                .remove(cid.to_bytes().as_slice())
                .map_err(db_error)?
                .map(|v| v.value().len() as u64);
            if let Some(len) = len {
                let used = meta
                    .get(USED_BYTES)
                    .map_err(db_error)?
                    .map_or(0, |v| v.value());
                meta.insert(USED_BYTES, used.saturating_sub(len))
                    .map_err(db_error)?;
            }
            len.is_some()
        };
        txn.commit().map_err(db_error)?;
        Ok(removed)
    }

    /// Pins `root` until `expires` (`None` = until unpinned). Pinning again
    /// keeps the later of the two expiries. The root need not be stored yet.
    pub fn pin(&self, root: &Cid, expires: Option<SystemTime>) -> Result<(), StoreError> {
        let wanted = expires.map_or(FOREVER, unix_secs);
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut pins = txn.open_table(PINS).map_err(db_error)?;
            let key = root.to_bytes();
            let current = pins
                .get(key.as_slice())
                .map_err(db_error)?
                .map(|v| v.value());
            let expiry = current.map_or(wanted, |c| c.max(wanted));
            pins.insert(key.as_slice(), expiry).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok(())
    }

    /// Removes the pin on `root`; returns whether there was one.
    pub fn unpin(&self, root: &Cid) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let removed = {
            let mut pins = txn.open_table(PINS).map_err(db_error)?;
            pins.remove(root.to_bytes().as_slice())
                .map_err(db_error)?
                .is_some()
        };
        txn.commit().map_err(db_error)?;
        Ok(removed)
    }

    /// Every pin, expired or not.
    pub fn pins(&self) -> Result<Vec<Pin>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let pins = txn.open_table(PINS).map_err(db_error)?;
        let mut out = Vec::new();
        for entry in pins.iter().map_err(db_error)? {
            let (key, expiry) = entry.map_err(db_error)?;
            let root = Cid::try_from(key.value())
                .map_err(|e| StoreError::Db(format!("pin table holds a bad CID: {e}")))?;
            out.push(Pin {
                root,
                expires: from_unix_secs(expiry.value()),
            });
        }
        Ok(out)
    }

    /// Drops expired pins and every block that no live pin or lease needs.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        self.gc_at(SystemTime::now())
    }

    /// [`BlockStore::gc`] as if the time were `now` (for expiry tests).
    pub fn gc_at(&self, now: SystemTime) -> Result<GcReport, StoreError> {
        let _one_at_a_time = self.gc_lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = unix_secs(now);
        let mut report = GcReport::default();
        // All in one write transaction: puts and pins wait, so nothing can
        // become reachable between the mark and the sweep.
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut pins = txn.open_table(PINS).map_err(db_error)?;
            let mut blocks = txn.open_table(BLOCKS).map_err(db_error)?;
            let mut meta = txn.open_table(META).map_err(db_error)?;
            let mut roots = Vec::new();
            let mut expired = Vec::new();
            for entry in pins.iter().map_err(db_error)? {
                let (key, expiry) = entry.map_err(db_error)?;
                if expiry.value() <= now {
                    expired.push(key.value().to_vec());
                } else if let Ok(cid) = Cid::try_from(key.value()) {
                    roots.push(cid);
                }
            }
            for key in &expired {
                pins.remove(key.as_slice()).map_err(db_error)?;
            }
            report.pins_expired = expired.len() as u64;

            // Mark: CIDs reachable from live pins, present or not.
            let mut keep: HashSet<Vec<u8>> = HashSet::new();
            let mut stack = roots;
            while let Some(cid) = stack.pop() {
                if !keep.insert(cid.to_bytes()) || cid.codec() != DAG_PB {
                    continue;
                }
                if let Some(data) = blocks.get(cid.to_bytes().as_slice()).map_err(db_error)? {
                    // A stored block that does not decode keeps nothing below it.
                    stack.extend(links(&cid, data.value()).unwrap_or_default());
                }
            }
            for cids in self
                .leases
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
            {
                keep.extend(cids.iter().map(|c| c.to_bytes()));
            }

            // Sweep.
            let mut doomed = Vec::new();
            for entry in blocks.iter().map_err(db_error)? {
                let (key, value) = entry.map_err(db_error)?;
                if keep.contains(key.value()) {
                    report.blocks_kept += 1;
                } else {
                    doomed.push((key.value().to_vec(), value.value().len() as u64));
                }
            }
            for (key, len) in &doomed {
                blocks.remove(key.as_slice()).map_err(db_error)?;
                report.bytes_freed += len;
            }
            report.blocks_removed = doomed.len() as u64;
            let used = meta
                .get(USED_BYTES)
                .map_err(db_error)?
                .map_or(0, |v| v.value());
            meta.insert(USED_BYTES, used.saturating_sub(report.bytes_freed))
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok(report)
    }

    /// A lease: blocks put through it survive gc until it is dropped.
    pub fn lease(self: &Arc<Self>) -> Lease {
        let id = self.next_lease.fetch_add(1, Ordering::Relaxed);
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, HashSet::new());
        Lease {
            store: Arc::clone(self),
            id,
            batch: Vec::new(),
            batch_bytes: 0,
            blocks: 0,
            new_bytes: 0,
        }
    }

    /// Imports `path` (file or tree) with `ipfs add --cid-version=1`
    /// settings, checks its root is `expected`, and pins it until `expires`.
    pub fn import_path(
        self: &Arc<Self>,
        path: &Path,
        expected: &Cid,
        expires: Option<SystemTime>,
    ) -> Result<ImportReport, StoreError> {
        let mut lease = self.lease();
        // Blocks arrive children first; the lease keeps them from gc until
        // the root is stored and pinned below.
        let imported =
            import_path_to_sink(path, Profile::V1RawLeaves, &mut lease).map_err(|e| match e {
                ImportError::Sink(io) => unwrap_store_error(io),
                e => StoreError::Import(e),
            })?;
        lease.flush(Durability::None)?;
        if imported.cid != *expected {
            return Err(StoreError::RootMismatch {
                path: path.to_owned(),
                expected: *expected,
                actual: imported.cid,
            });
        }
        // The pin's commit is durable, which makes the batches before it so.
        self.pin(expected, expires)?;
        Ok(ImportReport {
            root: imported.cid,
            blocks: lease.blocks,
            new_bytes: lease.new_bytes,
        })
    }

    /// The first block reachable from `root` that is not stored, if any.
    pub fn first_missing(&self, root: &Cid) -> Result<Option<Cid>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let blocks = txn.open_table(BLOCKS).map_err(db_error)?;
        let mut seen = HashSet::new();
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            if !seen.insert(cid) {
                continue;
            }
            let key = cid.to_bytes();
            if cid.codec() != DAG_PB {
                if blocks.get(key.as_slice()).map_err(db_error)?.is_none() {
                    return Ok(Some(cid));
                }
                continue;
            }
            match blocks.get(key.as_slice()).map_err(db_error)? {
                None => return Ok(Some(cid)),
                Some(data) => stack.extend(links(&cid, data.value())?),
            }
        }
        Ok(None)
    }

    /// Writes the DAG under `root` as a CARv1 (root in the header, blocks in
    /// depth-first link order, each once) to `out`; returns bytes written.
    /// Fails naming the first missing block, possibly after writing part.
    pub fn write_car<W: Write>(&self, root: &Cid, out: W) -> Result<u64, StoreError> {
        let mut car = CarWriter::new(out, &[*root]).map_err(|e| match e {
            crate::content::CarError::Io(io) => StoreError::Write(io),
            e => StoreError::Write(io::Error::other(e.to_string())),
        })?;
        // Children are pushed in reverse so they pop in link order.
        let mut stack = vec![(*root, *root)];
        while let Some((cid, parent)) = stack.pop() {
            if car.contains(&cid) {
                continue;
            }
            let data = self.get(&cid)?.ok_or(StoreError::Missing { cid, parent })?;
            car.put(&cid, &data).map_err(StoreError::Write)?;
            if cid.codec() == DAG_PB {
                let children = links(&cid, &data)?;
                stack.extend(children.into_iter().rev().map(|c| (c, cid)));
            }
        }
        let written = car.bytes_written();
        car.finish().map_err(StoreError::Write)?;
        Ok(written)
    }

    /// Stores a block WITHOUT checking its hash: only for tests that need a
    /// node serving forged data.
    #[cfg(feature = "testing")]
    pub fn put_unverified_for_testing(&self, cid: &Cid, data: &[u8]) -> Result<(), StoreError> {
        self.try_put(&[(*cid, data)], Durability::Immediate)?
            .map(|_| ())
            .map_err(|(needed, used)| StoreError::Full {
                needed,
                used,
                limit: self.limit.unwrap_or(0),
            })
    }
}

/// Checks that `data` is the block `cid` names.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), StoreError> {
    match cid_matches(cid, data) {
        Some(true) => Ok(()),
        Some(false) => Err(StoreError::HashMismatch { cid: *cid }),
        None => Err(StoreError::UnsupportedHash {
            cid: *cid,
            code: cid.hash().code(),
        }),
    }
}

/// The CIDs a block links to (none unless it is dag-pb).
pub fn links(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>, StoreError> {
    if cid.codec() != DAG_PB {
        return Ok(Vec::new());
    }
    let bad = |message: String| StoreError::BadNode { cid: *cid, message };
    let node = PbNode::decode(data).map_err(|e| bad(e.to_string()))?;
    node.links
        .iter()
        .map(|l| Cid::try_from(l.hash).map_err(|e| bad(format!("link is not a CID: {e}"))))
        .collect()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn from_unix_secs(secs: u64) -> Option<SystemTime> {
    (secs != FOREVER).then(|| UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Recovers a [`StoreError`] passed through the importer's `io::Error`.
fn unwrap_store_error(e: io::Error) -> StoreError {
    match e.downcast::<StoreError>() {
        Ok(store) => store,
        Err(e) => StoreError::Write(e),
    }
}

/// Blocks put through a lease are kept by gc until the lease is dropped.
/// It is also the [`BlockSink`] imports write through, in batches.
pub struct Lease {
    store: Arc<BlockStore>,
    id: u64,
    batch: Vec<(Cid, Vec<u8>)>,
    batch_bytes: usize,
    blocks: u64,
    new_bytes: u64,
}

impl Lease {
    /// Verifies and stores blocks under this lease; returns bytes newly written.
    pub fn put_many<D: AsRef<[u8]>>(
        &mut self,
        blocks: &[(Cid, D)],
        durability: Durability,
    ) -> Result<u64, StoreError> {
        for (cid, data) in blocks {
            verify(cid, data.as_ref())?;
        }
        self.protect(blocks.iter().map(|(c, _)| *c));
        let new = self.store.put_checked(blocks, durability)?;
        self.new_bytes += new;
        Ok(new)
    }

    /// Keeps `cids` from gc while this lease lives (whether stored yet or not).
    pub fn protect(&self, cids: impl IntoIterator<Item = Cid>) {
        let mut leases = self.store.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.entry(self.id).or_default().extend(cids);
    }

    /// Writes buffered blocks.
    pub fn flush(&mut self, durability: Durability) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.put_many(&batch, durability)?;
        Ok(())
    }
}

impl BlockSink for Lease {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> io::Result<()> {
        self.blocks += 1;
        self.batch.push((*cid, data.to_vec()));
        self.batch_bytes += data.len();
        if self.batch_bytes >= IMPORT_BATCH_BYTES {
            self.flush(Durability::None).map_err(io::Error::other)?;
        }
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.store
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}
