//! A [`SharedState`] in Redis (or Valkey): one string value per circuit key, written by a
//! Lua compare-and-set; one node or a Redis Cluster, in clear or over TLS.
//!
//! # Layout
//!
//! Each key is stored as one Redis string under `{<prefix>}<key>` (prefix `tcb:` by
//! default), holding the version in decimal ASCII, a newline, then the body bytes:
//!
//! ```text
//! {tcb:}dynamodb/PutItem  ->  "17\n<body bytes>"      (PX = the TTL of the last write)
//! ```
//!
//! The prefix in braces is a Redis *hash tag*: a cluster hashes only it, so every key of
//! one store (one fleet) lives in one slot, on one node, and a batched read stays one
//! command.
//!
//! - [`load`](SharedState::load) is one `GET`. A value that does not have this shape (a
//!   key written by something else) is reported as [`StoreErrorKind::Corrupt`], never
//!   guessed at.
//! - [`load_many`](SharedState::load_many) is one `MGET` of all the keys (one slot).
//! - [`compare_and_set`](SharedState::compare_and_set) is one `EVALSHA` of a short Lua
//!   script (loaded with `SCRIPT LOAD` the first time a node sees it) that declares its
//!   one key, so a cluster routes it: it reads the stored version, compares it with the
//!   expected one, and writes `SET key "{version + 1}\n{body}" PX ttl`, all atomically on
//!   the server. The TTL is rounded up to whole milliseconds (at least 1 ms). An expired
//!   key is gone for Redis, so expected `None` succeeds on it and a stale
//!   `Some(version)` is a [`Conflict`](CasOutcome::Conflict). Versions are exact up to
//!   2^53 (Lua numbers).
//!
//! # One node or a cluster
//!
//! [`RedisStore::builder`] speaks to one node: a standalone Redis or Valkey, or the
//! primary endpoint of a replicated one (a replica answers writes with `READONLY`,
//! reported as [`StoreErrorKind::Unavailable`]). [`RedisStore::cluster_builder`] speaks
//! to a Redis Cluster (ElastiCache with cluster mode on: give its configuration
//! endpoint): it reads the slot map, sends each command to the primary owning the slot,
//! and follows `MOVED`/`ASK` redirections when slots move.
//!
//! # TLS
//!
//! With feature `fleet-redis-tls`, a `rediss://` URL connects over TLS (rustls, through
//! redis-rs's own support): the AUTH password and every record are encrypted, and the
//! server's certificate is checked against the system's root certificates (ElastiCache's
//! certificates chain to public roots), or against the CAs given to
//! [`RedisStoreBuilder::root_certificates_pem`] for a private CA. The host name in the URL
//! must match the certificate. `rediss://…#insecure` (no certificate check) is refused.
//! ElastiCache Serverless and clusters with in-transit encryption need it. Without the
//! feature, a `rediss://` URL is refused with [`StoreErrorKind::Other`].
//!
//! TLS uses rustls's process-wide crypto provider: if the application has not installed
//! one when the store connects, the store installs rustls's default, aws-lc-rs (the AWS
//! SDK's too).
//!
//! # Connection
//!
//! The store keeps one multiplexed connection (redis-rs's `ConnectionManager`, or its
//! cluster connection, one per node): every clone of the store and every concurrent call
//! share it, and after the server restarts or the connection drops, the next call
//! reconnects. Three timeouts bound a call: the TCP connect (with the TLS handshake),
//! each response, and the whole operation (which includes waiting for a reconnect or a
//! redirection). A call that runs out of any of them fails with
//! [`StoreErrorKind::Timeout`]; a refused or dropped connection, or a certificate that is
//! not trusted, fails with [`StoreErrorKind::Unavailable`]. Calls never hang. In a Lambda
//! sandbox that was frozen long enough for the server (or a NAT) to drop the idle
//! connection, the first call after the thaw can fail as `Unavailable`; it starts the
//! reconnect, and the next call answers.
//!
//! Errors name the operation and the failure class only: never the URL (which may carry
//! a password), a key's value or a body. A `compare_and_set` that timed out may still
//! have been carried out by the server (the script was sent): read the key again before
//! deciding what happened.
//!
//! # Costs
//!
//! One `GET` per read (or one `MGET` for a whole registry's circuits) and one `EVALSHA`
//! per write; the fleet layer reads once per cache period and writes on transitions and
//! news, not per call.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_circuit_breaker::fleet::{CasOutcome, RedisStore, SharedState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `rediss://` with feature `fleet-redis-tls`; `RedisStore::cluster_builder` for a cluster.
//! let store = RedisStore::builder("redis://127.0.0.1:6379/")
//!     .key_prefix("orders:")
//!     .operation_timeout(Duration::from_millis(500))
//!     .connect()
//!     .await?;
//!
//! let outcome = store
//!     .compare_and_set("payments", None, b"open".to_vec(), Duration::from_secs(60))
//!     .await?;
//! assert_eq!(outcome, CasOutcome::Written(1));
//! let record = store.load("payments").await?.expect("just written");
//! assert_eq!((record.version, record.body.as_slice()), (1, &b"open"[..]));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use ::redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};

use super::store::{
    CasOutcome, SharedState, StoreError, StoreErrorKind, StoreFuture, StoredRecord, within,
};

mod builder;

use builder::Connection;
pub use builder::RedisStoreBuilder;

/// The default key prefix of a [`RedisStore`].
pub const DEFAULT_KEY_PREFIX: &str = "tcb:";

/// The compare-and-set, run atomically by the server.
///
/// `KEYS[1]`: the key. `ARGV[1]`: the expected version in decimal, or empty for "only if
/// absent". `ARGV[2]`: the body. `ARGV[3]`: the TTL in milliseconds.
/// Returns the new version, 0 for a conflict, or -1 when the stored value is not ours.
const CAS_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
local version = 0
if current then
  local stored = string.match(current, '^([1-9]%d*)\n')
  if not stored then return -1 end
  if ARGV[1] ~= stored then return 0 end
  version = tonumber(stored)
elseif ARGV[1] ~= '' then
  return 0
end
local next_version = string.format('%.0f', version + 1)
redis.call('SET', KEYS[1], next_version .. '\n' .. ARGV[2], 'PX', ARGV[3])
return version + 1
"#;

/// A fleet [`SharedState`] in Redis. See the [module docs](self).
///
/// Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    script: Script,
    prefix: String,
    operation_timeout: Duration,
    address: String,
    cluster: bool,
    tls: bool,
}

// ===== impl RedisStore =====

impl RedisStore {
    /// A builder for a store on one node at `url`
    /// (`redis://[user:password@]host[:port][/db]`, or `rediss://` with feature
    /// `fleet-redis-tls`).
    ///
    /// The URL is parsed now; an invalid one is reported by
    /// [`connect`](RedisStoreBuilder::connect) or
    /// [`connect_lazy`](RedisStoreBuilder::connect_lazy). The URL is never printed, not
    /// even by `Debug`: only its host and port are.
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder::new(vec![url], false)
    }

    /// A builder for a store in a Redis Cluster, from one or more of its nodes' URLs
    /// (all `redis://` or all `rediss://`, with the same credentials; for ElastiCache, the
    /// configuration endpoint alone). The rest of the cluster is found from its slot map.
    pub fn cluster_builder<'a>(urls: impl IntoIterator<Item = &'a str>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(urls.into_iter().collect(), true)
    }

    /// Connects to `url` with the defaults: prefix `tcb:`, 500 ms connect and response
    /// timeouts, 1 s per operation.
    ///
    /// # Errors
    ///
    /// As [`RedisStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// The key prefix (the keys' hash tag).
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the store speaks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Whether the store's connections use TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The Redis key a store key is kept under: the prefix in braces (the hash tag, so
    /// every key of the store hashes to one cluster slot), then the key:
    /// `{tcb:}dynamodb/PutItem`.
    pub fn redis_key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len() + 2);
        full.push('{');
        full.push_str(&self.prefix);
        full.push('}');
        full.push_str(key);
        full
    }

    async fn get(&self, key: &str) -> Result<Option<StoredRecord>, StoreError> {
        let mut connection = self.connection.clone();
        let mut get = ::redis::cmd("GET");
        get.arg(self.redis_key(key));
        let value: Value = get
            .query_async(&mut connection)
            .await
            .map_err(|e| classify("GET", &e))?;
        stored(value, "GET")
    }

    async fn mget(&self, keys: &[String]) -> Result<Vec<Option<StoredRecord>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let mut mget = ::redis::cmd("MGET");
        for key in keys {
            mget.arg(self.redis_key(key));
        }
        let values: Value = mget
            .query_async(&mut connection)
            .await
            .map_err(|e| classify("MGET", &e))?;
        match values {
            Value::Array(values) if values.len() == keys.len() => values
                .into_iter()
                .map(|value| stored(value, "MGET"))
                .collect(),
            _ => Err(StoreError::new(
                StoreErrorKind::Corrupt,
                "MGET: the answer is not one value per key",
            )),
        }
    }

    async fn cas(
        &self,
        key: &str,
        expected: Option<u64>,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Result<CasOutcome, StoreError> {
        let mut connection = self.connection.clone();
        let expected = expected.map(|v| v.to_string()).unwrap_or_default();
        // The key is declared (`KEYS[1]`), never built inside the script: a cluster routes
        // the EVALSHA to the node owning its slot.
        let answer: i64 = self
            .script
            .key(self.redis_key(key))
            .arg(expected)
            .arg(body)
            .arg(ttl_millis(ttl))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| classify("EVALSHA", &e))?;
        match u64::try_from(answer) {
            Ok(0) => Ok(CasOutcome::Conflict),
            Ok(version) => Ok(CasOutcome::Written(version)),
            Err(_) => Err(StoreError::new(
                StoreErrorKind::Corrupt,
                "compare-and-set: the key holds a value this store did not write",
            )),
        }
    }
}

impl SharedState for RedisStore {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoredRecord>> {
        Box::pin(within(
            self.operation_timeout,
            "Redis",
            "load",
            self.get(key),
        ))
    }

    /// One `MGET` of every key (one cluster slot: the keys share the prefix's hash tag),
    /// under one operation timeout.
    fn load_many<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, Vec<Option<StoredRecord>>> {
        Box::pin(within(
            self.operation_timeout,
            "Redis",
            "load_many",
            self.mget(keys),
        ))
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        body: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'a, CasOutcome> {
        let call = self.cas(key, expected, body, ttl);
        Box::pin(within(
            self.operation_timeout,
            "Redis",
            "compare_and_set",
            call,
        ))
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.address)
            .field("cluster", &self.cluster)
            .field("tls", &self.tls)
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

// ===== helpers =====

/// The longest TTL sent, about 1,100 years: Redis refuses a `PX` that overflows when
/// added to its clock.
const MAX_TTL_MILLIS: u64 = 1 << 45;

/// `ttl` in whole milliseconds, rounded up, at least 1 (Redis refuses `PX 0`).
fn ttl_millis(ttl: Duration) -> u64 {
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis)
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MILLIS)
}

/// One stored value: absent, or `"{version}\n{body}"`.
fn stored(value: Value, operation: &str) -> Result<Option<StoredRecord>, StoreError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => decode(bytes).map(Some),
        _ => Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!("{operation}: the key does not hold a string"),
        )),
    }
}

/// Parses `"{version}\n{body}"`. The bytes come from the network: anything else is
/// `Corrupt`.
fn decode(mut bytes: Vec<u8>) -> Result<StoredRecord, StoreError> {
    let corrupt =
        |what: &str| StoreError::new(StoreErrorKind::Corrupt, format!("GET: stored value {what}"));
    let newline = bytes
        .iter()
        .take(21)
        .position(|&b| b == b'\n')
        .ok_or_else(|| corrupt("has no version header"))?;
    let digits = &bytes[..newline];
    // As the script reads it: digits, the first not 0.
    if digits.first().is_none_or(|&d| d == b'0') || !digits.iter().all(u8::is_ascii_digit) {
        return Err(corrupt("has a malformed version"));
    }
    let version: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&v| v > 0)
        .ok_or_else(|| corrupt("has an out-of-range version"))?;
    bytes.drain(..=newline);
    Ok(StoredRecord {
        version,
        body: bytes,
    })
}

/// Maps a redis-rs error to a [`StoreError`] naming `operation` and the failure class
/// only: redis-rs messages can quote the URL or server text, so none is copied.
fn classify(operation: &str, error: &RedisError) -> StoreError {
    let kind = if error.is_timeout() {
        StoreErrorKind::Timeout
    } else if error.is_io_error() || error.is_connection_refusal() || error.is_connection_dropped()
    {
        StoreErrorKind::Unavailable
    } else if error.code() == Some("WRONGTYPE") {
        // The key holds a list, hash, ...: not a value this store wrote.
        StoreErrorKind::Corrupt
    } else {
        match error.kind() {
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::ReadOnly,
            ) => StoreErrorKind::Unavailable,
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreErrorKind::Corrupt,
            _ => StoreErrorKind::Other,
        }
    };
    let detail = match (io_kind(error), error.code()) {
        (Some(io), _) => format!("{io}"),
        (None, Some(code)) => format!("{} ({code})", error.category()),
        (None, None) => error.category().to_owned(),
    };
    StoreError::new(kind, format!("Redis {operation}: {detail}"))
}

/// The I/O error kind under a redis-rs error (its `Display` is a fixed phrase such as
/// "connection refused").
fn io_kind(error: &RedisError) -> Option<std::io::ErrorKind> {
    std::error::Error::source(error)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
        .or_else(|| error.is_io_error().then_some(std::io::ErrorKind::Other))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_version_and_binary_body() {
        let record = decode(b"42\n\x00\n\xffbody".to_vec()).unwrap();
        assert_eq!(record.version, 42);
        assert_eq!(record.body, b"\x00\n\xffbody");
        assert_eq!(decode(b"1\n".to_vec()).unwrap().body, b"");
    }

    #[test]
    fn foreign_values_are_corrupt() {
        for value in [
            &b""[..],
            b"no header",
            b"\nbody",
            b"0\nzero is never written",
            b"07\nleading zero",
            b"-1\nbody",
            b"1 2\nbody",
            b"99999999999999999999\nbody",
            b"123456789012345678901234\nbody",
        ] {
            let err = decode(value.to_vec()).unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{value:?}");
        }
    }

    #[test]
    fn ttl_rounds_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(60)), 60_000);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL_MILLIS);
    }

    #[test]
    fn invalid_urls_are_refused_without_echoing_them() {
        let secret = "hunter2-secret";
        for url in [
            format!("redis://:{secret}@"),
            format!("ftp://user:{secret}@host/"),
            format!("rediss://user:{secret}@host:6379/#insecure"),
        ] {
            let builder = RedisStore::builder(&url);
            assert!(!format!("{builder:?}").contains(secret));
            let err = builder::parse_url(&url).unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Other);
            assert!(!err.to_string().contains(secret), "{err}");
        }
        let builder = RedisStore::builder(&format!("redis://user:{secret}@db.internal:6380/2"));
        let shown = format!("{builder:?}");
        assert!(
            shown.contains("db.internal:6380") && !shown.contains(secret),
            "{shown}"
        );
        let cluster =
            RedisStore::cluster_builder(["redis://:p@10.0.0.1:7000/", "redis://:p@10.0.0.2:7001/"]);
        let shown = format!("{cluster:?}");
        assert!(
            shown.contains("10.0.0.1:7000,10.0.0.2:7001") && shown.contains("cluster: true"),
            "{shown}"
        );
        // TLS is accepted only with its feature.
        let tls = builder::parse_url("rediss://h:6379/");
        assert_eq!(tls.is_ok(), cfg!(feature = "fleet-redis-tls"));
    }

    #[tokio::test]
    async fn bad_prefixes_and_empty_clusters_are_refused_before_any_io() {
        for prefix in ["", "a{b", "a}b"] {
            let err = RedisStore::builder("redis://127.0.0.1:1/")
                .key_prefix(prefix)
                .connect_lazy()
                .unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Other, "{prefix:?}");
        }
        let err = RedisStore::cluster_builder([]).connect_lazy().unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Other);
        let store = RedisStore::builder("redis://127.0.0.1:1/")
            .key_prefix("app:")
            .connect_lazy()
            .unwrap();
        assert_eq!(
            store.redis_key("dynamodb/PutItem"),
            "{app:}dynamodb/PutItem"
        );
        assert!(!store.is_cluster() && !store.is_tls());
    }

    #[cfg(feature = "fleet-redis-tls")]
    #[tokio::test]
    async fn tls_roots_need_a_tls_url_and_must_parse() {
        let err = RedisStore::builder("redis://127.0.0.1:1/")
            .root_certificates_pem(b"-----BEGIN CERTIFICATE-----\n".to_vec())
            .connect_lazy()
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Other);
        let err = RedisStore::builder("rediss://127.0.0.1:1/")
            .root_certificates_pem(b"not a certificate".to_vec())
            .connect_lazy()
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Other);
        let store = RedisStore::builder("rediss://127.0.0.1:1/")
            .connect_lazy()
            .unwrap();
        assert!(store.is_tls());
    }
}
