//! `RedisStore` over TLS (`rediss://`, feature `fleet-redis-tls`) against a redis-server of
//! the test's own that speaks only TLS, with a CA and a server certificate this test makes
//! (rcgen). A recording TCP proxy between store and server shows what crosses the wire: in
//! clear, the AUTH password and the records; over TLS, neither.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_circuit_breaker::fleet::{CasOutcome, RedisStore, SharedState, StoreErrorKind};

use crate::contract::{bounded, cas, load};
use crate::{env_or_skip, unique};
use support::redis_server::{RedisServer, TlsFiles};

const PASSWORD: &str = "tls-test-password-4b1d";
const MARKER: &str = "record-body-marker-9e2c";

/// A CA and a certificate for 127.0.0.1 and localhost signed by it, written under the
/// target's test directory; returns the CA's PEM and the server's files.
fn pki(name: &str) -> (String, TlsFiles) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
    std::fs::create_dir_all(&dir).expect("pki dir");
    let (ca_pem, issuer) = ca(name);
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "redis");
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let write = |file: &str, pem: &str| {
        let path = dir.join(file);
        std::fs::write(&path, pem).expect("write pem");
        path.to_string_lossy().into_owned()
    };
    let files = TlsFiles {
        cert: write("server.pem", &cert.pem()),
        key: write("server.key", &key.serialize_pem()),
        ca: write("ca.pem", &ca_pem),
    };
    (ca_pem, files)
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("test CA {name}"));
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA cert");
    (cert.pem(), Issuer::new(params, key))
}

/// A TCP proxy to `127.0.0.1:upstream` that keeps every byte it carries, both ways.
async fn recording_proxy(upstream: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    let wire = Arc::new(Mutex::new(Vec::new()));
    let seen = wire.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pump(client_read, server_write, seen.clone()));
            tokio::spawn(pump(server_read, client_write, seen.clone()));
        }
    });
    (port, wire)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    wire: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        wire.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Writes, reads one key and reads many, through `store`.
async fn exchange(store: &RedisStore) {
    let body = format!("{{\"note\":\"{MARKER}\"}}");
    assert_eq!(
        cas(store, "k", None, body.as_bytes()).await.unwrap(),
        CasOutcome::Written(1)
    );
    assert_eq!(
        load(store, "k").await.unwrap().unwrap().body,
        body.as_bytes()
    );
    let keys = ["k".to_owned(), "absent".to_owned()];
    let many = bounded("load_many", store.load_many(&keys)).await.unwrap();
    assert_eq!((many[0].is_some(), many[1].is_none()), (true, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tls_hides_the_password_and_records_that_clear_text_shows() {
    let test = "redis_tls_hides_the_password_and_records_that_clear_text_shows";
    let Some(bin) = env_or_skip("REDIS_SERVER_BIN", test) else {
        return;
    };
    // In clear: the proxy sees the AUTH password and the record.
    let plain = RedisServer::start(&bin, Some(PASSWORD)).await;
    let (port, wire) = recording_proxy(plain.port()).await;
    let store = RedisStore::builder(&format!("redis://:{PASSWORD}@127.0.0.1:{port}/"))
        .connect()
        .await
        .expect("connect in clear");
    assert!(!store.is_tls());
    exchange(&store).await;
    let seen = wire.lock().unwrap().clone();
    assert!(
        contains(&seen, PASSWORD) && contains(&seen, MARKER),
        "the control run must show what TLS hides"
    );

    // Over TLS, through the same kind of proxy: neither crosses the wire readable.
    let (ca_pem, files) = pki("tls");
    let server = RedisServer::start_tls(&bin, Some(PASSWORD), files).await;
    let (port, wire) = recording_proxy(server.port()).await;
    let store = RedisStore::builder(&format!("rediss://:{PASSWORD}@127.0.0.1:{port}/"))
        .root_certificates_pem(ca_pem.as_bytes().to_vec())
        .connect()
        .await
        .expect("connect over TLS, trusting the test's CA");
    assert!(store.is_tls());
    exchange(&store).await;
    let seen = wire.lock().unwrap().clone();
    assert!(
        seen.len() > 1_000,
        "the TLS run crossed the proxy ({} bytes)",
        seen.len()
    );
    assert!(!contains(&seen, PASSWORD), "the password crossed in clear");
    assert!(!contains(&seen, MARKER), "a record crossed in clear");
    assert!(!contains(&seen, "EVALSHA") && !contains(&seen, "AUTH"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tls_refuses_clear_text_clients_and_untrusted_certificates() {
    let test = "redis_tls_refuses_clear_text_clients_and_untrusted_certificates";
    let Some(bin) = env_or_skip("REDIS_SERVER_BIN", test) else {
        return;
    };
    let (ca_pem, files) = pki("refuse");
    let server = RedisServer::start_tls(&bin, Some(PASSWORD), files).await;
    let tls_url = server.url();
    assert!(tls_url.starts_with("rediss://"));
    let short = |url: &str| {
        RedisStore::builder(url)
            .connect_timeout(std::time::Duration::from_millis(500))
            .response_timeout(std::time::Duration::from_millis(500))
            .operation_timeout(std::time::Duration::from_secs(2))
    };

    // A client in clear on the TLS port gets nothing: no connection, no record.
    let clear = tls_url.replace("rediss://", "redis://");
    let err = bounded("clear connect", short(&clear).connect())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            StoreErrorKind::Unavailable | StoreErrorKind::Timeout | StoreErrorKind::Other
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    let mut raw = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("tcp");
    raw.write_all(b"PING\r\n").await.expect("write");
    let mut answer = Vec::new();
    let _ = bounded("raw read", raw.read_to_end(&mut answer)).await;
    assert!(!contains(&answer, "PONG"), "a clear-text PING was answered");

    // The system's roots do not trust the test's CA, nor does another CA: refused.
    let err = bounded("untrusted connect", short(&tls_url).connect())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err:?}");
    let (other_ca, _) = ca("other");
    let err = bounded(
        "wrong CA connect",
        short(&tls_url)
            .root_certificates_pem(other_ca.into_bytes())
            .connect(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err:?}");
    assert!(!err.to_string().contains(PASSWORD), "{err}");

    // AUTH over TLS: a wrong password is refused, the right one works.
    let wrong = tls_url.replace(PASSWORD, "wrong-password");
    let err = bounded(
        "wrong password",
        short(&wrong)
            .root_certificates_pem(ca_pem.as_bytes().to_vec())
            .connect(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Other, "{err:?}");
    let store = short(&tls_url)
        .root_certificates_pem(ca_pem.into_bytes())
        .connect()
        .await
        .expect("the right CA and password");
    assert_eq!(
        cas(&store, "k", None, b"v").await.unwrap(),
        CasOutcome::Written(1)
    );
}

/// A free loopback port (for a cluster node's bus).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Runs `redis-cli` (beside `redis-server`) over TLS with `args`; its output.
fn redis_cli(bin: &str, ca: &str, args: &[&str]) -> String {
    let cli = std::path::Path::new(bin).with_file_name("redis-cli");
    let out = std::process::Command::new(cli)
        .args(["--tls", "--cacert", ca, "-a", PASSWORD, "--no-auth-warning"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// ElastiCache Serverless's shape: a Redis Cluster that speaks only TLS (the cluster bus
/// too). Three TLS-only nodes of the test's own, joined by `redis-cli --cluster create`;
/// the cluster store reaches them all over TLS, trusting the test's CA, from one node's
/// URL, and a fleet's keys stay in one slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tls_cluster_routes_every_command_over_tls() {
    let test = "redis_tls_cluster_routes_every_command_over_tls";
    let Some(bin) = env_or_skip("REDIS_SERVER_BIN", test) else {
        return;
    };
    let (ca_pem, files) = pki("cluster");
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let dir = PathBuf::from(&files.ca).with_file_name(format!("node-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("node dir");
        let extra = [
            "--cluster-enabled",
            "yes",
            "--tls-cluster",
            "yes",
            "--cluster-port",
            &free_port().to_string(),
            "--cluster-config-file",
            "nodes.conf",
            "--dir",
            &dir.to_string_lossy(),
        ]
        .map(str::to_owned)
        .to_vec();
        nodes.push(RedisServer::start_with(&bin, Some(PASSWORD), Some(files.clone()), extra).await);
    }
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
    create.extend(addresses);
    create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(str::to_owned));
    let (bin2, ca) = (bin.clone(), files.ca.clone());
    let created = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = create.iter().map(String::as_str).collect();
        redis_cli(&bin2, &ca, &args)
    })
    .await
    .unwrap();
    assert!(created.contains("All 16384 slots covered"), "{created}");
    // Ready when every node says so (bounded: a hang fails the test).
    let (bin2, ca, ports) = (
        bin.clone(),
        files.ca.clone(),
        nodes
            .iter()
            .map(|n| n.port().to_string())
            .collect::<Vec<_>>(),
    );
    let ready = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        ports.iter().all(|port| {
            loop {
                let info = redis_cli(&bin2, &ca, &["-p", port, "cluster", "info"]);
                if info.contains("cluster_state:ok") {
                    break true;
                }
                if start.elapsed() > std::time::Duration::from_secs(20) {
                    break false;
                }
                std::thread::yield_now();
            }
        })
    })
    .await
    .unwrap();
    assert!(ready, "the TLS cluster did not become ok");

    let url = format!("rediss://:{PASSWORD}@127.0.0.1:{}/", nodes[0].port());
    let store = RedisStore::cluster_builder([url.as_str()])
        .root_certificates_pem(ca_pem.into_bytes())
        .key_prefix(format!("{}:", unique("tls-cluster")))
        .connect()
        .await
        .expect("connect to the TLS cluster");
    assert!(store.is_cluster() && store.is_tls());
    let keys: Vec<String> = (0..6).map(|i| format!("app/circuit-{i}")).collect();
    for key in &keys {
        assert_eq!(
            cas(&store, key, None, MARKER.as_bytes()).await.unwrap(),
            CasOutcome::Written(1)
        );
    }
    let many = bounded("load_many", store.load_many(&keys)).await.unwrap();
    assert!(
        many.iter()
            .all(|r| r.as_ref().unwrap().body == MARKER.as_bytes())
    );
    let port = nodes[1].port().to_string();
    let slot_of = |key: &str| {
        let full = store.redis_key(key);
        redis_cli(&bin, &files.ca, &["-p", &port, "cluster", "keyslot", &full])
    };
    let slot = slot_of(&keys[0]);
    for key in &keys[1..] {
        assert_eq!(slot_of(key), slot, "one slot for the fleet");
    }
}
