//! The store interface: a versioned blob per circuit key, written by compare-and-set.
//!
//! A backend knows nothing of circuits. It keeps, per key, an opaque body and a version
//! number, and offers two operations: read the current body and version, and replace the
//! body only if the version is still the one the writer read. Everything a fleet shares
//! (trips, open-until, window counts per instance, probe leases) is encoded in the body by
//! [`crate::fleet`], so the same conflict rule protects all of it and a backend is a few
//! dozen lines.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, `Send` future, as the store methods return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A record as stored: an opaque body and the version that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Starts at 1 for a new key and grows by one on every successful write.
    pub version: u64,
    /// The bytes the fleet layer wrote; never interpreted by the store.
    pub body: Vec<u8>,
}

/// What a [`SharedState::compare_and_set`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The body was written; it now has this version.
    Written(u64),
    /// Another writer got there first (or the key expired): nothing was written. Read
    /// again and retry.
    Conflict,
}

/// Why a store operation failed. Messages never carry credentials or record bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

/// The kind of a [`StoreError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store did not answer within its timeout.
    Timeout,
    /// The store could not be reached, or refused the connection.
    Unavailable,
    /// A stored body could not be understood.
    Corrupt,
    /// Anything else the store reported.
    Other,
}

impl StoreError {
    /// A new error.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            StoreErrorKind::Timeout => "timed out",
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Corrupt => "corrupt record",
            StoreErrorKind::Other => "error",
        };
        write!(f, "shared state store {kind}: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// A store for fleet-wide circuit state: one versioned body per key, with a TTL.
///
/// Implementations: `fleet::MemoryStore` (one process, for tests and simulations), and,
/// behind their features, Redis and DynamoDB. Every method is called off the request path,
/// by the fleet sync, never by an admission.
pub trait SharedState: Send + Sync + 'static {
    /// The current record of `key`, or `None` when there is none or it has expired.
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoredRecord>>;

    /// The current records of `keys`, in the order given (`None` where a key has no record
    /// or it has expired): one round of a registry-wide sync. A backend that can read many
    /// keys in one request (Redis `MGET`, DynamoDB `BatchGetItem`) overrides it; the default
    /// reads them one by one with [`load`](SharedState::load).
    fn load_many<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, Vec<Option<StoredRecord>>> {
        Box::pin(async move {
            let mut records = Vec::with_capacity(keys.len());
            for key in keys {
                records.push(self.load(key).await?);
            }
            Ok(records)
        })
    }

    /// Writes `body` under `key` if the stored version is `expected` (`None`: only if the
    /// key does not exist or has expired). The record expires `ttl` after this write
    /// unless written again.
    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        body: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'a, CasOutcome>;
}

// ===== helpers for the backends =====

/// Runs one store call under `timeout`; past it, a [`StoreErrorKind::Timeout`] naming the
/// backend and the operation.
#[cfg(any(feature = "fleet-redis", feature = "fleet-dynamodb"))]
pub(crate) async fn within<T>(
    timeout: Duration,
    backend: &str,
    operation: &str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::new(
                StoreErrorKind::Timeout,
                format!("{backend} {operation}: no answer within {timeout:?}"),
            ))
        })
}

/// `prefix` then `key`, the name a backend stores a key under.
#[cfg(feature = "fleet-dynamodb")]
pub(crate) fn prefixed(prefix: &str, key: &str) -> String {
    let mut full = String::with_capacity(prefix.len() + key.len());
    full.push_str(prefix);
    full.push_str(key);
    full
}
