//! The registry's table of circuits: shards of a growing hash table, each behind a
//! read-write lock.
//!
//! A lookup of an existing key takes its shard's read lock, compares the stored hash and
//! the names, and clones the entry's `Arc`; it allocates nothing. Shards are on cache
//! lines of their own, so lookups of keys in different shards touch no common line. An
//! insert takes one shard's write lock; the shard's table grows by doubling, so insert
//! and lookup stay O(1) however many keys there are.
//!
//! Entries leave the table only through [`Table::sweep`], under the shard's write lock:
//! a reader that found an entry holds its own `Arc` to it, so the circuit it runs a call
//! through stays valid after the entry is gone.

use super::Entry;
use hashbrown::HashTable;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Shards (a power of two). Inserts into different shards never wait for each other.
const SHARDS: usize = 64;

#[repr(align(128))]
struct Shard {
    map: RwLock<HashTable<Arc<Entry>>>,
    /// Insert attempts since this shard was last swept for idle entries.
    since_sweep: AtomicUsize,
}

/// Why an insert did not happen.
pub(super) enum Refusal {
    /// The table holds `capacity` entries and none of the swept ones was idle.
    Full,
}

pub(super) struct Table {
    shards: Box<[Shard]>,
    len: AtomicUsize,
}

impl Table {
    pub(super) fn new() -> Self {
        Table {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    map: RwLock::new(HashTable::new()),
                    since_sweep: AtomicUsize::new(0),
                })
                .collect(),
            len: AtomicUsize::new(0),
        }
    }

    /// The shard of a hash: bits the shard's own table does not use for its buckets
    /// (low bits) or its tags (top seven bits).
    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 40) as usize & (SHARDS - 1)]
    }

    fn read(shard: &Shard) -> RwLockReadGuard<'_, HashTable<Arc<Entry>>> {
        shard.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(shard: &Shard) -> RwLockWriteGuard<'_, HashTable<Arc<Entry>>> {
        shard.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// The entry of `(service, operation)`.
    #[inline]
    pub(super) fn find(&self, hash: u64, service: &str, operation: &str) -> Option<Arc<Entry>> {
        let map = Self::read(self.shard(hash));
        map.find(hash, |e| e.hash == hash && e.is(service, operation))
            .cloned()
    }

    /// The entry of the key, made by `make` if there is none and the table holds fewer
    /// than `capacity` entries; `make` runs at most once per key, however many callers
    /// race. Returns how many entries left in a sweep, too. Every call for a new key counts towards the shard's next sweep, in which
    /// `idle` entries leave: one sweep per `len / 4 + 1` such calls into the shard, so
    /// sweeps cost at most four idle checks per call, amortised, full table or not.
    pub(super) fn find_or_insert(
        &self,
        hash: u64,
        service: &str,
        operation: &str,
        capacity: usize,
        make: impl FnOnce() -> Entry,
        idle: impl Fn(&Arc<Entry>) -> bool,
    ) -> (Result<Arc<Entry>, Refusal>, usize) {
        let shard = self.shard(hash);
        let mut map = Self::write(shard);
        if let Some(e) = map.find(hash, |e| e.hash == hash && e.is(service, operation)) {
            return (Ok(e.clone()), 0);
        }
        let calls = shard.since_sweep.fetch_add(1, Ordering::Relaxed) + 1;
        let evicted = if calls > map.len() / 4 {
            self.sweep_locked(shard, &mut map, &idle)
        } else {
            0
        };
        if !self.reserve(capacity) {
            return (Err(Refusal::Full), evicted);
        }
        let entry = Arc::new(make());
        map.insert_unique(hash, entry.clone(), |e| e.hash);
        (Ok(entry), evicted)
    }

    /// Counts one more entry if there are fewer than `capacity`.
    fn reserve(&self, capacity: usize) -> bool {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .is_ok()
    }

    fn sweep_locked(
        &self,
        shard: &Shard,
        map: &mut HashTable<Arc<Entry>>,
        idle: &impl Fn(&Arc<Entry>) -> bool,
    ) -> usize {
        shard.since_sweep.store(0, Ordering::Relaxed);
        let before = map.len();
        map.retain(|e| !idle(e));
        let gone = before - map.len();
        if map.capacity() > 64 && map.len() < map.capacity() / 4 {
            map.shrink_to(map.len() * 2, |e| e.hash);
        }
        self.len.fetch_sub(gone, Ordering::AcqRel);
        gone
    }

    /// Removes every entry for which `remove` is true, shard by shard; returns how many.
    pub(super) fn sweep(&self, remove: impl Fn(&Arc<Entry>) -> bool) -> usize {
        self.shards
            .iter()
            .map(|shard| self.sweep_locked(shard, &mut Self::write(shard), &remove))
            .sum()
    }

    /// Every entry, shard by shard (each shard read under its lock, briefly).
    pub(super) fn entries(&self) -> Vec<Arc<Entry>> {
        let mut out = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            out.extend(Self::read(shard).iter().cloned());
        }
        out
    }
}
