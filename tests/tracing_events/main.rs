//! The `tracing` event of a state change, with its structured fields.
//!
//! Alone in its test binary on purpose: `tracing` caches per call site whether anyone is
//! interested in it. When other tests opened circuits on other threads (no subscriber
//! there) while this one installed its thread-local subscriber, the `circuit opened` call
//! site could stay cached as uninteresting and the event never reached this test's
//! subscriber (in `tests/registry` it failed about one run in three).

use std::io;
use std::sync::{Arc, Mutex};
use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerRegistry, NoFallback};

#[derive(Debug)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("down")
    }
}

impl std::error::Error for Down {}

async fn fail(
    registry: &CircuitBreakerRegistry,
    service: &str,
    operation: &str,
    config: &CircuitBreakerConfig,
) {
    let _: Result<(), BoxError> = registry
        .execute(
            service,
            operation,
            || async { Err(Down.into()) },
            NoFallback,
            config,
        )
        .await;
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn every_state_change_is_a_structured_tracing_event() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let registry = CircuitBreakerRegistry::new();
    let config = CircuitBreakerConfig::dynamodb();
    for _ in 0..5 {
        fail(&registry, "dynamodb", "storeUserMessage", &config).await;
    }
    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("circuit opened"))
        .expect("an open event");
    for field in [
        "WARN",
        "service=dynamodb",
        "operation=storeUserMessage",
        "from=\"closed\"",
        "to=\"open\"",
        "failure_rate=1",
        "window_requests=5",
        "window_failures=5",
        "consecutive_failures=5",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }

    // Rates are logged to 3 decimal places: 2 failures in 3 calls is 0.667, not
    // 0.6666666666666666.
    let rate = CircuitBreakerConfig::builder()
        .failure_threshold(100)
        .failure_rate_threshold(0.5)
        .minimum_request_count(3)
        .build()
        .unwrap();
    let _: Result<(), BoxError> = registry
        .execute("rates", "op", || async { Ok(()) }, NoFallback, &rate)
        .await;
    fail(&registry, "rates", "op", &rate).await;
    fail(&registry, "rates", "op", &rate).await;
    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("circuit opened") && l.contains("service=rates"))
        .expect("an open event");
    assert!(line.contains("failure_rate=0.667 "), "{line}");
}
