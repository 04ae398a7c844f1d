//! The registry's lookup cost: `execute` on an existing key among 10 000, next to a bare
//! `Circuit::call`, in one run.
//!
//! ```text
//! cargo bench --bench registry
//! ```

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerRegistry, NoFallback};

/// Polls a future that completes at once.
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the operation never waits"),
    }
}

fn registry(c: &mut Criterion) {
    let config = CircuitBreakerConfig::dynamodb();
    let registry = CircuitBreakerRegistry::new();
    let names: Vec<(String, String)> = (0..10_000)
        .map(|i| (format!("service-{}", i % 100), format!("operation-{i}")))
        .collect();
    for (s, o) in &names {
        registry.circuit(s, o, &config);
    }
    let (service, operation) = (&names[4_242].0, &names[4_242].1);
    let circuit = registry.get(service, operation).unwrap();

    let mut g = c.benchmark_group("registry");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare_circuit_call", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for i in 0..n {
                black_box(
                    now(circuit.call(async move { Ok::<_, std::io::Error>(black_box(i)) })).is_ok(),
                );
            }
            start.elapsed()
        })
    });
    g.bench_function("execute_existing_key_of_10000", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for i in 0..n {
                let r: Result<u64, BoxError> = now(registry.execute(
                    service,
                    operation,
                    || async move { Ok(black_box(i)) },
                    NoFallback,
                    &config,
                ));
                black_box(r.is_ok());
            }
            start.elapsed()
        })
    });
    g.bench_function("lookup_existing_key_of_10000", |b| {
        b.iter(|| black_box(registry.get(black_box(service), black_box(operation))))
    });
    g.finish();
}

criterion_group!(benches, registry);
criterion_main!(benches);
