//! One configuration's run over the trace: a circuit per key on a manual clock, the calls
//! in flight, and the counts.

use super::engine::{Earliest, Event};
use super::incidents;
use super::report::{ConfigReport, Counts, KeyReport, KeyTraffic, OutcomeBucket};
use crate::circuit::{Circuit, Permit};
use crate::classify::Verdict;
use crate::trace::TraceOutcome;
use crate::{CircuitBreakerConfig, CircuitState};
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// A transition: `(ms since the epoch, from, to)`.
pub(super) type Transition = (u64, CircuitState, CircuitState);

/// An admitted call waiting for its end (in an [`Earliest`] by its end).
struct InFlight {
    key: u32,
    outcome: TraceOutcome,
    permit: Permit,
}

/// One key's circuit under one configuration, and what it did.
struct KeyRun {
    circuit: Circuit,
    /// The circuit's origin: the key's first call's start, ns since the epoch.
    origin_ns: u64,
    transitions: Arc<Mutex<Vec<Transition>>>,
    counts: Counts,
    /// Failing calls let through that carried an `inc` label.
    let_through_labelled: u64,
    buckets: Vec<OutcomeBucket>,
}

/// One configuration: its circuits (one per key, made at the key's first call) and the
/// calls in flight through them.
pub(super) struct ConfigRun {
    pub(super) index: usize,
    name: String,
    config: CircuitBreakerConfig,
    bucket_ms: u64,
    keys: Vec<Option<KeyRun>>,
    in_flight: BinaryHeap<Earliest<InFlight>>,
    seq: u64,
}

impl ConfigRun {
    pub(super) fn new(
        index: usize,
        name: String,
        config: CircuitBreakerConfig,
        bucket_ms: u64,
    ) -> Self {
        ConfigRun {
            index,
            name,
            config,
            bucket_ms,
            keys: Vec::new(),
            in_flight: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Ends every call in flight that ends at or before `now_ns`, in end order.
    fn complete_until(&mut self, now_ns: u64) {
        while self.in_flight.peek().is_some_and(|c| c.at <= now_ns) {
            let Earliest { at, item: call, .. } = self.in_flight.pop().expect("peeked");
            let run = self.keys[call.key as usize]
                .as_ref()
                .expect("a call in flight has its key's circuit");
            run.circuit.set_manual_time(at - run.origin_ns);
            call.permit.record(match call.outcome {
                TraceOutcome::Ok => Verdict::Success,
                TraceOutcome::Fail => Verdict::Failure,
                TraceOutcome::Ignored => Verdict::Ignored,
            });
        }
    }

    /// The key's run, its circuit made now (at `now_ns`) on the key's first call.
    fn key_run(&mut self, key: u32, now_ns: u64) -> &mut KeyRun {
        let k = key as usize;
        if self.keys.len() <= k {
            self.keys.resize_with(k + 1, || None);
        }
        let config = &self.config;
        self.keys[k].get_or_insert_with(|| {
            // Made at the key's first call, as a registry makes its circuits: the time
            // window's buckets are counted from there.
            let origin_ns = now_ns - now_ns % 1_000_000;
            let origin = UNIX_EPOCH + Duration::from_nanos(origin_ns);
            let circuit = Circuit::with_manual_clock(Arc::from(""), 0, config.clone(), origin);
            let transitions: Arc<Mutex<Vec<Transition>>> = Arc::default();
            let sink = transitions.clone();
            circuit.on_transition(move |e| {
                let ms =
                    e.at.duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((ms, e.from, e.to));
            });
            KeyRun {
                circuit,
                origin_ns,
                transitions,
                counts: Counts::default(),
                let_through_labelled: 0,
                buckets: Vec::new(),
            }
        })
    }

    /// Replays one call.
    fn call(&mut self, e: &Event) {
        self.complete_until(e.start_ns);
        let bucket_ms = self.bucket_ms;
        let run = self.key_run(e.key, e.start_ns);
        run.circuit.set_manual_time(e.start_ns - run.origin_ns);
        let admitted = run.circuit.try_acquire();
        let start_ms = e.start_ns / 1_000_000;
        let bucket_start = start_ms - start_ms % bucket_ms;
        if run
            .buckets
            .last()
            .is_none_or(|b| b.start_ms != bucket_start)
        {
            run.buckets.push(OutcomeBucket {
                start_ms: bucket_start,
                ..OutcomeBucket::default()
            });
        }
        let bucket = run.buckets.last_mut().expect("pushed");
        let c = &mut run.counts;
        let mut queued = None;
        match admitted {
            Ok(permit) => {
                c.admitted += 1;
                if permit.is_probe() {
                    c.probes += 1;
                }
                if e.outcome == TraceOutcome::Fail {
                    bucket.let_through += 1;
                    if e.labelled {
                        run.let_through_labelled += 1;
                    }
                }
                queued = Some(permit);
            }
            Err(_) => {
                c.rejected += 1;
                match e.outcome {
                    TraceOutcome::Ok => {
                        c.false_rejections += 1;
                        bucket.lost += 1;
                    }
                    TraceOutcome::Fail => {
                        c.saved += 1;
                        bucket.saved += 1;
                    }
                    TraceOutcome::Ignored => {}
                }
            }
        }
        // A bucket with nothing to count is not kept.
        if run.buckets.last()
            == Some(&OutcomeBucket {
                start_ms: bucket_start,
                ..OutcomeBucket::default()
            })
        {
            run.buckets.pop();
        }
        if let Some(permit) = queued {
            self.seq += 1;
            self.in_flight.push(Earliest {
                at: e.end_ns,
                seq: self.seq,
                item: InFlight {
                    key: e.key,
                    outcome: e.outcome,
                    permit,
                },
            });
        }
    }

    /// This configuration's report, keys in the report's order (`order[new] = old id`).
    pub(super) fn report(
        self,
        order: &[usize],
        keys: &[KeyTraffic],
        labelled: bool,
    ) -> ConfigReport {
        let mut totals = Counts::default();
        let mut runs = self.keys;
        let mut reports = Vec::with_capacity(order.len());
        for (traffic, &old) in keys.iter().zip(order) {
            let Some(run) = runs.get_mut(old).and_then(Option::take) else {
                continue;
            };
            let transitions =
                std::mem::take(&mut *run.transitions.lock().unwrap_or_else(|p| p.into_inner()));
            let mut counts = run.counts;
            let let_through: u64 = run.buckets.iter().map(|b| b.let_through).sum();
            counts.failed_let_through = if labelled {
                run.let_through_labelled
            } else {
                run.buckets
                    .iter()
                    .filter(|b| incidents::covers(&traffic.incidents, b.start_ms))
                    .map(|b| b.let_through)
                    .sum()
            };
            counts.failed_outside_incidents = let_through - counts.failed_let_through;
            for &(ms, from, to) in &transitions {
                if to == CircuitState::Open {
                    if from == CircuitState::HalfOpen {
                        counts.reopens += 1;
                    } else {
                        counts.opens += 1;
                        if !incidents::within(&traffic.incidents, ms) {
                            counts.false_opens += 1;
                        }
                    }
                }
            }
            let responses = traffic
                .incidents
                .iter()
                .map(|i| incidents::response(i, &transitions))
                .collect();
            totals.add(&counts);
            reports.push(KeyReport {
                key: traffic.key.clone(),
                counts,
                incidents: responses,
                timeline: transitions.iter().map(|&(ms, _, to)| (ms, to)).collect(),
                buckets: run.buckets,
            });
        }
        ConfigReport {
            name: self.name,
            totals,
            keys: reports,
        }
    }
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.admitted += o.admitted;
        self.rejected += o.rejected;
        self.failed_let_through += o.failed_let_through;
        self.failed_outside_incidents += o.failed_outside_incidents;
        self.false_rejections += o.false_rejections;
        self.saved += o.saved;
        self.opens += o.opens;
        self.false_opens += o.false_opens;
        self.reopens += o.reopens;
        self.probes += o.probes;
    }
}

/// Runs its configurations over every batch.
pub(super) struct Worker {
    runs: Vec<ConfigRun>,
}

impl Worker {
    pub(super) fn new(runs: Vec<ConfigRun>) -> Self {
        Worker { runs }
    }

    /// One configuration at a time over the whole batch (each keeps its circuits warm).
    pub(super) fn run(&mut self, batch: &[Event]) {
        for run in &mut self.runs {
            for e in batch {
                run.call(e);
            }
        }
    }

    /// Ends every call still in flight and hands the runs back.
    pub(super) fn finish(mut self) -> Vec<ConfigRun> {
        for run in &mut self.runs {
            run.complete_until(u64::MAX);
        }
        self.runs
    }
}
