//! A fleet of Lambda sandboxes in front of DynamoDB, through an outage: how many failing
//! calls reach DynamoDB before the fleet stops calling, with local-only circuits and with
//! fleet-wide circuits sharing state through a store.
//!
//! ```text
//! cargo run --features fleet --example fleet_simulation
//! ```
//!
//! Simulated time (tokio's paused clock): the run takes well under a second of real time
//! and prints the same table every time (requests are spread over the sandboxes by a
//! seeded generator). The store is the in-process `MemoryStore` with 5 ms of latency per
//! operation.

use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep_until};
use tower_circuit_breaker::fleet::{FleetConfig, FleetSync, MemoryStore};
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitState};

const SANDBOXES: usize = 50;
/// Requests per second, fleet-wide.
const RATE: u64 = 20;
const OUTAGE_START: Duration = Duration::from_secs(60);
const OUTAGE_END: Duration = Duration::from_secs(180);
const END: Duration = Duration::from_secs(260);
const SEED: u64 = 0x5eed_f1ee7;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sharing {
    LocalOnly,
    /// A background sync per sandbox, every cache period.
    Background,
    /// No background task: `refresh()` at the start of each invocation, as a frozen Lambda
    /// sandbox must.
    PerInvocation,
    /// Sharing configured, but the store is down for the whole run.
    StoreDown,
}

impl Sharing {
    fn label(self) -> &'static str {
        match self {
            Sharing::LocalOnly => "local-only",
            Sharing::Background => "shared, background sync (1 s)",
            Sharing::PerInvocation => "shared, refresh per invocation (1 s cache)",
            Sharing::StoreDown => "shared, store down all along",
        }
    }
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

async fn simulate(sharing: Sharing) -> Outcome {
    let store = Arc::new(MemoryStore::new());
    store.set_latency(Duration::from_millis(5));
    if sharing == Sharing::StoreDown {
        store.set_available(false);
    }
    let fleet = FleetConfig::builder("sim/dynamodb/PutItem")
        .cache_period(Duration::from_secs(1))
        .build()
        .expect("valid fleet config");
    let mut sandboxes = Vec::new();
    for i in 0..SANDBOXES {
        let circuit = Circuit::named("dynamodb/PutItem", CircuitBreakerConfig::dynamodb());
        let config = fleet
            .to_builder()
            .instance_id(format!("sandbox-{i}"))
            .build()
            .expect("valid fleet config");
        let sync = match sharing {
            Sharing::LocalOnly => None,
            Sharing::Background | Sharing::StoreDown => {
                Some(FleetSync::start(&circuit, store.clone(), config).expect("attach"))
            }
            Sharing::PerInvocation => {
                Some(FleetSync::manual(&circuit, store.clone(), config).expect("attach"))
            }
        };
        sandboxes.push((circuit, sync));
    }

    let start = Instant::now();
    let mut rng = Rng(SEED);
    let mut out = Outcome::default();
    let step = Duration::from_nanos(1_000_000_000 / RATE);
    let mut at = Duration::ZERO;
    while at < END {
        sleep_until(start + at).await;
        let (circuit, sync) = &sandboxes[rng.below(SANDBOXES)];
        if sharing == Sharing::PerInvocation {
            if let Some(sync) = sync {
                sync.refresh().await;
            }
        }
        let outage = (OUTAGE_START..OUTAGE_END).contains(&at);
        let result = circuit
            .call(async move {
                if outage {
                    Err("DynamoDB unavailable")
                } else {
                    Ok(())
                }
            })
            .await;
        let rejected = result.as_ref().is_err_and(|e| e.rejection().is_some());
        if outage {
            if rejected {
                out.rejected_outage += 1;
            } else if result.is_err() {
                out.failed_total += 1;
                if out.stop_after.is_none() {
                    out.failed_before_stop += 1;
                }
            }
            if out.stop_after.is_none()
                && sandboxes
                    .iter()
                    .all(|(c, _)| c.state() != CircuitState::Closed)
            {
                out.stop_after = Some(at - OUTAGE_START);
            }
        } else if at >= OUTAGE_END {
            if rejected {
                out.rejected_after += 1;
            }
            if out.recovered_after.is_none()
                && sandboxes
                    .iter()
                    .all(|(c, _)| c.state() == CircuitState::Closed)
            {
                out.recovered_after = Some(at - OUTAGE_END);
            }
        }
        at += step;
    }
    out.store_ops = store.operations();
    out
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    println!(
        "{SANDBOXES} sandboxes, {RATE} requests/s spread at random, DynamoDB preset \
         (3 failures among >= 5 calls, 20 s break, 1 probe), DynamoDB down from \
         {}s to {}s, run of {}s; fleet: quorum 2, or >= 20 calls at >= 50 % failures \
         from >= 2 sandboxes; store latency 5 ms.\n",
        OUTAGE_START.as_secs(),
        OUTAGE_END.as_secs(),
        END.as_secs()
    );
    println!(
        "| circuits | failing calls before the fleet stopped calling | fleet stopped after | \
         failing calls during the outage (incl. probes) | rejected during the outage | \
         rejected after recovery | all closed after recovery | store operations |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for sharing in [
        Sharing::LocalOnly,
        Sharing::Background,
        Sharing::PerInvocation,
        Sharing::StoreDown,
    ] {
        let o = runtime.block_on(simulate(sharing));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            sharing.label(),
            o.failed_before_stop,
            secs(o.stop_after),
            o.failed_total,
            o.rejected_outage,
            o.rejected_after,
            secs(o.recovered_after),
            o.store_ops
        );
    }
}
