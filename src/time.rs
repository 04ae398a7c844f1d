//! Wall-clock times as RFC 3339 text (`2026-11-27T10:14:11.123Z`), for the stats' serde
//! impls (feature `serde`).
//!
//! Part of the core: it knows nothing of documents or registries.

use serde::Serializer;
use std::time::{SystemTime, UNIX_EPOCH};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
}
