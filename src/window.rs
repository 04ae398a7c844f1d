//! The sliding window: a ring of time buckets, striped per thread.
//!
//! # Why buckets
//!
//! A breaker has to answer "how many calls, and how many failures, in the last
//! `monitoring_window`?" after every outcome. Keeping one record per call (a
//! `VecDeque` of timestamps) makes that O(calls in window): the cost of a call grows with
//! the load, which is the wrong way round for a component that exists to protect a
//! service under load. A ring of `n` fixed buckets answers in O(n) with `n` small and
//! constant, and recording in the window is O(1): one atomic add (two for a slow call).
//!
//! That is the window's share of an outcome, not the whole of it: the circuit around it
//! also extends (on a failure, one shared atomic add) or ends the run of consecutive
//! failures, and with a rate threshold configured every outcome sums the window's buckets
//! to check the rate (see `circuit/record.rs`).
//!
//! Time is cut into buckets of width `w = monitoring_window / n`. An outcome at time `t`
//! goes into bucket `floor(t / w)` and leaves the window at `floor(t / w) * w + window`:
//! exactly at `t + window` when `t` starts a bucket, up to one bucket width earlier
//! otherwise.
//!
//! # Why stripes
//!
//! Two cores adding to one counter bounce its cache line between them, which costs about
//! five times an uncontended add. Each thread therefore writes to its own stripe (a
//! disjoint set of 128-byte lines) and readers sum the stripes. Reads happen only when a
//! trip is possible or stats are asked for.
//!
//! A stripe's lines are allocated on its first write (the creating thread's at
//! creation), so a circuit holds lines only for
//! the stripes its callers' threads map to: a circuit used from one thread holds one
//! stripe (256 bytes with 10 buckets) however many cores the host has, and at most 8.
//!
//! # Bounds
//!
//! A bucket's cell packs two counts into the halves of one `u64` (`calls | failures << 32`,
//! `slow_ok | slow_err << 32`), so one add records an outcome. A half never carries into
//! the other: when an add finds a half at or past 2^31, the recording thread moves the
//! cell's counts into the bucket's spill (a `u64` per count, allocated on the first spill
//! only) and zeroes the cell. A bucket therefore counts up to 2^64 outcomes, whatever its
//! width (a valid bucket may be days wide) and however many threads share a stripe; the
//! cost is one branch on the hot path and, once per 2^31 outcomes of one stripe in one
//! bucket, a lock.
//!
//! # Why lifetime counts are not separate counters
//!
//! The lifetime totals in the stats are derived: `retired + Σ every bucket + Σ outside`,
//! where a bucket's counts move into `retired` when the bucket is reused or the window is
//! cleared, and `outside` is a pair of cells per stripe, packed and bounded like a
//! bucket's, for outcomes that never enter the window (late results, shadow calls of
//! metrics-only mode, half-open probes). So the hot path writes each outcome once,
//! nothing is ever lost on rotation, and no outcome takes a lock: in metrics-only mode
//! during an outage every call is a shadow call, recorded with atomic adds only.

use crate::primitives::{AtomicBool, AtomicU64, Mutex, Ordering};
use std::sync::OnceLock;
use std::sync::atomic::AtomicUsize;

/// Counters per bucket per stripe: `calls | failures << 32` and `slow_ok | slow_err << 32`.
const CELLS_PER_BUCKET: usize = 2;
/// Per-stripe counters that are not part of the window: rejected and ignored calls, and
/// the two cells (packed like a bucket's) of the outcomes recorded outside the window.
const STRIPE_EXTRA: usize = 4;
const REJECTED: usize = 0;
const IGNORED: usize = 1;
const OUTSIDE: usize = 2;
const LINE: usize = 16; // u64s per 128-byte line

/// Bits of the cursor holding the slot: `window_buckets` is at most 1 000.
const SLOT_BITS: u32 = 10;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// The cursor of a window nothing was recorded in since it was made or cleared.
const NO_CURSOR: u64 = u64::MAX;

const LOW: u64 = 1;
const HIGH: u64 = 1 << 32;
/// A cell spills when an add finds either half at or past 2^31: far from 2^32, so adds
/// racing with the spill cannot reach the carry.
const SPILL_AT: u64 = 1 << 31 | 1 << 63;

#[repr(align(128))]
struct Line([AtomicU64; LINE]);

impl Line {
    fn new() -> Self {
        Line(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Number of stripes, shared by every window in the process: the next power of two at or
/// above the available parallelism, at most 8.
pub(crate) fn stripes() -> usize {
    static STRIPES: AtomicUsize = AtomicUsize::new(0);
    match STRIPES.load(Ordering::Relaxed) {
        0 => {
            let n = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, 8)
                .next_power_of_two();
            STRIPES.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// The stripe this thread writes to.
#[inline]
pub(crate) fn stripe_index(mask: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static ID: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id & mask)
}

/// What an outcome adds to the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) failed: bool,
    pub(crate) slow: bool,
}

/// Counts summed over some set of buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow_successes: u64,
    pub(crate) slow_failures: u64,
}

impl Counts {
    fn add_cells(&mut self, a: u64, b: u64) {
        self.calls += a & 0xffff_ffff;
        self.failures += a >> 32;
        self.slow_successes += b & 0xffff_ffff;
        self.slow_failures += b >> 32;
    }

    pub(crate) fn add(&mut self, other: Counts) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.slow_successes += other.slow_successes;
        self.slow_failures += other.slow_failures;
    }

    /// `self - other`, field by field (never below zero).
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub(crate) fn minus(&self, other: Counts) -> Counts {
        Counts {
            calls: self.calls.saturating_sub(other.calls),
            failures: self.failures.saturating_sub(other.failures),
            slow_successes: self.slow_successes.saturating_sub(other.slow_successes),
            slow_failures: self.slow_failures.saturating_sub(other.slow_failures),
        }
    }

    pub(crate) fn successes(&self) -> u64 {
        self.calls - self.failures
    }

    pub(crate) fn slow(&self) -> u64 {
        self.slow_successes + self.slow_failures
    }

    /// Failures as the trip rule sees them: slow successes count when `slow_is_failure`.
    pub(crate) fn trip_failures(&self, slow_is_failure: bool) -> u64 {
        self.failures
            + if slow_is_failure {
                self.slow_successes
            } else {
                0
            }
    }
}

/// A time-bucketed ring of counters. Geometry (bucket count) is fixed; the bucket width
/// is passed in by the caller so a reconfiguration can change it.
///
/// `repr(C)`: what every outcome reads comes first, in `HOT_BYTES`
/// bytes, so the circuit can keep it on a line nothing writes per call.
#[repr(C)]
pub(crate) struct Window {
    stripe_mask: usize,
    /// The newest bucket written: `index << SLOT_BITS | slot`, so the common case finds
    /// its slot with one load and one multiplication instead of two divisions. Moved
    /// (under the `retired` lock) only once its slot holds that bucket, so an outcome
    /// inside the cursor's bucket goes straight to its cell, without reading the epoch.
    cursor: AtomicU64,
    /// Per slot: `bucket index + 1` of the bucket it holds, 0 when empty.
    epochs: Box<[AtomicU64]>,
    /// Per stripe, its lines, allocated on the stripe's first write.
    lines: Box<[OnceLock<Box<[Line]>>]>,
    // ----- the rest is read or written off the per-call path -----
    /// `u32`s (at most 1 000 buckets), so the circuit around the window has room for its
    /// count window's pointer within its five lines.
    buckets: u32,
    lines_per_stripe: u32,
    /// Counts moved out of reused or cleared buckets, and out of a stripe's `OUTSIDE`
    /// cells when a half nears 2^31. Locked by `locate`, `clear` and `snapshot` (to read
    /// the lifetime consistently with those moves), and by `retire_outside` once per 2^31
    /// outcomes of a stripe: never per call, whatever the state.
    retired: Mutex<Counts>,
    /// Per slot, counts moved out of cells before a half could carry (see the module
    /// docs, "Bounds"); empty until the first spill. Locked after `retired`, never before.
    spill: Mutex<Box<[Counts]>>,
    /// Whether `spill` may hold anything: readers skip its lock while false.
    spilled: AtomicBool,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

impl Window {
    /// The bytes at the start of a window that every outcome reads.
    #[cfg(test)]
    pub(crate) const HOT_BYTES: usize = std::mem::offset_of!(Window, buckets);

    pub(crate) fn new(buckets: usize) -> Self {
        let stripes = stripes();
        let cells = STRIPE_EXTRA + buckets * CELLS_PER_BUCKET;
        let lines_per_stripe = cells.div_ceil(LINE);
        let window = Window {
            buckets: buckets as u32,
            lines_per_stripe: lines_per_stripe as u32,
            stripe_mask: stripes - 1,
            epochs: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            cursor: AtomicU64::new(NO_CURSOR),
            lines: (0..stripes).map(|_| OnceLock::new()).collect(),
            retired: Mutex::new(Counts::default()),
            spill: Mutex::new(Box::default()),
            spilled: AtomicBool::new(false),
        };
        // The creating thread's stripe at once: the thread that makes a circuit is
        // usually one that calls it, and its first call then allocates nothing.
        window.cell(window.stripe(), 0);
        window
    }

    /// The stripe this thread writes to.
    #[inline]
    pub(crate) fn stripe(&self) -> usize {
        stripe_index(self.stripe_mask)
    }

    /// The number of stripes.
    pub(crate) fn stripe_count(&self) -> usize {
        self.stripe_mask + 1
    }

    pub(crate) fn buckets(&self) -> usize {
        self.buckets as usize
    }

    /// A cell of a stripe to write to, allocating the stripe's lines on first use.
    #[inline]
    fn cell(&self, stripe: usize, i: usize) -> &AtomicU64 {
        let lines = match self.lines[stripe].get() {
            Some(lines) => lines,
            None => self.new_stripe(stripe),
        };
        &lines[i / LINE].0[i % LINE]
    }

    /// Allocates a stripe's lines (once, whoever races).
    #[cold]
    #[inline(never)]
    fn new_stripe(&self, stripe: usize) -> &[Line] {
        self.lines[stripe].get_or_init(|| (0..self.lines_per_stripe).map(|_| Line::new()).collect())
    }

    /// Cells `i` and `j` of every stripe written to so far.
    #[inline]
    fn cells(&self, i: usize, j: usize) -> impl Iterator<Item = (&AtomicU64, &AtomicU64)> {
        self.lines.iter().filter_map(move |l| {
            l.get()
                .map(|lines| (&lines[i / LINE].0[i % LINE], &lines[j / LINE].0[j % LINE]))
        })
    }

    /// Records one outcome at `now_ns` into the bucket of that instant.
    #[inline(always)]
    pub(crate) fn record(&self, now_ns: u64, width_ns: u64, o: Outcome) {
        let cursor = self.cursor.load(Ordering::Acquire);
        let cursor_idx = cursor >> SLOT_BITS;
        // `now − start of the cursor's bucket`, wrapping: before the bucket, it is far
        // above any width (the start never wraps: it was once someone's `now`).
        let into = now_ns.wrapping_sub(cursor_idx.wrapping_mul(width_ns));
        let slot = if into < width_ns && cursor != NO_CURSOR {
            (cursor & SLOT_MASK) as usize
        } else {
            match self.locate(now_ns, width_ns) {
                Some(slot) => slot,
                None => {
                    // The slot already holds a newer bucket: this outcome is older than
                    // the window (a thread stalled for a whole window). Keep it in the
                    // lifetime.
                    self.record_outside(o);
                    return;
                }
            }
        };
        let stripe = stripe_index(self.stripe_mask);
        let base = STRIPE_EXTRA + slot * CELLS_PER_BUCKET;
        let cell = self.cell(stripe, base);
        let before = cell.fetch_add(LOW + if o.failed { HIGH } else { 0 }, Ordering::Relaxed);
        if before & SPILL_AT != 0 {
            self.spill_cell(slot, cell, false);
        }
        if o.slow {
            let cell = self.cell(stripe, base + 1);
            let before = cell.fetch_add(if o.failed { HIGH } else { LOW }, Ordering::Relaxed);
            if before & SPILL_AT != 0 {
                self.spill_cell(slot, cell, true);
            }
        }
    }

    /// Moves a cell with a half past 2^31 into its slot's spill.
    #[cold]
    #[inline(never)]
    fn spill_cell(&self, slot: usize, cell: &AtomicU64, slow: bool) {
        let mut spill = self.spill.lock().unwrap_or_else(|e| e.into_inner());
        if spill.is_empty() {
            *spill = vec![Counts::default(); self.buckets as usize].into_boxed_slice();
        }
        // Whatever the cell holds now belongs to the bucket the slot holds now: a
        // rotation takes the cell and then this slot's spill under this lock.
        let v = cell.swap(0, Ordering::Relaxed);
        let (a, b) = if slow { (0, v) } else { (v, 0) };
        spill[slot].add_cells(a, b);
        self.spilled.store(true, Ordering::Release);
    }

    /// Takes the spilled counts of `slot` out.
    fn take_spilled(&self, slot: usize) -> Counts {
        if !self.spilled.load(Ordering::Acquire) {
            return Counts::default();
        }
        let mut spill = self.spill.lock().unwrap_or_else(|e| e.into_inner());
        spill.get_mut(slot).map(std::mem::take).unwrap_or_default()
    }

    /// The slot of `now_ns`'s bucket, found by division and moved to that bucket if it
    /// held an older one (its counts retired); then the cursor moves forward to it.
    /// `None` if the slot already holds a newer bucket.
    ///
    /// Under the `retired` lock, like `clear`: a cursor moved here always names a slot
    /// that holds its bucket, even when a `clear` runs at the same time (it empties the
    /// slots and resets the cursor in one critical section).
    #[cold]
    #[inline(never)]
    fn locate(&self, now_ns: u64, width_ns: u64) -> Option<usize> {
        let idx = now_ns / width_ns;
        let slot = (idx % u64::from(self.buckets)) as usize;
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let epoch = self.epochs[slot].load(Ordering::Acquire);
        if epoch > idx + 1 {
            return None;
        }
        if epoch != idx + 1 {
            retired.add(self.take_slot(slot));
            self.epochs[slot].store(idx + 1, Ordering::Release);
        }
        // Forward only: a late outcome of an older bucket must not move it back.
        let c = self.cursor.load(Ordering::Relaxed);
        if c == NO_CURSOR || c >> SLOT_BITS < idx {
            self.cursor
                .store(idx << SLOT_BITS | slot as u64, Ordering::Release);
        }
        Some(slot)
    }

    fn take_slot(&self, slot: usize) -> Counts {
        let base = STRIPE_EXTRA + slot * CELLS_PER_BUCKET;
        let mut c = Counts::default();
        for (a, b) in self.cells(base, base + 1) {
            c.add_cells(a.swap(0, Ordering::Relaxed), b.swap(0, Ordering::Relaxed));
        }
        c.add(self.take_spilled(slot));
        c
    }

    fn slot_counts(&self, slot: usize) -> Counts {
        let base = STRIPE_EXTRA + slot * CELLS_PER_BUCKET;
        let mut c = Counts::default();
        // Once anything spilled, read the cells under the spill lock, so a cell moving
        // into the spill is not counted twice.
        let spill = self
            .spilled
            .load(Ordering::Acquire)
            .then(|| self.spill.lock().unwrap_or_else(|e| e.into_inner()));
        for (a, b) in self.cells(base, base + 1) {
            c.add_cells(a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
        }
        if let Some(c2) = spill.as_ref().and_then(|sp| sp.get(slot)) {
            c.add(*c2);
        }
        c
    }

    /// Counts of the buckets inside the window at `now_ns`.
    pub(crate) fn counts(&self, now_ns: u64, width_ns: u64) -> Counts {
        let cur = now_ns / width_ns;
        let oldest = (cur + 1).saturating_sub(u64::from(self.buckets));
        let mut c = Counts::default();
        for slot in 0..self.buckets as usize {
            let e = self.epochs[slot].load(Ordering::Acquire);
            if e > oldest && e <= cur + 1 {
                c.add(self.slot_counts(slot));
            }
        }
        c
    }

    /// Window counts at `now_ns` and lifetime counts, read consistently with rotation.
    pub(crate) fn snapshot(&self, now_ns: u64, width_ns: u64) -> (Counts, Counts) {
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.counts(now_ns, width_ns);
        let mut lifetime = *retired;
        for slot in 0..self.buckets as usize {
            lifetime.add(self.slot_counts(slot));
        }
        // Under the `retired` lock: a cell moving into it is not counted twice.
        for (a, b) in self.cells(OUTSIDE, OUTSIDE + 1) {
            lifetime.add_cells(a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
        }
        (window, lifetime)
    }

    /// Adds counts restored from a snapshot: `window` to the bucket of `now_ns` (so they
    /// leave the window one window length later), `earlier` to the lifetime totals only.
    pub(crate) fn seed(&self, now_ns: u64, width_ns: u64, window: Counts, earlier: Counts) {
        self.retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(earlier);
        if window == Counts::default() {
            return;
        }
        let Some(slot) = self.locate(now_ns, width_ns) else {
            return;
        };
        // Into the slot's spill, which every reader adds to the slot's cells and a
        // rotation retires with them.
        let mut spill = self.spill.lock().unwrap_or_else(|e| e.into_inner());
        if spill.is_empty() {
            *spill = vec![Counts::default(); self.buckets as usize].into_boxed_slice();
        }
        spill[slot].add(window);
        self.spilled.store(true, Ordering::Release);
    }

    /// Empties the window. Counts move to the lifetime totals.
    pub(crate) fn clear(&self) {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        self.cursor.store(NO_CURSOR, Ordering::Release);
        for slot in 0..self.buckets as usize {
            retired.add(self.take_slot(slot));
            self.epochs[slot].store(0, Ordering::Release);
        }
    }

    /// Records an outcome in the lifetime totals only (late results, shadow calls of
    /// metrics-only mode, half-open probes, outcomes older than the window): the stripe's
    /// `OUTSIDE` cells, one or two atomic adds and no lock, like a bucket's.
    #[inline]
    pub(crate) fn record_outside(&self, o: Outcome) {
        let stripe = stripe_index(self.stripe_mask);
        let cell = self.cell(stripe, OUTSIDE);
        let before = cell.fetch_add(LOW + if o.failed { HIGH } else { 0 }, Ordering::Relaxed);
        if before & SPILL_AT != 0 {
            self.retire_outside(cell, false);
        }
        if o.slow {
            let cell = self.cell(stripe, OUTSIDE + 1);
            let before = cell.fetch_add(if o.failed { HIGH } else { LOW }, Ordering::Relaxed);
            if before & SPILL_AT != 0 {
                self.retire_outside(cell, true);
            }
        }
    }

    /// Moves an `OUTSIDE` cell with a half past 2^31 into `retired` (see "Bounds").
    #[cold]
    #[inline(never)]
    fn retire_outside(&self, cell: &AtomicU64, slow: bool) {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let v = cell.swap(0, Ordering::Relaxed);
        let (a, b) = if slow { (0, v) } else { (v, 0) };
        retired.add_cells(a, b);
    }

    #[inline]
    pub(crate) fn count_rejected(&self) {
        self.bump(REJECTED);
    }

    #[inline]
    pub(crate) fn count_ignored(&self) {
        self.bump(IGNORED);
    }

    #[inline]
    fn bump(&self, which: usize) {
        let stripe = stripe_index(self.stripe_mask);
        self.cell(stripe, which).fetch_add(1, Ordering::Relaxed);
    }

    /// Lifetime rejected and ignored counts.
    pub(crate) fn rejected_ignored(&self) -> (u64, u64) {
        self.cells(REJECTED, IGNORED)
            .fold((0, 0), |(r, i), (a, b)| {
                (r + a.load(Ordering::Relaxed), i + b.load(Ordering::Relaxed))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 1_000;

    fn ok() -> Outcome {
        Outcome {
            failed: false,
            slow: false,
        }
    }
    fn err() -> Outcome {
        Outcome {
            failed: true,
            slow: false,
        }
    }

    #[test]
    fn outcome_leaves_at_bucket_start_plus_window() {
        let w = Window::new(10);
        w.record(0, W, err());
        assert_eq!(w.counts(10 * W - 1, W).calls, 1);
        assert_eq!(w.counts(10 * W, W).calls, 0);
        // Lifetime keeps it.
        assert_eq!(w.snapshot(10 * W, W).1.failures, 1);
    }

    #[test]
    fn reuse_of_a_slot_retires_without_loss() {
        let w = Window::new(4);
        for t in 0..100 {
            w.record(t * W, W, if t % 3 == 0 { err() } else { ok() });
        }
        let (window, life) = w.snapshot(99 * W, W);
        assert_eq!(window.calls, 4);
        assert_eq!(life.calls, 100);
        assert_eq!(life.failures, 34);
    }

    #[test]
    fn slow_counts_split_by_result() {
        let w = Window::new(2);
        w.record(
            0,
            W,
            Outcome {
                failed: false,
                slow: true,
            },
        );
        w.record(
            0,
            W,
            Outcome {
                failed: true,
                slow: true,
            },
        );
        let c = w.counts(0, W);
        assert_eq!(
            (c.calls, c.failures, c.slow_successes, c.slow_failures),
            (2, 1, 1, 1)
        );
        assert_eq!(c.trip_failures(true), 2);
        assert_eq!(c.trip_failures(false), 1);
    }

    #[test]
    fn clear_keeps_lifetime() {
        let w = Window::new(3);
        w.record(5, W, err());
        w.clear();
        let (window, life) = w.snapshot(5, W);
        assert_eq!(window.calls, 0);
        assert_eq!(life.calls, 1);
    }

    #[test]
    fn stale_outcome_goes_to_lifetime_only() {
        let w = Window::new(2);
        w.record(10 * W, W, ok());
        // Slot 0 now holds bucket 10; an outcome from bucket 8 (same slot) is too old.
        w.record(8 * W, W, err());
        let (window, life) = w.snapshot(10 * W, W);
        assert_eq!(window.calls, 1);
        assert_eq!(life.calls, 2);
    }

    /// A bucket may be days wide: a cell's 32-bit halves must not carry into each other
    /// (calls into failures) or wrap, however many outcomes one stripe records in one
    /// bucket. The cell is set just below the point where the base packing overflowed.
    #[test]
    fn a_bucket_with_more_than_2_pow_32_calls_keeps_exact_counts() {
        let w = Window::new(2);
        w.record(0, W, ok());
        let stripe = stripe_index(w.stripe_mask);
        let base = STRIPE_EXTRA;
        // 2^32 - 3 calls of which 7 failed, and as many slow failures, already recorded.
        w.cell(stripe, base)
            .store((HIGH - 3) | 7 << 32, Ordering::Relaxed);
        w.cell(stripe, base + 1)
            .store((HIGH - 3) << 32, Ordering::Relaxed);
        for _ in 0..10 {
            w.record(0, W, err());
            w.record(
                0,
                W,
                Outcome {
                    failed: true,
                    slow: true,
                },
            );
        }
        let c = w.counts(0, W);
        assert_eq!(c.calls, (1 << 32) - 3 + 20);
        assert_eq!(c.failures, 7 + 20);
        assert_eq!(c.slow_failures, (1 << 32) - 3 + 10);
        assert_eq!(c.slow_successes, 0);
        // The spilled counts rotate out with their bucket into the lifetime totals.
        let (window, life) = w.snapshot(2 * W, W);
        assert_eq!(window.calls, 0);
        assert_eq!(life.calls, (1 << 32) - 3 + 20);
        w.record(2 * W, W, ok());
        let (window, life) = w.snapshot(2 * W, W);
        assert_eq!((window.calls, window.failures), (1, 0));
        assert_eq!((life.calls, life.failures), ((1 << 32) - 3 + 21, 27));
    }

    #[test]
    fn outside_outcomes_count_in_the_lifetime_only() {
        let w = Window::new(2);
        w.record(0, W, ok());
        w.record_outside(err());
        w.record_outside(Outcome {
            failed: false,
            slow: true,
        });
        let (window, life) = w.snapshot(0, W);
        assert_eq!(window.calls, 1);
        assert_eq!((life.calls, life.failures, life.slow_successes), (3, 1, 1));
        // Clearing the window keeps them.
        w.clear();
        assert_eq!(w.snapshot(0, W).1.calls, 3);
    }

    /// Issue 12: in metrics-only mode during an outage every call is recorded outside the
    /// window; that must not take the `retired` lock (held here by another thread).
    #[test]
    fn recording_outside_the_window_takes_no_lock() {
        let w = Window::new(2);
        let (tx, rx) = std::sync::mpsc::channel();
        let retired = w.retired.lock().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                w.record_outside(err());
                tx.send(()).unwrap();
            });
            let done = rx.recv_timeout(std::time::Duration::from_secs(10));
            drop(retired);
            assert!(done.is_ok(), "record_outside waited for the retired lock");
        });
        assert_eq!(w.snapshot(0, W).1.failures, 1);
    }

    /// The outside cells are bounded like a bucket's: past 2^31 in a half they move into
    /// `retired`, exactly.
    #[test]
    fn outside_cells_past_2_pow_31_move_into_retired_exactly() {
        let w = Window::new(2);
        let stripe = stripe_index(w.stripe_mask);
        w.cell(stripe, OUTSIDE)
            .store((HIGH - 3) | 7 << 32, Ordering::Relaxed);
        for _ in 0..10 {
            w.record_outside(err());
        }
        let life = w.snapshot(0, W).1;
        assert_eq!((life.calls, life.failures), ((1 << 32) - 3 + 10, 17));
        // The first add moved the cell out; the nine after it are in the cell again.
        assert_eq!(w.cell(stripe, OUTSIDE).load(Ordering::Relaxed), 9 | 9 << 32);
    }
}
