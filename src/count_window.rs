//! The count window: the last `n` calls, whatever their age.
//!
//! # Design
//!
//! A ring of `n` one-byte outcome slots, an atomic cursor, and running sums. Recording an
//! outcome claims the next position with one `fetch_add` on the cursor, swaps the
//! outcome into slot `position % n` (getting back the outcome it evicts), and, only when
//! the two differ, adds the difference to the sums: in a healthy system a success
//! replaces a success and the sums are not written. So an outcome costs two atomic
//! read-modify-writes, three when it changes the counts (four when a slow call enters or
//! leaves), whatever `n` is and however many calls went before: O(1), lock-free, and no
//! allocation after creation.
//!
//! # Why the sums stay exact
//!
//! Every change to a slot is an atomic `swap`, and the thread that swapped applies
//! exactly `new − old` to the sums, once. The sums are therefore the telescoping total of
//! every slot's changes: once the recording threads are done they equal the ring's
//! contents exactly, whatever the interleaving (`clear` swaps every slot to empty under
//! the same rule). Two threads recording at once cannot lose a count: each swap returns
//! a distinct old value and each delta is applied by one `fetch_add`.
//!
//! Between a swap and its add the sums can be off by the in-flight outcomes, and a
//! delta can even land before the one that put the evicted outcome in (a thread stalled
//! while `n` other calls wrapped the ring), so a count can be transiently negative. The
//! sums pack two counts in the halves of one `u64`, added with wrapping arithmetic, and
//! are read as signed digits: a half is a two's-complement `i32`, its borrow taken back
//! from the half above. That read is exact while every count lies in
//! `(−2^31, 2^31)`, which `n ≤ 1 000 000` and fewer than 2^31 − n calls in flight
//! guarantee; a negative transient is read as 0 and a count as at most `n`.
//!
//! # Lifetime counts
//!
//! Lifetime calls are the cursor (every position ever claimed); lifetime failures and
//! slow calls are what is in the ring plus what left it, counted when an outcome
//! carrying them is evicted (by a newer one or by `clear`), so a success evicting a
//! success writes no counter there either.
//!
//! Cache behaviour: unlike the time window, the cursor and the sums are shared by every
//! thread (a count is global by nature), so calls on many cores contend on one line.

use crate::primitives::{AtomicU8, AtomicU64, Ordering};
use crate::window::{Counts, Outcome};

/// The largest count window.
pub(crate) const MAX_CALLS: u32 = 1_000_000;

const PRESENT: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

/// Calls in the low half, failures in the high half.
fn main_cell(slot: u8) -> u64 {
    u64::from(slot & PRESENT) | u64::from((slot & FAILED) >> 1) << 32
}

/// Slow successes in the low half, slow failures in the high half.
fn slow_cell(slot: u8) -> u64 {
    match (slot & SLOW != 0, slot & FAILED != 0) {
        (false, _) => 0,
        (true, false) => 1,
        (true, true) => 1 << 32,
    }
}

/// The two counts of a cell read as signed digits, negatives as 0.
fn decode(v: u64) -> (u64, u64) {
    let lo = i64::from(v as u32 as i32);
    let hi = i64::from((v.wrapping_sub(lo as u64) >> 32) as u32 as i32);
    (lo.max(0) as u64, hi.max(0) as u64)
}

#[repr(align(128))]
struct Shared128 {
    /// Positions claimed since creation (never reset).
    cursor: AtomicU64,
    /// `calls | failures << 32` of the ring, see the module docs.
    sums: AtomicU64,
    /// `slow_ok | slow_err << 32` of the ring.
    slow: AtomicU64,
}

/// The last `n` calls. See the module docs.
pub(crate) struct CountWindow {
    hot: Shared128,
    slots: Box<[AtomicU8]>,
    /// Failures, slow successes and slow failures evicted from the ring: off the path of
    /// a success evicting a success.
    gone_failures: AtomicU64,
    gone_slow_ok: AtomicU64,
    gone_slow_err: AtomicU64,
}

impl std::fmt::Debug for CountWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountWindow")
            .field("calls", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl CountWindow {
    pub(crate) fn new(calls: u32) -> Self {
        debug_assert!((1..=MAX_CALLS).contains(&calls));
        CountWindow {
            hot: Shared128 {
                cursor: AtomicU64::new(0),
                sums: AtomicU64::new(0),
                slow: AtomicU64::new(0),
            },
            slots: (0..calls).map(|_| AtomicU8::new(0)).collect(),
            gone_failures: AtomicU64::new(0),
            gone_slow_ok: AtomicU64::new(0),
            gone_slow_err: AtomicU64::new(0),
        }
    }

    /// Records one outcome, evicting the oldest once the ring is full.
    #[inline]
    pub(crate) fn record(&self, o: Outcome) {
        let new = PRESENT | if o.failed { FAILED } else { 0 } | if o.slow { SLOW } else { 0 };
        let at = self.hot.cursor.fetch_add(1, Ordering::Relaxed);
        let slot = &self.slots[(at % self.slots.len() as u64) as usize];
        // AcqRel: the evicted outcome's bits come with the write that put them there.
        let old = slot.swap(new, Ordering::AcqRel);
        if old != new {
            self.apply(old, new);
        } else if old & (FAILED | SLOW) != 0 {
            // Same counts in the ring, but the evicted outcome leaves it.
            self.count_gone(old);
        }
    }

    /// Adds `new − old` to the sums and counts what `old` takes out of the ring.
    #[inline]
    fn apply(&self, old: u8, new: u8) {
        let delta = main_cell(new).wrapping_sub(main_cell(old));
        if delta != 0 {
            self.hot.sums.fetch_add(delta, Ordering::AcqRel);
        }
        if (old | new) & SLOW != 0 {
            let delta = slow_cell(new).wrapping_sub(slow_cell(old));
            if delta != 0 {
                self.hot.slow.fetch_add(delta, Ordering::AcqRel);
            }
        }
        self.count_gone(old);
    }

    fn count_gone(&self, old: u8) {
        if old & FAILED != 0 {
            self.gone_failures.fetch_add(1, Ordering::Relaxed);
        }
        if old & SLOW != 0 {
            let cell = if old & FAILED != 0 {
                &self.gone_slow_err
            } else {
                &self.gone_slow_ok
            };
            cell.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts of the ring.
    pub(crate) fn counts(&self) -> Counts {
        let n = self.slots.len() as u64;
        let (calls, failures) = decode(self.hot.sums.load(Ordering::Acquire));
        let (slow_ok, slow_err) = decode(self.hot.slow.load(Ordering::Acquire));
        let calls = calls.min(n);
        Counts {
            calls,
            failures: failures.min(calls),
            slow_successes: slow_ok.min(calls),
            slow_failures: slow_err.min(calls),
        }
    }

    /// Window counts and lifetime counts (of the outcomes recorded here; exact once no
    /// record is in flight).
    pub(crate) fn snapshot(&self) -> (Counts, Counts) {
        let window = self.counts();
        let lifetime = Counts {
            calls: self.hot.cursor.load(Ordering::Acquire),
            failures: window.failures + self.gone_failures.load(Ordering::Relaxed),
            slow_successes: window.slow_successes + self.gone_slow_ok.load(Ordering::Relaxed),
            slow_failures: window.slow_failures + self.gone_slow_err.load(Ordering::Relaxed),
        };
        (window, lifetime)
    }

    /// Empties the ring; what it held stays in the lifetime counts. O(n), on transitions.
    pub(crate) fn clear(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Ordering::AcqRel);
            if old != 0 {
                self.apply(old, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(failed: bool, slow: bool) -> Outcome {
        Outcome { failed, slow }
    }

    #[test]
    fn keeps_the_last_n_calls() {
        let w = CountWindow::new(4);
        for i in 0..10 {
            w.record(o(i % 2 == 0, i == 9));
        }
        let (win, life) = w.snapshot();
        // Calls 6..=9: 6 and 8 failed, 9 slow success.
        assert_eq!(
            (
                win.calls,
                win.failures,
                win.slow_successes,
                win.slow_failures
            ),
            (4, 2, 1, 0)
        );
        assert_eq!((life.calls, life.failures, life.slow_successes), (10, 5, 1));
        w.clear();
        let (win, life) = w.snapshot();
        assert_eq!(win, Counts::default());
        assert_eq!((life.calls, life.failures, life.slow_successes), (10, 5, 1));
        w.record(o(true, true));
        let (win, life) = w.snapshot();
        assert_eq!((win.calls, win.failures, win.slow_failures), (1, 1, 1));
        assert_eq!((life.calls, life.failures, life.slow_failures), (11, 6, 1));
    }

    /// The largest ring, wrapped two and a half times: still exact.
    #[test]
    fn a_million_call_ring_stays_exact_after_wrapping() {
        let w = CountWindow::new(MAX_CALLS);
        for i in 0..2_500_000u32 {
            w.record(o(i % 4 == 0, i % 10 == 0));
        }
        let (win, life) = w.snapshot();
        // The last 1 000 000 calls: i in 1 500 000..2 500 000.
        assert_eq!((win.calls, win.failures), (1_000_000, 250_000));
        assert_eq!(win.slow_failures, 50_000, "i % 20 == 0");
        assert_eq!(
            win.slow_successes, 50_000,
            "i % 10 == 0 but not i % 20 == 0"
        );
        assert_eq!((life.calls, life.failures), (2_500_000, 625_000));
        assert_eq!(life.slow(), 250_000);
    }

    #[test]
    fn signed_digits_read_transient_negatives_as_zero() {
        // One call in, its failure's removal applied before its addition: failures −1.
        let v = 1u64.wrapping_add(0u64.wrapping_sub(1 << 32));
        assert_eq!(decode(v), (1, 0));
        // Calls −1, failures 3: the borrow is taken back from the high half.
        let v = (3u64 << 32).wrapping_sub(1);
        assert_eq!(decode(v), (0, 3));
        assert_eq!(decode(5 | 2 << 32), (5, 2));
    }

    #[test]
    fn two_threads_lose_no_count() {
        let w = CountWindow::new(64);
        std::thread::scope(|s| {
            for t in 0..2 {
                let w = &w;
                s.spawn(move || {
                    for i in 0..100_000u32 {
                        w.record(o((i + t) % 3 == 0, i % 7 == 0));
                    }
                });
            }
        });
        let (win, life) = w.snapshot();
        let mut ring = Counts::default();
        for slot in w.slots.iter() {
            let v = slot.load(Ordering::Relaxed);
            ring.calls += u64::from(v & PRESENT);
            ring.failures += u64::from(v & FAILED != 0);
            ring.slow_successes += u64::from(v & SLOW != 0 && v & FAILED == 0);
            ring.slow_failures += u64::from(v & SLOW != 0 && v & FAILED != 0);
        }
        assert_eq!(win, ring);
        assert_eq!(life.calls, 200_000);
        let failures: u64 = (0..2u32)
            .map(|t| (0..100_000u32).filter(|i| (i + t) % 3 == 0).count() as u64)
            .sum();
        assert_eq!(life.failures, failures);
    }
}
