//! Faults through real SDK clients built with `aws_client!`, against the test crate's own
//! fault server and TCP fault proxy (no moto needed: these always run).
//!
//! For every fault that should open the circuit:
//!
//! 1. with the fault on, operations run until the circuit opens; exactly
//!    `max(failure_threshold, minimum_request_count)` attempts go to the wire (the breaker
//!    counts attempts: the SDK makes up to 3 per operation);
//! 2. the remaining operations are rejected: `is_circuit_rejection`, no attempt goes to the
//!    wire and no request reaches the server, and exactly one rejection per operation (the
//!    SDK does not retry against the open circuit);
//! 3. the fault is removed, the recovery time passes, and the next operation is a probe
//!    that reaches the server and closes the circuit.
//!
//! The same operations through a plain client (no breaker) give the "without" number of
//! the table each test prints. Attempts are counted under the breaker by a
//! `CountingHttpClient` (exact in every scenario); requests reaching the server by the
//! server. With an attempt timeout a request can be abandoned before the server reads it,
//! so there the two may differ on a loaded machine and only the attempts are exact.
//!
//! Real sockets mean real time: recovery is 500 ms, the SDK attempt timeout 200 ms; every
//! wait is bounded and no test asserts a duration.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use support::{
    CountingHttpClient, FaultProxy, FaultServer, Mode, closed_port, default_http_client, report,
    sdk_config_in,
};
use tower_circuit_breaker::aws::is_circuit_rejection;
use tower_circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerRegistry, CircuitBreakerStats, CircuitState, aws_client,
};

use CircuitState::{Closed, HalfOpen, Open};

/// Operations per run, with and without the breaker.
const N: usize = 10;
/// The circuits' recovery timeout (the presets' are 15–30 s).
const RECOVERY: Duration = Duration::from_millis(500);
/// The SDK's `operation_attempt_timeout` in the timeout scenarios.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(200);
/// The SDK's attempts per operation (`support::sdk_config`).
const ATTEMPTS: usize = 3;

const DYNAMODB_PUT: (&str, &str) = ("dynamodb", "PutItem");
const POST_TO_CONNECTION: (&str, &str) = ("apigateway-management", "PostToConnection");

const OPEN_THEN_RECOVER: &[(CircuitState, CircuitState)] =
    &[(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)];

// ---------------------------------------------------------------------------------------
// Operations and their outcomes

#[derive(Debug)]
enum Outcome {
    Ok,
    /// Rejected by the circuit: no request was made for the attempt that ended it.
    Rejected,
    /// Any other error, described.
    Failed(String),
}

fn outcome<T, E>(result: Result<T, SdkError<E, HttpResponse>>) -> Outcome
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Outcome::Ok,
        Err(e) if is_circuit_rejection(&e) => Outcome::Rejected,
        Err(e) => Outcome::Failed(match &e {
            SdkError::ServiceError(s) => format!(
                "service error {} {}",
                s.raw().status().as_u16(),
                e.code().unwrap_or("(no code)")
            ),
            SdkError::TimeoutError(_) => "timeout".to_owned(),
            SdkError::DispatchFailure(d) if d.is_io() => "dispatch failure (io)".to_owned(),
            SdkError::DispatchFailure(d) if d.is_timeout() => {
                "dispatch failure (timeout)".to_owned()
            }
            SdkError::DispatchFailure(d) => format!("dispatch failure ({d:?})"),
            other => format!("{other:?}"),
        }),
    }
}

type Op = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

fn put_item(ddb: aws_sdk_dynamodb::Client) -> Op {
    Arc::new(move || {
        let ddb = ddb.clone();
        Box::pin(async move {
            outcome(
                ddb.put_item()
                    .table_name("connections")
                    .item("connectionId", AttributeValue::S("conn-1".into()))
                    .send()
                    .await,
            )
        })
    })
}

fn post_to_connection(apigw: aws_sdk_apigatewaymanagement::Client) -> Op {
    Arc::new(move || {
        let apigw = apigw.clone();
        Box::pin(async move {
            outcome(
                apigw
                    .post_to_connection()
                    .connection_id("conn-1")
                    .data(Blob::new("hello"))
                    .send()
                    .await,
            )
        })
    })
}

// ---------------------------------------------------------------------------------------
// Clients: each counts the attempts it sends to the wire

/// An operation and the attempts its client sent to the wire.
struct Client {
    op: Op,
    wire: CountingHttpClient,
}

impl Client {
    fn attempts(&self) -> usize {
        self.wire.attempts()
    }
}

enum Api {
    PutItem,
    PostToConnection,
}

/// Each client gets a region of its own: the SDK's retry quota is process-wide per service
/// and region, and these tests spend a lot of it in parallel.
fn region(test: &str, with_breaker: bool) -> String {
    format!("{test}-{}", if with_breaker { "breaker" } else { "plain" })
}

/// A plain SDK client, no breaker.
fn plain(api: Api, endpoint: &str, test: &str, timeout: Option<Duration>) -> Client {
    let wire = CountingHttpClient::new(default_http_client());
    let conf = sdk_config_in(endpoint, &region(test, false), timeout);
    let op = match api {
        Api::PutItem => put_item(aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&conf)
                .http_client(wire.clone())
                .build(),
        )),
        Api::PostToConnection => {
            post_to_connection(aws_sdk_apigatewaymanagement::Client::from_conf(
                aws_sdk_apigatewaymanagement::config::Builder::from(&conf)
                    .http_client(wire.clone())
                    .build(),
            ))
        }
    };
    Client { op, wire }
}

/// A client built with `aws_client!` on `registry`, with its preset and a short recovery.
fn with_breaker(
    api: Api,
    endpoint: &str,
    test: &str,
    timeout: Option<Duration>,
    registry: &CircuitBreakerRegistry,
) -> Client {
    let wire = CountingHttpClient::new(default_http_client());
    let conf = sdk_config_in(endpoint, &region(test, true), timeout);
    let op = match api {
        Api::PutItem => put_item(aws_client!(
            aws_sdk_dynamodb,
            &conf,
            registry,
            fast(CircuitBreakerConfig::dynamodb()),
            inner = wire.clone()
        )),
        Api::PostToConnection => post_to_connection(aws_client!(
            aws_sdk_apigatewaymanagement,
            &conf,
            registry,
            fast(CircuitBreakerConfig::api_gateway_management()),
            inner = wire.clone()
        )),
    };
    Client { op, wire }
}

fn fast(preset: CircuitBreakerConfig) -> CircuitBreakerConfig {
    preset
        .to_builder()
        .recovery_timeout(RECOVERY)
        .build()
        .expect("config")
}

/// Every transition of a registry, as `(from, to)`.
type Transitions = Arc<Mutex<Vec<(CircuitState, CircuitState)>>>;

/// A registry that records every transition.
fn recording_registry() -> (CircuitBreakerRegistry, Transitions) {
    let registry = CircuitBreakerRegistry::new();
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let t = transitions.clone();
    registry.on_transition(move |e| t.lock().unwrap().push((e.from, e.to)));
    (registry, transitions)
}

fn stats(registry: &CircuitBreakerRegistry, key: (&str, &str)) -> CircuitBreakerStats {
    registry
        .stats(key.0, key.1)
        .unwrap_or_else(|| panic!("no circuit {key:?}"))
}

fn state(registry: &CircuitBreakerRegistry, key: (&str, &str)) -> Option<CircuitState> {
    registry.stats(key.0, key.1).map(|s| s.state)
}

// ---------------------------------------------------------------------------------------
// The runs

/// `n` operations through a plain client, concurrently; each must fail with `expect` in
/// its description. Returns the attempts sent to the wire.
async fn without_breaker(client: &Client, n: usize, expect: &str) -> usize {
    let before = client.attempts();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let op = client.op.clone();
        set.spawn(async move { op().await });
    }
    while let Some(out) = set.join_next().await {
        match out.expect("operation task") {
            Outcome::Failed(why) => assert!(why.contains(expect), "without breaker: {why}"),
            other => panic!("without breaker, expected a failure ({expect}), got {other:?}"),
        }
    }
    client.attempts() - before
}

/// What happened through the breaker, in attempts sent to the wire.
struct Trip {
    attempts_to_open: usize,
    ops_to_open: usize,
    rejected_ops: usize,
}

/// Steps 1 and 2: operations with the fault on until the circuit opens, then the rest of
/// `n`, each rejected with no attempt on the wire and no retry.
async fn trip(
    registry: &CircuitBreakerRegistry,
    key: (&str, &str),
    client: &Client,
    n: usize,
) -> Trip {
    let before = client.attempts();
    let mut ops = 0;
    while state(registry, key) != Some(Open) {
        assert!(
            ops < n,
            "{key:?} did not open within {n} operations: {} attempts, stats {:?}",
            client.attempts() - before,
            registry.stats(key.0, key.1)
        );
        let out = (client.op)().await;
        assert!(
            !matches!(out, Outcome::Ok),
            "operation {ops} succeeded during the fault"
        );
        ops += 1;
    }
    let attempts_to_open = client.attempts() - before;
    let config = registry.get(key.0, key.1).expect("circuit").config();
    let expected = config
        .failure_threshold()
        .max(config.minimum_request_count()) as usize;
    assert_eq!(
        attempts_to_open,
        expected,
        "{key:?}: attempts before the circuit opened (threshold {}, minimum {})",
        config.failure_threshold(),
        config.minimum_request_count()
    );
    assert_eq!(
        ops,
        expected.div_ceil(ATTEMPTS),
        "{key:?}: operations before it opened"
    );

    for i in ops..n {
        let (a, s) = (client.attempts(), stats(registry, key));
        let out = (client.op)().await;
        assert!(
            matches!(out, Outcome::Rejected),
            "operation {i} while open: {out:?} (stats before it: {s:?})"
        );
        assert_eq!(
            client.attempts(),
            a,
            "operation {i} while open went to the wire"
        );
        let after = stats(registry, key);
        assert_eq!(
            after.rejected_count,
            s.rejected_count + 1,
            "operation {i}: the SDK retried against the open circuit"
        );
        assert_eq!(after.state, Open);
    }
    Trip {
        attempts_to_open,
        ops_to_open: ops,
        rejected_ops: n - ops,
    }
}

/// Sleeps past the circuit's recovery time.
async fn wait_for_recovery() {
    tokio::time::sleep(RECOVERY + Duration::from_millis(50)).await;
}

/// Step 3: with the fault removed and the recovery time passed, the next operation is a
/// probe that goes to the wire once and closes the circuit; the next one is normal.
async fn recovers(registry: &CircuitBreakerRegistry, key: (&str, &str), client: &Client) {
    wait_for_recovery().await;
    for i in 0..2 {
        let a = client.attempts();
        let out = (client.op)().await;
        assert!(
            matches!(out, Outcome::Ok),
            "operation {i} after recovery: {out:?}"
        );
        assert_eq!(
            client.attempts(),
            a + 1,
            "operation {i} after recovery: one attempt"
        );
        assert_eq!(state(registry, key), Some(Closed));
    }
}

/// With an attempt timeout, a request may still be on its way to the server when its
/// attempt is abandoned: waits (at most 1 s) until the server has seen `sent` requests,
/// and returns what it saw (never more than was sent).
async fn settled_hits(server: &FaultServer, sent: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while server.hits() < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hits = server.hits();
    assert!(
        hits <= sent,
        "the server saw {hits} requests, {sent} were sent"
    );
    hits
}

fn transitions_were(
    transitions: &Mutex<Vec<(CircuitState, CircuitState)>>,
    expected: &[(CircuitState, CircuitState)],
) -> String {
    let seen = transitions.lock().unwrap().clone();
    assert_eq!(seen, expected, "transitions");
    let mut path = vec![Closed.as_str()];
    path.extend(seen.iter().map(|(_, to)| to.as_str()));
    path.join(" → ")
}

/// One block of the fault table, written past the test harness's capture.
fn table(fault: &str, unit: &str, without: usize, with: &str, path: &str) {
    report(&format!(
        "\n| fault | ops | {unit}: without breaker | with breaker | circuit |\n\
         |---|---|---|---|---|\n\
         | {fault} | {N} | {without} | {with} | {path} |\n"
    ));
}

fn tripped(reached: usize, trip: &Trip) -> String {
    format!(
        "{reached} ({reached} before it opened, during {} ops; 0 while open: {} ops rejected at once)",
        trip.ops_to_open, trip.rejected_ops
    )
}

// ---------------------------------------------------------------------------------------
// The faults

#[tokio::test]
async fn dynamodb_503_opens_fails_fast_reopens_on_a_failed_probe_and_recovers() {
    const TEST: &str = "f503";
    let fault = Mode::dynamodb_error(503, "ServiceUnavailable");

    let plain_server = FaultServer::start(fault.clone()).await;
    let client = plain(Api::PutItem, &plain_server.url(), TEST, None);
    let sent = without_breaker(&client, N, "service error 503").await;
    assert_eq!(sent, N * ATTEMPTS, "the SDK retries 503");
    let without = plain_server.hits();
    assert_eq!(without, sent);

    let server = FaultServer::start(fault).await;
    let (registry, transitions) = recording_registry();
    let client = with_breaker(Api::PutItem, &server.url(), TEST, None, &registry);
    let trip = trip(&registry, DYNAMODB_PUT, &client, N).await;
    let with = server.hits();
    assert_eq!(with, trip.attempts_to_open);

    // Still failing after the recovery time: the probe reaches the server once, fails and
    // re-opens the circuit; the SDK's retry of it is rejected at once.
    wait_for_recovery().await;
    let out = (client.op)().await;
    assert!(matches!(out, Outcome::Rejected), "failed probe: {out:?}");
    assert_eq!(server.hits(), with + 1, "the probe: one request");
    assert_eq!(state(&registry, DYNAMODB_PUT), Some(Open));

    server.set_mode(Mode::ok());
    recovers(&registry, DYNAMODB_PUT, &client).await;
    assert_eq!(server.hits(), with + 3);
    let path = transitions_were(
        &transitions,
        &[
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed),
        ],
    );
    let s = stats(&registry, DYNAMODB_PUT);
    assert_eq!(s.failure_count as usize, trip.attempts_to_open + 1);
    assert_eq!(s.rejected_count as usize, trip.rejected_ops + 1 + 1);
    table(
        "HTTP 503 `ServiceUnavailable`, DynamoDB PutItem",
        "requests reaching the server",
        without,
        &tripped(with, &trip),
        &path,
    );
}

#[tokio::test]
async fn dynamodb_throttling_in_a_400_body_opens_when_counted() {
    const TEST: &str = "throttled";
    let fault = Mode::dynamodb_error(400, "ProvisionedThroughputExceededException");

    let plain_server = FaultServer::start(fault.clone()).await;
    let client = plain(Api::PutItem, &plain_server.url(), TEST, None);
    let sent = without_breaker(&client, N, "ProvisionedThroughputExceededException").await;
    assert_eq!(sent, N * ATTEMPTS, "the SDK retries throttling");
    let without = plain_server.hits();
    assert_eq!(without, sent);

    let server = FaultServer::start(fault).await;
    let (registry, transitions) = recording_registry();
    let client = with_breaker(Api::PutItem, &server.url(), TEST, None, &registry);
    let trip = trip(&registry, DYNAMODB_PUT, &client, N).await;
    let with = server.hits();
    assert_eq!(with, trip.attempts_to_open);
    server.set_mode(Mode::ok());
    recovers(&registry, DYNAMODB_PUT, &client).await;
    let path = transitions_were(&transitions, OPEN_THEN_RECOVER);
    table(
        "HTTP 400 `ProvisionedThroughputExceededException` in the body, DynamoDB PutItem (throttling counted, the default)",
        "requests reaching the server",
        without,
        &tripped(with, &trip),
        &path,
    );
}

#[tokio::test]
async fn dynamodb_throttling_not_counted_keeps_the_circuit_closed() {
    const TEST: &str = "throttled-uncounted";
    let server = FaultServer::start(Mode::dynamodb_error(
        400,
        "ProvisionedThroughputExceededException",
    ))
    .await;
    let registry = CircuitBreakerRegistry::new();
    let ddb = aws_client!(
        aws_sdk_dynamodb,
        &sdk_config_in(&server.url(), &region(TEST, true), None),
        &registry,
        fast(CircuitBreakerConfig::dynamodb()),
        count_throttling = false
    );
    let op = put_item(ddb);
    for i in 0..N {
        match op().await {
            Outcome::Failed(why) => assert!(
                why.contains("ProvisionedThroughputExceededException"),
                "{why}"
            ),
            other => panic!("operation {i}: {other:?}"),
        }
    }
    // The breaker is about availability only: every attempt reached the server (the SDK
    // still retried each operation) and counted as an answer.
    assert_eq!(server.hits(), N * ATTEMPTS);
    let s = stats(&registry, DYNAMODB_PUT);
    assert_eq!(s.state, Closed);
    assert_eq!(
        (s.success_count as usize, s.failure_count, s.rejected_count),
        (N * ATTEMPTS, 0, 0)
    );
    table(
        "HTTP 400 `ProvisionedThroughputExceededException`, DynamoDB PutItem, `count_throttling = false`",
        "requests reaching the server",
        N * ATTEMPTS,
        &format!(
            "{} (never opens: throttling is not an outage)",
            server.hits()
        ),
        "closed",
    );
}

#[tokio::test]
async fn post_to_connection_429_limit_exceeded_opens() {
    const TEST: &str = "limit";
    let fault = Mode::rest_json_error(429, "LimitExceededException");

    let plain_server = FaultServer::start(fault.clone()).await;
    let client = plain(Api::PostToConnection, &plain_server.url(), TEST, None);
    let sent = without_breaker(&client, N, "LimitExceededException").await;
    assert_eq!(
        sent,
        N * ATTEMPTS,
        "the SDK retries 429 LimitExceededException"
    );
    let without = plain_server.hits();
    assert_eq!(without, sent);

    let server = FaultServer::start(fault).await;
    let (registry, transitions) = recording_registry();
    let client = with_breaker(Api::PostToConnection, &server.url(), TEST, None, &registry);
    let trip = trip(&registry, POST_TO_CONNECTION, &client, N).await;
    let with = server.hits();
    assert_eq!(with, trip.attempts_to_open);
    server.set_mode(Mode::ok());
    recovers(&registry, POST_TO_CONNECTION, &client).await;
    let path = transitions_were(&transitions, OPEN_THEN_RECOVER);
    table(
        "HTTP 429 `LimitExceededException` (`x-amzn-errortype`), PostToConnection",
        "requests reaching the server",
        without,
        &tripped(with, &trip),
        &path,
    );
}

#[tokio::test]
async fn post_to_connection_410_gone_never_trips() {
    const TEST: &str = "gone";
    let fault = Mode::rest_json_error(
        410,
        "GoneException:http://internal.amazon.com/coral/com.amazonaws.gatewayapi/",
    );

    let plain_server = FaultServer::start(fault.clone()).await;
    let client = plain(Api::PostToConnection, &plain_server.url(), TEST, None);
    let sent = without_breaker(&client, N, "GoneException").await;
    assert_eq!(sent, N, "410 is not retried");
    let without = plain_server.hits();
    assert_eq!(without, sent);

    let server = FaultServer::start(fault).await;
    let registry = CircuitBreakerRegistry::new();
    let apigw = aws_client!(
        aws_sdk_apigatewaymanagement,
        &sdk_config_in(&server.url(), &region(TEST, true), None),
        &registry,
        fast(CircuitBreakerConfig::api_gateway_management())
    );
    for i in 0..N {
        let err = apigw
            .post_to_connection()
            .connection_id("stale")
            .data(Blob::new("hello"))
            .send()
            .await
            .expect_err("410");
        assert!(
            matches!(
                err.as_service_error(),
                Some(PostToConnectionError::GoneException(_))
            ),
            "operation {i}: {err:?}"
        );
        assert!(!is_circuit_rejection(&err));
    }
    // The peer went away; the API answered every time: successes, closed.
    assert_eq!(server.hits(), N);
    let s = stats(&registry, POST_TO_CONNECTION);
    assert_eq!(s.state, Closed);
    assert_eq!(
        (s.success_count as usize, s.failure_count, s.rejected_count),
        (N, 0, 0)
    );
    table(
        "HTTP 410 `GoneException`, PostToConnection",
        "requests reaching the server",
        without,
        &format!(
            "{} (never opens: the connection is gone, the API is up)",
            server.hits()
        ),
        "closed",
    );
}

#[tokio::test]
async fn connection_refused_opens_and_recovers_when_the_server_is_back() {
    const TEST: &str = "refused";
    let client = plain(
        Api::PutItem,
        &format!("http://{}", closed_port().await),
        TEST,
        None,
    );
    let without = without_breaker(&client, N, "dispatch failure (io)").await;
    assert_eq!(without, N * ATTEMPTS, "the SDK retries I/O errors");

    let addr = closed_port().await;
    let (registry, transitions) = recording_registry();
    let client = with_breaker(
        Api::PutItem,
        &format!("http://{addr}"),
        TEST,
        None,
        &registry,
    );
    let trip = trip(&registry, DYNAMODB_PUT, &client, N).await;

    let server = FaultServer::start_on(addr, Mode::ok()).await;
    recovers(&registry, DYNAMODB_PUT, &client).await;
    assert_eq!(server.hits(), 2, "the probe and one more");
    let path = transitions_were(&transitions, OPEN_THEN_RECOVER);
    table(
        "connection refused (closed port), DynamoDB PutItem",
        "connection attempts",
        without,
        &tripped(trip.attempts_to_open, &trip),
        &path,
    );
}

#[tokio::test]
async fn black_hole_with_an_attempt_timeout_opens_on_dropped_futures() {
    const TEST: &str = "blackhole";
    let plain_server = FaultServer::start(Mode::BlackHole).await;
    let client = plain(
        Api::PutItem,
        &plain_server.url(),
        TEST,
        Some(ATTEMPT_TIMEOUT),
    );
    let sent = without_breaker(&client, N, "timeout").await;
    assert_eq!(sent, N * ATTEMPTS, "the SDK retries attempt timeouts");
    let without = settled_hits(&plain_server, sent).await;

    let server = FaultServer::start(Mode::BlackHole).await;
    let (registry, transitions) = recording_registry();
    let client = with_breaker(
        Api::PutItem,
        &server.url(),
        TEST,
        Some(ATTEMPT_TIMEOUT),
        &registry,
    );
    let trip = trip(&registry, DYNAMODB_PUT, &client, N).await;
    // The breaker only ever saw dropped futures (the SDK's attempt timeout), counted as
    // failures by the adapter.
    let s = stats(&registry, DYNAMODB_PUT);
    assert_eq!(s.failure_count as usize, trip.attempts_to_open);
    let with = settled_hits(&server, trip.attempts_to_open).await;

    server.set_mode(Mode::ok());
    recovers(&registry, DYNAMODB_PUT, &client).await;
    let path = transitions_were(&transitions, OPEN_THEN_RECOVER);
    table(
        "black hole (request read, never answered), SDK attempt timeout 200 ms, DynamoDB PutItem",
        "requests reaching the server",
        without,
        &tripped(with, &trip),
        &path,
    );
}

#[tokio::test]
async fn added_latency_past_the_attempt_timeout_opens() {
    const TEST: &str = "latency";
    let latency = Duration::from_millis(600);

    let plain_server = FaultServer::start(Mode::ok()).await;
    let plain_proxy = FaultProxy::start(plain_server.addr()).await;
    plain_proxy.set_latency(latency);
    let client = plain(
        Api::PutItem,
        &plain_proxy.url(),
        TEST,
        Some(ATTEMPT_TIMEOUT),
    );
    let sent = without_breaker(&client, N, "timeout").await;
    assert_eq!(sent, N * ATTEMPTS, "the SDK retries attempt timeouts");
    let without = settled_hits(&plain_server, sent).await;

    let server = FaultServer::start(Mode::ok()).await;
    let proxy = FaultProxy::start(server.addr()).await;
    proxy.set_latency(latency);
    let (registry, transitions) = recording_registry();
    let client = with_breaker(
        Api::PutItem,
        &proxy.url(),
        TEST,
        Some(ATTEMPT_TIMEOUT),
        &registry,
    );
    let trip = trip(&registry, DYNAMODB_PUT, &client, N).await;
    let with = settled_hits(&server, trip.attempts_to_open).await;
    proxy.set_latency(Duration::ZERO);
    recovers(&registry, DYNAMODB_PUT, &client).await;
    let path = transitions_were(&transitions, OPEN_THEN_RECOVER);
    table(
        "+600 ms latency (TCP proxy), SDK attempt timeout 200 ms, DynamoDB PutItem",
        "requests reaching the server",
        without,
        &tripped(with, &trip),
        &path,
    );
}

#[tokio::test]
async fn proxy_closing_connections_opens() {
    const TEST: &str = "reset";
    let plain_server = FaultServer::start(Mode::ok()).await;
    let plain_proxy = FaultProxy::start(plain_server.addr()).await;
    plain_proxy.set_down(true);
    let client = plain(Api::PutItem, &plain_proxy.url(), TEST, None);
    let without = without_breaker(&client, N, "dispatch failure").await;
    assert_eq!(without, N * ATTEMPTS, "the SDK retries dropped connections");
    assert_eq!(plain_server.hits(), 0);

    let server = FaultServer::start(Mode::ok()).await;
    let proxy = FaultProxy::start(server.addr()).await;
    proxy.set_down(true);
    let (registry, transitions) = recording_registry();
    let client = with_breaker(Api::PutItem, &proxy.url(), TEST, None, &registry);
    let trip = trip(&registry, DYNAMODB_PUT, &client, N).await;
    assert_eq!(server.hits(), 0);
    proxy.set_down(false);
    recovers(&registry, DYNAMODB_PUT, &client).await;
    assert_eq!(server.hits(), 2, "the probe and one more");
    let path = transitions_were(&transitions, OPEN_THEN_RECOVER);
    table(
        "connections accepted, then closed (TCP proxy down), DynamoDB PutItem",
        "connection attempts",
        without,
        &tripped(trip.attempts_to_open, &trip),
        &path,
    );
}
