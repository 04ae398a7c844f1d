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
//! count as failures). All candidates run in one replay pass.

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
    name
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
}
