//! [`TraceReader`]: JSON lines in, records out, with bounded memory on any input.

use super::TraceRecord;
use std::fmt;
use std::io::{self, BufRead};

/// The longest line a [`TraceReader`] accepts by default: 4 KiB, some 40 times a typical
/// record.
pub const DEFAULT_MAX_LINE: usize = 4 * 1024;

/// What went wrong with one line of a trace. Every variant carries the 1-based line number.
#[derive(Debug)]
#[non_exhaustive]
pub enum TraceError {
    /// Reading failed; the reader stops after this.
    Io {
        /// The line being read.
        line: u64,
        /// The reader's error.
        source: io::Error,
    },
    /// The line is longer than the reader's limit; it was skipped without being kept.
    LineTooLong {
        /// The line.
        line: u64,
        /// The limit in bytes.
        limit: usize,
    },
    /// The line is not a record of the schema (bad JSON, a missing or mistyped field, a
    /// negative or fractional time, an unknown outcome).
    Malformed {
        /// The line.
        line: u64,
        /// What the JSON parser said (no part of the line's text beyond its position).
        message: String,
    },
}

impl TraceError {
    /// The 1-based number of the line the error is about.
    pub fn line(&self) -> u64 {
        match self {
            TraceError::Io { line, .. }
            | TraceError::LineTooLong { line, .. }
            | TraceError::Malformed { line, .. } => *line,
        }
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Io { line, source } => write!(f, "trace line {line}: read error: {source}"),
            TraceError::LineTooLong { line, limit } => {
                write!(f, "trace line {line}: longer than {limit} bytes")
            }
            TraceError::Malformed { line, message } => write!(f, "trace line {line}: {message}"),
        }
    }
}

impl std::error::Error for TraceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TraceError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads a trace, one [`TraceRecord`] per line, as an iterator of results.
///
/// Memory is bounded whatever the input: a line is kept only up to the limit
/// ([`DEFAULT_MAX_LINE`], or [`max_line`](Self::max_line)); a longer one is read past and
/// reported as [`TraceError::LineTooLong`]. A bad line is an `Err` with its line number
/// and the reader goes on with the next line; blank lines are skipped; `\r\n` endings are
/// accepted. An I/O error ends the iteration.
///
/// ```
/// use tower_circuit_breaker::trace::{TraceError, TraceReader};
///
/// let text = "{\"t\":5,\"d\":10,\"o\":\"ok\",\"svc\":\"s\",\"op\":\"o\"}\nnot json\n";
/// let mut reader = TraceReader::new(text.as_bytes());
/// assert_eq!(reader.next().unwrap().unwrap().start_ms, 5);
/// assert!(matches!(reader.next(), Some(Err(TraceError::Malformed { line: 2, .. }))));
/// assert!(reader.next().is_none());
/// ```
#[derive(Debug)]
pub struct TraceReader<R: BufRead> {
    inner: R,
    line: Vec<u8>,
    line_no: u64,
    max_line: usize,
    done: bool,
}

impl<R: BufRead> TraceReader<R> {
    /// A reader with the default line limit.
    pub fn new(inner: R) -> Self {
        TraceReader {
            inner,
            line: Vec::new(),
            line_no: 0,
            max_line: DEFAULT_MAX_LINE,
            done: false,
        }
    }

    /// Sets the longest line accepted, in bytes (at least 64).
    #[must_use]
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes.max(64);
        self
    }

    /// The number of the last line read (1-based; 0 before the first).
    pub fn line_number(&self) -> u64 {
        self.line_no
    }

    /// Reads the next line into `self.line`. `Ok(None)` at the end; `Ok(Some(false))`
    /// when the line was too long (and skipped).
    fn read_line(&mut self) -> io::Result<Option<bool>> {
        super::bounded::read_bounded(&mut self.inner, &mut self.line, self.max_line, |b| {
            b == b'\n'
        })
    }
}

impl<R: BufRead> Iterator for TraceReader<R> {
    type Item = Result<TraceRecord, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let read = self.read_line();
            self.line_no += 1;
            let line = self.line_no;
            match read {
                Err(source) => {
                    self.done = true;
                    return Some(Err(TraceError::Io { line, source }));
                }
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Ok(Some(false)) => {
                    return Some(Err(TraceError::LineTooLong {
                        line,
                        limit: self.max_line,
                    }));
                }
                Ok(Some(true)) => {}
            }
            let text = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(serde_json::from_slice::<TraceRecord>(text).map_err(|e| {
                TraceError::Malformed {
                    line,
                    message: format!("{} at column {}", classify(&e), e.column()),
                }
            }));
        }
    }
}

/// The parser's complaint without quoting the input (a value may be anything).
fn classify(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => "not valid JSON".to_owned(),
        Category::Data => {
            // serde's data messages name the field and the expected type, and quote at
            // most the field name or variant: bounded by the line limit.
            let msg = e.to_string();
            match msg.rfind(" at line ") {
                Some(at) => msg[..at].to_owned(),
                None => msg,
            }
        }
        Category::Io => "read error".to_owned(),
    }
}
