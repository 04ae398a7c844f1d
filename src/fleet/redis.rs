//! A [`SharedState`] in Redis (or Valkey): one string value per circuit key, written by a
//! Lua compare-and-set.
//!
//! # Layout
//!
//! Each key is stored as one Redis string under `{prefix}{key}` (prefix `tcb:` by
//! default), holding the version in decimal ASCII, a newline, then the body bytes:
//!
//! ```text
//! tcb:dynamodb/PutItem  ->  "17\n<body bytes>"      (PX = the TTL of the last write)
//! ```
//!
//! - [`load`](SharedState::load) is one `GET`. A value that does not have this shape (a
//!   key written by something else) is reported as [`StoreErrorKind::Corrupt`], never
//!   guessed at.
//! - [`compare_and_set`](SharedState::compare_and_set) is one `EVALSHA` of a short Lua
//!   script (loaded with `SCRIPT LOAD` the first time a connection sees it): it reads the
//!   stored version, compares it with the expected one, and writes
//!   `SET key "{version + 1}\n{body}" PX ttl`, all atomically on the server. The TTL is
//!   rounded up to whole milliseconds (at least 1 ms). An expired key is gone for Redis,
//!   so expected `None` succeeds on it and a stale `Some(version)` is a
//!   [`Conflict`](CasOutcome::Conflict). Versions are exact up to 2^53 (Lua numbers).
//!
//! The store speaks to one node: a standalone Redis or Valkey, or the primary endpoint of
//! a replicated one (a replica answers writes with `READONLY`, reported as
//! [`StoreErrorKind::Unavailable`]). Cluster mode is not supported.
//!
//! # Connection
//!
//! The store keeps one multiplexed connection (redis-rs's `ConnectionManager`): every
//! clone of the store and every concurrent call share it, and after the server restarts
//! or the connection drops, the next call reconnects. Three timeouts bound a call: the
//! TCP connect, each response, and the whole operation (which includes waiting for a
//! reconnect). A call that runs out of any of them fails with
//! [`StoreErrorKind::Timeout`]; a refused or dropped connection fails with
//! [`StoreErrorKind::Unavailable`]. Calls never hang. In a Lambda sandbox that was frozen
//! long enough for the server (or a NAT) to drop the idle connection, the first call after
//! the thaw can fail as `Unavailable`; it starts the reconnect, and the next call answers.
//!
//! Errors name the operation and the failure class only: never the URL (which may carry
//! a password), a key's value or a body. A `compare_and_set` that timed out may still
//! have been carried out by the server (the script was sent): read the key again before
//! deciding what happened.
//!
//! TLS (`rediss://`) is not enabled in this build: the store is meant for a Redis in the
//! same VPC. A `rediss://` URL is refused with [`StoreErrorKind::Other`].
//!
//! # Costs
//!
//! One `GET` per read and one `EVALSHA` per write; the fleet layer reads each circuit
//! once per cache period and writes on transitions, not per call.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_circuit_breaker::fleet::{CasOutcome, RedisStore, SharedState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
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

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ConnectionAddr, ErrorKind, RedisError, Script, ServerErrorKind, Value};

use super::store::{
    CasOutcome, SharedState, StoreError, StoreErrorKind, StoreFuture, StoredRecord, prefixed,
    within,
};

/// The default key prefix of a [`RedisStore`].
pub const DEFAULT_KEY_PREFIX: &str = "tcb:";

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(1);

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
    connection: ConnectionManager,
    script: Script,
    prefix: String,
    operation_timeout: Duration,
    address: String,
}

/// Configures and connects a [`RedisStore`]; from [`RedisStore::builder`].
pub struct RedisStoreBuilder {
    client: Result<Client, StoreError>,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    operation_timeout: Duration,
}

// ===== impl RedisStoreBuilder =====

impl RedisStoreBuilder {
    /// The prefix put before every key (default [`DEFAULT_KEY_PREFIX`], `tcb:`), so that
    /// the store can share a Redis database with other data.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one TCP connect (and the handshake) may take (default 500 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server may take to answer one command (default 500 ms).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long a whole [`load`](SharedState::load) or
    /// [`compare_and_set`](SharedState::compare_and_set) may take, waiting for a
    /// reconnect included (default 1 s).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Connects now, within the operation timeout.
    ///
    /// # Errors
    ///
    /// The URL did not parse (or asks for TLS), or the server could not be reached:
    /// [`StoreErrorKind::Unavailable`] or [`StoreErrorKind::Timeout`].
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let (client, config, rest) = self.parts()?;
        let connecting = async {
            ConnectionManager::new_with_config(client, config)
                .await
                .map_err(|e| classify("connect", &e))
        };
        let connection = within(rest.operation_timeout, "Redis", "connect", connecting).await?;
        Ok(rest.into_store(connection))
    }

    /// A store that connects on its first call, so that starting a process (a Lambda
    /// cold start) never waits for, nor fails on, Redis.
    ///
    /// # Errors
    ///
    /// The URL did not parse, or asks for TLS.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn connect_lazy(self) -> Result<RedisStore, StoreError> {
        let (client, config, rest) = self.parts()?;
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| classify("connect", &e))?;
        Ok(rest.into_store(connection))
    }

    fn parts(self) -> Result<(Client, ConnectionManagerConfig, StoreParts), StoreError> {
        let client = self.client?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            // One retry, soon: the fleet layer calls again at its next sync anyway, and a
            // long backoff would only hold callers until the operation timeout.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let address = describe(client.get_connection_info().addr());
        let parts = StoreParts {
            prefix: self.prefix,
            operation_timeout: self.operation_timeout,
            address,
        };
        Ok((client, config, parts))
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = match &self.client {
            Ok(client) => describe(client.get_connection_info().addr()),
            Err(_) => "(invalid URL)".to_owned(),
        };
        f.debug_struct("RedisStoreBuilder")
            .field("address", &address)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

struct StoreParts {
    prefix: String,
    operation_timeout: Duration,
    address: String,
}

impl StoreParts {
    fn into_store(self, connection: ConnectionManager) -> RedisStore {
        RedisStore {
            connection,
            script: Script::new(CAS_SCRIPT),
            prefix: self.prefix,
            operation_timeout: self.operation_timeout,
            address: self.address,
        }
    }
}

// ===== impl RedisStore =====

impl RedisStore {
    /// A builder for a store at `url` (`redis://[user:password@]host[:port][/db]`).
    ///
    /// The URL is parsed now; an invalid one is reported by
    /// [`connect`](RedisStoreBuilder::connect) or
    /// [`connect_lazy`](RedisStoreBuilder::connect_lazy). The URL is never printed, not
    /// even by `Debug`: only its host and port are.
    pub fn builder(url: &str) -> RedisStoreBuilder {
        let client = parse_url(url);
        RedisStoreBuilder {
            client,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
        }
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

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key a store key is kept under: the prefix, then the key.
    pub fn redis_key(&self, key: &str) -> String {
        prefixed(&self.prefix, key)
    }

    async fn get(&self, key: &str) -> Result<Option<StoredRecord>, StoreError> {
        let mut connection = self.connection.clone();
        let mut get = ::redis::cmd("GET");
        get.arg(self.redis_key(key));
        let value: Value = get
            .query_async(&mut connection)
            .await
            .map_err(|e| classify("GET", &e))?;
        match value {
            Value::Nil => Ok(None),
            Value::BulkString(bytes) => decode(bytes).map(Some),
            _ => Err(StoreError::new(
                StoreErrorKind::Corrupt,
                "GET: the key does not hold a string",
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
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

// ===== helpers =====

fn parse_url(url: &str) -> Result<Client, StoreError> {
    let client = Client::open(url).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Other,
            format!("invalid Redis URL ({})", e.category()),
        )
    })?;
    match client.get_connection_info().addr() {
        ConnectionAddr::TcpTls { .. } => Err(StoreError::new(
            StoreErrorKind::Other,
            "rediss:// (TLS) is not supported by this build of the Redis store",
        )),
        _ => Ok(client),
    }
}

/// Host and port (or socket path), never credentials.
fn describe(addr: &ConnectionAddr) -> String {
    addr.to_string()
}

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
    fn invalid_and_tls_urls_are_refused_without_echoing_them() {
        let secret = "hunter2-secret";
        for url in [
            format!("redis://:{secret}@"),
            format!("ftp://user:{secret}@host/"),
            format!("rediss://user:{secret}@host:6379/"),
        ] {
            let builder = RedisStore::builder(&url);
            assert!(!format!("{builder:?}").contains(secret));
            if let Err(e) = &builder.client {
                assert!(!e.to_string().contains(secret), "{e}");
            }
        }
        let builder = RedisStore::builder(&format!("redis://user:{secret}@db.internal:6380/2"));
        let shown = format!("{builder:?}");
        assert!(
            shown.contains("db.internal:6380") && !shown.contains(secret),
            "{shown}"
        );
        let err = RedisStore::builder("rediss://h/").client.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Other);
    }
}
