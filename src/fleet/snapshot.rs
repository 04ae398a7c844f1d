//! Snapshot and restore of a circuit's state, so a cold start can begin where the last
//! process (or the fleet) left off.

use super::record::FleetState;
use crate::{Circuit, CircuitState};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime};

/// The format [`Circuit::snapshot`] writes and [`Circuit::restore`] reads.
const FORMAT: u32 = 1;
/// Larger JSON documents are refused unread.
const MAX_JSON: usize = 4 * 1024;
/// A snapshot taken further in the future than this is refused (clock skew allowance).
const MAX_SKEW: Duration = Duration::from_secs(300);

/// A circuit's state at one moment, in wall-clock time: serialize it (serde), keep it
/// anywhere, and [`restore`](Circuit::restore) it into a new circuit.
///
/// Holds the state (a half-open circuit is saved as Open with its break over, so the
/// restored circuit probes first), the end of the break, and the openings in a row (for
/// the growing break). Window and lifetime counts are not carried over: they describe
/// the old process's traffic.
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
    /// Format number (1).
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
        CircuitSnapshot {
            format: FORMAT,
            circuit: self.name().to_owned(),
            state,
            open_until_ms,
            opens_in_a_row: parts.opens_in_a_row,
            taken_at_ms: now_ms,
        }
    }

    /// Starts this circuit from a snapshot: if it was Open, a Closed circuit (without a
    /// manual override) opens for what is left of the break (nothing left: the next call
    /// is a probe), with [`TransitionReason::Restored`](crate::stats::TransitionReason::Restored).
    /// Returns whether the state changed. Feature `fleet`.
    ///
    /// # Errors
    ///
    /// The snapshot is untrusted input. Refused, and nothing changes, when its format is
    /// unknown, it names another circuit, it was taken in the future (beyond 5 minutes of
    /// clock skew), it is Open without an end, or what is left of its break is longer
    /// than this circuit could break for (`recovery_timeout`, or the backoff's `max`).
    pub fn restore(&self, snapshot: &CircuitSnapshot) -> Result<bool, SnapshotError> {
        if snapshot.format != FORMAT {
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
        if snapshot.state == FleetState::Closed {
            return if snapshot.open_until_ms.is_some() {
                refuse("closed with a break")
            } else {
                Ok(false)
            };
        }
        let Some(until) = snapshot.open_until_ms else {
            return refuse("open without the end of its break");
        };
        let config = self.config();
        let longest = super::config::longest_break(&config);
        let remaining = Duration::from_millis(until.saturating_sub(now_ms));
        if remaining > longest + MAX_SKEW {
            return refuse("break longer than the circuit's longest");
        }
        let opens = snapshot.opens_in_a_row.min(1_000);
        Ok(self.restore_open(remaining.min(longest), opens))
    }
}
