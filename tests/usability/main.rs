//! Issue 13, item 6: the small things a user reaches for first. Paused tokio time.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::advance;
// Everything a basic test needs, from the crate root.
use tower_circuit_breaker::{
    BoxError, CallError, Circuit, CircuitBreakerConfig, CircuitBreakerConfigBuilder,
    CircuitBreakerLayer, CircuitBreakerStats, CircuitOpen, CircuitState, FallbackCause,
    ManualOverride, RegistryConfig, RejectReason, TransitionEvent, TransitionReason, Verdict,
    classify,
};

#[derive(Debug)]
struct Boom;

fn config(
    f: impl FnOnce(CircuitBreakerConfigBuilder) -> CircuitBreakerConfigBuilder,
) -> CircuitBreakerConfig {
    f(CircuitBreakerConfig::builder()
        .failure_threshold(2)
        .minimum_request_count(0)
        .recovery_timeout(Duration::from_secs(3))
        .expected_response_time(Duration::from_secs(1)))
    .build()
    .unwrap()
}

async fn fail(c: &Circuit) -> Result<(), CallError<Boom>> {
    c.call(async { Err::<(), _>(Boom) }).await
}

async fn succeed(c: &Circuit) -> Result<(), CallError<Boom>> {
    c.call(async { Ok::<(), Boom>(()) }).await
}

fn rejection(r: Result<(), CallError<Boom>>) -> CircuitOpen {
    match r {
        Err(CallError::Rejected(open)) => open,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn the_root_names_what_a_basic_test_needs() {
    // `Verdict` is non-exhaustive: a match needs a `_` arm (outside the crate).
    let name = |v: Verdict| match v {
        Verdict::Success => "success",
        Verdict::Failure | Verdict::OpenFor(_) => "failure",
        Verdict::Ignored => "ignored",
        _ => "other",
    };
    assert_eq!(name(Verdict::Ignored), "ignored");
    let _: Option<ManualOverride> = None;
    let _: Option<TransitionEvent> = None;
    let _: Option<FallbackCause<Boom>> = None;
    let _ = RegistryConfig::default();
    assert_eq!(RejectReason::HalfOpenFull.as_str(), "half_open_full");
    assert_eq!(TransitionReason::Tripped.as_str(), "tripped");
}

#[tokio::test(start_paused = true)]
async fn rejection_messages_round_the_retry_hint_to_the_millisecond() {
    let c = Circuit::named("db", config(|b| b));
    fail(&c).await.unwrap_err();
    fail(&c).await.unwrap_err();
    assert_eq!(c.state(), CircuitState::Open);
    // 3 s break, 56 000 002 ns spent: 2.943999998 s left, shown as 2.944 s.
    advance(Duration::from_nanos(56_000_002)).await;
    let open = rejection(succeed(&c).await);
    assert_eq!(
        open.retry_after(),
        Some(Duration::from_nanos(2_943_999_998))
    );
    assert_eq!(open.to_string(), "circuit `db` is open; retry after 2.944s");
    // Whole milliseconds stay as they are.
    advance(Duration::from_nanos(943_999_998)).await;
    assert_eq!(
        rejection(succeed(&c).await).to_string(),
        "circuit `db` is open; retry after 2s"
    );
}

#[tokio::test(start_paused = true)]
async fn stats_display_in_one_line_with_rates_to_three_digits() {
    let c = Circuit::named("db", config(|b| b.failure_threshold(5)));
    succeed(&c).await.unwrap();
    succeed(&c).await.unwrap();
    fail(&c).await.unwrap_err();
    assert_eq!(
        c.stats().to_string(),
        "closed, window: 3 calls, 1 failed, 0 slow, failure rate 0.333, 1 consecutive failures; \
         lifetime: 3 calls, 2 ok, 1 failed, 0 slow, 0 rejected, 0 ignored"
    );
    c.force_open();
    rejection(succeed(&c).await);
    let s: CircuitBreakerStats = c.stats();
    assert_eq!(
        s.to_string(),
        "open (forced open), window: 3 calls, 1 failed, 0 slow, failure rate 0.333, 1 consecutive failures; \
         lifetime: 3 calls, 2 ok, 1 failed, 0 slow, 1 rejected, 0 ignored"
    );
}

/// `TransitionEvent::at` and the stats' times are on one clock: under a paused tokio
/// clock, both advance with `advance` (the event's time used to be real `SystemTime::now()`).
#[tokio::test(start_paused = true)]
async fn transition_times_and_stats_times_share_one_clock() {
    let c = Circuit::named("db", config(|b| b));
    let events: Arc<Mutex<Vec<TransitionEvent>>> = Arc::default();
    let sink = events.clone();
    c.on_transition(move |e| sink.lock().unwrap().push(e.clone()));

    // An hour of virtual time (real time moves by far less): with the event's time
    // taken from the real clock, the two would be an hour apart.
    advance(Duration::from_secs(3600)).await;
    fail(&c).await.unwrap_err();
    fail(&c).await.unwrap_err();
    let s = c.stats();
    let opened = events.lock().unwrap()[0].clone();
    assert_eq!(opened.to, CircuitState::Open);
    // Opened on the second failure, at the same (paused) instant.
    assert_eq!(Some(opened.at), s.last_failure_time);
    assert_eq!(opened.stats.last_failure_time, Some(opened.at));
    assert_eq!(
        s.next_attempt_time,
        Some(opened.at + Duration::from_secs(3))
    );

    advance(Duration::from_secs(3)).await;
    succeed(&c).await.unwrap();
    let s = c.stats();
    let log = events.lock().unwrap().clone();
    assert_eq!(
        log.iter().map(|e| e.to).collect::<Vec<_>>(),
        [
            CircuitState::Open,
            CircuitState::HalfOpen,
            CircuitState::Closed
        ]
    );
    assert_eq!(log[1].at, opened.at + Duration::from_secs(3));
    assert_eq!(Some(log[2].at), s.last_success_time);
}

/// A caller rejected because every probe slot is taken learns when to come back: the
/// probe deadline (`half_open_max_wait` after the probe was admitted).
#[tokio::test(start_paused = true)]
async fn a_half_open_full_rejection_carries_a_retry_hint() {
    let c = Circuit::named(
        "db",
        config(|b| {
            b.half_open_max_wait(Duration::from_secs(10))
                .expected_response_time(Duration::from_secs(5))
        }),
    );
    fail(&c).await.unwrap_err();
    fail(&c).await.unwrap_err();
    advance(Duration::from_secs(3)).await;

    let (tx, rx) = oneshot::channel::<Result<(), Boom>>();
    let mut probe = tokio_test::task::spawn(c.call(async move { rx.await.unwrap() }));
    tokio_test::assert_pending!(probe.poll());
    assert_eq!(c.state(), CircuitState::HalfOpen);

    let open = rejection(succeed(&c).await);
    assert_eq!(open.reason(), RejectReason::HalfOpenFull);
    assert_eq!(open.retry_after(), Some(Duration::from_secs(10)));
    advance(Duration::from_millis(2500)).await;
    let open = rejection(succeed(&c).await);
    assert_eq!(open.retry_after(), Some(Duration::from_millis(7500)));
    assert_eq!(
        open.to_string(),
        "circuit `db` is half-open and its probes are in flight; retry after 7.5s"
    );
    // The stats say the same deadline.
    let s = c.stats();
    let now = s.next_attempt_time.unwrap() - Duration::from_millis(7500);
    assert_eq!(
        now,
        s.last_failure_time.unwrap() + Duration::from_millis(5500)
    );

    tx.send(Ok(())).unwrap();
    tokio_test::assert_ready_ok!(probe.poll());
    assert_eq!(c.state(), CircuitState::Closed);
}

/// `classify::from_fn` names the types a bare closure cannot infer.
#[tokio::test(start_paused = true)]
async fn a_closure_classifier_with_explicit_types() {
    use tower::{ServiceBuilder, ServiceExt};
    let layer =
        CircuitBreakerLayer::named("upstream", config(|b| b)).classifier(classify::from_fn::<
            u16,
            BoxError,
            _,
        >(|r| match r {
            Ok(status) if *status >= 500 => Verdict::Failure,
            Ok(_) => Verdict::Success,
            Err(_) => Verdict::Ignored,
        }));
    let circuit = layer.circuit().clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|status: u16| async move {
            if status == 0 {
                Err::<u16, BoxError>("no status".into())
            } else {
                Ok(status)
            }
        });
    assert_eq!(svc.clone().oneshot(200).await.unwrap(), 200);
    assert_eq!(svc.clone().oneshot(503).await.unwrap(), 503);
    svc.clone().oneshot(0).await.unwrap_err();
    let s = circuit.stats();
    assert_eq!(
        (s.success_count, s.failure_count, s.ignored_count),
        (1, 1, 1)
    );

    // The same helper for `Circuit::call_with`.
    let c = Circuit::named("call", config(|b| b));
    let classifier = classify::from_fn::<(), Boom, _>(|r| match r {
        Ok(()) => Verdict::Success,
        Err(Boom) => Verdict::Ignored,
    });
    c.call_with(&classifier, async { Err::<(), _>(Boom) })
        .await
        .unwrap_err();
    assert_eq!(c.stats().ignored_count, 1);
}

/// `NoRetryOnOpen` passes errors to the wrapped policy, but never retries a rejection.
#[cfg(feature = "retry")]
#[tokio::test(start_paused = true)]
async fn a_retry_policy_that_never_retries_a_rejection() {
    use tower::retry::Policy;
    use tower::{Service, ServiceBuilder, ServiceExt};
    use tower_circuit_breaker::retry::NoRetryOnOpen;

    /// Retries every error, as long as attempts are left; counts what it was asked.
    #[derive(Clone)]
    struct Attempts {
        left: u32,
        asked: Arc<Mutex<u32>>,
    }
    impl<Res> Policy<u32, Res, BoxError> for Attempts {
        type Future = std::future::Ready<()>;
        fn retry(
            &mut self,
            _: &mut u32,
            result: &mut Result<Res, BoxError>,
        ) -> Option<Self::Future> {
            *self.asked.lock().unwrap() += 1;
            (result.is_err() && self.left > 0).then(|| {
                self.left -= 1;
                std::future::ready(())
            })
        }
        fn clone_request(&mut self, req: &u32) -> Option<u32> {
            Some(*req)
        }
    }

    let asked = Arc::new(Mutex::new(0));
    let breaker = CircuitBreakerLayer::named("retried", config(|b| b.failure_threshold(10)));
    let circuit = breaker.circuit().clone();
    let (inner, mut handle) = tower_test::mock::pair::<u32, u32>();
    let mut svc = ServiceBuilder::new()
        .retry(NoRetryOnOpen::new(Attempts {
            left: 2,
            asked: asked.clone(),
        }))
        .layer(breaker)
        .service(inner);

    // An inner error is retried (the wrapped policy decides): 1 + 2 attempts.
    handle.allow(3);
    let call = tokio::spawn(svc.ready().await.unwrap().call(1));
    for _ in 0..3 {
        let (req, respond) = handle.next_request().await.unwrap();
        assert_eq!(req, 1);
        respond.send_error(std::io::Error::other("boom"));
    }
    assert!(
        call.await
            .unwrap()
            .unwrap_err()
            .to_string()
            .contains("boom")
    );
    assert_eq!(*asked.lock().unwrap(), 3);
    assert_eq!(circuit.stats().failure_count, 3);

    // A rejection is not retried, and the wrapped policy is not asked.
    circuit.force_open();
    handle.allow(10);
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(*asked.lock().unwrap(), 3);
    assert_eq!(circuit.stats().rejected_count, 1);
    // Nothing reached the inner service.
    tokio_test::assert_pending!(tokio_test::task::spawn(handle.next_request()).poll());
}

/// `IsRejection` finds a rejection in a `BoxError`, in its source chain, in a
/// `CallError`.
#[cfg(feature = "retry")]
#[tokio::test(start_paused = true)]
async fn rejections_are_recognised_where_they_arrive() {
    use tower_circuit_breaker::retry::IsRejection;
    let c = Circuit::named("db", config(|b| b));
    c.force_open();
    let call_err = succeed(&c).await.unwrap_err();
    assert!(call_err.rejection().is_some());
    let open = rejection(succeed(&c).await);
    let boxed: BoxError = Box::new(open.clone());
    assert!(IsRejection::rejection(&boxed).is_some());

    #[derive(Debug)]
    struct Wrapper(CircuitOpen);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let wrapped: BoxError = Box::new(Wrapper(open));
    assert_eq!(IsRejection::rejection(&wrapped).unwrap().circuit(), "db");
    let other: BoxError = "other".into();
    assert!(IsRejection::rejection(&other).is_none());
}
