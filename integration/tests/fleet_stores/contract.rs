//! The `SharedState` contract, as generic async functions over any store: every backend
//! test runs [`run`] against its store. Keys are prefixed with a name unique to the run,
//! so servers that outlive a run (moto, `scripts/test`'s Redis) need no reset.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tower_circuit_breaker::fleet::{CasOutcome, SharedState, StoreError, StoredRecord};

/// Long enough never to run out during a test.
pub const TTL: Duration = Duration::from_secs(600);
/// A bound on any single store call: a call still running after it has hung.
pub const HANG: Duration = Duration::from_secs(20);

/// What the contract needs besides the store: a way to make a record expire now.
pub trait Backend: Send + Sync {
    /// The store under test.
    fn store(&self) -> Arc<dyn SharedState>;

    /// Makes the record of `key` (a store key, without the store's prefix) expire now, by
    /// the backend's own means (Redis: its clock; DynamoDB: the store's clock), without
    /// waiting in real time.
    fn expire<'a>(&'a self, key: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

    /// The store the concurrent writers share; [`store`](Self::store) unless the server
    /// cannot take concurrent conditional writes (moto: see `dynamodb_store.rs`).
    fn concurrent_store(&self) -> Arc<dyn SharedState> {
        self.store()
    }

    /// Writers and increments per writer of the concurrent part (8 × 50 by default).
    fn concurrency(&self) -> (usize, usize) {
        (8, 50)
    }
}

/// Awaits a store call, failing the test if it does not finish within [`HANG`].
pub async fn bounded<T>(what: &str, call: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: the store call hung for {HANG:?}"))
}

pub async fn load(store: &dyn SharedState, key: &str) -> Result<Option<StoredRecord>, StoreError> {
    bounded(&format!("load({key})"), store.load(key)).await
}

pub async fn cas(
    store: &dyn SharedState,
    key: &str,
    expected: Option<u64>,
    body: &[u8],
) -> Result<CasOutcome, StoreError> {
    bounded(
        &format!("compare_and_set({key}, {expected:?})"),
        store.compare_and_set(key, expected, body.to_vec(), TTL),
    )
    .await
}

/// The whole contract, part by part; `prefix` makes the keys unique to this run.
pub async fn run(backend: &dyn Backend, prefix: &str) {
    let store = backend.store();
    let key = |part: &str| format!("{prefix}/{part}");
    absent_key_is_none(&*store, &key("absent")).await;
    create_only_if_absent(&*store, &key("create")).await;
    stale_versions_conflict(&*store, &key("stale")).await;
    versions_grow_by_one(&*store, &key("versions")).await;
    bodies_round_trip(&*store, &key("bodies")).await;
    keys_are_independent(&*store, &key("left"), &key("right")).await;
    expiry_makes_a_record_absent(backend, &key("expiry")).await;
    load_many_reads_in_order(&*store, &key("many")).await;
    let (writers, increments) = backend.concurrency();
    let store = backend.concurrent_store();
    concurrent_writers_lose_nothing(store, &key("concurrent"), writers, increments).await;
}

pub async fn absent_key_is_none(store: &dyn SharedState, key: &str) {
    assert_eq!(load(store, key).await.unwrap(), None);
    // Expecting a version of a key that does not exist is a conflict, and writes nothing.
    assert_eq!(
        cas(store, key, Some(1), b"x").await.unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(load(store, key).await.unwrap(), None);
}

pub async fn create_only_if_absent(store: &dyn SharedState, key: &str) {
    assert_eq!(
        cas(store, key, None, b"first").await.unwrap(),
        CasOutcome::Written(1)
    );
    assert_eq!(
        cas(store, key, None, b"second").await.unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(
        load(store, key).await.unwrap(),
        Some(StoredRecord {
            version: 1,
            body: b"first".to_vec()
        })
    );
}

pub async fn stale_versions_conflict(store: &dyn SharedState, key: &str) {
    assert_eq!(
        cas(store, key, None, b"v1").await.unwrap(),
        CasOutcome::Written(1)
    );
    assert_eq!(
        cas(store, key, Some(1), b"v2").await.unwrap(),
        CasOutcome::Written(2)
    );
    // A writer that read version 1 lost the race; one that guesses ahead is refused too.
    assert_eq!(
        cas(store, key, Some(1), b"late").await.unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(
        cas(store, key, Some(3), b"ahead").await.unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(
        cas(store, key, Some(0), b"zero").await.unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(
        load(store, key).await.unwrap(),
        Some(StoredRecord {
            version: 2,
            body: b"v2".to_vec()
        })
    );
    assert_eq!(
        cas(store, key, Some(2), b"v3").await.unwrap(),
        CasOutcome::Written(3)
    );
    assert_eq!(load(store, key).await.unwrap().unwrap().body, b"v3");
}

pub async fn versions_grow_by_one(store: &dyn SharedState, key: &str) {
    let mut expected = None;
    for n in 1..=20u64 {
        let body = n.to_string();
        assert_eq!(
            cas(store, key, expected, body.as_bytes()).await.unwrap(),
            CasOutcome::Written(n)
        );
        let record = load(store, key).await.unwrap().expect("just written");
        assert_eq!((record.version, record.body), (n, body.into_bytes()));
        expected = Some(n);
    }
}

pub async fn bodies_round_trip(store: &dyn SharedState, key: &str) {
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    let bodies: [&[u8]; 5] = [b"", b"\n", b"12\n34", b"\x00\xff\r\n\x00", &every_byte];
    let mut expected = None;
    for (i, body) in bodies.iter().enumerate() {
        let version = i as u64 + 1;
        assert_eq!(
            cas(store, key, expected, body).await.unwrap(),
            CasOutcome::Written(version)
        );
        let record = load(store, key).await.unwrap().expect("just written");
        assert_eq!(record.version, version);
        assert!(
            record.body == *body,
            "body {i} ({} bytes) changed on the way",
            body.len()
        );
        expected = Some(version);
    }
}

pub async fn keys_are_independent(store: &dyn SharedState, left: &str, right: &str) {
    assert_eq!(
        cas(store, left, None, b"l").await.unwrap(),
        CasOutcome::Written(1)
    );
    assert_eq!(
        cas(store, left, Some(1), b"l2").await.unwrap(),
        CasOutcome::Written(2)
    );
    assert_eq!(load(store, right).await.unwrap(), None);
    assert_eq!(
        cas(store, right, None, b"r").await.unwrap(),
        CasOutcome::Written(1)
    );
    assert_eq!(load(store, left).await.unwrap().unwrap().version, 2);
}

/// An expired record is absent: loads see none, a writer expecting its version conflicts,
/// and a create succeeds with version 1 again.
pub async fn expiry_makes_a_record_absent(backend: &dyn Backend, key: &str) {
    let store = backend.store();
    let store = &*store;
    assert_eq!(
        cas(store, key, None, b"a").await.unwrap(),
        CasOutcome::Written(1)
    );
    assert_eq!(
        cas(store, key, Some(1), b"b").await.unwrap(),
        CasOutcome::Written(2)
    );
    bounded("expire", backend.expire(key)).await;
    assert_eq!(load(store, key).await.unwrap(), None);
    assert_eq!(
        cas(store, key, Some(2), b"stale").await.unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(load(store, key).await.unwrap(), None);
    assert_eq!(
        cas(store, key, None, b"again").await.unwrap(),
        CasOutcome::Written(1)
    );
    assert_eq!(
        load(store, key).await.unwrap(),
        Some(StoredRecord {
            version: 1,
            body: b"again".to_vec()
        })
    );
}

/// `writers` tasks each add 1 to a counter in the body `increments` times, by
/// read-modify-compare-and-set, retrying on conflict. Every version from 1 to the total
/// must be written by exactly one writer, and the counter must end at the total.
pub async fn concurrent_writers_lose_nothing(
    store: Arc<dyn SharedState>,
    key: &str,
    writers: usize,
    increments: usize,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let store = store.clone();
        let key = key.to_owned();
        tasks.spawn(async move {
            let mut won = Vec::with_capacity(increments);
            let mut conflicts = 0usize;
            while won.len() < increments {
                let current = load(&*store, &key).await.expect("load");
                let (expected, count) = match current {
                    None => (None, 0u64),
                    Some(r) => {
                        let text = std::str::from_utf8(&r.body).expect("utf-8 counter");
                        (Some(r.version), text.parse::<u64>().expect("counter"))
                    }
                };
                let next = (count + 1).to_string();
                match cas(&*store, &key, expected, next.as_bytes())
                    .await
                    .expect("cas")
                {
                    CasOutcome::Written(v) => {
                        assert_eq!(v, expected.unwrap_or(0) + 1, "a write skipped a version");
                        won.push(v);
                    }
                    CasOutcome::Conflict => conflicts += 1,
                }
            }
            (won, conflicts)
        });
    }
    let mut versions = BTreeSet::new();
    let mut conflicts = 0;
    while let Some(joined) = tasks.join_next().await {
        let (won, lost) = joined.expect("writer task");
        conflicts += lost;
        for v in won {
            assert!(versions.insert(v), "version {v} was won by two writers");
        }
    }
    let total = (writers * increments) as u64;
    assert_eq!(versions, (1..=total).collect::<BTreeSet<_>>());
    let record = load(&*store, key).await.unwrap().expect("counter");
    assert_eq!(record.version, total);
    assert_eq!(
        record.body,
        total.to_string().into_bytes(),
        "lost increments"
    );
    eprintln!(
        "  {writers} writers x {increments} increments: {total} writes, {conflicts} conflicts retried"
    );
}

/// `load_many` answers one entry per key, in the order given, `None` where there is no
/// record, as `load` would; no keys, no entries.
pub async fn load_many_reads_in_order(store: &dyn SharedState, key: &str) {
    let keys: Vec<String> = (0..6).map(|i| format!("{key}/{i}")).collect();
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let body = format!("body {i}");
        assert_eq!(
            cas(store, k, None, body.as_bytes()).await.unwrap(),
            CasOutcome::Written(1)
        );
    }
    let many = bounded("load_many", store.load_many(&keys)).await.unwrap();
    assert_eq!(many.len(), keys.len());
    for (i, (k, record)) in keys.iter().zip(&many).enumerate() {
        assert_eq!(record, &load(store, k).await.unwrap(), "key {i}");
        assert_eq!(record.is_some(), i % 2 == 0, "key {i}");
    }
    let none = bounded("load_many", store.load_many(&[])).await.unwrap();
    assert!(none.is_empty());
}
