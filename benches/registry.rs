//! The registry's costs: `execute` on an existing key among 10 000, next to a bare
//! `Circuit::call`; and, at 10³, 10⁵ and 10⁶ keys, insert ns/key, lookup ns, bytes per
//! circuit (RSS delta / keys), `all_stats()` and `apply_config` time.
//!
//! ```text
//! cargo bench --bench registry
//! ```
//!
//! The scale figures are printed before criterion's own (one timed pass each: they take
//! seconds at 10⁶ keys), as `scale keys=… insert_ns=… …` lines.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tower_circuit_breaker::registry::{RegistryConfig, RegistryLimits};
use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerRegistry, NoFallback};

/// Polls a future that completes at once.
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the operation never waits"),
    }
}

fn names(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("service-{}", i % 100), format!("operation-{i}")))
        .collect()
}

fn registry_of(capacity: usize) -> CircuitBreakerRegistry {
    CircuitBreakerRegistry::with_config(RegistryConfig {
        limits: RegistryLimits::builder()
            .capacity(capacity)
            .build()
            .expect("valid limits"),
        ..RegistryConfig::default()
    })
}

/// Resident set size in bytes (Linux; 0 elsewhere).
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// One timed pass at `n` keys, printed.
fn scale(n: usize) {
    let config = CircuitBreakerConfig::dynamodb();
    let keys = names(n);
    let rss_before = rss();
    let registry = registry_of(n);
    let start = Instant::now();
    for (s, o) in &keys {
        let r: Result<u64, BoxError> =
            now(registry.execute(s, o, || async { Ok(1) }, NoFallback, &config));
        black_box(r.is_ok());
    }
    let insert = start.elapsed();
    let bytes = (rss().saturating_sub(rss_before)) / n;
    assert_eq!(registry.len(), n);
    // Lookups of existing keys, spread over the table (cache misses dominate).
    let rounds = 1_000_000.min(n * 10);
    let start = Instant::now();
    for i in 0..rounds {
        let (s, o) = &keys[(i * 7919) % n];
        black_box(registry.get(s, o).is_some());
    }
    let lookup = start.elapsed();
    // One key, again and again: the hot path of a service with few keys.
    let (s, o) = &keys[n / 2];
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(registry.get(black_box(s), black_box(o)).is_some());
    }
    let hot = start.elapsed();
    let start = Instant::now();
    let all = registry.all_stats();
    let all_stats = start.elapsed();
    assert_eq!(all.len(), n);
    drop(all);
    let mut doc = registry.config();
    doc.default = CircuitBreakerConfig::default();
    let start = Instant::now();
    registry.apply_config(doc).expect("valid");
    let apply = start.elapsed();
    println!(
        "scale keys={n} insert_ns={:.0} lookup_scattered_ns={:.0} lookup_one_key_ns={:.0} bytes_per_circuit={bytes} all_stats_ms={:.1} apply_config_ms={:.1}",
        per(insert, n),
        per(lookup, rounds),
        per(hot, rounds),
        all_stats.as_secs_f64() * 1e3,
        apply.as_secs_f64() * 1e3,
    );
}

fn per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn registry(c: &mut Criterion) {
    for n in [1_000, 100_000, 1_000_000] {
        scale(n);
    }
    let config = CircuitBreakerConfig::dynamodb();
    let registry = CircuitBreakerRegistry::new();
    let names = names(10_000);
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
    g.bench_function("execute_two_threads_one_key_of_10000", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    scope.spawn(|| {
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
                    });
                }
            });
            start.elapsed()
        })
    });
    g.bench_function("lookup_existing_key_of_10000", |b| {
        b.iter(|| black_box(registry.get(black_box(service), black_box(operation))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = registry
}
criterion_main!(benches);
