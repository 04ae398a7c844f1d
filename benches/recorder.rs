//! The recorder's cost per call: the bare service, the service under `RecorderLayer`,
//! and under the breaker with and without the recorder, in one run; then the trace's
//! bytes per call.
//!
//! ```text
//! cargo bench -p tower-circuit-breaker-benches --features replay --bench recorder
//! ```
//!
//! Driven as `hot_path.rs` drives its contestants (`poll_ready`, `call`, one poll of a
//! ready future, no runtime in the loop). The writer thread writes to `io::sink()` with a
//! queue of 65 536 calls; a call the writer could not keep up with is dropped and counted
//! (never blocking), so the figure is the cost of queueing or dropping, whichever the
//! writer's pace gives: the dropped share is printed after the run.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::io;
use tower_circuit_breaker::trace::{
    Recorder, RecorderLayer, TraceOutcome, TraceRecord, TraceWriter,
};
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use tower_circuit_breaker_benches::{Echo, run};
use tower_layer::Layer;

fn recorder(c: &mut Criterion) {
    let mut group = c.benchmark_group("recorder");
    group.throughput(Throughput::Elements(1));

    let mut bare = Echo;
    group.bench_function("bare", |b| b.iter_custom(|iters| run(&mut bare, iters)));

    let (rec, writer) = Recorder::spawn(io::sink(), 1 << 16);
    let mut recorded = RecorderLayer::new(rec.clone(), "dynamodb", "storeUserMessage").layer(Echo);
    group.bench_function("recorded", |b| {
        b.iter_custom(|iters| run(&mut recorded, iters))
    });

    let mut breaker = CircuitBreakerLayer::named("b", CircuitBreakerConfig::dynamodb()).layer(Echo);
    group.bench_function("breaker", |b| {
        b.iter_custom(|iters| run(&mut breaker, iters))
    });

    let mut both = CircuitBreakerLayer::named("both", CircuitBreakerConfig::dynamodb())
        .layer(RecorderLayer::new(rec.clone(), "dynamodb", "storeUserMessage").layer(Echo));
    group.bench_function("breaker+recorded", |b| {
        b.iter_custom(|iters| run(&mut both, iters))
    });
    group.finish();

    drop((recorded, both, rec));
    let (_, stats) = writer.finish().expect("the sink never fails");
    let total = stats.queued + stats.dropped;
    println!(
        "recorder: {} calls queued and written, {} dropped ({:.1} %) while the benches ran",
        stats.written,
        stats.dropped,
        100.0 * stats.dropped as f64 / total.max(1) as f64
    );

    // Bytes per call in the trace: a typical record (a millisecond start in 2026, a
    // 48 ms duration) of each seed key.
    let mut out = TraceWriter::new(Vec::new());
    let keys = [
        ("cognito", "jwks"),
        ("dynamodb", "storeUserMessage"),
        ("apigw", "postToConnection"),
    ];
    for (svc, op) in keys {
        let record = TraceRecord::new(1_764_800_000_123, 48_210, TraceOutcome::Ok, svc, op);
        out.write(&record).expect("a Vec never fails");
    }
    let bytes = out.into_inner().len();
    println!(
        "recorder: {:.1} trace bytes per call (mean of the seed's three keys); a queue slot is 40 bytes",
        bytes as f64 / keys.len() as f64,
    );
}

criterion_group!(benches, recorder);
criterion_main!(benches);
