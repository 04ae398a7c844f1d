//! The signing key cache: keys by `kid` with their age, refreshed through the circuit
//! past the max age and used up to the hard max age while the refresh fails; one fetch at
//! a time, concurrent misses sharing its outcome; the refetch cooldown after a fresh set
//! without the `kid` asked for. The [module docs](super#keys-and-the-breaker) tell the
//! rules; this is where they are kept.

use super::error::{InvalidToken, Unavailable, VerifyError};
use super::jwks::{JwksFetcher, Keys};
use crate::{Circuit, CircuitState};
use jsonwebtoken::DecodingKey;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// The verifier's signing keys and the policy that keeps them. Shared by the verifier's
/// clones.
pub(super) struct KeyCache {
    circuit: Circuit,
    fetcher: JwksFetcher,
    refetch_cooldown: Duration,
    key_max_age: Duration,
    key_hard_max_age: Duration,
    cache: RwLock<CachedKeys>,
    /// Held while fetching: one fetch at a time, concurrent misses wait for its result.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct CachedKeys {
    keys: Keys,
    /// When the fetch that brought `keys` was sent; `None` before the first success.
    fetched_at: Option<Instant>,
    /// Until then, unknown `kid`s cause no fetch: the last fetch missed the `kid` asked for.
    cooldown_until: Option<Instant>,
    /// Completed fetch attempts (rejections included), to recognise one made while
    /// waiting for the fetch lock.
    attempts: u64,
    /// The outcome of the last attempt when it failed.
    last_error: Option<Unavailable>,
}

impl CachedKeys {
    /// How old the keys are at `now`; `None` before the first successful fetch.
    fn age(&self, now: Instant) -> Option<Duration> {
        self.fetched_at.map(|at| now.saturating_duration_since(at))
    }

    /// Whether the keys are younger than `max_age`.
    fn is_fresh(&self, now: Instant, max_age: Duration) -> bool {
        self.age(now).is_some_and(|age| age < max_age)
    }

    /// The key for `kid` if cached and younger than `max_age` (the max age: no fetch
    /// needed; the hard max age: usable when the fetch failed).
    fn usable_key(&self, kid: &str, now: Instant, max_age: Duration) -> Option<Arc<DecodingKey>> {
        if !self.is_fresh(now, max_age) {
            return None;
        }
        self.keys.get(kid).cloned()
    }
}

impl KeyCache {
    /// An empty cache fetching through `fetcher` (whose breaker is `circuit`).
    pub(super) fn new(
        circuit: Circuit,
        fetcher: JwksFetcher,
        refetch_cooldown: Duration,
        key_max_age: Duration,
        key_hard_max_age: Duration,
    ) -> Self {
        KeyCache {
            circuit,
            fetcher,
            refetch_cooldown,
            key_max_age,
            key_hard_max_age,
            cache: RwLock::new(CachedKeys::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// The circuit the fetch goes through.
    pub(super) fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// Where the key set is fetched from.
    pub(super) fn jwks_url(&self) -> &http::Uri {
        self.fetcher.url()
    }

    /// How many signing keys are cached, whatever their age.
    pub(super) fn cached_key_count(&self) -> usize {
        self.read_cache().keys.len()
    }

    /// The time since the fetch that brought the cached keys was sent.
    pub(super) fn cached_keys_age(&self) -> Option<Duration> {
        let fetched_at = self.read_cache().fetched_at?;
        Some(Instant::now().saturating_duration_since(fetched_at))
    }

    /// Fetches unless keys younger than the max age are cached.
    pub(super) async fn prefetch(&self) -> Result<(), Unavailable> {
        if self.read_cache().is_fresh(Instant::now(), self.key_max_age) {
            return Ok(());
        }
        let _fetching = self.refresh.lock().await;
        if self.read_cache().is_fresh(Instant::now(), self.key_max_age) {
            return Ok(());
        }
        self.fetch_and_store().await
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, CachedKeys> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The key for `kid`: cached and younger than the max age, or fetched (subject to
    /// the cooldown and the breaker), or, when that fetch fails, cached and younger than
    /// the hard max age. Nothing else: authentication fails closed.
    pub(super) async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, VerifyError> {
        let seen = {
            let cache = self.read_cache();
            if let Some(key) = cache.usable_key(kid, Instant::now(), self.key_max_age) {
                return Ok(key);
            }
            cache.attempts
        };
        // One fetch at a time: whoever waits here shares the outcome of the fetch ahead.
        let _fetching = self.refresh.lock().await;
        {
            let cache = self.read_cache();
            let now = Instant::now();
            if let Some(key) = cache.usable_key(kid, now, self.key_max_age) {
                return Ok(key);
            }
            if cache.attempts != seen {
                // Another task fetched while this one waited: its outcome answers this one.
                return match &cache.last_error {
                    None => match cache.usable_key(kid, now, self.key_hard_max_age) {
                        Some(key) => Ok(key),
                        None => Err(VerifyError::Invalid(InvalidToken::UnknownKeyId)),
                    },
                    Some(e) => self.stale_or(&cache, kid, now, e.clone()),
                };
            }
            // The cooldown spares Cognito a fetch per made-up `kid`, but only when the
            // keys are fresh (a stale set is refreshed anyway) and the circuit is Closed:
            // otherwise the circuit decides, and an Open one makes the answer
            // `Unavailable`, since the verifier cannot tell what the pool holds now.
            if cache.is_fresh(now, self.key_max_age)
                && cache.cooldown_until.is_some_and(|until| now < until)
                && self.circuit.state() == CircuitState::Closed
            {
                tracing::debug!(
                    circuit = %self.circuit.name(),
                    "unknown key id within the refetch cooldown; not fetching"
                );
                return Err(VerifyError::Invalid(InvalidToken::UnknownKeyId));
            }
        }
        let outcome = self.fetch_and_store().await;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match outcome {
            Ok(()) => match cache.keys.get(kid) {
                Some(key) => Ok(key.clone()),
                None => {
                    // A fresh set without it: made up, withdrawn, or from another pool.
                    // Fetch no more for a while.
                    cache.cooldown_until = Some(later(now, self.refetch_cooldown));
                    Err(VerifyError::Invalid(InvalidToken::UnknownKeyId))
                }
            },
            Err(e) => self.stale_or(&cache, kid, now, e),
        }
    }

    /// After a failed fetch: the cached key while younger than the hard max age, else
    /// `Unavailable` with the fetch's error.
    fn stale_or(
        &self,
        cache: &CachedKeys,
        kid: &str,
        now: Instant,
        error: Unavailable,
    ) -> Result<Arc<DecodingKey>, VerifyError> {
        match cache.usable_key(kid, now, self.key_hard_max_age) {
            Some(key) => {
                tracing::debug!(
                    circuit = %self.circuit.name(),
                    "key refresh failed; using the cached key until its hard max age"
                );
                Ok(key)
            }
            None => Err(VerifyError::Unavailable(error)),
        }
    }

    /// One fetch through the breaker; the cache takes the outcome. Call with `refresh` held.
    async fn fetch_and_store(&self) -> Result<(), Unavailable> {
        let sent = Instant::now();
        let outcome = self.fetcher.fetch().await;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.attempts += 1;
        match outcome {
            Ok(keys) => {
                tracing::debug!(circuit = %self.circuit.name(), keys = keys.len(), "JWKS fetched");
                cache.keys = keys;
                cache.fetched_at = Some(sent);
                cache.cooldown_until = None;
                cache.last_error = None;
                Ok(())
            }
            Err(e) => {
                match &e {
                    Unavailable::CircuitOpen(_) => tracing::debug!(
                        circuit = %self.circuit.name(),
                        "JWKS fetch not attempted: circuit open"
                    ),
                    other => tracing::warn!(
                        circuit = %self.circuit.name(),
                        state = %self.circuit.state(),
                        error = %other,
                        "JWKS fetch failed"
                    ),
                }
                cache.last_error = Some(e.clone());
                Err(e)
            }
        }
    }
}

/// `now + span`, or about 30 years from now when that overflows (a cooldown of
/// `Duration::MAX` then means "for the life of the process", not a panic).
fn later(now: Instant, span: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    now.checked_add(span)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}
