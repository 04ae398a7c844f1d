//! The recorder: what a recorded call looks like, and a full queue dropping and counting
//! without blocking the call.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};
use tower_circuit_breaker::classify::Verdict;
use tower_circuit_breaker::trace::{
    Recorder, RecorderLayer, TraceOutcome, TraceReader, TraceRecord, rejections_ignored,
};
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};

fn records(bytes: &[u8]) -> Vec<TraceRecord> {
    TraceReader::new(bytes).map(Result::unwrap).collect()
}

#[tokio::test(start_paused = true)]
async fn the_layer_records_start_duration_outcome_and_key_on_tokio_time() {
    let (recorder, writer) = Recorder::spawn(Vec::new(), 64);
    let origin_ms = recorder.origin_ms();
    let svc = ServiceBuilder::new()
        .layer(RecorderLayer::new(recorder.clone(), "dynamodb", "query"))
        .service_fn(|n: u64| async move {
            tokio::time::sleep(Duration::from_millis(n)).await;
            if n == 40 {
                Err(io::Error::other("boom"))
            } else {
                Ok(n)
            }
        });
    tokio::time::advance(Duration::from_millis(1_000)).await;
    svc.clone().oneshot(25).await.unwrap();
    svc.clone().oneshot(40).await.unwrap_err();
    // Dropped before it completes: not recorded.
    drop(svc.clone().oneshot(10));
    drop((svc, recorder));
    let (bytes, stats) = writer.finish().unwrap();
    assert_eq!((stats.queued, stats.dropped, stats.written), (2, 0, 2));
    let want = vec![
        TraceRecord::new(
            origin_ms + 1_000,
            25_000,
            TraceOutcome::Ok,
            "dynamodb",
            "query",
        ),
        TraceRecord::new(
            origin_ms + 1_025,
            40_000,
            TraceOutcome::Fail,
            "dynamodb",
            "query",
        ),
    ];
    assert_eq!(records(&bytes), want);
}

#[tokio::test(start_paused = true)]
async fn over_a_breaker_rejections_are_recorded_as_ignored() {
    let (recorder, writer) = Recorder::spawn(Vec::new(), 64);
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(1)
        .minimum_request_count(1)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RecorderLayer::new(recorder.clone(), "s", "o").classifier(rejections_ignored::<()>))
        .layer(CircuitBreakerLayer::new(config))
        .service_fn(|()| async { Err::<(), _>(io::Error::other("down")) });
    svc.clone().oneshot(()).await.unwrap_err(); // fails, opens
    svc.clone().oneshot(()).await.unwrap_err(); // rejected
    drop((svc, recorder));
    let outcomes: Vec<TraceOutcome> = records(&writer.finish().unwrap().0)
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes, vec![TraceOutcome::Fail, TraceOutcome::Ignored]);
}

/// A writer whose flush says it has started and then waits until told to go on.
struct Gate {
    entered: Sender<()>,
    go: Receiver<()>,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        let _ = self.entered.send(());
        let _ = self.go.recv();
        Ok(())
    }
}

#[test]
fn a_full_queue_drops_and_counts_and_never_blocks_the_call() {
    let (entered_tx, entered) = channel();
    let (go, go_rx) = sync_channel(0);
    let (recorder, writer) = Recorder::spawn(
        Gate {
            entered: entered_tx,
            go: go_rx,
        },
        4,
    );
    let key = recorder.key("s", "o");
    std::thread::scope(|s| {
        // The writer thread blocks in a flush: nothing leaves the queue.
        s.spawn(|| writer.flush().unwrap());
        entered.recv().unwrap();
        for _ in 0..1_000 {
            recorder.finish(key, recorder.start(), Verdict::Success);
        }
        let stats = recorder.stats();
        assert_eq!((stats.queued, stats.dropped), (4, 996));
        drop(go);
    });
    drop(recorder);
    let (_, done) = writer.finish().unwrap();
    assert_eq!((done.queued, done.dropped, done.written), (4, 996, 4));
}

#[test]
fn flush_waits_for_what_was_queued() {
    let (recorder, writer) = Recorder::spawn(Vec::new(), 8);
    let key = recorder.key("s", "o");
    recorder.finish(key, recorder.start(), Verdict::Ignored);
    writer.flush().unwrap();
    drop(recorder);
    let (bytes, stats) = writer.finish().unwrap();
    assert_eq!(stats.written, 1);
    assert_eq!(records(&bytes)[0].outcome, TraceOutcome::Ignored);
}

#[tokio::test(start_paused = true)]
async fn record_inside_a_circuit_call_records_the_calls_let_through() {
    use tower_circuit_breaker::Circuit;
    use tower_circuit_breaker::classify::ErrorsAsFailures;
    let (recorder, writer) = Recorder::spawn(Vec::new(), 64);
    let key = recorder.key("cognito", "jwks");
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(1)
        .minimum_request_count(1)
        .build()
        .unwrap();
    let circuit = Circuit::new(config);
    let slow_failure = async {
        tokio::time::sleep(Duration::from_millis(7)).await;
        Err::<(), _>(io::Error::other("down"))
    };
    let first = circuit.call(recorder.record(key, ErrorsAsFailures, slow_failure));
    first.await.unwrap_err();
    // Rejected: the recorded future is dropped unpolled, nothing recorded.
    let second =
        circuit.call(recorder.record(key, ErrorsAsFailures, async { Ok::<_, io::Error>(()) }));
    second.await.unwrap_err();
    drop(recorder);
    let recorded = records(&writer.finish().unwrap().0);
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (recorded[0].duration_us, recorded[0].outcome),
        (7_000, TraceOutcome::Fail)
    );
}

#[test]
fn calls_recorded_from_four_threads_are_all_counted_once() {
    let (recorder, writer) = Recorder::spawn(Vec::new(), 1 << 16);
    let keys: Vec<_> = (0..4)
        .map(|t| recorder.key("s", &format!("op{t}")))
        .collect();
    std::thread::scope(|s| {
        for &key in &keys {
            let recorder = recorder.clone();
            s.spawn(move || {
                for _ in 0..5_000 {
                    recorder.finish(key, recorder.start(), Verdict::Success);
                }
            });
        }
    });
    // The same pair registered again is the same key.
    assert_eq!(recorder.key("s", "op2"), keys[2]);
    drop(recorder);
    let (bytes, stats) = writer.finish().unwrap();
    assert_eq!(stats.queued + stats.dropped, 20_000);
    assert_eq!(stats.written, stats.queued);
    let all = records(&bytes);
    assert_eq!(all.len() as u64, stats.written);
    for t in 0..4 {
        let op = format!("op{t}");
        let n = all.iter().filter(|r| r.operation == op).count();
        assert!(n > 0, "{op}");
    }
}

/// Names that may come from requests: a 1 MiB operation name and 10 000 distinct keys
/// register at most `MAX_KEYS` keys plus the overflow key, and every call is still written.
#[test]
fn keys_from_hostile_names_are_bounded() {
    use tower_circuit_breaker::trace::{MAX_KEY_NAME, MAX_KEYS};
    let (recorder, handle) = Recorder::spawn(Vec::new(), 1 << 15);
    let huge = "x".repeat(1 << 20);
    let long = recorder.key("svc", &huge);
    let at_limit = recorder.key("svc", &"y".repeat(MAX_KEY_NAME));
    assert_ne!(long, at_limit);
    for i in 0..10_000 {
        let key = recorder.key("svc", &format!("op{i}"));
        recorder.finish(key, recorder.start(), Verdict::Success);
    }
    recorder.finish(long, recorder.start(), Verdict::Failure);
    drop(recorder);
    let (bytes, stats) = handle.finish().unwrap();
    assert_eq!(stats.written, 10_001);
    let written = records(&bytes);
    let mut names: Vec<_> = written.iter().map(|r| r.key()).collect();
    names.sort();
    names.dedup();
    assert!(names.len() <= MAX_KEYS + 1, "{} keys", names.len());
    assert!(written.iter().all(|r| r.operation.len() <= MAX_KEY_NAME));
    let overflow = written
        .iter()
        .filter(|r| r.operation == "(overflow)")
        .count();
    assert_eq!(overflow, 10_000 - (MAX_KEYS - 2) + 1);
}
