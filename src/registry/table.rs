//! The registry's table of circuits: shards of a growing hash table, each behind a
//! read-write lock.
//!
//! Each shard keeps one copy of its table per thread stripe (the window's stripes: one
//! per core, at most 8), each behind its own read-write lock on a cache line of its own.
//! A lookup takes the read lock of its thread's copy, finds the entry by the stored hash
//! and the names, and clones the entry's handle for its stripe: an `Arc` of its own, on a
//! line of its own. So two threads looking up one key write to no common cache line, as
//! the circuit's own hot path does not. It allocates nothing (a stripe's handle is made
//! on its first lookup). An insert or a sweep takes every copy's write lock of one shard;
//! the tables grow by doubling, so insert and lookup stay O(1) however many keys.
//!
//! Entries leave the table only through [`Table::sweep`]: a reader that found an entry
//! holds its stripe's handle, so the circuit it runs a call through stays valid after
//! the entry is gone, and an entry whose handle is held is not idle.

use super::{Entry, Handle};
use crate::window::{stripe_index, stripes};
use hashbrown::HashTable;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Shards (a power of two). Inserts into different shards never wait for each other.
const SHARDS: usize = 64;

type Map = HashTable<Arc<Entry>>;

/// One stripe's copy of a shard's table.
#[repr(align(128))]
struct Copy(RwLock<Map>);

struct Shard {
    /// One copy per stripe, identical; written under every copy's write lock.
    copies: Box<[Copy]>,
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
    stripe_mask: usize,
}

/// Every copy of one shard, write-locked (in stripe order, the one order used).
struct Locked<'a>(Vec<RwLockWriteGuard<'a, Map>>);

impl Locked<'_> {
    fn len(&self) -> usize {
        self.0[0].len()
    }
}

impl Table {
    pub(super) fn new() -> Self {
        let stripes = stripes();
        Table {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    copies: (0..stripes)
                        .map(|_| Copy(RwLock::new(HashTable::new())))
                        .collect(),
                    since_sweep: AtomicUsize::new(0),
                })
                .collect(),
            len: AtomicUsize::new(0),
            stripe_mask: stripes - 1,
        }
    }

    /// The number of copies of each shard, which is also the number of handles an
    /// entry may have.
    pub(super) fn stripes(&self) -> usize {
        self.stripe_mask + 1
    }

    /// The shard of a hash: bits the shard's own table does not use for its buckets
    /// (low bits) or its tags (top seven bits).
    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 40) as usize & (SHARDS - 1)]
    }

    fn read(copy: &Copy) -> RwLockReadGuard<'_, Map> {
        copy.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(shard: &Shard) -> Locked<'_> {
        Locked(
            shard
                .copies
                .iter()
                .map(|c| c.0.write().unwrap_or_else(|e| e.into_inner()))
                .collect(),
        )
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// This thread's handle to the entry of `(service, operation)`.
    #[inline]
    pub(super) fn find(&self, hash: u64, service: &str, operation: &str) -> Option<Arc<Handle>> {
        let stripe = stripe_index(self.stripe_mask);
        let map = Self::read(&self.shard(hash).copies[stripe]);
        map.find(hash, |e| e.hash == hash && e.is(service, operation))
            .map(|e| e.handle(stripe).clone())
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
    ) -> (Result<Arc<Handle>, Refusal>, usize) {
        let shard = self.shard(hash);
        let mut map = Self::write(shard);
        let stripe = stripe_index(self.stripe_mask);
        if let Some(e) = map.0[0].find(hash, |e| e.hash == hash && e.is(service, operation)) {
            return (Ok(e.handle(stripe).clone()), 0);
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
        for copy in map.0.iter_mut() {
            copy.insert_unique(hash, entry.clone(), |e| e.hash);
        }
        (Ok(entry.handle(stripe).clone()), evicted)
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
        map: &mut Locked<'_>,
        idle: &impl Fn(&Arc<Entry>) -> bool,
    ) -> usize {
        shard.since_sweep.store(0, Ordering::Relaxed);
        let before = map.len();
        let (first, rest) = map.0.split_first_mut().expect("one copy at least");
        let mut gone_hashes = Vec::new();
        first.retain(|e| {
            let keep = !idle(e);
            if !keep {
                gone_hashes.push((e.hash, Arc::as_ptr(e)));
            }
            keep
        });
        for copy in rest {
            for &(hash, ptr) in &gone_hashes {
                if let Ok(slot) = copy.find_entry(hash, |e| Arc::as_ptr(e) == ptr) {
                    slot.remove();
                }
            }
        }
        let gone = before - map.len();
        for copy in map.0.iter_mut() {
            let len = copy.len();
            if copy.capacity() > 64 && len < copy.capacity() / 4 {
                copy.shrink_to(len * 2, |e| e.hash);
            }
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
            out.extend(Self::read(&shard.copies[0]).iter().cloned());
        }
        out
    }
}
