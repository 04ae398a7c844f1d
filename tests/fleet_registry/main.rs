#![cfg(feature = "fleet")]
//! Registry-wide fleet sharing (`CircuitBreakerRegistry::share_with_fleet`): several
//! registries in one process stand for Lambda sandboxes and share one `MemoryStore`.
//! Every test runs on a paused tokio clock.

use std::sync::Arc;
use std::time::Duration;
use tokio::time::sleep;
use tower_circuit_breaker::fleet::{
    CasOutcome, FleetConfig, FleetMode, MemoryStore, RegistryFleet, SharedState, StoreFuture,
    StoredRecord,
};
use tower_circuit_breaker::registry::{RegistryConfig, RegistryLimits};
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState};

const PERIOD: Duration = Duration::from_secs(1);

fn template(i: usize) -> FleetConfig {
    FleetConfig::builder("app/prod")
        .cache_period(PERIOD)
        .instance_id(format!("sandbox-{i}"))
        .build()
        .unwrap()
}

async fn trip(c: &Circuit) {
    for _ in 0..5 {
        let _ = c.call(async { Err::<(), _>("dependency down") }).await;
    }
    assert_eq!(c.state(), CircuitState::Open);
}

/// A round past the cache period (the background rounds at the same instant have run).
async fn tick() {
    sleep(PERIOD + Duration::from_millis(1)).await;
}

fn six(registry: &CircuitBreakerRegistry) -> Vec<Circuit> {
    [
        "PutItem",
        "GetItem",
        "Query",
        "verifyJWT",
        "postToConnection",
        "Scan",
    ]
    .iter()
    .map(|op| registry.circuit("svc", op, &CircuitBreakerConfig::dynamodb()))
    .collect()
}

#[tokio::test(start_paused = true)]
async fn one_line_shares_every_circuit_present_and_future_with_one_read_per_round() {
    let store = Arc::new(MemoryStore::new());
    let registry = CircuitBreakerRegistry::new();
    let early = registry.circuit("dynamodb", "PutItem", &CircuitBreakerConfig::dynamodb());
    let fleet = registry
        .share_with_fleet(store.clone(), template(0).to_builder().build().unwrap())
        .unwrap();
    six(&registry);
    let status = fleet.sync_now().await;
    assert_eq!((status.circuits, status.mode), (7, FleetMode::Shared));
    let before = store.operations();
    // Nothing to publish (no call yet): one batched read per round, whatever the circuits.
    for _ in 0..10 {
        tick().await;
    }
    let rounds = fleet.status().rounds - status.rounds;
    assert!(rounds >= 10, "{rounds} rounds");
    assert_eq!(store.operations() - before, rounds);
    // Record keys come from the prefix and the circuit's service/operation.
    assert!(
        fleet
            .circuit_status("dynamodb", "PutItem")
            .is_some_and(|s| s.mode == FleetMode::Shared)
    );
    assert_eq!(
        early.name(),
        "dynamodb/PutItem",
        "the early circuit is the shared one"
    );
    // The registry keeps the fleet; a second one is refused.
    drop(fleet);
    assert!(RegistryFleet::of(&registry).is_some());
    let err = registry.share_with_fleet(store, template(0)).unwrap_err();
    assert_eq!(err.field(), "registry");
}

#[tokio::test(start_paused = true)]
async fn the_fleet_opens_and_closes_every_sandboxs_registry_circuit() {
    let store = Arc::new(MemoryStore::new());
    let sandboxes: Vec<(CircuitBreakerRegistry, Vec<Circuit>)> = (0..3)
        .map(|i| {
            let registry = CircuitBreakerRegistry::new();
            registry
                .share_with_fleet(store.clone(), template(i))
                .unwrap();
            let circuits = six(&registry);
            (registry, circuits)
        })
        .collect();
    tick().await;
    trip(&sandboxes[0].1[0]).await;
    trip(&sandboxes[1].1[0]).await;
    tick().await;
    tick().await;
    let third = &sandboxes[2].1;
    assert_eq!(third[0].state(), CircuitState::Open);
    let status = RegistryFleet::of(&sandboxes[2].0)
        .unwrap()
        .circuit_status("svc", "PutItem")
        .unwrap();
    assert_eq!(status.adopted_opens, 1);
    // Only that circuit: the others of the registry stay closed.
    assert!(third[1..].iter().all(|c| c.state() == CircuitState::Closed));

    // Past the break, a sandbox with traffic takes the lease, probes, and closes the fleet.
    sleep(Duration::from_secs(20)).await;
    for _ in 0..10 {
        for (_, circuits) in &sandboxes {
            let _ = circuits[0].call(async { Ok::<_, &str>(()) }).await;
        }
        tick().await;
    }
    assert!(
        sandboxes
            .iter()
            .all(|(_, c)| c[0].state() == CircuitState::Closed)
    );
    let mut reasons = Vec::new();
    for (registry, _) in &sandboxes {
        let s = RegistryFleet::of(registry)
            .unwrap()
            .circuit_status("svc", "PutItem")
            .unwrap();
        reasons.push(s.adopted_closes);
    }
    assert_eq!(
        reasons.iter().sum::<u64>(),
        2,
        "two followers closed with the fleet"
    );
}

#[tokio::test(start_paused = true)]
async fn a_filter_and_max_circuits_bound_what_is_shared() {
    let store = Arc::new(MemoryStore::new());
    let registry = CircuitBreakerRegistry::new();
    let fleet = RegistryFleet::builder(store.clone(), template(0))
        .filter(|service, _| service != "local")
        .max_circuits(3)
        .manual()
        .attach(&registry)
        .unwrap();
    registry.circuit("local", "op", None);
    for op in ["a", "b", "c", "d", "e"] {
        registry.circuit("svc", op, None);
    }
    let status = fleet.sync_now().await;
    assert_eq!((status.circuits, status.refused), (3, 2));
    assert!(fleet.circuit_status("local", "op").is_none());
    // Manual: no task, so nothing happens without a call.
    let ops = store.operations();
    sleep(Duration::from_secs(60)).await;
    assert_eq!(store.operations(), ops);
    // `refresh` reads only when the last round is older than the cache period.
    fleet.refresh().await;
    fleet.refresh().await;
    assert_eq!(store.operations(), ops + 1);
    assert_eq!(
        RegistryFleet::builder(store, template(0))
            .max_circuits(0)
            .manual()
            .attach(&CircuitBreakerRegistry::new())
            .unwrap_err()
            .field(),
        "max_circuits"
    );
}

#[test]
fn a_background_fleet_outside_a_runtime_is_refused_and_a_manual_one_is_not() {
    let store = Arc::new(MemoryStore::new());
    let err = CircuitBreakerRegistry::new()
        .share_with_fleet(store.clone(), template(0))
        .unwrap_err();
    assert_eq!(err.field(), "runtime");
    assert!(
        RegistryFleet::builder(store, template(0))
            .manual()
            .attach(&CircuitBreakerRegistry::new())
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn evicted_circuits_leave_the_fleet_and_a_new_one_of_the_key_joins() {
    let store = Arc::new(MemoryStore::new());
    let limits = RegistryLimits::builder()
        .idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let registry = CircuitBreakerRegistry::with_config(RegistryConfig {
        limits,
        ..RegistryConfig::default()
    });
    let fleet = registry.share_with_fleet(store, template(0)).unwrap();
    let old = registry.circuit("svc", "idle", None);
    registry.circuit("svc", "busy", None);
    tick().await;
    assert_eq!(fleet.status().circuits, 2);
    sleep(Duration::from_secs(61)).await;
    assert_eq!(registry.evict_idle(), 2);
    tick().await;
    let status = fleet.status();
    assert_eq!((status.circuits, status.evicted), (0, 2));
    // The evicted circuit is no longer gated by the fleet; the key's new circuit is shared.
    let new = registry.circuit("svc", "idle", None);
    assert!(!new.ptr_eq(&old));
    tick().await;
    assert_eq!(fleet.status().circuits, 1);
    assert!(fleet.circuit_status("svc", "idle").is_some());
}

#[tokio::test(start_paused = true)]
async fn one_task_per_registry_and_it_ends_with_the_registry() {
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = alive();
    let registry = CircuitBreakerRegistry::new();
    registry
        .share_with_fleet(Arc::new(MemoryStore::new()), template(0))
        .unwrap();
    for i in 0..50 {
        registry.circuit("svc", &format!("op{i}"), None);
    }
    tick().await;
    assert_eq!(alive(), before + 1);
    drop(registry);
    tick().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_is_down_fails_no_user_call() {
    let store = Arc::new(MemoryStore::new());
    store.set_available(false);
    let registry = CircuitBreakerRegistry::new();
    let fleet = registry
        .share_with_fleet(store.clone(), template(0))
        .unwrap();
    let circuits = six(&registry);
    for _ in 0..5 {
        for c in &circuits {
            assert_eq!(c.call(async { Ok::<_, &str>(1) }).await.ok(), Some(1));
        }
        tick().await;
    }
    assert_eq!(fleet.status().mode, FleetMode::LocalOnly);
    let status = fleet.circuit_status("svc", "PutItem").unwrap();
    assert_eq!(status.mode, FleetMode::LocalOnly);
    // A local trip still works alone, and its probe needs no lease.
    trip(&circuits[0]).await;
    sleep(Duration::from_secs(20)).await;
    assert_eq!(
        circuits[0].call(async { Ok::<_, &str>(1) }).await.ok(),
        Some(1)
    );
    store.set_available(true);
    sleep(Duration::from_secs(6)).await;
    tick().await;
    assert_eq!(fleet.status().mode, FleetMode::Shared);
}

/// A store whose `load_many` answers one record too few: a hostile or broken backend.
struct ShortBatch(MemoryStore);

impl SharedState for ShortBatch {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoredRecord>> {
        self.0.load(key)
    }

    fn load_many<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, Vec<Option<StoredRecord>>> {
        Box::pin(async move {
            let mut records = self.0.load_many(keys).await?;
            records.pop();
            Ok(records)
        })
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        body: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'a, CasOutcome> {
        self.0.compare_and_set(key, expected, body, ttl)
    }
}

#[tokio::test(start_paused = true)]
async fn hostile_keys_and_answers_are_refused_not_trusted() {
    // Names from request data at the registry's longest: the record key would pass 512
    // bytes, so the circuit stays local-only (counted), and the others are shared.
    let registry = CircuitBreakerRegistry::new();
    let fleet = RegistryFleet::builder(Arc::new(MemoryStore::new()), template(0))
        .manual()
        .attach(&registry)
        .unwrap();
    let long = "x".repeat(256);
    let circuit = registry.circuit(&long, &long, None);
    registry.circuit("svc", "op", None);
    let status = fleet.sync_now().await;
    assert_eq!((status.circuits, status.refused), (1, 1));
    assert!(circuit.call(async { Ok::<_, &str>(()) }).await.is_ok());

    // A store that answers a batch with the wrong number of records is not believed:
    // every circuit falls back to local-only, and calls go on.
    let registry = CircuitBreakerRegistry::new();
    let fleet = RegistryFleet::builder(Arc::new(ShortBatch(MemoryStore::new())), template(0))
        .manual()
        .attach(&registry)
        .unwrap();
    let circuits = six(&registry);
    let status = fleet.sync_now().await;
    assert_eq!(status.mode, FleetMode::LocalOnly);
    let one = fleet.circuit_status("svc", "PutItem").unwrap();
    assert_eq!(one.mode, FleetMode::LocalOnly);
    assert!(one.last_error.is_some_and(|e| {
        e.to_string()
            .contains("load_many returned 5 records for 6 keys")
    }));
    assert!(circuits[0].call(async { Ok::<_, &str>(()) }).await.is_ok());
}
