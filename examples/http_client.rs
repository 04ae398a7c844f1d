//! An HTTP server whose outbound hyper-util client sits behind a circuit breaker and a
//! timeout, with a fallback that answers like a server: 503 with `Retry-After`.
//!
//! Everything is on loopback: a flaky upstream (`/ok`, `/slow`, `/flaky` answering 503,
//! `/limited` answering 429 with `Retry-After: 1`), a front server that proxies each
//! request to it through the stack, and a client that calls the front. It runs a fixed
//! script and stops by itself in about two seconds.
//!
//! The fallback must return the inner service's response type exactly, and hyper's
//! `Response<Incoming>` cannot be built by hand: so the stack boxes the body *below* the
//! breaker (`map_response` to `Response<BoxBody<..>>`), and the fallback builds a
//! `Response<BoxBody<..>>` of its own.
//!
//! ```text
//! cargo run --all-features --example http_client
//! ```

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};
use tower_circuit_breaker::classify::HttpStatusAsFailures;
use tower_circuit_breaker::error::FallbackCause;
use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerLayer};

type Body = BoxBody<Bytes, BoxError>;

fn body(text: &'static str) -> Body {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|e| match e {})
        .boxed()
}

/// The flaky upstream.
async fn upstream(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let res = Response::builder();
    Ok(match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            res.body(body("slow"))
        }
        "/flaky" => res.status(503).body(body("upstream down")),
        "/limited" => res
            .status(429)
            .header("retry-after", "1")
            .body(body("slow down")),
        _ => res.body(body("hello")),
    }
    .unwrap())
}

/// Serves `handler` on a loopback port; returns the port.
async fn serve<F, Fut>(handler: F) -> u16
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(handler);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

#[tokio::main]
async fn main() {
    let up = serve(upstream).await;

    // The outbound stack: breaker (5xx, 408, 429 and errors are failures; a 429/503
    // `Retry-After` opens the circuit for that long) over a timeout over the client,
    // whose body is boxed below the breaker so the fallback can build the same type.
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(2)
        .minimum_request_count(2)
        .recovery_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let breaker = CircuitBreakerLayer::named("upstream", config)
        .classifier(HttpStatusAsFailures::new().honor_retry_after(Duration::from_secs(5)))
        .fallback_fn_with_cause(
            |_req: Request<Empty<Bytes>>, cause: FallbackCause<BoxError>| async move {
                match cause {
                    FallbackCause::Rejected(open) => {
                        // Whole seconds, rounded up (at least 1).
                        let secs = open
                            .retry_after()
                            .map_or(1, |d| d.as_millis().div_ceil(1000).max(1));
                        Ok(Response::builder()
                            .status(StatusCode::SERVICE_UNAVAILABLE)
                            .header("retry-after", secs.to_string())
                            .body(body("upstream circuit open"))
                            .unwrap())
                    }
                    FallbackCause::Failed(e) => Err(e),
                }
            },
        );
    let circuit = breaker.circuit().clone();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let outbound = ServiceBuilder::new()
        .layer(breaker)
        .timeout(Duration::from_millis(200))
        .map_response(|res: Response<Incoming>| res.map(|b| b.map_err(BoxError::from).boxed()))
        .service(client)
        // The fallback over a `BoxError` service does not spawn as it is (see the crate
        // docs, "Troubleshooting"): boxing erases what rustc trips on.
        .boxed_clone();

    // The front server: each request is proxied to the upstream through the stack.
    let front = serve(move |req: Request<Incoming>| {
        let outbound = outbound.clone();
        async move {
            let uri = format!("http://127.0.0.1:{up}{}", req.uri().path());
            let out = Request::get(uri).body(Empty::new()).unwrap();
            Ok(match outbound.oneshot(out).await {
                Ok(res) => res,
                Err(e) => Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(
                        Full::new(Bytes::from(e.to_string()))
                            .map_err(|e| match e {})
                            .boxed(),
                    )
                    .unwrap(),
            })
        }
    })
    .await;

    // The script: each line is a path, then how long to wait before the next.
    let caller: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let script = [
        ("/ok", 0),
        ("/slow", 0),    // timeout: a failure
        ("/flaky", 0),   // 503: a second failure, the circuit opens
        ("/ok", 600),    // rejected: the fallback's 503 with Retry-After; then the break ends
        ("/ok", 0),      // the probe succeeds: closed
        ("/limited", 0), // 429 with Retry-After: 1: open for 1 s
        ("/ok", 0),      // rejected: Retry-After from the upstream's hint
    ];
    for (path, wait_ms) in script {
        let req = Request::get(format!("http://127.0.0.1:{front}{path}"))
            .body(Empty::new())
            .unwrap();
        let res = caller.request(req).await.unwrap();
        let status = res.status();
        let retry = res
            .headers()
            .get("retry-after")
            .map(|v| format!(", retry-after {}", v.to_str().unwrap()))
            .unwrap_or_default();
        let text = res.into_body().collect().await.unwrap().to_bytes();
        println!(
            "{path:<9} -> {status}{retry}: {} (circuit {:?})",
            String::from_utf8_lossy(&text),
            circuit.state()
        );
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    }
    assert_eq!(circuit.state(), tower_circuit_breaker::CircuitState::Open);
}
