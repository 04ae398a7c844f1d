//! Replay speed: 1 000 000 calls × 100 configurations, one pass, all cores.
//!
//! ```text
//! cargo bench -p tower-circuit-breaker-benches --features replay --bench replay
//! ```
//!
//! Not criterion: one run takes seconds, so it is timed once (after a warm-up run of a
//! tenth of the size) and printed with its throughput. The trace is synthetic and
//! deterministic: three keys (the seed's three dependencies), a call every 10 ms on
//! average, lognormal-ish latencies, a hard outage, a brownout and isolated errors,
//! generated on the fly so the trace's memory is not measured. Set `REPLAY_CALLS`,
//! `REPLAY_CONFIGS` and `REPLAY_THREADS` to change the size.

use std::hint::black_box;
use std::time::{Duration, Instant};
use tower_circuit_breaker::CircuitBreakerConfig;
use tower_circuit_breaker::replay::{Replay, ReplayOptions};
use tower_circuit_breaker::trace::{TraceOutcome, TraceRecord};

/// splitmix64: a deterministic stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The `i`-th call of the synthetic trace, written in completion order within 100 ms.
fn call(rng: &mut Rng, i: u64, keys: &[(&'static str, &'static str)]) -> TraceRecord {
    let start_ms = 1_764_800_000_000 + i * 10 + rng.next() % 100;
    let (svc, op) = keys[(rng.next() % keys.len() as u64) as usize];
    let phase = (i / 1_000) % 600;
    // Hard outage in phases 100..110 (10 s), brownout in 300..330, isolated errors else.
    let (fail, slow) = match phase {
        100..110 => (rng.unit() < 0.95, false),
        300..330 => (rng.unit() < 0.05, rng.unit() < 0.7),
        _ => (rng.unit() < 0.01, rng.unit() < 0.01),
    };
    let base = 20_000.0 * (1.0 + 2.0 * rng.unit() * rng.unit());
    let duration_us = if slow { 2_500_000 } else { base as u64 };
    TraceRecord::new(
        start_ms,
        duration_us,
        if fail {
            TraceOutcome::Fail
        } else {
            TraceOutcome::Ok
        },
        svc,
        op,
    )
}

fn configs(n: usize) -> Vec<(String, CircuitBreakerConfig)> {
    (0..n)
        .map(|i| {
            let config = CircuitBreakerConfig::builder()
                .failure_threshold(1 + (i % 10) as u32)
                .recovery_timeout(Duration::from_secs(5 + 5 * (i / 10 % 10) as u64))
                .expected_response_time(Duration::from_millis(500 + 250 * (i % 4) as u64))
                .build()
                .expect("valid");
            (format!("c{i}"), config)
        })
        .collect()
}

fn run(calls: u64, n_configs: usize, threads: usize) -> Duration {
    let keys = [
        ("cognito", "jwks"),
        ("dynamodb", "storeUserMessage"),
        ("apigw", "postToConnection"),
    ];
    let mut options = ReplayOptions::default();
    options.threads = threads;
    let mut rng = Rng(7);
    let started = Instant::now();
    let mut replay = Replay::with_options(configs(n_configs), options);
    for i in 0..calls {
        replay.feed(&call(&mut rng, i, &keys));
    }
    let report = replay.finish();
    let took = started.elapsed();
    let opens: u64 = report.configs.iter().map(|c| c.totals.opens).sum();
    black_box(opens);
    took
}

fn main() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let calls = env("REPLAY_CALLS", 1_000_000);
    let n_configs = env("REPLAY_CONFIGS", 100) as usize;
    let threads = env("REPLAY_THREADS", 0) as usize;
    let warm = run(calls / 10, n_configs, threads);
    println!(
        "warm-up: {} calls x {n_configs} configs in {warm:.2?}",
        calls / 10
    );
    let took = run(calls, n_configs, threads);
    let per = took.as_nanos() as f64 / (calls as f64 * n_configs as f64);
    println!(
        "replay: {calls} calls x {n_configs} configs in {took:.2?} ({per:.1} ns per call per config, threads {})",
        if threads == 0 {
            "auto".to_owned()
        } else {
            threads.to_string()
        }
    );
}
