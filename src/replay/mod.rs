//! Replay a trace against candidate configurations (feature `replay`).
//!
//! A [`Replay`] runs a [trace](crate::trace) through real [`Circuit`](crate::Circuit)s,
//! one per configuration per key (`service/operation`), on a simulated clock: each
//! circuit's time is set from the trace (its manual clock, see `crate::clock`), never
//! read from the machine, so the same trace and configurations give the same report,
//! byte for byte.
//!
//! # How a call is replayed
//!
//! For each record, in start order, for each configuration: the key's circuit is asked
//! to admit the call at `t`. Rejected, the call counts as a false rejection (recorded
//! `ok`), saved (recorded `fail`) or neither (`ignored`). Admitted, its completion is
//! queued at `t + d` and reported then with its recorded outcome (slow when `d` exceeds
//! the configuration's `expected_response_time`, as a live circuit would measure it).
//! Completions due at or before a call's start are reported before it is admitted (a
//! live run where a call ends on the very millisecond another starts may order them
//! either way). Time is kept in nanoseconds from the trace's milliseconds and
//! microseconds, so a circuit's transitions fall on the milliseconds a live circuit would
//! have seen.
//!
//! A key's circuits are made at its first call, as a registry makes its circuits: a
//! time window's buckets are counted from there. (A live circuit made earlier, at start-up,
//! cuts its buckets elsewhere; with a rate criterion or a minimum count that can move a
//! transition by up to one bucket's width.) Backoff jitter is seeded from that first
//! call's time, so it is the same on every run.
//!
//! # Streaming
//!
//! One pass over the trace feeds every configuration ([`Replay::feed`]); memory is flat
//! in the trace's length: the reorder buffer holds at most the reorder window's calls,
//! the completion queues at most the calls in flight, the report grows with keys, time
//! buckets with traffic, incidents and transitions, not with calls. Configurations are
//! split across worker threads ([`ReplayOptions::threads`]); each thread runs its own
//! configurations over the same batches of calls, so the result does not depend on the
//! number of threads.
//!
//! # Incidents
//!
//! When any record carries an `inc` label, the incidents are the labels: per key and
//! label, from the first labelled call's start to the last one's end. A call is "during an
//! incident" when it carries a label.
//!
//! Otherwise they are inferred per key by the [`IncidentRule`]: cut time into buckets of
//! `bucket` (10 s); a bucket is bad when it has at least `min_calls` (5) calls and its
//! failure rate (failed / calls) or its slow rate (calls longer than `slow_threshold`,
//! 1 s, / calls) is at least `failure_rate` (0.5) or `slow_rate` (0.5); a run of bad
//! buckets, merged across gaps shorter than `merge_gap` (30 s), is one incident, from the
//! first bad bucket's start to the last one's end. A call is during an incident when it
//! starts inside one.
//!
//! An open is false when it happens outside every incident of its key (strictly before
//! the start or after the end).
//!
//! # Examples
//!
//! ```
//! use tower_circuit_breaker::CircuitBreakerConfig;
//! use tower_circuit_breaker::replay::Replay;
//! use tower_circuit_breaker::trace::{TraceOutcome, TraceRecord};
//!
//! let mut replay = Replay::new(vec![
//!     ("dynamodb".to_owned(), CircuitBreakerConfig::dynamodb()),
//!     ("api".to_owned(), CircuitBreakerConfig::api_gateway_management()),
//! ]);
//! // Ten healthy calls, then an outage from t = 10 s.
//! for i in 0..40u64 {
//!     let outcome = if i < 10 { TraceOutcome::Ok } else { TraceOutcome::Fail };
//!     let record = TraceRecord::new(i * 1_000, 20_000, outcome, "dynamodb", "query");
//!     let record = if i < 10 { record } else { record.in_incident("outage") };
//!     replay.feed(&record);
//! }
//! let report = replay.finish();
//! let dynamodb = &report.configs[0].keys[0];
//! assert_eq!(dynamodb.counts.opens, 1);
//! assert_eq!(dynamodb.counts.false_opens, 0);
//! // Three failures in a row open the DynamoDB preset: the third one ends at 12.02 s.
//! assert_eq!(dynamodb.incidents[0].time_to_open_ms, Some(2_020));
//! ```

mod engine;
mod incidents;
mod report;
mod worker;

pub use report::{
    ConfigReport, Counts, Incident, IncidentResponse, KeyReport, KeyTraffic, OutcomeBucket,
    ReplayReport, TrafficBucket,
};

use crate::CircuitBreakerConfig;
use crate::trace::{TraceError, TraceReader, TraceRecord};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// How incidents are inferred from a trace without labels (see the
/// [module docs](self#incidents)).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct IncidentRule {
    /// The width of the buckets judged (default 10 s); also the report's bucket width.
    pub bucket: Duration,
    /// Calls a bucket needs to be judged (default 5).
    pub min_calls: u64,
    /// A bucket whose failure rate is at least this is bad (default 0.5).
    pub failure_rate: f64,
    /// A bucket whose slow rate is at least this is bad (default 0.5).
    pub slow_rate: f64,
    /// A call longer than this is slow, for the rule (default 1 s).
    pub slow_threshold: Duration,
    /// Bad runs separated by less than this are one incident (default 30 s).
    pub merge_gap: Duration,
}

impl Default for IncidentRule {
    fn default() -> Self {
        IncidentRule {
            bucket: Duration::from_secs(10),
            min_calls: 5,
            failure_rate: 0.5,
            slow_rate: 0.5,
            slow_threshold: Duration::from_secs(1),
            merge_gap: Duration::from_secs(30),
        }
    }
}

/// How a [`Replay`] runs.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// How far out of start order a record may come (default 60 s): records are held
    /// until the latest start seen is this much past theirs, then replayed in start
    /// order. A record starting before one already replayed is late: counted
    /// ([`ReplayReport::late_records`]) and left out. The buffer holds the calls of one
    /// window.
    pub reorder_window: Duration,
    /// Incident inference and the report's time buckets.
    pub incidents: IncidentRule,
    /// Worker threads the configurations are split across; 0 (the default): as many as
    /// the machine has cores, at most one per configuration. One runs them on the
    /// caller's thread. The report does not depend on it.
    pub threads: usize,
    /// Distinct keys replayed (default 1 000): each costs a circuit per configuration.
    /// Records of further keys are counted
    /// ([`ReplayReport::records_over_key_limit`]) and left out.
    pub max_keys: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            reorder_window: Duration::from_secs(60),
            incidents: IncidentRule::default(),
            threads: 0,
            max_keys: 1_000,
        }
    }
}

/// A streamed replay of one trace against many configurations.
///
/// [`feed`](Self::feed) it the trace's records, then [`finish`](Self::finish) it for the
/// [`ReplayReport`]. See the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use tower_circuit_breaker::CircuitBreakerConfig;
/// use tower_circuit_breaker::replay::{ReplayOptions, replay_reader};
///
/// let trace = "\
/// {\"t\":1764800000000,\"d\":900000,\"o\":\"ok\",\"svc\":\"cognito\",\"op\":\"jwks\"}
/// {\"t\":1764800000100,\"d\":2500000,\"o\":\"ok\",\"svc\":\"cognito\",\"op\":\"jwks\"}
/// ";
/// let strict = CircuitBreakerConfig::cognito()
///     .to_builder()
///     .expected_response_time(Duration::from_secs(1))
///     .build()
///     .unwrap();
/// let configs = vec![("preset".to_owned(), CircuitBreakerConfig::cognito()), ("strict".to_owned(), strict)];
/// let report = replay_reader(trace.as_bytes(), configs, ReplayOptions::default()).unwrap();
/// assert_eq!(report.calls, 2);
/// assert_eq!(report.keys[0].key, "cognito/jwks");
/// // Neither opens on two calls; the report serializes (serde) for a tool to read.
/// assert!(report.configs.iter().all(|c| c.totals.opens == 0));
/// assert!(serde_json::to_string(&report).unwrap().starts_with("{\"calls\":2,"));
/// ```
pub struct Replay {
    engine: engine::Engine,
}

impl fmt::Debug for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay").finish_non_exhaustive()
    }
}

impl Replay {
    /// A replay of `configs` (name, configuration) with the default options.
    pub fn new(configs: Vec<(String, CircuitBreakerConfig)>) -> Self {
        Self::with_options(configs, ReplayOptions::default())
    }

    /// A replay of `configs` with `options`.
    pub fn with_options(
        configs: Vec<(String, CircuitBreakerConfig)>,
        options: ReplayOptions,
    ) -> Self {
        Replay {
            engine: engine::Engine::new(configs, options),
        }
    }

    /// Replays one record (possibly held in the reorder buffer until its turn).
    pub fn feed(&mut self, record: &TraceRecord) {
        self.engine.feed(record);
    }

    /// Replays what is buffered, completes every call still in flight, and reports.
    pub fn finish(self) -> ReplayReport {
        self.engine.finish()
    }
}

/// Why [`replay_file`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplayError {
    /// The file could not be opened.
    Open(std::io::Error),
    /// A line of the trace is bad (the first one; the replay stops there).
    Trace(TraceError),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Open(e) => write!(f, "cannot open the trace: {e}"),
            ReplayError::Trace(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReplayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplayError::Open(e) => Some(e),
            ReplayError::Trace(e) => Some(e),
        }
    }
}

/// Replays the trace file at `path` against `configs` with the default options.
///
/// # Errors
///
/// When the file cannot be opened, or at its first bad line.
pub fn replay_file(
    path: impl AsRef<Path>,
    configs: Vec<(String, CircuitBreakerConfig)>,
) -> Result<ReplayReport, ReplayError> {
    let file = std::fs::File::open(path).map_err(ReplayError::Open)?;
    replay_reader(
        std::io::BufReader::with_capacity(256 * 1024, file),
        configs,
        ReplayOptions::default(),
    )
}

/// Replays a trace read from `reader` against `configs` with `options`.
///
/// # Errors
///
/// At the trace's first bad line.
pub fn replay_reader(
    reader: impl std::io::BufRead,
    configs: Vec<(String, CircuitBreakerConfig)>,
    options: ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let mut replay = Replay::with_options(configs, options);
    for record in TraceReader::new(reader) {
        replay.feed(&record.map_err(ReplayError::Trace)?);
    }
    Ok(replay.finish())
}
