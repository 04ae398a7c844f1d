//! A fleet of Lambda sandboxes in front of DynamoDB, through an outage: how many failing
//! calls reach DynamoDB before the fleet stops calling, how soon it comes back, and what
//! the store costs, with local-only circuits, with one breaker that sees the whole fleet's
//! traffic (the ideal), and with fleet-wide circuits sharing state through a store.
//!
//! ```text
//! cargo run --all-features --example fleet_simulation                        # 50 sandboxes
//! cargo run --release --features fleet --example fleet_simulation -- --full  # and 500
//! ```
//!
//! Simulated time (tokio's paused clock): every run prints the same tables (requests are
//! spread over the sandboxes and circuits by a seeded generator, and every sync of the
//! process reads one wall-clock anchor). The store is the in-process `MemoryStore` with
//! 5 ms of latency per operation; a batched read (`load_many`) counts as one operation,
//! as one Redis `MGET` or one DynamoDB `BatchGetItem` request of up to 100 keys is.

use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep_until};
use tower_circuit_breaker::fleet::{
    FleetConfig, FleetSync, MemoryStore, RegistryFleet, StoreTraffic,
};
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState};

/// Requests per second per sandbox (20 requests/s for 50 sandboxes).
const RATE_PER_SANDBOX: f64 = 0.4;
const OUTAGE_START: Duration = Duration::from_secs(60);
const OUTAGE_END: Duration = Duration::from_secs(180);
const END: Duration = Duration::from_secs(260);
const SEED: u64 = 0x5eed_f1ee7;
const CACHE_PERIOD: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sharing {
    LocalOnly,
    /// One circuit for the whole fleet, in every sandbox's call path: what no real fleet
    /// has (it would need the store on the call path), the best sharing could do.
    Ideal,
    /// A background `FleetSync` per circuit, every cache period.
    PerCircuit,
    /// A manual `FleetSync` per circuit, `refresh()` at the start of each invocation.
    PerInvocation,
    /// `CircuitBreakerRegistry::share_with_fleet`: one task per sandbox, one batched read
    /// per round for all of its circuits.
    Registry,
    /// The registry-wide mode with the store down for the whole run.
    StoreDown,
}

impl Sharing {
    fn label(self) -> &'static str {
        match self {
            Sharing::LocalOnly => "local-only",
            Sharing::Ideal => "one breaker seeing the whole fleet's traffic (ideal)",
            Sharing::PerCircuit => "shared, background sync per circuit (1 s)",
            Sharing::PerInvocation => "shared, refresh per invocation (1 s cache)",
            Sharing::Registry => "shared, registry-wide, batched (1 s)",
            Sharing::StoreDown => "shared, registry-wide, store down all along",
        }
    }
}

#[derive(Clone, Copy)]
struct Scenario {
    sharing: Sharing,
    sandboxes: usize,
    /// Circuits per sandbox; DynamoDB `PutItem` (circuit 0) is the one that fails.
    circuits: usize,
    outage_end: Duration,
}

#[derive(Default)]
struct Outcome {
    failed_before_stop: u64,
    stop_after: Option<Duration>,
    failed_total: u64,
    rejected_outage: u64,
    rejected_after: u64,
    recovered_after: Option<Duration>,
    store_ops: u64,
    traffic: StoreTraffic,
    /// Failing user calls outside the outage (the store's fault if any).
    failed_outside: u64,
}

/// splitmix64: a seeded spread of requests, identical on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

fn key(k: usize) -> (String, String) {
    match k {
        0 => ("dynamodb".into(), "PutItem".into()),
        k => (format!("service{k}"), "Call".into()),
    }
}

struct Sandbox {
    circuits: Vec<Circuit>,
    syncs: Vec<FleetSync>,
    _fleet: Option<RegistryFleet>,
    _registry: CircuitBreakerRegistry,
}

impl Sandbox {
    async fn refresh(&self) {
        for s in &self.syncs {
            s.refresh().await;
        }
    }
}

fn sandbox(i: usize, s: Scenario, store: &Arc<MemoryStore>, ideal: &Circuit) -> Sandbox {
    let template = FleetConfig::builder("sim")
        .cache_period(CACHE_PERIOD)
        .instance_id(format!("sandbox-{i}"))
        .build()
        .expect("valid fleet config");
    let registry = CircuitBreakerRegistry::new();
    let fleet = matches!(s.sharing, Sharing::Registry | Sharing::StoreDown).then(|| {
        registry
            .share_with_fleet(store.clone(), template.clone())
            .expect("share")
    });
    let mut circuits = Vec::new();
    let mut syncs = Vec::new();
    for k in 0..s.circuits {
        let (service, operation) = key(k);
        let circuit = if s.sharing == Sharing::Ideal && k == 0 {
            ideal.clone()
        } else {
            registry.circuit(&service, &operation, &CircuitBreakerConfig::dynamodb())
        };
        let config = FleetConfig::builder(format!("sim/{service}/{operation}"))
            .cache_period(CACHE_PERIOD)
            .instance_id(template.instance_id())
            .build()
            .expect("valid fleet config");
        match s.sharing {
            Sharing::PerCircuit => {
                syncs.push(FleetSync::start(&circuit, store.clone(), config).expect("attach"))
            }
            Sharing::PerInvocation => {
                syncs.push(FleetSync::manual(&circuit, store.clone(), config).expect("attach"))
            }
            _ => {}
        }
        circuits.push(circuit);
    }
    Sandbox {
        circuits,
        syncs,
        _fleet: fleet,
        _registry: registry,
    }
}

async fn simulate(s: Scenario) -> Outcome {
    let store = Arc::new(MemoryStore::new());
    store.set_latency(Duration::from_millis(5));
    if s.sharing == Sharing::StoreDown {
        store.set_available(false);
    }
    let ideal = Circuit::named("dynamodb/PutItem", CircuitBreakerConfig::dynamodb());
    let sandboxes: Vec<Sandbox> = (0..s.sandboxes)
        .map(|i| sandbox(i, s, &store, &ideal))
        .collect();
    let start = Instant::now();
    let mut rng = Rng(SEED);
    let mut out = Outcome::default();
    let rate = RATE_PER_SANDBOX * s.sandboxes as f64;
    let step = Duration::from_secs_f64(1.0 / rate);
    let mut at = Duration::ZERO;
    while at < END {
        sleep_until(start + at).await;
        let sandbox = &sandboxes[rng.below(s.sandboxes)];
        let k = if s.circuits > 1 {
            rng.below(s.circuits)
        } else {
            0
        };
        if s.sharing == Sharing::PerInvocation {
            sandbox.refresh().await;
        }
        let outage = k == 0 && (OUTAGE_START..s.outage_end).contains(&at);
        let result = sandbox.circuits[k]
            .call(async move {
                if outage {
                    Err("DynamoDB unavailable")
                } else {
                    Ok(())
                }
            })
            .await;
        let rejected = result.as_ref().is_err_and(|e| e.rejection().is_some());
        let failed = result.is_err() && !rejected;
        let outage_window = (OUTAGE_START..s.outage_end).contains(&at);
        if failed && !outage {
            out.failed_outside += 1;
        }
        if outage_window && k == 0 {
            if rejected {
                out.rejected_outage += 1;
            } else if failed {
                out.failed_total += 1;
                if out.stop_after.is_none() {
                    out.failed_before_stop += 1;
                }
            }
        } else if at >= s.outage_end && k == 0 && rejected {
            out.rejected_after += 1;
        }
        if outage_window
            && out.stop_after.is_none()
            && sandboxes
                .iter()
                .all(|b| b.circuits[0].state() != CircuitState::Closed)
        {
            out.stop_after = Some(at - OUTAGE_START);
        }
        if at >= s.outage_end
            && out.recovered_after.is_none()
            && sandboxes
                .iter()
                .all(|b| b.circuits[0].state() == CircuitState::Closed)
        {
            out.recovered_after = Some(at - s.outage_end);
        }
        at += step;
    }
    out.store_ops = store.operations();
    out.traffic = store.traffic();
    out
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

fn per_sandbox_minute(ops: u64, sandboxes: usize) -> f64 {
    ops as f64 / sandboxes as f64 / (END.as_secs_f64() / 60.0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let run = |s: Scenario| runtime.block_on(simulate(s));

    println!(
        "{RATE_PER_SANDBOX} requests/s per sandbox spread at random, DynamoDB preset (3 \
         failures in a row among >= 5 calls, 20 s break, 1 probe), DynamoDB down from {}s to \
         {}s, run of {}s; fleet: quorum 2, or >= 20 calls at >= 50 % failures from >= 2 \
         sandboxes, cache period 1 s, probes at least 1 s apart; store latency 5 ms.\n",
        OUTAGE_START.as_secs(),
        OUTAGE_END.as_secs(),
        END.as_secs()
    );
    println!(
        "| sandboxes | circuits | failing calls before the fleet stopped calling | fleet \
         stopped after | failing calls during the outage (incl. probes) | rejected during \
         the outage | rejected after recovery | all closed after recovery | store operations \
         per sandbox per minute | failing calls outside the outage |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    // `--full` adds the 500-sandbox rows (about a minute in a release build).
    let full = std::env::args().any(|a| a == "--full");
    let sizes: &[usize] = if full { &[50, 500] } else { &[50] };
    for &sandboxes in sizes {
        for sharing in [
            Sharing::LocalOnly,
            Sharing::Ideal,
            Sharing::PerCircuit,
            Sharing::PerInvocation,
            Sharing::Registry,
            Sharing::StoreDown,
        ] {
            let o = run(base(sharing, sandboxes));
            println!(
                "| {sandboxes} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
                sharing.label(),
                o.failed_before_stop,
                secs(o.stop_after),
                o.failed_total,
                o.rejected_outage,
                o.rejected_after,
                secs(o.recovered_after),
                per_sandbox_minute(o.store_ops, sandboxes),
                o.failed_outside
            );
        }
    }

    if full {
        by_circuits(&run);
        costs(&run);
    }
    recovery(&run);
}

/// Minutes in a month of 730 hours, as AWS prices a month.
const MONTH_MINUTES: f64 = 730.0 * 60.0;
/// DynamoDB on-demand, US East (N. Virginia), since 1 November 2024: USD per million read
/// request units (one strongly consistent read of up to 4 KB) and write request units
/// (one write of up to 1 KB).
const DYNAMODB_RRU: f64 = 0.125;
const DYNAMODB_WRU: f64 = 0.625;
/// ElastiCache Serverless for Redis OSS, US East: USD per million ECPUs (one simple
/// command moving up to 1 KB; more KB, more ECPUs), and the 1 GB storage minimum a month
/// (0.125 USD per GB-hour).
const ELASTICACHE_ECPU: f64 = 0.0034;
const ELASTICACHE_MIN_STORAGE: f64 = 0.125 * 730.0;

type Run<'a> = &'a dyn Fn(Scenario) -> Outcome;

fn base(sharing: Sharing, sandboxes: usize) -> Scenario {
    Scenario {
        sharing,
        sandboxes,
        circuits: 1,
        outage_end: OUTAGE_END,
    }
}

fn by_circuits(run: Run<'_>) {
    println!(
        "\nStore operations per sandbox per minute, by circuits per sandbox (50 sandboxes, \
         the same run; each call goes to one of the circuits at random, only DynamoDB \
         `PutItem` fails):\n"
    );
    println!("| circuits per sandbox | per-circuit background syncs | registry-wide, batched |");
    println!("|---:|---:|---:|");
    for circuits in [1, 6, 50] {
        let ops = |sharing| {
            let o = run(Scenario {
                circuits,
                ..base(sharing, 50)
            });
            per_sandbox_minute(o.store_ops, 50)
        };
        println!(
            "| {circuits} | {:.1} | {:.1} |",
            ops(Sharing::PerCircuit),
            ops(Sharing::Registry)
        );
    }
}

fn costs(run: Run<'_>) {
    println!(
        "\nStore traffic and its price with no outage (the month's usual case): registry-wide, \
         6 circuits per sandbox, each call to one of them, 0.4 calls/s per sandbox; DynamoDB \
         on-demand ({DYNAMODB_RRU} USD per million read units, {DYNAMODB_WRU} per million \
         write units) and ElastiCache Serverless for Redis OSS ({ELASTICACHE_ECPU} USD per \
         million ECPUs, 1 GB storage minimum), US East, rates of 1 November 2024:\n"
    );
    println!(
        "| sandboxes | operations per sandbox per minute | records read / written per sandbox \
         per minute | mean record size read / written | fleet requests/s | DynamoDB read / \
         write units per month | DynamoDB USD per month | ElastiCache ECPUs per month | \
         ElastiCache USD per month (incl. storage minimum) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for sandboxes in [50, 500] {
        let o = run(Scenario {
            circuits: 6,
            outage_end: OUTAGE_START,
            ..base(Sharing::Registry, sandboxes)
        });
        let t = o.traffic;
        let minutes = END.as_secs_f64() / 60.0;
        let per = |n: u64| n as f64 / sandboxes as f64 / minutes;
        let mean = |bytes: u64, n: u64| if n == 0 { 0.0 } else { bytes as f64 / n as f64 };
        let (read_size, write_size) = (
            mean(t.bytes_read, t.records_read),
            mean(t.bytes_written, t.records_written),
        );
        let month = |per_sandbox_minute: f64| per_sandbox_minute * sandboxes as f64 * MONTH_MINUTES;
        let rru = month(per(t.records_read)) * (read_size / 4096.0).ceil().max(1.0);
        let wru = month(per(t.records_written)) * (write_size / 1024.0).ceil().max(1.0);
        let dynamodb = rru / 1e6 * DYNAMODB_RRU + wru / 1e6 * DYNAMODB_WRU;
        // One ECPU per command, plus one per KB moved beyond the first.
        let ecpu = month(per(t.operations)) + month(per(t.bytes_read + t.bytes_written)) / 1024.0;
        let elasticache = ecpu / 1e6 * ELASTICACHE_ECPU + ELASTICACHE_MIN_STORAGE;
        println!(
            "| {sandboxes} | {:.1} | {:.1} / {:.1} | {:.0} B / {:.0} B | {:.1} | {:.1} M / {:.1} M | {:.2} | {:.1} M | {:.2} |",
            per(t.operations),
            per(t.records_read),
            per(t.records_written),
            read_size,
            write_size,
            per(t.operations) * sandboxes as f64 / 60.0,
            rru / 1e6,
            wru / 1e6,
            dynamodb,
            ecpu / 1e6,
            elasticache
        );
    }
}

fn recovery(run: Run<'_>) {
    println!(
        "\nRecovery over 10 runs, the outage's end moved by 0, 2, ..., 18 s (phases of the \
         20 s break), 50 sandboxes:\n"
    );
    println!(
        "| circuits | all closed after recovery: median | worst | rejected after recovery: \
         median | worst | probes during the outage: median | worst |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for sharing in [Sharing::LocalOnly, Sharing::PerCircuit, Sharing::Registry] {
        let mut closed = Vec::new();
        let mut rejected = Vec::new();
        let mut probes = Vec::new();
        for phase in 0..10u64 {
            let o = run(Scenario {
                outage_end: OUTAGE_END + Duration::from_secs(2 * phase),
                ..base(sharing, 50)
            });
            closed.push(o.recovered_after.unwrap_or(Duration::MAX));
            rejected.push(o.rejected_after);
            probes.push(o.failed_total - o.failed_before_stop);
        }
        closed.sort();
        rejected.sort();
        probes.sort();
        let median = |v: &[u64]| (v[4] + v[5]) as f64 / 2.0;
        let median_d = |v: &[Duration]| (v[4].as_secs_f64() + v[5].as_secs_f64()) / 2.0;
        println!(
            "| {} | {:.1} s | {:.1} s | {:.1} | {} | {:.1} | {} |",
            sharing.label(),
            median_d(&closed),
            closed[9].as_secs_f64(),
            median(&rejected),
            rejected[9],
            median(&probes),
            probes[9]
        );
    }
}
