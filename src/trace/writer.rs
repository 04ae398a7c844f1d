//! [`TraceWriter`]: records out as JSON lines.

use super::TraceRecord;
use std::io::{self, Write};

/// Writes [`TraceRecord`]s as JSON lines, one call per line, in the order given.
///
/// Wrap a file in a [`std::io::BufWriter`]: each record is one `write_all` of its line.
///
/// ```
/// use tower_circuit_breaker::trace::{TraceOutcome, TraceRecord, TraceWriter};
///
/// let mut writer = TraceWriter::new(Vec::new());
/// writer.write(&TraceRecord::new(1_000, 250, TraceOutcome::Ok, "cognito", "jwks")).unwrap();
/// let text = String::from_utf8(writer.into_inner()).unwrap();
/// assert_eq!(text, "{\"t\":1000,\"d\":250,\"o\":\"ok\",\"svc\":\"cognito\",\"op\":\"jwks\"}\n");
/// ```
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    inner: W,
    line: Vec<u8>,
    written: u64,
}

impl<W: Write> TraceWriter<W> {
    /// A writer appending to `inner`.
    pub fn new(inner: W) -> Self {
        TraceWriter {
            inner,
            line: Vec::with_capacity(128),
            written: 0,
        }
    }

    /// Writes one record as one line.
    ///
    /// # Errors
    ///
    /// The underlying writer's error.
    pub fn write(&mut self, record: &TraceRecord) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).map_err(io::Error::other)?;
        self.line.push(b'\n');
        self.inner.write_all(&self.line)?;
        self.written += 1;
        Ok(())
    }

    /// How many records were written.
    pub fn records_written(&self) -> u64 {
        self.written
    }

    /// Flushes the underlying writer.
    ///
    /// # Errors
    ///
    /// The underlying writer's error.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// The underlying writer (not flushed).
    pub fn into_inner(self) -> W {
        self.inner
    }
}
