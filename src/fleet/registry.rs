//! Fleet sharing for a whole [`CircuitBreakerRegistry`]: every circuit it makes (or those a
//! filter picks) shares its state with the fleet, through one store, one background task
//! per process and one batched read per round.

use super::config::FleetConfig;
use super::store::SharedState;
use super::sync::{FleetMode, FleetStatus, FleetSync, guarded};
use crate::config::ConfigError;
use crate::registry::WeakRegistry;
use crate::{Circuit, CircuitBreakerRegistry};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Which circuits a [`RegistryFleet`] shares, by `(service, operation)`.
type Filter = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Circuits shared by default at most ([`RegistryFleetBuilder::max_circuits`]).
const DEFAULT_MAX_CIRCUITS: usize = 1_000;

/// Every circuit of a [`CircuitBreakerRegistry`] shared with the fleet: one line at
/// start-up, one background task per process, one batched store read per round.
///
/// Made by [`CircuitBreakerRegistry::share_with_fleet`] (or [`RegistryFleet::builder`]
/// for a filter or a Lambda function's manual mode). The registry keeps it for its own
/// lifetime: the returned handle is for [`refresh`](Self::refresh) and
/// [`status`](Self::status), and may be dropped.
///
/// * **Which circuits**: every circuit the registry holds now and every one it makes
///   later, whose `(service, operation)` passes the [filter](RegistryFleetBuilder::filter),
///   up to [`max_circuits`](RegistryFleetBuilder::max_circuits) at a time; not the
///   registry's overflow circuit (it serves unrelated keys). A circuit evicted from the
///   registry as idle leaves the fleet at the next round (its record is left to expire).
/// * **Keys**: the template's key is the fleet's prefix; circuit `(service, operation)`
///   uses the record `"{prefix}/{service}/{operation}"`. Every other setting (cache
///   period, adoption rule, instance id, store timeout and breaker) is the template's,
///   for every circuit. A key longer than 512 bytes is not shared (logged).
/// * **Rounds**: one round reads every shared circuit's record with one
///   [`SharedState::load_many`] (Redis `MGET`, DynamoDB `BatchGetItem`), then runs each
///   circuit's usual exchange on what it read (see [`FleetSync`]): it writes only the
///   records that changed, by compare-and-set, and re-reads a record alone only after
///   a conflict. A background task runs a round every cache period and soon after any
///   circuit's transition; the store's timeout and breaker are shared by all circuits.
/// * **Lambda**: build with [`manual`](RegistryFleetBuilder::manual) and call
///   [`refresh`](Self::refresh) at the start of each invocation.
///
/// ```
/// use std::sync::Arc;
/// use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry};
/// use tower_circuit_breaker::fleet::{FleetConfig, FleetMode, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = Arc::new(MemoryStore::new());
/// let registry = CircuitBreakerRegistry::new();
/// // The one line: every circuit of the registry, now and later, shares its state.
/// let fleet = registry
///     .share_with_fleet(store.clone(), FleetConfig::builder("myapp/prod").build().unwrap())
///     .unwrap();
/// registry.circuit("dynamodb", "PutItem", &CircuitBreakerConfig::dynamodb());
/// registry.circuit("cognito", "verifyJWT", &CircuitBreakerConfig::cognito());
/// let status = fleet.sync_now().await;
/// assert_eq!((status.circuits, status.mode), (2, FleetMode::Shared));
/// assert_eq!(store.operations(), 1); // both records read at once; nothing to write yet
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RegistryFleet {
    shared: Arc<Shared>,
}

/// Builds a [`RegistryFleet`]; see [`RegistryFleet::builder`].
#[derive(Clone)]
pub struct RegistryFleetBuilder {
    store: Arc<dyn SharedState>,
    template: FleetConfig,
    filter: Option<Filter>,
    background: bool,
    max_circuits: usize,
}

impl std::fmt::Debug for RegistryFleetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryFleetBuilder")
            .field("prefix", &self.template.key)
            .field("filtered", &self.filter.is_some())
            .field("background", &self.background)
            .field("max_circuits", &self.max_circuits)
            .finish_non_exhaustive()
    }
}

/// What a [`RegistryFleet`] knows, from its last round.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RegistryFleetStatus {
    /// Circuits shared now.
    pub circuits: usize,
    /// Sharing or local-only, by the last round's batched read (`Starting` before it).
    pub mode: FleetMode,
    /// Rounds run.
    pub rounds: u64,
    /// Circuits that asked to be shared but were not: over `max_circuits`, or a record
    /// key over 512 bytes.
    pub refused: u64,
    /// Circuits that left the fleet because the registry evicted them.
    pub evicted: u64,
}

struct Shared {
    store: Arc<dyn SharedState>,
    template: FleetConfig,
    filter: Option<Filter>,
    max_circuits: usize,
    store_circuit: Circuit,
    wake: Arc<Notify>,
    registry: WeakRegistry,
    members: Mutex<BTreeMap<String, Member>>,
    /// One round at a time; when the last one ran.
    round: tokio::sync::Mutex<Option<Instant>>,
    mode: Mutex<FleetMode>,
    rounds: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    task: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Clone)]
struct Member {
    service: String,
    operation: String,
    sync: FleetSync,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryFleet")
            .field("prefix", &self.template.key)
            .field("circuits", &self.members().len())
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl RegistryFleet {
    /// A builder sharing through `store`, with `template`'s settings for every circuit
    /// and its key as the fleet's prefix.
    pub fn builder(store: Arc<dyn SharedState>, template: FleetConfig) -> RegistryFleetBuilder {
        RegistryFleetBuilder {
            store,
            template,
            filter: None,
            background: true,
            max_circuits: DEFAULT_MAX_CIRCUITS,
        }
    }

    /// The fleet `registry` shares its circuits with, if any.
    pub fn of(registry: &CircuitBreakerRegistry) -> Option<RegistryFleet> {
        let shared = registry.extension()?.clone().downcast::<Shared>().ok()?;
        Some(RegistryFleet { shared })
    }

    /// Runs a round now: one batched read of every shared circuit's record, then each
    /// circuit's publish and adoption. Never fails: store errors put the circuits in
    /// local-only mode.
    pub async fn sync_now(&self) -> RegistryFleetStatus {
        self.shared.round().await;
        self.status()
    }

    /// Like [`sync_now`](Self::sync_now), but only when the last round is older than the
    /// cache period: the call for the start of every Lambda invocation.
    pub async fn refresh(&self) -> RegistryFleetStatus {
        let stale = self
            .shared
            .round
            .lock()
            .await
            .is_none_or(|t| t.elapsed() >= self.shared.template.cache_period);
        if stale {
            self.shared.round().await;
        }
        self.status()
    }

    /// What the fleet knows (no I/O).
    pub fn status(&self) -> RegistryFleetStatus {
        RegistryFleetStatus {
            circuits: self.shared.members().len(),
            mode: *self.shared.mode.lock().unwrap_or_else(|e| e.into_inner()),
            rounds: self.shared.rounds.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            evicted: self.shared.evicted.load(Ordering::Relaxed),
        }
    }

    /// The fleet status of the circuit of `(service, operation)`, when it is shared.
    pub fn circuit_status(&self, service: &str, operation: &str) -> Option<FleetStatus> {
        let key = self.shared.key(service, operation);
        self.shared.members().get(&key).map(|m| m.sync.status())
    }

    /// The template every circuit's settings come from.
    pub fn template(&self) -> &FleetConfig {
        &self.shared.template
    }
}

impl RegistryFleetBuilder {
    /// Shares only the circuits for which `filter(service, operation)` is true (default:
    /// all).
    pub fn filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&str, &str) -> bool + Send + Sync + 'static,
    {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// No background task: state is exchanged only when you call
    /// [`RegistryFleet::refresh`] or [`RegistryFleet::sync_now`] (a frozen Lambda
    /// sandbox runs no task between invocations).
    pub fn manual(mut self) -> Self {
        self.background = false;
        self
    }

    /// Circuits shared at most at one time (default 1 000); later ones stay local-only
    /// (counted in [`RegistryFleetStatus::refused`]), so keys made from request data
    /// cannot grow the fleet's store traffic without bound.
    pub fn max_circuits(mut self, max: usize) -> Self {
        self.max_circuits = max;
        self
    }

    /// Shares `registry`'s circuits, present and future; the registry keeps the fleet for
    /// its lifetime. A background fleet starts its one task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on field `registry` when the registry already shares with a
    /// fleet, on `runtime` when a background fleet is started outside a tokio runtime,
    /// or on `max_circuits` when it is 0.
    pub fn attach(self, registry: &CircuitBreakerRegistry) -> Result<RegistryFleet, ConfigError> {
        if self.max_circuits == 0 {
            return Err(ConfigError::new("max_circuits", "must be at least 1"));
        }
        let runtime = match (self.background, tokio::runtime::Handle::try_current()) {
            (true, Ok(handle)) => Some(handle),
            (true, Err(_)) => {
                return Err(ConfigError::new(
                    "runtime",
                    "a background fleet starts its task on a tokio runtime: attach it inside one, or build it manual()",
                ));
            }
            (false, _) => None,
        };
        let shared = Arc::new(Shared {
            store_circuit: Circuit::named(
                format!("fleet-store/{}", self.template.key),
                self.template.store_breaker.clone(),
            ),
            store: self.store,
            template: self.template,
            filter: self.filter,
            max_circuits: self.max_circuits,
            wake: Arc::new(Notify::new()),
            registry: registry.downgrade(),
            members: Mutex::new(BTreeMap::new()),
            round: tokio::sync::Mutex::new(None),
            mode: Mutex::new(FleetMode::Starting),
            rounds: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            task: Mutex::new(None),
        });
        if !registry.set_extension(shared.clone()) {
            return Err(ConfigError::new("registry", "already shares with a fleet"));
        }
        let weak = Arc::downgrade(&shared);
        registry.on_create(Arc::new(move |service, operation, circuit| {
            if let Some(shared) = weak.upgrade() {
                shared.join(service, operation, circuit);
            }
        }));
        if let Some(runtime) = runtime {
            let task = runtime.spawn(run(Arc::downgrade(&shared), shared.wake.clone()));
            *shared.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        }
        Ok(RegistryFleet { shared })
    }
}

impl CircuitBreakerRegistry {
    /// Shares every circuit of this registry, present and future, with the fleet through
    /// `store`, with `template`'s settings and its key as the fleet's prefix: one
    /// background task for the whole registry. See [`RegistryFleet`]; for a filter, a
    /// limit or a Lambda function's manual mode use [`RegistryFleet::builder`].
    ///
    /// # Errors
    ///
    /// As [`RegistryFleetBuilder::attach`].
    pub fn share_with_fleet(
        &self,
        store: Arc<dyn SharedState>,
        template: FleetConfig,
    ) -> Result<RegistryFleet, ConfigError> {
        RegistryFleet::builder(store, template).attach(self)
    }
}

impl Shared {
    fn members(&self) -> MutexGuard<'_, BTreeMap<String, Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, service: &str, operation: &str) -> String {
        format!("{}/{service}/{operation}", self.template.key)
    }

    /// A circuit the registry made (inside its table lock: no registry call here).
    fn join(&self, service: &str, operation: &str, circuit: &Circuit) {
        if self.filter.as_ref().is_some_and(|f| !f(service, operation)) {
            return;
        }
        let key = self.key(service, operation);
        let mut members = self.members();
        // A key evicted and made again replaces its old member.
        let replaces = members.remove(&key).is_some();
        if key.len() > 512 || members.len() >= self.max_circuits {
            let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused_total = refused,
                    max_circuits = self.max_circuits,
                    "registry fleet: a circuit stays local-only (too many shared circuits, or a record key over 512 bytes; logged on the 1st, 2nd, 4th, ... refusal)"
                );
            }
            return;
        }
        let mut config = self.template.clone();
        config.key = key.clone();
        match FleetSync::member(
            circuit,
            self.store.clone(),
            config,
            self.store_circuit.clone(),
            self.wake.clone(),
        ) {
            Ok(sync) => {
                members.insert(
                    key,
                    Member {
                        service: service.to_owned(),
                        operation: operation.to_owned(),
                        sync,
                    },
                );
                if !replaces {
                    self.wake.notify_one();
                }
            }
            Err(e) => tracing::warn!(
                circuit = %circuit.name(),
                error = %e,
                "registry fleet: circuit not shared"
            ),
        }
    }

    /// Drops the members whose circuit the registry no longer holds. The registry is
    /// asked with the members' lock released: it calls [`join`](Self::join) under its
    /// own table lock, so holding ours while asking it could deadlock.
    fn leave_evicted(&self) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let members: Vec<(String, Member)> = self
            .members()
            .iter()
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        let gone: Vec<(String, Circuit)> = members
            .into_iter()
            .filter(|(_, m)| !registry.holds(&m.service, &m.operation, m.sync.circuit()))
            .map(|(k, m)| (k, m.sync.circuit().clone()))
            .collect();
        if gone.is_empty() {
            return;
        }
        let mut members = self.members();
        for (key, circuit) in gone {
            // Only if the key was not joined meanwhile by its new circuit.
            if members
                .get(&key)
                .is_some_and(|m| m.sync.circuit().ptr_eq(&circuit))
            {
                members.remove(&key);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn round(&self) {
        let mut last = self.round.lock().await;
        *last = Some(Instant::now());
        self.rounds.fetch_add(1, Ordering::Relaxed);
        self.leave_evicted();
        let members: Vec<(String, FleetSync)> = self
            .members()
            .iter()
            .map(|(k, m)| (k.clone(), m.sync.clone()))
            .collect();
        if members.is_empty() {
            return;
        }
        let keys: Vec<String> = members.iter().map(|(k, _)| k.clone()).collect();
        let read = guarded(
            &self.store_circuit,
            self.template.store_timeout,
            self.store.load_many(&keys),
        )
        .await
        .and_then(|records| {
            if records.len() == keys.len() {
                Ok(records)
            } else {
                Err(super::StoreError::new(
                    super::StoreErrorKind::Other,
                    format!(
                        "load_many returned {} records for {} keys",
                        records.len(),
                        keys.len()
                    ),
                ))
            }
        });
        let mode = match &read {
            Ok(_) => FleetMode::Shared,
            Err(_) => FleetMode::LocalOnly,
        };
        match read {
            Ok(records) => {
                for ((_, sync), record) in members.iter().zip(records) {
                    sync.sync_with(Ok(record)).await;
                }
            }
            Err(e) => {
                for (_, sync) in &members {
                    sync.sync_with(Err(e.clone())).await;
                }
            }
        }
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }
}

/// The one background task: a round every cache period, and soon after any shared
/// circuit's transition (at most once per tenth of the period).
async fn run(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let period = s.template.cache_period;
        s.round().await;
        drop(s);
        let woken = tokio::time::timeout(period, wake.notified()).await.is_ok();
        if woken {
            tokio::time::sleep(period / 10).await;
        }
    }
}
