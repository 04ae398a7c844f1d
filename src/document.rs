//! Configuration documents (feature `serde`): the registry's configuration as JSON or TOML.
//!
//! One document holds a [`RegistryConfig`]: the `default` configuration of circuits created
//! without one, and `services`, the overrides per service and per operation. Load it from
//! a string ([`RegistryConfig::from_toml`], [`RegistryConfig::from_json`]), a file
//! ([`RegistryConfig::from_file`]) or an environment variable
//! ([`RegistryConfig::from_env`]), and re-apply it to a live registry
//! ([`CircuitBreakerRegistry::apply_toml`], [`apply_json`](CircuitBreakerRegistry::apply_json),
//! [`apply_file`](CircuitBreakerRegistry::apply_file)): live circuits take the new
//! thresholds and keep their state and counts.
//!
//! # Format
//!
//! ```
//! use std::time::Duration;
//! use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry};
//! use tower_circuit_breaker::registry::RegistryConfig;
//!
//! let config = RegistryConfig::from_toml(r#"
//!     ## Circuits created without a configuration of their own.
//!     [default]
//!     preset = "dynamodb"          # the base the fields below are laid over (optional)
//!     recovery_timeout = "30s"
//!
//!     ## Every dynamodb operation...
//!     [services.dynamodb]
//!     failure_threshold = 4
//!
//!     ## ...and this one in particular.
//!     [services.dynamodb.operations.storeUserMessage]
//!     failure_threshold = 2
//!     expected_response_time = "300ms"
//!     backoff = { multiplier = 2.0, max = "2m", jitter = 0.1 }
//! "#)?;
//! assert_eq!(config.default.recovery_timeout(), Duration::from_secs(30));
//! assert_eq!(config.default.expected_response_time(), Duration::from_millis(500));
//!
//! let registry = CircuitBreakerRegistry::with_config(config);
//! let circuit = registry.circuit("dynamodb", "storeUserMessage", &CircuitBreakerConfig::dynamodb());
//! assert_eq!(circuit.config().failure_threshold(), 2);
//! assert_eq!(circuit.config().expected_response_time(), Duration::from_millis(300));
//! let other = registry.circuit("dynamodb", "getItem", &CircuitBreakerConfig::dynamodb());
//! assert_eq!(other.config().failure_threshold(), 4);
//! # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
//! ```
//!
//! The same in JSON:
//!
//! ```
//! # use tower_circuit_breaker::registry::RegistryConfig;
//! let config = RegistryConfig::from_json(r#"{
//!     "default": { "preset": "dynamodb", "recovery_timeout": "30s" },
//!     "services": {
//!         "dynamodb": {
//!             "failure_threshold": 4,
//!             "operations": {
//!                 "storeUserMessage": {
//!                     "failure_threshold": 2,
//!                     "expected_response_time": "300ms",
//!                     "backoff": { "multiplier": 2.0, "max": "2m", "jitter": 0.1 }
//!                 }
//!             }
//!         }
//!     }
//! }"#)?;
//! # assert_eq!(config, RegistryConfig::from_toml(r#"
//! #     [default]
//! #     preset = "dynamodb"
//! #     recovery_timeout = "30s"
//! #     [services.dynamodb]
//! #     failure_threshold = 4
//! #     [services.dynamodb.operations.storeUserMessage]
//! #     failure_threshold = 2
//! #     expected_response_time = "300ms"
//! #     backoff = { multiplier = 2.0, max = "2m", jitter = 0.1 }
//! # "#)?);
//! # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
//! ```
//!
//! * `default` (optional) is a full [`CircuitBreakerConfig`]: any of its fields, laid over
//!   [`CircuitBreakerConfig::default`], or over a preset named by `preset` (`"default"`,
//!   `"cognito"`, `"dynamodb"`, `"api_gateway_management"`).
//! * `services` (optional) maps a service to the fields its circuits override, and to
//!   `operations`, which maps an operation of that service to its own overrides (a
//!   [`ConfigPatch`] each). An operation's fields beat its service's, which beat the
//!   configuration passed at the call site.
//! * Field names are those of [`CircuitBreakerConfigBuilder`](crate::config::CircuitBreakerConfigBuilder):
//!   `failure_threshold`, `recovery_timeout`, `expected_response_time`,
//!   `monitoring_window`, `minimum_request_count`, `half_open_max_calls`,
//!   `half_open_max_wait` (a duration; left out, it is derived, see
//!   [`CircuitBreakerConfig::half_open_max_wait`]), `window_buckets`, `failure_rate_threshold`, `slow_call_rate_threshold`,
//!   `slow_call_is_failure`, `dropped_call_is_failure`, `metrics_only`, and `backoff`
//!   (`{ multiplier, max, jitter }`, `jitter` optional).
//! * `limits` (optional) bounds the registry itself (see
//!   [`RegistryLimits`]): `capacity` (circuits, default
//!   10 000), `max_name_length` (bytes of a service or operation name, default 256) and
//!   `idle_timeout` (default `"15m"`). It is written out only when it differs from the
//!   defaults.
//! * Durations are strings with a unit: `"250ns"`, `"250us"` (or `"250µs"`), `"500ms"`,
//!   `"30s"`, `"1m"`, `"2h"`, and decimals such as `"1.5s"`. A bare number is refused:
//!   `30` could mean seconds or milliseconds. See [`parse_duration`].
//!
//! # Errors
//!
//! A document is taken as a whole or refused as a whole: a syntax error, an unknown
//! field, a duplicate key, a value of the wrong type or one that breaks a rule of
//! [`CircuitBreakerConfig`] each give a [`RegistryConfigError`] whose
//! [`key`](RegistryConfigError::key) is the table (`default`, `services.dynamodb`,
//! `services.dynamodb.operations.storeUserMessage`) and whose
//! [`field`](RegistryConfigError::field) is the field:
//!
//! ```
//! # use tower_circuit_breaker::registry::RegistryConfig;
//! let err = RegistryConfig::from_toml(r#"
//!     [services.dynamodb.operations.storeUserMessage]
//!     failure_threshold = 0
//! "#).unwrap_err();
//! assert_eq!(err.key(), "services.dynamodb.operations.storeUserMessage");
//! assert_eq!(err.field(), Some("failure_threshold"));
//!
//! let err = RegistryConfig::from_json(r#"{ "default": { "recovery_timeout": 30 } }"#).unwrap_err();
//! assert_eq!((err.key(), err.field()), ("default", Some("recovery_timeout")));
//! assert!(err.message().contains(r#"a duration with a unit, like "30s" or "500ms""#));
//! ```
//!
//! Documents are treated as untrusted input: parsing never panics, documents over
//! [`MAX_DOCUMENT_BYTES`] and documents naming more than [`MAX_OVERRIDES`] services and
//! operations in all are refused.
//!
//! # Stats
//!
//! [`CircuitBreakerStats`](crate::CircuitBreakerStats) and
//! [`KeyedStats`](crate::registry::KeyedStats) serialize too, times as RFC 3339 UTC
//! strings with milliseconds (`"2026-11-27T10:14:11.123Z"`), so a health route can return
//! them as they are:
//!
//! ```
//! # use tower_circuit_breaker::CircuitBreakerRegistry;
//! let registry = CircuitBreakerRegistry::new();
//! registry.circuit("dynamodb", "storeUserMessage", None).force_open();
//! let body = serde_json::to_value(registry.all_stats()).unwrap();
//! assert_eq!(body[0]["service"], "dynamodb");
//! assert_eq!(body[0]["stats"]["state"], "open");
//! assert_eq!(body[0]["stats"]["manual_override"], "forced_open");
//! ```

use crate::config::{Backoff, ConfigError, ConfigPatch};
use crate::error::RejectReason;
use crate::registry::{RegistryConfig, RegistryConfigError, RegistryLimits, ServiceOverrides};
use crate::{CircuitBreakerConfig, CircuitBreakerRegistry};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Documents longer than this many bytes (1 MiB) are refused.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Documents naming more services and operations than this, in all, are refused.
pub const MAX_OVERRIDES: usize = 10_000;

// ===== durations =====

const DURATION_EXPECTED: &str = r#"a duration with a unit, like "30s" or "500ms""#;

/// Longest duration string looked at; anything longer is refused unread.
const MAX_DURATION_LEN: usize = 64;

/// A duration string was refused. Says why, quoting the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError {
    message: String,
}

impl DurationError {
    fn expected(input: &str) -> Self {
        let found = if input.is_empty() {
            "an empty string".to_string()
        } else if input.len() > MAX_DURATION_LEN {
            format!("a string of {} bytes", input.len())
        } else {
            format!("{input:?}")
        };
        DurationError {
            message: format!("expected {DURATION_EXPECTED}, found {found}"),
        }
    }

    fn other(message: String) -> Self {
        DurationError { message }
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DurationError {}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Units, largest first: the order [`format_duration`] tries them in.
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Parses a duration with a unit: digits, optionally a `.` and more digits, then one of
/// `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`. No sign, no spaces.
///
/// ```
/// use std::time::Duration;
/// use tower_circuit_breaker::document::parse_duration;
///
/// assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
/// assert_eq!(
///     parse_duration("30").unwrap_err().to_string(),
///     r#"expected a duration with a unit, like "30s" or "500ms", found "30""#,
/// );
/// ```
///
/// # Errors
///
/// A bare number, a sign, an unknown unit, an empty or over-long string, a value that is
/// not a whole number of nanoseconds, or one too large for a [`Duration`].
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() || input.len() > MAX_DURATION_LEN {
        return Err(DurationError::expected(input));
    }
    if input.starts_with('-') {
        return Err(DurationError::other(format!(
            "a duration cannot be negative, found {input:?}"
        )));
    }
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let int_len = digits(input);
    if int_len == 0 {
        return Err(DurationError::expected(input));
    }
    let (int_part, rest) = input.split_at(int_len);
    let (frac_part, unit) = match rest.strip_prefix('.') {
        Some(after) => {
            let frac_len = digits(after);
            if frac_len == 0 {
                return Err(DurationError::expected(input));
            }
            after.split_at(frac_len)
        }
        None => ("", rest),
    };
    let unit_ns: u128 = match unit {
        "" => return Err(DurationError::expected(input)),
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        other => {
            return Err(DurationError::other(format!(
                "unknown duration unit {other:?} in {input:?}; expected ns, us, µs, ms, s, m or h"
            )));
        }
    };
    let too_large = || DurationError::other(format!("duration {input:?} is too large"));
    // At most 64 digits: the checked arithmetic below catches every overflow.
    let mut int: u128 = 0;
    for d in int_part.bytes() {
        int = int
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(d - b'0')))
            .ok_or_else(too_large)?;
    }
    let mut total = int.checked_mul(unit_ns).ok_or_else(too_large)?;
    let frac_part = frac_part.trim_end_matches('0');
    if !frac_part.is_empty() {
        let not_whole = || {
            DurationError::other(format!(
                "duration {input:?} is not a whole number of nanoseconds"
            ))
        };
        // A fraction with more significant digits than this cannot come to whole
        // nanoseconds of any unit (an hour is 3.6 × 10¹² ns).
        if frac_part.len() > 18 {
            return Err(not_whole());
        }
        let mut frac: u128 = 0;
        for d in frac_part.bytes() {
            frac = frac * 10 + u128::from(d - b'0');
        }
        // frac < 10¹⁸ and unit_ns ≤ 3.6 × 10¹²: no overflow in u128.
        let scaled = frac * unit_ns;
        let pow = 10u128.pow(frac_part.len() as u32);
        if scaled % pow != 0 {
            return Err(not_whole());
        }
        total = total.checked_add(scaled / pow).ok_or_else(too_large)?;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

/// Formats a duration in its shortest exact form: a whole number of the largest unit
/// that divides it (`h`, `m`, `s`, `ms`, `us`, `ns`); [`parse_duration`] reads it back
/// unchanged.
///
/// ```
/// use std::time::Duration;
/// use tower_circuit_breaker::document::format_duration;
///
/// assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
/// assert_eq!(format_duration(Duration::from_secs(90)), "90s");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
/// assert_eq!(format_duration(Duration::ZERO), "0s");
/// ```
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_string();
    }
    let (unit, per) = UNITS
        .iter()
        .copied()
        .find(|&(_, per)| ns % per == 0)
        .unwrap_or(("ns", 1));
    format!("{}{unit}", ns / per)
}

/// Serde helpers for a [`Duration`] written as a string with a unit, for
/// `#[serde(with = "tower_circuit_breaker::document::duration")]`.
///
/// ```
/// use std::time::Duration;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Settings {
///     #[serde(with = "tower_circuit_breaker::document::duration")]
///     poll_every: Duration,
/// }
///
/// let s: Settings = serde_json::from_str(r#"{ "poll_every": "45s" }"#).unwrap();
/// assert_eq!(s.poll_every, Duration::from_secs(45));
/// assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"poll_every":"45s"}"#);
/// ```
pub mod duration {
    use super::{DURATION_EXPECTED, format_duration, parse_duration};
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;
    use std::fmt;
    use std::time::Duration;

    /// Writes `d` as [`format_duration`] does.
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*d))
    }

    /// Reads a string as [`parse_duration`] does.
    ///
    /// # Errors
    ///
    /// Anything but a string, or a string [`parse_duration`] refuses.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }

    pub(super) struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(DURATION_EXPECTED)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
}

/// A [`Duration`] read as a string with a unit.
struct DurationDe(Duration);

impl<'de> Deserialize<'de> for DurationDe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        duration::deserialize(deserializer).map(DurationDe)
    }
}

// ===== times =====

/// `(year, month, day)` of the day `days` after 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], from March
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `t` as RFC 3339 in UTC with milliseconds (truncated), e.g. `2026-11-27T10:14:11.123Z`.
pub(crate) fn format_rfc3339(t: SystemTime) -> String {
    // Milliseconds since the epoch, floored (also before it). SystemTime spans at most
    // about ±2.9 × 10¹¹ years, far inside i128 and, in days, inside i64.
    let ms: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_nanos().div_ceil(1_000_000) as i128),
    };
    let secs = ms.div_euclid(1_000);
    let milli = ms.rem_euclid(1_000);
    let days = secs.div_euclid(86_400) as i64;
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3_600,
        sod / 60 % 60,
        sod % 60
    )
}

/// `serialize_with` for the stats' `Option<SystemTime>` fields.
pub(crate) fn serialize_time<S: Serializer>(
    t: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serializer.serialize_str(&format_rfc3339(*t)),
        None => serializer.serialize_none(),
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for RejectReason {
    /// As [`RejectReason::as_str`].
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

// ===== configuration fields =====

/// The fields of a [`ConfigPatch`], in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    FailureThreshold,
    RecoveryTimeout,
    ExpectedResponseTime,
    MonitoringWindow,
    MinimumRequestCount,
    HalfOpenMaxCalls,
    HalfOpenMaxWait,
    WindowBuckets,
    FailureRateThreshold,
    SlowCallRateThreshold,
    SlowCallIsFailure,
    DroppedCallIsFailure,
    MetricsOnly,
    Backoff,
}

/// Declares the field names once, with the extra keys each kind of table accepts.
macro_rules! keys {
    ($($name:literal => $field:ident,)*) => {
        const FIELDS: &[Field] = &[$(Field::$field,)*];
        /// Keys of a [`ConfigPatch`].
        const PATCH_KEYS: &[&str] = &[$($name,)*];
        /// Keys of a [`CircuitBreakerConfig`]: the fields and `preset`.
        const CONFIG_KEYS: &[&str] = &[$($name,)* "preset"];
        /// Keys of a service table: the fields and `operations`.
        const SERVICE_KEYS: &[&str] = &[$($name,)* "operations"];
    };
}

keys! {
    "failure_threshold" => FailureThreshold,
    "recovery_timeout" => RecoveryTimeout,
    "expected_response_time" => ExpectedResponseTime,
    "monitoring_window" => MonitoringWindow,
    "minimum_request_count" => MinimumRequestCount,
    "half_open_max_calls" => HalfOpenMaxCalls,
    "half_open_max_wait" => HalfOpenMaxWait,
    "window_buckets" => WindowBuckets,
    "failure_rate_threshold" => FailureRateThreshold,
    "slow_call_rate_threshold" => SlowCallRateThreshold,
    "slow_call_is_failure" => SlowCallIsFailure,
    "dropped_call_is_failure" => DroppedCallIsFailure,
    "metrics_only" => MetricsOnly,
    "backoff" => Backoff,
}

/// The key under which toml hands a date-time to a visitor, as a one-entry table.
const TOML_DATETIME: &str = "$__toml_private_datetime";

/// Keys of the document's top level.
const REGISTRY_KEYS: &[&str] = &["default", "services", "limits"];
/// Keys of the `limits` table.
const LIMITS_KEYS: &[&str] = &["capacity", "max_name_length", "idle_timeout"];

/// Reads the value of `field` from `map` into `patch`: the one place a configuration
/// field is read, shared by every table that holds fields.
fn set_field<'de, A: MapAccess<'de>>(
    patch: &mut ConfigPatch,
    field: Field,
    map: &mut A,
) -> Result<(), A::Error> {
    match field {
        Field::FailureThreshold => patch.failure_threshold = Some(map.next_value()?),
        Field::RecoveryTimeout => patch.recovery_timeout = Some(map.next_value::<DurationDe>()?.0),
        Field::ExpectedResponseTime => {
            patch.expected_response_time = Some(map.next_value::<DurationDe>()?.0);
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
enum FieldValue {
    Count(u32),
    Duration(Duration),
    Rate(f64),
    Flag(bool),
    Backoff(Backoff),
}

impl Serialize for FieldValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            FieldValue::Count(n) => serializer.serialize_u32(n),
            FieldValue::Duration(d) => duration::serialize(&d, serializer),
            FieldValue::Rate(r) => serializer.serialize_f64(r),
            FieldValue::Flag(b) => serializer.serialize_bool(b),
            FieldValue::Backoff(b) => b.serialize(serializer),
        }
    }
}

/// The set fields of `patch`, in declaration order.
fn entries(patch: &ConfigPatch) -> Vec<(&'static str, FieldValue)> {
    use FieldValue::{Count, Duration as D, Flag, Rate};
    let all = [
        patch.failure_threshold.map(Count),
        patch.recovery_timeout.map(D),
        patch.expected_response_time.map(D),
        patch.monitoring_window.map(D),
        patch.minimum_request_count.map(Count),
        patch.half_open_max_calls.map(Count),
        patch.half_open_max_wait.map(D),
        patch.window_buckets.map(Count),
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
fn full_patch(config: &CircuitBreakerConfig) -> ConfigPatch {
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
        failure_rate_threshold: config.failure_rate_threshold,
        slow_call_rate_threshold: config.slow_call_rate_threshold,
        slow_call_is_failure: Some(config.slow_call_is_failure),
        dropped_call_is_failure: Some(config.dropped_call_is_failure),
        metrics_only: Some(config.metrics_only),
        backoff: config.backoff,
    }
}

/// Writes `entries` as a struct, then `operations` when given.
fn serialize_entries<S: Serializer>(
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

// ===== keys =====

/// Reads a key of a table whose keys are `names`, refusing unknown and repeated ones
/// while the key is read, so the error's path ends at the key.
struct KeySeed<'a> {
    names: &'static [&'static str],
    seen: &'a mut u64,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        match self.names.iter().position(|n| *n == v) {
            None if v == TOML_DATETIME => {
                Err(E::custom("invalid type: date-time, expected a table"))
            }
            None => Err(E::unknown_field(v, self.names)),
            Some(i) if *self.seen & (1 << i) != 0 => Err(E::duplicate_field(self.names[i])),
            Some(i) => {
                *self.seen |= 1 << i;
                Ok(i)
            }
        }
    }
}

/// A map with string keys that refuses a key given twice (JSON allows it; the last
/// would silently win).
struct UniqueMap<V>(BTreeMap<String, V>);

struct UniqueKey<'a, V>(&'a BTreeMap<String, V>);

impl<'de, V> DeserializeSeed<'de> for UniqueKey<'_, V> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<V> Visitor<'_> for UniqueKey<'_, V> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if self.0.contains_key(v) {
            return Err(E::custom(format_args!("duplicate key {v:?}")));
        }
        Ok(v.to_owned())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = UniqueMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key_seed(UniqueKey(&out))? {
                    let value = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(UniqueMap(out))
            }
        }

        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

// ===== ConfigPatch =====

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for ConfigPatch {
    /// The fields that are set, durations as strings with a unit.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_entries(serializer, "ConfigPatch", &entries(self), None)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for ConfigPatch {
    /// Any of the fields of [`CircuitBreakerConfig`]; unknown and repeated fields are
    /// refused. Not validated: see [`ConfigPatch::check`] and [`ConfigPatch::apply`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PatchVisitor;

        impl<'de> Visitor<'de> for PatchVisitor {
            type Value = ConfigPatch;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of circuit breaker settings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConfigPatch, A::Error> {
                let mut patch = ConfigPatch::default();
                let mut seen = 0;
                while let Some(i) = map.next_key_seed(KeySeed {
                    names: PATCH_KEYS,
                    seen: &mut seen,
                })? {
                    set_field(&mut patch, FIELDS[i], &mut map)?;
                }
                Ok(patch)
            }
        }

        deserializer.deserialize_map(PatchVisitor)
    }
}

// ===== CircuitBreakerConfig =====

/// The base a document's configuration is laid over.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Preset {
    Default,
    Cognito,
    Dynamodb,
    ApiGatewayManagement,
}

/// A configuration as written: a preset and the fields laid over it, not yet validated.
#[derive(Debug, Default)]
struct ConfigDoc {
    preset: Option<Preset>,
    patch: ConfigPatch,
}

impl ConfigDoc {
    fn build(&self) -> Result<CircuitBreakerConfig, ConfigError> {
        let base = match self.preset {
            None | Some(Preset::Default) => CircuitBreakerConfig::default(),
            Some(Preset::Cognito) => CircuitBreakerConfig::cognito(),
            Some(Preset::Dynamodb) => CircuitBreakerConfig::dynamodb(),
            Some(Preset::ApiGatewayManagement) => CircuitBreakerConfig::api_gateway_management(),
        };
        self.patch.apply(&base)
    }
}

impl<'de> Deserialize<'de> for ConfigDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocVisitor;

        impl<'de> Visitor<'de> for DocVisitor {
            type Value = ConfigDoc;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of circuit breaker settings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConfigDoc, A::Error> {
                let mut doc = ConfigDoc::default();
                let mut seen = 0;
                while let Some(i) = map.next_key_seed(KeySeed {
                    names: CONFIG_KEYS,
                    seen: &mut seen,
                })? {
                    match FIELDS.get(i) {
                        Some(&field) => set_field(&mut doc.patch, field, &mut map)?,
                        None => doc.preset = Some(map.next_value()?),
                    }
                }
                Ok(doc)
            }
        }

        deserializer.deserialize_map(DocVisitor)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for CircuitBreakerConfig {
    /// Every field, durations as strings with a unit; `failure_rate_threshold`,
    /// `slow_call_rate_threshold` and `backoff` only when set.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_entries(
            serializer,
            "CircuitBreakerConfig",
            &entries(&full_patch(self)),
            None,
        )
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for CircuitBreakerConfig {
    /// Any of the fields, laid over [`CircuitBreakerConfig::default`] (or over the preset
    /// named by an optional `preset` field), then validated. Unknown and repeated fields
    /// are refused; a validation error names the field.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ConfigDoc::deserialize(deserializer)?
            .build()
            .map_err(de::Error::custom)
    }
}

// ===== ServiceOverrides =====

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for ServiceOverrides {
    /// The fields of `all`, and `operations` when there are any.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let operations = (!self.operations.is_empty()).then_some(&self.operations);
        serialize_entries(
            serializer,
            "ServiceOverrides",
            &entries(&self.all),
            operations,
        )
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for ServiceOverrides {
    /// A service table: fields for all its operations, and an optional `operations`
    /// table of per-operation fields. Unknown and repeated keys are refused. Not
    /// validated: see [`ConfigPatch::check`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ServiceVisitor;

        impl<'de> Visitor<'de> for ServiceVisitor {
            type Value = ServiceOverrides;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of circuit breaker settings and `operations`")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ServiceOverrides, A::Error> {
                let mut out = ServiceOverrides::default();
                let mut seen = 0;
                while let Some(i) = map.next_key_seed(KeySeed {
                    names: SERVICE_KEYS,
                    seen: &mut seen,
                })? {
                    match FIELDS.get(i) {
                        Some(&field) => set_field(&mut out.all, field, &mut map)?,
                        None => out.operations = map.next_value::<UniqueMap<ConfigPatch>>()?.0,
                    }
                }
                Ok(out)
            }
        }

        deserializer.deserialize_map(ServiceVisitor)
    }
}

// ===== RegistryConfig =====

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for RegistryConfig {
    /// `{ "default": <CircuitBreakerConfig>, "services": { ... } }`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let custom = self.limits != RegistryLimits::default();
        let mut s = serializer.serialize_struct("RegistryConfig", 2 + usize::from(custom))?;
        s.serialize_field("default", &self.default)?;
        s.serialize_field("services", &self.services)?;
        if custom {
            s.serialize_field("limits", &LimitsDoc(self.limits))?;
        } else {
            s.skip_field("limits")?;
        }
        s.end()
    }
}

/// The `limits` table: `{ capacity, max_name_length, idle_timeout }`, each optional.
#[derive(Debug)]
struct LimitsDoc(RegistryLimits);

impl Serialize for LimitsDoc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RegistryLimits", 3)?;
        s.serialize_field("capacity", &self.0.capacity())?;
        s.serialize_field("max_name_length", &self.0.max_name_length())?;
        s.serialize_field("idle_timeout", &format_duration(self.0.idle_timeout()))?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for LimitsDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LimitsVisitor;

        impl<'de> Visitor<'de> for LimitsVisitor {
            type Value = LimitsDoc;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of registry limits")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LimitsDoc, A::Error> {
                let mut limits = RegistryLimits::default();
                let mut seen = 0;
                while let Some(field) = map.next_key_seed(KeySeed {
                    names: LIMITS_KEYS,
                    seen: &mut seen,
                })? {
                    limits = map.next_value_seed(LimitSeed { limits, field })?;
                }
                Ok(LimitsDoc(limits))
            }
        }

        deserializer.deserialize_map(LimitsVisitor)
    }
}

/// Reads one field of `limits` and checks it, so an error's path ends at the field.
struct LimitSeed {
    limits: RegistryLimits,
    field: usize,
}

impl<'de> DeserializeSeed<'de> for LimitSeed {
    type Value = RegistryLimits;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<RegistryLimits, D::Error> {
        let l = self.limits;
        let b = RegistryLimits::builder()
            .capacity(l.capacity())
            .max_name_length(l.max_name_length())
            .idle_timeout(l.idle_timeout());
        let b = match self.field {
            0 => b.capacity(usize::deserialize(deserializer)?),
            1 => b.max_name_length(usize::deserialize(deserializer)?),
            _ => b.idle_timeout(DurationDe::deserialize(deserializer)?.0),
        };
        b.build().map_err(|e| de::Error::custom(e.rule()))
    }
}

/// A registry configuration as written, not yet validated.
#[derive(Debug, Default)]
struct RawRegistry {
    default: Option<ConfigDoc>,
    services: BTreeMap<String, ServiceOverrides>,
    limits: Option<LimitsDoc>,
}

impl<'de> Deserialize<'de> for RawRegistry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RegistryVisitor;

        impl<'de> Visitor<'de> for RegistryVisitor {
            type Value = RawRegistry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table with `default`, `services` and `limits`")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRegistry, A::Error> {
                let mut raw = RawRegistry::default();
                let mut seen = 0;
                while let Some(i) = map.next_key_seed(KeySeed {
                    names: REGISTRY_KEYS,
                    seen: &mut seen,
                })? {
                    match i {
                        0 => raw.default = Some(map.next_value()?),
                        1 => raw.services = map.next_value::<UniqueMap<ServiceOverrides>>()?.0,
                        _ => raw.limits = Some(map.next_value()?),
                    }
                }
                Ok(raw)
            }
        }

        deserializer.deserialize_map(RegistryVisitor)
    }
}

impl RawRegistry {
    /// Checks the limits and every rule, naming the table and field that broke one.
    fn validate(self) -> Result<RegistryConfig, RegistryConfigError> {
        let overrides = self.services.values().fold(self.services.len(), |n, s| {
            n.saturating_add(s.operations.len())
        });
        if overrides > MAX_OVERRIDES {
            return Err(RegistryConfigError::new(
                "services",
                None,
                format!(
                    "the document names {overrides} services and operations; at most {MAX_OVERRIDES} are accepted"
                ),
            ));
        }
        let invalid = |key: String, e: ConfigError| RegistryConfigError::invalid(&key, e);
        let default = match &self.default {
            Some(doc) => doc.build().map_err(|e| invalid("default".to_string(), e))?,
            None => CircuitBreakerConfig::default(),
        };
        for (service, overrides) in &self.services {
            overrides
                .all
                .check()
                .map_err(|e| invalid(key_path(&["services", service]), e))?;
            for (operation, patch) in &overrides.operations {
                patch.check().map_err(|e| {
                    invalid(key_path(&["services", service, "operations", operation]), e)
                })?;
            }
        }
        Ok(RegistryConfig {
            default,
            services: self.services,
            limits: self.limits.map(|l| l.0).unwrap_or_default(),
        })
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for RegistryConfig {
    /// `{ "default": ..., "services": ... }`, both optional, unknown keys refused, every
    /// table checked as [`RegistryConfig::from_json`] does. The error message names the
    /// table and field; prefer the `from_*` functions for a [`RegistryConfigError`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawRegistry::deserialize(deserializer)?
            .validate()
            .map_err(de::Error::custom)
    }
}

// ===== paths and errors =====

use crate::registry::{key_path, quote};

/// Splits where an error happened into the table (`default`, `services.x`,
/// `services.x.operations.y`) and the field inside it.
fn locate(path: &serde_path_to_error::Path) -> (String, Option<String>) {
    use serde_path_to_error::Segment;
    // The path stops where it is no longer known (e.g. a key cut off by the end of the
    // input) and before the name toml gives a date-time's inner table.
    let segments: Vec<String> = path
        .iter()
        .map_while(|s| match s {
            Segment::Map { key } if key == TOML_DATETIME => None,
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect();
    let table = match segments.first().map(String::as_str) {
        Some("default" | "limits") => 1,
        Some("services") if segments.len() >= 4 && segments[2] == "operations" => 4,
        Some("services") => 2,
        _ => 0,
    }
    .min(segments.len());
    let (table, field) = segments.split_at(table);
    let field = (!field.is_empty()).then(|| key_path(field));
    (key_path(table), field)
}

fn too_large(len: usize) -> RegistryConfigError {
    RegistryConfigError::new(
        "",
        None,
        format!("the document is {len} bytes; at most {MAX_DOCUMENT_BYTES} (1 MiB) are accepted"),
    )
}

fn check_size(document: &str) -> Result<(), RegistryConfigError> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(too_large(document.len()));
    }
    Ok(())
}

/// `1`-based line and column (in characters) of byte `offset` of `input`.
fn line_column(input: &str, offset: usize) -> (usize, usize) {
    let before = &input.as_bytes()[..offset.min(input.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    // Count characters, not bytes: skip UTF-8 continuation bytes.
    let column = before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count()
        + 1;
    (line, column)
}

fn toml_message(e: &toml::de::Error, input: &str) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let (line, column) = line_column(input, span.start);
            format!("{message} at line {line}, column {column}")
        }
        None => message.to_string(),
    }
}

/// Which syntax a document is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Toml,
}

impl Format {
    /// JSON when the first non-space character is `{`, TOML otherwise.
    fn sniff(document: &str) -> Format {
        match document.trim_start().starts_with('{') {
            true => Format::Json,
            false => Format::Toml,
        }
    }

    fn parse(self, document: &str) -> Result<RegistryConfig, RegistryConfigError> {
        match self {
            Format::Json => RegistryConfig::from_json(document),
            Format::Toml => RegistryConfig::from_toml(document),
        }
    }
}

fn read_file(path: &Path) -> Result<String, RegistryConfigError> {
    let failed = |e: &dyn fmt::Display| {
        RegistryConfigError::new("", None, format!("cannot read {}: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(|e| failed(&e))?;
    if let Ok(meta) = file.metadata() {
        if meta.len() > MAX_DOCUMENT_BYTES as u64 {
            return Err(too_large(usize::try_from(meta.len()).unwrap_or(usize::MAX)));
        }
    }
    // Bounded even if the file grows while it is read.
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(&e))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(too_large(bytes.len()));
    }
    String::from_utf8(bytes).map_err(|_| failed(&"the file is not UTF-8"))
}

// ===== loading and writing documents =====

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl RegistryConfig {
    /// Reads a JSON document. See the [module docs](crate::document) for the format.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_circuit_breaker::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_json(r#"{ "default": { "recovery_timeout": "10s" } }"#)?;
    /// assert_eq!(config.default.recovery_timeout(), Duration::from_secs(10));
    /// # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`RegistryConfigError`] naming the table and field, for a syntax error (then
    /// the key is empty and the message gives line and column), an unknown or repeated
    /// field, a wrong value, a broken rule, or a document over the limits.
    pub fn from_json(document: &str) -> Result<Self, RegistryConfigError> {
        check_size(document)?;
        let mut de = serde_json::Deserializer::from_str(document);
        let raw: RawRegistry = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            // A syntax error belongs to the document, as in TOML, whose parser reads it
            // all before any value: no key, and the message gives line and column.
            let (key, field) = match e.inner().classify() {
                Category::Syntax | Category::Eof | Category::Io => (String::new(), None),
                Category::Data => locate(e.path()),
            };
            RegistryConfigError::new(key, field, e.inner().to_string())
        })?;
        de.end()
            .map_err(|e| RegistryConfigError::new("", None, e.to_string()))?;
        raw.validate()
    }

    /// Reads a TOML document. See the [module docs](crate::document) for the format.
    ///
    /// ```
    /// use tower_circuit_breaker::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_toml("[services.cognito]\nfailure_threshold = 2\n")?;
    /// assert_eq!(config.services["cognito"].all.failure_threshold, Some(2));
    /// # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json).
    pub fn from_toml(document: &str) -> Result<Self, RegistryConfigError> {
        check_size(document)?;
        let de = toml::Deserializer::parse(document)
            .map_err(|e| RegistryConfigError::new("", None, toml_message(&e, document)))?;
        let raw: RawRegistry = serde_path_to_error::deserialize(de).map_err(|e| {
            let (key, field) = locate(e.path());
            RegistryConfigError::new(key, field, toml_message(e.inner(), document))
        })?;
        raw.validate()
    }

    /// Reads a document from a file: JSON if its name ends in `.json`, TOML if in
    /// `.toml`, otherwise JSON when its first non-space character is `{` and TOML when not.
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json), or when the file cannot be read (then the key
    /// is empty).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, RegistryConfigError> {
        let path = path.as_ref();
        let document = read_file(path)?;
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match extension.as_deref() {
            Some("json") => Format::Json,
            Some("toml") => Format::Toml,
            _ => Format::sniff(&document),
        };
        format.parse(&document)
    }

    /// Reads a document from the environment variable `name`, whose content is the
    /// document: JSON when its first non-space character is `{`, TOML when not.
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json), or when the variable is not set or not UTF-8
    /// (then the key is empty).
    pub fn from_env(name: &str) -> Result<Self, RegistryConfigError> {
        let value = std::env::var_os(name).ok_or_else(|| {
            RegistryConfigError::new("", None, format!("environment variable {name} is not set"))
        })?;
        let document = value.into_string().map_err(|_| {
            RegistryConfigError::new(
                "",
                None,
                format!("environment variable {name} is not UTF-8"),
            )
        })?;
        Format::sniff(&document).parse(&document)
    }

    /// Writes the configuration as pretty-printed JSON, which
    /// [`from_json`](Self::from_json) reads back.
    ///
    /// # Errors
    ///
    /// None in practice; a serializer error would be returned with an empty key.
    pub fn to_json(&self) -> Result<String, RegistryConfigError> {
        serde_json::to_string_pretty(self)
            .map_err(|e| RegistryConfigError::new("", None, e.to_string()))
    }

    /// Writes the configuration as TOML, which [`from_toml`](Self::from_toml) reads back:
    /// a `[default]` table with every field, then a table per service and per operation.
    ///
    /// ```
    /// use tower_circuit_breaker::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_toml(r#"
    ///     [services.dynamodb.operations.storeUserMessage]
    ///     recovery_timeout = "90s"
    /// "#)?;
    /// let toml = config.to_toml()?;
    /// assert!(toml.contains("[services.dynamodb.operations.storeUserMessage]\nrecovery_timeout = \"90s\"\n"));
    /// assert_eq!(RegistryConfig::from_toml(&toml)?, config);
    /// # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// None in practice; the signature matches [`to_json`](Self::to_json).
    pub fn to_toml(&self) -> Result<String, RegistryConfigError> {
        let mut out = String::new();
        write_toml_table(&mut out, &["default"], &full_patch(&self.default));
        for (service, overrides) in &self.services {
            write_toml_table(&mut out, &["services", service], &overrides.all);
            for (operation, patch) in &overrides.operations {
                write_toml_table(
                    &mut out,
                    &["services", service, "operations", operation],
                    patch,
                );
            }
        }
        if self.limits != RegistryLimits::default() {
            let l = self.limits;
            out.push_str(&format!(
                "\n[limits]\ncapacity = {}\nmax_name_length = {}\nidle_timeout = {}\n",
                l.capacity(),
                l.max_name_length(),
                quote(&format_duration(l.idle_timeout()))
            ));
        }
        Ok(out)
    }
}

/// A TOML float: `{:?}` always has a `.` or an exponent, as TOML wants.
fn toml_float(f: f64) -> String {
    if f.is_nan() {
        "nan".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{f:?}")
    }
}

fn write_toml_table(out: &mut String, header: &[&str], patch: &ConfigPatch) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push('[');
    out.push_str(&key_path(header));
    out.push_str("]\n");
    for (name, value) in entries(patch) {
        out.push_str(name);
        out.push_str(" = ");
        match value {
            FieldValue::Count(n) => out.push_str(&n.to_string()),
            FieldValue::Duration(d) => out.push_str(&quote(&format_duration(d))),
            FieldValue::Rate(r) => out.push_str(&toml_float(r)),
            FieldValue::Flag(b) => out.push_str(if b { "true" } else { "false" }),
            FieldValue::Backoff(b) => out.push_str(&format!(
                "{{ multiplier = {}, max = {}, jitter = {} }}",
                toml_float(b.multiplier),
                quote(&format_duration(b.max)),
                toml_float(b.jitter)
            )),
        }
        out.push('\n');
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl CircuitBreakerRegistry {
    /// Reads a JSON document ([`RegistryConfig::from_json`]) and applies it
    /// ([`apply_config`](Self::apply_config)): live circuits take the new thresholds and
    /// keep their state and counts. A refused document changes nothing.
    ///
    /// ```
    /// use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry};
    ///
    /// let registry = CircuitBreakerRegistry::new();
    /// let circuit = registry.circuit("dynamodb", "storeUserMessage", &CircuitBreakerConfig::dynamodb());
    /// registry.apply_json(r#"{ "services": { "dynamodb": { "failure_threshold": 2 } } }"#)?;
    /// assert_eq!(circuit.config().failure_threshold(), 2);
    ///
    /// let err = registry.apply_json(r#"{ "services": { "dynamodb": { "failure_threshold": 0 } } }"#).unwrap_err();
    /// assert_eq!(err.field(), Some("failure_threshold"));
    /// assert_eq!(circuit.config().failure_threshold(), 2);
    /// # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RegistryConfig::from_json`] and [`apply_config`](Self::apply_config).
    pub fn apply_json(&self, document: &str) -> Result<(), RegistryConfigError> {
        self.apply_config(RegistryConfig::from_json(document)?)
    }

    /// Reads a TOML document ([`RegistryConfig::from_toml`]) and applies it, as
    /// [`apply_json`](Self::apply_json) does.
    ///
    /// # Errors
    ///
    /// As [`RegistryConfig::from_toml`] and [`apply_config`](Self::apply_config).
    pub fn apply_toml(&self, document: &str) -> Result<(), RegistryConfigError> {
        self.apply_config(RegistryConfig::from_toml(document)?)
    }

    /// Reads a document from a file ([`RegistryConfig::from_file`]) and applies it, as
    /// [`apply_json`](Self::apply_json) does.
    ///
    /// # Errors
    ///
    /// As [`RegistryConfig::from_file`] and [`apply_config`](Self::apply_config).
    pub fn apply_file(&self, path: impl AsRef<Path>) -> Result<(), RegistryConfigError> {
        self.apply_config(RegistryConfig::from_file(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn rfc3339_known_dates() {
        for (t, want) in [
            (at(0, 0), "1970-01-01T00:00:00.000Z"),
            (at(1_795_774_451, 123), "2026-11-27T10:14:11.123Z"),
            (at(951_782_400, 0), "2000-02-29T00:00:00.000Z"),
            (at(951_782_399, 999), "2000-02-28T23:59:59.999Z"),
            (at(1_709_251_199, 0), "2024-02-29T23:59:59.000Z"),
            (at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z"),
            (at(4_107_542_399, 0), "2100-02-28T23:59:59.000Z"),
            (at(253_402_300_799, 7), "9999-12-31T23:59:59.007Z"),
            (
                UNIX_EPOCH + Duration::from_nanos(1_999_999),
                "1970-01-01T00:00:00.001Z",
            ),
            (
                UNIX_EPOCH - Duration::from_millis(1),
                "1969-12-31T23:59:59.999Z",
            ),
            (
                UNIX_EPOCH - Duration::from_nanos(1),
                "1969-12-31T23:59:59.999Z",
            ),
            (
                UNIX_EPOCH - Duration::from_secs(2_203_891_200),
                "1900-03-01T00:00:00.000Z",
            ),
        ] {
            assert_eq!(format_rfc3339(t), want);
        }
    }

    #[test]
    fn civil_from_days_round_trips_every_day_of_four_centuries() {
        // Consecutive days: the date advances by exactly one calendar day each time.
        let mut prev = civil_from_days(-146_097 - 1);
        for days in -146_097..146_097 * 2 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            let leap = py % 4 == 0 && (py % 100 != 0 || py % 400 == 0);
            let month_len = match pm {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let next_day = (y, m, d) == (py, pm, pd + 1) && pd < month_len;
            let next_month = (y, m, d) == (py, pm + 1, 1) && pd == month_len;
            let next_year = (y, m, d) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(
                next_day || next_month || next_year,
                "{prev:?} -> {:?}",
                (y, m, d)
            );
            prev = (y, m, d);
        }
    }

    #[test]
    fn locate_splits_table_and_field() {
        let raw =
            r#"{ "services": { "a.b": { "operations": { "x": { "backoff": { "max": 5 } } } } } }"#;
        let mut de = serde_json::Deserializer::from_str(raw);
        let err = serde_path_to_error::deserialize::<_, RawRegistry>(&mut de).unwrap_err();
        assert_eq!(
            locate(err.path()),
            (
                r#"services."a.b".operations.x"#.to_string(),
                Some("backoff.max".to_string())
            )
        );
    }

    #[test]
    fn half_open_max_wait_reads_writes_and_stays_derived_when_left_out() {
        let config = RegistryConfig::from_json(
            r#"{ "default": { "preset": "dynamodb", "half_open_max_wait": "45s" },
                 "services": { "s": { "operations": { "o": { "half_open_max_wait": "2m" } } } } }"#,
        )
        .unwrap();
        assert_eq!(config.default.half_open_max_wait(), Duration::from_secs(45));
        let patch = &config.services["s"].operations["o"];
        assert_eq!(patch.half_open_max_wait, Some(Duration::from_secs(120)));
        let json = config.to_json().unwrap();
        assert!(json.contains(r#""half_open_max_wait": "45s""#), "{json}");
        assert_eq!(RegistryConfig::from_json(&json).unwrap(), config);
        let toml = config.to_toml().unwrap();
        assert_eq!(RegistryConfig::from_toml(&toml).unwrap(), config);

        // Left out: derived, and written out as left out, so it keeps following.
        let derived =
            RegistryConfig::from_json(r#"{ "default": { "recovery_timeout": "7s" } }"#).unwrap();
        assert_eq!(derived.default.half_open_max_wait(), Duration::from_secs(7));
        assert!(!derived.to_json().unwrap().contains("half_open_max_wait"));

        let err = RegistryConfig::from_json(r#"{ "default": { "half_open_max_wait": "0s" } }"#)
            .unwrap_err();
        assert_eq!(
            (err.key(), err.field()),
            ("default", Some("half_open_max_wait"))
        );
    }

    #[test]
    fn toml_writer_quotes_keys() {
        let mut config = RegistryConfig::default();
        config.services.insert(
            "api.gw \"x\"\n".to_string(),
            ServiceOverrides {
                all: ConfigPatch {
                    failure_rate_threshold: Some(0.5),
                    ..ConfigPatch::default()
                },
                operations: BTreeMap::from([("é".to_string(), ConfigPatch::default())]),
            },
        );
        let toml = config.to_toml().unwrap();
        assert!(toml.contains(r#"[services."api.gw \"x\"\n"]"#), "{toml}");
        assert_eq!(RegistryConfig::from_toml(&toml).unwrap(), config);
    }
}
