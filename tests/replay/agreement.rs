//! Agreement: a live run, recorded by `RecorderLayer`, replays to the same transitions at
//! the same milliseconds.
//!
//! The live run is layer-level, under a paused tokio clock: a `RecorderLayer` (over the
//! breaker, rejections classified as ignored) over a `CircuitBreakerLayer` over a fault
//! source whose answers follow a schedule of tokio time (healthy, a hard outage, a latency
//! brownout, isolated errors). Calls start every 50 ms as their own tasks, so slow calls
//! overlap. (Not the chat backend against the fault proxy: see the report.)

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep_until};
use tower::{ServiceBuilder, ServiceExt};
use tower_circuit_breaker::replay::{Replay, ReplayOptions};
use tower_circuit_breaker::trace::{Recorder, RecorderLayer, TraceReader, rejections_ignored};
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .failure_threshold(3)
        .minimum_request_count(3)
        .recovery_timeout(Duration::from_secs(2))
        .expected_response_time(Duration::from_millis(300))
        .monitoring_window(Duration::from_secs(10))
        .slow_call_rate_threshold(0.5)
        .half_open_max_calls(2)
        .build()
        .unwrap()
}

/// The fault source's answer to the call starting at `at_ms` after the origin: its
/// latency (ms, never a multiple of 10, so no call ends when another starts) and
/// whether it fails.
fn fault(at_ms: u64, n: u64) -> (u64, bool) {
    match at_ms {
        5_000..15_000 => (15, true),         // hard outage
        30_000..40_000 => (505, n % 7 == 0), // brownout: slow
        _ => (25, n % 37 == 0),              // isolated errors
    }
}

#[tokio::test(start_paused = true)]
async fn replay_reproduces_a_live_runs_transitions_to_the_millisecond() {
    let (recorder, writer) = Recorder::spawn(Vec::new(), 1 << 16);
    let origin = recorder.origin();
    let origin_ms = recorder.origin_ms();
    let breaker = CircuitBreakerLayer::for_operation("fault", "call", config());
    let live: Arc<Mutex<Vec<(u64, CircuitState)>>> = Arc::default();
    let sink = live.clone();
    breaker.circuit().on_transition(move |e| {
        let ms = origin_ms + Instant::now().duration_since(origin).as_millis() as u64;
        sink.lock().unwrap().push((ms, e.to));
    });
    let svc = ServiceBuilder::new()
        .layer(
            RecorderLayer::new(recorder.clone(), "fault", "call")
                .classifier(rejections_ignored::<u64>),
        )
        .layer(breaker)
        .service_fn(move |n: u64| async move {
            let at = Instant::now().duration_since(origin).as_millis() as u64;
            let (latency, fails) = fault(at, n);
            tokio::time::sleep(Duration::from_millis(latency)).await;
            if fails {
                Err(std::io::Error::other("fault"))
            } else {
                Ok(n)
            }
        });

    let mut tasks = Vec::new();
    for n in 0..1_200u64 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            sleep_until(origin + Duration::from_millis(n * 50)).await;
            let _ = svc.oneshot(n).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    drop((svc, recorder));
    let (trace, stats) = writer.finish().unwrap();
    assert_eq!((stats.written, stats.dropped), (1_200, 0));

    let mut options = ReplayOptions::default();
    options.threads = 1;
    let mut replay = Replay::with_options(vec![("live".into(), config())], options);
    for record in TraceReader::new(trace.as_slice()) {
        replay.feed(&record.unwrap());
    }
    let report = replay.finish();
    let live = live.lock().unwrap().clone();
    assert!(
        live.len() >= 6,
        "the run should open and close more than once: {live:?}"
    );
    assert!(live.contains(&(live[0].0, CircuitState::Open)));
    assert_eq!(report.configs[0].keys[0].timeline, live);
}
