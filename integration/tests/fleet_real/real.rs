//! The scenarios against real stores: Redis (`REDIS_URL`), a 3-node Redis Cluster
//! (`REDIS_CLUSTER_URLS`) and DynamoDB on moto (`MOTO_ENDPOINT`), all started by
//! `scripts/test`. Without them these tests skip with a
//! loud banner; under `TCB_AWS_INTEGRATION=1` (scripts/test, CI) a missing server fails.
//!
//! The circuits and syncs run on the test's paused clock, the store's network I/O on a
//! real-time runtime of its own ([`Bridged`]): a paused runtime jumps to its next timer
//! whenever it would wait, so a store call awaited on it directly would see its own
//! timeouts fire at once. The syncs are driven by the test (`sync_now`, no background
//! task, no sync-side store timeout), so while a store call is in flight the paused
//! runtime has no timer to jump to and simply waits for the answer. The stores keep their
//! own operation timeouts, in real time.

use super::scenarios::{self, Mode, fresh_key, trip};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use support::env_or_skip;
use tower_circuit_breaker::fleet::{
    CasOutcome, FleetConfig, FleetMode, FleetSync, SharedState, StoreError, StoreFuture,
    StoredRecord,
};
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitState};

/// A real-time runtime for the stores' I/O, alive for the whole test binary.
fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("io runtime")
    })
}

/// Runs `fut` on the real-time runtime and waits for it from wherever.
async fn on_io<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    io_runtime().spawn(fut).await.expect("io task panicked")
}

/// A store whose calls run on [`io_runtime`]. With `one_at_a_time`, one call is in
/// flight at once: moto does not make a conditional write atomic against a concurrent one
/// (its server is threaded and takes no lock), so for moto the writers' reads and writes
/// still interleave, and conflict, but two writes never race inside the server.
struct Bridged {
    store: Arc<dyn SharedState>,
    one_at_a_time: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl SharedState for Bridged {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoredRecord>> {
        let (store, key) = (self.store.clone(), key.to_owned());
        self.run(async move { store.load(&key).await })
    }

    /// Forwarded, so the backend's batched read (`MGET`, `BatchGetItem`) is the one used.
    fn load_many<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, Vec<Option<StoredRecord>>> {
        self.load_many_bridged(keys)
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        body: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'a, CasOutcome> {
        let (store, key) = (self.store.clone(), key.to_owned());
        self.run(async move { store.compare_and_set(&key, expected, body, ttl).await })
    }
}

impl Bridged {
    fn load_many_bridged(
        &self,
        keys: &[String],
    ) -> StoreFuture<'static, Vec<Option<StoredRecord>>> {
        let (store, keys) = (self.store.clone(), keys.to_vec());
        self.run(async move { store.load_many(&keys).await })
    }

    /// Runs one store call on the I/O runtime, in turn when calls go one at a time.
    fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let gate = self.one_at_a_time.clone();
        Box::pin(on_io(async move {
            let _turn = match &gate {
                Some(g) => Some(g.lock().await),
                None => None,
            };
            call.await
        }))
    }
}

fn bridged(store: impl SharedState, one_at_a_time: bool) -> Arc<dyn SharedState> {
    Arc::new(Bridged {
        store: Arc::new(store),
        one_at_a_time: one_at_a_time.then(|| Arc::new(tokio::sync::Mutex::new(()))),
    })
}

async fn redis(test: &str) -> Option<Arc<dyn SharedState>> {
    use tower_circuit_breaker::fleet::RedisStore;
    let url = env_or_skip("REDIS_URL", test)?;
    let store = on_io(async move { RedisStore::connect(&url).await })
        .await
        .expect("connect to REDIS_URL");
    Some(bridged(store, false))
}

/// A store on the 3-node Redis Cluster of `scripts/test` (`REDIS_CLUSTER_URLS`).
async fn redis_cluster(test: &str) -> Option<Arc<dyn SharedState>> {
    use tower_circuit_breaker::fleet::RedisStore;
    let urls = env_or_skip("REDIS_CLUSTER_URLS", test)?;
    let store = on_io(async move { RedisStore::cluster_builder(urls.split(',')).connect().await })
        .await
        .expect("connect to REDIS_CLUSTER_URLS");
    Some(bridged(store, false))
}

async fn dynamodb(test: &str) -> Option<Arc<dyn SharedState>> {
    let endpoint = env_or_skip("MOTO_ENDPOINT", test)?;
    Some(bridged(dynamodb_at(endpoint).await, true))
}

/// A `DynamoDbStore` on a new table of the moto at `endpoint`.
async fn dynamodb_at(endpoint: String) -> tower_circuit_breaker::fleet::DynamoDbStore {
    use tower_circuit_breaker::fleet::DynamoDbStore;
    on_io(async move {
        let client = aws_sdk_dynamodb::Client::new(&support::sdk_config(
            &endpoint,
            Some(Duration::from_secs(5)),
        ));
        let table = support::unique_name("tcb-fleet");
        DynamoDbStore::create_table(&client, &table)
            .await
            .expect("create table on moto");
        DynamoDbStore::new(client, table)
    })
    .await
}

macro_rules! scenario_tests {
    ($store:ident: $($test:ident => $scenario:ident,)*) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $test() {
                let Some(store) = $store(stringify!($test)).await else { return };
                scenarios::$scenario(store, Mode::Manual).await;
            }
        )*
    };
}

scenario_tests! { redis:
    redis_peers_adopt_a_quorum_open => quorum_open_is_adopted,
    redis_one_noisy_instance_stays_alone => noisy_instance_stays_alone,
    redis_fleet_volume_opens => fleet_volume_opens,
    redis_healthy_majority_dilutes => healthy_majority_dilutes_the_failure_rate,
    redis_probes_are_leased_fleet_wide => probes_are_leased_fleet_wide,
    redis_conflicts_never_lose_a_transition => concurrent_trips_all_published,
    redis_cold_start_adopts => cold_start_adopts,
}

// Issue 14, section 3: the fleet on a Redis Cluster.
scenario_tests! { redis_cluster:
    redis_cluster_peers_adopt_a_quorum_open => quorum_open_is_adopted,
    redis_cluster_fleet_volume_opens => fleet_volume_opens,
    redis_cluster_probes_are_leased_fleet_wide => probes_are_leased_fleet_wide,
    redis_cluster_conflicts_never_lose_a_transition => concurrent_trips_all_published,
}

// Issue 14, section 4: a slow dependency, through real stores.
macro_rules! slow_tests {
    ($store:ident: $($test:ident => $scenario:ident,)*) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $test() {
                let Some(store) = $store(stringify!($test)).await else { return };
                super::slow::$scenario(store, Mode::Manual).await;
            }
        )*
    };
}

slow_tests! { redis:
    redis_slow_calls_are_failure_evidence => slow_calls_are_failure_evidence,
    redis_slow_call_rate_opens_the_fleet => slow_call_rate_opens_the_fleet,
    redis_slow_trips_make_a_quorum => slow_trips_make_a_quorum,
}

slow_tests! { dynamodb:
    dynamodb_slow_calls_are_failure_evidence => slow_calls_are_failure_evidence,
}

#[tokio::test(start_paused = true)]
async fn redis_registry_shares_every_circuit() {
    let Some(store) = redis("redis_registry_shares_every_circuit").await else {
        return;
    };
    scenarios::registry_shares_every_circuit(store).await;
}

#[tokio::test(start_paused = true)]
async fn dynamodb_registry_shares_every_circuit() {
    let Some(store) = dynamodb("dynamodb_registry_shares_every_circuit").await else {
        return;
    };
    scenarios::registry_shares_every_circuit(store).await;
}

scenario_tests! { dynamodb:
    dynamodb_peers_adopt_a_quorum_open => quorum_open_is_adopted,
    dynamodb_one_noisy_instance_stays_alone => noisy_instance_stays_alone,
    dynamodb_fleet_volume_opens => fleet_volume_opens,
    dynamodb_healthy_majority_dilutes => healthy_majority_dilutes_the_failure_rate,
    dynamodb_probes_are_leased_fleet_wide => probes_are_leased_fleet_wide,
    dynamodb_conflicts_never_lose_a_transition => concurrent_trips_all_published,
    dynamodb_cold_start_adopts => cold_start_adopts,
}

macro_rules! hostile_tests {
    ($store:ident: $($test:ident => $scenario:ident,)*) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $test() {
                let Some(store) = $store(stringify!($test)).await else { return };
                super::hostile::$scenario(store, Mode::Manual).await;
            }
        )*
    };
}

// Issue 11, section 1: crafted records in a real Redis.
hostile_tests! { redis:
    redis_forged_open_without_reports_opens_nobody => forged_open_without_evidence,
    redis_endless_fleet_break_is_cut => endless_break_is_cut_to_the_local_longest,
    redis_writer_30_days_ahead_is_clamped => writer_30_days_ahead_is_clamped,
    redis_reports_from_the_future_are_no_evidence => reports_from_the_future_are_no_evidence,
    redis_endless_lease_is_dropped => endless_lease_is_dropped,
    redis_reset_is_not_undone_by_the_next_sync => a_reset_is_not_undone_by_the_next_sync,
}

// ===== separate processes =====

const CHILD_KEY: &str = "TCB_FLEET_CHILD_KEY";
const CHILD_ID: &str = "TCB_FLEET_CHILD_ID";

/// Runs only as a child of `redis_separate_processes_share_the_fleet` (which sets
/// `TCB_FLEET_CHILD_KEY`): one sandbox in its own process that trips on its own traffic and
/// publishes it. Real time, no timers: nothing to wait for.
#[tokio::test]
async fn redis_child_sandbox() {
    let (Ok(key), Ok(id)) = (std::env::var(CHILD_KEY), std::env::var(CHILD_ID)) else {
        return;
    };
    let url = std::env::var("REDIS_URL").expect("REDIS_URL in the child");
    let store = tower_circuit_breaker::fleet::RedisStore::connect(&url)
        .await
        .expect("connect");
    let circuit = Circuit::named("dynamodb/PutItem", CircuitBreakerConfig::dynamodb());
    let config = FleetConfig::builder(key)
        .instance_id(format!("process-{id}-{}", std::process::id()))
        .build()
        .unwrap();
    let sync = FleetSync::manual(&circuit, Arc::new(store), config).unwrap();
    trip(&circuit).await;
    let status = sync.sync_now().await;
    assert_eq!(status.mode, FleetMode::Shared, "{status:?}");
    assert!(status.writes >= 1);
    println!("child sandbox {id}: tripped and published");
}

#[tokio::test(start_paused = true)]
async fn redis_separate_processes_share_the_fleet() {
    if std::env::var(CHILD_KEY).is_ok() {
        return;
    }
    let Some(store) = redis("redis_separate_processes_share_the_fleet").await else {
        return;
    };
    let key = fresh_key("processes");
    let child = |id: u32| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "real::redis_child_sandbox", "--nocapture"])
            .env(CHILD_KEY, &key)
            .env(CHILD_ID, id.to_string())
            .output()
            .expect("run the child test process");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("tripped and published"),
            "child {id} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let circuit = Circuit::named("dynamodb/PutItem", CircuitBreakerConfig::dynamodb());
    let config = FleetConfig::builder(key.clone())
        .store_timeout(None)
        .build()
        .unwrap();
    let sync = FleetSync::manual(&circuit, store, config).unwrap();

    // One sick process is no quorum.
    child(1);
    let status = sync.sync_now().await;
    assert_eq!(status.open_instances, 1);
    assert_eq!(circuit.state(), CircuitState::Closed);
    // A second one is: this process, which never saw a failure, adopts the fleet's Open.
    child(2);
    let status = sync.sync_now().await;
    assert_eq!(status.open_instances, 2);
    assert_eq!(status.adopted_opens, 1);
    assert_eq!(circuit.state(), CircuitState::Open);
}

// ===== a store that dies and comes back =====

/// Redis: a redis-server of the test's own, killed (SIGKILL) mid-run and restarted empty on
/// the same port.
#[tokio::test(start_paused = true)]
async fn redis_killed_mid_run_then_restarted() {
    use support::redis_server::RedisServer;
    use tower_circuit_breaker::fleet::RedisStore;
    let test = "redis_killed_mid_run_then_restarted";
    let Some(bin) = env_or_skip("REDIS_SERVER_BIN", test) else {
        return;
    };
    let server = Arc::new(tokio::sync::Mutex::new(
        on_io(async move { RedisServer::start(&bin, None).await }).await,
    ));
    let url = server.lock().await.url();
    let store = on_io(async move {
        RedisStore::builder(&url)
            .operation_timeout(Duration::from_secs(2))
            .connect()
            .await
    })
    .await
    .expect("connect to the test's redis-server");
    let (kill, revive) = (server.clone(), server.clone());
    scenarios::store_dies_and_comes_back(
        bridged(store, false),
        async move { kill.lock().await.kill() },
        async move { on_io(async move { revive.lock().await.restart().await }).await },
    )
    .await;
}

/// DynamoDB: moto behind a TCP proxy that drops every connection while "down" (moto
/// itself serves every other test and cannot be killed).
#[tokio::test(start_paused = true)]
async fn dynamodb_unreachable_mid_run_then_back() {
    use support::FaultProxy;
    let test = "dynamodb_unreachable_mid_run_then_back";
    let Some(endpoint) = env_or_skip("MOTO_ENDPOINT", test) else {
        return;
    };
    let upstream: std::net::SocketAddr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("MOTO_ENDPOINT is http://HOST:PORT");
    let proxy = Arc::new(on_io(async move { FaultProxy::start(upstream).await }).await);
    let store = dynamodb_at(proxy.url()).await;
    let (kill, revive) = (proxy.clone(), proxy.clone());
    scenarios::store_dies_and_comes_back(
        bridged(store, true),
        async move { kill.set_down(true) },
        async move { revive.set_down(false) },
    )
    .await;
}
