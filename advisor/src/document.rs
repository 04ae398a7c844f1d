//! The winners as a config document the registry loads
//! ([`CircuitBreakerRegistry::apply_config`](tower_circuit_breaker::CircuitBreakerRegistry::apply_config)).
//!
//! Each key's winner goes in `services.<service>.operations.<operation>` with every field
//! written out, so it does not depend on the config the call site passes. Starting from
//! the document in force (`--current`) keeps its `default`, its `limits` and its other
//! overrides; a service-wide table of a key's service is kept too, since the operation's
//! fields, all set, win over it.

use std::collections::BTreeMap;
use tower_circuit_breaker::config::ConfigPatch;
use tower_circuit_breaker::registry::ServiceOverrides;
use tower_circuit_breaker::{CircuitBreakerConfig, RegistryConfig};

/// Every field of `config` as a patch (`half_open_max_wait` only when set, so a derived
/// one stays derived).
pub fn full_patch(config: &CircuitBreakerConfig) -> ConfigPatch {
    let mut p = ConfigPatch::default();
    p.failure_threshold = Some(config.failure_threshold());
    p.recovery_timeout = Some(config.recovery_timeout());
    p.expected_response_time = Some(config.expected_response_time());
    p.monitoring_window = Some(config.monitoring_window());
    p.minimum_request_count = Some(config.minimum_request_count());
    p.half_open_max_calls = Some(config.half_open_max_calls());
    p.half_open_max_wait = config
        .half_open_max_wait_is_set()
        .then(|| config.half_open_max_wait());
    p.window_buckets = Some(config.window_buckets());
    p.sliding_window = Some(config.sliding_window());
    p.failure_rate_threshold = config.failure_rate_threshold();
    p.slow_call_rate_threshold = config.slow_call_rate_threshold();
    p.slow_call_is_failure = Some(config.slow_call_is_failure());
    p.dropped_call_is_failure = Some(config.dropped_call_is_failure());
    p.metrics_only = Some(config.metrics_only());
    p.backoff = config.backoff();
    p
}

/// `base` (or an empty document) with each key's winner as its operation's override.
pub fn with_winners<'a>(
    base: Option<&RegistryConfig>,
    winners: impl IntoIterator<Item = (&'a (String, String), &'a CircuitBreakerConfig)>,
) -> RegistryConfig {
    let mut doc = base.cloned().unwrap_or_default();
    for ((service, operation), config) in winners {
        doc.services
            .entry(service.clone())
            .or_insert_with(|| ServiceOverrides {
                all: ConfigPatch::default(),
                operations: BTreeMap::new(),
            })
            .operations
            .insert(operation.clone(), full_patch(config));
    }
    doc
}
