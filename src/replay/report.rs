//! What a replay reports: [`ReplayReport`] and its parts.

use crate::CircuitState;
use serde::Serialize;

/// The result of a [`Replay`](super::Replay): the trace's traffic per key, its incidents,
/// and for each configuration what its circuits did.
///
/// Serializes (serde) to the same bytes for the same trace, configurations and options:
/// keys are sorted, configurations keep their given order, and no field is a float.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Records replayed.
    pub calls: u64,
    /// Records left out because they started before the reorder window allowed (see
    /// [`ReplayOptions::reorder_window`](super::ReplayOptions::reorder_window)).
    pub late_records: u64,
    /// Records left out because their key came after the key limit (see
    /// [`ReplayOptions::max_keys`](super::ReplayOptions::max_keys)).
    pub records_over_key_limit: u64,
    /// Records left out because their start is after the year 2286 (`t` > 10¹³) or their
    /// duration longer than 10¹² µs (11.6 days): the simulated clock counts nanoseconds
    /// in a `u64`.
    pub records_out_of_range: u64,
    /// The earliest call start, ms since the Unix epoch (0 for an empty trace).
    pub start_ms: u64,
    /// The latest call end, ms since the Unix epoch, rounded up.
    pub end_ms: u64,
    /// The width of the report's time buckets, ms.
    pub bucket_ms: u64,
    /// True when incidents came from `inc` labels; false when they were inferred.
    pub incidents_labelled: bool,
    /// Traffic and incidents per key, sorted by key.
    pub keys: Vec<KeyTraffic>,
    /// One per configuration, in the order given.
    pub configs: Vec<ConfigReport>,
}

/// The traffic of one key (`service/operation`), whatever the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyTraffic {
    /// `service/operation`.
    pub key: String,
    /// The service.
    pub service: String,
    /// The operation.
    pub operation: String,
    /// Calls.
    pub calls: u64,
    /// Calls recorded as failed.
    pub failures: u64,
    /// Calls recorded as ignored.
    pub ignored: u64,
    /// The key's incidents, in time order.
    pub incidents: Vec<Incident>,
    /// Per time bucket, only buckets with calls, in time order.
    pub buckets: Vec<TrafficBucket>,
}

/// One incident of one key: labelled, or inferred (see [`IncidentRule`](super::IncidentRule)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Incident {
    /// The `inc` label; `None` when inferred.
    pub label: Option<String>,
    /// Start: the first labelled call's start, or the first bad bucket's start (ms since
    /// the epoch).
    pub start_ms: u64,
    /// End (recovery): the last labelled call's end, rounded up to the ms, or the last
    /// bad bucket's end.
    pub end_ms: u64,
}

/// The traffic of one key in one time bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TrafficBucket {
    /// The bucket's start, ms since the epoch (a multiple of the bucket width).
    pub start_ms: u64,
    /// Calls started in it.
    pub calls: u64,
    /// Of which failed.
    pub failures: u64,
    /// Of which ignored.
    pub ignored: u64,
    /// Of which slower than the incident rule's `slow_threshold`.
    pub slow: u64,
    /// Sum of their durations, µs (mean latency = `duration_sum_us / calls`).
    pub duration_sum_us: u64,
    /// The longest of them, µs.
    pub duration_max_us: u64,
}

/// What one configuration did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConfigReport {
    /// The name it was given.
    pub name: String,
    /// The sum of its keys' counts.
    pub totals: Counts,
    /// Per key, in the order of [`ReplayReport::keys`].
    pub keys: Vec<KeyReport>,
}

/// Counts of one configuration on one key (or summed over keys).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Counts {
    /// Calls the circuit let through (including half-open probes).
    pub admitted: u64,
    /// Calls the circuit rejected.
    pub rejected: u64,
    /// Failing calls let through during incidents: the harm a breaker is for.
    pub failed_let_through: u64,
    /// Failing calls let through outside incidents.
    pub failed_outside_incidents: u64,
    /// Rejected calls that were recorded `ok`: false rejections, the breaker's own harm.
    pub false_rejections: u64,
    /// Rejected calls that were recorded `fail`: calls the breaker saved.
    pub saved: u64,
    /// Closed → Open transitions (HalfOpen → Open re-opens are not counted here).
    pub opens: u64,
    /// Opens outside every incident of the key (see [`Incident`]).
    pub false_opens: u64,
    /// HalfOpen → Open re-opens.
    pub reopens: u64,
    /// Half-open probes let through.
    pub probes: u64,
}

/// What one configuration did on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyReport {
    /// `service/operation`.
    pub key: String,
    /// Its counts.
    pub counts: Counts,
    /// One per incident of the key, in the order of [`KeyTraffic::incidents`].
    pub incidents: Vec<IncidentResponse>,
    /// Every transition: `(ms since the epoch, the state entered)`, in order. The circuit
    /// starts Closed at the key's first call.
    pub timeline: Vec<(u64, CircuitState)>,
    /// Per time bucket with anything to count, in time order.
    pub buckets: Vec<OutcomeBucket>,
}

/// How a configuration answered one incident.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IncidentResponse {
    /// From the incident's start to the first transition to Open within it, ms; 0 when
    /// the circuit was already Open (or HalfOpen) when it started; `None` when it never
    /// opened during it.
    pub time_to_open_ms: Option<u64>,
    /// From the incident's end (recovery) to the first transition to Closed at or after
    /// it, ms; 0 when the circuit was Closed at the end; `None` when it never closed
    /// again in the trace.
    pub time_to_close_ms: Option<u64>,
}

/// One configuration's calls lost and saved on one key in one time bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OutcomeBucket {
    /// The bucket's start, ms since the epoch.
    pub start_ms: u64,
    /// False rejections: rejected calls recorded `ok`.
    pub lost: u64,
    /// Rejected calls recorded `fail`.
    pub saved: u64,
    /// Failing calls let through (inside or outside incidents).
    pub let_through: u64,
}
