//! Traces built by hand and a small deterministic generator.

use std::time::Duration;
use tower_circuit_breaker::CircuitBreakerConfig;
use tower_circuit_breaker::replay::{Replay, ReplayOptions, ReplayReport};
use tower_circuit_breaker::trace::{TraceOutcome, TraceRecord};

/// A start time far from 0, like a real trace's.
pub const T0: u64 = 1_764_800_000_000;

pub fn ok(t: u64, d_ms: u64) -> TraceRecord {
    TraceRecord::new(T0 + t, d_ms * 1_000, TraceOutcome::Ok, "svc", "op")
}

pub fn fail(t: u64, d_ms: u64) -> TraceRecord {
    TraceRecord::new(T0 + t, d_ms * 1_000, TraceOutcome::Fail, "svc", "op")
}

/// 3 failures in a row (min 3 calls) open it for 5 s; one probe.
pub fn small() -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .failure_threshold(3)
        .minimum_request_count(3)
        .recovery_timeout(Duration::from_secs(5))
        .monitoring_window(Duration::from_secs(60))
        .expected_response_time(Duration::from_millis(500))
        .build()
        .unwrap()
}

pub fn replay(
    records: &[TraceRecord],
    configs: Vec<(String, CircuitBreakerConfig)>,
    threads: usize,
) -> ReplayReport {
    let mut options = ReplayOptions::default();
    options.threads = threads;
    let mut replay = Replay::with_options(configs, options);
    for r in records {
        replay.feed(r);
    }
    replay.finish()
}

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `n` calls on two keys, a call every ~20 ms, an outage of 20 s from 60 s, errors 2 %,
/// written in completion order (so up to a call's duration out of start order).
pub fn generated(n: u64, seed: u64) -> Vec<TraceRecord> {
    let mut rng = Rng(seed);
    let mut records: Vec<TraceRecord> = (0..n)
        .map(|i| {
            let t = i * 20 + rng.next() % 20;
            let outage = (60_000..80_000).contains(&t);
            let fail = if outage {
                rng.next() % 10 < 9
            } else {
                rng.next() % 50 == 0
            };
            let d_us = 5_000 + rng.next() % 800_000;
            let op = if rng.next() % 3 == 0 { "jwks" } else { "query" };
            let r = TraceRecord::new(
                T0 + t,
                d_us,
                if fail {
                    TraceOutcome::Fail
                } else {
                    TraceOutcome::Ok
                },
                "dep",
                op,
            );
            if outage { r.in_incident("outage") } else { r }
        })
        .collect();
    records.sort_by_key(|r| r.end_us());
    records
}

pub fn presets() -> Vec<(String, CircuitBreakerConfig)> {
    vec![
        ("cognito".into(), CircuitBreakerConfig::cognito()),
        ("dynamodb".into(), CircuitBreakerConfig::dynamodb()),
        ("api".into(), CircuitBreakerConfig::api_gateway_management()),
        ("small".into(), small()),
        (
            "rate".into(),
            CircuitBreakerConfig::builder()
                .failure_rate_threshold(0.5)
                .slow_call_rate_threshold(0.8)
                .expected_response_time(Duration::from_millis(600))
                .build()
                .unwrap(),
        ),
    ]
}
