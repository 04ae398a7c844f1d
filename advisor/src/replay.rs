//! The glue to the crate's replay ([`tower_circuit_breaker::replay`]): every candidate in
//! one pass, and its report read back per key as a [`Score`], a state timeline and the
//! calls lost and saved per report bucket.

use crate::rank::{CATCH_MIN_MS, Score};
use crate::report::Segment;
use crate::search::Candidate;
use crate::traffic::Span;
use crate::traffic::Traffic;
use std::collections::BTreeMap;
use tower_circuit_breaker::replay::{KeyReport, KeyTraffic, Replay, ReplayReport};
use tower_circuit_breaker::trace::TraceRecord;

/// The width of the replay's report buckets (its incident rule's default, 10 s): the
/// traffic buckets are whole multiples of it, so lost and saved counts add up exactly.
pub const REPLAY_BUCKET_MS: u64 = 10_000;

/// What one candidate did on one key.
#[derive(Clone, Debug, Default)]
pub struct KeyResult {
    /// Its score.
    pub score: Score,
    /// Its states over time (Closed stretches included).
    pub segments: Vec<Segment>,
    /// Good calls rejected, per traffic bucket.
    pub lost: Vec<u64>,
    /// Failing calls rejected, per traffic bucket.
    pub saved: Vec<u64>,
}

/// Per key, per candidate (in the candidates' order).
pub type Results = BTreeMap<(String, String), Vec<KeyResult>>;

/// A replay of every candidate.
pub struct Run {
    replay: Replay,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run").finish_non_exhaustive()
    }
}

impl Run {
    /// Every candidate, named by its index (names repeat across keys: `current`).
    pub fn new(candidates: &[Candidate]) -> Self {
        let configs = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| (i.to_string(), c.config.clone()))
            .collect();
        Run {
            replay: Replay::new(configs),
        }
    }

    /// One record.
    pub fn feed(&mut self, record: &TraceRecord) {
        self.replay.feed(record);
    }

    /// Per key, per candidate (in the candidates' order), and the records the replay
    /// left out because they came later than its reorder window allows; the incidents
    /// the replay found (labelled or inferred) go into `traffic`.
    pub fn finish(self, traffic: &mut Traffic) -> (Results, u64) {
        let report = self.replay.finish();
        let mut out = BTreeMap::new();
        for (k, key) in report.keys.iter().enumerate() {
            let results = report
                .configs
                .iter()
                .map(|config| result(&report, key, &config.keys[k], traffic))
                .collect();
            let id = (key.service.clone(), key.operation.clone());
            if let Some(t) = traffic.keys.get_mut(&id) {
                t.incidents = key
                    .incidents
                    .iter()
                    .map(|i| Span {
                        label: i
                            .label
                            .clone()
                            .unwrap_or_else(|| "incident (inferred)".to_owned()),
                        start_ms: i.start_ms,
                        end_ms: i.end_ms,
                    })
                    .collect();
            }
            out.insert(id, results);
        }
        (out, report.late_records)
    }
}

/// Mean of the values that are there.
fn mean(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    let (sum, n) = values.flatten().fold((0, 0), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n)
}

fn result(report: &ReplayReport, key: &KeyTraffic, r: &KeyReport, traffic: &Traffic) -> KeyResult {
    let c = &r.counts;
    let long: Vec<usize> = key
        .incidents
        .iter()
        .enumerate()
        .filter(|(_, inc)| inc.end_ms.saturating_sub(inc.start_ms) >= CATCH_MIN_MS)
        .map(|(i, _)| i)
        .collect();
    let score = Score {
        failed_let_through: c.failed_let_through,
        failed_outside: c.failed_outside_incidents,
        false_rejections: c.false_rejections,
        saved: c.saved,
        opens: c.opens,
        false_opens: c.false_opens,
        incidents: long.len() as u32,
        caught: long
            .iter()
            .filter(|&&i| r.incidents[i].time_to_open_ms.is_some())
            .count() as u32,
        mean_time_to_open_ms: mean(r.incidents.iter().map(|i| i.time_to_open_ms)),
        mean_time_to_close_ms: mean(
            r.incidents
                .iter()
                .filter(|i| i.time_to_open_ms.is_some())
                .map(|i| i.time_to_close_ms),
        ),
        probes: c.probes,
    };
    let mut segments = Vec::new();
    for (n, &(t, state)) in r.timeline.iter().enumerate() {
        let end = r.timeline.get(n + 1).map_or(report.end_ms, |next| next.0);
        segments.push(Segment {
            start_ms: t,
            end_ms: end,
            state,
        });
    }
    let mut lost = vec![0; traffic.buckets];
    let mut saved = vec![0; traffic.buckets];
    for b in &r.buckets {
        let i = traffic.bucket_of(b.start_ms);
        lost[i] += b.lost;
        saved[i] += b.saved;
    }
    KeyResult {
        score,
        segments,
        lost,
        saved,
    }
}
