//! [`ConfigPatch`]: a partial configuration, as the registry's overrides use it.

use super::{Backoff, CircuitBreakerConfig, ConfigError, SlidingWindow};
use std::time::Duration;

/// Some fields of a [`CircuitBreakerConfig`], to lay over another: the unit of the
/// registry's per-key overrides.
///
/// A field left `None` keeps the value of the configuration it is applied to. With
/// feature `serde` it reads and writes as a table of the fields that are set (see
/// the `document` module).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ConfigPatch {
    /// See [`CircuitBreakerConfigBuilder::failure_threshold`](super::CircuitBreakerConfigBuilder::failure_threshold).
    pub failure_threshold: Option<u32>,
    /// See [`CircuitBreakerConfigBuilder::recovery_timeout`](super::CircuitBreakerConfigBuilder::recovery_timeout).
    pub recovery_timeout: Option<Duration>,
    /// See [`CircuitBreakerConfigBuilder::expected_response_time`](super::CircuitBreakerConfigBuilder::expected_response_time).
    pub expected_response_time: Option<Duration>,
    /// See [`CircuitBreakerConfigBuilder::monitoring_window`](super::CircuitBreakerConfigBuilder::monitoring_window).
    pub monitoring_window: Option<Duration>,
    /// See [`CircuitBreakerConfigBuilder::minimum_request_count`](super::CircuitBreakerConfigBuilder::minimum_request_count).
    pub minimum_request_count: Option<u32>,
    /// See [`CircuitBreakerConfigBuilder::half_open_max_calls`](super::CircuitBreakerConfigBuilder::half_open_max_calls).
    pub half_open_max_calls: Option<u32>,
    /// See [`CircuitBreakerConfigBuilder::half_open_max_wait`](super::CircuitBreakerConfigBuilder::half_open_max_wait).
    pub half_open_max_wait: Option<Duration>,
    /// See [`CircuitBreakerConfigBuilder::window_buckets`](super::CircuitBreakerConfigBuilder::window_buckets).
    pub window_buckets: Option<u32>,
    /// See [`CircuitBreakerConfigBuilder::sliding_window`](super::CircuitBreakerConfigBuilder::sliding_window).
    pub sliding_window: Option<SlidingWindow>,
    /// See [`CircuitBreakerConfigBuilder::failure_rate_threshold`](super::CircuitBreakerConfigBuilder::failure_rate_threshold).
    pub failure_rate_threshold: Option<f64>,
    /// See [`CircuitBreakerConfigBuilder::slow_call_rate_threshold`](super::CircuitBreakerConfigBuilder::slow_call_rate_threshold).
    pub slow_call_rate_threshold: Option<f64>,
    /// See [`CircuitBreakerConfigBuilder::slow_call_is_failure`](super::CircuitBreakerConfigBuilder::slow_call_is_failure).
    pub slow_call_is_failure: Option<bool>,
    /// See [`CircuitBreakerConfigBuilder::dropped_call_is_failure`](super::CircuitBreakerConfigBuilder::dropped_call_is_failure).
    pub dropped_call_is_failure: Option<bool>,
    /// See [`CircuitBreakerConfigBuilder::metrics_only`](super::CircuitBreakerConfigBuilder::metrics_only).
    pub metrics_only: Option<bool>,
    /// See [`CircuitBreakerConfigBuilder::backoff`](super::CircuitBreakerConfigBuilder::backoff).
    pub backoff: Option<Backoff>,
}

impl ConfigPatch {
    pub(crate) fn lay_over(&self, base: &CircuitBreakerConfig) -> CircuitBreakerConfig {
        let mut c = base.clone();
        macro_rules! lay {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field {
                    c.$field = v;
                }
            )*};
        }
        lay!(
            failure_threshold,
            recovery_timeout,
            expected_response_time,
            monitoring_window,
            minimum_request_count,
            half_open_max_calls,
            window_buckets,
            sliding_window,
            slow_call_is_failure,
            dropped_call_is_failure,
            metrics_only
        );
        if self.failure_rate_threshold.is_some() {
            c.failure_rate_threshold = self.failure_rate_threshold;
        }
        if self.slow_call_rate_threshold.is_some() {
            c.slow_call_rate_threshold = self.slow_call_rate_threshold;
        }
        if self.backoff.is_some() {
            c.backoff = self.backoff;
        }
        if self.half_open_max_wait.is_some() {
            c.half_open_max_wait = self.half_open_max_wait;
        }
        c
    }

    /// `base` with this patch laid over it, validated.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field when the result breaks a rule.
    pub fn apply(&self, base: &CircuitBreakerConfig) -> Result<CircuitBreakerConfig, ConfigError> {
        let c = self.lay_over(base);
        c.validate()?;
        Ok(c)
    }

    /// Checks the rules each set field obeys on its own (rules that tie fields together
    /// can only be checked against a configuration to apply it to).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field that breaks a rule.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.lay_over(&CircuitBreakerConfig::default())
            .check_fields()
    }

    /// Whether the patch sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == ConfigPatch::default()
    }
}
