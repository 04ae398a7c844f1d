//! A [`SharedState`] in a DynamoDB table: one item per circuit key, written by a
//! conditional `PutItem`.
//!
//! # Layout
//!
//! The table has a string partition key `pk` and no sort key; each circuit key is one item:
//!
//! | attribute    | type | value |
//! |--------------|------|-------|
//! | `pk`         | S    | the key prefix (`tcb:` by default), then the key |
//! | `version`    | N    | 1 for a new item, one more on every write |
//! | `body`       | B    | the fleet layer's bytes, opaque to the store |
//! | `expires_at` | N    | epoch seconds after which the item is dead: the table's TTL attribute |
//!
//! - [`load`](SharedState::load) is one `GetItem` with `ConsistentRead`. DynamoDB deletes
//!   expired items lazily (often within minutes, sometimes later), so an item whose
//!   `expires_at` is not after the current second is treated as absent. An item without
//!   the attributes above, or with other types, is [`StoreErrorKind::Corrupt`].
//! - [`load_many`](SharedState::load_many) (a registry-wide round) is one strongly
//!   consistent `BatchGetItem` per 100 keys; keys DynamoDB leaves unprocessed (throttling,
//!   the 16 MB answer limit) are asked again, up to 4 requests per 100 keys with a 25, 50,
//!   100 ms backoff, then the call fails as [`StoreErrorKind::Unavailable`].
//! - [`compare_and_set`](SharedState::compare_and_set) is one `PutItem` whose
//!   `ConditionExpression` is `attribute_not_exists(pk) OR expires_at <= :now` when no
//!   version is expected, and `version = :expected AND expires_at > :now` otherwise; a
//!   failed condition (`ConditionalCheckFailedException`) is a
//!   [`Conflict`](CasOutcome::Conflict). So an expired item behaves as an absent one for
//!   both calls, and a writer that expected it gets a conflict, as with Redis.
//! - `expires_at` is `now + ttl` rounded up to the next whole second (DynamoDB TTL counts in
//!   seconds); the record lives at least until then. "Now" is this process's clock
//!   ([`DynamoDbStore::with_clock`] replaces it), so instances with skewed clocks disagree
//!   on expiry by their skew.
//!
//! # Table
//!
//! [`DynamoDbStore::create_table`] creates it (on-demand billing, TTL on `expires_at`) and
//! is safe to run when it exists. With infrastructure as code, the equivalent is a table
//! with `AttributeDefinitions: [{pk, S}]`, `KeySchema: [{pk, HASH}]`,
//! `BillingMode: PAY_PER_REQUEST` and `TimeToLiveSpecification: {expires_at, enabled}`.
//!
//! # IAM permissions
//!
//! At run time: `dynamodb:GetItem`, `dynamodb:BatchGetItem` (registry-wide sharing) and
//! `dynamodb:PutItem` on the table's ARN. For
//! [`DynamoDbStore::create_table`] (tests, setup scripts; usually not the Lambda's role):
//! `dynamodb:CreateTable`, `dynamodb:DescribeTable`, `dynamodb:DescribeTimeToLive` and
//! `dynamodb:UpdateTimeToLive`.
//!
//! # Costs
//!
//! The fleet layer reads each circuit's item once per cache period per instance (one
//! strongly consistent `GetItem`: one read request unit for a body under 4 KB) and writes
//! it once per publish (one `PutItem`: one write request unit per KB), never per call.
//! Every instance reads and writes the same item for a circuit, so one circuit is one
//! partition key: DynamoDB documents per-partition limits of about 3,000 reads and 1,000
//! writes per second. Keep the cache period such that instances × (1 / period) stays well
//! under that (1,000 instances at a 1 s period is about 1,000 reads a second on one key),
//! and publish on transitions, not per call. A conditional write that fails is still
//! billed. A `BatchGetItem` is one request but bills every item it reads as a `GetItem`
//! would: batching a registry's reads cuts requests and round trips, not read units.
//!
//! # Client configuration
//!
//! The store uses the client as given: configure its retries and timeouts on the
//! `SdkConfig` (a couple of attempts and an `operation_timeout` below the fleet sync
//! period suit a store that is read in the background). Independently, each store call
//! is bounded by [`DynamoDbStore::with_operation_timeout`] (1 s by default).
//!
//! # Errors
//!
//! SDK errors are classified: timeouts (the SDK's, or the store's operation timeout) are
//! [`StoreErrorKind::Timeout`]; connection failures, throttling, 5xx answers and
//! transient codes are [`StoreErrorKind::Unavailable`]; everything else (a missing table,
//! access denied, a validation error) is [`StoreErrorKind::Other`]. Messages name the
//! operation and the error code, never a service message, a key's value or a body. A
//! `compare_and_set` that timed out may still have been written: read the item again
//! before deciding what happened.
//!
//! # Examples
//!
//! ```ignore
//! # // SDK example: compiled by integration/tests/doc_examples
//! use std::time::Duration;
//! use tower_circuit_breaker::fleet::{CasOutcome, DynamoDbStore, SharedState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sdk_config = aws_config::load_from_env().await;
//! let client = aws_sdk_dynamodb::Client::new(&sdk_config);
//! DynamoDbStore::create_table(&client, "circuits").await?; // once, at setup
//! let store = DynamoDbStore::new(client, "circuits");
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

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::store::{
    CasOutcome, SharedState, StoreError, StoreErrorKind, StoreFuture, StoredRecord, prefixed,
    within,
};
// The AWS error-code vocabulary, a leaf module shared with the adapter's classification:
// the store depends on it alone, not on the adapter (client, classification, registry).
mod batch;

use crate::aws::error_codes::{THROTTLING_ERROR_CODES, TRANSIENT_ERROR_CODES};

/// The partition key attribute (S).
pub const PK: &str = "pk";
/// The version attribute (N).
pub const VERSION: &str = "version";
/// The body attribute (B).
pub const BODY: &str = "body";
/// The expiry attribute (N, epoch seconds), the table's TTL attribute.
pub const EXPIRES_AT: &str = "expires_at";
/// The default key prefix of a [`DynamoDbStore`].
pub const DEFAULT_KEY_PREFIX: &str = "tcb:";

const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(1);
/// Keys per `BatchGetItem` request (DynamoDB's limit).
pub const BATCH_GET_MAX: usize = 100;
/// Requests per chunk of keys while DynamoDB leaves some unprocessed (the first included).
pub const BATCH_GET_ATTEMPTS: u32 = 4;
/// The wait before the second request for unprocessed keys; doubled for each next one.
const BATCH_GET_BACKOFF: Duration = Duration::from_millis(25);
/// How long [`DynamoDbStore::create_table`] waits for a new table to become active.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(300);

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A fleet [`SharedState`] in DynamoDB. See the [module docs](self).
///
/// Cheap to clone: the SDK client is.
#[derive(Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
    prefix: String,
    operation_timeout: Duration,
    clock: Clock,
}

// ===== impl DynamoDbStore =====

impl DynamoDbStore {
    /// A store in `table` (which must exist: see [`create_table`](Self::create_table)),
    /// with key prefix `tcb:` and a 1 s operation timeout.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbStore {
            client,
            table: table.into(),
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            clock: Arc::new(SystemTime::now),
        }
    }

    /// The prefix put before every key in `pk` (default [`DEFAULT_KEY_PREFIX`], `tcb:`),
    /// so that the table can hold other items too.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one [`load`](SharedState::load) or
    /// [`compare_and_set`](SharedState::compare_and_set) may take, the SDK's retries
    /// included (default 1 s); past it the call fails with [`StoreErrorKind::Timeout`].
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The wall clock that decides expiry (`expires_at` on writes, "expired" on reads and
    /// in conditions); [`SystemTime::now`] by default. For tests and simulations.
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The `pk` value a store key is kept under: the prefix, then the key.
    pub fn partition_key(&self, key: &str) -> String {
        prefixed(&self.prefix, key)
    }

    /// Creates `table` for a store: partition key `pk` (S), on-demand billing, and TTL on
    /// `expires_at`; waits (up to 5 minutes) until it is active. An existing table is
    /// kept, and only its TTL setting is checked and, if off, turned on.
    ///
    /// Meant for tests, setup scripts and first deployments; needs the permissions listed
    /// in the [module docs](self#iam-permissions).
    ///
    /// # Errors
    ///
    /// Any call failing, classified as for the store's own calls, or TTL being enabled on
    /// another attribute ([`StoreErrorKind::Other`]).
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let created = client
            .create_table()
            .table_name(table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(PK)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|_| other("CreateTable: invalid attribute definition"))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(PK)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|_| other("CreateTable: invalid key schema"))?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(SdkError::ServiceError(e)) if e.err().is_resource_in_use_exception() => {}
            Err(e) => return Err(classify("CreateTable", &e)),
        }
        client
            .wait_until_table_exists()
            .table_name(table)
            .wait(TABLE_ACTIVE_WAIT)
            .await
            .map_err(|_| {
                StoreError::new(
                    StoreErrorKind::Timeout,
                    format!(
                        "CreateTable: the table did not become active within {TABLE_ACTIVE_WAIT:?}"
                    ),
                )
            })?;

        let ttl = client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| classify("DescribeTimeToLive", &e))?;
        let description = ttl.time_to_live_description();
        let status = description.and_then(|d| d.time_to_live_status());
        let attribute = description.and_then(|d| d.attribute_name());
        match status {
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => {
                if attribute == Some(EXPIRES_AT) {
                    Ok(())
                } else {
                    Err(other(
                        "UpdateTimeToLive: the table's TTL is on another attribute than expires_at",
                    ))
                }
            }
            _ => {
                let specification = TimeToLiveSpecification::builder()
                    .attribute_name(EXPIRES_AT)
                    .enabled(true)
                    .build()
                    .map_err(|_| other("UpdateTimeToLive: invalid specification"))?;
                client
                    .update_time_to_live()
                    .table_name(table)
                    .time_to_live_specification(specification)
                    .send()
                    .await
                    .map_err(|e| classify("UpdateTimeToLive", &e))?;
                Ok(())
            }
        }
    }

    /// Now, in whole epoch seconds (rounded down).
    fn now(&self) -> Duration {
        (self.clock)()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }

    async fn get(&self, key: &str) -> Result<Option<StoredRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(self.partition_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", &e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let (record, expires_at) = decode(item)?;
        if expires_at <= self.now().as_secs() {
            return Ok(None);
        }
        Ok(Some(record))
    }

    async fn put(
        &self,
        key: &str,
        expected: Option<u64>,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Result<CasOutcome, StoreError> {
        let now = self.now();
        let next = match expected {
            None => 1,
            Some(v) => v.checked_add(1).ok_or_else(|| {
                StoreError::new(StoreErrorKind::Other, "PutItem: version overflow")
            })?,
        };
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, AttributeValue::S(self.partition_key(key)))
            .item(VERSION, AttributeValue::N(next.to_string()))
            .item(BODY, AttributeValue::B(Blob::new(body)))
            .item(
                EXPIRES_AT,
                AttributeValue::N(expires_at(now, ttl).to_string()),
            )
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":now", AttributeValue::N(now.as_secs().to_string()));
        let request = match expected {
            None => request
                .condition_expression("attribute_not_exists(#pk) OR #exp <= :now")
                .expression_attribute_names("#pk", PK),
            Some(v) => request
                .condition_expression("#v = :expected AND #exp > :now")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":expected", AttributeValue::N(v.to_string())),
        };
        match request.send().await {
            Ok(_) => Ok(CasOutcome::Written(next)),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(CasOutcome::Conflict)
            }
            Err(e) => Err(classify("PutItem", &e)),
        }
    }
}

impl SharedState for DynamoDbStore {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoredRecord>> {
        Box::pin(within(
            self.operation_timeout,
            "DynamoDB",
            "GetItem",
            self.get(key),
        ))
    }

    /// One `BatchGetItem` (strongly consistent) per 100 keys, under one operation
    /// timeout for the whole call. An item that cannot be decoded comes back with its
    /// version and an empty body when its version can be read (the fleet layer then finds
    /// it corrupt and replaces it), as absent otherwise (the fleet layer's write then
    /// conflicts and it reads the key alone, which reports the corruption).
    fn load_many<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, Vec<Option<StoredRecord>>> {
        Box::pin(within(
            self.operation_timeout,
            "DynamoDB",
            "BatchGetItem",
            self.get_many(keys),
        ))
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        body: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'a, CasOutcome> {
        let call = self.put(key, expected, body, ttl);
        Box::pin(within(self.operation_timeout, "DynamoDB", "PutItem", call))
    }
}

impl fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbStore")
            .field("table", &self.table)
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

// ===== helpers =====

/// `now + ttl` in epoch seconds, rounded up, and at least the next second.
fn expires_at(now: Duration, ttl: Duration) -> u64 {
    let end = now.saturating_add(ttl);
    let rounded_up = end
        .as_secs()
        .saturating_add(u64::from(end.subsec_nanos() > 0));
    rounded_up.max(now.as_secs().saturating_add(1))
}

/// The record and its `expires_at` from an item read back. Items are untrusted input.
fn decode(mut item: HashMap<String, AttributeValue>) -> Result<(StoredRecord, u64), StoreError> {
    let corrupt =
        |what: &str| StoreError::new(StoreErrorKind::Corrupt, format!("GetItem: item {what}"));
    let number = |value: Option<AttributeValue>, name: &str| match value {
        Some(AttributeValue::N(n)) => n
            .parse::<u64>()
            .map_err(|_| corrupt(&format!("has a malformed {name}"))),
        Some(_) => Err(corrupt(&format!("has a {name} that is not a number"))),
        None => Err(corrupt(&format!("has no {name}"))),
    };
    let version = number(item.remove(VERSION), VERSION)?;
    if version == 0 {
        return Err(corrupt("has version 0"));
    }
    let expires_at = number(item.remove(EXPIRES_AT), EXPIRES_AT)?;
    let body = match item.remove(BODY) {
        Some(AttributeValue::B(blob)) => blob.into_inner(),
        Some(_) => return Err(corrupt("has a body that is not binary")),
        None => return Err(corrupt("has no body")),
    };
    Ok((StoredRecord { version, body }, expires_at))
}

fn other(message: &str) -> StoreError {
    StoreError::new(StoreErrorKind::Other, message)
}

/// Maps an SDK error to a [`StoreError`] naming `operation` and the error code only.
fn classify<E>(operation: &str, error: &SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, detail) = match error {
        SdkError::TimeoutError(_) => (StoreErrorKind::Timeout, "timed out".to_owned()),
        SdkError::DispatchFailure(failure) => {
            if failure.is_timeout() {
                (StoreErrorKind::Timeout, "timed out".to_owned())
            } else if failure.is_user() {
                (
                    StoreErrorKind::Other,
                    "request could not be sent".to_owned(),
                )
            } else {
                (StoreErrorKind::Unavailable, "could not connect".to_owned())
            }
        }
        SdkError::ResponseError(_) => (
            StoreErrorKind::Unavailable,
            "the answer could not be read".to_owned(),
        ),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("(no code)");
            let status = service.raw().status().as_u16();
            let transient = THROTTLING_ERROR_CODES.contains(&code)
                || TRANSIENT_ERROR_CODES.contains(&code)
                || status == 429
                || status >= 500;
            let kind = if transient {
                StoreErrorKind::Unavailable
            } else {
                StoreErrorKind::Other
            };
            (kind, format!("{code} (HTTP {status})"))
        }
        SdkError::ConstructionFailure(_) => (
            StoreErrorKind::Other,
            "request could not be built".to_owned(),
        ),
        _ => (StoreErrorKind::Other, "unknown SDK error".to_owned()),
    };
    StoreError::new(kind, format!("DynamoDB {operation}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn expiry_rounds_up_to_the_next_whole_second() {
        let now = Duration::from_millis(100_200);
        assert_eq!(expires_at(now, Duration::from_millis(1)), 101);
        assert_eq!(expires_at(now, Duration::ZERO), 101);
        assert_eq!(expires_at(now, Duration::from_millis(800)), 101);
        assert_eq!(expires_at(now, Duration::from_millis(801)), 102);
        assert_eq!(
            expires_at(Duration::from_secs(100), Duration::from_secs(60)),
            160
        );
        assert_eq!(expires_at(now, Duration::MAX), u64::MAX);
    }

    #[test]
    fn decodes_an_item_and_refuses_foreign_ones() {
        let good = item(&[
            (PK, AttributeValue::S("tcb:k".into())),
            (VERSION, AttributeValue::N("7".into())),
            (BODY, AttributeValue::B(Blob::new(b"\x00body".to_vec()))),
            (EXPIRES_AT, AttributeValue::N("1700000000".into())),
        ]);
        let (record, expires) = decode(good.clone()).unwrap();
        assert_eq!(
            (record.version, record.body, expires),
            (7, b"\x00body".to_vec(), 1_700_000_000)
        );

        let broken: Vec<(&str, Option<AttributeValue>)> = vec![
            (VERSION, None),
            (VERSION, Some(AttributeValue::S("7".into()))),
            (VERSION, Some(AttributeValue::N("0".into()))),
            (VERSION, Some(AttributeValue::N("-1".into()))),
            (VERSION, Some(AttributeValue::N("1.5".into()))),
            (BODY, None),
            (BODY, Some(AttributeValue::S("body".into()))),
            (EXPIRES_AT, None),
            (EXPIRES_AT, Some(AttributeValue::N("soon".into()))),
        ];
        for (name, value) in broken {
            let mut bad = good.clone();
            match value.clone() {
                Some(v) => bad.insert(name.to_owned(), v),
                None => bad.remove(name),
            };
            let err = decode(bad).unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{name} = {value:?}");
        }
    }
}
