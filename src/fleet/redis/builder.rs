//! Configuring and connecting a [`RedisStore`]: one node or a Redis Cluster, plain TCP or
//! TLS, and the connection both kinds share behind one type.

use std::fmt;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClientBuilder, ClusterConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, Value,
};

use super::{DEFAULT_KEY_PREFIX, RedisStore, classify};
use crate::fleet::store::{StoreError, StoreErrorKind, within};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(1);

/// Configures and connects a [`RedisStore`]; from [`RedisStore::builder`] (one node) or
/// [`RedisStore::cluster_builder`] (a Redis Cluster).
pub struct RedisStoreBuilder {
    nodes: Result<Vec<ConnectionInfo>, StoreError>,
    cluster: bool,
    #[cfg(feature = "fleet-redis-tls")]
    root_pem: Option<Vec<u8>>,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    operation_timeout: Duration,
}

/// The store's one connection: a reconnecting connection to one node, or a cluster
/// connection that routes each command to the node owning its key's slot. Both are
/// multiplexed and cheap to clone.
#[derive(Clone)]
pub(super) enum Connection {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Node(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Node(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Node(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// What connects: a client and its configuration, for one node or a cluster.
enum Connector {
    Node(Client, ConnectionManagerConfig),
    Cluster(::redis::cluster::ClusterClient, ClusterConfig),
}

impl RedisStoreBuilder {
    pub(super) fn new(urls: Vec<&str>, cluster: bool) -> Self {
        let nodes = if urls.is_empty() {
            Err(StoreError::new(
                StoreErrorKind::Other,
                "a Redis Cluster store needs at least one node URL",
            ))
        } else {
            urls.into_iter().map(parse_url).collect()
        };
        RedisStoreBuilder {
            nodes,
            cluster,
            #[cfg(feature = "fleet-redis-tls")]
            root_pem: None,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// The prefix of every key (default [`DEFAULT_KEY_PREFIX`], `tcb:`), so that the store
    /// can share a Redis database with other data. It is also the keys' hash tag (the
    /// Redis key is `{prefix}key`), so all the keys of one store live in one cluster slot.
    /// It must be non-empty and hold no `{` or `}`; [`connect`](Self::connect) refuses
    /// another.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one TCP connect (and the handshake, TLS included) may take (default 500 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server may take to answer one command (default 500 ms).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long a whole store operation may take, waiting for a reconnect (or, in a
    /// cluster, a redirection) included (default 1 s).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Trusts only the certificate authorities in `pem` (one or more PEM certificates)
    /// for `rediss://`, instead of the system's roots: for a server with a private CA.
    /// Feature `fleet-redis-tls`. A `redis://` URL with root certificates is refused by
    /// [`connect`](Self::connect): the caller asked for TLS and would not get it.
    #[cfg(feature = "fleet-redis-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fleet-redis-tls")))]
    pub fn root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_pem = Some(pem.into());
        self
    }

    /// Connects now, within the operation timeout (a cluster: to one of the nodes given,
    /// then to every primary its slot map names).
    ///
    /// # Errors
    ///
    /// The URL did not parse (or asks for TLS in a build without `fleet-redis-tls`), the
    /// key prefix is not a valid hash tag, the certificates did not parse
    /// ([`StoreErrorKind::Other`]); or the server could not be reached or its certificate
    /// was not trusted: [`StoreErrorKind::Unavailable`] or [`StoreErrorKind::Timeout`].
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let (connector, rest) = self.parts()?;
        let connecting = async {
            match connector {
                Connector::Node(client, config) => {
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map(Connection::Node)
                }
                Connector::Cluster(client, config) => client
                    .get_async_connection_with_config(config)
                    .await
                    .map(Connection::Cluster),
            }
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
    /// As [`connect`](Self::connect), for what can be known without the network.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn connect_lazy(self) -> Result<RedisStore, StoreError> {
        let (connector, rest) = self.parts()?;
        let connection = match connector {
            Connector::Node(client, config) => {
                ConnectionManager::new_lazy_with_config(client, config)
                    .map(Connection::Node)
                    .map_err(|e| classify("connect", &e))?
            }
            Connector::Cluster(client, config) => {
                Connection::Cluster(client.get_pending_async_connection_with_config(config))
            }
        };
        Ok(rest.into_store(connection))
    }

    fn parts(self) -> Result<(Connector, StoreParts), StoreError> {
        let nodes = self.nodes?;
        check_prefix(&self.prefix)?;
        let tls = nodes
            .iter()
            .any(|n| matches!(n.addr(), ConnectionAddr::TcpTls { .. }));
        #[cfg(feature = "fleet-redis-tls")]
        let certificates = match (self.root_pem, tls) {
            (Some(_), false) => {
                return Err(invalid(
                    "root certificates were given for a redis:// URL; use rediss://",
                ));
            }
            (Some(pem), true) => {
                check_pem(&pem)?;
                Some(::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                })
            }
            (None, _) => None,
        };
        #[cfg(feature = "fleet-redis-tls")]
        if tls {
            install_crypto_provider();
        }
        let address = nodes
            .iter()
            .map(|n| describe(n.addr()))
            .collect::<Vec<_>>()
            .join(",");
        let connector = if self.cluster {
            let builder = ClusterClientBuilder::new(nodes)
                // Redirections and reconnects, soon: the fleet layer calls again at its
                // next sync anyway, and the operation timeout bounds the whole call.
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(100);
            #[cfg(feature = "fleet-redis-tls")]
            let builder = match certificates {
                Some(c) => builder.certs(c),
                None => builder,
            };
            let client = builder.build().map_err(|e| {
                invalid(&format!(
                    "invalid Redis Cluster node list ({})",
                    e.category()
                ))
            })?;
            let config = ClusterConfig::new()
                .set_connection_timeout(self.connect_timeout)
                .set_response_timeout(self.response_timeout);
            Connector::Cluster(client, config)
        } else {
            let node = nodes.into_iter().next().expect("one URL");
            #[cfg(feature = "fleet-redis-tls")]
            let client = match certificates {
                Some(c) => Client::build_with_tls(node, c)
                    .map_err(|e| invalid(&format!("invalid TLS roots ({})", e.category())))?,
                None => Client::open(node).map_err(|e| classify("connect", &e))?,
            };
            #[cfg(not(feature = "fleet-redis-tls"))]
            let client = Client::open(node).map_err(|e| classify("connect", &e))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.response_timeout))
                // One retry, soon: see above.
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(100));
            Connector::Node(client, config)
        };
        let parts = StoreParts {
            prefix: self.prefix,
            operation_timeout: self.operation_timeout,
            address,
            cluster: self.cluster,
            tls,
        };
        Ok((connector, parts))
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = match &self.nodes {
            Ok(nodes) => nodes
                .iter()
                .map(|n| describe(n.addr()))
                .collect::<Vec<_>>()
                .join(","),
            Err(_) => "(invalid URL)".to_owned(),
        };
        f.debug_struct("RedisStoreBuilder")
            .field("address", &address)
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

struct StoreParts {
    prefix: String,
    operation_timeout: Duration,
    address: String,
    cluster: bool,
    tls: bool,
}

impl StoreParts {
    fn into_store(self, connection: Connection) -> RedisStore {
        RedisStore {
            connection,
            script: ::redis::Script::new(super::CAS_SCRIPT),
            prefix: self.prefix,
            operation_timeout: self.operation_timeout,
            address: self.address,
            cluster: self.cluster,
            tls: self.tls,
        }
    }
}

fn invalid(why: &str) -> StoreError {
    StoreError::new(StoreErrorKind::Other, why.to_owned())
}

/// The prefix is the hash tag: `{}` would hash each whole key to its own slot.
fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty() || prefix.contains(['{', '}']) {
        return Err(invalid(
            "the Redis key prefix must be non-empty and hold no '{' or '}' (it is the keys' hash tag)",
        ));
    }
    Ok(())
}

/// At least one certificate, and nothing that fails to parse: an empty trust store would
/// fail every handshake later, with a less clear error.
#[cfg(feature = "fleet-redis-tls")]
fn check_pem(pem: &[u8]) -> Result<(), StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
        Ok(certificates) if !certificates.is_empty() => Ok(()),
        _ => Err(invalid(
            "the root certificates are not one or more PEM certificates",
        )),
    }
}

/// Parses one node URL; never echoes it (it may carry a password).
pub(super) fn parse_url(url: &str) -> Result<ConnectionInfo, StoreError> {
    let info = url
        .into_connection_info()
        .map_err(|e| invalid(&format!("invalid Redis URL ({})", e.category())))?;
    match info.addr() {
        #[cfg(not(feature = "fleet-redis-tls"))]
        ConnectionAddr::TcpTls { .. } => Err(invalid(
            "rediss:// (TLS) needs the `fleet-redis-tls` feature of tower-circuit-breaker",
        )),
        #[cfg(feature = "fleet-redis-tls")]
        ConnectionAddr::TcpTls { insecure: true, .. } => Err(invalid(
            "rediss:// with #insecure (no certificate check) is refused",
        )),
        _ => Ok(info),
    }
}

/// Host and port (or socket path), never credentials.
pub(super) fn describe(addr: &ConnectionAddr) -> String {
    addr.to_string()
}

/// redis-rs builds its rustls configuration from the process's default crypto provider.
/// rustls picks one by itself only when exactly one provider feature is enabled in the
/// whole build; when none is installed yet, install aws-lc-rs (rustls's default) so that
/// a build that also has `ring` somewhere does not panic. An application that installed
/// its own keeps it.
#[cfg(feature = "fleet-redis-tls")]
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err: another thread installed one first, which is as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}
