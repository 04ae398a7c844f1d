//! Where a circuit's time comes from.
//!
//! # Why not `Instant::now()` on every call
//!
//! A Closed call needs the time twice: when it starts (to tell a slow call) and when it
//! ends (to pick a window bucket). On the machines this crate is measured on, a precise
//! monotonic read (`CLOCK_MONOTONIC` through the vDSO, which is what both
//! `std::time::Instant::now()` and `tokio::time::Instant::now()` are) costs about 23 ns:
//! two of them cost more than the fastest peer's whole call. Nothing on the Closed path
//! needs nanoseconds: a slow-call threshold of 500 ms and a 60 s window in 6 s buckets are
//! both served by a clock with millisecond resolution.
//!
//! # The two sources
//!
//! * **Coarse** (Linux): `CLOCK_MONOTONIC_COARSE`, the kernel's monotonic clock as of its
//!   last tick (resolution 1–4 ms, read from the vDSO in about 5 ns). The same clock as
//!   `Instant`, so the two never drift apart; it moves on the next tick after a process is
//!   thawed, so a frozen Lambda sandbox sees the right time at once.
//! * **Precise**: [`tokio::time::Instant::now`], which follows `tokio::time::pause` and
//!   `advance` in tests.
//!
//! A circuit uses the coarse source only when it is exact enough and cannot be wrong:
//!
//! 1. the platform has it and its resolution is at most 4 ms;
//! 2. the configuration does not need finer time: `expected_response_time` and the bucket
//!    width are both at least 100 ms (so one tick is at most 4 % of either);
//! 3. tokio's clock is not paused. Pausing is detected when the circuit is created (a
//!    paused clock does not move while the real one does) and re-checked on every cold
//!    path (Open admission, transitions, stats): once tokio's clock and the real clock
//!    disagree by more than a few ticks, the circuit follows tokio's clock for good.
//!
//! * **Manual**: a time the owner sets ([`Clock::manual`], [`Clock::set_manual_ns`]):
//!   the replay (feature `replay`) drives its circuits' clocks from a trace. Checked only
//!   where the coarse source is not in use, so it costs the coarse Closed path nothing.
//!
//! So tests under `#[tokio::test(start_paused = true)]` get exactly tokio's time, and a
//! production circuit gets a 5 ns clock. Call [`tokio::time::pause`] *before* building a
//! circuit whose Closed-path timing a test depends on (with `start_paused` that is always
//! the case).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use tokio::time::Instant;

/// Coarse time coarser than this (a larger tick) is not used.
const MAX_COARSE_RESOLUTION_NS: u64 = 4_000_000;
/// Configured durations must be at least this long for the coarse source.
const MIN_COARSE_SPAN_NS: u64 = 100_000_000;
/// Disagreement between the two sources that reveals a paused or advanced tokio clock.
const DRIFT_LIMIT_NS: u64 = 50_000_000;

/// Set once any circuit has seen tokio's clock paused or advanced: from then on, every new
/// circuit in the process follows tokio's clock.
static TOKIO_CLOCK_DETACHED: AtomicBool = AtomicBool::new(false);

const SOURCE_COARSE: u8 = 0;
const SOURCE_PRECISE: u8 = 1;
/// Precise for good: tokio's clock was seen paused or advanced.
const SOURCE_TOKIO_PINNED: u8 = 2;
/// Set by the owner (`manual`); never changes source.
const SOURCE_MANUAL: u8 = 3;

/// A circuit's clock: nanoseconds since the circuit was created.
#[derive(Debug)]
pub(crate) struct Clock {
    source: AtomicU8,
    origin: Instant,
    /// The coarse clock's reading at `origin`, in nanoseconds.
    origin_coarse: u64,
    /// The time of a manual clock, in nanoseconds since its origin (0 otherwise).
    manual: AtomicU64,
}

impl Clock {
    /// A clock starting now, coarse if `spans_ns` (the shortest configured duration the
    /// Closed path measures) allows it.
    pub(crate) fn new(spans_ns: u64) -> Self {
        let origin = Instant::now();
        let origin_coarse = coarse::now_ns().unwrap_or(0);
        let clock = Clock {
            source: AtomicU8::new(SOURCE_PRECISE),
            origin,
            origin_coarse,
            manual: AtomicU64::new(0),
        };
        if TOKIO_CLOCK_DETACHED.load(Ordering::Relaxed) || tokio_clock_is_paused() {
            TOKIO_CLOCK_DETACHED.store(true, Ordering::Relaxed);
            clock.source.store(SOURCE_TOKIO_PINNED, Ordering::Relaxed);
        } else {
            clock.configure(spans_ns);
        }
        clock
    }

    /// A clock that reads what [`set_manual_ns`](Self::set_manual_ns) last set (0 at
    /// first), whatever tokio's or the machine's clock do.
    #[cfg_attr(not(feature = "replay"), allow(dead_code))]
    pub(crate) fn manual() -> Self {
        Clock {
            source: AtomicU8::new(SOURCE_MANUAL),
            origin: Instant::now(),
            origin_coarse: 0,
            manual: AtomicU64::new(0),
        }
    }

    /// Sets a manual clock's time (nanoseconds since its origin); no effect on another.
    #[cfg_attr(not(feature = "replay"), allow(dead_code))]
    pub(crate) fn set_manual_ns(&self, ns: u64) {
        self.manual.store(ns, Ordering::Relaxed);
    }

    /// Chooses coarse or precise for a (new) configuration. A pinned or manual clock
    /// keeps its source.
    pub(crate) fn configure(&self, spans_ns: u64) {
        let coarse_ok = spans_ns >= MIN_COARSE_SPAN_NS
            && coarse::resolution_ns().is_some_and(|r| r <= MAX_COARSE_RESOLUTION_NS);
        let want = if coarse_ok {
            SOURCE_COARSE
        } else {
            SOURCE_PRECISE
        };
        let _ = self
            .source
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (s != SOURCE_TOKIO_PINNED && s != SOURCE_MANUAL).then_some(want)
            });
    }

    /// The instant the clock started.
    pub(crate) fn origin(&self) -> Instant {
        self.origin
    }

    /// Nanoseconds since the origin: the hot-path read.
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        #[cfg(test)]
        reads::count();
        if self.source.load(Ordering::Relaxed) == SOURCE_COARSE {
            if let Some(now) = coarse::now_ns() {
                // Never below the origin: the clock is monotonic and the origin was
                // read from it first.
                return now.wrapping_sub(self.origin_coarse);
            }
        }
        self.precise_ns()
    }

    /// Nanoseconds since the origin, exact within a tick of `deadline`: the coarse clock
    /// can be up to a tick either side of the precise one, so near a deadline (the end of
    /// a break) the precise clock decides. A caller told to retry after `d` is then never
    /// turned away because the coarse clock had not ticked yet, and a backpressure waiter
    /// woken at the deadline finds the circuit ready instead of spinning for a tick.
    #[inline]
    pub(crate) fn now_ns_near(&self, deadline: u64) -> u64 {
        let now = self.now_ns();
        if self.source.load(Ordering::Relaxed) == SOURCE_COARSE
            && now.abs_diff(deadline) <= MAX_COARSE_RESOLUTION_NS
        {
            return self.precise_ns();
        }
        now
    }

    /// Nanoseconds since the origin, when that is more than a coarse tick before
    /// `deadline` (so the precise clock would say "before" too); `None` near or past it,
    /// where [`now_ns_near`](Self::now_ns_near) decides. The Open rejection's test: one
    /// read and one compare for every call of an outage but those of its last tick.
    #[inline]
    pub(crate) fn now_ns_well_before(&self, deadline: u64) -> Option<u64> {
        let now = self.now_ns();
        (now.saturating_add(MAX_COARSE_RESOLUTION_NS) < deadline).then_some(now)
    }

    fn precise_ns(&self) -> u64 {
        if self.source.load(Ordering::Relaxed) == SOURCE_MANUAL {
            return self.manual.load(Ordering::Relaxed);
        }
        Instant::now()
            .saturating_duration_since(self.origin)
            .as_nanos() as u64
    }

    /// Nanoseconds since the origin for a cold path. While the coarse source is in use,
    /// compares it with tokio's clock and pins the clock to tokio's if they disagree (a
    /// test paused or advanced tokio's clock after the circuit was created).
    pub(crate) fn now_ns_checked(&self) -> u64 {
        if self.source.load(Ordering::Relaxed) != SOURCE_COARSE {
            return self.precise_ns();
        }
        let precise = self.precise_ns();
        match coarse::now_ns() {
            Some(c) if c.saturating_sub(self.origin_coarse).abs_diff(precise) <= DRIFT_LIMIT_NS => {
                c.saturating_sub(self.origin_coarse)
            }
            _ => {
                TOKIO_CLOCK_DETACHED.store(true, Ordering::Relaxed);
                self.source.store(SOURCE_TOKIO_PINNED, Ordering::Relaxed);
                tracing::debug!("tokio's clock is paused or was advanced: the circuit follows it");
                precise
            }
        }
    }

    /// Whether the Closed path reads the coarse clock.
    #[cfg(test)]
    pub(crate) fn is_coarse(&self) -> bool {
        self.source.load(Ordering::Relaxed) == SOURCE_COARSE
    }
}

/// Hot-path clock reads made by this thread, counted in the crate's own tests only.
#[cfg(test)]
pub(crate) mod reads {
    use std::cell::Cell;

    thread_local! {
        static READS: Cell<u64> = const { Cell::new(0) };
    }

    pub(super) fn count() {
        READS.with(|r| r.set(r.get() + 1));
    }

    /// [`Clock::now_ns`](super::Clock::now_ns) reads by this thread while `f` runs.
    pub(crate) fn during(f: impl FnOnce()) -> u64 {
        let before = READS.with(Cell::get);
        f();
        READS.with(Cell::get) - before
    }
}

/// Whether tokio's clock is paused here: a paused clock returns the same instant while
/// the real clock moves on. (An unpaused tokio clock *is* the real clock, read after it.)
fn tokio_clock_is_paused() -> bool {
    let before = Instant::now();
    let real = std::time::Instant::now();
    while std::time::Instant::now() == real {
        std::hint::spin_loop();
    }
    Instant::now() == before
}

#[cfg(target_os = "linux")]
mod coarse {
    use rustix::time::{ClockId, Timespec, clock_getres, clock_gettime};

    fn ns(t: Timespec) -> u64 {
        (t.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(t.tv_nsec as u64)
    }

    #[inline]
    pub(super) fn now_ns() -> Option<u64> {
        Some(ns(clock_gettime(ClockId::MonotonicCoarse)))
    }

    pub(super) fn resolution_ns() -> Option<u64> {
        Some(ns(clock_getres(ClockId::MonotonicCoarse)))
    }
}

#[cfg(not(target_os = "linux"))]
mod coarse {
    #[inline]
    pub(super) fn now_ns() -> Option<u64> {
        None
    }

    pub(super) fn resolution_ns() -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_only_for_long_spans() {
        let clock = Clock::new(MIN_COARSE_SPAN_NS - 1);
        assert!(!clock.is_coarse());
        clock.configure(MIN_COARSE_SPAN_NS);
        let pinned = clock.source.load(Ordering::Relaxed) == SOURCE_TOKIO_PINNED;
        assert_eq!(clock.is_coarse(), cfg!(target_os = "linux") && !pinned);
    }

    #[test]
    fn a_manual_clock_reads_what_was_set() {
        let clock = Clock::manual();
        assert_eq!(clock.now_ns(), 0);
        clock.set_manual_ns(5_000_000);
        assert_eq!(clock.now_ns(), 5_000_000);
        assert_eq!(clock.now_ns_checked(), 5_000_000);
        assert_eq!(clock.now_ns_near(5_000_000), 5_000_000);
        clock.configure(MIN_COARSE_SPAN_NS);
        assert!(!clock.is_coarse());
        assert_eq!(clock.now_ns(), 5_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_tokio_clock_is_followed() {
        let clock = Clock::new(MIN_COARSE_SPAN_NS);
        assert!(!clock.is_coarse());
        let a = clock.now_ns();
        tokio::time::advance(std::time::Duration::from_secs(7200)).await;
        assert_eq!(clock.now_ns() - a, 7_200_000_000_000);
    }
}
