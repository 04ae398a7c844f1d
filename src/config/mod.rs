//! Circuit configuration: thresholds, durations, presets, and validation.
//!
//! A [`CircuitBreakerConfig`] is always valid: the only ways to get one are the presets,
//! [`Default`], and [`CircuitBreakerConfigBuilder::build`], which checks every rule and
//! returns a [`ConfigError`] naming the field that broke it. Nothing is checked, and
//! nothing can panic, inside a request.
//!
//! # The seed's options
//!
//! | TypeScript option | here | meaning |
//! |---|---|---|
//! | `failureThreshold` | [`failure_threshold`](CircuitBreakerConfigBuilder::failure_threshold) | trailing consecutive failures in the window that open the circuit |
//! | `recoveryTimeout` (ms) | [`recovery_timeout`](CircuitBreakerConfigBuilder::recovery_timeout) | time spent Open before a probe is let through |
//! | `expectedResponseTime` (ms) | [`expected_response_time`](CircuitBreakerConfigBuilder::expected_response_time) | a call slower than this is slow |
//! | `monitoringWindow` (ms) | [`monitoring_window`](CircuitBreakerConfigBuilder::monitoring_window) | length of the sliding window |
//! | `minimumRequestCount` | [`minimum_request_count`](CircuitBreakerConfigBuilder::minimum_request_count) | calls in the window before the circuit may open |
//!
//! Beyond the seed: [`sliding_window`](CircuitBreakerConfigBuilder::sliding_window)
//! counts the last `n` calls instead of the last `monitoring_window` (see
//! [`SlidingWindow`]).

use std::fmt;
use std::time::Duration;

mod builder;
mod patch;

pub use builder::CircuitBreakerConfigBuilder;
pub use patch::ConfigPatch;

/// Validated configuration of one circuit.
///
/// Build one with [`CircuitBreakerConfig::builder`], start from a preset
/// ([`cognito`](Self::cognito), [`dynamodb`](Self::dynamodb),
/// [`api_gateway_management`](Self::api_gateway_management)) and adjust it with
/// [`to_builder`](Self::to_builder), or take the [`Default`].
///
/// With feature `serde` it serializes with the builder's field names, durations as
/// strings with a unit (`"30s"`), and deserializes from any subset of them laid over the
/// [`Default`] (or a `preset`), validated; see the `document` module.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_circuit_breaker::CircuitBreakerConfig;
///
/// let config = CircuitBreakerConfig::dynamodb()
///     .to_builder()
///     .failure_rate_threshold(0.5)
///     .build()
///     .unwrap();
/// assert_eq!(config.failure_threshold(), 3);
/// assert_eq!(config.recovery_timeout(), Duration::from_secs(20));
///
/// let err = CircuitBreakerConfig::builder().failure_threshold(0).build().unwrap_err();
/// assert_eq!(err.field(), "failure_threshold");
/// ```
#[derive(Clone, PartialEq)]
pub struct CircuitBreakerConfig {
    pub(crate) failure_threshold: u32,
    pub(crate) recovery_timeout: Duration,
    pub(crate) expected_response_time: Duration,
    pub(crate) monitoring_window: Duration,
    pub(crate) minimum_request_count: u32,
    pub(crate) half_open_max_calls: u32,
    /// `None`: derived (see [`CircuitBreakerConfig::half_open_max_wait`]).
    pub(crate) half_open_max_wait: Option<Duration>,
    pub(crate) window_buckets: u32,
    pub(crate) sliding_window: SlidingWindow,
    pub(crate) failure_rate_threshold: Option<f64>,
    pub(crate) slow_call_rate_threshold: Option<f64>,
    pub(crate) slow_call_is_failure: bool,
    pub(crate) dropped_call_is_failure: bool,
    pub(crate) metrics_only: bool,
    pub(crate) backoff: Option<Backoff>,
}

impl fmt::Debug for CircuitBreakerConfig {
    /// Every field; `half_open_max_wait` as the value in force, derived or set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerConfig")
            .field("failure_threshold", &self.failure_threshold)
            .field("recovery_timeout", &self.recovery_timeout)
            .field("expected_response_time", &self.expected_response_time)
            .field("monitoring_window", &self.monitoring_window)
            .field("minimum_request_count", &self.minimum_request_count)
            .field("half_open_max_calls", &self.half_open_max_calls)
            .field("half_open_max_wait", &self.half_open_max_wait())
            .field(
                "half_open_max_wait_is_set",
                &self.half_open_max_wait.is_some(),
            )
            .field("window_buckets", &self.window_buckets)
            .field("sliding_window", &self.sliding_window)
            .field("failure_rate_threshold", &self.failure_rate_threshold)
            .field("slow_call_rate_threshold", &self.slow_call_rate_threshold)
            .field("slow_call_is_failure", &self.slow_call_is_failure)
            .field("dropped_call_is_failure", &self.dropped_call_is_failure)
            .field("metrics_only", &self.metrics_only)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// What the trip rule counts over, chosen with
/// [`CircuitBreakerConfigBuilder::sliding_window`].
///
/// * [`Time`](Self::Time) (the default): the calls of the last `monitoring_window`, cut
///   into `window_buckets` buckets. How many calls that is depends on the load: at
///   10 000 calls a minute, a 50 % rate criterion needs thousands of failures to trip
///   after a healthy spell.
/// * [`Count(n)`](Self::Count): the last `n` calls, whatever their age
///   (Resilience4j's `COUNT_BASED`): after any number of successes, a 50 % rate trips a
///   `Count(100)` window after exactly 50 failures. `monitoring_window` and
///   `window_buckets` are then unused (still validated). `n` is in `1..=1 000 000`, and
///   `minimum_request_count` and `failure_threshold` may not exceed it (the window could
///   never hold enough calls to trip). An outcome costs O(1) atomic operations and no
///   allocation, whatever `n` and however many calls went before; the ring takes one
///   byte per call, allocated when the circuit is made.
///
/// Both count the same way: consecutive failures, failure rate, slow-call rate, minimum
/// requests and the stats' `window` counts all read the chosen window. Transitions to
/// Closed empty either kind. The kind and `n` are fixed when a circuit is made:
/// [`reconfigure`](crate::Circuit::reconfigure) refuses a different one, like a different
/// `window_buckets`.
///
/// With feature `serde` it reads and writes as `"time"` or `{ count = 100 }` under the
/// key `sliding_window`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum SlidingWindow {
    /// The last `monitoring_window`, in `window_buckets` buckets.
    #[default]
    Time,
    /// The last `n` calls.
    Count(u32),
}

/// A break duration that grows each time the circuit opens again without having closed.
///
/// The `k`-th consecutive opening (counting from 1) lasts
/// `min(recovery_timeout × multiplier^(k-1), max)`, then shortened by a random fraction
/// of at most `jitter`. Closing the circuit starts the count again.
///
/// With feature `serde` it reads and writes as `{ multiplier, max, jitter }`, `max` a
/// duration with a unit such as `"2m"`, `jitter` optional (default 0).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Backoff {
    /// Growth factor per consecutive opening, at least 1.
    pub multiplier: f64,
    /// Upper bound of a break, at least `recovery_timeout`.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::string"))]
    pub max: Duration,
    /// Random shortening, in `[0, 1)`: 0.2 means a break lasts 80–100 % of its nominal length.
    #[cfg_attr(feature = "serde", serde(default))]
    pub jitter: f64,
}

/// A configuration value broke a rule. Names the field and the rule.
///
/// ```
/// use std::time::Duration;
/// use tower_circuit_breaker::CircuitBreakerConfig;
///
/// let err = CircuitBreakerConfig::builder()
///     .monitoring_window(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "monitoring_window");
/// assert_eq!(err.to_string(), "invalid circuit breaker config: `monitoring_window` must be greater than zero");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    rule: &'static str,
}

impl ConfigError {
    pub(crate) const fn new(field: &'static str, rule: &'static str) -> Self {
        ConfigError { field, rule }
    }

    /// The offending field, as named in [`CircuitBreakerConfigBuilder`].
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The rule it broke, e.g. "must be at least 1".
    pub fn rule(&self) -> &'static str {
        self.rule
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid circuit breaker config: `{}` {}",
            self.field, self.rule
        )
    }
}

impl std::error::Error for ConfigError {}

impl Default for CircuitBreakerConfig {
    /// 5 consecutive failures among at least 5 calls in a 60 s window open the circuit for
    /// 30 s; calls over 1 s are slow; one half-open probe.
    fn default() -> Self {
        CircuitBreakerConfig::seed(5, 30_000, 1_000, 60_000, 5)
    }
}

impl CircuitBreakerConfig {
    const fn seed(
        failure_threshold: u32,
        recovery_ms: u64,
        expected_ms: u64,
        window_ms: u64,
        minimum_request_count: u32,
    ) -> Self {
        CircuitBreakerConfig {
            failure_threshold,
            recovery_timeout: Duration::from_millis(recovery_ms),
            expected_response_time: Duration::from_millis(expected_ms),
            monitoring_window: Duration::from_millis(window_ms),
            minimum_request_count,
            half_open_max_calls: 1,
            half_open_max_wait: None,
            window_buckets: 10,
            sliding_window: SlidingWindow::Time,
            failure_rate_threshold: None,
            slow_call_rate_threshold: None,
            slow_call_is_failure: true,
            dropped_call_is_failure: false,
            metrics_only: false,
            backoff: None,
        }
    }

    /// Cognito JWT verification (JWKS fetch): 3 failures, 30 s recovery, 2 s expected
    /// response time, 60 s window, at least 5 requests. The seed's numbers.
    pub const fn cognito() -> Self {
        Self::seed(3, 30_000, 2_000, 60_000, 5)
    }

    /// DynamoDB writes: 3 failures, 20 s recovery, 500 ms expected response time,
    /// 60 s window, at least 5 requests. The seed's numbers.
    pub const fn dynamodb() -> Self {
        Self::seed(3, 20_000, 500, 60_000, 5)
    }

    /// API Gateway Management API `PostToConnection`: 5 failures, 15 s recovery, 1 s
    /// expected response time, 30 s window, at least 3 requests. The seed's numbers.
    pub const fn api_gateway_management() -> Self {
        Self::seed(5, 15_000, 1_000, 30_000, 3)
    }

    /// A builder starting from [`Default`].
    pub fn builder() -> CircuitBreakerConfigBuilder {
        CircuitBreakerConfigBuilder {
            config: Self::default(),
        }
    }

    /// A builder starting from this configuration.
    pub fn to_builder(&self) -> CircuitBreakerConfigBuilder {
        CircuitBreakerConfigBuilder {
            config: self.clone(),
        }
    }

    /// Trailing consecutive failures (in the window) that open the circuit.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }
    /// Time the circuit stays Open before admitting a probe.
    pub fn recovery_timeout(&self) -> Duration {
        self.recovery_timeout
    }
    /// A call that takes longer than this is slow.
    pub fn expected_response_time(&self) -> Duration {
        self.expected_response_time
    }
    /// Length of the sliding window.
    pub fn monitoring_window(&self) -> Duration {
        self.monitoring_window
    }
    /// Calls in the window needed before the circuit may open.
    pub fn minimum_request_count(&self) -> u32 {
        self.minimum_request_count
    }
    /// Probes admitted in HalfOpen; all must succeed to close.
    pub fn half_open_max_calls(&self) -> u32 {
        self.half_open_max_calls
    }
    /// How long a HalfOpen circuit whose probe slots are all taken waits for its probes
    /// before it gives up on them: the probe deadline.
    ///
    /// Counted from the admission of the latest probe, so no probe is cut short before it
    /// has had this long. Once it has passed, the next call that arrives finds the probes
    /// still unfinished, counts that as a failed probe and re-opens the circuit (reason
    /// [`ProbeTimedOut`](crate::stats::TransitionReason::ProbeTimedOut)); the break after it
    /// admits a fresh probe, and the hung probe's eventual result is late (lifetime stats
    /// only). The check is lazy, made by admission; no timer runs.
    ///
    /// Unless set, it is derived: the `recovery_timeout`, but never less than the
    /// `expected_response_time` (a probe is not given up on before it could be judged
    /// slow; with slow-call detection off, just the `recovery_timeout`). Following the
    /// recovery timeout means a hung probe costs at most one more break than a failed one.
    pub fn half_open_max_wait(&self) -> Duration {
        self.half_open_max_wait.unwrap_or_else(|| {
            if self.slow_calls_detected() {
                self.recovery_timeout.max(self.expected_response_time)
            } else {
                self.recovery_timeout
            }
        })
    }
    /// Whether calls are timed against `expected_response_time`: false when it is
    /// [`Duration::MAX`] (see the builder's
    /// [`expected_response_time`](CircuitBreakerConfigBuilder::expected_response_time)).
    pub fn slow_calls_detected(&self) -> bool {
        self.expected_response_time != Duration::MAX
    }
    /// Whether [`half_open_max_wait`](Self::half_open_max_wait) was set, rather than derived.
    pub fn half_open_max_wait_is_set(&self) -> bool {
        self.half_open_max_wait.is_some()
    }
    /// Buckets the window is divided into.
    pub fn window_buckets(&self) -> u32 {
        self.window_buckets
    }
    /// What the trip rule counts over: the time window (the default) or the last `n`
    /// calls. See [`SlidingWindow`].
    pub fn sliding_window(&self) -> SlidingWindow {
        self.sliding_window
    }
    /// Optional failure-rate criterion.
    pub fn failure_rate_threshold(&self) -> Option<f64> {
        self.failure_rate_threshold
    }
    /// Optional slow-call-rate criterion.
    pub fn slow_call_rate_threshold(&self) -> Option<f64> {
        self.slow_call_rate_threshold
    }
    /// Whether a slow call counts as a failure for tripping.
    pub fn slow_call_is_failure(&self) -> bool {
        self.slow_call_is_failure
    }
    /// Whether a call whose future is dropped before completing counts as a failure.
    pub fn dropped_call_is_failure(&self) -> bool {
        self.dropped_call_is_failure
    }
    /// Shadow mode: record and report, never reject.
    pub fn metrics_only(&self) -> bool {
        self.metrics_only
    }
    /// Growing break duration, if any.
    pub fn backoff(&self) -> Option<Backoff> {
        self.backoff
    }

    /// Width of one bucket, in nanoseconds. Exact: validation requires the window to
    /// divide evenly.
    pub(crate) fn bucket_width_ns(&self) -> u64 {
        (self.monitoring_window.as_nanos() / u128::from(self.window_buckets)) as u64
    }

    /// The shortest duration the Closed path measures, which decides its clock (see
    /// `crate::clock`).
    pub(crate) fn clock_span_ns(&self) -> u64 {
        // The shortest duration the Closed path measures: see `crate::clock`.
        u64::try_from(self.expected_response_time.as_nanos())
            .unwrap_or(u64::MAX)
            .min(self.bucket_width_ns())
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.check_fields()?;
        self.check_combinations()
    }

    /// Rules each field obeys on its own.
    fn check_fields(&self) -> Result<(), ConfigError> {
        fn positive(field: &'static str, d: Duration) -> Result<(), ConfigError> {
            if d.is_zero() {
                return Err(ConfigError::new(field, "must be greater than zero"));
            }
            if d > MAX_DURATION {
                return Err(ConfigError::new(field, "must be at most 365 days"));
            }
            Ok(())
        }
        fn rate(field: &'static str, r: Option<f64>) -> Result<(), ConfigError> {
            match r {
                Some(r) if !(r > 0.0 && r <= 1.0) => {
                    Err(ConfigError::new(field, "must be in (0, 1]"))
                }
                _ => Ok(()),
            }
        }
        if self.failure_threshold == 0 {
            return Err(ConfigError::new("failure_threshold", "must be at least 1"));
        }
        positive("recovery_timeout", self.recovery_timeout)?;
        if self.slow_calls_detected() {
            positive("expected_response_time", self.expected_response_time)?;
        }
        positive("monitoring_window", self.monitoring_window)?;
        if self.half_open_max_calls == 0 {
            return Err(ConfigError::new(
                "half_open_max_calls",
                "must be at least 1",
            ));
        }
        if self.half_open_max_calls > crate::state::MAX_PROBES {
            return Err(ConfigError::new(
                "half_open_max_calls",
                "must be at most 4095",
            ));
        }
        if let Some(d) = self.half_open_max_wait {
            positive("half_open_max_wait", d)?;
        }
        if self.window_buckets == 0 || self.window_buckets > 1_000 {
            return Err(ConfigError::new(
                "window_buckets",
                "must be between 1 and 1000",
            ));
        }
        if let SlidingWindow::Count(n) = self.sliding_window {
            if n == 0 || n > crate::count_window::MAX_CALLS {
                return Err(ConfigError::new(
                    "sliding_window",
                    "must count between 1 and 1000000 calls",
                ));
            }
        }
        rate("failure_rate_threshold", self.failure_rate_threshold)?;
        rate("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        if let Some(b) = self.backoff {
            if !(b.multiplier >= 1.0 && b.multiplier.is_finite()) {
                return Err(ConfigError::new(
                    "backoff.multiplier",
                    "must be a finite number ≥ 1",
                ));
            }
            positive("backoff.max", b.max)?;
            if !(0.0..1.0).contains(&b.jitter) {
                return Err(ConfigError::new("backoff.jitter", "must be in [0, 1)"));
            }
        }
        Ok(())
    }

    /// Rules that tie fields together.
    fn check_combinations(&self) -> Result<(), ConfigError> {
        let window_ns = self.monitoring_window.as_nanos();
        if window_ns % u128::from(self.window_buckets) != 0 {
            return Err(ConfigError::new(
                "window_buckets",
                "must divide `monitoring_window` into whole nanoseconds",
            ));
        }
        if self.bucket_width_ns() < 1_000_000 {
            return Err(ConfigError::new(
                "window_buckets",
                "must leave buckets of at least 1 ms of `monitoring_window`",
            ));
        }
        if let SlidingWindow::Count(n) = self.sliding_window {
            if self.minimum_request_count > n {
                return Err(ConfigError::new(
                    "minimum_request_count",
                    "must be at most the calls of a count `sliding_window`",
                ));
            }
            if self.failure_threshold > n {
                return Err(ConfigError::new(
                    "failure_threshold",
                    "must be at most the calls of a count `sliding_window`",
                ));
            }
        }
        if let Some(b) = self.backoff {
            if b.max < self.recovery_timeout {
                return Err(ConfigError::new(
                    "backoff.max",
                    "must be at least `recovery_timeout`",
                ));
            }
        }
        Ok(())
    }
}

/// Durations beyond this are refused: they would overflow time arithmetic and no
/// circuit needs them.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_default_are_valid() {
        for c in [
            CircuitBreakerConfig::default(),
            CircuitBreakerConfig::cognito(),
            CircuitBreakerConfig::dynamodb(),
            CircuitBreakerConfig::api_gateway_management(),
        ] {
            c.validate().unwrap();
        }
    }
}
