//! `RedisStore` against a 3-node Redis Cluster (`REDIS_CLUSTER_URLS`, started by
//! `scripts/test` through `redis_cluster_start` in `scripts/lib/services.sh`): the
//! contract, every key of a store in one slot (the prefix as hash tag), the batched read
//! in one slot, and routing from any node.

use std::sync::Arc;

use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use tower_circuit_breaker::fleet::{CasOutcome, RedisStore, SharedState, StoreErrorKind};

use crate::contract::{self, bounded, cas, load};
use crate::redis_store::RedisBackend;
use crate::{env_or_skip, unique};

fn cluster_urls(test: &str) -> Option<Vec<String>> {
    let urls = env_or_skip("REDIS_CLUSTER_URLS", test)?;
    Some(urls.split(',').map(str::to_owned).collect())
}

/// A plain cluster connection beside the store, to look at what it stored.
async fn raw(urls: &[String]) -> ClusterConnection {
    let client = ClusterClient::new(urls.iter().map(String::as_str).collect::<Vec<_>>())
        .expect("cluster client");
    bounded("raw cluster connect", client.get_async_connection())
        .await
        .expect("raw cluster connection")
}

/// One command on the cluster connection, routed by its key.
async fn raw_cmd<T: ::redis::FromRedisValue>(
    connection: &mut ClusterConnection,
    args: &[&str],
) -> T {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    crate::redis_store::raw_cmd(connection, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_meets_the_contract() {
    let Some(urls) = cluster_urls("redis_cluster_store_meets_the_contract") else {
        return;
    };
    let store = RedisStore::cluster_builder(urls.iter().map(String::as_str))
        .key_prefix(format!("{}:", unique("cluster")))
        .connect()
        .await
        .expect("connect to the cluster");
    assert!(store.is_cluster());
    let backend = RedisBackend {
        store: Arc::new(store),
        raw: raw(&urls).await,
    };
    contract::run(&backend, "k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_keeps_a_fleet_in_one_slot_and_routes_from_any_node() {
    let test = "redis_cluster_keeps_a_fleet_in_one_slot_and_routes_from_any_node";
    let Some(urls) = cluster_urls(test) else {
        return;
    };
    let mut raw = raw(&urls).await;
    let nodes: String = raw_cmd(&mut raw, &["CLUSTER", "NODES"]).await;
    let primaries = nodes.lines().filter(|l| l.contains("master")).count();
    assert_eq!(primaries, 3, "a 3-primary cluster:\n{nodes}");

    let prefix = format!("{}:", unique("slot"));
    // Each node alone is enough to find the rest.
    let mut stores = Vec::new();
    for url in &urls {
        let store = RedisStore::cluster_builder([url.as_str()])
            .key_prefix(&prefix)
            .connect()
            .await
            .expect("connect through one node");
        stores.push(store);
    }
    let circuits: Vec<String> = [
        "cognito/jwks",
        "dynamodb/PutItem",
        "dynamodb/DeleteItem",
        "dynamodb/Query",
        "apigw/PostToConnection",
        "http/upstream",
    ]
    .iter()
    .map(|c| format!("myapp/{c}"))
    .collect();

    // One slot for the whole fleet; without the hash tag the keys would spread.
    let mut slots = Vec::new();
    let mut untagged = Vec::new();
    for key in &circuits {
        let full = stores[0].redis_key(key);
        assert!(full.starts_with(&format!("{{{prefix}}}")), "{full}");
        slots.push(raw_cmd::<i64>(&mut raw, &["CLUSTER", "KEYSLOT", &full]).await);
        let plain = format!("{prefix}{key}");
        untagged.push(raw_cmd::<i64>(&mut raw, &["CLUSTER", "KEYSLOT", &plain]).await);
    }
    slots.dedup();
    assert_eq!(slots.len(), 1, "the fleet's keys in one slot: {slots:?}");
    untagged.sort_unstable();
    untagged.dedup();
    assert!(
        untagged.len() > 1,
        "the check would prove nothing: {untagged:?}"
    );

    // Written through one node, read through another (redirected to the slot's owner),
    // in one batched read.
    for (i, key) in circuits.iter().enumerate() {
        let store = &stores[i % stores.len()];
        assert_eq!(
            cas(store, key, None, key.as_bytes()).await.unwrap(),
            CasOutcome::Written(1)
        );
    }
    for store in &stores {
        let many = bounded("load_many", store.load_many(&circuits))
            .await
            .expect("MGET in one slot");
        let bodies: Vec<Vec<u8>> = many.into_iter().map(|r| r.expect("stored").body).collect();
        let expected: Vec<Vec<u8>> = circuits.iter().map(|c| c.as_bytes().to_vec()).collect();
        assert_eq!(bodies, expected);
    }
    // The compare-and-set declares its key: it runs on the slot's owner from any node.
    let store = &stores[2];
    assert_eq!(
        cas(store, &circuits[0], Some(1), b"v2").await.unwrap(),
        CasOutcome::Written(2)
    );
    assert_eq!(
        cas(&stores[1], &circuits[0], Some(1), b"stale")
            .await
            .unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(
        load(&stores[0], &circuits[0]).await.unwrap().unwrap().body,
        b"v2"
    );

    // A single-node store on a node that does not own the slot is answered with MOVED:
    // a typed error, not a silent miss.
    let slot = slots[0];
    let owner_port = nodes
        .lines()
        .find(|l| {
            l.split_whitespace().skip(8).any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                matches!((lo.parse::<i64>(), hi.parse::<i64>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
            })
        })
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|addr| addr.split(['@']).next())
        .and_then(|addr| addr.rsplit(':').next())
        .expect("the slot's owner")
        .to_owned();
    let other = urls
        .iter()
        .find(|u| !u.contains(&format!(":{owner_port}/")))
        .expect("a node that does not own the slot");
    let single = RedisStore::builder(other)
        .key_prefix(&prefix)
        .connect()
        .await
        .expect("connect to one node");
    let err = load(&single, &circuits[0]).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Other, "{err}");
}
