//! Hostile error bodies through `BreakerHttpClient` (issue 11, section 3), served by a
//! hyper server on loopback in this test binary:
//!
//! - a 500 with a large finite body (128 MiB here; the issue measured 512 MiB by hand);
//! - a 500 with an endless chunked body (the server gives up after 256 MiB, so that the
//!   test ends by itself on a build that would read it all);
//! - a drip-fed 1 MiB error body on a half-open probe;
//! - over-long bodies whose prefix carries the error code, through the adapter alone and
//!   through a real DynamoDB client.
//!
//! Memory is measured by a counting global allocator: the peak of live heap bytes in the
//! whole process while the adapter call runs and the body is drained, minus the live bytes
//! before. Deterministic, whatever the machine; the peak resident set (`VmHWM` after a
//! reset through `/proc/self/clear_refs`) is printed as a second figure. The tests that
//! measure run one at a time (a process-wide lock), each on its own current-thread
//! runtime, so nothing else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_async::rt::sleep::TokioSleep;
use aws_smithy_async::time::SystemTimeSource;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use support::{default_http_client, report, sdk_config_in};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_circuit_breaker::aws::{BreakerHttpClient, DEFAULT_ERROR_BODY_PREFIX, UNTAGGED_KEY};
use tower_circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerRegistry, CircuitBreakerStats, CircuitState, aws_client,
};

const MIB: usize = 1024 * 1024;
/// The adapter's own buffering must stay under this, whatever the body.
const PEAK_BUDGET: usize = 16 * MIB;

// ===== counting allocator =====

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grow(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn shrink(by: usize) {
    LIVE.fetch_sub(by, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                grow(new_size - layout.size());
            } else {
                shrink(layout.size() - new_size);
            }
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A peak measurement: heap bytes (exact) and resident set (secondary).
struct Peak {
    base_live: usize,
    base_rss_kib: Option<u64>,
}

impl Peak {
    fn start() -> Self {
        // Resets VmHWM to the current RSS (Linux ≥ 4.0); without it the RSS figure is
        // only an upper bound of nothing and is not printed.
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let base_rss_kib = reset.then(|| status_kib("VmRSS")).flatten();
        let base_live = LIVE.load(Ordering::SeqCst);
        PEAK.store(base_live, Ordering::SeqCst);
        Peak {
            base_live,
            base_rss_kib,
        }
    }

    /// Peak heap growth in bytes since `start`, and peak RSS growth in KiB.
    fn growth(&self) -> (usize, Option<u64>) {
        let heap = PEAK.load(Ordering::SeqCst).saturating_sub(self.base_live);
        let rss = self
            .base_rss_kib
            .and_then(|base| Some(status_kib("VmHWM")?.saturating_sub(base)));
        (heap, rss)
    }

    fn check(&self, case: &str) {
        let (heap, rss) = self.growth();
        report(&format!(
            "\n{case}: peak heap growth {:.2} MiB, peak RSS growth {} (budget {} MiB)\n",
            heap as f64 / MIB as f64,
            rss.map_or("n/a".into(), |k| format!("{:.2} MiB", k as f64 / 1024.0)),
            PEAK_BUDGET / MIB,
        ));
        assert!(
            heap < PEAK_BUDGET,
            "{case}: the adapter call grew the heap by {heap} bytes at its peak (budget {PEAK_BUDGET})"
        );
        if let Some(rss) = rss {
            assert!(
                (rss as usize) * 1024 < PEAK_BUDGET,
                "{case}: peak RSS grew by {rss} KiB (budget {PEAK_BUDGET} bytes)"
            );
        }
    }
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The tests that measure run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

// ===== the server =====

/// 64 KiB of filler, served without allocating.
static FILLER: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// What the server answers: `status` with a body made of `head`, `filler` bytes of `x`,
/// and `tail`; with `abort`, the connection is cut after the filler instead of the tail.
#[derive(Clone)]
struct Answer {
    status: u16,
    head: &'static str,
    filler: usize,
    tail: &'static str,
    abort: bool,
}

/// A body built from `Answer` in 64 KiB frames of the static filler.
struct Generated {
    head: Option<Bytes>,
    filler: usize,
    tail: Option<Bytes>,
    abort: bool,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if self.filler > 0 {
            let n = self.filler.min(FILLER.len());
            self.filler -= n;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&FILLER[..n])))));
        }
        if self.abort {
            self.abort = false;
            return Poll::Ready(Some(Err(std::io::Error::other("the server gives up"))));
        }
        Poll::Ready(self.tail.take().map(|t| Ok(Frame::data(t))))
    }
}

/// A body that yields what the test sends through a channel, ending when it is dropped.
struct Drip(mpsc::Receiver<Bytes>);

impl Body for Drip {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

type ServerBody = http_body_util::Either<Generated, Drip>;

/// Serves every request with the answer `make` gives; chunked (no content-length).
async fn serve<F>(make: F) -> String
where
    F: Fn() -> (u16, ServerBody) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let make = Arc::new(make);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let make = make.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let make = make.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        let (status, body) = make();
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .header("content-type", "application/x-amz-json-1.0")
                                .body(body)
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn generated(answer: Answer) -> impl Fn() -> (u16, ServerBody) + Send + Sync + 'static {
    move || {
        let a = answer.clone();
        (
            a.status,
            http_body_util::Either::Left(Generated {
                head: Some(Bytes::from_static(a.head.as_bytes())),
                filler: a.filler,
                tail: Some(Bytes::from_static(a.tail.as_bytes())),
                abort: a.abort,
            }),
        )
    }
}

// ===== the adapter alone =====

/// A connector of a `BreakerHttpClient`, as the SDK would get it for one attempt.
fn connector(client: &BreakerHttpClient) -> SharedHttpConnector {
    let components = RuntimeComponentsBuilder::for_tests()
        .with_sleep_impl(Some(TokioSleep::new()))
        .with_time_source(Some(SystemTimeSource::new()))
        .build()
        .unwrap();
    client.http_connector(&HttpConnectorSettings::default(), &components)
}

/// Around the SDK's default HTTP client.
fn adapter(registry: &CircuitBreakerRegistry) -> BreakerHttpClient {
    BreakerHttpClient::with_inner(
        default_http_client(),
        registry.clone(),
        CircuitBreakerConfig::dynamodb(),
    )
}

fn untagged(registry: &CircuitBreakerRegistry) -> CircuitBreakerStats {
    registry
        .stats(UNTAGGED_KEY.0, UNTAGGED_KEY.1)
        .expect("the circuit")
}

/// Reads a body to its end or to `limit` bytes, frame by frame, keeping nothing but the
/// first `keep` bytes and the last few: (bytes read, first bytes, last bytes, error).
async fn drain(
    body: &mut SdkBody,
    limit: usize,
    keep: usize,
) -> (usize, Vec<u8>, Vec<u8>, Option<String>) {
    let (mut n, mut first, mut last) = (0, Vec::new(), Vec::new());
    while n < limit {
        match body.frame().await {
            None => return (n, first, last, None),
            Some(Err(e)) => return (n, first, last, Some(e.to_string())),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if first.len() < keep {
                    let take = (keep - first.len()).min(data.len());
                    first.extend_from_slice(&data[..take]);
                }
                last.extend_from_slice(&data[data.len().saturating_sub(16)..]);
                let cut = last.len().saturating_sub(16);
                last.drain(..cut);
                n += data.len();
            }
        }
    }
    (n, first, last, None)
}

const SERVER_ERROR_HEAD: &str =
    r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":""#;
const THROTTLED_HEAD: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":""#;
const VALIDATION_HEAD: &str =
    r#"{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","message":""#;
const TAIL: &str = r#""}"#;

#[test]
fn a_500_with_a_large_body_is_judged_on_its_prefix_and_streams_on() {
    const SIZE: usize = 128 * MIB;
    let _serial = serial();
    runtime().block_on(async {
        let url = serve(generated(Answer {
            status: 500,
            head: SERVER_ERROR_HEAD,
            filler: SIZE,
            tail: TAIL,
            abort: false,
        }))
        .await;
        let registry = CircuitBreakerRegistry::new();
        let client = adapter(&registry);
        let connector = connector(&client);
        let request = HttpRequest::get(url.as_str()).unwrap();

        let peak = Peak::start();
        let mut response: HttpResponse = connector.call(request).await.expect("a response");
        peak.check(&format!(
            "500 with a {} MiB body, the adapter call",
            SIZE / MIB
        ));
        // The verdict is in as soon as the prefix is.
        let stats = untagged(&registry);
        assert_eq!((stats.failure_count, stats.total_requests), (1, 1));
        assert_eq!(response.status().as_u16(), 500);
        assert!(response.body().bytes().is_none(), "the body still streams");
        // The SDK would get all of it: the prefix, then the rest of the stream.
        let (n, first, last, error) = drain(response.body_mut(), usize::MAX, 200).await;
        peak.check(&format!(
            "500 with a {} MiB body, read to its end",
            SIZE / MIB
        ));
        assert_eq!(error, None);
        assert_eq!(n, SERVER_ERROR_HEAD.len() + SIZE + TAIL.len());
        assert!(first.starts_with(SERVER_ERROR_HEAD.as_bytes()));
        assert!(last.ends_with(br#"xxx"}"#));
    });
}

#[test]
fn a_500_with_an_endless_body_returns_after_the_prefix() {
    // "Endless": the server cuts the connection after 256 MiB, so that a build that reads
    // the whole body still ends (with a failure) instead of running the machine out of
    // memory. This one reads 32 MiB of it, then drops it.
    let _serial = serial();
    runtime().block_on(async {
        let url = serve(generated(Answer {
            status: 500,
            head: "",
            filler: 256 * MIB,
            tail: "",
            abort: true,
        }))
        .await;
        let registry = CircuitBreakerRegistry::new();
        let client = adapter(&registry);
        let connector = connector(&client);
        let request = HttpRequest::get(url.as_str()).unwrap();

        let peak = Peak::start();
        let result = connector.call(request).await;
        let mut response = match result {
            Ok(response) => response,
            Err(e) => {
                let (heap, _) = peak.growth();
                panic!(
                    "the adapter read the endless body to its cut ({e}); peak heap growth {} MiB",
                    heap / MIB
                )
            }
        };
        assert_eq!(untagged(&registry).failure_count, 1);
        let (n, first, _, error) = drain(response.body_mut(), 32 * MIB, 16).await;
        assert_eq!(error, None);
        assert!(n >= 32 * MIB);
        assert_eq!(first, b"xxxxxxxxxxxxxxxx");
        drop(response);
        peak.check("500 with an endless body (32 MiB read)");
    });
}

#[test]
fn a_drip_fed_error_body_releases_the_probe_slot_at_the_prefix() {
    const CHUNK: usize = 4 * 1024;
    const CHUNKS: usize = 256; // 1 MiB
    let _serial = serial();
    runtime().block_on(async {
        let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS);
        let rx = Arc::new(Mutex::new(Some(rx)));
        let url = serve(move || {
            let rx = rx.lock().unwrap().take().expect("one request");
            (500, http_body_util::Either::Right(Drip(rx)))
        })
        .await;

        // Open the circuit, and let its break pass, on tokio's paused clock; nothing here
        // touches the network.
        tokio::time::pause();
        let registry = CircuitBreakerRegistry::new();
        let client = adapter(&registry);
        let circuit = registry.circuit(UNTAGGED_KEY.0, UNTAGGED_KEY.1, client.config());
        for _ in 0..5 {
            let _ = circuit
                .call(async { Err::<(), _>(std::io::Error::other("down")) })
                .await;
        }
        assert_eq!(untagged(&registry).state, CircuitState::Open);
        tokio::time::advance(Duration::from_secs(21)).await;

        // The attempt is the probe: admitted when the SDK calls the connector.
        let connector = connector(&client);
        let call = connector.call(HttpRequest::get(url.as_str()).unwrap());
        let stats = untagged(&registry);
        assert_eq!(stats.state, CircuitState::HalfOpen);
        assert_eq!(stats.half_open_in_flight, 1);
        tokio::time::resume();

        // The server drips 128 KiB (twice the prefix) and then holds the rest.
        let chunk = Bytes::from_static(&FILLER[..CHUNK]);
        for _ in 0..32 {
            tx.send(chunk.clone()).await.unwrap();
        }
        // Bounds only a build that waits for the whole body: the fixed one returns as soon
        // as the prefix is in.
        let mut response = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect(
                "the adapter waited for the whole drip-fed body, holding the probe slot meanwhile",
            )
            .expect("a response");
        let stats = untagged(&registry);
        assert_eq!(
            stats.state,
            CircuitState::Open,
            "the failed probe re-opened"
        );
        assert_eq!(stats.half_open_in_flight, 0, "the probe slot is free");

        // The rest of the megabyte reaches the body's reader.
        for _ in 32..CHUNKS {
            tx.send(chunk.clone()).await.unwrap();
        }
        drop(tx);
        let (n, _, _, error) = drain(response.body_mut(), usize::MAX, 0).await;
        assert_eq!((n, error), (CHUNK * CHUNKS, None));
        // Reading the rest changed nothing in the circuit.
        assert_eq!(untagged(&registry).failure_count, stats.failure_count);
    });
}

#[test]
fn codes_in_the_prefix_of_an_over_long_body_still_classify() {
    let _serial = serial();
    runtime().block_on(async {
        // (status, head, count_throttling, failure expected)
        let cases = [
            (400, THROTTLED_HEAD, true, true),
            (400, THROTTLED_HEAD, false, false),
            (400, VALIDATION_HEAD, true, false),
            (500, VALIDATION_HEAD, true, true),
            (503, "<html>", true, true),
            (404, "<html>", true, false),
        ];
        for (status, head, count, failure) in cases {
            let url = serve(generated(Answer {
                status,
                head,
                filler: 4 * DEFAULT_ERROR_BODY_PREFIX,
                tail: TAIL,
                abort: false,
            }))
            .await;
            let registry = CircuitBreakerRegistry::new();
            let client = adapter(&registry).count_throttling(count);
            let response = connector(&client)
                .call(HttpRequest::get(url.as_str()).unwrap())
                .await
                .expect("a response");
            assert_eq!(response.status().as_u16(), status);
            let stats = untagged(&registry);
            assert_eq!(
                (stats.failure_count, stats.success_count),
                if failure { (1, 0) } else { (0, 1) },
                "{status} {head} count_throttling={count}"
            );
        }
    });
}

#[test]
fn a_smaller_prefix_limit_applies_and_bad_limits_are_refused() {
    let registry = CircuitBreakerRegistry::new();
    for bad in [0, 1023, 16 * MIB + 1, usize::MAX] {
        let err = adapter(&registry).error_body_prefix(bad).unwrap_err();
        assert_eq!(err.field(), "error_body_prefix", "{bad}");
    }
    assert_eq!(
        adapter(&registry).error_body_prefix_limit(),
        DEFAULT_ERROR_BODY_PREFIX
    );

    // With a 1 KiB prefix, a throttling code past the first KiB is not seen: the status
    // decides (400: success).
    let _serial = serial();
    runtime().block_on(async {
        let late: &'static str = Box::leak(
            format!(
                r#"{{"message":"{}","__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}}"#,
                "a".repeat(2000)
            )
            .into_boxed_str(),
        );
        let url = serve(generated(Answer {
            status: 400,
            head: late,
            filler: 0,
            tail: "",
            abort: false,
        }))
        .await;
        for (limit, failure) in [(1024, false), (DEFAULT_ERROR_BODY_PREFIX, true)] {
            let registry = CircuitBreakerRegistry::new();
            let client = adapter(&registry).error_body_prefix(limit).unwrap();
            let response = connector(&client)
                .call(HttpRequest::get(url.as_str()).unwrap())
                .await
                .expect("a response");
            let body = response.body().bytes().map(<[u8]>::len);
            let stats = untagged(&registry);
            assert_eq!(
                stats.failure_count,
                u64::from(failure),
                "limit {limit}: body in memory {body:?}"
            );
        }
    });
}

// ===== through a real SDK client =====

#[test]
fn the_sdk_still_gets_the_error_of_an_over_long_body() {
    const SIZE: usize = 4 * MIB;
    let _serial = serial();
    runtime().block_on(async {
        let url = serve(generated(Answer {
            status: 400,
            head: THROTTLED_HEAD,
            filler: SIZE,
            tail: TAIL,
            abort: false,
        }))
        .await;
        let registry = CircuitBreakerRegistry::new();
        let sdk = sdk_config_in(&url, "eu-south-2", None);
        let ddb = aws_client!(
            aws_sdk_dynamodb,
            &sdk,
            &registry,
            CircuitBreakerConfig::dynamodb(),
            inner = default_http_client(),
        );
        let err = ddb
            .put_item()
            .table_name("connections")
            .item("connectionId", AttributeValue::S("c1".into()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"));
        assert_eq!(err.message().map(str::len), Some(SIZE));
        let stats = registry.stats("dynamodb", "PutItem").expect("the circuit");
        // Three attempts (the SDK retries throttling), each judged on its prefix.
        assert_eq!((stats.failure_count, stats.success_count), (3, 0));
    });
}

// ===== bodies from a test double =====

/// A streamed body of the given frames.
struct Frames(std::collections::VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// What the SDK receives for `body` (status 400) from a double, and the verdict.
async fn through_double(body: impl Fn() -> SdkBody + Send + Sync + 'static) -> (Vec<u8>, bool) {
    let inner = aws_smithy_http_client::test_util::infallible_client_fn(move |_| {
        http::Response::builder().status(400).body(body()).unwrap()
    });
    let registry = CircuitBreakerRegistry::new();
    let client =
        BreakerHttpClient::with_inner(inner, registry.clone(), CircuitBreakerConfig::dynamodb())
            .error_body_prefix(1024)
            .unwrap();
    let mut response = connector(&client)
        .call(HttpRequest::get("https://dynamodb.eu-west-1.amazonaws.com/").unwrap())
        .await
        .expect("a response");
    let failed = untagged(&registry).failure_count == 1;
    let bytes = response.take_body().collect().await.unwrap().to_bytes();
    (bytes.to_vec(), failed)
}

#[test]
fn prefix_boundaries_keep_every_byte_in_order() {
    let _serial = serial();
    runtime().block_on(prefix_boundaries());
}

async fn prefix_boundaries() {
    let code = r#"{"__type":"x#ThrottlingException","message":""#;
    for total in [1023, 1024, 1025, 5000] {
        let body: Vec<u8> = code
            .bytes()
            .chain(std::iter::repeat_n(b'm', total - code.len() - 2))
            .chain(*b"\"}")
            .collect();
        assert_eq!(body.len(), total);
        for frame in [1, 7, 1024, 4096] {
            let frames: Vec<Bytes> = body.chunks(frame).map(Bytes::copy_from_slice).collect();
            let (got, failed) =
                through_double(move || SdkBody::from_body_1_x(Frames(frames.clone().into()))).await;
            assert_eq!(got, body, "{total} bytes in {frame}-byte frames");
            assert!(
                failed,
                "throttling seen in {total} bytes in {frame}-byte frames"
            );
        }
        // The same body in memory: judged on its first KiB, handed on untouched.
        let in_memory = body.clone();
        let (got, failed) = through_double(move || SdkBody::from(in_memory.clone())).await;
        assert_eq!((got, failed), (body, true), "{total} bytes in memory");
    }
}
