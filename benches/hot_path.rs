//! The breaker's cost per call, next to the bare service, in one run.
//!
//! ```text
//! cargo bench --bench hot_path
//! ```
//!
//! Every contestant is driven the same way: `poll_ready`, `call`, and one poll of the
//! response future with a no-op waker, on a service whose future is `std::future::Ready`.
//! No runtime sits in the loop, so the figures are the middleware's own cost.
//! Two-thread groups run the same loop on two threads at once, each on its own clone of
//! one service (so one shared circuit), and report time per call per thread.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow};
use tower_circuit_breaker_benches::{Echo, drive, run};
use tower_layer::Layer;
use tower_service::Service;

/// Both threads run `iters` calls at once on clones of `svc`; the slower one's time.
fn run2<S>(svc: &S, iters: u64) -> Duration
where
    S: Service<u64> + Clone + Send,
{
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let mut svc = svc.clone();
                let barrier = &barrier;
                s.spawn(move || {
                    run(&mut svc, 1_000); // warm this thread's stripe
                    barrier.wait();
                    run(&mut svc, iters)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn layered(config: CircuitBreakerConfig, open: bool) -> impl Service<u64> + Clone + Send {
    let layer = CircuitBreakerLayer::new(config);
    if open {
        // Tripped for an hour: every call is rejected on the Open path (not the
        // forced-open one).
        let c = layer.circuit().clone();
        c.reconfigure(
            c.config()
                .to_builder()
                .recovery_timeout(Duration::from_secs(3600))
                .build()
                .unwrap(),
        )
        .unwrap();
        let mut svc = layer.layer(Fail);
        let mut cx = Context::from_waker(Waker::noop());
        for i in 0..10 {
            black_box(drive(&mut svc, &mut cx, i));
        }
        assert_eq!(c.state(), tower_circuit_breaker::CircuitState::Open);
    }
    layer.layer(Echo)
}

#[derive(Clone)]
struct Fail;

impl Service<u64> for Fail {
    type Response = u64;
    type Error = std::io::Error;
    type Future = Ready<Result<u64, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u64) -> Self::Future {
        ready(Err(std::io::Error::other("down")))
    }
}

fn single_threaded(c: &mut Criterion) {
    let mut g = c.benchmark_group("single_threaded");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare_service", |b| b.iter_custom(|n| run(&mut Echo, n)));
    let mut closed = layered(CircuitBreakerConfig::dynamodb(), false);
    g.bench_function("closed_dynamodb_preset", |b| {
        b.iter_custom(|n| run(&mut closed, n))
    });
    let rates = CircuitBreakerConfig::dynamodb()
        .to_builder()
        .failure_rate_threshold(0.5)
        .slow_call_rate_threshold(0.8)
        .build()
        .unwrap();
    let mut closed_rates = layered(rates, false);
    g.bench_function("closed_with_rate_criteria", |b| {
        b.iter_custom(|n| run(&mut closed_rates, n))
    });
    // Issue 13, item 4: the count window, small and at its largest (the ring wraps
    // every 1 000 000 calls; the cost per call must not depend on it).
    for n in [100, 1_000_000] {
        let mut counted = layered(count_window(n), false);
        g.bench_function(format!("closed_count_window_{n}"), |b| {
            b.iter_custom(|iters| run(&mut counted, iters))
        });
    }
    let mut open = layered(CircuitBreakerConfig::dynamodb(), true);
    g.bench_function("open_rejection", |b| b.iter_custom(|n| run(&mut open, n)));
    g.finish();
}

/// The DynamoDB preset over the last `n` calls, with a 50 % failure-rate criterion.
fn count_window(n: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig::dynamodb()
        .to_builder()
        .sliding_window(SlidingWindow::Count(n))
        .failure_rate_threshold(0.5)
        .build()
        .unwrap()
}

fn multi_threaded(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads_one_circuit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare_service", |b| b.iter_custom(|n| run2(&Echo, n)));
    let closed = layered(CircuitBreakerConfig::dynamodb(), false);
    g.bench_function("closed_dynamodb_preset", |b| {
        b.iter_custom(|n| run2(&closed, n))
    });
    let counted = layered(count_window(100), false);
    g.bench_function("closed_count_window_100", |b| {
        b.iter_custom(|n| run2(&counted, n))
    });
    let open = layered(CircuitBreakerConfig::dynamodb(), true);
    g.bench_function("open_rejection", |b| b.iter_custom(|n| run2(&open, n)));
    g.finish();
}

criterion_group!(benches, single_threaded, multi_threaded);
criterion_main!(benches);
