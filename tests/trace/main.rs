#![cfg(feature = "trace")]
//! Traces (feature `trace`): the schema's reader and writer on good and hostile input,
//! the recorder layer (never blocking, dropping and counting when full), and the
//! CloudWatch Logs Insights CSV converter on good and hostile input.

mod insights;
mod reader;
mod recorder;
