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
