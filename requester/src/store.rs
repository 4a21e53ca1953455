//! The durable job store: an embedded redb database in the requester's home.
//!
//! Every state transition is written. Writes go to one writer thread that
//! commits whatever has queued up in a single transaction (group commit), so
//! a 10,000-shard job does not pay one fsync per transition; `flush` waits
//! until everything sent so far is durable.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::model::{JobRecord, ShardRecord};

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const SHARDS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("shards");

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store {path}: {message}")]
    Open { path: String, message: String },
    #[error("job store: {0}")]
    Io(String),
    #[error("job store record is corrupt: {0}")]
    Corrupt(String),
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

enum Write {
    Job(JobRecord),
    Shard(String, ShardRecord),
    Flush(oneshot::Sender<()>),
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writes: std_mpsc::Sender<Write>,
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let db = Arc::new(db);
        {
            let txn = db.begin_write().map_err(io)?;
            txn.open_table(JOBS).map_err(io)?;
            txn.open_table(SHARDS).map_err(io)?;
            txn.commit().map_err(io)?;
        }
        let (writes, rx) = std_mpsc::channel();
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("shoal-store".into())
            .spawn(move || writer(writer_db, rx))
            .map_err(io)?;
        Ok(Store { db, writes })
    }

    /// Queues a job record write.
    pub fn put_job(&self, job: &JobRecord) {
        let _ = self.writes.send(Write::Job(job.clone()));
    }

    /// Queues a shard record write.
    pub fn put_shard(&self, job: &str, shard: &ShardRecord) {
        let _ = self
            .writes
            .send(Write::Shard(job.to_owned(), shard.clone()));
    }

    /// Waits until every write queued so far is committed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.writes.send(Write::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Every job with its shards, sorted by job id and shard index.
    pub fn load(&self) -> Result<Vec<(JobRecord, Vec<ShardRecord>)>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let jobs = txn.open_table(JOBS).map_err(io)?;
        let shards = txn.open_table(SHARDS).map_err(io)?;
        let mut out = Vec::new();
        for row in jobs.iter().map_err(io)? {
            let (key, value) = row.map_err(io)?;
            let job: JobRecord = serde_json::from_slice(value.value())
                .map_err(|e| StoreError::Corrupt(format!("job {}: {e}", key.value())))?;
            let mut records = Vec::new();
            let id = job.id.clone();
            for row in shards
                .range((id.as_str(), 0u32)..=(id.as_str(), u32::MAX))
                .map_err(io)?
            {
                let (_, value) = row.map_err(io)?;
                records.push(
                    serde_json::from_slice(value.value())
                        .map_err(|e| StoreError::Corrupt(format!("shard of job {id}: {e}")))?,
                );
            }
            out.push((job, records));
        }
        Ok(out)
    }
}

fn writer(db: Arc<Database>, rx: std_mpsc::Receiver<Write>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(50_000));
        let mut flushes = Vec::new();
        if let Err(e) = commit(&db, batch, &mut flushes) {
            tracing::error!("job store write failed: {e}");
        }
        for flush in flushes {
            let _ = flush.send(());
        }
    }
}

fn commit(
    db: &Database,
    batch: Vec<Write>,
    flushes: &mut Vec<oneshot::Sender<()>>,
) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(io)?;
    {
        let mut jobs = txn.open_table(JOBS).map_err(io)?;
        let mut shards = txn.open_table(SHARDS).map_err(io)?;
        for write in batch {
            match write {
                Write::Job(job) => {
                    let bytes = serde_json::to_vec(&job).map_err(io)?;
                    jobs.insert(job.id.as_str(), bytes.as_slice()).map_err(io)?;
                }
                Write::Shard(job, shard) => {
                    let bytes = serde_json::to_vec(&shard).map_err(io)?;
                    shards
                        .insert((job.as_str(), shard.index), bytes.as_slice())
                        .map_err(io)?;
                }
                Write::Flush(tx) => flushes.push(tx),
            }
        }
    }
    txn.commit().map_err(io)
}
