//! One call of a trace: [`TraceRecord`] and its [`TraceOutcome`].

use serde::{Deserialize, Serialize};

/// How a recorded call ended, as the classifier saw it.
///
/// Slow is not an outcome here: a replay derives it from the call's duration and each
/// configuration's `expected_response_time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceOutcome {
    /// `"ok"`: the dependency worked.
    Ok,
    /// `"fail"`: the dependency failed.
    Fail,
    /// `"ignored"`: the call says nothing about the dependency's health (a cancelled
    /// call, a client-side error, a rejection by a breaker stacked inside the recorder).
    Ignored,
}

impl TraceOutcome {
    /// The schema's spelling: `"ok"`, `"fail"` or `"ignored"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceOutcome::Ok => "ok",
            TraceOutcome::Fail => "fail",
            TraceOutcome::Ignored => "ignored",
        }
    }
}

/// One call: one line of a trace (see the [module docs](crate::trace) for the schema).
///
/// ```
/// use tower_circuit_breaker::trace::{TraceOutcome, TraceRecord};
///
/// let line = r#"{"t":1764800000000,"d":1500,"o":"fail","svc":"dynamodb","op":"query","inc":"outage-1"}"#;
/// let record: TraceRecord = serde_json::from_str(line).unwrap();
/// assert_eq!(record.outcome, TraceOutcome::Fail);
/// assert_eq!(record.key(), ("dynamodb", "query"));
/// assert_eq!(serde_json::to_string(&record).unwrap(), line);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceRecord {
    /// `t`: when the call started, in milliseconds since the Unix epoch.
    #[serde(rename = "t")]
    pub start_ms: u64,
    /// `d`: how long it took, in microseconds.
    #[serde(rename = "d")]
    pub duration_us: u64,
    /// `o`: how it ended.
    #[serde(rename = "o")]
    pub outcome: TraceOutcome,
    /// `svc`: the service called (the first half of a circuit's key).
    #[serde(rename = "svc")]
    pub service: String,
    /// `op`: the operation called (the second half of the key).
    #[serde(rename = "op")]
    pub operation: String,
    /// `inc`: the label of the incident the call falls in, if one was labelled.
    #[serde(rename = "inc", default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

impl TraceRecord {
    /// A record without an incident label.
    pub fn new(
        start_ms: u64,
        duration_us: u64,
        outcome: TraceOutcome,
        service: impl Into<String>,
        operation: impl Into<String>,
    ) -> Self {
        TraceRecord {
            start_ms,
            duration_us,
            outcome,
            service: service.into(),
            operation: operation.into(),
            incident: None,
        }
    }

    /// The same record labelled as part of `incident`.
    #[must_use]
    pub fn in_incident(mut self, incident: impl Into<String>) -> Self {
        self.incident = Some(incident.into());
        self
    }

    /// `(service, operation)`: the circuit this call goes through.
    pub fn key(&self) -> (&str, &str) {
        (&self.service, &self.operation)
    }

    /// When the call ended, in microseconds since the Unix epoch (saturating).
    pub fn end_us(&self) -> u64 {
        self.start_ms
            .saturating_mul(1_000)
            .saturating_add(self.duration_us)
    }
}
