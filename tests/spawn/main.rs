//! Stacks moved into `tokio::spawn` on a multi-thread runtime (issue #13, item 1): the
//! crate docs' and README's stacks, the typed-error mode over a `service_fn` returning
//! `BoxError`, over tower's `Timeout`, and over a hyper-util client; and the fallbacks
//! that are told the cause (item 2).
//!
//! No test reaches the network: a stack is spawned with its circuit forced open (a
//! rejection, the inner service not called), or over a local `service_fn`. Tests with
//! time use tokio's paused clock.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_circuit_breaker::error::{CircuitBreakerError, CircuitOpen, FallbackCause, RejectReason};
use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerLayer};

/// Compile-time proof, beside the run: the future is `Send + 'static`.
fn spawn_checked<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut)
}

/// `tokio::spawn(async move { svc.oneshot(req).await })` as an axum handler's body would
/// be: an `async` block awaiting the stack, where rustc's higher-ranked `Send` inference
/// runs on the concrete types (a generic function would hide them behind its bounds).
macro_rules! spawn_call {
    ($svc:expr, $req:expr) => {{
        let svc = $svc;
        let req = $req;
        spawn_checked(async move { svc.oneshot(req).await })
    }};
}

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .failure_threshold(2)
        .minimum_request_count(2)
        .recovery_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The crate docs' stack in the default `BoxError` mode: breaker over `.timeout()` over a
/// `service_fn` returning `BoxError`, spawned with `.boxed_clone()`, the way out the
/// crate docs' "Troubleshooting" gives when rustc cannot prove a stack's future `Send`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crate_docs_stack_spawns_once_boxed() {
    let breaker = CircuitBreakerLayer::new(config());
    let circuit = breaker.circuit().clone();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .timeout(Duration::from_millis(800))
        .service_fn(|item: String| async move { Ok::<_, BoxError>(item.len()) })
        .boxed_clone();
    let ok = spawn_call!(svc.clone(), "spawned".to_string())
        .await
        .unwrap();
    assert_eq!(ok.unwrap(), 7);
    circuit.force_open();
    let err = spawn_call!(svc, "spawned".to_string())
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is::<CircuitOpen>());
}

/// The README's stack over an inner service whose error is a concrete type (the
/// README's `inner`): spawns in `BoxError` mode as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_stack_over_concrete_error_spawns() {
    let breaker = CircuitBreakerLayer::named("dynamodb", CircuitBreakerConfig::dynamodb());
    let circuit = breaker.circuit().clone();
    let inner = service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req * 2) });
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .timeout(Duration::from_millis(800))
        .service(inner);
    assert_eq!(spawn_call!(svc.clone(), 21).await.unwrap().unwrap(), 42);
    circuit.force_open();
    let err = spawn_call!(svc, 21).await.unwrap().unwrap_err();
    assert!(err.is::<CircuitOpen>());
}

/// Typed mode over a `service_fn` returning `BoxError`: spawns with no boxing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_mode_over_box_error_service_fn_spawns() {
    let breaker = CircuitBreakerLayer::new(config()).typed_errors();
    let circuit = breaker.circuit().clone();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .service_fn(|req: String| async move {
            if req == "fail" {
                Err::<usize, BoxError>("inner failed".into())
            } else {
                Ok(req.len())
            }
        });
    assert_eq!(
        spawn_call!(svc.clone(), "ok".to_string())
            .await
            .unwrap()
            .unwrap(),
        2
    );
    match spawn_call!(svc.clone(), "fail".to_string()).await.unwrap() {
        Err(CircuitBreakerError::Inner(e)) => assert_eq!(e.to_string(), "inner failed"),
        other => panic!("{other:?}"),
    }
    circuit.force_open();
    let err = spawn_call!(svc, "ok".to_string())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.rejection().unwrap().reason(), RejectReason::ForcedOpen);
    assert!(err.into_box_error().is::<CircuitOpen>());
}

/// Typed mode over tower's `Timeout` over a `service_fn` with a concrete error: the
/// error is `CircuitBreakerError<BoxError>` (`Timeout`'s). Over a `service_fn` returning
/// `BoxError` this stack does not spawn inside an `async` block: `Timeout`'s own
/// `Into<BoxError>` bound trips rustc ("implementation of `From` is not general enough").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_mode_over_tower_timeout_spawns() {
    let breaker = CircuitBreakerLayer::new(config()).typed_errors();
    let circuit = breaker.circuit().clone();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .timeout(Duration::from_millis(800))
        .service_fn(|item: String| async move { Ok::<_, std::io::Error>(item.len()) });
    assert_eq!(
        spawn_call!(svc.clone(), "spawned".to_string())
            .await
            .unwrap()
            .unwrap(),
        7
    );
    circuit.force_open();
    let err = spawn_call!(svc, "spawned".to_string())
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_rejected());
    // Its `Display` is the rejection's.
    assert!(err.to_string().contains("forced open"), "{err}");
}

/// Typed mode over a hyper-util client: the error is
/// `CircuitBreakerError<hyper_util::client::legacy::Error>`, an `Error` with a `source`.
/// The circuit is forced open so the client is never called (no network).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_mode_over_hyper_util_client_spawns() {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let breaker = CircuitBreakerLayer::new(config()).typed_errors();
    breaker.circuit().force_open();
    let svc = ServiceBuilder::new().layer(breaker).service(client);
    let req = http::Request::get("http://127.0.0.1:9/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let err = spawn_call!(svc, req).await.unwrap().unwrap_err();
    let source = std::error::Error::source(&err).unwrap();
    assert!(source.is::<CircuitOpen>());
}

/// The same client, in `BoxError` mode with a timeout: its error type is concrete, so it
/// spawns as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_error_mode_over_hyper_util_client_spawns() {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let breaker = CircuitBreakerLayer::new(config());
    breaker.circuit().force_open();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .timeout(Duration::from_secs(1))
        .service(client);
    let req = http::Request::get("http://127.0.0.1:9/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let err = spawn_call!(svc, req).await.unwrap().unwrap_err();
    assert!(err.is::<CircuitOpen>());
}

/// A fallback over a `BoxError` service: inside an `async` block rustc reports "one type
/// is more general than the other"; `.boxed_clone()` makes it spawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_over_box_error_service_spawns() {
    let breaker = CircuitBreakerLayer::new(config())
        .fallback_fn(|req: String| async move { Ok::<_, BoxError>(req.len() + 100) });
    breaker.circuit().force_open();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .service_fn(|req: String| async move { Ok::<_, BoxError>(req.len()) })
        .boxed_clone();
    assert_eq!(
        spawn_call!(svc, "abc".to_string()).await.unwrap().unwrap(),
        103
    );
}

// ===== fallbacks told the cause (item 2) =====

/// A rejection reaches the fallback with its `CircuitOpen`, whose `retry_after` is the
/// rest of the break: what a 503 fallback puts in `Retry-After`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fallback_with_cause_sees_retry_after() {
    let layer = CircuitBreakerLayer::new(config()).fallback_fn_with_cause(
        |_req: u32, cause: FallbackCause<&'static str>| async move {
            match cause {
                FallbackCause::Rejected(open) => Ok(open.retry_after()),
                FallbackCause::Failed(e) => Err(e),
            }
        },
    );
    let circuit = layer.circuit().clone();
    let mut svc = layer.layer(service_fn(|req: u32| async move {
        if req == 0 { Err("zero") } else { Ok(None) }
    }));
    for _ in 0..2 {
        assert_eq!(svc.ready().await.unwrap().call(0).await, Err("zero"));
    }
    assert_eq!(circuit.state(), tower_circuit_breaker::CircuitState::Open);
    tokio::time::advance(Duration::from_secs(3)).await;
    let hint = svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(hint, Some(Duration::from_secs(7)));
}

/// `on_failure_too`: a failed call is recorded by the circuit, then answered by the
/// fallback with `FallbackCause::Failed` and a copy of the request; successes pass.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn on_failure_too_answers_failures_and_rejections() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    let layer = CircuitBreakerLayer::new(config())
        .fallback_fn_with_cause(move |req: u32, cause: FallbackCause<String>| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                match cause {
                    FallbackCause::Rejected(_) => Ok::<_, String>(format!("rejected {req}")),
                    FallbackCause::Failed(e) => Ok(format!("failed {req}: {e}")),
                }
            }
        })
        .on_failure_too();
    let circuit = layer.circuit().clone();
    let mut svc = layer.layer(service_fn(|req: u32| async move {
        if req == 0 {
            Err("zero".to_string())
        } else {
            Ok(format!("ok {req}"))
        }
    }));
    assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), "ok 5");
    assert_eq!(
        svc.ready().await.unwrap().call(0).await.unwrap(),
        "failed 0: zero"
    );
    assert_eq!(
        svc.ready().await.unwrap().call(0).await.unwrap(),
        "failed 0: zero"
    );
    let stats = circuit.stats();
    assert_eq!(
        stats.failure_count, 2,
        "failures are recorded before the fallback"
    );
    assert_eq!(circuit.state(), tower_circuit_breaker::CircuitState::Open);
    assert_eq!(
        svc.ready().await.unwrap().call(7).await.unwrap(),
        "rejected 7"
    );
    assert_eq!(seen.load(Ordering::Relaxed), 3);
}

/// A fallback service (not a closure) that receives `(request, cause)`, spawned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_with_cause_service_spawns() {
    let fallback = service_fn(
        |(req, cause): (u32, FallbackCause<Infallible>)| async move {
            Ok::<_, Infallible>(match cause {
                FallbackCause::Rejected(open) => format!("{req}: {}", open.reason().as_str()),
                FallbackCause::Failed(e) => match e {},
            })
        },
    );
    let breaker = CircuitBreakerLayer::new(config()).fallback_with_cause(fallback);
    breaker.circuit().force_open();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .service_fn(|req: u32| async move { Ok::<_, Infallible>(req.to_string()) });
    let out = spawn_call!(svc, 3).await.unwrap().unwrap();
    assert_eq!(out, "3: forced_open");
}
