//! A dependency that is slow but does not fail: the fleet learns of it through the
//! reports' slow calls, wherever the local trip rule uses them (issue 14, section 4).
//! Written once, run on every store (the real ones in `integration/tests/fleet_real`).

use super::scenarios::{Harness, Mode, dynamodb};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::sleep;
use tower_circuit_breaker::fleet::{FleetState, SharedState};
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitState};

/// The DynamoDB preset's expected response time is 500 ms: these calls take 2 s.
const SLOW: Duration = Duration::from_secs(2);

/// A successful call that takes [`SLOW`].
async fn slow_success(c: &Circuit) {
    let out = c
        .call(async {
            sleep(SLOW).await;
            Ok::<_, std::io::Error>(())
        })
        .await;
    assert!(out.is_ok(), "a slow success is admitted and succeeds");
}

/// Every sandbox at once (so the window holds them all): fast, slow, fast, slow. Four
/// calls, below the preset's minimum of five: no sandbox can trip alone.
async fn half_slow_everywhere(h: &Harness) {
    let mut all = JoinSet::new();
    for s in &h.sandboxes {
        let c = s.circuit.clone();
        all.spawn(async move {
            for slow in [false, true, false, true] {
                if slow {
                    slow_success(&c).await;
                } else {
                    assert!(c.call(async { Ok::<_, std::io::Error>(()) }).await.is_ok());
                }
            }
            assert_eq!(c.state(), CircuitState::Closed);
            assert_eq!(c.stats().window.failures, 0, "nothing failed");
        });
    }
    while let Some(done) = all.join_next().await {
        done.unwrap();
    }
}

/// With the presets (`slow_call_is_failure`), slow successes are failures for the trip
/// rule, so for the fleet's volume rule too: 10 sandboxes, 40 calls, half slow, none
/// failed, and the fleet opens.
pub async fn slow_calls_are_failure_evidence(store: Arc<dyn SharedState>, mode: Mode) {
    let h = Harness::new(store, mode, 10, dynamodb(1), |b| b);
    half_slow_everywhere(&h).await;
    h.tick().await;
    h.tick().await;
    for s in &h.sandboxes {
        assert_eq!(s.circuit.state(), CircuitState::Open);
        let status = s.sync.status();
        assert_eq!(status.fleet_state, Some(FleetState::Open));
        assert_eq!(status.open_instances, 0, "no sandbox tripped alone");
    }
}

/// The slow-call-rate criterion, with slow calls that are not failures: the fleet opens
/// on its slow-call rate; without the criterion, slowness alone opens nothing, locally or
/// fleet-wide.
pub async fn slow_call_rate_opens_the_fleet(store: Arc<dyn SharedState>, mode: Mode) {
    let base = dynamodb(1).to_builder().slow_call_is_failure(false);
    let rated = base.clone().slow_call_rate_threshold(0.5).build().unwrap();
    let h = Harness::new(store.clone(), mode, 10, rated, |b| b);
    half_slow_everywhere(&h).await;
    h.tick().await;
    h.tick().await;
    for s in &h.sandboxes {
        assert_eq!(s.circuit.state(), CircuitState::Open);
        assert_eq!(s.sync.status().fleet_state, Some(FleetState::Open));
    }

    let unrated: CircuitBreakerConfig = base.build().unwrap();
    let h = Harness::new(store, mode, 10, unrated, |b| b);
    half_slow_everywhere(&h).await;
    for _ in 0..3 {
        h.tick().await;
    }
    for s in &h.sandboxes {
        assert_eq!(s.circuit.state(), CircuitState::Closed);
        assert_eq!(s.sync.status().fleet_state, Some(FleetState::Closed));
    }
}

/// Sandboxes that trip on slowness alone (three slow successes in a row) are Open on
/// their own evidence: a quorum of them opens the rest of the fleet.
pub async fn slow_trips_make_a_quorum(store: Arc<dyn SharedState>, mode: Mode) {
    let h = Harness::new(store, mode, 5, dynamodb(1), |b| b);
    h.warm_up().await;
    for s in &h.sandboxes[..2] {
        // The preset trips at the third slow success in a row.
        for _ in 0..3 {
            slow_success(&s.circuit).await;
        }
        assert_eq!(s.circuit.state(), CircuitState::Open);
        assert_eq!(
            s.circuit.stats().window.failures,
            0,
            "tripped on slowness alone"
        );
    }
    h.tick().await;
    h.tick().await;
    for s in &h.sandboxes[2..] {
        assert_eq!(s.circuit.state(), CircuitState::Open);
        let status = s.sync.status();
        assert_eq!(status.adopted_opens, 1);
        assert_eq!(status.open_instances, 2);
    }
}
