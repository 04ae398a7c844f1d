//! Call traces: what a service's calls did, one JSON line per call (feature `trace`).
//!
//! A trace is the input of a [replay](crate::replay): it says when each call to each
//! dependency started, how long it took and how it ended, and a replay runs it through
//! circuits with candidate configurations to see what each would have done.
//!
//! # Schema
//!
//! UTF-8 text, one JSON object per line (`\n` or `\r\n`), blank lines skipped:
//!
//! ```text
//! {"t":1764800000123,"d":48210,"o":"ok","svc":"dynamodb","op":"storeUserMessage"}
//! {"t":1764800000130,"d":2000000,"o":"fail","svc":"cognito","op":"jwks","inc":"jwks-outage"}
//! ```
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `t` | integer ≥ 0 | when the call started, milliseconds since the Unix epoch (UTC) |
//! | `d` | integer ≥ 0 | how long it took, microseconds |
//! | `o` | `"ok"` \| `"fail"` \| `"ignored"` | how it ended, by the recorder's classifier |
//! | `svc` | string | the service (first half of the circuit key) |
//! | `op` | string | the operation (second half of the key) |
//! | `inc` | string, optional | the label of the incident the call falls in |
//!
//! Other keys are ignored (room for later versions). Slow is not recorded: a replay
//! derives it from `d` and each configuration's `expected_response_time`. Incidents are
//! the calls sharing an `inc` label (per key); a trace without labels has its incidents
//! inferred by the replay (see [`crate::replay`]).
//!
//! # Order
//!
//! Records may be written in completion order (a [`Recorder`] writes a call when it ends),
//! so `t` is not sorted: a call that started earlier may come later by up to its
//! duration. A replay re-sorts within a bounded reorder window (by default 60 s of start
//! time, see [`ReplayOptions::reorder_window`](crate::replay::ReplayOptions::reorder_window));
//! a record that starts earlier than the window allows is counted as late and left out.
//!
//! # Reading, writing, recording, converting
//!
//! * [`TraceReader`]: a streaming reader with bounded memory on hostile input (line limit,
//!   typed errors with line numbers).
//! * [`TraceWriter`]: one record per line.
//! * [`Recorder`] and [`RecorderLayer`]: record live calls, never blocking or failing them.
//! * [`insights_csv`]: a CloudWatch Logs Insights CSV export of a Lambda's durations and
//!   errors, as a trace.

mod bounded;
mod insights;
mod insights_parse;
mod layer;
mod reader;
mod record;
mod recorder;
mod writer;

pub use insights::{InsightsCsv, InsightsError, insights_csv};
pub use layer::{RecorderFuture, RecorderLayer, RecorderService, rejections_ignored};
pub use reader::{DEFAULT_MAX_LINE, TraceError, TraceReader};
pub use record::{TraceOutcome, TraceRecord};
pub use recorder::{
    CallStart, MAX_KEY_NAME, MAX_KEYS, RecordKey, Recorder, RecorderHandle, RecorderStats,
    WRITER_PERIOD,
};
pub use writer::TraceWriter;
