//! A flaky DynamoDB-like dependency behind the DynamoDB preset, watched through one
//! outage: Closed → Open → HalfOpen → (Open → HalfOpen →) Closed.
//!
//! Time is tokio's paused clock, so the preset's real numbers (20 s recovery, 60 s
//! window, 500 ms expected response time) play out in well under a second of wall time.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::error::CircuitOpen;
use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerLayer};

#[derive(Debug)]
struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("503 Service Unavailable")
    }
}

impl std::error::Error for Unavailable {}

fn main() -> Result<(), BoxError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), BoxError> {
    let start = Instant::now();
    let clock = move || format!("t={:>6.1}s", start.elapsed().as_secs_f64());

    // The dependency: 40 ms per call while healthy; while down, it fails after 40 ms.
    let healthy = Arc::new(AtomicBool::new(true));
    let dependency = {
        let healthy = healthy.clone();
        tower::service_fn(move |item: u32| {
            let healthy = healthy.load(Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(40)).await;
                if healthy { Ok(item) } else { Err(Unavailable) }
            }
        })
    };

    let breaker = CircuitBreakerLayer::named(
        "dynamodb/storeUserMessage",
        CircuitBreakerConfig::dynamodb(),
    );
    let circuit = breaker.circuit().clone();
    circuit.on_transition(move |e| {
        println!(
            "{}  {:>9} -> {:<9} ({}; {} requests in window, failure rate {:.2})",
            clock(),
            e.from,
            e.to,
            e.reason.as_str(),
            e.stats.window.requests,
            e.stats.failure_rate,
        );
    });
    let mut svc = ServiceBuilder::new()
        .layer(breaker)
        .timeout(Duration::from_millis(800))
        .service(dependency);

    let mut call = async |item: u32| -> &'static str {
        match svc
            .ready()
            .await
            .expect("never fails for an open circuit")
            .call(item)
            .await
        {
            Ok(_) => "ok",
            Err(e) if e.is::<CircuitOpen>() => "rejected",
            Err(_) => "failed",
        }
    };

    println!(
        "DynamoDB preset: 3 consecutive failures among ≥ 5 requests in 60 s open the circuit for 20 s.\n"
    );

    for i in 0..4 {
        print_call(i, call(i).await, &start);
    }
    println!("-- the dependency goes down --");
    healthy.store(false, Ordering::SeqCst);
    for i in 4..10 {
        print_call(i, call(i).await, &start);
    }

    println!("-- 20 s later the next call is a probe; the dependency is still down --");
    tokio::time::sleep(Duration::from_secs(20)).await;
    print_call(10, call(10).await, &start);

    println!("-- the dependency recovers; 20 s later the probe succeeds --");
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(20)).await;
    for i in 11..14 {
        print_call(i, call(i).await, &start);
    }

    let s = circuit.stats();
    println!(
        "\nstats: state={} total_requests={} successes={} failures={} rejected={} slow={} failure_rate={:.2} window_requests={}",
        s.state,
        s.total_requests,
        s.success_count,
        s.failure_count,
        s.rejected_count,
        s.slow_count,
        s.failure_rate,
        s.window.requests,
    );
    Ok(())
}

fn print_call(i: u32, outcome: &str, start: &Instant) {
    println!(
        "t={:>6.1}s  call {i:>2}: {outcome}",
        start.elapsed().as_secs_f64()
    );
}
