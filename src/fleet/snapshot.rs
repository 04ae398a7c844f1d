//! Snapshot and restore of a circuit's state, so a cold start can begin where the last
//! process (or the fleet) left off.

use super::record::FleetState;
use crate::config::SlidingWindow;
use crate::window::Counts;
use crate::{Circuit, CircuitState};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime};

/// The format [`Circuit::snapshot`] writes: 2 adds the window and lifetime counts.
/// [`Circuit::restore`] reads 1 and 2.
const FORMAT: u32 = 2;
const FORMAT_V1: u32 = 1;
/// Lifetime counts above this (2^53, about 285 years of a million calls a second) are
/// refused: no process made them, and sums past it would lose precision or overflow.
const MAX_LIFETIME: u64 = 1 << 53;
/// A time window's counts above this are refused (about 4.3 billion calls in one window).
const MAX_TIME_WINDOW: u64 = u32::MAX as u64;
/// Larger JSON documents are refused unread.
const MAX_JSON: usize = 4 * 1024;
/// A snapshot taken further in the future than this is refused (clock skew allowance).
const MAX_SKEW: Duration = Duration::from_secs(300);

/// A circuit's state at one moment, in wall-clock time: serialize it (serde), keep it
/// anywhere, and [`restore`](Circuit::restore) it into a new circuit.
///
/// Holds the state (a half-open circuit is saved as Open with its break over, so the
/// restored circuit probes first), the end of the break, the openings in a row (for the
/// growing break), and (format 2) the window's and the lifetime counts, so a cold start
/// after a restore is not blind: its stats, its rate criteria and its fleet reports start
/// from the old process's window. The window counts go back into a time window only while
/// the snapshot is younger than the window, as if the calls had just happened (they leave
/// the window one window length after the restore); otherwise, and for a circuit with a
/// count window, they are added to the lifetime counts only. The run of consecutive
/// failures is not carried over.
///
/// ```
/// use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitState};
/// use tower_circuit_breaker::fleet::CircuitSnapshot;
///
/// let old = Circuit::named("dynamodb", CircuitBreakerConfig::dynamodb());
/// old.force_open(); // a manual override is not carried over
/// let json = serde_json::to_vec(&old.snapshot()).unwrap();
///
/// let new = Circuit::named("dynamodb", CircuitBreakerConfig::dynamodb());
/// let snapshot = CircuitSnapshot::from_json(&json).unwrap();
/// assert_eq!(new.restore(&snapshot), Ok(false));
/// assert_eq!(new.state(), CircuitState::Closed);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CircuitSnapshot {
    /// Format number (2; 1 has no counts).
    pub format: u32,
    /// The circuit's name; [`Circuit::restore`] refuses another circuit's snapshot.
    pub circuit: String,
    /// Closed or Open (manual overrides are saved as Closed: they are not carried over).
    pub state: FleetState,
    /// While Open: the end of the break, Unix epoch milliseconds.
    pub open_until_ms: Option<u64>,
    /// Openings since the circuit last closed.
    pub opens_in_a_row: u32,
    /// When the snapshot was taken, Unix epoch milliseconds.
    pub taken_at_ms: u64,
    /// The window's counts when the snapshot was taken (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<SnapshotCounts>,
    /// The lifetime counts (the window's included) when the snapshot was taken (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<SnapshotCounts>,
}

/// Completed calls counted by a circuit, as a [`CircuitSnapshot`] carries them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SnapshotCounts {
    /// Calls (successes and failures; ignored calls are not counted).
    pub calls: u64,
    /// Of those, failures.
    pub failures: u64,
    /// Of the successes, the slow ones.
    pub slow_successes: u64,
    /// Of the failures, the slow ones.
    pub slow_failures: u64,
}

impl From<Counts> for SnapshotCounts {
    fn from(c: Counts) -> Self {
        SnapshotCounts {
            calls: c.calls,
            failures: c.failures,
            slow_successes: c.slow_successes,
            slow_failures: c.slow_failures,
        }
    }
}

impl SnapshotCounts {
    fn counts(self) -> Counts {
        Counts {
            calls: self.calls,
            failures: self.failures,
            slow_successes: self.slow_successes,
            slow_failures: self.slow_failures,
        }
    }

    /// Every part within the whole: failures and slow calls within the calls.
    fn consistent(&self) -> bool {
        self.failures <= self.calls
            && self.slow_failures <= self.failures
            && self.slow_successes <= self.calls - self.failures
    }

    /// Every field at most `other`'s.
    fn within(&self, other: &SnapshotCounts) -> bool {
        self.calls <= other.calls
            && self.failures <= other.failures
            && self.slow_successes <= other.slow_successes
            && self.slow_failures <= other.slow_failures
    }
}

/// A snapshot was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotError {
    rule: &'static str,
}

impl SnapshotError {
    /// The rule it broke.
    pub fn rule(&self) -> &'static str {
        self.rule
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid circuit snapshot: {}", self.rule)
    }
}

impl std::error::Error for SnapshotError {}

fn refuse<T>(rule: &'static str) -> Result<T, SnapshotError> {
    Err(SnapshotError { rule })
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl CircuitSnapshot {
    /// Reads a snapshot from JSON (at most 4 KiB, no unknown fields).
    ///
    /// # Errors
    ///
    /// When the document is too large or not a snapshot.
    pub fn from_json(json: &[u8]) -> Result<Self, SnapshotError> {
        if json.len() > MAX_JSON {
            return refuse("larger than 4 KiB");
        }
        serde_json::from_slice(json).or_else(|_| refuse("not a circuit snapshot"))
    }
}

impl Circuit {
    /// The circuit's state now, in wall-clock time. Feature `fleet`.
    pub fn snapshot(&self) -> CircuitSnapshot {
        let parts = self.parts();
        let now_ms = epoch_ms(parts.now);
        let (state, open_until_ms) = match (parts.state, parts.normal) {
            (CircuitState::Open, true) => (FleetState::Open, parts.open_until.map(epoch_ms)),
            (CircuitState::HalfOpen, true) => (FleetState::Open, Some(now_ms)),
            _ => (FleetState::Closed, None),
        };
        let (window, lifetime) = self.counts();
        CircuitSnapshot {
            format: FORMAT,
            circuit: self.name().to_owned(),
            state,
            open_until_ms,
            opens_in_a_row: parts.opens_in_a_row,
            taken_at_ms: now_ms,
            window: Some(window.into()),
            lifetime: Some(lifetime.into()),
        }
    }

    /// Starts this circuit from a snapshot: if it was Open, a Closed circuit (without a
    /// manual override) opens for what is left of the break (nothing left: the next call
    /// is a probe), with [`TransitionReason::Restored`](crate::stats::TransitionReason::Restored).
    /// Returns whether the state changed. Feature `fleet`.
    ///
    /// The counts (format 2) are added to this circuit's: restore into a new circuit.
    ///
    /// # Errors
    ///
    /// The snapshot is untrusted input. Refused, and nothing changes, when its format is
    /// unknown, it names another circuit, it was taken in the future (beyond 5 minutes of
    /// clock skew), it is Open without an end, what is left of its break is longer than
    /// this circuit could break for (`recovery_timeout`, or the backoff's `max`), or its
    /// counts are impossible: parts larger than their whole, a window larger than the
    /// lifetime or than the window can hold (a count window's size; 2^32 calls for a time
    /// window), lifetime counts beyond 2^53, or counts in a format-1 snapshot.
    pub fn restore(&self, snapshot: &CircuitSnapshot) -> Result<bool, SnapshotError> {
        if snapshot.format != FORMAT && snapshot.format != FORMAT_V1 {
            return refuse("unknown format");
        }
        if snapshot.circuit != self.name() {
            return refuse("taken of another circuit");
        }
        let parts = self.parts();
        let now_ms = epoch_ms(parts.now);
        if snapshot.taken_at_ms > now_ms.saturating_add(MAX_SKEW.as_millis() as u64) {
            return refuse("taken in the future");
        }
        let config = self.config();
        let counts = self.check_counts(snapshot, &config)?;
        let remaining = match (snapshot.state, snapshot.open_until_ms) {
            (FleetState::Closed, Some(_)) => return refuse("closed with a break"),
            (FleetState::Closed, None) => None,
            (FleetState::Open, None) => return refuse("open without the end of its break"),
            (FleetState::Open, Some(until)) => {
                let longest = super::config::longest_break(&config);
                let remaining = Duration::from_millis(until.saturating_sub(now_ms));
                if remaining > longest + MAX_SKEW {
                    return refuse("break longer than the circuit's longest");
                }
                Some(remaining.min(longest))
            }
        };
        if let Some((window, lifetime)) = counts {
            // The window's calls are still in the window only while the snapshot is
            // younger than it; otherwise they are history.
            let age = Duration::from_millis(now_ms.saturating_sub(snapshot.taken_at_ms));
            let current = age < config.monitoring_window();
            let (window, earlier) = if current {
                (window, lifetime.minus(window))
            } else {
                (Counts::default(), lifetime)
            };
            self.restore_counts(window, earlier);
        }
        let opens = snapshot.opens_in_a_row.min(1_000);
        Ok(remaining.is_some_and(|r| self.restore_open(r, opens)))
    }

    /// The snapshot's window and lifetime counts, if it has them and they are possible.
    fn check_counts(
        &self,
        snapshot: &CircuitSnapshot,
        config: &crate::CircuitBreakerConfig,
    ) -> Result<Option<(Counts, Counts)>, SnapshotError> {
        let (window, lifetime) = match (snapshot.window, snapshot.lifetime) {
            (None, None) => return Ok(None),
            (Some(w), Some(l)) => (w, l),
            _ => return refuse("window counts without lifetime counts, or the reverse"),
        };
        if snapshot.format == FORMAT_V1 {
            return refuse("counts in a format-1 snapshot");
        }
        if !window.consistent() || !lifetime.consistent() {
            return refuse("counts with more failures or slow calls than calls");
        }
        if lifetime.calls > MAX_LIFETIME {
            return refuse("lifetime counts beyond 2^53");
        }
        if !window.within(&lifetime) {
            return refuse("window counts larger than the lifetime counts");
        }
        let capacity = match config.sliding_window() {
            SlidingWindow::Time => MAX_TIME_WINDOW,
            SlidingWindow::Count(n) => u64::from(n),
        };
        if window.calls > capacity {
            return refuse("window counts beyond the window's capacity");
        }
        Ok(Some((window.counts(), lifetime.counts())))
    }
}
