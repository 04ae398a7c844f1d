//! The CSV reading behind [`InsightsCsv`](super::InsightsCsv): rows (quoted fields may
//! run over lines), fields, times and durations.

use super::insights::{InsightsCsv, InsightsError};
use super::{TraceOutcome, TraceRecord};
use std::io::{self, BufRead};

/// Where the needed columns are.
#[derive(Debug, Clone, Copy)]
struct Columns {
    timestamp: usize,
    duration: usize,
    status: Option<usize>,
    message: Option<usize>,
    incident: Option<usize>,
}

impl Columns {
    /// The fields a row needs at least.
    fn needed(&self) -> usize {
        [
            Some(self.timestamp),
            Some(self.duration),
            self.status,
            self.message,
            self.incident,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
            + 1
    }
}

/// Where the reader is: the line count, the columns once the header is read.
#[derive(Debug, Default)]
pub(crate) struct State {
    line: u64,
    done: bool,
    columns: Option<Columns>,
    row: Vec<u8>,
}

/// One row's outcome from the reader: its first line, and whether it was kept whole.
enum Row {
    End,
    Kept(u64),
    TooLong(u64),
}

impl<R: BufRead> InsightsCsv<R> {
    pub(super) fn next_row(&mut self) -> Option<Result<TraceRecord, InsightsError>> {
        loop {
            if self.state.done {
                return None;
            }
            let row = match self.read_row() {
                Ok(row) => row,
                Err(source) => {
                    self.state.done = true;
                    return Some(Err(InsightsError::Io {
                        line: self.state.line,
                        source,
                    }));
                }
            };
            let line = match row {
                Row::End => {
                    self.state.done = true;
                    if self.state.columns.is_none() {
                        return Some(Err(InsightsError::MissingColumn {
                            line: 0,
                            column: "@timestamp",
                        }));
                    }
                    return None;
                }
                Row::TooLong(line) => {
                    return Some(Err(InsightsError::LineTooLong {
                        line,
                        limit: self.max_row,
                    }));
                }
                Row::Kept(line) => line,
            };
            let text = String::from_utf8_lossy(&self.state.row).into_owned();
            if text.trim().is_empty() {
                continue;
            }
            let fields = split(&text);
            let Some(columns) = self.state.columns else {
                match header(&fields, line) {
                    Ok(c) => {
                        self.state.columns = Some(c);
                        continue;
                    }
                    Err(e) => {
                        self.state.done = true;
                        return Some(Err(e));
                    }
                }
            };
            return Some(self.record(&fields, columns, line));
        }
    }

    fn record(
        &self,
        fields: &[String],
        c: Columns,
        line: u64,
    ) -> Result<TraceRecord, InsightsError> {
        let bad = |column: &str, message| InsightsError::BadRow {
            line,
            column: column.to_owned(),
            message,
        };
        if fields.len() < c.needed() {
            return Err(bad("(row)", "fewer fields than the header needs"));
        }
        let start_ms = parse_timestamp(fields[c.timestamp].trim())
            .ok_or_else(|| bad("@timestamp", "not a time YYYY-MM-DD HH:MM:SS[.fff]"))?;
        let duration_us = parse_ms_as_us(fields[c.duration].trim())
            .ok_or_else(|| bad("@duration", "not a duration in milliseconds"))?;
        let outcome = match (c.status, c.message) {
            (Some(i), _) => {
                parse_status(fields[i].trim()).ok_or_else(|| bad("status", "not a known status"))?
            }
            (None, Some(i)) => {
                let m = &fields[i];
                if m.contains("Status: error") || m.contains("Status: timeout") {
                    TraceOutcome::Fail
                } else {
                    TraceOutcome::Ok
                }
            }
            (None, None) => TraceOutcome::Ok,
        };
        let mut record = TraceRecord::new(
            start_ms,
            duration_us,
            outcome,
            self.service.clone(),
            self.operation.clone(),
        );
        if let Some(i) = c.incident {
            let label = fields[i].trim();
            if !label.is_empty() {
                record.incident = Some(label.to_owned());
            }
        }
        Ok(record)
    }

    /// Reads one row into `state.row`: up to a newline outside quotes, kept up to the
    /// limit (a longer row is read past, not kept).
    fn read_row(&mut self) -> io::Result<Row> {
        let state = &mut self.state;
        let first = state.line + 1;
        let mut quoted = false;
        let mut newlines = 0;
        let read =
            super::bounded::read_bounded(&mut self.inner, &mut state.row, self.max_row, |b| {
                match b {
                    b'"' => quoted = !quoted,
                    b'\n' if !quoted => return true,
                    b'\n' => newlines += 1,
                    _ => {}
                }
                false
            })?;
        state.line += newlines + 1;
        Ok(match read {
            None => Row::End,
            Some(true) => Row::Kept(first),
            Some(false) => Row::TooLong(first),
        })
    }
}

/// The header's columns; the required ones must be there.
fn header(fields: &[String], line: u64) -> Result<Columns, InsightsError> {
    let find = |names: &[&str]| {
        fields.iter().position(|f| {
            let f = f.trim().trim_start_matches('\u{feff}');
            names.iter().any(|n| f.eq_ignore_ascii_case(n))
        })
    };
    let missing = |column| InsightsError::MissingColumn { line, column };
    Ok(Columns {
        timestamp: find(&["@timestamp"]).ok_or_else(|| missing("@timestamp"))?,
        duration: find(&["@duration"]).ok_or_else(|| missing("@duration"))?,
        status: find(&["error", "@error", "status", "outcome"]),
        message: find(&["@message"]),
        incident: find(&["incident"]),
    })
}

/// Splits a CSV row: commas outside quotes; `""` inside quotes is one `"`.
fn split(row: &str) -> Vec<String> {
    let row = row.strip_suffix('\r').unwrap_or(row);
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = row.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(ch),
        }
    }
    fields.push(field);
    fields
}

/// `YYYY-MM-DD HH:MM:SS[.fff…]` (or with `T`, and a trailing `Z`), UTC, to ms since
/// the epoch. Years 1970 to 9999.
fn parse_timestamp(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b[10], b' ' | b'T') {
        return None;
    }
    let num = |from: usize, len: usize, sep: Option<u8>| -> Option<u64> {
        let digits = &b[from..from + len];
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if let Some(sep) = sep {
            if b.get(from + len) != Some(&sep) {
                return None;
            }
        }
        Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
    };
    let year = num(0, 4, Some(b'-'))?;
    let month = num(5, 2, Some(b'-'))?;
    let day = num(8, 2, None)?;
    let hour = num(11, 2, Some(b':'))?;
    let minute = num(14, 2, Some(b':'))?;
    let second = num(17, 2, None)?;
    let mut millis = 0;
    if b.len() > 19 {
        let frac = &b[20..];
        if b[19] != b'.'
            || frac.is_empty()
            || frac.len() > 9
            || !frac.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        for i in 0..3 {
            millis = millis * 10 + frac.get(i).map_or(0, |d| u64::from(d - b'0'));
        }
    }
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year as i64, month as u32, day as u32) as u64;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1_000 + millis)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the date, proleptic Gregorian (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds with an optional fraction (`123`, `123.45`) to microseconds, truncated
/// below a microsecond; at most 10¹² ms (some 31 years).
fn parse_ms_as_us(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || whole.len() > 13 || !whole.bytes().all(|d| d.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|d| d.is_ascii_digit()) {
        return None;
    }
    let ms: u64 = whole.parse().ok()?;
    if ms > 1_000_000_000_000 {
        return None;
    }
    let fb = frac.as_bytes();
    let us = (0..3).fold(0, |n, i| {
        n * 10 + fb.get(i).map_or(0, |d| u64::from(d - b'0'))
    });
    Some(ms * 1_000 + us)
}

fn parse_status(s: &str) -> Option<TraceOutcome> {
    const OK: [&str; 6] = ["ok", "success", "succeeded", "false", "0", ""];
    const FAIL: [&str; 7] = ["fail", "failed", "failure", "error", "timeout", "true", "1"];
    if OK.iter().any(|v| s.eq_ignore_ascii_case(v)) {
        Some(TraceOutcome::Ok)
    } else if FAIL.iter().any(|v| s.eq_ignore_ascii_case(v)) {
        Some(TraceOutcome::Fail)
    } else if s.eq_ignore_ascii_case("ignored") {
        Some(TraceOutcome::Ignored)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00.000"), Some(0));
        assert_eq!(
            parse_timestamp("2026-11-27 10:14:11.123"),
            Some(1_795_774_451_123)
        );
        assert_eq!(
            parse_timestamp("2026-11-27T10:14:11.1239Z"),
            Some(1_795_774_451_123)
        );
        assert_eq!(
            parse_timestamp("2000-02-29 00:00:00"),
            Some(951_782_400_000)
        );
        for bad in [
            "2001-02-29 00:00:00",
            "2026-13-01 00:00:00",
            "2026-11-27 24:00:00",
            "2026-11-27 10:14:11.",
            "2026-11-27 10:14:11.1234567890",
            "1969-12-31 23:59:59",
            "2026-11-27",
            "2026-11-27x10:14:11",
            "+026-11-27 10:14:11",
            "٢٠٢٦-11-27 10:14:11",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_ms_as_us("12"), Some(12_000));
        assert_eq!(parse_ms_as_us("12.3456"), Some(12_345));
        assert_eq!(parse_ms_as_us("1000000000000"), Some(1_000_000_000_000_000));
        for bad in [
            "",
            ".5",
            "-1",
            "1e3",
            "10000000000000",
            "1.2.3",
            "NaN",
            " 1",
        ] {
            assert_eq!(parse_ms_as_us(bad), None, "{bad}");
        }
    }

    #[test]
    fn fields() {
        assert_eq!(
            split(r#"a,"b,c","d""e",,"#),
            vec!["a", "b,c", "d\"e", "", ""]
        );
        assert_eq!(split("x\r"), vec!["x"]);
    }
}
