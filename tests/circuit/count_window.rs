//! Issue 13, item 4: the count window (`SlidingWindow::Count`), the last `n` calls.

use super::*;
use tower_circuit_breaker::SlidingWindow;

fn counted(
    n: u32,
    f: impl FnOnce(CircuitBreakerConfigBuilder) -> CircuitBreakerConfigBuilder,
) -> CircuitBreakerConfig {
    build(|b| f(b.sliding_window(SlidingWindow::Count(n))))
}

/// The case: after 10 000 successes a 100-call, 50 % breaker opens on exactly the
/// 50th failure (a 60 s time window would need 10 000).
#[tokio::test(start_paused = true)]
async fn ten_thousand_successes_then_a_100_call_50_percent_breaker_trips_after_exactly_50_failures()
{
    let c = Circuit::new(counted(100, |b| {
        b.failure_threshold(100)
            .minimum_request_count(100)
            .failure_rate_threshold(0.5)
    }));
    succeed_n(&c, 10_000).await;
    let s = c.stats();
    assert_eq!((s.window.requests, s.window.failures), (100, 0));
    assert_eq!(s.total_requests, 10_000);
    fail_n(&c, 49).await;
    assert_eq!(c.state(), Closed);
    let s = c.stats();
    assert_eq!((s.window.requests, s.window.failures), (100, 49));
    assert!((s.failure_rate - 0.49).abs() < 1e-9, "{}", s.failure_rate);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
    let s = c.stats();
    assert_eq!((s.total_requests, s.failure_count), (10_050, 50));
}

/// Age does not matter: calls an hour apart are all in the window.
#[tokio::test(start_paused = true)]
async fn a_count_window_forgets_by_count_not_by_age() {
    let c = Circuit::new(counted(4, |b| {
        b.failure_threshold(3).minimum_request_count(4)
    }));
    fail_n(&c, 2).await;
    advance(secs(3_600)).await;
    succeed(&c).await.unwrap();
    let s = c.stats();
    assert_eq!((s.window.requests, s.window.failures), (3, 2));
    // Four successes push both failures out.
    succeed_n(&c, 4).await;
    let s = c.stats();
    assert_eq!((s.window.requests, s.window.failures), (4, 0));
    assert_eq!((s.total_requests, s.failure_count), (7, 2));
}

/// The minimum counts calls in the ring; consecutive failures trip as with a time window.
#[tokio::test(start_paused = true)]
async fn minimum_requests_and_consecutive_failures_read_the_count_window() {
    let c = Circuit::new(counted(10, |b| {
        b.failure_threshold(3).minimum_request_count(5)
    }));
    fail_n(&c, 4).await;
    assert_eq!(c.state(), Closed, "4 calls, minimum 5");
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

/// The slow-call rate reads the ring too.
#[tokio::test(start_paused = true)]
async fn slow_call_rate_reads_the_count_window() {
    let c = Circuit::new(counted(10, |b| {
        b.failure_threshold(10)
            .minimum_request_count(10)
            .slow_call_is_failure(false)
            .expected_response_time(ms(100))
            .slow_call_rate_threshold(0.3)
    }));
    succeed_n(&c, 8).await;
    slow(&c, ms(200), Ok(1)).await.unwrap();
    slow(&c, ms(200), Ok(1)).await.unwrap();
    assert_eq!(c.state(), Closed, "2 slow of 10");
    slow(&c, ms(200), Ok(1)).await.unwrap();
    assert_eq!(c.state(), Open, "3 slow of 10");
    assert_eq!(c.stats().window.slow, 3);
}

/// Closing empties the ring (lifetime counts stay); a reset too.
#[tokio::test(start_paused = true)]
async fn closing_empties_the_count_window() {
    let c = Circuit::new(counted(10, |b| {
        b.failure_threshold(2).minimum_request_count(2)
    }));
    fail_n(&c, 2).await;
    assert_eq!(c.state(), Open);
    c.reset();
    let s = c.stats();
    assert_eq!((s.window.requests, s.window.failures), (0, 0));
    assert_eq!((s.total_requests, s.failure_count), (2, 2));
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Closed, "one failure in an empty ring");
}

/// The kind and size are fixed on a live circuit; other fields change, and a new
/// `monitoring_window` keeps the ring.
#[tokio::test(start_paused = true)]
async fn reconfigure_keeps_the_count_window_and_refuses_to_change_it() {
    let config = counted(10, |b| b.failure_threshold(5).minimum_request_count(3));
    let c = Circuit::new(config.clone());
    fail_n(&c, 2).await;
    let err = c
        .reconfigure(
            config
                .to_builder()
                .sliding_window(SlidingWindow::Count(20))
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert_eq!(err.field(), "sliding_window");
    let err = c
        .reconfigure(
            config
                .to_builder()
                .sliding_window(SlidingWindow::Time)
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert_eq!(err.field(), "sliding_window");
    c.reconfigure(
        config
            .to_builder()
            .monitoring_window(secs(30))
            .failure_threshold(3)
            .build()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(c.stats().window.failures, 2);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

#[test]
fn count_window_config_is_validated_and_in_debug() {
    let err = |b: CircuitBreakerConfigBuilder| b.build().unwrap_err();
    let b = || CircuitBreakerConfig::builder();
    assert_eq!(
        err(b().sliding_window(SlidingWindow::Count(0))).field(),
        "sliding_window"
    );
    assert_eq!(
        err(b().sliding_window(SlidingWindow::Count(1_000_001))).field(),
        "sliding_window"
    );
    assert_eq!(
        err(b().sliding_window(SlidingWindow::Count(4))).field(),
        "minimum_request_count",
        "default minimum 5 > 4 calls"
    );
    assert_eq!(
        err(b()
            .minimum_request_count(1)
            .sliding_window(SlidingWindow::Count(4)))
        .field(),
        "failure_threshold",
        "default threshold 5 > 4 calls"
    );
    let config = b()
        .sliding_window(SlidingWindow::Count(1_000_000))
        .build()
        .unwrap();
    assert!(
        format!("{config:?}").contains("sliding_window: Count(1000000)"),
        "{config:?}"
    );
    assert_eq!(
        CircuitBreakerConfig::default().sliding_window(),
        SlidingWindow::Time
    );
}

/// Two threads recording at once lose no count. A lost or doubled delta would stay in
/// the running sums for good, so after the race the ring is refilled from one thread and
/// must read exactly what was put in; the lifetime counts every call.
#[test]
fn two_threads_recording_at_once_lose_no_count() {
    let c = Circuit::new(counted(1_000, |b| {
        b.failure_threshold(1_000).minimum_request_count(1_000)
    }));
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    };
    std::thread::scope(|s| {
        for _ in 0..2 {
            let c = c.clone();
            s.spawn(move || {
                rt().block_on(async {
                    // A success after each failure: the run of failures stays short.
                    for _ in 0..10_000 {
                        fail_n(&c, 1).await;
                        succeed_n(&c, 1).await;
                    }
                })
            });
        }
    });
    assert_eq!(c.state(), Closed);
    let s = c.stats();
    assert_eq!(s.window.requests, 1_000);
    assert_eq!((s.total_requests, s.failure_count), (40_000, 20_000));
    rt().block_on(async {
        succeed_n(&c, 1_000).await;
        let s = c.stats();
        assert_eq!((s.window.requests, s.window.failures), (1_000, 0));
        fail_n(&c, 500).await;
        let s = c.stats();
        assert_eq!((s.window.requests, s.window.failures), (1_000, 500));
        assert_eq!((s.total_requests, s.failure_count), (41_500, 20_500));
    });
}
