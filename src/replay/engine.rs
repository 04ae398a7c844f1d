//! The replay engine: the reorder buffer, the key table, the batches and the workers.
//!
//! The engine (on the caller's thread) puts records in start order, interns their keys,
//! keeps each key's traffic, and hands batches of compact [`Event`]s to the workers; each
//! worker ([`super::worker`]) runs its share of the configurations over every batch.

use super::incidents::{self, KeyLabels};
use super::report::{KeyTraffic, ReplayReport, TrafficBucket};
use super::worker::{ConfigRun, Worker};
use super::{ReplayOptions, ReplayReport as Report};
use crate::CircuitBreakerConfig;
use crate::trace::{TraceOutcome, TraceRecord};
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// The latest start replayed, ms since the epoch (year 2286): nanoseconds since the
/// epoch, plus a duration and a break, stay inside a `u64`.
const MAX_START_MS: u64 = 10_000_000_000_000;
/// The longest duration replayed, µs (11.6 days).
const MAX_DURATION_US: u64 = 1_000_000_000_000;

/// Calls per batch handed to the workers.
const BATCH: usize = 8 * 1024;

/// One call, as the workers see it: times in nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub(super) struct Event {
    pub(super) start_ns: u64,
    pub(super) end_ns: u64,
    pub(super) key: u32,
    pub(super) outcome: TraceOutcome,
    /// Carries an `inc` label.
    pub(super) labelled: bool,
}

/// A record waiting in the reorder buffer.
struct Held {
    event: Event,
    label: Option<Box<str>>,
}

/// An item in a min-heap of times: [`BinaryHeap`] pops the earliest `at` first, ties in
/// the order of `seq` (arrival), so the order never depends on anything but the input.
pub(super) struct Earliest<T> {
    pub(super) at: u64,
    pub(super) seq: u64,
    pub(super) item: T,
}

impl<T> PartialEq for Earliest<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Earliest<T> {}
impl<T> PartialOrd for Earliest<T> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Earliest<T> {
    /// Reversed: the max-heap pops the earliest first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A key's traffic and labels, kept by the engine.
struct KeyState {
    service: String,
    operation: String,
    traffic: KeyTraffic,
    labels: KeyLabels,
}

enum Job {
    Batch(Arc<Vec<Event>>),
    Finish,
}

/// Where the configurations run: on the caller's thread, or on worker threads.
enum Runners {
    Inline(Worker),
    Threads(Vec<(SyncSender<Job>, JoinHandle<Vec<ConfigRun>>)>),
}

pub(super) struct Engine {
    options: ReplayOptions,
    bucket_ms: u64,
    slow_us: u64,
    window_ms: u64,
    held: BinaryHeap<Earliest<Held>>,
    seq: u64,
    latest_start: u64,
    /// The start of the last record replayed: an earlier one is late.
    released: Option<u64>,
    late: u64,
    over_key_limit: u64,
    out_of_range: u64,
    calls: u64,
    start_ms: u64,
    end_us: u64,
    ids: HashMap<String, HashMap<String, u32>>,
    keys: Vec<KeyState>,
    batch: Vec<Event>,
    runners: Runners,
    names: Vec<String>,
}

impl Engine {
    pub(super) fn new(
        configs: Vec<(String, CircuitBreakerConfig)>,
        options: ReplayOptions,
    ) -> Self {
        let names: Vec<String> = configs.iter().map(|(n, _)| n.clone()).collect();
        let bucket_ms = (options.incidents.bucket.as_millis() as u64).max(1);
        let threads = match options.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(configs.len())
        .max(1);
        let runs: Vec<ConfigRun> = configs
            .into_iter()
            .enumerate()
            .map(|(index, (name, config))| ConfigRun::new(index, name, config, bucket_ms))
            .collect();
        let runners = if threads == 1 {
            Runners::Inline(Worker::new(runs))
        } else {
            let mut shares: Vec<Vec<ConfigRun>> = (0..threads).map(|_| Vec::new()).collect();
            for (i, run) in runs.into_iter().enumerate() {
                shares[i % threads].push(run);
            }
            Runners::Threads(shares.into_iter().map(spawn_worker).collect())
        };
        Engine {
            options,
            bucket_ms,
            slow_us: options.incidents.slow_threshold.as_micros() as u64,
            window_ms: options.reorder_window.as_millis() as u64,
            held: BinaryHeap::new(),
            seq: 0,
            latest_start: 0,
            released: None,
            late: 0,
            over_key_limit: 0,
            out_of_range: 0,
            calls: 0,
            start_ms: u64::MAX,
            end_us: 0,
            ids: HashMap::new(),
            keys: Vec::new(),
            batch: Vec::with_capacity(BATCH),
            runners,
            names,
        }
    }

    pub(super) fn feed(&mut self, record: &TraceRecord) {
        if record.start_ms > MAX_START_MS || record.duration_us > MAX_DURATION_US {
            self.out_of_range += 1;
            return;
        }
        if self.released.is_some_and(|r| record.start_ms < r) {
            self.late += 1;
            return;
        }
        let Some(key) = self.key_id(&record.service, &record.operation) else {
            self.over_key_limit += 1;
            return;
        };
        let start_ns = record.start_ms * 1_000_000;
        let event = Event {
            start_ns,
            end_ns: start_ns + record.duration_us * 1_000,
            key,
            outcome: record.outcome,
            labelled: record.incident.is_some(),
        };
        self.seq += 1;
        self.held.push(Earliest {
            at: record.start_ms,
            seq: self.seq,
            item: Held {
                event,
                label: record.incident.as_deref().map(Box::from),
            },
        });
        self.latest_start = self.latest_start.max(record.start_ms);
        let horizon = self.latest_start.saturating_sub(self.window_ms);
        while self.held.peek().is_some_and(|h| h.at <= horizon) {
            let held = self.held.pop().expect("peeked");
            self.release(held);
        }
    }

    /// The key's id, interned on first sight; `None` past the key limit.
    fn key_id(&mut self, service: &str, operation: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(service).and_then(|ops| ops.get(operation)) {
            return Some(*id);
        }
        if self.keys.len() >= self.options.max_keys {
            return None;
        }
        let id = self.keys.len() as u32;
        self.ids
            .entry(service.to_owned())
            .or_default()
            .insert(operation.to_owned(), id);
        self.keys.push(KeyState {
            service: service.to_owned(),
            operation: operation.to_owned(),
            traffic: KeyTraffic {
                key: format!("{service}/{operation}"),
                service: service.to_owned(),
                operation: operation.to_owned(),
                calls: 0,
                failures: 0,
                ignored: 0,
                incidents: Vec::new(),
                buckets: Vec::new(),
            },
            labels: KeyLabels::default(),
        });
        Some(id)
    }

    /// Replays one record: its key's traffic, its label, and into the batch.
    fn release(&mut self, held: Earliest<Held>) {
        let start_ms = held.at;
        let Held { event: e, label } = held.item;
        self.released = Some(start_ms);
        let duration_us = (e.end_ns - e.start_ns) / 1_000;
        self.calls += 1;
        self.start_ms = self.start_ms.min(start_ms);
        self.end_us = self.end_us.max(e.end_ns / 1_000);
        let key = &mut self.keys[e.key as usize];
        let t = &mut key.traffic;
        t.calls += 1;
        let bucket_start = start_ms - start_ms % self.bucket_ms;
        if t.buckets.last().is_none_or(|b| b.start_ms != bucket_start) {
            t.buckets.push(TrafficBucket {
                start_ms: bucket_start,
                ..TrafficBucket::default()
            });
        }
        let b = t.buckets.last_mut().expect("pushed");
        b.calls += 1;
        match e.outcome {
            TraceOutcome::Fail => {
                t.failures += 1;
                b.failures += 1;
            }
            TraceOutcome::Ignored => {
                t.ignored += 1;
                b.ignored += 1;
            }
            TraceOutcome::Ok => {}
        }
        if duration_us > self.slow_us {
            b.slow += 1;
        }
        b.duration_sum_us = b.duration_sum_us.saturating_add(duration_us);
        b.duration_max_us = b.duration_max_us.max(duration_us);
        if let Some(label) = label {
            key.labels
                .add(label, start_ms, e.end_ns.div_ceil(1_000_000));
        }
        self.batch.push(e);
        if self.batch.len() >= BATCH {
            self.send_batch();
        }
    }

    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        match &mut self.runners {
            Runners::Inline(worker) => {
                worker.run(&self.batch);
                self.batch.clear();
            }
            Runners::Threads(threads) => {
                let batch = Arc::new(std::mem::replace(
                    &mut self.batch,
                    Vec::with_capacity(BATCH),
                ));
                for (tx, _) in threads.iter() {
                    // A worker that died has panicked: its join below reports it.
                    let _ = tx.send(Job::Batch(batch.clone()));
                }
            }
        }
    }

    pub(super) fn finish(mut self) -> Report {
        while let Some(held) = self.held.pop() {
            self.release(held);
        }
        self.send_batch();
        let mut runs: Vec<ConfigRun> = match self.runners {
            Runners::Inline(worker) => worker.finish(),
            Runners::Threads(threads) => {
                for (tx, _) in &threads {
                    let _ = tx.send(Job::Finish);
                }
                threads
                    .into_iter()
                    .flat_map(|(_, thread)| match thread.join() {
                        Ok(runs) => runs,
                        Err(panic) => std::panic::resume_unwind(panic),
                    })
                    .collect()
            }
        };
        runs.sort_by_key(|r| r.index);
        debug_assert_eq!(runs.len(), self.names.len());

        // Keys in sorted order; `order[new] = old id`.
        let mut order: Vec<usize> = (0..self.keys.len()).collect();
        order.sort_by(|&a, &b| {
            (&self.keys[a].service, &self.keys[a].operation)
                .cmp(&(&self.keys[b].service, &self.keys[b].operation))
        });
        let labelled = self.keys.iter().any(|k| !k.labels.is_empty());
        let mut keys: Vec<KeyTraffic> = Vec::with_capacity(order.len());
        for &old in &order {
            let state = &mut self.keys[old];
            state.traffic.incidents = if labelled {
                state.labels.incidents()
            } else {
                incidents::infer(
                    &state.traffic.buckets,
                    &self.options.incidents,
                    self.bucket_ms,
                )
            };
            keys.push(state.traffic.clone());
        }
        let configs = runs
            .into_iter()
            .map(|run| run.report(&order, &keys, labelled))
            .collect();
        ReplayReport {
            calls: self.calls,
            late_records: self.late,
            records_over_key_limit: self.over_key_limit,
            records_out_of_range: self.out_of_range,
            start_ms: if self.calls == 0 { 0 } else { self.start_ms },
            end_ms: self.end_us.div_ceil(1_000),
            bucket_ms: self.bucket_ms,
            incidents_labelled: labelled,
            keys,
            configs,
        }
    }
}

fn spawn_worker(runs: Vec<ConfigRun>) -> (SyncSender<Job>, JoinHandle<Vec<ConfigRun>>) {
    let (tx, rx): (SyncSender<Job>, Receiver<Job>) = sync_channel(4);
    let thread = std::thread::Builder::new()
        .name("tcb-replay".into())
        .spawn(move || {
            let mut worker = Worker::new(runs);
            while let Ok(job) = rx.recv() {
                match job {
                    Job::Batch(batch) => worker.run(&batch),
                    Job::Finish => break,
                }
            }
            worker.finish()
        })
        .expect("spawning a replay worker thread");
    (tx, thread)
}
