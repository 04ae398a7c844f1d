#![cfg(feature = "fleet")]
//! Fleet-wide circuits: several circuits in one process stand for Lambda sandboxes and
//! share one store.
//!
//! Every test runs on a paused tokio clock: time moves when every task waits (auto-advance)
//! or through `advance`. The syncs' background tasks, the store's TTLs and latency, and
//! the circuits' breaks all run on that clock, so the scenarios are deterministic.
//!
//! The same scenarios run against Redis and DynamoDB (moto) in the integration member
//! (`integration/tests/fleet_real`).

mod hostile;
mod scenarios;
mod skew;
mod slow;

use scenarios::{Harness, Mode, trip};

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::sleep;
use tower_circuit_breaker::fleet::{
    CircuitSnapshot, FleetConfig, FleetMode, FleetState, FleetSync, MemoryStore, SharedState,
    StoreErrorKind,
};
use tower_circuit_breaker::stats::TransitionReason;
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitState};

fn memory() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new())
}

// ===== the issue's scenarios, on the in-process store =====

// Issue 14, section 4: one writer's clock off by ±5 s (within the default allowance) and
// ±5 min (beyond it).
#[tokio::test(start_paused = true)]
async fn a_writer_5_s_ahead_is_an_instance_like_any_other() {
    skew::skew_within_the_allowance(memory(), 5_000).await;
}

#[tokio::test(start_paused = true)]
async fn a_writer_5_s_behind_is_an_instance_like_any_other() {
    skew::skew_within_the_allowance(memory(), -5_000).await;
}

#[tokio::test(start_paused = true)]
async fn a_writer_5_min_ahead_is_no_evidence_and_cannot_stretch_a_break() {
    skew::skew_beyond_the_allowance(memory(), 300_000).await;
}

#[tokio::test(start_paused = true)]
async fn a_writer_5_min_behind_is_no_evidence_and_cannot_stretch_a_break() {
    skew::skew_beyond_the_allowance(memory(), -300_000).await;
}

#[tokio::test(start_paused = true)]
async fn a_writer_5_min_ahead_does_not_block_a_genuine_quorum() {
    skew::skew_beyond_the_allowance_does_not_block_a_quorum(memory(), 300_000).await;
}

#[tokio::test(start_paused = true)]
async fn a_writer_5_min_behind_does_not_block_a_genuine_quorum() {
    skew::skew_beyond_the_allowance_does_not_block_a_quorum(memory(), -300_000).await;
}

// Issue 14, section 4: slow calls in the reports.
#[tokio::test(start_paused = true)]
async fn a_slow_but_not_failing_dependency_opens_the_fleet() {
    slow::slow_calls_are_failure_evidence(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn the_slow_call_rate_criterion_applies_fleet_wide() {
    slow::slow_call_rate_opens_the_fleet(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn sandboxes_tripped_by_slowness_make_a_quorum() {
    slow::slow_trips_make_a_quorum(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn peers_adopt_a_quorum_open_within_the_cache_period() {
    scenarios::quorum_open_is_adopted(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn one_noisy_instance_below_the_quorum_does_not_open_the_fleet() {
    scenarios::noisy_instance_stays_alone(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn fleet_volume_opens_before_any_sandbox_trips_alone() {
    scenarios::fleet_volume_opens(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn a_healthy_majority_keeps_the_fleet_closed() {
    scenarios::healthy_majority_dilutes_the_failure_rate(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn only_the_configured_number_of_probes_run_fleet_wide() {
    scenarios::probes_are_leased_fleet_wide(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn a_registry_shares_every_circuit_in_one_round() {
    scenarios::registry_shares_every_circuit(memory()).await;
}

#[tokio::test(start_paused = true)]
async fn generation_conflicts_never_lose_a_transition() {
    let store = memory();
    // Latency makes every round's read and write interleave with the others'.
    store.set_latency(Duration::from_millis(3));
    scenarios::concurrent_trips_all_published(store, Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn a_cold_start_begins_from_the_fleets_state() {
    scenarios::cold_start_adopts(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn a_lease_holder_without_traffic_lets_the_lease_go() {
    let h = Harness::start(memory(), 3, scenarios::dynamodb(1));
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    h.tick().await;
    sleep(Duration::from_secs(20)).await;
    // Sandbox 0 is turned away once: its sync takes the lease, and it gets no more calls.
    assert!(!h.succeed(&h.sandboxes[0].circuit).await);
    h.tick().await;
    assert!(h.sandboxes[0].sync.status().lease_held);
    // Sandbox 1 has the traffic: once the idle holder's lease (5 s) runs out, it probes.
    let mut ticks = 0;
    while h.sandboxes[1].circuit.state() != CircuitState::Closed {
        assert!(
            ticks < 10,
            "the lease never moved to the sandbox with traffic"
        );
        h.succeed(&h.sandboxes[1].circuit).await;
        h.tick().await;
        ticks += 1;
    }
    assert!(ticks >= 5, "probed before the holder's lease expired");
    h.tick().await;
    assert!(
        h.sandboxes
            .iter()
            .all(|s| s.circuit.state() == CircuitState::Closed)
    );
    assert_eq!(h.sandboxes[0].sync.status().adopted_closes, 1);
}

#[tokio::test(start_paused = true)]
async fn a_fleet_that_stops_writing_leaves_no_state_behind() {
    let store = memory();
    let h = Harness::start(store.clone(), 3, scenarios::dynamodb(1));
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    h.tick().await;
    let key = h.key().to_owned();
    assert!(store.load(&key).await.unwrap().is_some());
    drop(h);
    // The default record TTL is 15 minutes after the last write.
    sleep(Duration::from_secs(15 * 60)).await;
    assert_eq!(store.load(&key).await.unwrap(), None);
    // A new sandbox on the same key starts from nothing.
    let c = Circuit::named("dynamodb/PutItem", scenarios::dynamodb(1));
    let sync = FleetSync::manual(&c, store, FleetConfig::builder(key).build().unwrap()).unwrap();
    let status = sync.sync_now().await;
    assert_eq!(
        (status.fleet_state, status.generation),
        (Some(FleetState::Closed), 0)
    );
    assert_eq!(c.state(), CircuitState::Closed);
}

// ===== hostile records (issue 11, section 1) =====

#[tokio::test(start_paused = true)]
async fn a_forged_open_without_reports_opens_nobody() {
    hostile::forged_open_without_evidence(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn an_endless_fleet_break_is_cut_to_the_local_longest() {
    hostile::endless_break_is_cut_to_the_local_longest(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn a_writer_30_days_ahead_cannot_hold_the_fleet_open() {
    hostile::writer_30_days_ahead_is_clamped(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn reports_from_the_future_are_no_evidence() {
    hostile::reports_from_the_future_are_no_evidence(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn an_endless_lease_does_not_block_probes() {
    hostile::endless_lease_is_dropped(memory(), Mode::Background).await;
}

#[tokio::test(start_paused = true)]
async fn a_reset_is_not_undone_by_the_next_sync() {
    hostile::a_reset_is_not_undone_by_the_next_sync(memory(), Mode::Background).await;
}

/// An adopted endless break, then the record expires from the store: every circuit admits
/// a probe within one local break.
#[tokio::test(start_paused = true)]
async fn circuits_recover_after_a_forged_record_expires() {
    let store = memory();
    let h = Harness::start(store.clone(), 3, scenarios::dynamodb(1));
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    h.tick().await;
    hostile::tamper(&h, |v, _| v["open_until_ms"] = serde_json::json!(u64::MAX)).await;
    h.tick().await;
    assert_eq!(h.sandboxes[2].circuit.state(), CircuitState::Open);
    // Gone from the store; the syncs stop (as a fleet that went away).
    let body = store.load(h.key()).await.unwrap().unwrap().body;
    store.put_raw(h.key(), body, Duration::from_millis(1));
    let syncs: Vec<_> = h.sandboxes.iter().map(|s| s.sync.clone()).collect();
    let circuits: Vec<_> = h.sandboxes.iter().map(|s| s.circuit.clone()).collect();
    drop(h);
    drop(syncs);
    sleep(hostile::LONGEST).await;
    for c in &circuits {
        let out: Result<u8, _> = c.call(async { Ok::<_, std::io::Error>(1) }).await;
        assert!(out.is_ok(), "{:?}", c.stats().next_attempt_time);
        assert_eq!(c.state(), CircuitState::Closed);
    }
}

// ===== store failure =====

#[tokio::test(start_paused = true)]
async fn a_hanging_store_times_out_and_its_own_breaker_opens() {
    let store = memory();
    store.set_latency(Duration::from_secs(3600));
    let circuit = Circuit::named("c", CircuitBreakerConfig::dynamodb());
    let sync = FleetSync::manual(
        &circuit,
        store.clone(),
        FleetConfig::builder("k").build().unwrap(),
    )
    .unwrap();
    for _ in 0..3 {
        let status = sync.sync_now().await;
        assert_eq!(status.mode, FleetMode::LocalOnly);
        assert_eq!(status.last_error.unwrap().kind(), StoreErrorKind::Timeout);
    }
    // Three timeouts opened the store's breaker: the fourth round does not even ask.
    let asked = store.operations();
    let status = sync.sync_now().await;
    assert_eq!(store.operations(), asked);
    assert_eq!(
        status.last_error.unwrap().kind(),
        StoreErrorKind::Unavailable
    );
    assert_eq!(status.degradations, 1);
    // The user's calls never waited.
    let out: Result<u8, _> = circuit.call(async { Ok::<_, std::io::Error>(1) }).await;
    assert_eq!(out.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_record_is_refused_and_replaced() {
    let store = memory();
    store.put_raw(
        "k",
        b"{\"format\":1,\"state\":\"open\"".to_vec(),
        Duration::from_secs(60),
    );
    let circuit = Circuit::named("c", CircuitBreakerConfig::dynamodb());
    let sync = FleetSync::manual(
        &circuit,
        store.clone(),
        FleetConfig::builder("k").build().unwrap(),
    )
    .unwrap();
    let status = sync.sync_now().await;
    assert_eq!(status.corrupt_records, 1);
    assert_eq!(status.last_error.unwrap().kind(), StoreErrorKind::Corrupt);
    assert_eq!(status.mode, FleetMode::Shared);
    assert_eq!(status.fleet_state, Some(FleetState::Closed));
    assert_eq!(circuit.state(), CircuitState::Closed);
    // Replaced: the next round reads a good record.
    let status = sync.sync_now().await;
    assert_eq!(status.corrupt_records, 1);
    let raw = store.load("k").await.unwrap().unwrap();
    assert!(raw.body.starts_with(b"{\"format\":1"));
}

#[tokio::test(start_paused = true)]
async fn one_sync_per_circuit_and_dropping_it_detaches() {
    let store = memory();
    let h = Harness::start(store.clone(), 3, scenarios::dynamodb(1));
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    sleep(h.cache_period() * 2).await;
    let c = h.sandboxes[2].circuit.clone();
    assert_eq!(c.state(), CircuitState::Open);
    let err = FleetSync::manual(
        &c,
        store.clone(),
        FleetConfig::builder("x").build().unwrap(),
    )
    .unwrap_err();
    assert_eq!(err.field(), "circuit");
    drop(h);
    // Detached: past the break the circuit probes on its own again.
    sleep(Duration::from_secs(21)).await;
    let out: Result<u8, _> = c.call(async { Ok::<_, std::io::Error>(1) }).await;
    assert!(out.is_ok());
    assert_eq!(c.state(), CircuitState::Closed);
}

#[test]
fn fleet_config_is_validated() {
    let b = || FleetConfig::builder("k");
    let field =
        |r: Result<FleetConfig, tower_circuit_breaker::config::ConfigError>| r.unwrap_err().field();
    assert_eq!(
        field(b().cache_period(Duration::ZERO).build()),
        "cache_period"
    );
    assert_eq!(field(b().quorum(0).build()), "quorum");
    assert_eq!(
        field(b().fleet_failure_rate(1.5).build()),
        "fleet_failure_rate"
    );
    assert_eq!(
        field(b().fleet_failure_rate(f64::NAN).build()),
        "fleet_failure_rate"
    );
    assert_eq!(
        field(b().instance_id("x".repeat(129)).build()),
        "instance_id"
    );
    assert_eq!(
        field(b().store_timeout(Some(Duration::ZERO)).build()),
        "store_timeout"
    );
    assert_eq!(
        field(b().record_ttl(Duration::from_secs(1)).build()),
        "record_ttl"
    );
    assert_eq!(
        field(b().max_clock_skew(Duration::from_secs(61)).build()),
        "max_clock_skew"
    );
    assert_eq!(
        b().build().unwrap().max_clock_skew(),
        Duration::from_secs(5)
    );
    assert!(b().max_clock_skew(Duration::ZERO).build().is_ok());
    assert!(b().build().is_ok());
}

// ===== snapshot and restore =====

#[tokio::test(start_paused = true)]
async fn snapshot_round_trips_and_bad_snapshots_are_refused() {
    let config = CircuitBreakerConfig::dynamodb();
    // Created together: on a paused clock a circuit's wall clock starts at its creation.
    let old = Circuit::named("ddb", config.clone());
    let new = Circuit::named("ddb", config.clone());
    for _ in 0..5 {
        let _ = old.call(async { Err::<(), _>("down") }).await;
    }
    assert_eq!(old.state(), CircuitState::Open);
    sleep(Duration::from_secs(5)).await;
    let snap = old.snapshot();
    assert_eq!(snap.state, FleetState::Open);
    assert_eq!(snap.opens_in_a_row, 1);
    let json = serde_json::to_vec(&snap).unwrap();

    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    new.on_transition(move |e| seen.lock().unwrap().push(e.reason));
    assert_eq!(
        new.restore(&CircuitSnapshot::from_json(&json).unwrap()),
        Ok(true)
    );
    assert_eq!(new.state(), CircuitState::Open);
    assert_eq!(*events.lock().unwrap(), vec![TransitionReason::Restored]);
    // About 15 s of the break are left (wall clocks of two circuits agree to a few ms).
    let left = new
        .stats()
        .next_attempt_time
        .unwrap()
        .duration_since(old.stats().next_attempt_time.unwrap())
        .unwrap_or_default();
    assert!(left < Duration::from_millis(50), "{left:?}");
    sleep(Duration::from_secs(15)).await;
    let out: Result<u8, _> = new.call(async { Ok::<_, std::io::Error>(1) }).await;
    assert!(out.is_ok());
    assert_eq!(new.state(), CircuitState::Closed);

    // Untrusted input.
    let fresh = || Circuit::named("ddb", config.clone());
    let mut s = snap.clone();
    s.open_until_ms = Some(s.taken_at_ms + 86_400_000);
    assert_eq!(
        fresh().restore(&s).unwrap_err().rule(),
        "break longer than the circuit's longest"
    );
    let mut s = snap.clone();
    s.format = 3;
    assert!(fresh().restore(&s).is_err());
    let mut s = snap.clone();
    s.circuit = "other".into();
    assert!(fresh().restore(&s).is_err());
    let mut s = snap.clone();
    s.open_until_ms = None;
    assert!(fresh().restore(&s).is_err());
    let mut s = snap.clone();
    s.taken_at_ms += 3_600_000;
    assert!(fresh().restore(&s).is_err());
    assert!(CircuitSnapshot::from_json(b"{\"format\":1}").is_err());
    assert!(CircuitSnapshot::from_json(&vec![b' '; 5000]).is_err());
    // A refused snapshot changed nothing.
    let c = fresh();
    let _ = c.restore(&s);
    assert_eq!(c.state(), CircuitState::Closed);
}

/// A snapshot carries the window and lifetime counts (format 2): a cold start after a
/// restore sees the old window, and the calls leave it one window later. A snapshot older
/// than the window brings the lifetime only; a format-1 snapshot (no counts) still restores.
#[tokio::test(start_paused = true)]
async fn a_restored_circuit_starts_from_the_old_window() {
    let config = CircuitBreakerConfig::dynamodb();
    let old = Circuit::named("ddb", config.clone());
    let new = Circuit::named("ddb", config.clone());
    let stale = Circuit::named("ddb", config.clone());
    for fail in [false, true, false, true] {
        let _ = old
            .call(async move { if fail { Err("down") } else { Ok(()) } })
            .await;
    }
    let _ = old
        .call(async {
            sleep(Duration::from_secs(1)).await;
            Ok::<_, &str>(())
        })
        .await;
    let snap = old.snapshot();
    assert_eq!(snap.format, 2);
    let window = snap.window.unwrap();
    assert_eq!(
        (window.calls, window.failures, window.slow_successes),
        (5, 2, 1)
    );
    let json = serde_json::to_vec(&snap).unwrap();
    let snap = CircuitSnapshot::from_json(&json).unwrap();

    assert_eq!(new.restore(&snap), Ok(false));
    let stats = new.stats();
    assert_eq!(
        (
            stats.window.requests,
            stats.window.failures,
            stats.window.slow
        ),
        (5, 2, 1)
    );
    assert_eq!(
        (stats.total_requests, stats.failure_count, stats.slow_count),
        (5, 2, 1)
    );
    // The restored calls leave the window one window after the restore; the lifetime stays.
    sleep(config.monitoring_window() + Duration::from_secs(1)).await;
    let stats = new.stats();
    assert_eq!(stats.window.requests, 0);
    assert_eq!(stats.total_requests, 5);

    // Restored a whole window later: history only.
    assert_eq!(stale.restore(&snap), Ok(false));
    let stats = stale.stats();
    assert_eq!((stats.window.requests, stats.total_requests), (0, 5));

    // The previous format, without counts, still restores.
    let v1 = format!(
        r#"{{"format":1,"circuit":"ddb","state":"closed","open_until_ms":null,"opens_in_a_row":0,"taken_at_ms":{}}}"#,
        snap.taken_at_ms
    );
    let v1 = CircuitSnapshot::from_json(v1.as_bytes()).unwrap();
    assert_eq!(v1.window, None);
    let c = Circuit::named("ddb", config.clone());
    assert_eq!(c.restore(&v1), Ok(false));
    assert_eq!(c.stats().total_requests, 0);
}

/// Hostile counts are refused with a typed error, and nothing changes.
#[tokio::test(start_paused = true)]
async fn impossible_snapshot_counts_are_refused() {
    let config = CircuitBreakerConfig::dynamodb();
    let old = Circuit::named("ddb", config.clone());
    for _ in 0..5 {
        let _ = old.call(async { Err::<(), _>("down") }).await;
    }
    let good = old.snapshot();
    let check = |edit: &dyn Fn(&mut CircuitSnapshot), rule: &str, config: &CircuitBreakerConfig| {
        let mut s = good.clone();
        edit(&mut s);
        let c = Circuit::named("ddb", config.clone());
        assert_eq!(c.restore(&s).unwrap_err().rule(), rule);
        let stats = c.stats();
        assert_eq!(
            (stats.state, stats.total_requests),
            (CircuitState::Closed, 0)
        );
    };
    check(
        &|s| s.lifetime.as_mut().unwrap().calls = u64::MAX,
        "lifetime counts beyond 2^53",
        &config,
    );
    check(
        &|s| s.window.as_mut().unwrap().failures = 6,
        "counts with more failures or slow calls than calls",
        &config,
    );
    check(
        &|s| s.window.as_mut().unwrap().slow_failures = 6,
        "counts with more failures or slow calls than calls",
        &config,
    );
    check(
        &|s| {
            s.window.as_mut().unwrap().calls = 9;
        },
        "window counts larger than the lifetime counts",
        &config,
    );
    check(
        &|s| s.lifetime = None,
        "window counts without lifetime counts, or the reverse",
        &config,
    );
    check(&|s| s.format = 1, "counts in a format-1 snapshot", &config);
    let counted = config
        .to_builder()
        .sliding_window(tower_circuit_breaker::config::SlidingWindow::Count(4))
        .minimum_request_count(3)
        .build()
        .unwrap();
    check(
        &|_| {},
        "window counts beyond the window's capacity",
        &counted,
    );
    let huge = |s: &mut CircuitSnapshot| {
        for c in [s.window.as_mut().unwrap(), s.lifetime.as_mut().unwrap()] {
            c.calls = u64::from(u32::MAX) + 1;
        }
    };
    check(&huge, "window counts beyond the window's capacity", &config);
}
