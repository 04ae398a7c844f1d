//! Circuits keyed by `(service, operation)`: the seed's `CircuitBreakerService`.
//!
//! A backend rarely has one breaker. The seed keeps one per dependency operation —
//! `("cognito", "verifyJWT")`, `("dynamodb", "storeUserMessage")`,
//! `("apigateway-management", "postToConnection")` — creates each on first use with the
//! configuration passed at the call site, and runs every call with a fallback.
//! [`CircuitBreakerRegistry`] does that:
//!
//! ```
//! use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry};
//!
//! # #[allow(dead_code)]
//! #[derive(Debug, PartialEq)]
//! enum AuthError { Invalid, Unavailable }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let registry = CircuitBreakerRegistry::new();
//! let claims = registry
//!     .execute(
//!         "cognito",
//!         "verifyJWT",
//!         || async { Ok::<_, AuthError>("user-1") },
//!         // Cognito down means reject: an authentication fallback fails closed.
//!         |_cause| async { Err(AuthError::Unavailable) },
//!         &CircuitBreakerConfig::cognito(),
//!     )
//!     .await;
//! assert_eq!(claims, Ok("user-1"));
//! assert_eq!(registry.stats("cognito", "verifyJWT").unwrap().success_count, 1);
//! # }
//! ```
//!
//! # Which configuration a circuit gets
//!
//! A circuit is created on first use, once, even when many tasks ask at the same moment.
//! Its configuration is the one passed at the call site (or the registry's default when
//! none is), then the registry's per-key overrides on top — the service's, then the
//! operation's — see [`RegistryConfig`]. Later calls for an existing key do not compare
//! configurations: the call-site configuration counts only at creation. Change a live
//! circuit with [`CircuitBreakerRegistry::apply_config`] or [`Circuit::reconfigure`].
//!
//! # Limits
//!
//! Keys often come from data (an operation name per route, a tenant in a key), so the
//! registry bounds what data can make it hold; see [`RegistryLimits`]:
//!
//! * **Capacity** (default 10 000 circuits). A new key beyond it is served by the
//!   registry's one **overflow circuit** (key `("(overflow)", "(overflow)")`, see
//!   [`CircuitBreakerRegistry::overflow`]): [`execute`](CircuitBreakerRegistry::execute),
//!   [`circuit`](CircuitBreakerRegistry::circuit) and
//!   [`layer`](CircuitBreakerRegistry::layer) keep working, but every refused key shares
//!   that circuit's state, so failures of one can open it for all.
//!   [`try_circuit`](CircuitBreakerRegistry::try_circuit) returns the refusal instead, as
//!   a [`KeyRefused`]. Refusals are counted ([`CircuitBreakerRegistry::registry_stats`])
//!   and logged at warn level on the 1st, 2nd, 4th, 8th, … refusal, never once per key.
//! * **Name length** (default 256 bytes each for the service and the operation). A
//!   longer name is refused the same way, before it is hashed or copied.
//! * **Idle eviction** (default after 15 minutes). A circuit is *idle* when it is Closed
//!   with no manual override, its window is empty, no
//!   [`execute`](CircuitBreakerRegistry::execute) call is running through it, and no
//!   call has completed through it (nor was it created) for `idle_timeout`. Idle circuits
//!   leave the table lazily as new keys arrive (no timer, no task): the table has 64
//!   shards, and a shard is swept once per `n / 4 + 1` new keys that land in it, `n`
//!   being its size, so a new key costs at most four idle checks, amortised. A full
//!   table sweeps on the same schedule, so a new key may get the overflow circuit
//!   although idle circuits remain in shards not yet swept;
//!   [`CircuitBreakerRegistry::evict_idle`] sweeps every shard at once.
//!
//! Eviction forgets the circuit: its lifetime counts (successes, failures, rejections),
//! listeners attached to that [`Circuit`] itself (registry-wide listeners attach again
//! to the next circuit of the key) and changes made with [`Circuit::reconfigure`]. A
//! handle to it held elsewhere (a [`Circuit`], a [`CircuitBreakerLayer`], a call in
//! flight) keeps working on the evicted circuit; the next call for the key through the
//! registry creates a fresh one. A key used through a long-lived layer should therefore
//! keep a call going through the registry now and then, or hold the circuit in its own
//! right (build the layer from [`Circuit`] directly).
//!
//! # Cost
//!
//! Looking up an existing key hashes it once, takes the read lock of its thread's copy
//! of one of 64 shards, finds it in that hash table and counts one reference to its
//! thread's handle to the circuit for as long as the call runs. Lock and count are on
//! cache lines of the thread's stripe (one per core, at most 8), so threads calling one
//! key do not contend; nothing is allocated but a stripe's handle, on its first lookup
//! of the key. Creating a circuit takes the write locks of one shard's copies; the tables
//! grow, so lookups and inserts stay O(1) at a million keys (see `benches/registry.rs`).
//!
//! The lookup is most of `execute`'s cost: about three times a
//! [`Circuit::call`] on the same circuit (510 against 173 instructions per call in
//! BENCHMARKS.md). Where that matters, look the key up once with
//! [`circuit`](CircuitBreakerRegistry::circuit) and run calls through the [`Circuit`]
//! it returns, which keeps working if the key is evicted (see "Idle eviction" above).
//!
//! The hash is a fast multiply-rotate over 8-byte words, seeded at random per registry.
//! It is not built to resist keys chosen by an attacker: keys from request data are
//! bounded in number and length by the limits above, but a crafted set of keys could
//! still make one shard's chains long.

use crate::classify::{Classify, ErrorsAsFailures};
use crate::stats::TransitionEvent;
use crate::{Circuit, CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakerStats};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

mod apply;
mod config;
mod entry;
mod execute;
mod fallback;
mod limits;
mod table;
pub(crate) use config::key_path;
pub use config::{RegistryConfig, RegistryConfigError, ServiceOverrides};
use entry::{Entry, Handle, key_hash};
pub use fallback::{ExecuteFallback, FallbackCause, OnFailureToo, on_failure_too};
pub use limits::{KeyRefused, RegistryLimits, RegistryLimitsBuilder, RegistryStats};
use table::{Refusal, Table};

/// The key of the overflow circuit, which serves keys the registry refuses.
pub const OVERFLOW: &str = "(overflow)";

type Listener = Arc<dyn Fn(&TransitionEvent) + Send + Sync>;
/// Called with each new circuit's service, operation and circuit (inside the table's
/// write lock: it must not call back into the registry).
pub(crate) type CreateHook = Arc<dyn Fn(&str, &str, &Circuit) + Send + Sync>;

/// Circuits keyed by `(service, operation)`. See the [module docs](crate::registry).
///
/// Cheap to clone (an `Arc`); clones share every circuit.
#[derive(Clone)]
pub struct CircuitBreakerRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    seed: u64,
    table: Table,
    settings: RwLock<Settings>,
    /// The limits in force, readable without the settings lock.
    capacity: AtomicUsize,
    max_name_length: AtomicUsize,
    idle_ns: AtomicU64,
    refused_full: AtomicU64,
    refused_name: AtomicU64,
    evicted: AtomicU64,
    overflow: OnceLock<Circuit>,
    /// The last base configuration a circuit was created with: circuits created with an
    /// equal one share it.
    last_base: Mutex<Option<Arc<CircuitBreakerConfig>>>,
    /// What an edge attached to the registry for its lifetime (the fleet sharing).
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    extension: OnceLock<Arc<dyn std::any::Any + Send + Sync>>,
}

struct Settings {
    config: RegistryConfig,
    listeners: Vec<Listener>,
    created: Vec<CreateHook>,
}

/// A registry that does not keep it alive.
#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
#[derive(Clone)]
pub(crate) struct WeakRegistry(std::sync::Weak<Inner>);

#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
impl WeakRegistry {
    pub(crate) fn upgrade(&self) -> Option<CircuitBreakerRegistry> {
        self.0
            .upgrade()
            .map(|inner| CircuitBreakerRegistry { inner })
    }
}

/// One circuit's key and stats, from [`CircuitBreakerRegistry::all_stats`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct KeyedStats {
    /// The service, e.g. `dynamodb`.
    pub service: String,
    /// The operation, e.g. `storeUserMessage`.
    pub operation: String,
    /// Its stats.
    pub stats: CircuitBreakerStats,
}

// ===== the registry =====

impl Default for CircuitBreakerRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CircuitBreakerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerRegistry")
            .field("circuits", &self.len())
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerRegistry {
    /// An empty registry whose default is [`CircuitBreakerConfig::default`].
    pub fn new() -> Self {
        Self::with_config(RegistryConfig::default())
    }

    /// An empty registry with a default configuration, overrides and limits.
    pub fn with_config(config: RegistryConfig) -> Self {
        let limits = config.limits;
        CircuitBreakerRegistry {
            inner: Arc::new(Inner {
                seed: RandomState::new().hash_one(0x5eed_u64) | 1,
                table: Table::new(),
                capacity: AtomicUsize::new(limits.capacity()),
                max_name_length: AtomicUsize::new(limits.max_name_length()),
                idle_ns: AtomicU64::new(duration_ns(limits.idle_timeout())),
                refused_full: AtomicU64::new(0),
                refused_name: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
                overflow: OnceLock::new(),
                last_base: Mutex::new(None),
                extension: OnceLock::new(),
                settings: RwLock::new(Settings {
                    config,
                    listeners: Vec::new(),
                    created: Vec::new(),
                }),
            }),
        }
    }

    fn hash(&self, service: &str, operation: &str) -> u64 {
        key_hash(self.inner.seed, service, operation)
    }

    fn settings(&self) -> RwLockReadGuard<'_, Settings> {
        self.inner
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn settings_mut(&self) -> RwLockWriteGuard<'_, Settings> {
        self.inner
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The circuit of `(service, operation)`, if it exists.
    pub fn get(&self, service: &str, operation: &str) -> Option<Circuit> {
        self.find(service, operation).map(|h| h.0.clone())
    }

    fn find(&self, service: &str, operation: &str) -> Option<Arc<Handle>> {
        let max = self.inner.max_name_length.load(Ordering::Relaxed);
        if service.len() > max || operation.len() > max {
            return None;
        }
        self.inner
            .table
            .find(self.hash(service, operation), service, operation)
    }

    /// The one circuit of `(service, operation)`, created on first use from `config` (or
    /// the registry default when `None`) with the registry's overrides on top.
    ///
    /// A key the registry refuses (see the [module docs](crate::registry#limits)) gets
    /// the overflow circuit; [`try_circuit`](Self::try_circuit) says so instead.
    pub fn circuit<'c>(
        &self,
        service: &str,
        operation: &str,
        config: impl Into<Option<&'c CircuitBreakerConfig>>,
    ) -> Circuit {
        let config = config.into();
        match self.entry(service, operation, config) {
            Ok(h) => h.0.clone(),
            Err(_) => self.overflow_circuit(config).clone(),
        }
    }

    /// The one circuit of `(service, operation)`, as [`circuit`](Self::circuit) makes it,
    /// or why the registry refuses the key.
    ///
    /// # Errors
    ///
    /// [`KeyRefused::NameTooLong`] when a name is longer than
    /// [`RegistryLimits::max_name_length`] (checked before anything is hashed or
    /// copied); [`KeyRefused::Full`] when the key is new, the registry holds its capacity
    /// and no circuit could be evicted as idle.
    pub fn try_circuit<'c>(
        &self,
        service: &str,
        operation: &str,
        config: impl Into<Option<&'c CircuitBreakerConfig>>,
    ) -> Result<Circuit, KeyRefused> {
        self.entry(service, operation, config.into())
            .map(|h| h.0.clone())
    }

    /// This thread's handle to the key's circuit, created if needed, or the refusal
    /// (counted and logged).
    #[inline]
    fn entry(
        &self,
        service: &str,
        operation: &str,
        config: Option<&CircuitBreakerConfig>,
    ) -> Result<Arc<Handle>, KeyRefused> {
        let max = self.inner.max_name_length.load(Ordering::Relaxed);
        for (field, name) in [("service", service), ("operation", operation)] {
            if name.len() > max {
                return Err(self.refused(KeyRefused::NameTooLong {
                    field,
                    length: name.len(),
                    max,
                }));
            }
        }
        let hash = self.hash(service, operation);
        match self.inner.table.find(hash, service, operation) {
            Some(e) => Ok(e),
            None => self.create(hash, service, operation, config),
        }
    }

    #[cold]
    fn create(
        &self,
        hash: u64,
        service: &str,
        operation: &str,
        config: Option<&CircuitBreakerConfig>,
    ) -> Result<Arc<Handle>, KeyRefused> {
        // Settings first, then the table: the same order as `apply_config`.
        let settings = self.settings();
        let capacity = self.inner.capacity.load(Ordering::Relaxed);
        let idle_ns = self.inner.idle_ns.load(Ordering::Relaxed);
        let (made, evicted) = self.inner.table.find_or_insert(
            hash,
            service,
            operation,
            capacity,
            || {
                let base = self.intern(config.unwrap_or(&settings.config.default));
                let config = settings.config.resolve(service, operation, &base).unwrap_or_else(|e| {
                    tracing::warn!(service, operation, error = %e, "override does not fit this circuit; using its own configuration");
                    (*base).clone()
                });
                let circuit = Circuit::for_operation(service, operation, config);
                // Just after the circuit's own: idle times are over-estimated by the
                // microseconds in between, never under-estimated.
                let origin = SystemTime::now();
                attach(&circuit, &settings.listeners);
                for hook in &settings.created {
                    hook(service, operation, &circuit);
                }
                Entry {
                    hash,
                    split: service.len() as u32,
                    circuit,
                    base,
                    handles: (0..self.inner.table.stripes())
                        .map(|_| OnceLock::new())
                        .collect(),
                    origin,
                }
            },
            |e| e.is_idle(idle_ns),
        );
        if evicted > 0 {
            self.inner
                .evicted
                .fetch_add(evicted as u64, Ordering::Relaxed);
        }
        made.map_err(|Refusal::Full| self.refused(KeyRefused::Full { capacity }))
    }

    /// The shared copy of a base configuration equal to `config`.
    fn intern(&self, config: &CircuitBreakerConfig) -> Arc<CircuitBreakerConfig> {
        let mut last = self
            .inner
            .last_base
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some(b) if **b == *config => b.clone(),
            _ => last.insert(Arc::new(config.clone())).clone(),
        }
    }

    /// Counts a refusal and logs the 1st, 2nd, 4th, 8th, … of all refusals.
    #[cold]
    fn refused(&self, why: KeyRefused) -> KeyRefused {
        let counter = match why {
            KeyRefused::NameTooLong { .. } => &self.inner.refused_name,
            KeyRefused::Full { .. } => &self.inner.refused_full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let total = self.inner.refused_name.load(Ordering::Relaxed)
            + self.inner.refused_full.load(Ordering::Relaxed);
        if total.is_power_of_two() {
            // The names themselves are not logged: they may come from request data.
            tracing::warn!(
                reason = %why,
                refused_total = total,
                "circuit registry refused a key; it is served by the overflow circuit (logged on the 1st, 2nd, 4th, 8th, ... refusal)"
            );
        }
        why
    }

    /// The overflow circuit, created on first use with `config` or the default.
    #[cold]
    fn overflow_circuit(&self, config: Option<&CircuitBreakerConfig>) -> &Circuit {
        self.inner.overflow.get_or_init(|| {
            let settings = self.settings();
            let config = config.unwrap_or(&settings.config.default).clone();
            let circuit = Circuit::for_operation(OVERFLOW, OVERFLOW, config);
            attach(&circuit, &settings.listeners);
            circuit
        })
    }

    /// The circuit that serves refused keys (named `(overflow)/(overflow)`), once one
    /// was refused. It is created with the configuration of the first refused call and
    /// is never evicted; [`apply_config`](Self::apply_config) leaves it alone.
    pub fn overflow(&self) -> Option<Circuit> {
        self.inner.overflow.get().cloned()
    }

    /// Circuits in the table, the limits in force, and the counts of refusals and
    /// evictions.
    pub fn registry_stats(&self) -> RegistryStats {
        RegistryStats {
            circuits: self.inner.table.len(),
            capacity: self.inner.capacity.load(Ordering::Relaxed),
            refused_full: self.inner.refused_full.load(Ordering::Relaxed),
            refused_name_too_long: self.inner.refused_name.load(Ordering::Relaxed),
            evicted: self.inner.evicted.load(Ordering::Relaxed),
        }
    }

    /// Evicts every idle circuit now (see the [module docs](crate::registry#limits));
    /// returns how many.
    pub fn evict_idle(&self) -> usize {
        let idle_ns = self.inner.idle_ns.load(Ordering::Relaxed);
        let n = self.inner.table.sweep(|e| e.is_idle(idle_ns));
        self.inner.evicted.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// A [`CircuitBreakerLayer`] over the circuit of `(service, operation)`: a tower stack
    /// and [`execute`](Self::execute) calls then share one circuit (until it is evicted
    /// as idle: see the [module docs](crate::registry#limits)).
    pub fn layer<'c>(
        &self,
        service: &str,
        operation: &str,
        config: impl Into<Option<&'c CircuitBreakerConfig>>,
    ) -> CircuitBreakerLayer {
        CircuitBreakerLayer::from_circuit(self.circuit(service, operation, config))
    }

    /// The stats of `(service, operation)`, the seed's `getCircuitBreakerStats`.
    pub fn stats(&self, service: &str, operation: &str) -> Option<CircuitBreakerStats> {
        self.find(service, operation).map(|h| h.0.stats())
    }

    /// Every circuit with its key, sorted by service then operation (the overflow
    /// circuit is not listed: see [`overflow`](Self::overflow)).
    ///
    /// The table's shards are each locked only while their entries are copied out; the
    /// stats are read after.
    pub fn all_stats(&self) -> Vec<KeyedStats> {
        let mut all: Vec<KeyedStats> = self
            .inner
            .table
            .entries()
            .into_iter()
            .map(|e| KeyedStats {
                stats: e.circuit.stats(),
                service: e.service().to_string(),
                operation: e.operation().to_string(),
            })
            .collect();
        all.sort_by(|a, b| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)));
        all
    }

    /// Number of circuits (the overflow circuit is not counted).
    pub fn len(&self) -> usize {
        self.inner.table.len()
    }

    /// Whether the registry holds no circuit.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`Circuit::reset`] on `(service, operation)`; false if it does not exist.
    pub fn reset(&self, service: &str, operation: &str) -> bool {
        self.get(service, operation).map(|c| c.reset()).is_some()
    }

    /// [`Circuit::force_open`] on `(service, operation)`; false if it does not exist.
    pub fn force_open(&self, service: &str, operation: &str) -> bool {
        self.get(service, operation)
            .map(|c| c.force_open())
            .is_some()
    }

    /// [`Circuit::reset`] on every circuit, the overflow circuit included.
    pub fn reset_all(&self) {
        for e in self.inner.table.entries() {
            e.circuit.reset();
        }
        if let Some(c) = self.inner.overflow.get() {
            c.reset();
        }
    }

    /// Calls `listener` on every transition of every circuit, present and future.
    pub fn on_transition<F>(&self, listener: F)
    where
        F: Fn(&TransitionEvent) + Send + Sync + 'static,
    {
        let listener: Listener = Arc::new(listener);
        let mut settings = self.settings_mut();
        let circuits = self.inner.table.entries();
        for c in circuits
            .iter()
            .map(|e| &e.circuit)
            .chain(self.inner.overflow.get())
        {
            attach(c, std::slice::from_ref(&listener));
        }
        settings.listeners.push(listener);
    }
}

// ===== for the edges that extend the registry (the fleet) =====

#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
impl CircuitBreakerRegistry {
    /// Calls `hook` on every circuit of the table now, then on every circuit created
    /// later (not on the overflow circuit).
    pub(crate) fn on_create(&self, hook: CreateHook) {
        let mut settings = self.settings_mut();
        for e in self.inner.table.entries() {
            hook(e.service(), e.operation(), &e.circuit);
        }
        settings.created.push(hook);
    }

    /// Whether `circuit` is the table's circuit of `(service, operation)` (false once it
    /// was evicted).
    pub(crate) fn holds(&self, service: &str, operation: &str, circuit: &Circuit) -> bool {
        self.find(service, operation)
            .is_some_and(|h| h.0.ptr_eq(circuit))
    }

    /// The registry, without keeping it alive.
    pub(crate) fn downgrade(&self) -> WeakRegistry {
        WeakRegistry(Arc::downgrade(&self.inner))
    }

    /// Keeps `extension` for the registry's lifetime; false when one is already kept.
    pub(crate) fn set_extension(&self, extension: Arc<dyn std::any::Any + Send + Sync>) -> bool {
        self.inner.extension.set(extension).is_ok()
    }

    /// What [`set_extension`](Self::set_extension) kept.
    pub(crate) fn extension(&self) -> Option<&Arc<dyn std::any::Any + Send + Sync>> {
        self.inner.extension.get()
    }
}

/// Attaches the registry's listeners to a circuit.
fn attach(circuit: &Circuit, listeners: &[Listener]) {
    for l in listeners {
        let l = l.clone();
        circuit.on_transition(move |e| l(e));
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
