//! `RedisStore` against redis-server: the contract on `REDIS_URL`, the stored layout and
//! TTL, foreign values, and outages of a server of the test's own (killed, restarted,
//! stopped) from `REDIS_SERVER_BIN`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use tower_circuit_breaker::fleet::{
    CasOutcome, RedisStore, RedisStoreBuilder, SharedState, StoreErrorKind, StoredRecord,
};

use crate::contract::{self, Backend, bounded, cas, load};
use crate::{assert_outage, env_or_skip, unique};
use support::redis_server::RedisServer;

/// Short timeouts for the outage tests, so that each failing call ends soon.
fn outage_store(url: &str) -> RedisStoreBuilder {
    RedisStore::builder(url)
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(200))
        .operation_timeout(Duration::from_millis(600))
}

/// A plain connection beside the store, to look at and change what it stored.
async fn raw(url: &str) -> MultiplexedConnection {
    let client = ::redis::Client::open(url).expect("url");
    bounded("raw connect", client.get_multiplexed_async_connection())
        .await
        .expect("raw connection")
}

/// One command on a plain connection (one node or a cluster's), bounded.
pub async fn raw_cmd<T: ::redis::FromRedisValue>(
    connection: &mut (impl ::redis::aio::ConnectionLike + Send),
    args: &[&[u8]],
) -> T {
    let mut cmd = ::redis::cmd(std::str::from_utf8(args[0]).expect("command name"));
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    bounded("raw command", cmd.query_async(connection))
        .await
        .expect("raw command")
}

/// The contract's backend for a Redis store: the store and a plain connection beside it,
/// to one node (`MultiplexedConnection`) or to a cluster (`ClusterConnection`).
pub struct RedisBackend<C> {
    pub store: Arc<RedisStore>,
    pub raw: C,
}

impl<C> Backend for RedisBackend<C>
where
    C: ::redis::aio::ConnectionLike + Clone + Send + Sync,
{
    fn store(&self) -> Arc<dyn SharedState> {
        self.store.clone()
    }

    /// `PEXPIREAT key 1`: an expiry in the past, which Redis applies at once, exactly as
    /// when a `PX` runs out.
    fn expire<'a>(&'a self, key: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let mut raw = self.raw.clone();
            let full = self.store.redis_key(key);
            let applied: i64 = raw_cmd(&mut raw, &[b"PEXPIREAT", full.as_bytes(), b"1"]).await;
            assert_eq!(applied, 1, "PEXPIREAT found no key {full}");
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_meets_the_contract() {
    let Some(url) = env_or_skip("REDIS_URL", "redis_store_meets_the_contract") else {
        return;
    };
    let store = RedisStore::builder(&url)
        .key_prefix(format!("{}:", unique("contract")))
        .connect()
        .await
        .expect("connect");
    let backend = RedisBackend {
        store: Arc::new(store),
        raw: raw(&url).await,
    };
    contract::run(&backend, "k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_layout_is_version_newline_body_with_a_millisecond_ttl() {
    let Some(url) = env_or_skip("REDIS_URL", "redis_layout_is_version_newline_body") else {
        return;
    };
    let prefix = format!("{}:", unique("layout"));
    let store = RedisStore::builder(&url)
        .key_prefix(&prefix)
        .connect()
        .await
        .expect("connect");
    assert_eq!(store.key_prefix(), prefix);
    assert_eq!(store.redis_key("a/b"), format!("{{{prefix}}}a/b"));
    let mut raw = raw(&url).await;
    let full = store.redis_key("k");

    let ttl = Duration::from_millis(1500);
    let written = bounded(
        "cas",
        store.compare_and_set("k", None, b"\x00body".to_vec(), ttl),
    );
    assert_eq!(written.await.unwrap(), CasOutcome::Written(1));
    let value: Vec<u8> = raw_cmd(&mut raw, &[b"GET", full.as_bytes()]).await;
    assert_eq!(value, b"1\n\x00body");
    let pttl: i64 = raw_cmd(&mut raw, &[b"PTTL", full.as_bytes()]).await;
    assert!((1..=1500).contains(&pttl), "PTTL {pttl} for a TTL of 1.5 s");

    // Every write sets the TTL anew.
    let long = Duration::from_secs(600);
    let written = bounded(
        "cas",
        store.compare_and_set("k", Some(1), b"b".to_vec(), long),
    );
    assert_eq!(written.await.unwrap(), CasOutcome::Written(2));
    let pttl: i64 = raw_cmd(&mut raw, &[b"PTTL", full.as_bytes()]).await;
    assert!(
        pttl > 1500 && pttl <= 600_000,
        "PTTL {pttl} after a rewrite with 600 s"
    );

    // A sub-millisecond TTL is sent as 1 ms (Redis refuses PX 0): the key expires by the
    // next millisecond. PTTL is then 1 or 0, or -2 once it is gone; never -1 (no expiry).
    let tiny = Duration::from_nanos(1);
    let written = bounded("cas", store.compare_and_set("t", None, b"t".to_vec(), tiny));
    assert_eq!(written.await.unwrap(), CasOutcome::Written(1));
    let pttl: i64 = raw_cmd(&mut raw, &[b"PTTL", store.redis_key("t").as_bytes()]).await;
    assert!(
        matches!(pttl, -2..=1) && pttl != -1,
        "PTTL {pttl} for a 1 ns TTL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_values_it_did_not_write_are_corrupt_and_left_alone() {
    let Some(url) = env_or_skip("REDIS_URL", "redis_values_it_did_not_write_are_corrupt") else {
        return;
    };
    let store = RedisStore::builder(&url)
        .key_prefix(format!("{}:", unique("foreign")))
        .connect()
        .await
        .expect("connect");
    let mut raw = raw(&url).await;
    let text = store.redis_key("text");
    let _: () = raw_cmd(&mut raw, &[b"SET", text.as_bytes(), b"not a record"]).await;
    let zero = store.redis_key("zero");
    let _: () = raw_cmd(&mut raw, &[b"SET", zero.as_bytes(), b"0\nversion zero"]).await;
    let hash = store.redis_key("hash");
    let _: i64 = raw_cmd(&mut raw, &[b"HSET", hash.as_bytes(), b"f", b"v"]).await;

    for key in ["text", "zero", "hash"] {
        let err = load(&store, key).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt, "load {key}: {err}");
        for expected in [None, Some(1)] {
            let err = cas(&store, key, expected, b"x").await.unwrap_err();
            assert_eq!(
                err.kind(),
                StoreErrorKind::Corrupt,
                "cas {key} {expected:?}: {err}"
            );
        }
    }
    let value: Vec<u8> = raw_cmd(&mut raw, &[b"GET", text.as_bytes()]).await;
    assert_eq!(value, b"not a record", "a foreign value was overwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_or_misconfigured_fails_fast_with_a_typed_error() {
    // No server needed: a port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("redis://:hunter2-secret@127.0.0.1:{port}/");
    let err = bounded("connect", outage_store(&url).connect())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    // Lazy: building succeeds without a server; the calls fail, typed, and do not hang.
    let store = outage_store(&url).connect_lazy().expect("lazy store");
    assert!(!format!("{store:?}").contains("hunter2"));
    for _ in 0..3 {
        let kind = assert_outage(load(&store, "k").await);
        assert_eq!(kind, StoreErrorKind::Unavailable);
        assert_outage(cas(&store, "k", None, b"x").await);
    }

    let err = RedisStore::builder("http://example.com/")
        .connect_lazy()
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Other, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_server_killed_mid_run_fails_fast_then_recovers_after_restart() {
    let test = "redis_server_killed_mid_run_fails_fast_then_recovers_after_restart";
    let Some(bin) = env_or_skip("REDIS_SERVER_BIN", test) else {
        return;
    };
    let mut server = RedisServer::start(&bin, Some("hunter2-secret")).await;
    let store = Arc::new(
        outage_store(&server.url())
            .connect()
            .await
            .expect("connect"),
    );

    // Four writers increment a counter until the store fails under them.
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (store, progress) = (store.clone(), progress_tx.clone());
        writers.spawn(async move {
            loop {
                let current = match load(&*store, "counter").await {
                    Ok(record) => record,
                    Err(e) => return e,
                };
                let (expected, count) = match current {
                    None => (None, 0u64),
                    Some(r) => (
                        Some(r.version),
                        String::from_utf8(r.body).unwrap().parse().unwrap(),
                    ),
                };
                match cas(
                    &*store,
                    "counter",
                    expected,
                    (count + 1).to_string().as_bytes(),
                )
                .await
                {
                    Ok(CasOutcome::Written(_)) => {
                        let _ = progress.send(());
                    }
                    Ok(CasOutcome::Conflict) => {}
                    Err(e) => return e,
                }
            }
        });
    }
    drop(progress_tx);
    for _ in 0..40 {
        bounded("writer progress", progress_rx.recv())
            .await
            .expect("a writer stopped before the kill");
    }
    server.kill();

    let mut kinds = Vec::new();
    while let Some(joined) = bounded("writer", writers.join_next()).await {
        let err = joined.expect("writer task");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        kinds.push(assert_outage::<()>(Err(err)));
    }
    for _ in 0..3 {
        assert_outage(load(&*store, "counter").await);
        assert_outage(cas(&*store, "counter", None, b"1").await);
    }

    server.restart().await;
    // The first call may still meet the dead connection (it fails as an outage, and the
    // store reconnects); within a few calls, it answers. Each call is bounded; no sleep.
    let mut attempts = 0;
    let record = loop {
        attempts += 1;
        match load(&*store, "counter").await {
            Ok(record) => break record,
            Err(e) if attempts < 5 => {
                assert_outage::<()>(Err(e));
            }
            Err(e) => panic!("still failing after {attempts} calls since the restart: {e}"),
        }
    };
    // No persistence: the restarted server is empty, and the store starts over.
    assert_eq!(record, None);
    assert_eq!(
        cas(&*store, "counter", None, b"1").await.unwrap(),
        CasOutcome::Written(1)
    );
    assert_eq!(
        cas(&*store, "counter", Some(1), b"2").await.unwrap(),
        CasOutcome::Written(2)
    );
    eprintln!(
        "  killed mid-run: writer errors {kinds:?}; answering again after {attempts} call(s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_server_that_stops_answering_times_out_then_recovers() {
    let test = "redis_server_that_stops_answering_times_out_then_recovers";
    let Some(bin) = env_or_skip("REDIS_SERVER_BIN", test) else {
        return;
    };
    let server = RedisServer::start(&bin, None).await;
    let store = outage_store(&server.url())
        .connect()
        .await
        .expect("connect");
    assert_eq!(
        cas(&store, "k", None, b"a").await.unwrap(),
        CasOutcome::Written(1)
    );

    // SIGSTOP: the connection stays open, nothing answers.
    server.stop();
    let kind = assert_outage(load(&store, "k").await);
    assert_eq!(kind, StoreErrorKind::Timeout);
    // This write may still be carried out when the server continues: a timeout does not
    // say a write did not happen.
    assert_eq!(
        assert_outage(cas(&store, "k", Some(1), b"b").await),
        StoreErrorKind::Timeout
    );
    server.resume();

    let mut attempts = 0;
    let record = loop {
        attempts += 1;
        match load(&store, "k").await {
            Ok(record) => break record.expect("the record survives a stop"),
            Err(e) if attempts < 5 => {
                assert_outage::<()>(Err(e));
            }
            Err(e) => panic!("still failing after {attempts} calls since SIGCONT: {e}"),
        }
    };
    // Late answers to the timed-out calls must not be taken for answers to new ones.
    let before = StoredRecord {
        version: 1,
        body: b"a".to_vec(),
    };
    let after = StoredRecord {
        version: 2,
        body: b"b".to_vec(),
    };
    assert!(record == before || record == after, "{record:?}");
    let next = record.version + 1;
    assert_eq!(
        cas(&store, "k", Some(record.version), b"c").await.unwrap(),
        CasOutcome::Written(next)
    );
    assert_eq!(load(&store, "k").await.unwrap().unwrap().version, next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wrong_password_is_a_typed_error_that_does_not_echo_it() {
    let test = "redis_wrong_password_is_a_typed_error_that_does_not_echo_it";
    let Some(bin) = env_or_skip("REDIS_SERVER_BIN", test) else {
        return;
    };
    let server = RedisServer::start(&bin, Some("right-password")).await;
    let wrong = server.url().replace("right-password", "wrong-hunter2");
    let err = bounded("connect", outage_store(&wrong).connect())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Other, "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let store = outage_store(&server.url())
        .connect()
        .await
        .expect("right password");
    assert_eq!(
        cas(&store, "k", None, b"a").await.unwrap(),
        CasOutcome::Written(1)
    );
}

/// `load_many` of a registry's circuits is one `MGET` on the server, whatever their
/// number: counted by the server itself (`INFO commandstats`) on a redis-server of the
/// test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_load_many_is_one_mget_for_any_number_of_circuits() {
    let test = "redis_load_many_is_one_mget_for_any_number_of_circuits";
    let Some(bin) = env_or_skip("REDIS_SERVER_BIN", test) else {
        return;
    };
    let server = RedisServer::start(&bin, None).await;
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let mut raw = raw(&server.url()).await;
    for circuits in [1usize, 6, 50] {
        let keys: Vec<String> = (0..circuits).map(|i| format!("app/circuit-{i}")).collect();
        for key in keys.iter().step_by(2) {
            cas(&store, key, None, b"r").await.unwrap();
        }
        let _: () = raw_cmd(&mut raw, &[b"CONFIG", b"RESETSTAT"]).await;
        let many = bounded("load_many", store.load_many(&keys)).await.unwrap();
        assert_eq!(
            many.iter().filter(|r| r.is_some()).count(),
            circuits.div_ceil(2)
        );
        let stats: String = raw_cmd(&mut raw, &[b"INFO", b"commandstats"]).await;
        let calls = |command: &str| {
            stats
                .lines()
                .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
                .and_then(|l| l.split("calls=").nth(1))
                .and_then(|v| v.split(',').next())
                .map_or(0, |v| v.parse::<u64>().unwrap())
        };
        assert_eq!(
            (calls("mget"), calls("get")),
            (1, 0),
            "{circuits} circuits:\n{stats}"
        );
        support::report(&format!(
            "  load_many of {circuits} circuits: {} MGET, {} GET on the server\n",
            calls("mget"),
            calls("get")
        ));
        let _: () = raw_cmd(&mut raw, &[b"FLUSHALL"]).await;
    }
}
