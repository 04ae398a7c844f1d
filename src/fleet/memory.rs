//! An in-process [`SharedState`] for tests and simulations.

use super::store::{
    CasOutcome, SharedState, StoreError, StoreErrorKind, StoreFuture, StoredRecord,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// A [`SharedState`] in one process's memory, for tests and simulations: every circuit
/// of the process that is given the same `MemoryStore` (behind an `Arc`) shares it, as
/// sandboxes share a Redis or a DynamoDB table.
///
/// TTLs run on tokio's clock, so `tokio::time::pause` and `advance` expire records.
/// [`set_available`](Self::set_available) and [`set_latency`](Self::set_latency) simulate
/// an outage or a slow store. Versions keep growing across expiry (a re-created key does
/// not start at 1 again), so a writer holding the version of an expired record can never
/// overwrite its successor.
///
/// ```
/// use std::time::Duration;
/// use tower_circuit_breaker::fleet::{CasOutcome, MemoryStore, SharedState};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let ttl = Duration::from_secs(60);
/// assert_eq!(store.compare_and_set("k", None, b"a".to_vec(), ttl).await, Ok(CasOutcome::Written(1)));
/// assert_eq!(store.compare_and_set("k", None, b"b".to_vec(), ttl).await, Ok(CasOutcome::Conflict));
/// assert_eq!(store.load("k").await.unwrap().unwrap().body, b"a");
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<String, Entry>>,
    down: AtomicBool,
    latency_ns: AtomicU64,
    operations: AtomicU64,
    records_read: AtomicU64,
    bytes_read: AtomicU64,
    records_written: AtomicU64,
    bytes_written: AtomicU64,
}

/// What a [`MemoryStore`] served, from [`MemoryStore::traffic`]: enough to price a run
/// on a real store (DynamoDB bills each record read or written by its size, ElastiCache
/// by the bytes a command moves).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreTraffic {
    /// Operations asked (a `load_many` is one), failed ones included.
    pub operations: u64,
    /// Records returned by reads (a `load_many` of 6 live keys returns 6).
    pub records_read: u64,
    /// Their bodies' bytes.
    pub bytes_read: u64,
    /// Records written.
    pub records_written: u64,
    /// Their bodies' bytes.
    pub bytes_written: u64,
}

#[derive(Debug)]
struct Entry {
    version: u64,
    body: Vec<u8>,
    expires: Instant,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        now < self.expires
    }

    fn read(&self, now: Instant, store: &MemoryStore) -> Option<StoredRecord> {
        self.live(now).then(|| {
            store.records_read.fetch_add(1, Ordering::Relaxed);
            store
                .bytes_read
                .fetch_add(self.body.len() as u64, Ordering::Relaxed);
            StoredRecord {
                version: self.version,
                body: self.body.clone(),
            }
        })
    }
}

impl MemoryStore {
    /// An empty, available store without latency.
    pub fn new() -> Self {
        Self::default()
    }

    /// `false` makes every operation fail with [`StoreErrorKind::Unavailable`] (after the
    /// latency), as a store that is down; `true` brings it back with its records.
    pub fn set_available(&self, available: bool) {
        self.down.store(!available, Ordering::Release);
    }

    /// Every operation first waits this long on tokio's clock.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ns.store(
            u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
    }

    /// Operations asked of the store so far (failed ones included).
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }

    /// Operations, records and bytes served so far.
    pub fn traffic(&self) -> StoreTraffic {
        StoreTraffic {
            operations: self.operations(),
            records_read: self.records_read.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            records_written: self.records_written.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
        }
    }

    /// Writes `body` under `key` unconditionally, as a foreign or broken writer would.
    pub fn put_raw(&self, key: &str, body: Vec<u8>, ttl: Duration) {
        let mut records = self.lock();
        let version = records.get(key).map_or(0, |e| e.version) + 1;
        records.insert(
            key.to_owned(),
            Entry {
                version,
                body,
                expires: Instant::now() + ttl,
            },
        );
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn enter(&self) -> Result<(), StoreError> {
        self.operations.fetch_add(1, Ordering::Relaxed);
        let latency = self.latency_ns.load(Ordering::Acquire);
        if latency > 0 {
            tokio::time::sleep(Duration::from_nanos(latency)).await;
        }
        if self.down.load(Ordering::Acquire) {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "memory store is down (simulated)",
            ));
        }
        Ok(())
    }
}

impl SharedState for MemoryStore {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoredRecord>> {
        Box::pin(async move {
            self.enter().await?;
            let now = Instant::now();
            Ok(self.lock().get(key).and_then(|e| e.read(now, self)))
        })
    }

    /// All of `keys` in one operation (counted once), as one Redis `MGET`.
    fn load_many<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, Vec<Option<StoredRecord>>> {
        Box::pin(async move {
            self.enter().await?;
            let now = Instant::now();
            let records = self.lock();
            Ok(keys
                .iter()
                .map(|key| records.get(key).and_then(|e| e.read(now, self)))
                .collect())
        })
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        body: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'a, CasOutcome> {
        Box::pin(async move {
            self.enter().await?;
            let now = Instant::now();
            let mut records = self.lock();
            let current = records.get(key);
            let live_version = current.filter(|e| e.live(now)).map(|e| e.version);
            if live_version != expected {
                return Ok(CasOutcome::Conflict);
            }
            let version = current.map_or(0, |e| e.version) + 1;
            self.records_written.fetch_add(1, Ordering::Relaxed);
            self.bytes_written
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            records.insert(
                key.to_owned(),
                Entry {
                    version,
                    body,
                    expires: now + ttl,
                },
            );
            Ok(CasOutcome::Written(version))
        })
    }
}
