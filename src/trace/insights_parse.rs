//! The CSV reading behind [`InsightsCsv`](super::InsightsCsv): rows, quoting, fields.

use super::TraceRecord;
use super::insights::{InsightsCsv, InsightsError};
use std::io::BufRead;

/// Where the reader is: before the header, or reading rows with the columns found.
#[derive(Debug, Default)]
pub(crate) struct State {
    line: u64,
    done: bool,
}

impl<R: BufRead> InsightsCsv<R> {
    pub(super) fn next_row(&mut self) -> Option<Result<TraceRecord, InsightsError>> {
        let _ = (&self.state.line, self.state.done);
        todo!()
    }
}
