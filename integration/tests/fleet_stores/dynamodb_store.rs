//! `DynamoDbStore` against moto (`MOTO_ENDPOINT`): the contract, the item layout and
//! expiry on the store's clock, the table helper, and an outage of the path to moto (a
//! TCP proxy switched down and up: moto itself is shared by every test, so it is not
//! killed). SDK error classification runs against a local fault server, with no moto.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, BillingMode, TimeToLiveStatus};
use tower_circuit_breaker::fleet::dynamodb::{BODY, EXPIRES_AT, PK, VERSION};
use tower_circuit_breaker::fleet::{
    CasOutcome, DynamoDbStore, SharedState, StoreErrorKind, StoreFuture, StoredRecord,
};

use crate::contract::{self, Backend, TTL, bounded, cas, load};
use crate::{assert_outage, env_or_skip, unique};
use support::{FaultProxy, FaultServer, Mode, closed_port, sdk_config_in};

/// A wall clock that moves only when told: real time at creation, plus an offset.
#[derive(Clone)]
struct ManualClock {
    base: SystemTime,
    offset_secs: Arc<AtomicU64>,
}

impl ManualClock {
    fn new(base: SystemTime) -> Self {
        ManualClock {
            base,
            offset_secs: Arc::new(AtomicU64::new(0)),
        }
    }

    fn now(&self) -> SystemTime {
        self.base + Duration::from_secs(self.offset_secs.load(Ordering::SeqCst))
    }

    fn advance(&self, by: Duration) {
        self.offset_secs.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    /// A store on `table` that reads this clock.
    fn store(&self, client: Client, table: &str) -> DynamoDbStore {
        let clock = self.clone();
        DynamoDbStore::new(client, table).with_clock(move || clock.now())
    }
}

fn client(endpoint: &str, region: &str) -> Client {
    Client::new(&sdk_config_in(
        endpoint,
        region,
        Some(Duration::from_secs(5)),
    ))
}

async fn table(client: &Client) -> String {
    let name = unique("tcb-fleet");
    bounded("create_table", DynamoDbStore::create_table(client, &name))
        .await
        .expect("create table");
    name
}

/// A client of moto in us-east-1 and a fresh table in it; `None` (the test skips, loudly)
/// without `MOTO_ENDPOINT`.
async fn moto_table(test: &str) -> Option<(Client, String)> {
    let endpoint = env_or_skip("MOTO_ENDPOINT", test)?;
    let client = client(&endpoint, "us-east-1");
    let table = table(&client).await;
    Some((client, table))
}

struct DynamoDbBackend {
    store: Arc<DynamoDbStore>,
    clock: ManualClock,
}

impl Backend for DynamoDbBackend {
    fn store(&self) -> Arc<dyn SharedState> {
        self.store.clone()
    }

    /// Moves the store's clock past every TTL the contract writes: DynamoDB's own TTL
    /// deletion is lazy (and moto's is not run), so the store decides expiry by its clock.
    fn expire<'a>(&'a self, _key: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move { self.clock.advance(TTL + Duration::from_secs(1)) })
    }

    fn concurrent_store(&self) -> Arc<dyn SharedState> {
        Arc::new(OneCallAtATime {
            store: self.store.clone(),
            gate: tokio::sync::Mutex::new(()),
        })
    }

    /// 8 × 15: moto answers one request at a time here (about 10 ms each), and 8 × 50
    /// (some 3,600 requests with the conflicts) would take half a minute.
    fn concurrency(&self) -> (usize, usize) {
        (8, 15)
    }
}

/// Passes one call at a time to the store. moto is not DynamoDB: its server handles
/// requests on parallel threads and its DynamoDB backend takes no lock, so two
/// simultaneous `PutItem`s with the same `version = :expected` condition can both succeed
/// there (seen: "version 187 was won by two writers"), which real DynamoDB never allows.
/// The concurrent-writers part of the contract therefore runs through this wrapper: the
/// eight writers still interleave their read-modify-write cycles (and conflict), but moto
/// sees one request at a time.
struct OneCallAtATime {
    store: Arc<DynamoDbStore>,
    gate: tokio::sync::Mutex<()>,
}

impl SharedState for OneCallAtATime {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoredRecord>> {
        Box::pin(async move {
            let _one = self.gate.lock().await;
            self.store.load(key).await
        })
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        body: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'a, CasOutcome> {
        Box::pin(async move {
            let _one = self.gate.lock().await;
            self.store.compare_and_set(key, expected, body, ttl).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_store_meets_the_contract() {
    let Some((client, table)) = moto_table("dynamodb_store_meets_the_contract").await else {
        return;
    };
    let clock = ManualClock::new(SystemTime::now());
    let store = clock
        .store(client, &table)
        .with_operation_timeout(Duration::from_secs(5));
    let backend = DynamoDbBackend {
        store: Arc::new(store),
        clock,
    };
    contract::run(&backend, &unique("k")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_item_layout_expiry_and_foreign_items() {
    let Some((client, table)) = moto_table("dynamodb_item_layout_expiry_and_foreign_items").await
    else {
        return;
    };
    // 1_700_000_000.2 s: a TTL of 60 s ends in second 1_700_000_061 (rounded up).
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_millis(1_700_000_000_200));
    let store = clock
        .store(client.clone(), &table)
        .with_key_prefix("app:")
        .with_operation_timeout(Duration::from_secs(5));
    assert_eq!(
        (store.table(), store.key_prefix()),
        (table.as_str(), "app:")
    );
    let ttl = Duration::from_secs(60);
    let written = store.compare_and_set("k", None, b"\x00b".to_vec(), ttl);
    assert_eq!(
        bounded("cas", written).await.unwrap(),
        CasOutcome::Written(1)
    );

    let item = bounded(
        "raw GetItem",
        client
            .get_item()
            .table_name(&table)
            .key(PK, AttributeValue::S("app:k".into()))
            .consistent_read(true)
            .send(),
    )
    .await
    .expect("raw GetItem")
    .item
    .expect("the item is under pk = prefix + key");
    assert_eq!(item.get(VERSION), Some(&AttributeValue::N("1".into())));
    assert_eq!(
        item.get(BODY),
        Some(&AttributeValue::B(Blob::new(b"\x00b".to_vec())))
    );
    assert_eq!(
        item.get(EXPIRES_AT),
        Some(&AttributeValue::N("1700000061".into()))
    );
    assert_eq!(item.len(), 4, "{item:?}");

    // Live through second 1_700_000_060, dead from 1_700_000_061 on; DynamoDB has not
    // deleted it (TTL deletion is lazy), the store treats it as absent.
    clock.advance(Duration::from_secs(60));
    assert_eq!(load(&store, "k").await.unwrap().map(|r| r.version), Some(1));
    clock.advance(Duration::from_secs(1));
    assert_eq!(load(&store, "k").await.unwrap(), None);
    assert_eq!(
        cas(&store, "k", Some(1), b"stale").await.unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(
        cas(&store, "k", None, b"new").await.unwrap(),
        CasOutcome::Written(1)
    );
    assert_eq!(
        load(&store, "k").await.unwrap(),
        Some(StoredRecord {
            version: 1,
            body: b"new".to_vec()
        })
    );

    // An item the store did not write is Corrupt, never guessed at.
    for (name, value) in [
        (VERSION, AttributeValue::S("1".into())),
        (BODY, AttributeValue::S("text".into())),
        (EXPIRES_AT, AttributeValue::S("later".into())),
    ] {
        let mut put = client
            .put_item()
            .table_name(&table)
            .item(PK, AttributeValue::S("app:foreign".into()))
            .item(VERSION, AttributeValue::N("1".into()))
            .item(BODY, AttributeValue::B(Blob::new(b"b".to_vec())))
            .item(EXPIRES_AT, AttributeValue::N("4000000000".into()));
        put = put.item(name, value);
        bounded("raw PutItem", put.send())
            .await
            .expect("raw PutItem");
        let err = load(&store, "foreign").await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{name}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_create_table_is_on_demand_with_ttl_and_idempotent() {
    let test = "dynamodb_create_table_is_on_demand_with_ttl_and_idempotent";
    let Some((client, table)) = moto_table(test).await else {
        return;
    };
    bounded(
        "create_table again",
        DynamoDbStore::create_table(&client, &table),
    )
    .await
    .expect("a second create_table keeps the table");

    let described = bounded(
        "DescribeTable",
        client.describe_table().table_name(&table).send(),
    )
    .await
    .expect("DescribeTable");
    let description = described.table().expect("table");
    let key: Vec<_> = description
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(key, [(PK.to_owned(), "HASH".to_owned())]);
    assert_eq!(
        description
            .billing_mode_summary()
            .and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    let ttl = bounded(
        "DescribeTimeToLive",
        client.describe_time_to_live().table_name(&table).send(),
    )
    .await
    .expect("DescribeTimeToLive");
    let ttl = ttl.time_to_live_description().expect("ttl description");
    assert_eq!(ttl.attribute_name(), Some(EXPIRES_AT));
    assert!(matches!(
        ttl.time_to_live_status(),
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ));

    // A store on a table that does not exist fails with a typed error.
    let store = DynamoDbStore::new(client, unique("no-such-table"));
    let err = load(&store, "k").await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Other, "{err}");
    assert!(
        err.to_string().contains("ResourceNotFoundException"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_outage_fails_fast_then_recovers() {
    let Some(endpoint) = env_or_skip("MOTO_ENDPOINT", "dynamodb_outage_fails_fast_then_recovers")
    else {
        return;
    };
    // Its own region: the SDK's retry quota is per service and region, process-wide.
    let region = "eu-west-3";
    let table = table(&client(&endpoint, region)).await;
    let moto: std::net::SocketAddr = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("MOTO_ENDPOINT is http://127.0.0.1:PORT");
    let proxy = FaultProxy::start(moto).await;
    let store = DynamoDbStore::new(client(&proxy.url(), region), &table)
        .with_operation_timeout(Duration::from_millis(800));
    assert_eq!(
        cas(&store, "k", None, b"a").await.unwrap(),
        CasOutcome::Written(1)
    );

    // Down: every connection is closed at once.
    proxy.set_down(true);
    for _ in 0..3 {
        assert_outage(load(&store, "k").await);
        assert_outage(cas(&store, "k", Some(1), b"b").await);
    }
    // Up, but answering later than the store's operation timeout.
    proxy.set_down(false);
    proxy.set_latency(Duration::from_secs(3));
    assert_eq!(
        assert_outage(load(&store, "k").await),
        StoreErrorKind::Timeout
    );
    // Back to normal.
    proxy.set_latency(Duration::ZERO);
    let mut attempts = 0;
    let record = loop {
        attempts += 1;
        match load(&store, "k").await {
            Ok(record) => break record,
            Err(e) if attempts < 5 => {
                assert_outage::<()>(Err(e));
            }
            Err(e) => panic!("still failing after {attempts} calls: {e}"),
        }
    };
    assert_eq!(record.map(|r| r.version), Some(1));
    assert_eq!(
        cas(&store, "k", Some(1), b"b").await.unwrap(),
        CasOutcome::Written(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_errors_are_classified_without_service_messages() {
    // No moto: a local server answers what each case needs. One region per case keeps the
    // SDK's retry quota (per service and region) from carrying over.
    let cases: [(&str, Mode, StoreErrorKind); 6] = [
        (
            "us-west-1",
            Mode::dynamodb_error(400, "ProvisionedThroughputExceededException"),
            StoreErrorKind::Unavailable,
        ),
        (
            "us-west-2",
            Mode::dynamodb_error(400, "ThrottlingException"),
            StoreErrorKind::Unavailable,
        ),
        (
            "eu-west-1",
            Mode::dynamodb_error(500, "InternalServerError"),
            StoreErrorKind::Unavailable,
        ),
        (
            "eu-west-2",
            Mode::dynamodb_error(400, "ResourceNotFoundException"),
            StoreErrorKind::Other,
        ),
        (
            "eu-central-1",
            Mode::dynamodb_error(400, "AccessDeniedException"),
            StoreErrorKind::Other,
        ),
        ("ap-south-1", Mode::BlackHole, StoreErrorKind::Timeout),
    ];
    for (region, mode, kind) in cases {
        let server = FaultServer::start(mode.clone()).await;
        let store = DynamoDbStore::new(client(&server.url(), region), "t")
            .with_operation_timeout(Duration::from_millis(300));
        for err in [
            load(&store, "k").await.unwrap_err(),
            cas(&store, "k", Some(1), b"secret body").await.unwrap_err(),
        ] {
            assert_eq!(err.kind(), kind, "{mode:?}: {err}");
            let text = err.to_string();
            assert!(
                !text.contains("injected") && !text.contains("secret"),
                "{text}"
            );
        }
    }

    // The conditional check failing is a conflict, not an error.
    let server =
        FaultServer::start(Mode::dynamodb_error(400, "ConditionalCheckFailedException")).await;
    let store = DynamoDbStore::new(client(&server.url(), "ap-northeast-1"), "t");
    assert_eq!(
        cas(&store, "k", Some(1), b"x").await.unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(
        cas(&store, "k", None, b"x").await.unwrap(),
        CasOutcome::Conflict
    );

    // An answer that is not an item of ours is Corrupt.
    let garbled = Mode::Ok {
        status: 200,
        body: r#"{"Item":{"pk":{"S":"tcb:k"},"version":{"N":"1"}}}"#.into(),
    };
    let server = FaultServer::start(garbled).await;
    let store = DynamoDbStore::new(client(&server.url(), "ap-northeast-2"), "t");
    assert_eq!(
        load(&store, "k").await.unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );

    // Nothing listening.
    let closed = closed_port().await;
    let store = DynamoDbStore::new(client(&format!("http://{closed}"), "sa-east-1"), "t")
        .with_operation_timeout(Duration::from_secs(5));
    assert_eq!(
        assert_outage(load(&store, "k").await),
        StoreErrorKind::Unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_load_many_reads_by_batches_of_100_in_the_order_asked() {
    let test = "dynamodb_load_many_reads_by_batches_of_100_in_the_order_asked";
    let Some((client, table)) = moto_table(test).await else {
        return;
    };
    let clock = ManualClock::new(SystemTime::now());
    let store = clock
        .store(client.clone(), &table)
        .with_operation_timeout(Duration::from_secs(10));
    // 130 records: two BatchGetItem requests (100 + 30 keys).
    for i in 0..130 {
        let key = format!("k{i}");
        let written = store.compare_and_set(&key, None, vec![i as u8], TTL);
        assert_eq!(bounded("cas", written).await, Ok(CasOutcome::Written(1)));
    }
    // An item that is not ours under a key, with a readable version.
    bounded(
        "raw PutItem",
        client
            .put_item()
            .table_name(&table)
            .item(PK, AttributeValue::S("tcb:broken".into()))
            .item(VERSION, AttributeValue::N("7".into()))
            .send(),
    )
    .await
    .expect("raw PutItem");
    // Asked in reverse, with absent keys, a repeated key and the broken item.
    let mut keys: Vec<String> = (0..130).rev().map(|i| format!("k{i}")).collect();
    keys.extend(["absent".into(), "k5".into(), "broken".into()]);
    let records = bounded("load_many", store.load_many(&keys))
        .await
        .expect("load_many");
    assert_eq!(records.len(), keys.len());
    for (i, record) in records[..130].iter().enumerate() {
        let n = 129 - i;
        assert_eq!(
            record.as_ref().map(|r| (r.version, r.body.clone())),
            Some((1, vec![n as u8])),
            "k{n}"
        );
    }
    assert_eq!(records[130], None);
    assert_eq!(records[131].as_ref().map(|r| r.body.clone()), Some(vec![5]));
    // Its version and an empty body: the fleet layer finds it corrupt and replaces it.
    assert_eq!(
        records[132],
        Some(StoredRecord {
            version: 7,
            body: Vec::new()
        })
    );
    // Past the TTL on the store's clock, every record reads as absent.
    clock.advance(TTL + Duration::from_secs(1));
    let records = bounded("load_many", store.load_many(&keys[..3]))
        .await
        .expect("load_many");
    assert_eq!(records, vec![None, None, None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_load_many_retries_unprocessed_keys_a_bounded_number_of_times() {
    // No moto: a local server that always leaves the key unprocessed, and names a key
    // nobody asked for.
    let body = r#"{"Responses":{"t":[{"pk":{"S":"tcb:foreign"},"version":{"N":"1"},"body":{"B":"eA=="},"expires_at":{"N":"99999999999"}}]},"UnprocessedKeys":{"t":{"Keys":[{"pk":{"S":"tcb:k"}}],"ConsistentRead":true}}}"#;
    let server = FaultServer::start(Mode::Ok {
        status: 200,
        body: body.into(),
    })
    .await;
    let store = DynamoDbStore::new(client(&server.url(), "ca-central-1"), "t")
        .with_operation_timeout(Duration::from_secs(5));
    let err = bounded("load_many", store.load_many(&["k".to_owned()]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert_eq!(
        server.hits(),
        tower_circuit_breaker::fleet::dynamodb::BATCH_GET_ATTEMPTS as usize
    );

    // Processed at the first answer: the foreign item is ignored, the key is absent.
    server.set_mode(Mode::Ok {
        status: 200,
        body: r#"{"Responses":{"t":[{"pk":{"S":"tcb:foreign"},"version":{"N":"1"},"body":{"B":"eA=="},"expires_at":{"N":"99999999999"}}]}}"#.into(),
    });
    let records = bounded("load_many", store.load_many(&["k".to_owned()]))
        .await
        .expect("load_many");
    assert_eq!(records, vec![None]);
}
