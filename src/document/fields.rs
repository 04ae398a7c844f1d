//! The fields of a configuration table, declared once: their names, reading one, and
//! writing the ones that are set.

use crate::CircuitBreakerConfig;
use crate::config::{Backoff, ConfigPatch, SlidingWindow};
use crate::duration::string as duration;
use serde::de::{Deserializer, MapAccess};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A [`Duration`] read as a string with a unit.
pub(super) struct DurationDe(pub(super) Duration);

impl<'de> Deserialize<'de> for DurationDe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        duration::deserialize(deserializer).map(DurationDe)
    }
}

/// The word that turns slow-call detection off in `expected_response_time`: read as
/// `Duration::MAX` (see [`CircuitBreakerConfig::slow_calls_detected`]) and written for it.
pub(super) const SLOW_CALLS_OFF: &str = "off";

/// `expected_response_time`: a duration, or [`SLOW_CALLS_OFF`].
struct ResponseTimeDe(Duration);

impl<'de> Deserialize<'de> for ResponseTimeDe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    r#"a duration with a unit, like "500ms", or "{SLOW_CALLS_OFF}""#
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                if v == SLOW_CALLS_OFF {
                    return Ok(Duration::MAX);
                }
                crate::duration::parse_duration(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visit).map(ResponseTimeDe)
    }
}

/// The fields of a [`ConfigPatch`], in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    FailureThreshold,
    RecoveryTimeout,
    ExpectedResponseTime,
    MonitoringWindow,
    MinimumRequestCount,
    HalfOpenMaxCalls,
    HalfOpenMaxWait,
    WindowBuckets,
    SlidingWindow,
    FailureRateThreshold,
    SlowCallRateThreshold,
    SlowCallIsFailure,
    DroppedCallIsFailure,
    MetricsOnly,
    Backoff,
}

/// Declares the field names once, with the extra keys each kind of table accepts.
macro_rules! declare_fields {
    ($($name:literal => $field:ident,)*) => {
        /// Every field, in declaration order: `FIELDS[i]` is named `PATCH_KEYS[i]`.
        pub(super) const FIELDS: &[Field] = &[$(Field::$field,)*];
        /// Keys of a [`ConfigPatch`].
        pub(super) const PATCH_KEYS: &[&str] = &[$($name,)*];
        /// Keys of a [`CircuitBreakerConfig`]: the fields and `preset`.
        pub(super) const CONFIG_KEYS: &[&str] = &[$($name,)* "preset"];
        /// Keys of a service table: the fields and `operations`.
        pub(super) const SERVICE_KEYS: &[&str] = &[$($name,)* "operations"];
    };
}

declare_fields! {
    "failure_threshold" => FailureThreshold,
    "recovery_timeout" => RecoveryTimeout,
    "expected_response_time" => ExpectedResponseTime,
    "monitoring_window" => MonitoringWindow,
    "minimum_request_count" => MinimumRequestCount,
    "half_open_max_calls" => HalfOpenMaxCalls,
    "half_open_max_wait" => HalfOpenMaxWait,
    "window_buckets" => WindowBuckets,
    "sliding_window" => SlidingWindow,
    "failure_rate_threshold" => FailureRateThreshold,
    "slow_call_rate_threshold" => SlowCallRateThreshold,
    "slow_call_is_failure" => SlowCallIsFailure,
    "dropped_call_is_failure" => DroppedCallIsFailure,
    "metrics_only" => MetricsOnly,
    "backoff" => Backoff,
}

/// Reads the value of `field` from `map` into `patch`: the one place a configuration
/// field is read, shared by every table that holds fields.
pub(super) fn set_field<'de, A: MapAccess<'de>>(
    patch: &mut ConfigPatch,
    field: Field,
    map: &mut A,
) -> Result<(), A::Error> {
    match field {
        Field::FailureThreshold => patch.failure_threshold = Some(map.next_value()?),
        Field::RecoveryTimeout => patch.recovery_timeout = Some(map.next_value::<DurationDe>()?.0),
        Field::ExpectedResponseTime => {
            patch.expected_response_time = Some(map.next_value::<ResponseTimeDe>()?.0);
        }
        Field::MonitoringWindow => {
            patch.monitoring_window = Some(map.next_value::<DurationDe>()?.0);
        }
        Field::MinimumRequestCount => patch.minimum_request_count = Some(map.next_value()?),
        Field::HalfOpenMaxCalls => patch.half_open_max_calls = Some(map.next_value()?),
        Field::HalfOpenMaxWait => {
            patch.half_open_max_wait = Some(map.next_value::<DurationDe>()?.0);
        }
        Field::WindowBuckets => patch.window_buckets = Some(map.next_value()?),
        Field::SlidingWindow => patch.sliding_window = Some(map.next_value()?),
        Field::FailureRateThreshold => patch.failure_rate_threshold = Some(map.next_value()?),
        Field::SlowCallRateThreshold => patch.slow_call_rate_threshold = Some(map.next_value()?),
        Field::SlowCallIsFailure => patch.slow_call_is_failure = Some(map.next_value()?),
        Field::DroppedCallIsFailure => patch.dropped_call_is_failure = Some(map.next_value()?),
        Field::MetricsOnly => patch.metrics_only = Some(map.next_value()?),
        Field::Backoff => patch.backoff = Some(map.next_value::<Backoff>()?),
    }
    Ok(())
}

/// A field's value, for writing.
#[derive(Clone, Copy, Debug)]
pub(super) enum FieldValue {
    Count(u32),
    Duration(Duration),
    /// `expected_response_time`: `Duration::MAX` is written as [`SLOW_CALLS_OFF`].
    ResponseTime(Duration),
    Rate(f64),
    Flag(bool),
    Backoff(Backoff),
    Window(SlidingWindow),
}

impl Serialize for FieldValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            FieldValue::Count(n) => serializer.serialize_u32(n),
            FieldValue::Duration(d) => duration::serialize(&d, serializer),
            FieldValue::ResponseTime(Duration::MAX) => serializer.serialize_str(SLOW_CALLS_OFF),
            FieldValue::ResponseTime(d) => duration::serialize(&d, serializer),
            FieldValue::Rate(r) => serializer.serialize_f64(r),
            FieldValue::Flag(b) => serializer.serialize_bool(b),
            FieldValue::Backoff(b) => b.serialize(serializer),
            FieldValue::Window(w) => w.serialize(serializer),
        }
    }
}

/// The set fields of `patch`, in declaration order.
pub(super) fn entries(patch: &ConfigPatch) -> Vec<(&'static str, FieldValue)> {
    use FieldValue::{Count, Duration as D, Flag, Rate};
    let all = [
        patch.failure_threshold.map(Count),
        patch.recovery_timeout.map(D),
        patch.expected_response_time.map(FieldValue::ResponseTime),
        patch.monitoring_window.map(D),
        patch.minimum_request_count.map(Count),
        patch.half_open_max_calls.map(Count),
        patch.half_open_max_wait.map(D),
        patch.window_buckets.map(Count),
        patch.sliding_window.map(FieldValue::Window),
        patch.failure_rate_threshold.map(Rate),
        patch.slow_call_rate_threshold.map(Rate),
        patch.slow_call_is_failure.map(Flag),
        patch.dropped_call_is_failure.map(Flag),
        patch.metrics_only.map(Flag),
        patch.backoff.map(FieldValue::Backoff),
    ];
    PATCH_KEYS
        .iter()
        .zip(all)
        .filter_map(|(name, v)| v.map(|v| (*name, v)))
        .collect()
}

/// Every field of `config` as a patch (rates and backoff only when set).
pub(super) fn full_patch(config: &CircuitBreakerConfig) -> ConfigPatch {
    ConfigPatch {
        failure_threshold: Some(config.failure_threshold),
        recovery_timeout: Some(config.recovery_timeout),
        expected_response_time: Some(config.expected_response_time),
        monitoring_window: Some(config.monitoring_window),
        minimum_request_count: Some(config.minimum_request_count),
        half_open_max_calls: Some(config.half_open_max_calls),
        // Only when set: a derived value keeps following the fields it is derived from.
        half_open_max_wait: config.half_open_max_wait,
        window_buckets: Some(config.window_buckets),
        // Only a count window: documents written before it existed stay as they were.
        sliding_window: (config.sliding_window != SlidingWindow::Time)
            .then_some(config.sliding_window),
        failure_rate_threshold: config.failure_rate_threshold,
        slow_call_rate_threshold: config.slow_call_rate_threshold,
        slow_call_is_failure: Some(config.slow_call_is_failure),
        dropped_call_is_failure: Some(config.dropped_call_is_failure),
        metrics_only: Some(config.metrics_only),
        backoff: config.backoff,
    }
}

/// Writes `entries` as a struct, then `operations` when given.
pub(super) fn serialize_entries<S: Serializer>(
    serializer: S,
    name: &'static str,
    entries: &[(&'static str, FieldValue)],
    operations: Option<&BTreeMap<String, ConfigPatch>>,
) -> Result<S::Ok, S::Error> {
    let len = entries.len() + usize::from(operations.is_some());
    let mut s = serializer.serialize_struct(name, len)?;
    for (key, value) in entries {
        s.serialize_field(key, value)?;
    }
    if let Some(operations) = operations {
        s.serialize_field("operations", operations)?;
    }
    s.end()
}
