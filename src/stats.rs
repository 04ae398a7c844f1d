//! Statistics and transition events.
//!
//! [`CircuitBreakerStats`] carries the seed's `CircuitBreakerStats` fields, Rust-typed,
//! plus the counts a Rust user needs to trust them: rejected, ignored and slow calls, the
//! consecutive-failure run, and the window's own counts.
//!
//! # Lifetime and window
//!
//! `success_count`, `failure_count`, `total_requests`, `slow_count`, `rejected_count` and
//! `ignored_count` are lifetime totals since the circuit was created: nothing resets them,
//! not a transition, not [`reset`](crate::Circuit::reset), not a reconfiguration.
//! `failure_rate`, `slow_call_rate`, `consecutive_failures` and [`window`](CircuitBreakerStats::window)
//! describe the sliding window, which is what the trip rule judges.

use crate::CircuitState;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// A manual override in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ManualOverride {
    /// [`Circuit::force_open`](crate::Circuit::force_open): every call is rejected.
    ForcedOpen,
    /// [`Circuit::disable`](crate::Circuit::disable): every call is admitted and nothing is recorded.
    Disabled,
}

/// The window's own counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct WindowStats {
    /// Completed, non-ignored calls in the window.
    pub requests: u64,
    /// Of those, calls the classifier called failures.
    pub failures: u64,
    /// Of those, calls that succeeded.
    pub successes: u64,
    /// Of those, calls slower than `expected_response_time`.
    pub slow: u64,
}

/// A snapshot of one circuit. See the [module docs](crate::stats).
///
/// With feature `serde` it serializes with these field names, `state` as `"closed"`,
/// `"open"` or `"half_open"`, `manual_override` as `"forced_open"`, `"disabled"` or
/// `null`, and times as RFC 3339 UTC strings with milliseconds
/// (`"2026-11-27T10:14:11.123Z"`) or `null`.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CircuitBreakerStats {
    /// The state the circuit acts in (forced open reports `Open`, disabled `Closed`).
    pub state: CircuitState,
    /// A manual override in force, if any.
    pub manual_override: Option<ManualOverride>,
    /// Shadow mode: would-be rejections are admitted and counted in `rejected_count`.
    pub metrics_only: bool,
    /// Calls that failed, lifetime.
    pub failure_count: u64,
    /// Calls that succeeded, lifetime.
    pub success_count: u64,
    /// Completed, non-ignored calls (`success_count + failure_count`), lifetime. Rejected
    /// and ignored calls are counted apart.
    pub total_requests: u64,
    /// When the last failure completed (millisecond precision).
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::time::serialize_time")
    )]
    pub last_failure_time: Option<SystemTime>,
    /// When the last success completed (millisecond precision).
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::time::serialize_time")
    )]
    pub last_success_time: Option<SystemTime>,
    /// While Open (not forced): when the next call will be let through as a probe.
    /// While HalfOpen with every probe slot taken: the probe deadline, when the next call
    /// gives up on the unfinished probes and re-opens the circuit (see
    /// [`half_open_max_wait`](crate::CircuitBreakerConfig::half_open_max_wait)). Otherwise
    /// `None`.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::time::serialize_time")
    )]
    pub next_attempt_time: Option<SystemTime>,
    /// Failures the trip rule sees (failures, plus slow successes when slow calls count as
    /// failures) over requests, in the window; 0 when the window is empty. In `0..=1`.
    pub failure_rate: f64,
    /// Slow calls over requests, in the window; in `0..=1`.
    pub slow_call_rate: f64,
    /// Calls rejected (or, in shadow mode, that would have been), lifetime.
    pub rejected_count: u64,
    /// Calls classified as ignored or dropped and not counted, lifetime.
    pub ignored_count: u64,
    /// Calls slower than `expected_response_time`, lifetime, whatever their result.
    pub slow_count: u64,
    /// The trailing run of consecutive failures inside the window, as the trip rule sees it.
    pub consecutive_failures: u64,
    /// Half-open probes in flight.
    pub half_open_in_flight: u32,
    /// The window's own counts.
    pub window: WindowStats,
}

/// One line for a log or a health page, rates to 3 decimal places; times are left out
/// (format the `SystemTime` fields as you need):
///
/// ```text
/// open, window: 10 calls, 6 failed, 0 slow, failure rate 0.600, 3 consecutive failures; lifetime: 20 calls, 14 ok, 6 failed, 0 slow, 2 rejected, 1 ignored
/// ```
///
/// A manual override, shadow mode and half-open probes in flight are added after the
/// state: `open (forced open)`, `closed (metrics only)`, `half_open (1 probe in flight)`.
impl fmt::Display for CircuitBreakerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.state.as_str())?;
        let mut notes = Vec::<String>::new();
        match self.manual_override {
            Some(ManualOverride::ForcedOpen) => notes.push("forced open".into()),
            Some(ManualOverride::Disabled) => notes.push("disabled".into()),
            None => {}
        }
        if self.metrics_only {
            notes.push("metrics only".into());
        }
        if self.half_open_in_flight > 0 {
            let s = if self.half_open_in_flight == 1 {
                ""
            } else {
                "s"
            };
            notes.push(format!("{} probe{s} in flight", self.half_open_in_flight));
        }
        if !notes.is_empty() {
            write!(f, " ({})", notes.join(", "))?;
        }
        let w = &self.window;
        write!(
            f,
            ", window: {} calls, {} failed, {} slow, failure rate {:.3}, {} consecutive failures",
            w.requests, w.failures, w.slow, self.failure_rate, self.consecutive_failures
        )?;
        write!(
            f,
            "; lifetime: {} calls, {} ok, {} failed, {} slow, {} rejected, {} ignored",
            self.total_requests,
            self.success_count,
            self.failure_count,
            self.slow_count,
            self.rejected_count,
            self.ignored_count
        )
    }
}

/// Why the circuit changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The trip rule held after an outcome.
    Tripped,
    /// A classifier returned [`Verdict::OpenFor`](crate::classify::Verdict::OpenFor).
    RetryAfter,
    /// The break ended (whatever set its length) and a call arrived: it became a probe.
    RecoveryTimeoutElapsed,
    /// Every half-open probe succeeded.
    ProbesSucceeded,
    /// A half-open probe failed.
    ProbeFailed,
    /// Every half-open probe slot stayed taken past the probe deadline
    /// ([`half_open_max_wait`](crate::CircuitBreakerConfig::half_open_max_wait)): the
    /// unfinished probes count as failed and the circuit re-opened. Their eventual results
    /// are late.
    ProbeTimedOut,
    /// [`Circuit::force_open`](crate::Circuit::force_open).
    ForcedOpen,
    /// [`Circuit::disable`](crate::Circuit::disable).
    Disabled,
    /// [`Circuit::reset`](crate::Circuit::reset).
    Reset,
    /// Feature `fleet`: the fleet's shared record said Open, on enough fleet evidence
    /// (see the `fleet` module), and this Closed circuit adopted it.
    FleetOpen,
    /// Feature `fleet`: a fleet probe elsewhere succeeded and the fleet closed; this
    /// circuit, opened before that, follows.
    FleetClosed,
    /// Feature `fleet`: the circuit was started from a snapshot
    /// (`Circuit::restore`).
    Restored,
}

impl TransitionReason {
    /// A short snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionReason::Tripped => "tripped",
            TransitionReason::RetryAfter => "retry_after",
            TransitionReason::RecoveryTimeoutElapsed => "recovery_timeout_elapsed",
            TransitionReason::ProbesSucceeded => "probes_succeeded",
            TransitionReason::ProbeFailed => "probe_failed",
            TransitionReason::ProbeTimedOut => "probe_timed_out",
            TransitionReason::ForcedOpen => "forced_open",
            TransitionReason::Disabled => "disabled",
            TransitionReason::Reset => "reset",
            TransitionReason::FleetOpen => "fleet_open",
            TransitionReason::FleetClosed => "fleet_closed",
            TransitionReason::Restored => "restored",
        }
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl serde::Serialize for TransitionReason {
    /// As [`TransitionReason::as_str`].
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A real state change (never a same-state one), as listeners receive it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TransitionEvent {
    /// The circuit's name.
    pub circuit: Arc<str>,
    /// The service label: for a circuit made by [`Circuit::for_operation`](crate::Circuit::for_operation)
    /// (as a registry makes them), its service; otherwise the circuit's name.
    pub service: Arc<str>,
    /// The operation label: for a circuit made by `for_operation`, its operation;
    /// otherwise empty (its metrics, which must not carry an empty label value, say
    /// `"-"`; see the `metrics` module).
    pub operation: Arc<str>,
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
    /// What caused it.
    pub reason: TransitionReason,
    /// When it happened, on the clock of the stats' times (`last_failure_time`,
    /// `next_attempt_time`): the wall time the circuit was made at plus its (tokio)
    /// clock's time since, so under a paused tokio clock it advances with `advance`, not
    /// with real time.
    pub at: SystemTime,
    /// The circuit's stats right after the transition.
    pub stats: CircuitBreakerStats,
}
