#![cfg(feature = "http")]
//! `HttpStatusAsFailures` and `Retry-After`, alone and through the layer.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{Response, StatusCode};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_circuit_breaker::classify::{Classify, HttpStatusAsFailures, Verdict};
use tower_circuit_breaker::error::{CircuitOpen, RejectReason};
use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};

type HttpResult = Result<Response<()>, std::io::Error>;

fn response(status: u16) -> HttpResult {
    Ok(Response::builder().status(status).body(()).unwrap())
}

fn response_with_retry_after(status: u16, retry_after: &str) -> HttpResult {
    Ok(Response::builder()
        .status(status)
        .header(RETRY_AFTER, retry_after)
        .body(())
        .unwrap())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn failure_statuses_are_failures() {
    let c = HttpStatusAsFailures::new();
    for status in [500, 502, 503, 504, 408, 429, 501, 599] {
        assert_eq!(c.classify(&response(status)), Verdict::Failure, "{status}");
        assert_eq!(
            HttpStatusAsFailures::status_verdict(StatusCode::from_u16(status).unwrap()),
            Verdict::Failure,
            "{status}"
        );
    }
}

#[test]
fn other_statuses_are_successes() {
    let c = HttpStatusAsFailures::new();
    for status in [200, 201, 204, 301, 304, 400, 401, 403, 404, 409, 422] {
        assert_eq!(c.classify(&response(status)), Verdict::Success, "{status}");
    }
}

#[test]
fn transport_errors_are_failures() {
    let c = HttpStatusAsFailures::new();
    let err: HttpResult = Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "refused",
    ));
    assert_eq!(c.classify(&err), Verdict::Failure);
    let err: Result<Response<()>, BoxError> = Err("dns".into());
    assert_eq!(c.classify(&err), Verdict::Failure);
    let c = c.honor_retry_after(secs(60));
    assert_eq!(c.classify(&err), Verdict::Failure);
}

#[test]
fn retry_after_is_ignored_unless_honoured() {
    let c = HttpStatusAsFailures::new();
    assert_eq!(
        c.classify(&response_with_retry_after(503, "7")),
        Verdict::Failure
    );
    assert_eq!(
        c.classify(&response_with_retry_after(429, "7")),
        Verdict::Failure
    );
}

#[test]
fn honoured_retry_after_opens_for_the_given_seconds() {
    let c = HttpStatusAsFailures::new().honor_retry_after(secs(60));
    for status in [429, 503] {
        assert_eq!(
            c.classify(&response_with_retry_after(status, "7")),
            Verdict::OpenFor(secs(7)),
            "{status}"
        );
        // Without the header: a plain failure.
        assert_eq!(c.classify(&response(status)), Verdict::Failure, "{status}");
    }
}

#[test]
fn honoured_retry_after_is_capped() {
    let c = HttpStatusAsFailures::new().honor_retry_after(secs(60));
    assert_eq!(
        c.classify(&response_with_retry_after(429, "600")),
        Verdict::OpenFor(secs(60))
    );
    assert_eq!(
        c.classify(&response_with_retry_after(503, "60")),
        Verdict::OpenFor(secs(60))
    );
    let c = HttpStatusAsFailures::new().honor_retry_after(secs(5));
    assert_eq!(
        c.classify(&response_with_retry_after(503, "7")),
        Verdict::OpenFor(secs(5))
    );
}

#[test]
fn retry_after_only_on_429_and_503() {
    let c = HttpStatusAsFailures::new().honor_retry_after(secs(60));
    for status in [500, 502, 504, 408] {
        assert_eq!(
            c.classify(&response_with_retry_after(status, "7")),
            Verdict::Failure,
            "{status}"
        );
    }
    // A success with the header stays a success.
    assert_eq!(
        c.classify(&response_with_retry_after(200, "7")),
        Verdict::Success
    );
    assert_eq!(
        c.classify(&response_with_retry_after(301, "7")),
        Verdict::Success
    );
}

#[test]
fn unusable_retry_after_is_a_plain_failure() {
    let c = HttpStatusAsFailures::new().honor_retry_after(secs(60));
    for value in [
        "0",
        "-1",
        "soon",
        "",
        "7.5",
        "Wed, 21 Oct 2015 07:28:00 GMT",
    ] {
        assert_eq!(
            c.classify(&response_with_retry_after(503, value)),
            Verdict::Failure,
            "{value:?}"
        );
    }
}

#[test]
fn retry_after_http_date_is_honoured_and_capped() {
    // A date a day ahead: far beyond the cap, so the verdict is exact whatever the clock.
    let date = httpdate_in(Duration::from_secs(24 * 3600));
    let c = HttpStatusAsFailures::new().honor_retry_after(secs(60));
    assert_eq!(
        c.classify(&response_with_retry_after(429, &date)),
        Verdict::OpenFor(secs(60))
    );
}

/// An IMF-fixdate `d` from now, formatted by hand (the test has no `httpdate` dependency).
fn httpdate_in(d: Duration) -> String {
    let t = (SystemTime::now() + d)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let days = t / 86_400;
    let (hh, mm, ss) = (t % 86_400 / 3600, t % 3600 / 60, t % 60);
    // 1970-01-01 was a Thursday.
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {hh:02}:{mm:02}:{ss:02} GMT",
        months[(month - 1) as usize]
    )
}

// ===== through the layer =====

/// A service that answers each request `(status, retry_after)` with that response.
fn http_inner(
    calls: &Arc<AtomicUsize>,
) -> impl Service<(u16, Option<&'static str>), Response = Response<()>, Error = Infallible> + Clone + use<>
{
    let calls = calls.clone();
    service_fn(move |(status, retry_after): (u16, Option<&'static str>)| {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut b = Response::builder().status(status);
        if let Some(v) = retry_after {
            b = b.header(RETRY_AFTER, v);
        }
        std::future::ready(Ok::<_, Infallible>(b.body(()).unwrap()))
    })
}

fn rejection(err: &BoxError) -> &CircuitOpen {
    err.downcast_ref::<CircuitOpen>()
        .unwrap_or_else(|| panic!("expected a CircuitOpen, got {err:?}"))
}

#[tokio::test(start_paused = true)]
async fn one_503_with_retry_after_opens_the_circuit_for_that_long() {
    // The default config needs 5 calls and 5 failures to trip, and breaks for 30 s:
    // neither applies to a server-given Retry-After.
    let layer = CircuitBreakerLayer::named("api", CircuitBreakerConfig::default())
        .classifier(HttpStatusAsFailures::new().honor_retry_after(secs(60)));
    let circuit = layer.circuit().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(http_inner(&calls));

    let res = svc.ready().await.unwrap().call((200, None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(circuit.state(), CircuitState::Closed);

    let res = svc
        .ready()
        .await
        .unwrap()
        .call((503, Some("5")))
        .await
        .unwrap();
    // The response itself is passed on untouched.
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()[RETRY_AFTER], "5");

    let stats = circuit.stats();
    assert_eq!(stats.state, CircuitState::Open);
    assert_eq!(stats.failure_count, 1);
    let next = stats
        .next_attempt_time
        .expect("next_attempt_time while open");
    let failed_at = stats.last_failure_time.expect("last_failure_time");
    // The paused clock does not move between the failure and the transition.
    assert_eq!(next.duration_since(failed_at).unwrap(), secs(5));

    // Rejected for exactly 5 s.
    let err = svc
        .ready()
        .await
        .unwrap()
        .call((200, None))
        .await
        .unwrap_err();
    assert_eq!(rejection(&err).reason(), RejectReason::Open);
    assert_eq!(rejection(&err).retry_after(), Some(secs(5)));

    advance(Duration::from_millis(4_999)).await;
    let err = svc
        .ready()
        .await
        .unwrap()
        .call((200, None))
        .await
        .unwrap_err();
    assert_eq!(
        rejection(&err).retry_after(),
        Some(Duration::from_millis(1))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    advance(Duration::from_millis(1)).await;
    let res = svc.ready().await.unwrap().call((200, None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(circuit.state(), CircuitState::Closed);
    assert_eq!(circuit.stats().rejected_count, 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_cap_opens_for_the_cap() {
    let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::default())
        .classifier(HttpStatusAsFailures::new().honor_retry_after(secs(60)));
    let circuit = layer.circuit().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(http_inner(&calls));

    let res = svc.clone().oneshot((429, Some("3600"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(circuit.state(), CircuitState::Open);
    let err = svc.clone().oneshot((200, None)).await.unwrap_err();
    assert_eq!(rejection(&err).retry_after(), Some(secs(60)));

    advance(secs(60)).await;
    svc.oneshot((200, None)).await.unwrap();
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn retry_after_on_a_probe_reopens_for_the_server_given_duration() {
    let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::default())
        .classifier(HttpStatusAsFailures::new().honor_retry_after(secs(60)));
    let circuit = layer.circuit().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(http_inner(&calls));

    svc.clone().oneshot((503, Some("5"))).await.unwrap();
    assert_eq!(circuit.state(), CircuitState::Open);
    advance(secs(5)).await;

    // The probe is told to wait 8 s more.
    svc.clone().oneshot((503, Some("8"))).await.unwrap();
    assert_eq!(circuit.state(), CircuitState::Open);
    let err = svc.clone().oneshot((200, None)).await.unwrap_err();
    assert_eq!(rejection(&err).retry_after(), Some(secs(8)));

    advance(secs(8)).await;
    svc.oneshot((200, None)).await.unwrap();
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn status_failures_trip_by_the_thresholds_without_retry_after() {
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(3)
        .minimum_request_count(3)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(config).classifier(HttpStatusAsFailures::new());
    let circuit = layer.circuit().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(http_inner(&calls));

    // 404s and 400s are the dependency answering: they never trip it.
    for status in [404, 400, 404, 400, 404] {
        svc.clone().oneshot((status, None)).await.unwrap();
    }
    assert_eq!(circuit.stats().success_count, 5);
    for status in [500, 502] {
        svc.clone().oneshot((status, None)).await.unwrap();
    }
    assert_eq!(circuit.state(), CircuitState::Closed);
    // A 503 with Retry-After is a plain failure here: not honoured.
    svc.clone().oneshot((503, Some("1"))).await.unwrap();
    assert_eq!(circuit.state(), CircuitState::Open);
    let err = svc.oneshot((200, None)).await.unwrap_err();
    // The config's own break, not the header's.
    assert_eq!(
        rejection(&err).retry_after(),
        Some(CircuitBreakerConfig::default().recovery_timeout())
    );
}

/// 18_446_744_074 s is just over 2^64 ns: a break computed as `as_nanos() as u64` wraps
/// round to about 0.29 s.
#[tokio::test(start_paused = true)]
async fn huge_uncapped_retry_after_does_not_wrap_to_a_short_break() {
    let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::default())
        .classifier(HttpStatusAsFailures::new().honor_retry_after(Duration::MAX));
    let circuit = layer.circuit().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(http_inner(&calls));

    svc.clone()
        .oneshot((503, Some("18446744074")))
        .await
        .unwrap();
    assert_eq!(circuit.state(), CircuitState::Open);
    advance(secs(1)).await;
    let err = svc.oneshot((200, None)).await.unwrap_err();
    assert!(rejection(&err).retry_after().unwrap() > secs(365 * 24 * 3600));
}

// ===== RecordBody: the outcome at end of stream =====

mod body;
