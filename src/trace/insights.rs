//! A CloudWatch Logs Insights CSV export as a trace: [`insights_csv`].

use super::TraceRecord;
use std::fmt;
use std::io::{self, BufRead};

/// What is wrong with a CSV export. Every variant carries the 1-based line number.
#[derive(Debug)]
#[non_exhaustive]
pub enum InsightsError {
    /// Reading failed; the iteration ends.
    Io {
        /// The line being read.
        line: u64,
        /// The reader's error.
        source: io::Error,
    },
    /// The header has no column the converter needs; the iteration ends.
    MissingColumn {
        /// The header line (1, or 0 for an empty input).
        line: u64,
        /// The column, e.g. `@timestamp`.
        column: &'static str,
    },
    /// A line (or a quoted field running over lines) is longer than the limit; skipped.
    LineTooLong {
        /// The line it started on.
        line: u64,
        /// The limit in bytes.
        limit: usize,
    },
    /// A field could not be read (a bad time or duration, an unknown status, a wrong
    /// number of fields); the row is skipped.
    BadRow {
        /// The line.
        line: u64,
        /// The column at fault.
        column: String,
        /// What is wrong (the value is not quoted back).
        message: &'static str,
    },
}

impl InsightsError {
    /// The 1-based line number the error is about.
    pub fn line(&self) -> u64 {
        match self {
            InsightsError::Io { line, .. }
            | InsightsError::MissingColumn { line, .. }
            | InsightsError::LineTooLong { line, .. }
            | InsightsError::BadRow { line, .. } => *line,
        }
    }
}

impl fmt::Display for InsightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsightsError::Io { line, source } => {
                write!(f, "CSV line {line}: read error: {source}")
            }
            InsightsError::MissingColumn { line, column } => {
                write!(f, "CSV line {line}: the header has no `{column}` column")
            }
            InsightsError::LineTooLong { line, limit } => {
                write!(f, "CSV line {line}: a row longer than {limit} bytes")
            }
            InsightsError::BadRow {
                line,
                column,
                message,
            } => write!(f, "CSV line {line}, column `{column}`: {message}"),
        }
    }
}

impl std::error::Error for InsightsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InsightsError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads a CloudWatch Logs Insights CSV export as trace records of one key.
///
/// See [`insights_csv`] for the column mapping.
#[derive(Debug)]
pub struct InsightsCsv<R: BufRead> {
    pub(super) inner: R,
    pub(super) service: String,
    pub(super) operation: String,
    pub(super) max_row: usize,
    pub(super) state: super::insights_parse::State,
}

/// Converts a CloudWatch Logs Insights CSV export (results → *Export* → *Download table
/// (CSV)*) of a Lambda's invocations into trace records of the key
/// `service`/`operation`.
///
/// # Columns
///
/// The first line is the header; columns are found by name (any order, extra columns
/// ignored):
///
/// | column | required | becomes |
/// |---|---|---|
/// | `@timestamp` | yes | `t`: `YYYY-MM-DD HH:MM:SS[.fff]` (UTC, as Insights exports it; a `T` separator and a trailing `Z` are accepted) |
/// | `@duration` | yes | `d`: milliseconds with a fraction (a REPORT line's duration) |
/// | `error`, `@error`, `status` or `outcome` | no | `o`: see below |
/// | `@message` | no | `o` when no status column: a REPORT line containing `Status: error` or `Status: timeout` is a failure |
/// | `incident` | no | `inc` when not empty |
///
/// A status value (case-insensitive) of `ok`, `success`, `succeeded`, `false`, `0` or empty
/// is `ok`; `fail`, `failed`, `failure`, `error`, `timeout`, `true`, `1` is `fail`;
/// `ignored` is `ignored`. Without a status column or `@message`, every call is `ok`.
///
/// A typical query:
///
/// ```text
/// filter @type = "REPORT"
/// | parse @message /Status: (?<status>\w+)/
/// | fields @timestamp, @duration, status
/// ```
///
/// Rows are returned in file order (Insights sorts by `@timestamp` descending by
/// default; a replay re-sorts within its reorder window, so sort ascending in the query
/// or sort the records for exports longer than the window).
///
/// ```
/// use tower_circuit_breaker::trace::{TraceOutcome, insights_csv};
///
/// let csv = "@timestamp,@duration,status\n2026-11-27 10:14:11.123,812.45,ok\n2026-11-27 10:14:12.000,3000,timeout\n";
/// let records: Vec<_> = insights_csv(csv.as_bytes(), "chat-lambda", "invoke")
///     .collect::<Result<_, _>>()
///     .unwrap();
/// assert_eq!(records[0].start_ms, 1_795_774_451_123);
/// assert_eq!(records[0].duration_us, 812_450);
/// assert_eq!(records[1].outcome, TraceOutcome::Fail);
/// ```
///
/// # Hostile input
///
/// A row is kept only up to 8 KiB (a longer one is skipped with
/// [`InsightsError::LineTooLong`]); a bad row is an error with its line number and the
/// iteration goes on; a missing required column ends it.
pub fn insights_csv<R: BufRead>(reader: R, service: &str, operation: &str) -> InsightsCsv<R> {
    InsightsCsv {
        inner: reader,
        service: service.to_owned(),
        operation: operation.to_owned(),
        max_row: 8 * 1024,
        state: super::insights_parse::State::default(),
    }
}

impl<R: BufRead> Iterator for InsightsCsv<R> {
    type Item = Result<TraceRecord, InsightsError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
    }
}
