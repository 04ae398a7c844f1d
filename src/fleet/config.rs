//! Settings of a fleet sync: the store key, the cache period, the adoption rule, leases,
//! and the store's own timeout and breaker.

use super::record::MAX_ID;
use crate::config::{CircuitBreakerConfig, ConfigError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Validated settings of a [`FleetSync`](super::FleetSync). Build with
/// [`FleetConfig::builder`].
///
/// # The adoption rule
///
/// A Closed circuit adopts the fleet's Open only when the fleet record was opened on
/// *fleet* evidence, judged over the fresh per-instance reports (younger than
/// `report_ttl`) by whoever writes the record:
///
/// * at least `quorum` distinct instances report being Open on their own evidence (a trip
///   or a failed probe; an instance that adopted the fleet's Open does not count), **or**
/// * the fleet's window holds at least `min_fleet_requests` calls, at least
///   `fleet_failure_rate` of them failed, and the failures come from at least
///   `min_failing_instances` distinct instances.
///
/// So one sick sandbox (a bad host, a bad network path) opens only its own circuit, as the
/// Polly maintainers' analysis of shared breakers asks.
///
/// ```
/// use std::time::Duration;
/// use tower_circuit_breaker::fleet::FleetConfig;
///
/// let config = FleetConfig::builder("tcb/dynamodb/PutItem")
///     .cache_period(Duration::from_secs(1))
///     .quorum(3)
///     .build()
///     .unwrap();
/// assert_eq!(config.quorum(), 3);
/// let err = FleetConfig::builder("").build().unwrap_err();
/// assert_eq!(err.field(), "key");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FleetConfig {
    pub(crate) key: String,
    pub(crate) instance_id: String,
    pub(crate) cache_period: Duration,
    pub(crate) store_timeout: Option<Duration>,
    pub(crate) record_ttl: Duration,
    pub(crate) report_ttl: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) quorum: u32,
    pub(crate) min_fleet_requests: u64,
    pub(crate) fleet_failure_rate: f64,
    pub(crate) min_failing_instances: u32,
    pub(crate) store_breaker: CircuitBreakerConfig,
}

/// Builds a [`FleetConfig`]; every setter documents its default.
#[derive(Clone, Debug)]
pub struct FleetConfigBuilder {
    config: FleetConfig,
}

macro_rules! getters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        impl FleetConfig {
            $($(#[$doc])* pub fn $name(&self) -> $ty { self.$name.clone() })*
        }
        impl FleetConfigBuilder {
            $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value;
                self
            })*
        }
    };
}

getters! {
    /// This process's id in the fleet record, unique per sandbox (default: pid, start
    /// time and a counter). At most 128 bytes.
    instance_id: String;
    /// How often the background sync exchanges state, and so how stale a peer's view can
    /// be (default 2 s). Between 10 ms and 1 h.
    cache_period: Duration;
    /// Timeout of one store operation (default 250 ms; `None`: none, for tests that drive
    /// a real store under paused time).
    store_timeout: Option<Duration>;
    /// The record expires this long after its last write (default 15 min): a fleet that
    /// stopped writing leaves no state behind. At least `report_ttl`.
    record_ttl: Duration;
    /// Reports older than this are dropped from the evidence (default 60 s).
    report_ttl: Duration;
    /// How long a probe lease lasts unless renewed (default 5 s): if its holder freezes or
    /// dies, another instance may probe after this.
    lease_ttl: Duration;
    /// Distinct instances Open on their own evidence that open the fleet (default 2).
    quorum: u32;
    /// Fleet-wide window calls needed before the failure rate may open the fleet
    /// (default 20).
    min_fleet_requests: u64;
    /// Fleet-wide failure rate, in `(0, 1]`, that opens the fleet (default 0.5).
    fleet_failure_rate: f64;
    /// Distinct instances the failures must come from (default 2).
    min_failing_instances: u32;
    /// The breaker around the store itself (default: 3 consecutive failures, 5 s recovery).
    store_breaker: CircuitBreakerConfig;
}

impl FleetConfig {
    /// A builder with the defaults, for the store key `key` (1 to 512 bytes; one key per
    /// circuit and fleet, e.g. `"myapp/prod/dynamodb/PutItem"`).
    pub fn builder(key: impl Into<String>) -> FleetConfigBuilder {
        FleetConfigBuilder {
            config: FleetConfig {
                key: key.into(),
                instance_id: default_instance_id(),
                cache_period: Duration::from_secs(2),
                store_timeout: Some(Duration::from_millis(250)),
                record_ttl: Duration::from_secs(15 * 60),
                report_ttl: Duration::from_secs(60),
                lease_ttl: Duration::from_secs(5),
                quorum: 2,
                min_fleet_requests: 20,
                fleet_failure_rate: 0.5,
                min_failing_instances: 2,
                store_breaker: CircuitBreakerConfig::builder()
                    .failure_threshold(3)
                    .minimum_request_count(3)
                    .recovery_timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
            },
        }
    }

    /// The store key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A builder starting from this configuration.
    pub fn to_builder(&self) -> FleetConfigBuilder {
        FleetConfigBuilder {
            config: self.clone(),
        }
    }

    pub(crate) fn meets(&self, e: super::record::Evidence) -> bool {
        e.open_instances >= self.quorum
            || (e.requests >= self.min_fleet_requests
                && e.failures as f64 >= self.fleet_failure_rate * e.requests as f64
                && e.failing_instances >= self.min_failing_instances)
    }
}

impl FleetConfigBuilder {
    /// Checks every rule.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field that breaks a rule.
    pub fn build(self) -> Result<FleetConfig, ConfigError> {
        let c = self.config;
        let err = |field, rule| Err(ConfigError::new(field, rule));
        if c.key.is_empty() || c.key.len() > 512 {
            return err("key", "must be 1 to 512 bytes");
        }
        if c.instance_id.is_empty() || c.instance_id.len() > MAX_ID {
            return err("instance_id", "must be 1 to 128 bytes");
        }
        if c.cache_period < Duration::from_millis(10) || c.cache_period > Duration::from_secs(3600)
        {
            return err("cache_period", "must be between 10 ms and 1 h");
        }
        if c.store_timeout.is_some_and(|t| t.is_zero()) {
            return err("store_timeout", "must be greater than zero");
        }
        if c.report_ttl < c.cache_period {
            return err("report_ttl", "must be at least cache_period");
        }
        if c.record_ttl < c.report_ttl {
            return err("record_ttl", "must be at least report_ttl");
        }
        if c.lease_ttl < Duration::from_millis(10) {
            return err("lease_ttl", "must be at least 10 ms");
        }
        if c.quorum == 0 {
            return err("quorum", "must be at least 1");
        }
        if c.min_fleet_requests == 0 {
            return err("min_fleet_requests", "must be at least 1");
        }
        if !(c.fleet_failure_rate > 0.0 && c.fleet_failure_rate <= 1.0) {
            return err("fleet_failure_rate", "must be in (0, 1]");
        }
        if c.min_failing_instances == 0 {
            return err("min_failing_instances", "must be at least 1");
        }
        Ok(c)
    }
}

fn default_instance_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let started = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!(
        "{:x}-{:x}-{}",
        std::process::id(),
        started,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
