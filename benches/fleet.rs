//! The Closed hot path with fleet sharing on and off, in one run.
//!
//! ```text
//! cargo bench -p tower-circuit-breaker-benches --features fleet --bench fleet
//! ```
//!
//! "sharing on": the circuit has a `FleetSync` whose background task runs on its own
//! runtime thread against a `MemoryStore`, exchanging state every 100 ms (ten times more
//! often than the shortest cache period a deployment would use), reading the circuit's
//! stats each round while the benchmark thread calls. "sharing off": the same circuit
//! without a sync. Driven as `hot_path.rs` drives its contestants: `poll_ready`, `call`,
//! one poll of a ready future, no runtime in the loop.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::Duration;
use tower_circuit_breaker::fleet::{FleetConfig, FleetSync, MemoryStore};
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use tower_circuit_breaker_benches::{Echo, run};
use tower_layer::Layer;
use tower_service::Service;

fn closed_hot_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();

    let off = CircuitBreakerLayer::named("off", CircuitBreakerConfig::dynamodb());
    let mut off_svc = off.layer(Echo);

    let on = CircuitBreakerLayer::named("on", CircuitBreakerConfig::dynamodb());
    let store = Arc::new(MemoryStore::new());
    let config = FleetConfig::builder("bench/fleet")
        .cache_period(Duration::from_millis(100))
        .build()
        .unwrap();
    let sync = {
        let _enter = runtime.enter();
        FleetSync::start(on.circuit(), store.clone(), config).unwrap()
    };
    let mut on_svc = on.layer(Echo);

    let mut g = c.benchmark_group("fleet_closed_hot_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sharing_off", |b| b.iter_custom(|n| run(&mut off_svc, n)));
    g.bench_function("sharing_on", |b| b.iter_custom(|n| run(&mut on_svc, n)));
    g.finish();

    paired(&mut off_svc, &mut on_svc);

    let rounds = sync.status().rounds;
    assert!(rounds > 0, "the sync never ran during the bench");
    eprintln!(
        "fleet sync rounds during the bench: {rounds}, store operations: {}",
        store.operations()
    );
}

/// Criterion measures the contestants one after the other, so a change of load on a shared
/// machine between them shows up as a difference. This runs them in alternation, blocks
/// of 200 000 calls, 40 pairs, and prints the median time per call of each and the median
/// of the per-pair ratios.
fn paired<A: Service<u64>, B: Service<u64>>(off: &mut A, on: &mut B) {
    const CALLS: u64 = 200_000;
    let per_call = |d: Duration| d.as_nanos() as f64 / CALLS as f64;
    let (mut offs, mut ons, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..40 {
        // Alternate which goes first, so neither always runs on a warmer core.
        let (a, b) = if i % 2 == 0 {
            let a = per_call(run(off, CALLS));
            (a, per_call(run(on, CALLS)))
        } else {
            let b = per_call(run(on, CALLS));
            (per_call(run(off, CALLS)), b)
        };
        offs.push(a);
        ons.push(b);
        ratios.push(b / a);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.total_cmp(y));
        v[v.len() / 2]
    };
    eprintln!(
        "paired (40 x 200k calls, alternating): sharing_off {:.1} ns/call, sharing_on {:.1} ns/call, median ratio on/off {:.3}",
        median(&mut offs),
        median(&mut ons),
        median(&mut ratios)
    );
}

criterion_group!(benches, closed_hot_path);
criterion_main!(benches);
