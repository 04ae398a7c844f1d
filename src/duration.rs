//! Durations written as text with a unit (`"30s"`, `"500ms"`): parsing, formatting, and
//! the serde `with` module the configuration's fields use (feature `serde`).
//!
//! Part of the core: it knows nothing of documents or registries. Its public paths are
//! [`crate::document`]'s: `document::parse_duration`, `document::format_duration`,
//! `document::DurationError` and `document::duration`.

use std::fmt;
use std::time::Duration;

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
/// `#[serde(with = "tower_circuit_breaker::document::duration")]` (the public path of
/// this module).
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
pub mod string {
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

    struct DurationVisitor;

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
