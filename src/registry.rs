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
//! # Cost
//!
//! Looking up an existing key hashes it once and walks a short chain of entries without
//! taking a lock or touching a reference count: the registry's table of circuits only
//! grows (a circuit, once created, lives as long as the registry), so
//! [`execute`](CircuitBreakerRegistry::execute) borrows the circuit for as long as it
//! borrows the registry. It allocates nothing. Creating a circuit takes one of 16 locks.
//! The table has 4 096 chains: at 10 000 keys a chain holds two or three entries; at
//! 100 000, about 25 (compared by hash before any string).
//!
//! The hash is a fast multiply-rotate over 8-byte words, seeded at random per registry:
//! keys are the names of services and operations in your code, short and few, and
//! SipHash cost more than the rest of the lookup together. It is not built to resist
//! keys chosen by an attacker; do not make registry keys out of request data (a key per
//! tenant or per user is also a circuit per tenant or user, which is rarely meant).

use crate::config::{ConfigError, ConfigPatch};
use crate::error::{CallError, CircuitOpen};
use crate::stats::TransitionEvent;
use crate::{Circuit, CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakerStats};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Chains in the table (a power of two).
const CHAINS: usize = 4096;
/// Locks that serialize creation, each guarding every 16th chain.
const CREATE_LOCKS: usize = 16;

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
}

struct Settings {
    config: RegistryConfig,
    listeners: Vec<Listener>,
}

struct Entry {
    service: Box<str>,
    operation: Box<str>,
    circuit: Circuit,
    /// The configuration asked for at creation, before overrides: re-applying a document
    /// recomputes the circuit's configuration from it.
    base: CircuitBreakerConfig,
}

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

/// One entry of a chain. Chains only grow, at their tail, under a creation lock; readers
/// follow `next` without one.
struct Node {
    hash: u64,
    entry: Entry,
    next: OnceLock<Box<Node>>,
}

/// The table: chains of entries by the low bits of the key's hash.
struct Table {
    chains: Box<[OnceLock<Box<Node>>]>,
    create: [Mutex<()>; CREATE_LOCKS],
}

impl Table {
    fn new() -> Self {
        Table {
            chains: (0..CHAINS).map(|_| OnceLock::new()).collect(),
            create: std::array::from_fn(|_| Mutex::new(())),
        }
    }

    fn chain(&self, hash: u64) -> &OnceLock<Box<Node>> {
        &self.chains[hash as usize & (CHAINS - 1)]
    }

    /// The entry of `(service, operation)`, without a lock.
    #[inline]
    fn find(&self, hash: u64, service: &str, operation: &str) -> Option<&Entry> {
        let mut node = self.chain(hash).get()?;
        loop {
            if node.hash == hash && node.entry.is(service, operation) {
                return Some(&node.entry);
            }
            node = node.next.get()?;
        }
    }

    /// The entry of the key, made by `make` if there is none; `make` runs at most once per
    /// key, however many callers race.
    fn find_or_insert(
        &self,
        hash: u64,
        service: &str,
        operation: &str,
        make: impl FnOnce() -> Entry,
    ) -> &Entry {
        let _guard = self.create[hash as usize % CREATE_LOCKS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut tail = self.chain(hash);
        while let Some(node) = tail.get() {
            if node.hash == hash && node.entry.is(service, operation) {
                return &node.entry;
            }
            tail = &node.next;
        }
        let node = Box::new(Node {
            hash,
            entry: make(),
            next: OnceLock::new(),
        });
        // Under the chain's creation lock nobody else sets this tail.
        &tail.get_or_init(|| node).entry
    }

    /// Every entry, in table order.
    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.chains.iter().flat_map(|chain| {
            std::iter::successors(chain.get(), |node| node.next.get()).map(|node| &node.entry)
        })
    }
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
        *self.service == *service && *self.operation == *operation
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

    /// An empty registry with a default configuration and overrides.
    pub fn with_config(config: RegistryConfig) -> Self {
        CircuitBreakerRegistry {
            inner: Arc::new(Inner {
                seed: RandomState::new().hash_one(0x5eed_u64) | 1,
                table: Table::new(),
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
        self.find(service, operation).cloned()
    }

    fn find(&self, service: &str, operation: &str) -> Option<&Circuit> {
        let entry = self
            .inner
            .table
            .find(self.hash(service, operation), service, operation)?;
        Some(&entry.circuit)
    }

    /// The one circuit of `(service, operation)`, created on first use from `config` (or
    /// the registry default when `None`) with the registry's overrides on top.
    pub fn circuit<'c>(
        &self,
        service: &str,
        operation: &str,
        config: impl Into<Option<&'c CircuitBreakerConfig>>,
    ) -> Circuit {
        self.circuit_ref(service, operation, config.into()).clone()
    }

    /// The circuit, borrowed for as long as the registry is.
    #[inline]
    fn circuit_ref(
        &self,
        service: &str,
        operation: &str,
        config: Option<&CircuitBreakerConfig>,
    ) -> &Circuit {
        match self.find(service, operation) {
            Some(c) => c,
            None => self.create(service, operation, config),
        }
    }

    #[cold]
    fn create(
        &self,
        service: &str,
        operation: &str,
        config: Option<&CircuitBreakerConfig>,
    ) -> &Circuit {
        // Settings first, then the table: the same order as `apply_config`.
        let settings = self.settings();
        let entry = self.inner.table.find_or_insert(
            self.hash(service, operation),
            service,
            operation,
            || {
                let base = config.unwrap_or(&settings.config.default).clone();
                let config = settings.config.resolve(service, operation, &base).unwrap_or_else(|e| {
                    tracing::warn!(service, operation, error = %e, "override does not fit this circuit; using its own configuration");
                    base.clone()
                });
                let circuit = Circuit::for_operation(service, operation, config);
                for l in &settings.listeners {
                    let l = l.clone();
                    circuit.on_transition(move |e| l(e));
                }
                Entry {
                    service: service.into(),
                    operation: operation.into(),
                    circuit,
                    base,
                }
            },
        );
        &entry.circuit
    }

    /// A [`CircuitBreakerLayer`] over the circuit of `(service, operation)`: a tower stack
    /// and [`execute`](Self::execute) calls then share one circuit.
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
    /// [module docs](crate::registry#which-configuration-a-circuit-gets).
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
        let circuit = self.circuit_ref(service, operation, config.into());
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
        self.get(service, operation).map(|c| c.stats())
    }

    /// Every circuit with its key, sorted by service then operation.
    pub fn all_stats(&self) -> Vec<KeyedStats> {
        let mut all: Vec<KeyedStats> = self
            .entries()
            .into_iter()
            .map(|(service, operation, circuit)| KeyedStats {
                stats: circuit.stats(),
                service,
                operation,
            })
            .collect();
        all.sort_by(|a, b| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)));
        all
    }

    fn entries(&self) -> Vec<(String, String, Circuit)> {
        self.inner
            .table
            .iter()
            .map(|e| {
                (
                    e.service.to_string(),
                    e.operation.to_string(),
                    e.circuit.clone(),
                )
            })
            .collect()
    }

    /// Number of circuits.
    pub fn len(&self) -> usize {
        self.inner.table.iter().count()
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

    /// [`Circuit::reset`] on every circuit.
    pub fn reset_all(&self) {
        self.entries().into_iter().for_each(|(_, _, c)| c.reset());
    }

    /// Calls `listener` on every transition of every circuit, present and future.
    pub fn on_transition<F>(&self, listener: F)
    where
        F: Fn(&TransitionEvent) + Send + Sync + 'static,
    {
        let listener: Listener = Arc::new(listener);
        let mut settings = self.settings_mut();
        for (_, _, c) in self.entries() {
            let l = listener.clone();
            c.on_transition(move |e| l(e));
        }
        settings.listeners.push(listener);
    }

    /// The configuration in force.
    pub fn config(&self) -> RegistryConfig {
        self.settings().config.clone()
    }

    /// Replaces the registry's configuration and re-applies it to every live circuit,
    /// which keeps its state and counts.
    ///
    /// All or nothing: every circuit's new configuration is computed and checked first;
    /// if one is invalid nothing changes.
    ///
    /// # Errors
    ///
    /// A [`RegistryConfigError`] naming the key and field that broke a rule.
    pub fn apply_config(&self, config: RegistryConfig) -> Result<(), RegistryConfigError> {
        let mut settings = self.settings_mut();
        let mut plan = Vec::new();
        for e in self.inner.table.iter() {
            let new = config.resolve(&e.service, &e.operation, &e.base)?;
            if new.window_buckets != e.circuit.config().window_buckets {
                return Err(RegistryConfigError::invalid(
                    &key_path(&["services", &e.service, "operations", &e.operation]),
                    ConfigError::new("window_buckets", "cannot change on a live circuit"),
                ));
            }
            plan.push((e.circuit.clone(), new));
        }
        for (circuit, new) in plan {
            circuit.reconfigure(new).expect("checked above");
        }
        settings.config = config;
        Ok(())
    }
}
