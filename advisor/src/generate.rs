//! Synthetic traces of the seed's three dependencies (`tcb-advisor generate`).
//!
//! Each dependency gets Poisson arrivals at its own rate and lognormal latencies around
//! its own median. A scenario lays incidents over them: a hard outage, a latency
//! brownout, a throttling burst, flapping, or none at all (a healthy day with isolated
//! errors only). Calls of the affected key inside an incident carry the incident's label
//! in `inc`, so a replay knows where the incidents were. Everything is drawn from a
//! seeded [`Rng`]: a scenario and a seed give the same bytes every time.
//!
//! Lines follow the trace schema: `{"t":<ms since the epoch>,"d":<µs>,"o":"ok"|"fail"|"ignored","svc":..,"op":..}`
//! with `"inc":<label>` on incident calls, sorted by start time.

use crate::rng::Rng;
use std::io::{self, Write};

/// 2026-12-01T09:00:00Z, the start of every generated trace (ms since the Unix epoch).
pub const TRACE_START_MS: u64 = 1_796_115_600_000;

/// One of the seed's dependencies, as the generator models it.
#[derive(Clone, Copy, Debug)]
pub struct Dependency {
    /// Service half of the key, as the chat backend names it.
    pub service: &'static str,
    /// Operation half of the key.
    pub operation: &'static str,
    /// Calls per second on a healthy day.
    pub rate_per_s: f64,
    /// Median latency of a healthy call, ms.
    pub median_ms: f64,
    /// Lognormal shape of healthy latencies.
    pub sigma: f64,
    /// The client's timeout: a call that would take longer fails after this long, ms.
    pub timeout_ms: f64,
    /// Share of healthy calls whose outcome the classifier ignores (API Gateway's
    /// `GoneException`: the client left, not the dependency's fault).
    pub ignored_rate: f64,
}

/// The seed's three dependencies: Cognito JWT verification (the JWKS fetch), DynamoDB
/// PutItem of the user's message, API Gateway `PostToConnection` of the reply.
pub const DEPENDENCIES: [Dependency; 3] = [
    Dependency {
        service: "cognito",
        operation: "verifyJWT",
        rate_per_s: 1.0,
        median_ms: 80.0,
        sigma: 0.5,
        timeout_ms: 5_000.0,
        ignored_rate: 0.0,
    },
    Dependency {
        service: "dynamodb",
        operation: "storeUserMessage",
        rate_per_s: 3.0,
        median_ms: 12.0,
        sigma: 0.6,
        timeout_ms: 2_000.0,
        ignored_rate: 0.0,
    },
    Dependency {
        service: "apigateway-management",
        operation: "postToConnection",
        rate_per_s: 3.0,
        median_ms: 35.0,
        sigma: 0.5,
        timeout_ms: 3_000.0,
        ignored_rate: 0.02,
    },
];

/// Index into [`DEPENDENCIES`].
const COGNITO: usize = 0;
const DYNAMODB: usize = 1;
const API_GATEWAY: usize = 2;

/// What goes wrong during an incident.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Every call fails fast (5xx, connection refused).
    Outage,
    /// Latencies grow past the client's timeout: most calls time out, the rest are slow.
    Brownout,
    /// 70 % of calls fail fast with a throttling error.
    Throttling,
    /// Down for `down_s`, up for `up_s`, again and again.
    Flapping {
        /// Seconds of each outage.
        down_s: f64,
        /// Seconds of each recovery.
        up_s: f64,
    },
}

/// One incident on one dependency.
#[derive(Clone, Debug)]
pub struct Incident {
    /// Label written in `inc`.
    pub label: String,
    /// Index into [`DEPENDENCIES`].
    pub dependency: usize,
    /// What goes wrong.
    pub fault: Fault,
    /// Seconds from the trace start.
    pub start_s: f64,
    /// Seconds it lasts.
    pub duration_s: f64,
}

/// A named trace to generate.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Name on the command line (`--scenario`).
    pub name: &'static str,
    /// One line for `--help` and the docs.
    pub summary: &'static str,
    /// Seconds of traffic.
    pub duration_s: f64,
    /// Share of calls that fail on their own, outside any incident.
    pub isolated_error_rate: f64,
    /// The incidents, in any order.
    pub incidents: Vec<Incident>,
}

/// The scenario names, in the order `generate --all` writes them.
pub const SCENARIOS: [&str; 6] = [
    "outage",
    "brownout",
    "throttling",
    "flapping",
    "healthy",
    "mixed",
];

fn incident(dependency: usize, fault: Fault, start_s: f64, duration_s: f64) -> Incident {
    let kind = match fault {
        Fault::Outage => "outage",
        Fault::Brownout => "brownout",
        Fault::Throttling => "throttling",
        Fault::Flapping { .. } => "flapping",
    };
    Incident {
        // The key is the call's own: the label only says what and when.
        label: format!("{kind}@{}s", start_s as u64),
        dependency,
        fault,
        start_s,
        duration_s,
    }
}

const FLAP: Fault = Fault::Flapping {
    down_s: 8.0,
    up_s: 7.0,
};

/// The scenario called `name`, if there is one.
pub fn scenario(name: &str) -> Option<Scenario> {
    let (summary, duration_s, isolated_error_rate, incidents) = match name {
        "outage" => (
            "DynamoDB down for 90 s; a 5 s API Gateway blip (too short to need a breaker)",
            600.0,
            0.003,
            vec![
                incident(DYNAMODB, Fault::Outage, 180.0, 90.0),
                incident(API_GATEWAY, Fault::Outage, 450.0, 5.0),
            ],
        ),
        "brownout" => (
            "Cognito's JWKS endpoint slows past the 5 s client timeout for 2 min",
            600.0,
            0.003,
            vec![incident(COGNITO, Fault::Brownout, 200.0, 120.0)],
        ),
        "throttling" => (
            "DynamoDB throttles 70 % of writes for 45 s, then for 20 s",
            600.0,
            0.003,
            vec![
                incident(DYNAMODB, Fault::Throttling, 240.0, 45.0),
                incident(DYNAMODB, Fault::Throttling, 450.0, 20.0),
            ],
        ),
        "flapping" => (
            "API Gateway down 8 s, up 7 s, for 3 min",
            600.0,
            0.003,
            vec![incident(API_GATEWAY, FLAP, 150.0, 180.0)],
        ),
        "healthy" => (
            "20 min of normal traffic, 0.5 % isolated errors, no incident",
            1_200.0,
            0.005,
            vec![],
        ),
        "mixed" => (
            "20 min with one of each: outage, brownout, throttling, flapping, a 5 s blip",
            1_200.0,
            0.003,
            vec![
                incident(DYNAMODB, Fault::Outage, 150.0, 60.0),
                incident(COGNITO, Fault::Brownout, 420.0, 90.0),
                incident(DYNAMODB, Fault::Throttling, 700.0, 30.0),
                incident(API_GATEWAY, FLAP, 850.0, 150.0),
                incident(API_GATEWAY, Fault::Outage, 1_080.0, 5.0),
            ],
        ),
        _ => return None,
    };
    Some(Scenario {
        name: SCENARIOS.into_iter().find(|s| *s == name)?,
        summary,
        duration_s,
        isolated_error_rate,
        incidents,
    })
}

/// Knobs of one generation run.
#[derive(Clone, Copy, Debug)]
pub struct GenerateOptions {
    /// Seed of every draw.
    pub seed: u64,
    /// Multiplies every dependency's call rate (10 gives ten times the calls).
    pub rate_scale: f64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            seed: 42,
            rate_scale: 1.0,
        }
    }
}

/// One generated call.
#[derive(Clone, Debug, PartialEq)]
struct Call {
    t_ms: u64,
    d_us: u64,
    outcome: &'static str,
    dependency: usize,
    incident: Option<usize>,
}

/// What a generation run wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Lines written.
    pub calls: u64,
    /// Calls with outcome `fail`.
    pub failures: u64,
    /// Calls inside an incident.
    pub incident_calls: u64,
}

/// Writes the trace of `scenario` to `out`, one JSON line per call, sorted by start time.
///
/// # Errors
///
/// Whatever writing to `out` returns.
pub fn generate(
    scenario: &Scenario,
    options: GenerateOptions,
    out: &mut impl Write,
) -> io::Result<GenerateSummary> {
    let mut calls = Vec::new();
    for (i, dep) in DEPENDENCIES.iter().enumerate() {
        // One stream per dependency: changing one key's model leaves the others' draws alone.
        let mut rng = Rng::new(options.seed ^ (0xA5A5_0000 + i as u64));
        let mean_gap = 1.0 / (dep.rate_per_s * options.rate_scale);
        let mut s = rng.exponential(mean_gap);
        while s < scenario.duration_s {
            calls.push(call(scenario, i, dep, s, &mut rng));
            s += rng.exponential(mean_gap);
        }
    }
    // Start time, then the key: the order is total and fixed.
    calls.sort_by_key(|c| (c.t_ms, c.dependency));
    let mut summary = GenerateSummary::default();
    for c in &calls {
        let dep = &DEPENDENCIES[c.dependency];
        write!(
            out,
            r#"{{"t":{},"d":{},"o":"{}","svc":"{}","op":"{}""#,
            c.t_ms, c.d_us, c.outcome, dep.service, dep.operation
        )?;
        if let Some(k) = c.incident {
            write!(out, r#","inc":"{}""#, scenario.incidents[k].label)?;
            summary.incident_calls += 1;
        }
        out.write_all(b"}\n")?;
        summary.calls += 1;
        summary.failures += u64::from(c.outcome == "fail");
    }
    out.flush()?;
    Ok(summary)
}

/// The call of dependency `i` starting `s` seconds into the trace.
fn call(scenario: &Scenario, i: usize, dep: &Dependency, s: f64, rng: &mut Rng) -> Call {
    let active = scenario.incidents.iter().position(|inc| {
        inc.dependency == i && s >= inc.start_s && s < inc.start_s + inc.duration_s
    });
    let healthy_ms = rng.lognormal(dep.median_ms, dep.sigma);
    let fast_fail_ms = rng.lognormal(15.0, 0.4);
    let roll = rng.uniform();
    let (ms, outcome) = match active.map(|k| &scenario.incidents[k]) {
        None => healthy(dep, healthy_ms, roll, scenario.isolated_error_rate),
        Some(inc) => match inc.fault {
            Fault::Outage => (fast_fail_ms, "fail"),
            Fault::Brownout => {
                let ms = rng.lognormal(dep.timeout_ms * 1.4, 0.35);
                if ms >= dep.timeout_ms {
                    (dep.timeout_ms, "fail")
                } else {
                    (ms, "ok")
                }
            }
            Fault::Throttling if roll < 0.7 => (fast_fail_ms, "fail"),
            Fault::Throttling => healthy(dep, healthy_ms, rng.uniform(), 0.0),
            Fault::Flapping { down_s, up_s } => {
                if (s - inc.start_s) % (down_s + up_s) < down_s {
                    (fast_fail_ms, "fail")
                } else {
                    healthy(dep, healthy_ms, roll, scenario.isolated_error_rate)
                }
            }
        },
    };
    Call {
        t_ms: TRACE_START_MS + (s * 1_000.0) as u64,
        d_us: (ms * 1_000.0).round().max(1.0) as u64,
        outcome,
        dependency: i,
        incident: active,
    }
}

/// A call outside any fault: an isolated error with probability `error_rate`, ignored
/// with the dependency's `ignored_rate`, else a success; capped at the client timeout.
fn healthy(dep: &Dependency, ms: f64, roll: f64, error_rate: f64) -> (f64, &'static str) {
    if ms >= dep.timeout_ms {
        (dep.timeout_ms, "fail")
    } else if roll < error_rate {
        (ms, "fail")
    } else if roll < error_rate + dep.ignored_rate {
        (ms, "ignored")
    } else {
        (ms, "ok")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_exists_and_is_deterministic() {
        for name in SCENARIOS {
            let s = scenario(name).unwrap();
            let mut a = Vec::new();
            let mut b = Vec::new();
            generate(&s, GenerateOptions::default(), &mut a).unwrap();
            generate(&s, GenerateOptions::default(), &mut b).unwrap();
            assert_eq!(a, b, "{name}");
            assert!(a.len() < 1_000_000, "{name}: {} bytes", a.len());
        }
        assert!(scenario("nope").is_none());
    }

    #[test]
    fn incident_calls_are_labelled() {
        let s = scenario("outage").unwrap();
        let mut out = Vec::new();
        let summary = generate(&s, GenerateOptions::default(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let labelled = text
            .lines()
            .filter(|l| l.contains(r#""inc":"outage@180s""#));
        // 90 s at 3 calls/s, all failing.
        let n = labelled.clone().count();
        assert!((200..340).contains(&n), "{n}");
        assert!(labelled.clone().all(|l| l.contains(r#""o":"fail""#)));
        assert_eq!(summary.calls as usize, text.lines().count());
    }
}
