//! The scenarios, written once and run against every store: the in-process
//! `MemoryStore` with background syncs, and real stores with syncs driven by the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::sleep;
use tower_circuit_breaker::fleet::{
    FleetConfig, FleetConfigBuilder, FleetState, FleetSync, SharedState,
};
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitState};

/// How the syncs run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub enum Mode {
    /// Each sync's background task (stores without network I/O).
    Background,
    /// The test calls `sync_now` on every sandbox once per cache period. For real stores:
    /// a paused clock would jump over any timer while a socket is awaited, so these run
    /// without background tasks and without a store timeout.
    Manual,
}

pub struct Sandbox {
    pub circuit: Circuit,
    pub sync: FleetSync,
}

pub struct Harness {
    pub sandboxes: Vec<Sandbox>,
    store: Arc<dyn SharedState>,
    mode: Mode,
    circuit_config: CircuitBreakerConfig,
    fleet: FleetConfig,
    calls: Arc<AtomicU64>,
    pub down: Arc<AtomicBool>,
    /// The wall clock (epoch ms) and tokio instant at the start: the syncs' clocks are
    /// anchored the same way, so `now_ms` is their "now".
    origin: (u64, tokio::time::Instant),
}

/// The DynamoDB preset (3 failures among at least 5 calls, 20 s break) with this many
/// half-open probes.
pub fn dynamodb(half_open: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig::dynamodb()
        .to_builder()
        .half_open_max_calls(half_open)
        .build()
        .unwrap()
}

/// A key no earlier run has used (real stores keep records between runs).
pub fn fresh_key(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tcb-test/{name}/{}-{nanos}", std::process::id())
}

/// Five failures: enough for the preset to trip on its own.
pub async fn trip(c: &Circuit) {
    for _ in 0..5 {
        let _ = c.call(async { Err::<(), _>("dependency down") }).await;
    }
    assert_eq!(c.state(), CircuitState::Open);
}

impl Harness {
    pub fn start(store: Arc<dyn SharedState>, n: usize, config: CircuitBreakerConfig) -> Self {
        Self::new(store, Mode::Background, n, config, |b| b)
    }

    pub fn new(
        store: Arc<dyn SharedState>,
        mode: Mode,
        n: usize,
        circuit_config: CircuitBreakerConfig,
        tweak: impl Fn(FleetConfigBuilder) -> FleetConfigBuilder,
    ) -> Self {
        let mut fleet =
            FleetConfig::builder(fresh_key("scenario")).cache_period(Duration::from_secs(1));
        if mode == Mode::Manual {
            fleet = fleet.store_timeout(None);
        }
        let fleet = tweak(fleet).build().unwrap();
        let mut h = Harness {
            sandboxes: Vec::new(),
            store,
            mode,
            circuit_config,
            fleet,
            calls: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicBool::new(false)),
            origin: (
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64,
                tokio::time::Instant::now(),
            ),
        };
        for _ in 0..n {
            let s = h.sandbox();
            h.sandboxes.push(s);
        }
        h
    }

    /// A new sandbox (a cold start) on the same fleet.
    pub fn sandbox(&self) -> Sandbox {
        self.sandbox_on(self.store.clone())
    }

    /// A new sandbox on the same fleet that sees the store through `store` (a view of the
    /// shared store: a skewed clock, a fault).
    pub fn sandbox_on(&self, store: Arc<dyn SharedState>) -> Sandbox {
        let i = self.sandboxes.len();
        let circuit = Circuit::named("dynamodb/PutItem", self.circuit_config.clone());
        let config = self
            .fleet
            .to_builder()
            .instance_id(format!("sandbox-{i}-{}", self.fleet.instance_id()))
            .build()
            .unwrap();
        let sync = match self.mode {
            Mode::Background => FleetSync::start(&circuit, store, config),
            Mode::Manual => FleetSync::manual(&circuit, store, config),
        }
        .unwrap();
        Sandbox { circuit, sync }
    }

    /// The store key of this fleet's circuit.
    pub fn key(&self) -> &str {
        self.fleet.key()
    }

    /// The shared store.
    #[allow(dead_code)]
    pub fn store(&self) -> &Arc<dyn SharedState> {
        &self.store
    }

    /// The syncs' wall clock now, epoch milliseconds.
    #[allow(dead_code)]
    pub fn now_ms(&self) -> u64 {
        self.origin.0 + self.origin.1.elapsed().as_millis() as u64
    }

    pub fn cache_period(&self) -> Duration {
        self.fleet.cache_period()
    }

    /// One cache period: every sandbox exchanges state once.
    pub async fn tick(&self) {
        // A millisecond past the period, so a background round due at the same instant
        // as the test's wake-up has run.
        sleep(self.cache_period() + Duration::from_millis(1)).await;
        if self.mode == Mode::Manual {
            for s in &self.sandboxes {
                s.sync.sync_now().await;
            }
        }
    }

    pub async fn warm_up(&self) {
        for s in &self.sandboxes {
            self.warm_up_one(&s.circuit).await;
        }
    }

    /// Five successful calls.
    pub async fn warm_up_one(&self, c: &Circuit) {
        for _ in 0..5 {
            assert!(self.succeed(c).await);
        }
    }

    /// One call to the dependency (failing while `down`); false when rejected.
    pub async fn call(&self, c: &Circuit) -> bool {
        let calls = self.calls.clone();
        let down = self.down.load(Ordering::Relaxed);
        c.call(async move {
            calls.fetch_add(1, Ordering::Relaxed);
            if down { Err("dependency down") } else { Ok(()) }
        })
        .await
        .map_or_else(|e| e.rejection().is_none(), |_| true)
    }

    pub async fn succeed(&self, c: &Circuit) -> bool {
        self.down.store(false, Ordering::Relaxed);
        self.call(c).await
    }

    pub fn dependency_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

pub async fn quorum_open_is_adopted(store: Arc<dyn SharedState>, mode: Mode) {
    let h = Harness::new(store, mode, 5, dynamodb(1), |b| b);
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    h.tick().await;
    assert_eq!(
        h.sandboxes[4].circuit.state(),
        CircuitState::Closed,
        "one is no quorum"
    );
    trip(&h.sandboxes[1].circuit).await;
    // Within one cache period every other sandbox is Open.
    h.tick().await;
    for s in &h.sandboxes[2..] {
        assert_eq!(s.circuit.state(), CircuitState::Open);
        let status = s.sync.status();
        assert_eq!(status.adopted_opens, 1);
        assert_eq!(status.fleet_state, Some(FleetState::Open));
        assert_eq!(status.open_instances, 2);
    }
    // Adopted for what is left of the fleet's break, not a fresh one.
    let fleet_until = h.sandboxes[2].sync.status().open_until.unwrap();
    let local_until = h.sandboxes[2].circuit.stats().next_attempt_time.unwrap();
    let gap = fleet_until
        .duration_since(local_until)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap();
    assert!(gap < Duration::from_millis(50), "{gap:?}");
}

pub async fn noisy_instance_stays_alone(store: Arc<dyn SharedState>, mode: Mode) {
    let h = Harness::new(store, mode, 5, dynamodb(1), |b| b);
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    for _ in 0..5 {
        h.tick().await;
        for s in &h.sandboxes[1..] {
            assert!(h.succeed(&s.circuit).await);
        }
    }
    assert_eq!(h.sandboxes[0].circuit.state(), CircuitState::Open);
    for s in &h.sandboxes[1..] {
        assert_eq!(s.circuit.state(), CircuitState::Closed);
        let status = s.sync.status();
        assert_eq!(status.adopted_opens, 0);
        assert_eq!(status.fleet_state, Some(FleetState::Closed));
    }
    assert_eq!(h.sandboxes[0].sync.status().open_instances, 1);
    // Its own break over, the sick sandbox probes alone: no fleet lease is needed.
    sleep(Duration::from_secs(20)).await;
    assert!(h.succeed(&h.sandboxes[0].circuit).await);
    assert_eq!(h.sandboxes[0].circuit.state(), CircuitState::Closed);
}

pub async fn fleet_volume_opens(store: Arc<dyn SharedState>, mode: Mode) {
    let h = Harness::new(store, mode, 10, dynamodb(1), |b| b);
    // Every sandbox sees 2 failures in 4 calls: none trips alone (3 in a row needed).
    for s in &h.sandboxes {
        for down in [false, true, false, true] {
            h.down.store(down, Ordering::Relaxed);
            assert!(h.call(&s.circuit).await);
        }
        assert_eq!(s.circuit.state(), CircuitState::Closed);
    }
    // Fleet-wide: 40 calls, 50 % failed, from 10 instances.
    h.tick().await;
    h.tick().await;
    for s in &h.sandboxes {
        assert_eq!(s.circuit.state(), CircuitState::Open);
        assert_eq!(s.sync.status().adopted_opens, 1);
        assert_eq!(s.sync.status().open_instances, 0);
    }
}

pub async fn healthy_majority_dilutes_the_failure_rate(store: Arc<dyn SharedState>, mode: Mode) {
    let h = Harness::new(store, mode, 50, dynamodb(1), |b| b);
    // 40 healthy sandboxes, 10 that see 2 failures in 4 calls: 240 calls, 8 % failed.
    for (i, s) in h.sandboxes.iter().enumerate() {
        if i < 40 {
            h.warm_up_one(&s.circuit).await;
        } else {
            for down in [false, true, false, true] {
                h.down.store(down, Ordering::Relaxed);
                assert!(h.call(&s.circuit).await);
            }
        }
    }
    for _ in 0..3 {
        h.tick().await;
    }
    for s in &h.sandboxes {
        assert_eq!(s.circuit.state(), CircuitState::Closed);
        assert_eq!(s.sync.status().fleet_state, Some(FleetState::Closed));
    }
    assert_eq!(h.sandboxes[0].sync.status().reporting_instances, 50);
}

pub async fn probes_are_leased_fleet_wide(store: Arc<dyn SharedState>, mode: Mode) {
    const HALF_OPEN: u32 = 2;
    let h = Harness::new(store, mode, 6, dynamodb(HALF_OPEN), |b| b);
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    h.tick().await;
    assert!(
        h.sandboxes
            .iter()
            .all(|s| s.circuit.state() == CircuitState::Open)
    );

    // Past the break, the dependency still down: every sandbox is called every period.
    sleep(Duration::from_secs(20)).await;
    h.down.store(true, Ordering::Relaxed);
    let before = h.dependency_calls();
    for _ in 0..8 {
        for s in &h.sandboxes {
            h.call(&s.circuit).await;
        }
        h.tick().await;
    }
    let probes = h.dependency_calls() - before;
    // One lease holder at a time probed, failed, and re-opened the fleet for everyone,
    // for its break divided among the 6 reporting sandboxes (20 s / 6 = 3.3 s): over
    // these 8 s the fleet probed more often than one sandbox would (once per 20 s), and
    // far less than 6 local circuits (6 probes, one each).
    assert!(
        (2..=3).contains(&probes),
        "probes fleet-wide after the first break: {probes}"
    );
    assert!(
        h.sandboxes
            .iter()
            .all(|s| s.circuit.state() == CircuitState::Open)
    );

    // The next break over, the dependency healthy: the holder's probes close the fleet.
    sleep(Duration::from_secs(20)).await;
    h.down.store(false, Ordering::Relaxed);
    let mut probes = 0;
    for _ in 0..8 {
        for s in &h.sandboxes {
            let was = s.circuit.state();
            let before = h.dependency_calls();
            h.call(&s.circuit).await;
            if was != CircuitState::Closed {
                probes += h.dependency_calls() - before;
            }
        }
        h.tick().await;
    }
    assert_eq!(
        probes,
        u64::from(HALF_OPEN),
        "probes fleet-wide after the second break"
    );
    assert!(
        h.sandboxes
            .iter()
            .all(|s| s.circuit.state() == CircuitState::Closed)
    );
    let followers = h
        .sandboxes
        .iter()
        .filter(|s| s.sync.status().adopted_closes == 1)
        .count();
    assert_eq!(followers, h.sandboxes.len() - 1);
}

pub async fn concurrent_trips_all_published(store: Arc<dyn SharedState>, mode: Mode) {
    const N: usize = 20;
    // No quorum is reachable: only the reports are under test.
    let h = Harness::new(store, mode, N, dynamodb(1), |b| {
        b.quorum(1000).min_fleet_requests(1_000_000)
    });
    for s in &h.sandboxes {
        trip(&s.circuit).await;
    }
    if mode == Mode::Manual {
        let rounds: Vec<_> = h
            .sandboxes
            .iter()
            .map(|s| {
                let sync = s.sync.clone();
                tokio::spawn(async move { sync.sync_now().await })
            })
            .collect();
        for r in rounds {
            r.await.unwrap();
        }
    }
    h.tick().await;
    h.tick().await;
    let conflicts: u64 = h.sandboxes.iter().map(|s| s.sync.status().conflicts).sum();
    assert!(conflicts > 0, "the test did not make writers conflict");
    for s in &h.sandboxes {
        assert_eq!(s.sync.status().open_instances, N as u32);
        assert_eq!(s.sync.status().fleet_state, Some(FleetState::Closed));
    }
}

pub async fn cold_start_adopts(store: Arc<dyn SharedState>, mode: Mode) {
    let h = Harness::new(store, mode, 3, dynamodb(1), |b| b);
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    h.tick().await;
    let cold = h.sandbox();
    assert_eq!(cold.circuit.state(), CircuitState::Closed);
    let status = cold.sync.sync_now().await;
    assert_eq!(cold.circuit.state(), CircuitState::Open);
    assert_eq!(status.adopted_opens, 1);
}

/// The store dies while the fleet is Open: every sandbox goes local-only (once), probes on
/// its own after the break, and keeps serving; the store comes back: the local recovery
/// is published (a transition made while the store was away is not lost) and sharing
/// resumes.
#[allow(dead_code)]
pub async fn store_dies_and_comes_back(
    store: Arc<dyn SharedState>,
    kill: impl std::future::Future<Output = ()>,
    revive: impl std::future::Future<Output = ()>,
) {
    let h = Harness::new(store, Mode::Manual, 4, dynamodb(1), |b| b);
    h.warm_up().await;
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    h.tick().await;
    assert_eq!(h.sandboxes[3].circuit.state(), CircuitState::Open);

    kill.await;
    for _ in 0..3 {
        h.tick().await;
    }
    for s in &h.sandboxes {
        let status = s.sync.status();
        assert_eq!(
            status.mode,
            tower_circuit_breaker::fleet::FleetMode::LocalOnly
        );
        assert_eq!(status.degradations, 1);
    }
    sleep(Duration::from_secs(20)).await;
    for _ in 0..3 {
        for s in &h.sandboxes {
            assert!(
                h.succeed(&s.circuit).await,
                "a call was blocked by a dead store"
            );
        }
        h.tick().await;
    }
    assert!(
        h.sandboxes
            .iter()
            .all(|s| s.circuit.state() == CircuitState::Closed)
    );

    revive.await;
    // Each sync's store breaker (5 s) lets it try again. A client may meet its dead
    // connection once more (the store reconnects after that failure, and the breaker
    // re-opens): a few breaks at most.
    for _ in 0..5 {
        sleep(Duration::from_secs(6)).await;
        h.tick().await;
        let shared =
            |s: &Sandbox| s.sync.status().mode == tower_circuit_breaker::fleet::FleetMode::Shared;
        if h.sandboxes.iter().all(shared) {
            break;
        }
    }
    h.tick().await;
    for s in &h.sandboxes {
        let status = s.sync.status();
        assert_eq!(status.mode, tower_circuit_breaker::fleet::FleetMode::Shared);
        assert_eq!(status.fleet_state, Some(FleetState::Closed), "{status:?}");
    }
    trip(&h.sandboxes[0].circuit).await;
    trip(&h.sandboxes[1].circuit).await;
    h.tick().await;
    assert_eq!(h.sandboxes[2].circuit.state(), CircuitState::Open);
    assert_eq!(h.sandboxes[2].sync.status().adopted_opens, 2);
}

/// Registry-wide sharing (manual rounds, one batched read each): three registries of six
/// circuits; two trip the same circuit, the third adopts the fleet's Open for that circuit
/// only.
pub async fn registry_shares_every_circuit(store: Arc<dyn SharedState>) {
    use tower_circuit_breaker::CircuitBreakerRegistry;
    use tower_circuit_breaker::fleet::{FleetMode, RegistryFleet};
    let prefix = fresh_key("registry");
    let operations = [
        "PutItem",
        "GetItem",
        "Query",
        "verifyJWT",
        "postToConnection",
        "Scan",
    ];
    let sandboxes: Vec<(RegistryFleet, Vec<Circuit>)> = (0..3)
        .map(|i| {
            let registry = CircuitBreakerRegistry::new();
            let template = FleetConfig::builder(prefix.clone())
                .instance_id(format!("sandbox-{i}"))
                .store_timeout(None)
                .build()
                .unwrap();
            let fleet = RegistryFleet::builder(store.clone(), template)
                .manual()
                .attach(&registry)
                .unwrap();
            let circuits = operations
                .iter()
                .map(|op| registry.circuit("svc", op, &dynamodb(1)))
                .collect();
            (fleet, circuits)
        })
        .collect();
    for (fleet, _) in &sandboxes {
        let status = fleet.sync_now().await;
        assert_eq!((status.circuits, status.mode), (6, FleetMode::Shared));
    }
    trip(&sandboxes[0].1[0]).await;
    trip(&sandboxes[1].1[0]).await;
    for _ in 0..2 {
        for (fleet, _) in &sandboxes {
            fleet.sync_now().await;
        }
    }
    let (fleet, circuits) = &sandboxes[2];
    assert_eq!(circuits[0].state(), CircuitState::Open);
    assert_eq!(
        fleet
            .circuit_status("svc", "PutItem")
            .unwrap()
            .adopted_opens,
        1
    );
    assert!(
        circuits[1..]
            .iter()
            .all(|c| c.state() == CircuitState::Closed)
    );
}
