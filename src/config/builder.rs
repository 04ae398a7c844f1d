//! The validating builder of [`CircuitBreakerConfig`].

use super::{Backoff, CircuitBreakerConfig, ConfigError, SlidingWindow};
use std::time::Duration;

/// Builds a [`CircuitBreakerConfig`]; [`build`](Self::build) validates it.
///
/// See the [module docs](crate::config) for how the seed's options map to these.
#[derive(Clone, Debug)]
#[must_use]
pub struct CircuitBreakerConfigBuilder {
    pub(super) config: CircuitBreakerConfig,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    )*};
}

impl CircuitBreakerConfigBuilder {
    setters! {
        /// Trailing consecutive failures in the window that open the circuit (≥ 1).
        failure_threshold: u32;
        /// Time spent Open before a probe is admitted (> 0).
        recovery_timeout: Duration;
        /// Calls slower than this are slow (> 0, at most 365 days). [`Duration::MAX`]
        /// turns slow-call detection off: no call is slow, and a call reads the clock
        /// once (at its end) instead of twice. In a config document this is the word
        /// `"off"` (`expected_response_time = "off"`).
        expected_response_time: Duration;
        /// Length of the sliding window (> 0).
        monitoring_window: Duration;
        /// Calls in the window needed before the circuit may open (0 = no minimum).
        minimum_request_count: u32;
        /// Probes admitted in HalfOpen (1..=4095); all must succeed to close.
        half_open_max_calls: u32;
        /// Buckets in the window (1..=1000); each at least 1 ms and the window divisible by them.
        window_buckets: u32;
        /// Slow calls count as failures for tripping (default `true`). With `false` they are
        /// neutral for tripping and only counted.
        slow_call_is_failure: bool;
        /// Calls whose future is dropped before completing count as failures (default
        /// `false`: they are ignored). The AWS adapter turns this on, since the SDK's
        /// attempt timeout reaches the connector only as a dropped future.
        dropped_call_is_failure: bool;
        /// Shadow mode: the circuit records, transitions and reports as usual, but admits
        /// every call it would have rejected (counting it in `rejected_count`). A way to
        /// roll a breaker out and watch it before it acts. A manual
        /// [`force_open`](crate::Circuit::force_open) still rejects.
        metrics_only: bool;
    }

    /// The probe deadline (> 0, at most 365 days): how long a HalfOpen circuit with every
    /// probe slot taken waits before it counts its unfinished probes as failed and
    /// re-opens. Unset, it is derived from `recovery_timeout` and `expected_response_time`;
    /// see [`CircuitBreakerConfig::half_open_max_wait`]. On a live circuit
    /// ([`reconfigure`](crate::Circuit::reconfigure)) a new value applies to probes
    /// admitted after it; a deadline already running is never shortened.
    pub fn half_open_max_wait(mut self, wait: Duration) -> Self {
        self.config.half_open_max_wait = Some(wait);
        self
    }

    /// What the trip rule counts over: [`SlidingWindow::Time`] (the default) or
    /// [`SlidingWindow::Count`], the last `n` calls (`1..=1 000 000`, at least
    /// `minimum_request_count` and `failure_threshold`).
    ///
    /// ```
    /// use tower_circuit_breaker::{CircuitBreakerConfig, SlidingWindow};
    ///
    /// let config = CircuitBreakerConfig::builder()
    ///     .sliding_window(SlidingWindow::Count(100))
    ///     .failure_rate_threshold(0.5)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.sliding_window(), SlidingWindow::Count(100));
    /// ```
    pub fn sliding_window(mut self, window: SlidingWindow) -> Self {
        self.config.sliding_window = window;
        self
    }

    /// Also open when the window's failure rate reaches `rate` (in (0, 1]).
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.config.failure_rate_threshold = Some(rate);
        self
    }

    /// Also open when the window's slow-call rate reaches `rate` (in (0, 1]).
    pub fn slow_call_rate_threshold(mut self, rate: f64) -> Self {
        self.config.slow_call_rate_threshold = Some(rate);
        self
    }

    /// Grow the break duration on consecutive openings. See [`Backoff`].
    pub fn backoff(mut self, multiplier: f64, max: Duration, jitter: f64) -> Self {
        self.config.backoff = Some(Backoff {
            multiplier,
            max,
            jitter,
        });
        self
    }

    /// Checks every rule and returns the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field that breaks a rule.
    pub fn build(self) -> Result<CircuitBreakerConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}
