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
///   `min_failing_instances` distinct instances, **or**
/// * (when the circuit's config has a `slow_call_rate_threshold`) the same volume, at
///   least that rate of the calls were slow, from at least `min_failing_instances`
///   distinct instances.
///
/// Reports count failures as each instance's trip rule does: a slow success (slower than
/// `expected_response_time`) is a failure when `slow_call_is_failure` (the presets), so a
/// fleet whose dependency is slow but not failing opens on that evidence too.
///
/// So one sick sandbox (a bad host, a bad network path) opens only its own circuit, as the
/// Polly maintainers' analysis of shared breakers asks.
///
/// Readers apply the same rule, with their own settings, to the reports of an Open record
/// before adopting it: a record that says Open without that evidence opens nobody.
/// Reports dated beyond [`max_clock_skew`](Self::max_clock_skew) are no evidence.
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
    pub(crate) min_probe_interval: Duration,
    pub(crate) max_clock_skew: Duration,
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
    /// The shortest time between two fleet probes (default 1 s; at least 10 ms). After
    /// a failed probe the fleet waits the prober's break divided by the number of
    /// reporting instances, but not less than this, before the next instance may take
    /// the probe lease: the fleet probes more often than any one instance would (so it
    /// finds the dependency back sooner than local circuits), one probe at a time, and
    /// fewer probes in all than local circuits send between them.
    min_probe_interval: Duration;
    /// How far ahead of this instance's clock another writer's clock may be (default
    /// 5 s). Between 0 and `report_ttl`. A record read from the store is untrusted, and
    /// its times are judged against the reader's own clock with this allowance:
    ///
    /// * a report dated further ahead than this is no evidence (a report older than
    ///   `report_ttl` neither); such reports stay in the record for the other readers to
    ///   judge, and are removed only when further than 10 × `report_ttl` from the
    ///   reader's clock, so a writer whose clock is off by more than the allowance
    ///   ignores the others' reports but does not delete them;
    /// * a probe lease never lasts past now + `lease_ttl`: one ending later is shortened
    ///   to that, and one ending later than now + `lease_ttl` + this allowance is dropped;
    /// * the time of the fleet's last transition, when further ahead, is taken as now;
    /// * the fleet's break never ends later than now + the longest break the local
    ///   circuit's config allows (`recovery_timeout`, or the backoff's `max` when
    ///   larger).
    ///
    /// Times are clamped or dropped entry by entry rather than the whole record refused
    /// as corrupt, so one writer with a wrong clock cannot wipe the evidence written by
    /// the others. A record that had to be corrected is written back corrected (by
    /// compare-and-set), so its times stop moving with each reader's clock.
    max_clock_skew: Duration;
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
                min_probe_interval: Duration::from_secs(1),
                max_clock_skew: Duration::from_secs(5),
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

    /// The allowance as epoch milliseconds.
    pub(crate) fn skew_ms(&self) -> u64 {
        duration_ms(self.max_clock_skew)
    }

    /// The adoption rule. `slow_call_rate`: the local circuit's slow-call-rate criterion,
    /// applied to the fleet's slow calls with the same volume and instance rules as
    /// failures (slow calls that count as failures are in the reports' failures already).
    pub(crate) fn meets(&self, e: super::record::Evidence, slow_call_rate: Option<f64>) -> bool {
        let volume = e.requests >= self.min_fleet_requests;
        e.open_instances >= self.quorum
            || (volume
                && e.failures as f64 >= self.fleet_failure_rate * e.requests as f64
                && e.failing_instances >= self.min_failing_instances)
            || (volume
                && slow_call_rate.is_some_and(|rate| e.slow as f64 >= rate * e.requests as f64)
                && e.slow_instances >= self.min_failing_instances)
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
        if c.min_probe_interval < Duration::from_millis(10) {
            return err("min_probe_interval", "must be at least 10 ms");
        }
        if c.max_clock_skew > c.report_ttl {
            return err("max_clock_skew", "must be at most report_ttl");
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

/// `d` in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The longest break `config` can produce on its own: `recovery_timeout`, or the
/// backoff's `max` when a backoff is set and its `max` is larger. An adopted fleet break,
/// or a restored one, never lasts longer than this.
pub(crate) fn longest_break(config: &CircuitBreakerConfig) -> Duration {
    let base = config.recovery_timeout();
    config.backoff().map_or(base, |b| b.max.max(base))
}
