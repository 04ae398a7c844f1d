#![cfg(feature = "fleet")]
//! The fleet test that counts log lines, in a binary of its own: tracing's per-callsite
//! interest cache races with other tests' threads when they share a binary, and a log line
//! can go missing (as `tests/tracing_events` found for the registry). Alone, it cannot.

#[path = "../fleet/scenarios.rs"]
#[allow(dead_code)]
mod scenarios;

use scenarios::{Harness, trip};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::sleep;
use tower_circuit_breaker::CircuitState;
use tower_circuit_breaker::fleet::{FleetMode, MemoryStore};

/// Captures this thread's tracing output (the tests run on a current-thread runtime).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

#[tokio::test(start_paused = true)]
async fn store_down_mid_run_calls_keep_flowing_then_sharing_resumes() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let store = Arc::new(MemoryStore::new());
    let h = Harness::start(store.clone(), 4, scenarios::dynamodb(1));
    h.warm_up().await;
    // The fleet opens; sandbox 3 adopts it.
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    sleep(h.cache_period() * 2).await;
    assert_eq!(h.sandboxes[3].circuit.state(), CircuitState::Open);

    // The store dies while the fleet is Open.
    store.set_available(false);
    sleep(h.cache_period() * 3).await;
    for s in &h.sandboxes {
        let status = s.sync.status();
        assert_eq!(status.mode, FleetMode::LocalOnly);
        assert_eq!(status.degradations, 1);
        assert!(status.store_errors >= 1);
        assert!(!status.lease_held);
    }
    // Past the break every sandbox probes on its own: no lease is required while
    // local-only, nothing waits for the store.
    sleep(Duration::from_secs(21)).await;
    let before = h.dependency_calls();
    for s in &h.sandboxes {
        assert!(
            h.succeed(&s.circuit).await,
            "a call was blocked by a dead store"
        );
        assert_eq!(s.circuit.state(), CircuitState::Closed);
    }
    assert_eq!(h.dependency_calls() - before, 4);
    // Many more rounds against the dead store: still one warning per sandbox.
    for _ in 0..20 {
        for s in &h.sandboxes {
            assert!(h.succeed(&s.circuit).await);
        }
        sleep(h.cache_period()).await;
    }
    assert_eq!(logs.count("falls back to local-only"), 4);

    // The store comes back: sharing resumes (the store's own breaker recovers first).
    store.set_available(true);
    sleep(Duration::from_secs(6) + h.cache_period() * 2).await;
    for s in &h.sandboxes {
        assert_eq!(s.sync.status().mode, FleetMode::Shared);
    }
    assert_eq!(logs.count("shares state with the fleet again"), 4);
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    sleep(h.cache_period() * 2).await;
    assert_eq!(h.sandboxes[2].circuit.state(), CircuitState::Open);
    assert_eq!(h.sandboxes[2].sync.status().adopted_opens, 2);
}
