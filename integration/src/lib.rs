//! The one shared support module of the integration tests (`integration/tests/*`), a
//! library each test binary uses as `support::`.
//!
//! - moto: [`moto_endpoint`] (skips loudly, or panics under `scripts/test`), [`moto_reset`],
//!   [`unique_name`]; any other server's variable: [`env_or_skip`];
//! - [`sdk_config`]: an `SdkConfig` for any endpoint: static test credentials, small retry
//!   backoff, an optional attempt timeout, and nothing read from the environment;
//! - [`FaultServer`]: a hyper 1 server whose answer is switched at run time ([`Mode`]), with a
//!   hit counter;
//! - [`FaultProxy`]: a TCP proxy in front of any address with latency and outage switches;
//! - [`closed_port`]: an address that refuses connections;
//! - [`CountingHttpClient`]: an SDK `HttpClient` that counts the attempts it is handed, for
//!   the faults where no server can count (connection refused);
//! - [`redis_server::RedisServer`]: a redis-server of the test's own, killed, stopped and
//!   restarted by PID.

pub mod redis_server;

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The region of every test client (moto keeps state per region).
pub const REGION: &str = "us-east-1";

/// Writes to the process's stderr directly, past libtest's output capture, so that skip
/// banners and result tables show in `cargo test` (and CI) output even for passing tests.
pub fn report(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

// ---------------------------------------------------------------------------------------
// moto

/// The moto server's endpoint (`MOTO_ENDPOINT`, set by `scripts/test`).
///
/// - `MOTO_ENDPOINT` set: `Some(endpoint)`.
/// - `TCB_AWS_INTEGRATION=1` without `MOTO_ENDPOINT`: panics — under `scripts/test` (and so
///   in CI) the integration tests must run.
/// - neither: prints a loud `SKIPPED` banner naming `test` and returns `None`; the caller
///   returns without testing anything.
pub fn moto_endpoint(test: &str) -> Option<String> {
    let endpoint = std::env::var("MOTO_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty());
    let required = std::env::var("TCB_AWS_INTEGRATION").is_ok_and(|v| v == "1");
    match endpoint {
        Some(e) => Some(e.trim().trim_end_matches('/').to_owned()),
        None if required => panic!(
            "TCB_AWS_INTEGRATION=1 but MOTO_ENDPOINT is not set: the AWS integration test \
             `{test}` must run. scripts/test starts moto and sets both."
        ),
        None => {
            report(&format!(
                "\n{bar}\nSKIPPED: moto not running; run scripts/test\n  \
                 test `{test}` did not run: MOTO_ENDPOINT and TCB_AWS_INTEGRATION are unset\n{bar}\n",
                bar = "!".repeat(78)
            ));
            None
        }
    }
}

/// The value of `var` (a server's address, set by `scripts/test`), or `None` after a loud
/// SKIPPED banner naming `test`; panics instead of skipping when `TCB_AWS_INTEGRATION=1`
/// (as under `scripts/test` and CI).
pub fn env_or_skip(var: &str, test: &str) -> Option<String> {
    let value = std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let required = std::env::var("TCB_AWS_INTEGRATION").is_ok_and(|v| v == "1");
    match value {
        Some(v) => Some(v.trim().to_owned()),
        None if required => panic!(
            "TCB_AWS_INTEGRATION=1 but {var} is not set: the test `{test}` must run. \
             scripts/test starts redis-server and moto and sets it."
        ),
        None => {
            report(&format!(
                "\n{bar}\nSKIPPED: {var} is unset; run scripts/test\n  test `{test}` did not run\n{bar}\n",
                bar = "!".repeat(78)
            ));
            None
        }
    }
}

/// `POST /moto-api/reset`: wipes every moto backend. Global to the server, so only for
/// tests that run alone; parallel tests use [`unique_name`] instead.
pub async fn moto_reset(endpoint: &str) {
    let (status, body) = http_request("POST", &format!("{endpoint}/moto-api/reset"), "").await;
    assert!(
        (200..300).contains(&status),
        "moto reset answered {status}: {body}"
    );
}

/// A plain HTTP request (no signing) with a bounded wait; returns status and body.
pub async fn http_request(method: &str, url: &str, body: &str) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no answer within 10 s"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let bytes = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: body not read within 10 s"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A name no other test (nor an earlier run against the same moto) uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------
// SDK configuration

/// An `SdkConfig` for `endpoint` in [`REGION`]: static test credentials, 3 attempts with a
/// 5 ms base backoff (the default is 1 s), and `attempt_timeout` as the SDK's
/// `operation_attempt_timeout` when given (the SDK sets none by default). Built by hand:
/// nothing comes from the environment or `~/.aws`.
pub fn sdk_config(endpoint: &str, attempt_timeout: Option<Duration>) -> SdkConfig {
    sdk_config_in(endpoint, REGION, attempt_timeout)
}

/// [`sdk_config`] in another region. The SDK's retry quota (a token bucket) is process-wide
/// per service and region, so tests that make many failing attempts each take a region of
/// their own to stay independent of one another.
pub fn sdk_config_in(endpoint: &str, region: &str, attempt_timeout: Option<Duration>) -> SdkConfig {
    let mut timeouts = TimeoutConfig::builder().connect_timeout(Duration::from_secs(2));
    if let Some(t) = attempt_timeout {
        timeouts = timeouts.operation_attempt_timeout(t);
    }
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "static",
        )))
        .endpoint_url(endpoint)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(20)),
        )
        .timeout_config(timeouts.build())
        .build()
}

// ---------------------------------------------------------------------------------------
// Fault server

/// What the [`FaultServer`] answers.
#[derive(Clone, Debug)]
pub enum Mode {
    /// `status` with `body`, after `content-type: application/x-amz-json-1.0`.
    Ok { status: u16, body: String },
    /// `status`, the given headers and `body`.
    Status(u16, Vec<(String, String)>, String),
    /// Waits, then answers `200 {}`.
    Delay(Duration),
    /// Reads the request and never answers (the connection stays open).
    BlackHole,
}

impl Mode {
    /// `200 {}`: a valid answer to DynamoDB `PutItem`/`DeleteItem`/`GetItem` (no item) and
    /// to `PostToConnection`.
    pub fn ok() -> Self {
        Mode::Ok {
            status: 200,
            body: "{}".into(),
        }
    }

    /// A DynamoDB-style error: `status` with `{"__type": "com.amazonaws.dynamodb.v20120810#CODE"}`.
    pub fn dynamodb_error(status: u16, code: &str) -> Self {
        Mode::Status(
            status,
            vec![],
            format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected"}}"#
            ),
        )
    }

    /// A restJson-style error (API Gateway Management): the code in `x-amzn-errortype`.
    pub fn rest_json_error(status: u16, code: &str) -> Self {
        Mode::Status(
            status,
            vec![("x-amzn-errortype".into(), code.into())],
            r#"{"message":"injected"}"#.into(),
        )
    }
}

struct ServerState {
    mode: Mutex<Mode>,
    hits: AtomicUsize,
}

/// A hyper 1 HTTP/1 server on `127.0.0.1:0` answering every request as its [`Mode`] says,
/// counting the requests that reach it. Stops when dropped.
pub struct FaultServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    accept: JoinHandle<()>,
}

impl FaultServer {
    pub async fn start(mode: Mode) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), mode).await
    }

    /// On a given address: e.g. the [`closed_port`] of a "connection refused" test, once
    /// the dependency is back.
    pub async fn start_on(addr: SocketAddr, mode: Mode) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(ServerState {
            mode: Mutex::new(mode),
            hits: AtomicUsize::new(0),
        });
        let s = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FaultServer {
            addr,
            state,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Requests that reached the server so far (headers read), whatever it answered.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn answer(
    state: Arc<ServerState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let mode = state.mode.lock().unwrap().clone();
    // Read the request body whatever the mode, as a real server would.
    let _ = req.into_body().collect().await;
    let (status, headers, body) = match mode {
        Mode::Ok { status, body } => (status, vec![], body),
        Mode::Status(status, headers, body) => (status, headers, body),
        Mode::Delay(d) => {
            tokio::time::sleep(d).await;
            (200, vec![], "{}".to_owned())
        }
        Mode::BlackHole => std::future::pending().await,
    };
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-requestid", "fault-server");
    for (name, value) in headers {
        response = response.header(name, value);
    }
    Ok(response
        .body(Full::new(Bytes::from(body)))
        .expect("response"))
}

// ---------------------------------------------------------------------------------------
// TCP fault proxy

/// A TCP proxy on `127.0.0.1:0` in front of `upstream`, with two switches:
/// `latency_ms` delays every chunk from upstream to the client (so a request reaches the
/// server at once and its answer comes late), `down` closes every connection (new ones at
/// once, open ones at their next chunk). Counts the connections it accepts. Stops when
/// dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    pub latency_ms: Arc<AtomicU64>,
    pub down: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let latency_ms = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (l, d, c) = (latency_ms.clone(), down.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (l, d) = (l.clone(), d.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let no_latency = Arc::new(AtomicU64::new(0));
                    // Either direction ending (EOF, error, `down`) closes both.
                    tokio::select! {
                        _ = pump(cr, sw, no_latency, d.clone()) => {}
                        _ = pump(sr, cw, l, d) => {}
                    }
                });
            }
        });
        FaultProxy {
            addr,
            latency_ms,
            down,
            connections,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Connections accepted so far (including those closed at once while down).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency_ms: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if down.load(Ordering::SeqCst) {
            return;
        }
        let delay = latency_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Connection refused

/// `127.0.0.1:PORT` where nothing listens: a port just bound and released.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    addr
}

// ---------------------------------------------------------------------------------------
// Attempt counting under the SDK

/// The SDK's default HTTPS client (hyper 1, rustls with aws-lc), which speaks plain
/// `http://` too.
pub fn default_http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https()
}

/// An `HttpClient` that counts every attempt it is handed, then passes it to `inner`: the
/// number of attempts that went to the wire, for faults no server can count.
#[derive(Clone, Debug)]
pub struct CountingHttpClient {
    inner: SharedHttpClient,
    attempts: Arc<AtomicUsize>,
}

impl CountingHttpClient {
    pub fn new(inner: SharedHttpClient) -> Self {
        CountingHttpClient {
            inner,
            attempts: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

impl HttpClient for CountingHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(CountingConnector {
            inner: self.inner.http_connector(settings, components),
            attempts: self.attempts.clone(),
        })
    }
}

#[derive(Debug)]
struct CountingConnector {
    inner: SharedHttpConnector,
    attempts: Arc<AtomicUsize>,
}

impl HttpConnector for CountingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.inner.call(request)
    }
}
