//! Control from outside the calls: manual overrides and live reconfiguration.

use super::events::guarded;
use super::{
    Circuit, FLAG_COUNT, FLAG_DROPPED_IS_FAILURE, FLAG_METRICS_ONLY, FLAG_RATES,
    FLAG_SLOW_IS_FAILURE, Shared,
};
use crate::CircuitState;
use crate::config::{CircuitBreakerConfig, ConfigError};
use crate::primitives::Ordering;
use crate::state::Mode;
use crate::stats::TransitionReason;

impl Circuit {
    /// Opens the circuit by hand: every call is rejected with
    /// [`RejectReason::ForcedOpen`](crate::error::RejectReason::ForcedOpen) until [`reset`](Self::reset) or [`disable`](Self::disable).
    pub fn force_open(&self) {
        self.transition(TransitionReason::ForcedOpen, |w| {
            (w.mode() != Mode::ForcedOpen).then_some((CircuitState::Open, Mode::ForcedOpen))
        });
        guarded(|| tracing::info!(circuit = %self.shared.name, "circuit forced open by hand"));
    }

    /// Turns the circuit off: every call is admitted and nothing is recorded until
    /// [`reset`](Self::reset) or [`force_open`](Self::force_open).
    pub fn disable(&self) {
        self.transition(TransitionReason::Disabled, |w| {
            (w.mode() != Mode::Disabled).then_some((CircuitState::Closed, Mode::Disabled))
        });
        guarded(|| tracing::info!(circuit = %self.shared.name, "circuit disabled by hand"));
    }

    /// Back to Closed with an empty window and no override. Lifetime counts are kept.
    pub fn reset(&self) {
        self.transition(TransitionReason::Reset, |_| {
            Some((CircuitState::Closed, Mode::Normal))
        });
        guarded(|| tracing::info!(circuit = %self.shared.name, "circuit reset by hand"));
    }

    /// Replaces the configuration of the live circuit. State, window and every count are
    /// kept; new thresholds apply from the next outcome, except `expected_response_time`,
    /// which judges the calls that start after the change (a call is timed against the
    /// threshold it started under).
    ///
    /// Changing `monitoring_window` restarts the window: its counts move to the lifetime
    /// totals (nothing is lost), and the consecutive-failure run carries over.
    ///
    /// Lowering `half_open_max_calls` on a half-open circuit to no more than the probes
    /// that already succeeded closes it at once (reason
    /// [`ProbesSucceeded`](TransitionReason::ProbesSucceeded)); probes still in flight
    /// become late.
    ///
    /// # Errors
    ///
    /// `window_buckets` and the [`sliding_window`](CircuitBreakerConfig::sliding_window)
    /// (its kind and, for a count window, its size) are fixed when the circuit is created;
    /// a different value is refused and nothing changes. With a count window,
    /// `monitoring_window` is unused and changing it keeps the window.
    pub fn reconfigure(&self, config: CircuitBreakerConfig) -> Result<(), ConfigError> {
        if config.window_buckets as usize != self.shared.window.buckets() {
            return Err(ConfigError::new(
                "window_buckets",
                "cannot change on a live circuit",
            ));
        }
        if config.sliding_window != self.lock().config.sliding_window {
            return Err(ConfigError::new(
                "sliding_window",
                "cannot change on a live circuit",
            ));
        }
        let mut locked = self.lock();
        let old_width = locked.config.bucket_width_ns();
        self.shared.store_tunables(&config);
        self.shared.hot.clock.configure(config.clock_span_ns());
        if config.bucket_width_ns() != old_width && self.shared.count.is_none() {
            self.shared.window.clear();
        }
        let half_open_max = config.half_open_max_calls;
        locked.config = config;
        drop(locked);
        // Lowered below the probes that already passed: the half-open test is over. Left
        // alone, no probe would ever be admitted again and the circuit would stay HalfOpen.
        self.transition(TransitionReason::ProbesSucceeded, |w| {
            (w.state() == CircuitState::HalfOpen
                && w.mode() == Mode::Normal
                && w.probe_passes() >= half_open_max)
                .then_some((CircuitState::Closed, Mode::Normal))
        });
        Ok(())
    }
}

impl Shared {
    /// Empties the window the trip rule counts over; its counts stay in the lifetime.
    pub(super) fn clear_window(&self) {
        self.window.clear();
        if let Some(count) = &self.count {
            count.clear();
        }
    }

    /// Copies what the hot paths read of `c` into the hot line.
    pub(super) fn store_tunables(&self, c: &CircuitBreakerConfig) {
        let hot = &self.hot;
        hot.width_ns.store(c.bucket_width_ns(), Ordering::Relaxed);
        // Saturated: u64::MAX turns slow-call detection off (see `Permit::start`).
        hot.expected_ns.store(
            u64::try_from(c.expected_response_time.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        hot.failure_threshold
            .store(u64::from(c.failure_threshold), Ordering::Relaxed);
        hot.minimum_requests
            .store(u64::from(c.minimum_request_count), Ordering::Relaxed);
        hot.half_open_max
            .store(c.half_open_max_calls, Ordering::Relaxed);
        hot.probe_wait_ns.store(
            u64::try_from(c.half_open_max_wait().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        hot.failure_rate.store(
            c.failure_rate_threshold.unwrap_or(0.0).to_bits(),
            Ordering::Relaxed,
        );
        hot.slow_rate.store(
            c.slow_call_rate_threshold.unwrap_or(0.0).to_bits(),
            Ordering::Relaxed,
        );
        let flags = (c.slow_call_is_failure as u32 * FLAG_SLOW_IS_FAILURE)
            | (c.dropped_call_is_failure as u32 * FLAG_DROPPED_IS_FAILURE)
            | (c.metrics_only as u32 * FLAG_METRICS_ONLY)
            | ((c.failure_rate_threshold.is_some() || c.slow_call_rate_threshold.is_some()) as u32
                * FLAG_RATES)
            | (self.count.is_some() as u32 * FLAG_COUNT);
        hot.flags.store(flags, Ordering::Release);
    }
}
