//! Incidents: from labels, or inferred from the traffic by the
//! [`IncidentRule`](super::IncidentRule); and how a circuit's transitions answer them.

use super::IncidentRule;
use super::report::{Incident, IncidentResponse, TrafficBucket};
use super::worker::Transition;
use crate::CircuitState;
use std::collections::BTreeMap;

/// Distinct labels kept per key; a call with a further new label still counts as during
/// an incident, but makes no incident of its own.
pub(super) const MAX_LABELS_PER_KEY: usize = 10_000;

/// A key's labelled incidents: per label, the first start and the last end (ms).
#[derive(Debug, Default)]
pub(super) struct KeyLabels {
    spans: BTreeMap<Box<str>, (u64, u64)>,
}

impl KeyLabels {
    pub(super) fn add(&mut self, label: Box<str>, start_ms: u64, end_ms: u64) {
        if let Some((s, e)) = self.spans.get_mut(&label) {
            *s = (*s).min(start_ms);
            *e = (*e).max(end_ms);
        } else if self.spans.len() < MAX_LABELS_PER_KEY {
            self.spans.insert(label, (start_ms, end_ms));
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The incidents in time order (then by label).
    pub(super) fn incidents(&self) -> Vec<Incident> {
        let mut all: Vec<Incident> = self
            .spans
            .iter()
            .map(|(label, &(start_ms, end_ms))| Incident {
                label: Some(label.to_string()),
                start_ms,
                end_ms,
            })
            .collect();
        all.sort_by(|a, b| (a.start_ms, &a.label).cmp(&(b.start_ms, &b.label)));
        all
    }
}

/// Incidents inferred from a key's buckets (in time order) by `rule`.
pub(super) fn infer(
    buckets: &[TrafficBucket],
    rule: &IncidentRule,
    bucket_ms: u64,
) -> Vec<Incident> {
    let gap_ms = rule.merge_gap.as_millis() as u64;
    let mut out: Vec<Incident> = Vec::new();
    for b in buckets {
        if b.calls < rule.min_calls.max(1) {
            continue;
        }
        let calls = b.calls as f64;
        let bad = b.failures as f64 / calls >= rule.failure_rate
            || b.slow as f64 / calls >= rule.slow_rate;
        if !bad {
            continue;
        }
        let end = b.start_ms + bucket_ms;
        match out.last_mut() {
            Some(last) if b.start_ms.saturating_sub(last.end_ms) < gap_ms => last.end_ms = end,
            _ => out.push(Incident {
                label: None,
                start_ms: b.start_ms,
                end_ms: end,
            }),
        }
    }
    out
}

/// Whether a bucket starting at `bucket_start` lies in an (inferred, bucket-aligned)
/// incident.
pub(super) fn covers(incidents: &[Incident], bucket_start: u64) -> bool {
    incidents
        .iter()
        .any(|i| i.start_ms <= bucket_start && bucket_start < i.end_ms)
}

/// Whether `ms` is within an incident, ends included.
pub(super) fn within(incidents: &[Incident], ms: u64) -> bool {
    incidents.iter().any(|i| i.start_ms <= ms && ms <= i.end_ms)
}

/// The state entered by the last transition accepted by `before`, Closed if none.
fn state_at(transitions: &[Transition], before: impl Fn(u64) -> bool) -> CircuitState {
    transitions
        .iter()
        .take_while(|t| before(t.0))
        .last()
        .map_or(CircuitState::Closed, |t| t.2)
}

/// How the transitions answer one incident (see [`IncidentResponse`]).
pub(super) fn response(incident: &Incident, transitions: &[Transition]) -> IncidentResponse {
    let (start, end) = (incident.start_ms, incident.end_ms);
    let time_to_open_ms = if state_at(transitions, |ms| ms < start) != CircuitState::Closed {
        Some(0)
    } else {
        transitions
            .iter()
            .find(|t| t.2 == CircuitState::Open && start <= t.0 && t.0 <= end)
            .map(|t| t.0 - start)
    };
    let time_to_close_ms = if state_at(transitions, |ms| ms <= end) == CircuitState::Closed {
        Some(0)
    } else {
        transitions
            .iter()
            .find(|t| t.2 == CircuitState::Closed && t.0 >= end)
            .map(|t| t.0 - end)
    };
    IncidentResponse {
        time_to_open_ms,
        time_to_close_ms,
    }
}
