//! The candidates an advice replays: the seed presets, the config in force, and a grid
//! over the config space.
//!
//! The grid (480 configs) crosses:
//!
//! | field | values |
//! |---|---|
//! | window | time 60 s, 30 s, 10 s, 5 s; count 20 calls |
//! | `failure_threshold` | 2, 3, 5 |
//! | `minimum_request_count` | 3, 10 |
//! | `recovery_timeout` | 5 s, 10 s, 20 s, 30 s |
//! | `expected_response_time` | 500 ms, 2 s |
//! | `failure_rate_threshold` | none, 50 % |
//!
//! Every other field keeps the default (one half-open probe, ten buckets, slow calls
//! count as failures). The grid, the presets and the current config run in one replay
//! pass.
//!
//! A second pass then looks around each key's best three (of distinct behaviour): one
//! step at a time along each axis ([`neighbours`]), finer than the grid and past its
//! edges, with two and three half-open probes too.

use std::time::Duration;
use tower_circuit_breaker::{CircuitBreakerConfig, SlidingWindow};

/// Where a candidate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// A point of the grid.
    Grid,
    /// One of the seed's presets.
    Preset,
    /// The config document in force, resolved for one key.
    Current,
    /// A neighbour of a key's best, from the second pass.
    Refined,
}

/// A config to replay, with the name the table and report show.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Short, unique name: `preset:dynamodb`, `current`, or the grid point
    /// (`t30s f3 m5 r10s e500ms r50%`).
    pub name: String,
    /// Where it comes from.
    pub origin: Origin,
    /// The key it is meant for (`current` differs per key); `None`: every key.
    pub key: Option<(String, String)>,
    /// The config.
    pub config: CircuitBreakerConfig,
}

/// The seed presets, by the name the table shows.
pub fn presets() -> Vec<Candidate> {
    [
        ("preset:cognito", CircuitBreakerConfig::cognito()),
        ("preset:dynamodb", CircuitBreakerConfig::dynamodb()),
        (
            "preset:api_gateway",
            CircuitBreakerConfig::api_gateway_management(),
        ),
    ]
    .into_iter()
    .map(|(name, config)| Candidate {
        name: name.to_owned(),
        origin: Origin::Preset,
        key: None,
        config,
    })
    .collect()
}

/// The preset the seed uses for `service` (the chat backend's names), if any.
pub fn preset_for(service: &str) -> Option<CircuitBreakerConfig> {
    match service {
        "cognito" => Some(CircuitBreakerConfig::cognito()),
        "dynamodb" => Some(CircuitBreakerConfig::dynamodb()),
        "apigateway-management" => Some(CircuitBreakerConfig::api_gateway_management()),
        _ => None,
    }
}

/// A duration as the names show it: `500ms`, `10s`.
pub fn short(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A config's grid-style name, from its fields.
pub fn describe(c: &CircuitBreakerConfig) -> String {
    let window = match c.sliding_window() {
        SlidingWindow::Count(n) => format!("c{n}"),
        _ => format!("t{}", short(c.monitoring_window())),
    };
    let mut name = format!(
        "{window} f{} m{} r{} e{}",
        c.failure_threshold(),
        c.minimum_request_count(),
        short(c.recovery_timeout()),
        short(c.expected_response_time())
    );
    if let Some(rate) = c.failure_rate_threshold() {
        name.push_str(&format!(" fr{}%", (rate * 100.0).round()));
    }
    if c.half_open_max_calls() != 1 {
        name.push_str(&format!(" p{}", c.half_open_max_calls()));
    }
    name
}

/// `d × factor`, to whole seconds (at least 1 s) from 1 s up, to whole 100 ms below.
fn scaled(d: Duration, factor: f64) -> Duration {
    let ms = d.as_secs_f64() * factor * 1_000.0;
    if ms >= 1_000.0 {
        Duration::from_secs((ms / 1_000.0).round() as u64)
    } else {
        Duration::from_millis(((ms / 100.0).round() as u64).max(1) * 100)
    }
}

/// The configs one step from `c` along one axis each: failure threshold, recovery,
/// minimum requests, window length (and kind), expected response time, failure-rate
/// criterion, half-open probes. Only valid ones; `c` itself is not among them.
pub fn neighbours(c: &CircuitBreakerConfig) -> Vec<CircuitBreakerConfig> {
    use tower_circuit_breaker::CircuitBreakerConfigBuilder as B;
    let mut steps: Vec<B> = Vec::new();
    let b = || c.to_builder();
    let f = c.failure_threshold();
    for v in [f.saturating_sub(1), f + 1, f * 2] {
        steps.push(b().failure_threshold(v.max(1)));
    }
    for k in [0.5, 0.75, 1.5, 2.0] {
        steps.push(b().recovery_timeout(scaled(c.recovery_timeout(), k)));
    }
    let m = c.minimum_request_count();
    for v in [m / 2, m * 2, 20] {
        steps.push(b().minimum_request_count(v));
    }
    match c.sliding_window() {
        SlidingWindow::Count(n) => {
            for v in [n / 2, n * 2] {
                steps.push(b().sliding_window(SlidingWindow::Count(v)));
            }
            steps.push(
                b().sliding_window(SlidingWindow::Time)
                    .monitoring_window(Duration::from_secs(30)),
            );
        }
        _ => {
            for k in [0.5, 2.0] {
                let w = scaled(c.monitoring_window(), k).max(Duration::from_secs(1));
                steps.push(b().monitoring_window(w));
            }
            steps.push(b().sliding_window(SlidingWindow::Count(20)));
        }
    }
    for k in [0.5, 2.0] {
        steps.push(b().expected_response_time(scaled(c.expected_response_time(), k)));
    }
    match c.failure_rate_threshold() {
        None => {
            for r in [0.3, 0.7] {
                steps.push(b().failure_rate_threshold(r));
            }
        }
        Some(r) => {
            // No setter clears a rate: rebuild from the fields without it.
            steps.push(without_rate(c));
            for v in [r - 0.2, r + 0.2] {
                if v > 0.0 && v <= 1.0 {
                    steps.push(b().failure_rate_threshold((v * 10.0).round() / 10.0));
                }
            }
        }
    }
    for p in [1, 2, 3] {
        steps.push(b().half_open_max_calls(p));
    }
    let mut out: Vec<CircuitBreakerConfig> = Vec::new();
    for step in steps {
        if let Ok(n) = step.build() {
            if n != *c && !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// `c` without its failure-rate criterion.
fn without_rate(c: &CircuitBreakerConfig) -> tower_circuit_breaker::CircuitBreakerConfigBuilder {
    let mut b = CircuitBreakerConfig::builder()
        .failure_threshold(c.failure_threshold())
        .recovery_timeout(c.recovery_timeout())
        .expected_response_time(c.expected_response_time())
        .monitoring_window(c.monitoring_window())
        .minimum_request_count(c.minimum_request_count())
        .half_open_max_calls(c.half_open_max_calls())
        .window_buckets(c.window_buckets())
        .sliding_window(c.sliding_window())
        .slow_call_is_failure(c.slow_call_is_failure())
        .dropped_call_is_failure(c.dropped_call_is_failure())
        .metrics_only(c.metrics_only());
    if c.half_open_max_wait_is_set() {
        b = b.half_open_max_wait(c.half_open_max_wait());
    }
    if let Some(r) = c.slow_call_rate_threshold() {
        b = b.slow_call_rate_threshold(r);
    }
    if let Some(k) = c.backoff() {
        b = b.backoff(k.multiplier, k.max, k.jitter);
    }
    b
}

/// The second pass's candidates: the neighbours of `best` not already in `known`, in a
/// fixed order.
pub fn refine(best: &[&CircuitBreakerConfig], known: &[Candidate]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for c in best {
        for n in neighbours(c) {
            let seen = known.iter().chain(&out).any(|k| k.config == n);
            if !seen {
                out.push(Candidate {
                    name: describe(&n),
                    origin: Origin::Refined,
                    key: None,
                    config: n,
                });
            }
        }
    }
    out
}

/// The grid, in a fixed order (the order breaks ties in the ranking: longer windows
/// first, so of two windows that behaved the same the one closer to the seed's wins).
pub fn grid() -> Vec<Candidate> {
    let s = Duration::from_secs;
    let windows = [
        (SlidingWindow::Time, s(60)),
        (SlidingWindow::Time, s(30)),
        (SlidingWindow::Time, s(10)),
        (SlidingWindow::Time, s(5)),
        (SlidingWindow::Count(20), s(60)),
    ];
    let mut out = Vec::new();
    for (window, span) in windows {
        for threshold in [2, 3, 5] {
            for minimum in [3, 10] {
                for recovery in [5, 10, 20, 30] {
                    for expected in [Duration::from_millis(500), s(2)] {
                        for rate in [None, Some(0.5)] {
                            let mut b = CircuitBreakerConfig::builder()
                                .sliding_window(window)
                                .monitoring_window(span)
                                .failure_threshold(threshold)
                                .minimum_request_count(minimum)
                                .recovery_timeout(s(recovery))
                                .expected_response_time(expected);
                            if let Some(rate) = rate {
                                b = b.failure_rate_threshold(rate);
                            }
                            let config = b.build().expect("every grid point is valid");
                            out.push(Candidate {
                                name: describe(&config),
                                origin: Origin::Grid,
                                key: None,
                                config,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_names_are_unique() {
        let g = grid();
        assert_eq!(g.len(), 480);
        let mut names: Vec<_> = g.iter().map(|c| c.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 480);
        assert_eq!(
            describe(&CircuitBreakerConfig::dynamodb()),
            "t60s f3 m5 r20s e500ms"
        );
    }

    #[test]
    fn neighbours_step_one_axis_at_a_time() {
        let base = CircuitBreakerConfig::dynamodb();
        let n = neighbours(&base);
        let names: Vec<String> = n.iter().map(describe).collect();
        for want in [
            "t60s f2 m5 r20s e500ms",
            "t60s f3 m5 r10s e500ms",
            "t30s f3 m5 r20s e500ms",
            "c20 f3 m5 r20s e500ms",
            "t60s f3 m5 r20s e300ms",
            "t60s f3 m5 r20s e500ms fr30%",
            "t60s f3 m5 r20s e500ms p2",
        ] {
            assert!(names.iter().any(|x| x == want), "{want} not in {names:?}");
        }
        assert!(!n.contains(&base));
        let with_rate = base
            .to_builder()
            .failure_rate_threshold(0.5)
            .build()
            .unwrap();
        assert!(
            neighbours(&with_rate)
                .iter()
                .any(|c| c.failure_rate_threshold().is_none())
        );
        // Already known configs are not replayed twice.
        let known = grid();
        let refined = refine(&[&known[0].config], &known);
        assert!(
            refined
                .iter()
                .all(|r| known.iter().all(|k| k.config != r.config))
        );
    }
}
