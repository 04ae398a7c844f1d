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
//! The hash is a fast multiply-rotate over 8-byte words, seeded at random per registry.
//! It is not built to resist keys chosen by an attacker: keys from request data are
//! bounded in number and length by the limits above, but a crafted set of keys could
//! still make one shard's chains long.

use crate::config::{ConfigError, ConfigPatch};
use crate::error::{CallError, CircuitOpen};
use crate::stats::TransitionEvent;
use crate::{Circuit, CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakerStats};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

mod limits;
mod table;
pub use limits::{KeyRefused, RegistryLimits, RegistryLimitsBuilder, RegistryStats};
use table::{Refusal, Table};

/// The key of the overflow circuit, which serves keys the registry refuses.
pub const OVERFLOW: &str = "(overflow)";

type Listener = Arc<dyn Fn(&TransitionEvent) + Send + Sync>;

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
}

struct Settings {
    config: RegistryConfig,
    listeners: Vec<Listener>,
}

struct Entry {
    hash: u64,
    /// The length of the service name: the circuit's name is `service/operation`.
    split: u32,
    circuit: Circuit,
    /// The configuration asked for at creation, before overrides: re-applying a document
    /// recomputes the circuit's configuration from it.
    base: Arc<CircuitBreakerConfig>,
    /// Per thread stripe, a handle to the circuit that lookups clone: a reference count
    /// per stripe, so threads running calls through one key write to no common line.
    /// Made on the stripe's first lookup.
    handles: Box<[OnceLock<Arc<Handle>>]>,
    /// The wall time the circuit's clock started from (taken just after it, so to within
    /// microseconds): its stats' times minus this are instants of its own clock.
    origin: SystemTime,
}

/// One stripe's handle to an entry's circuit: held for as long as a call runs through it.
#[repr(align(64))]
struct Handle(Circuit);

/// The registry-wide configuration: a default and per-key overrides.
///
/// With feature `serde` it is read from a JSON or TOML document (see
/// [`RegistryConfig::from_json`] and [`RegistryConfig::from_toml`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegistryConfig {
    /// Configuration of circuits created without one.
    pub default: CircuitBreakerConfig,
    /// Overrides per service, and per operation within it.
    pub services: BTreeMap<String, ServiceOverrides>,
    /// How many circuits, how long their names, how long idle ones stay.
    pub limits: RegistryLimits,
}

/// Overrides for one service's circuits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceOverrides {
    /// Applied to every operation of the service.
    pub all: ConfigPatch,
    /// Applied to one operation, after `all`.
    pub operations: BTreeMap<String, ConfigPatch>,
}

impl RegistryConfig {
    /// The configuration of `(service, operation)` built on `base`.
    ///
    /// # Errors
    ///
    /// When an override makes it invalid; the error names the key and the field.
    pub fn resolve(
        &self,
        service: &str,
        operation: &str,
        base: &CircuitBreakerConfig,
    ) -> Result<CircuitBreakerConfig, RegistryConfigError> {
        let Some(s) = self.services.get(service) else {
            return Ok(base.clone());
        };
        let op = s.operations.get(operation);
        let mut config = base.clone();
        for (key, patch) in [
            (key_path(&["services", service]), Some(&s.all)),
            (
                key_path(&["services", service, "operations", operation]),
                op,
            ),
        ] {
            if let Some(patch) = patch {
                config = patch
                    .apply(&config)
                    .map_err(|e| RegistryConfigError::invalid(&key, e))?;
            }
        }
        Ok(config)
    }
}

/// A registry configuration was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfigError {
    key: String,
    field: Option<String>,
    message: String,
}

impl RegistryConfigError {
    pub(crate) fn new(
        key: impl Into<String>,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        RegistryConfigError {
            key: key.into(),
            field,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(key: &str, e: ConfigError) -> Self {
        Self::new(key, Some(e.field().to_string()), e.rule())
    }

    /// Where: for an error in a document, the table (`default`, `services.dynamodb`,
    /// `services.dynamodb.operations.storeUserMessage`); for an override that does not
    /// fit a live circuit, `service` or `service.operation`; empty for an error in the
    /// document as a whole (syntax, size, unreadable file).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong, e.g. the parser's message with its line and column, or the rule
    /// a value broke.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field, when one is to blame.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl fmt::Display for RegistryConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.field) {
            (k, _) if k.is_empty() => write!(f, "circuit breaker config refused: {}", self.message),
            (k, Some(field)) => {
                write!(
                    f,
                    "circuit breaker config refused at `{k}`, field `{field}`: {}",
                    self.message
                )
            }
            (k, None) => write!(
                f,
                "circuit breaker config refused at `{k}`: {}",
                self.message
            ),
        }
    }
}

impl std::error::Error for RegistryConfigError {}

// ===== keys =====

/// Whether `s` can be written as a bare TOML key.
fn is_bare(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `s` as a TOML basic string, quotes included.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Segments joined with `.`, each bare or quoted as in TOML: `services."a.b".operations.x`.
pub(crate) fn key_path<S: AsRef<str>>(segments: &[S]) -> String {
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        let s = s.as_ref();
        if is_bare(s) {
            out.push_str(s);
        } else {
            out.push_str(&quote(s));
        }
    }
    out
}

/// The hash of a key: 8-byte words folded in by xor, multiply and rotate, the two names
/// separated by their lengths, then a final avalanche so high and low bits both depend
/// on every byte (the chain comes from the low bits).
fn key_hash(seed: u64, service: &str, operation: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    #[inline]
    fn fold(mut h: u64, bytes: &[u8]) -> u64 {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            h = (h ^ w).wrapping_mul(K).rotate_left(31);
        }
        // Byte by byte: a copy of a variable-length tail would call `memcpy`.
        let tail = (words.remainder().iter().rev()).fold(0u64, |t, &b| t << 8 | u64::from(b));
        (h ^ tail ^ (bytes.len() as u64) << 56)
            .wrapping_mul(K)
            .rotate_left(31)
    }
    let mut h = fold(fold(seed, service.as_bytes()), operation.as_bytes());
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Entry {
    fn is(&self, service: &str, operation: &str) -> bool {
        let name = self.circuit.name().as_bytes();
        self.split as usize == service.len()
            && name.len() == service.len() + 1 + operation.len()
            && name[..service.len()] == *service.as_bytes()
            && name[service.len() + 1..] == *operation.as_bytes()
    }

    fn service(&self) -> &str {
        &self.circuit.name()[..self.split as usize]
    }

    fn operation(&self) -> &str {
        &self.circuit.name()[self.split as usize + 1..]
    }

    /// This stripe's handle.
    #[inline]
    fn handle(&self, stripe: usize) -> &Arc<Handle> {
        self.handles[stripe].get_or_init(|| Arc::new(Handle(self.circuit.clone())))
    }

    /// Whether the registry may forget it; see the module docs, "Limits".
    fn is_idle(self: &Arc<Self>, idle_ns: u64) -> bool {
        let held = |h: &OnceLock<Arc<Handle>>| h.get().is_some_and(|h| Arc::strong_count(h) > 1);
        if self.handles.iter().any(held) {
            return false; // a call is running through it
        }
        let c = &self.circuit;
        // The circuit's clock started at its creation: a young circuit is not idle, and
        // this check spares the stats of every circuit of a table that is filling up.
        let now = c.now_ns();
        if now < idle_ns || c.state() != crate::CircuitState::Closed {
            return false;
        }
        let stats = c.stats();
        if stats.manual_override.is_some() || stats.window.requests > 0 {
            return false;
        }
        let since = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(self.origin).ok())
                .map_or(0, |d| d.as_nanos() as u64)
        };
        let last = since(stats.last_success_time).max(since(stats.last_failure_time));
        now.saturating_sub(last) >= idle_ns
    }
}

// ===== fallbacks =====

/// Why [`CircuitBreakerRegistry::execute`] ran the fallback.
#[derive(Debug)]
pub enum FallbackCause<E> {
    /// The circuit rejected the call; the operation did not run.
    Rejected(CircuitOpen),
    /// The operation ran and failed (only with [`on_failure_too`]).
    Failed(E),
}

/// What [`CircuitBreakerRegistry::execute`] does instead of the operation.
///
/// Implemented by every `FnOnce(FallbackCause<E>) -> impl Future<Output = Result<T, E>>`
/// (run when the circuit rejects), by [`OnFailureToo`] (also run when the operation
/// fails) and by [`NoFallback`](crate::NoFallback) (a rejection becomes `E` through
/// `From<CircuitOpen>`; the operation's own errors pass through unchanged).
pub trait ExecuteFallback<T, E> {
    /// Whether a failed operation also goes to the fallback.
    fn on_failure(&self) -> bool {
        false
    }

    /// Answers instead of the operation.
    fn run(self, cause: FallbackCause<E>) -> impl Future<Output = Result<T, E>>;
}

impl<F, Fut, T, E> ExecuteFallback<T, E> for F
where
    F: FnOnce(FallbackCause<E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    fn run(self, cause: FallbackCause<E>) -> impl Future<Output = Result<T, E>> {
        self(cause)
    }
}

impl<T, E: From<CircuitOpen>> ExecuteFallback<T, E> for crate::NoFallback {
    async fn run(self, cause: FallbackCause<E>) -> Result<T, E> {
        Err(match cause {
            FallbackCause::Rejected(open) => open.into(),
            FallbackCause::Failed(e) => e,
        })
    }
}

/// A fallback that also answers when the operation fails. Made by [`on_failure_too`].
#[derive(Clone, Copy, Debug)]
pub struct OnFailureToo<F>(F);

/// Runs `fallback` when the circuit rejects *and* when the operation fails.
pub fn on_failure_too<F>(fallback: F) -> OnFailureToo<F> {
    OnFailureToo(fallback)
}

impl<F, Fut, T, E> ExecuteFallback<T, E> for OnFailureToo<F>
where
    F: FnOnce(FallbackCause<E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    fn on_failure(&self) -> bool {
        true
    }

    fn run(self, cause: FallbackCause<E>) -> impl Future<Output = Result<T, E>> {
        (self.0)(cause)
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
                settings: RwLock::new(Settings {
                    config,
                    listeners: Vec::new(),
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

    /// Runs `operation` through the circuit of `(service, operation)`, the seed's
    /// `execute(service, operation, fn, fallback, config)`.
    ///
    /// When the circuit rejects, `fallback` answers instead (it receives
    /// [`FallbackCause::Rejected`]); wrap it in [`on_failure_too`] to have it answer
    /// failed operations as well. Pass [`NoFallback`](crate::NoFallback) to get the
    /// rejection as an `E` (through `From<CircuitOpen>`, e.g. for a
    /// [`BoxError`](crate::BoxError)).
    ///
    /// `config` counts when the circuit is created; see the
    /// [module docs](crate::registry#which-configuration-a-circuit-gets). A key the
    /// registry refuses runs through the overflow circuit (see the
    /// [module docs](crate::registry#limits)).
    ///
    /// # Errors
    ///
    /// The operation's error, unchanged, or whatever the fallback returns.
    pub async fn execute<'c, T, E, F, Fut, G>(
        &self,
        service: &str,
        operation: &str,
        f: F,
        fallback: G,
        config: impl Into<Option<&'c CircuitBreakerConfig>>,
    ) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: ExecuteFallback<T, E>,
    {
        let config = config.into();
        // The entry is held for the call: a circuit with a call running is not idle.
        let entry = self.entry(service, operation, config);
        let circuit = match &entry {
            Ok(h) => &h.0,
            Err(_) => self.overflow_circuit(config),
        };
        match circuit.call(f()).await {
            Ok(v) => Ok(v),
            Err(CallError::Rejected(open)) => fallback.run(FallbackCause::Rejected(open)).await,
            Err(CallError::Inner(e)) if fallback.on_failure() => {
                fallback.run(FallbackCause::Failed(e)).await
            }
            Err(CallError::Inner(e)) => Err(e),
        }
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

    /// The configuration in force.
    pub fn config(&self) -> RegistryConfig {
        self.settings().config.clone()
    }

    /// Replaces the registry's configuration and re-applies it to every live circuit,
    /// which keeps its state and counts. New limits take effect at once: a capacity
    /// below the number of circuits evicts nothing by itself, it refuses new keys until
    /// eviction brings the count below it.
    ///
    /// All or nothing: every circuit's new configuration is computed and checked first;
    /// if one is invalid nothing changes.
    ///
    /// # Errors
    ///
    /// A [`RegistryConfigError`] naming the key and field that broke a rule.
    pub fn apply_config(&self, config: RegistryConfig) -> Result<(), RegistryConfigError> {
        config
            .limits
            .check()
            .map_err(|e| RegistryConfigError::invalid("limits", e))?;
        let mut settings = self.settings_mut();
        let entries = self.inner.table.entries();
        let mut plan = Vec::with_capacity(entries.len());
        for e in &entries {
            let new = config.resolve(e.service(), e.operation(), &e.base)?;
            if new.window_buckets != e.circuit.config().window_buckets {
                return Err(RegistryConfigError::invalid(
                    &key_path(&["services", e.service(), "operations", e.operation()]),
                    ConfigError::new("window_buckets", "cannot change on a live circuit"),
                ));
            }
            plan.push(new);
        }
        for (e, new) in entries.iter().zip(plan) {
            e.circuit.reconfigure(new).expect("checked above");
        }
        let limits = config.limits;
        self.inner
            .capacity
            .store(limits.capacity(), Ordering::Relaxed);
        self.inner
            .max_name_length
            .store(limits.max_name_length(), Ordering::Relaxed);
        self.inner
            .idle_ns
            .store(duration_ns(limits.idle_timeout()), Ordering::Relaxed);
        settings.config = config;
        Ok(())
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
