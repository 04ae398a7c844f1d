//! Hostile fleet records (issue 11, section 1), written once and run against every store:
//! a record is untrusted input. Each scenario writes a crafted record (or crafts part of a
//! genuine one) straight into the store, then checks that no instance breaks for longer
//! than its own config allows, that every instance admits a probe again within one local
//! maximum break, and that a record without quorum evidence opens nobody.

use super::scenarios::{Harness, Mode, dynamodb, trip};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep};
use tower_circuit_breaker::fleet::{CasOutcome, FleetState, SharedState};
use tower_circuit_breaker::{Circuit, CircuitState};

/// The longest break of the DynamoDB preset: its recovery timeout (no backoff).
pub const LONGEST: Duration = Duration::from_secs(20);
const DAY_MS: u64 = 86_400_000;

fn three(store: Arc<dyn SharedState>, mode: Mode) -> Harness {
    Harness::new(store, mode, 3, dynamodb(1), |b| b)
}

/// The stored record, as JSON.
pub async fn record(h: &Harness) -> Value {
    let stored = h.store().load(h.key()).await.unwrap().expect("a record");
    serde_json::from_slice(&stored.body).unwrap()
}

/// Rewrites the stored record through `edit(record, now_ms)`, by compare-and-set
/// (retried when a background sync wrote in between).
pub async fn tamper(h: &Harness, edit: impl Fn(&mut Value, u64)) {
    loop {
        let now = h.now_ms();
        let (version, mut v) = match h.store().load(h.key()).await.unwrap() {
            Some(s) => (Some(s.version), serde_json::from_slice(&s.body).unwrap()),
            None => (
                None,
                json!({"format": 1, "state": "closed", "generation": 0, "open_until_ms": 0,
                       "changed_at_ms": 0, "changed_by": "", "reports": [], "leases": []}),
            ),
        };
        edit(&mut v, now);
        let body = serde_json::to_vec(&v).unwrap();
        let ttl = Duration::from_secs(900);
        match h.store().compare_and_set(h.key(), version, body, ttl).await {
            Ok(CasOutcome::Written(_)) => return,
            Ok(CasOutcome::Conflict) => continue,
            Err(e) => panic!("tampering failed: {e}"),
        }
    }
}

fn fake_report(id: &str, at_ms: u64) -> Value {
    json!({"id": id, "requests": 5, "failures": 5, "open": true, "at_ms": at_ms})
}

/// A rejected call's retry-after, or `None` when the call was admitted.
async fn retry_after(c: &Circuit) -> Option<Option<Duration>> {
    let out: Result<(), _> = c.call(async { Ok::<_, std::io::Error>(()) }).await;
    out.err()
        .map(|e| e.rejection().expect("a rejection").retry_after())
}

/// Every Open sandbox rejects with a retry-after no longer than the longest local break.
async fn assert_breaks_bounded(h: &Harness) {
    for (i, s) in h.sandboxes.iter().enumerate() {
        if s.circuit.state() == CircuitState::Open {
            let after = retry_after(&s.circuit).await.expect("rejected while Open");
            let after = after.unwrap_or_else(|| panic!("sandbox {i}: rejected with no retry time"));
            assert!(after <= LONGEST, "sandbox {i}: retry after {after:?}");
        }
    }
}

/// The fleet (a genuine quorum: sandboxes 0 and 1 tripped) is Open everywhere.
async fn genuine_quorum(h: &Harness) {
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    h.tick().await;
    h.tick().await;
    for s in &h.sandboxes {
        assert_eq!(s.circuit.state(), CircuitState::Open);
    }
    assert_eq!(h.sandboxes[2].sync.status().adopted_opens, 1);
}

/// With the dependency healthy, every sandbox gets a call every cache period: within one
/// local maximum break (from `since`, plus the few periods a lease and a published close
/// take) every sandbox admits calls again.
async fn recovers_within_one_break(h: &Harness, since: Instant) {
    let limit = LONGEST + h.cache_period() * 5;
    while !h
        .sandboxes
        .iter()
        .all(|s| s.circuit.state() == CircuitState::Closed)
    {
        let states: Vec<_> = h.sandboxes.iter().map(|s| s.circuit.state()).collect();
        assert!(
            since.elapsed() <= limit,
            "still {states:?} {:?} after the break started",
            since.elapsed()
        );
        for s in &h.sandboxes {
            h.succeed(&s.circuit).await;
        }
        h.tick().await;
    }
    for s in &h.sandboxes {
        assert!(h.succeed(&s.circuit).await);
    }
}

/// `state: open`, `open_until_ms: u64::MAX`, no reports: nobody opens, and the record's
/// break is cut to the reader's longest.
pub async fn forged_open_without_evidence(store: Arc<dyn SharedState>, mode: Mode) {
    let h = three(store, mode);
    h.warm_up().await;
    h.tick().await;
    tamper(&h, |v, _| {
        v["state"] = json!("open");
        v["generation"] = json!(v["generation"].as_u64().unwrap() + 1);
        v["open_until_ms"] = json!(u64::MAX);
        v["changed_by"] = json!("forger");
        v["reports"] = json!([]);
    })
    .await;
    h.tick().await;
    h.tick().await;
    for s in &h.sandboxes {
        assert_eq!(s.circuit.state(), CircuitState::Closed);
        assert_eq!(s.sync.status().adopted_opens, 0);
        assert!(h.succeed(&s.circuit).await);
    }
    let until = record(&h).await["open_until_ms"].as_u64().unwrap();
    assert!(
        until <= h.now_ms() + LONGEST.as_millis() as u64,
        "the forged break was not cut: {until}"
    );
}

/// A genuine quorum, whose record then claims a break to `u64::MAX`: every instance's break
/// stays within its own longest, and every instance admits again within one break.
pub async fn endless_break_is_cut_to_the_local_longest(store: Arc<dyn SharedState>, mode: Mode) {
    let h = three(store, mode);
    genuine_quorum(&h).await;
    tamper(&h, |v, _| v["open_until_ms"] = json!(u64::MAX)).await;
    h.tick().await;
    let since = Instant::now();
    assert_breaks_bounded(&h).await;
    let until = record(&h).await["open_until_ms"].as_u64().unwrap();
    assert!(until <= h.now_ms() + LONGEST.as_millis() as u64);
    recovers_within_one_break(&h, since).await;
}

/// A writer 30 days ahead, with a genuine quorum: its break is cut, its own report (from
/// the future) is no evidence, and the fleet recovers within one break.
pub async fn writer_30_days_ahead_is_clamped(store: Arc<dyn SharedState>, mode: Mode) {
    let h = three(store, mode);
    genuine_quorum(&h).await;
    tamper(&h, |v, now| {
        let ahead = now + 30 * DAY_MS;
        v["generation"] = json!(v["generation"].as_u64().unwrap() + 1);
        v["changed_at_ms"] = json!(ahead);
        v["changed_by"] = json!("skewed");
        v["open_until_ms"] = json!(ahead + 20_000);
        v["reports"]
            .as_array_mut()
            .unwrap()
            .push(fake_report("skewed", ahead));
    })
    .await;
    h.tick().await;
    let since = Instant::now();
    assert_breaks_bounded(&h).await;
    let r = record(&h).await;
    assert!(r["changed_at_ms"].as_u64().unwrap() <= h.now_ms());
    assert!(r["open_until_ms"].as_u64().unwrap() <= h.now_ms() + LONGEST.as_millis() as u64);
    assert!(
        r["reports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != "skewed")
    );
    recovers_within_one_break(&h, since).await;
}

/// Two reports dated `u64::MAX` in a Closed record: no evidence, nobody opens, and they are
/// dropped from the record.
pub async fn reports_from_the_future_are_no_evidence(store: Arc<dyn SharedState>, mode: Mode) {
    let h = three(store, mode);
    h.warm_up().await;
    h.tick().await;
    let generation = record(&h).await["generation"].as_u64().unwrap();
    tamper(&h, |v, _| {
        let reports = v["reports"].as_array_mut().unwrap();
        reports.push(fake_report("fake-1", u64::MAX));
        reports.push(fake_report("fake-2", u64::MAX));
    })
    .await;
    h.tick().await;
    h.tick().await;
    for s in &h.sandboxes {
        assert_eq!(s.circuit.state(), CircuitState::Closed);
        assert_eq!(s.sync.status().fleet_state, Some(FleetState::Closed));
        assert_eq!(s.sync.status().open_instances, 0);
        assert!(h.succeed(&s.circuit).await);
    }
    let r = record(&h).await;
    assert_eq!(r["generation"].as_u64().unwrap(), generation);
    let ids: Vec<_> = r["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert!(
        !ids.contains(&json!("fake-1")) && !ids.contains(&json!("fake-2")),
        "{ids:?}"
    );
}

/// A probe lease to `u64::MAX` held by a ghost: dropped, so after the break a probe runs
/// and the fleet recovers within one break.
pub async fn endless_lease_is_dropped(store: Arc<dyn SharedState>, mode: Mode) {
    let h = three(store, mode);
    genuine_quorum(&h).await;
    let since = Instant::now();
    tamper(&h, |v, _| {
        let generation = v["generation"].clone();
        v["leases"] = json!([{"holder": "ghost", "slots": 1, "generation": generation,
                              "until_ms": u64::MAX}]);
    })
    .await;
    h.tick().await;
    sleep(LONGEST).await;
    recovers_within_one_break(&h, since).await;
}

/// Manual control wins over the fleet: a reset circuit does not re-adopt the fleet break
/// it was reset out of, and a reset withdraws the instance's Open report; a disabled
/// circuit is never opened by the fleet.
pub async fn a_reset_is_not_undone_by_the_next_sync(store: Arc<dyn SharedState>, mode: Mode) {
    let h = Harness::new(store, mode, 4, dynamodb(1), |b| b);
    h.sandboxes[3].circuit.disable();
    genuine_quorum_of_four(&h).await;
    for s in &h.sandboxes[..3] {
        s.circuit.reset();
    }
    h.tick().await;
    h.tick().await;
    for (i, s) in h.sandboxes.iter().enumerate() {
        assert_eq!(s.circuit.state(), CircuitState::Closed, "sandbox {i}");
        assert!(h.succeed(&s.circuit).await, "sandbox {i}");
    }
    assert_eq!(h.sandboxes[2].sync.status().adopted_opens, 1);
    let status = h.sandboxes[2].sync.status();
    assert_eq!(status.fleet_state, Some(FleetState::Open));
    assert_eq!(
        status.open_instances, 0,
        "the resets withdrew the Open reports"
    );
    assert_eq!(h.sandboxes[3].sync.status().adopted_opens, 0);
}

async fn genuine_quorum_of_four(h: &Harness) {
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    h.tick().await;
    h.tick().await;
    for s in &h.sandboxes[..3] {
        assert_eq!(s.circuit.state(), CircuitState::Open);
    }
    assert_eq!(h.sandboxes[2].sync.status().adopted_opens, 1);
    // Disabled by hand: the fleet never overrides it.
    assert_eq!(h.sandboxes[3].circuit.state(), CircuitState::Closed);
    assert!(h.succeed(&h.sandboxes[3].circuit).await);
}
