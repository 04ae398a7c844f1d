//! The circuit's state, packed into one atomic word.
//!
//! Admission must decide on one atomic load in the common case, and half-open probe
//! accounting must be exact under races, so everything admission depends on lives in one
//! `u64` and changes by compare-and-swap:
//!
//! ```text
//!  63                     28 27          16 15           4 3    2 1     0
//! +-------------------------+--------------+--------------+------+-------+
//! | generation (36 bits)    | probe passes | probes out   | mode | state |
//! +-------------------------+--------------+--------------+------+-------+
//! ```
//!
//! The generation changes on every transition. A call carries the generation it was
//! admitted in; when it completes in another generation its result is *late*: it counts
//! in the lifetime stats and changes no state, and a late probe cannot give back a slot of
//! a newer half-open cycle.

use std::fmt;

/// The three states of the seed's circuit breaker.
///
/// "Open" means *tripped*: calls are rejected. (Some gates, such as Linkerd's, use the
/// opposite polarity; this crate never does.) Manual overrides report the state they act
/// as: a forced-open circuit is [`Open`](Self::Open), a disabled one
/// [`Closed`](Self::Closed); [`CircuitBreakerStats::manual_override`](crate::CircuitBreakerStats::manual_override)
/// tells them apart.
///
/// With feature `serde` it serializes as [`as_str`](Self::as_str) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CircuitState {
    /// Normal operation: calls pass and outcomes are recorded.
    Closed,
    /// Tripped: calls are rejected until the break ends (the recovery timeout, or the
    /// break the backoff, a `Retry-After`, a probe deadline or an adopted state set).
    Open,
    /// Testing recovery: a limited number of probes pass.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

pub(crate) const MAX_PROBES: u32 = (1 << 12) - 1;

const STATE_MASK: u64 = 0b11;
const MODE_SHIFT: u32 = 2;
const MODE_MASK: u64 = 0b11 << MODE_SHIFT;
const OUT_SHIFT: u32 = 4;
const PASS_SHIFT: u32 = 16;
const COUNT_MASK: u64 = MAX_PROBES as u64;
const GEN_SHIFT: u32 = 28;

/// A manual override of the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Normal = 0,
    ForcedOpen = 1,
    Disabled = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    pub(crate) fn new(state: CircuitState, mode: Mode, generation: u64) -> Self {
        let s = match state {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        };
        Word(s | (mode as u64) << MODE_SHIFT | generation << GEN_SHIFT)
    }

    #[inline]
    pub(crate) fn state(self) -> CircuitState {
        match self.0 & STATE_MASK {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    #[inline]
    pub(crate) fn mode(self) -> Mode {
        match (self.0 & MODE_MASK) >> MODE_SHIFT {
            0 => Mode::Normal,
            1 => Mode::ForcedOpen,
            _ => Mode::Disabled,
        }
    }

    /// True when the word is plain Closed: the hot path's only check.
    #[inline]
    pub(crate) fn is_closed_normal(self) -> bool {
        self.0 & (STATE_MASK | MODE_MASK) == 0
    }

    /// True when the word is plain Open (no manual override).
    #[inline]
    pub(crate) fn is_open_normal(self) -> bool {
        self.0 & (STATE_MASK | MODE_MASK) == 1
    }

    #[inline]
    pub(crate) fn generation(self) -> u64 {
        self.0 >> GEN_SHIFT
    }

    pub(crate) fn probes_out(self) -> u32 {
        ((self.0 >> OUT_SHIFT) & COUNT_MASK) as u32
    }

    pub(crate) fn probe_passes(self) -> u32 {
        ((self.0 >> PASS_SHIFT) & COUNT_MASK) as u32
    }

    pub(crate) fn with_probe_taken(self) -> Self {
        Word(self.0 + (1 << OUT_SHIFT))
    }

    pub(crate) fn with_probe_returned(self) -> Self {
        Word(self.0 - (1 << OUT_SHIFT))
    }

    pub(crate) fn with_probe_passed(self) -> Self {
        Word(self.0 - (1 << OUT_SHIFT) + (1 << PASS_SHIFT))
    }

    /// The word after a transition to `state`/`mode`: next generation, probe counts zero.
    pub(crate) fn next(self, state: CircuitState, mode: Mode) -> Self {
        Word::new(
            state,
            mode,
            (self.generation() + 1) & ((1 << (64 - GEN_SHIFT)) - 1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let w = Word::new(CircuitState::HalfOpen, Mode::Normal, 7)
            .with_probe_taken()
            .with_probe_taken()
            .with_probe_passed();
        assert_eq!(w.state(), CircuitState::HalfOpen);
        assert_eq!(w.mode(), Mode::Normal);
        assert_eq!(w.generation(), 7);
        assert_eq!((w.probes_out(), w.probe_passes()), (1, 1));
        let n = w.next(CircuitState::Open, Mode::ForcedOpen);
        assert_eq!(
            (n.state(), n.mode(), n.generation()),
            (CircuitState::Open, Mode::ForcedOpen, 8)
        );
        assert_eq!((n.probes_out(), n.probe_passes()), (0, 0));
        assert!(Word::new(CircuitState::Closed, Mode::Normal, 3).is_closed_normal());
        assert!(!Word::new(CircuitState::Closed, Mode::Disabled, 3).is_closed_normal());
    }
}
