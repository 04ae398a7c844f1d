//! Clock skew on one writer (issue 14, section 4): ±5 s (within the default
//! `max_clock_skew` of 5 s) and ±5 min (beyond it).
//!
//! The skewed sandbox sees the shared store through [`SkewedView`], which moves every time
//! in a record by the skew: back on the way in, forward on the way out. That is exactly
//! what a sandbox whose wall clock runs `skew` ahead (or behind) reads and writes, while
//! everything else about it (its circuit, its timers) runs on the shared paused clock.

use super::hostile::{LONGEST, record};
use super::scenarios::{Harness, Mode, Sandbox, dynamodb, trip};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower_circuit_breaker::CircuitState;
use tower_circuit_breaker::fleet::{
    CasOutcome, FleetState, SharedState, StoreFuture, StoredRecord,
};

/// The shared store as seen by a writer whose clock is `skew_ms` off (positive: ahead).
pub struct SkewedView {
    inner: Arc<dyn SharedState>,
    skew_ms: i64,
}

/// Moves every non-zero time of a record by `by` milliseconds (zero means "none").
fn shift(body: &[u8], by: i64) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    let move_ms = |t: &mut Value| {
        if let Some(ms) = t.as_u64().filter(|&ms| ms > 0) {
            *t = Value::from(ms.saturating_add_signed(by).max(1));
        }
    };
    move_ms(&mut v["open_until_ms"]);
    move_ms(&mut v["changed_at_ms"]);
    for r in v["reports"].as_array_mut().into_iter().flatten() {
        move_ms(&mut r["at_ms"]);
    }
    for l in v["leases"].as_array_mut().into_iter().flatten() {
        move_ms(&mut l["until_ms"]);
    }
    serde_json::to_vec(&v).unwrap()
}

impl SharedState for SkewedView {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoredRecord>> {
        Box::pin(async move {
            Ok(self.inner.load(key).await?.map(|r| StoredRecord {
                version: r.version,
                body: shift(&r.body, -self.skew_ms),
            }))
        })
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        body: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'a, CasOutcome> {
        let body = shift(&body, self.skew_ms);
        self.inner.compare_and_set(key, expected, body, ttl)
    }
}

/// Three honest sandboxes and a fourth, the last, whose clock is `skew_ms` off.
fn fleet_with_skewed_writer(store: Arc<dyn SharedState>, skew_ms: i64) -> Harness {
    let mut h = Harness::new(store.clone(), Mode::Background, 3, dynamodb(1), |b| b);
    let skewed: Sandbox = h.sandbox_on(Arc::new(SkewedView {
        inner: store,
        skew_ms,
    }));
    h.sandboxes.push(skewed);
    h
}

/// What a sandbox's break has left, from its stats, on the syncs' clock.
fn break_left(h: &Harness, i: usize) -> Duration {
    let next = h.sandboxes[i]
        .circuit
        .stats()
        .next_attempt_time
        .expect("Open on a timer");
    let next_ms = next
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Duration::from_millis(next_ms.saturating_sub(h.now_ms()))
}

/// No time in the stored record lies beyond what an honest reader allows: leases within
/// now + lease TTL + 5 s, the transition within now + 5 s, the break within now + the
/// longest local break (plus the periods since the last write); reports ahead by more
/// than 5 s (no evidence) only within 10 report TTLs.
async fn record_is_within_the_allowance(h: &Harness) {
    let r = record(h).await;
    let now = h.now_ms();
    let slack = 5_000 + 2 * h.cache_period().as_millis() as u64;
    for report in r["reports"].as_array().unwrap() {
        assert!(
            report["at_ms"].as_u64().unwrap() <= now + slack + 600_000,
            "{r}"
        );
    }
    for lease in r["leases"].as_array().unwrap() {
        assert!(
            lease["until_ms"].as_u64().unwrap() <= now + 5_000 + slack,
            "{r}"
        );
    }
    assert!(r["changed_at_ms"].as_u64().unwrap() <= now + slack, "{r}");
    if r["state"] == "open" {
        let until = r["open_until_ms"].as_u64().unwrap();
        assert!(until <= now + LONGEST.as_millis() as u64 + slack, "{r}");
    }
}

/// Every sandbox Closed again within one local break (plus the periods a lease and a
/// published close take), with at most one lease in the record at any time.
async fn recovers_with_one_lease(h: &Harness, since: Instant) {
    let limit = LONGEST + h.cache_period() * 6;
    while !h
        .sandboxes
        .iter()
        .all(|s| s.circuit.state() == CircuitState::Closed)
    {
        assert!(
            since.elapsed() <= limit,
            "still {:?} {:?} after the break started",
            h.sandboxes
                .iter()
                .map(|s| s.circuit.state())
                .collect::<Vec<_>>(),
            since.elapsed()
        );
        let leases = record(h).await["leases"].as_array().unwrap().len();
        assert!(leases <= 1, "{leases} probe leases at once");
        for s in &h.sandboxes {
            h.succeed(&s.circuit).await;
        }
        h.tick().await;
    }
}

/// Within the allowance, the skewed writer is an instance like any other: its trip and
/// one honest trip are a quorum that the rest adopt; the adopted break is the fleet's,
/// off by at most the skew and never longer than the local longest; one lease at a time;
/// recovery within one break.
pub async fn skew_within_the_allowance(store: Arc<dyn SharedState>, skew_ms: i64) {
    let h = fleet_with_skewed_writer(store, skew_ms);
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    h.tick().await;
    // The skewed sandbox trips second: its sync writes the fleet's Open, in its own time.
    trip(&h.sandboxes[3].circuit).await;
    h.tick().await;
    h.tick().await;
    let since = Instant::now();
    for i in [1, 2] {
        assert_eq!(h.sandboxes[i].circuit.state(), CircuitState::Open, "{i}");
        let status = h.sandboxes[i].sync.status();
        assert_eq!(status.adopted_opens, 1);
        assert_eq!(status.open_instances, 2);
        let left = break_left(&h, i);
        let skew = Duration::from_millis(skew_ms.unsigned_abs());
        assert!(left <= LONGEST, "{i}: {left:?}");
        assert!(
            left + skew + h.cache_period() * 3 >= LONGEST,
            "{i}: break {left:?} shorter than the fleet's by more than the skew"
        );
    }
    record_is_within_the_allowance(&h).await;
    recovers_with_one_lease(&h, since).await;
}

/// Beyond the allowance, the skewed writer's own trip is no evidence (ahead: its report
/// is dropped as from the future; behind: it is older than `report_ttl`), so with one
/// honest trip nobody adopts; the record's times stay within the allowance; and the
/// tripped sandboxes recover on their own within one break.
pub async fn skew_beyond_the_allowance(store: Arc<dyn SharedState>, skew_ms: i64) {
    let h = fleet_with_skewed_writer(store, skew_ms);
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[3].circuit).await;
    let since = Instant::now();
    for _ in 0..3 {
        h.tick().await;
        for i in [1, 2] {
            assert_eq!(h.sandboxes[i].circuit.state(), CircuitState::Closed, "{i}");
            assert!(h.succeed(&h.sandboxes[i].circuit).await);
        }
        record_is_within_the_allowance(&h).await;
    }
    for i in [1, 2] {
        let status = h.sandboxes[i].sync.status();
        assert_eq!(status.adopted_opens, 0);
        assert_eq!(status.fleet_state, Some(FleetState::Closed));
        assert_eq!(status.open_instances, 1, "only the honest trip is evidence");
    }
    for i in [0, 3] {
        assert!(break_left(&h, i) <= LONGEST);
    }
    recovers_with_one_lease(&h, since).await;
}

/// A writer beyond the allowance ignores the other instances' reports (ahead: they look
/// older than `report_ttl`; behind: they look ahead of its clock) but does not delete them
/// when it writes: a genuine quorum of honest instances still opens the fleet, whatever
/// the order in which the four syncs write.
pub async fn skew_beyond_the_allowance_does_not_block_a_quorum(
    store: Arc<dyn SharedState>,
    skew_ms: i64,
) {
    let h = fleet_with_skewed_writer(store, skew_ms);
    h.warm_up().await;
    trip(&h.sandboxes[3].circuit).await;
    trip(&h.sandboxes[0].circuit).await;
    for _ in 0..3 {
        h.tick().await;
    }
    trip(&h.sandboxes[1].circuit).await;
    h.tick().await;
    h.tick().await;
    let since = Instant::now();
    assert_eq!(h.sandboxes[2].circuit.state(), CircuitState::Open);
    let status = h.sandboxes[2].sync.status();
    assert_eq!(status.fleet_state, Some(FleetState::Open));
    assert_eq!(status.adopted_opens, 1);
    assert!(break_left(&h, 2) <= LONGEST);
    record_is_within_the_allowance(&h).await;
    recovers_with_one_lease(&h, since).await;
}
