//! CloudWatch metrics for circuit breakers, in the Embedded Metric Format (EMF).
//!
//! In a Lambda function, a line of EMF JSON written to stdout becomes CloudWatch metrics:
//! no agent, no API call. This example installs `metrics_cloudwatch_embedded` as the
//! `metrics` recorder, runs a flaky DynamoDB write through a
//! [`CircuitBreakerRegistry`] over a few "invocations", and flushes the metrics after each
//! one, as a Lambda handler would. The `circuit_breaker_state` gauge (0 closed,
//! 1 half-open, 2 open) is what the README's alarm watches.
//!
//! ```text
//! cargo run -p cloudwatch-emf
//! ```
//!
//! `src/main.rs` calls [`run`] with stdout; `integration/tests/emf` calls it with a buffer and
//! checks every line.
//!
//! Time is tokio's paused clock, so the 20 s recovery passes at once.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower_circuit_breaker::registry::FallbackCause;
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry};

#[derive(Debug)]
enum DbError {
    Unavailable,
    CircuitOpen,
}

/// Runs the scripted invocations and writes every EMF line to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace("ChatBackend")
        .with_dimension("function", "chat-backend")
        .init()?;
    let registry = CircuitBreakerRegistry::new();
    let healthy = AtomicBool::new(true);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    runtime.block_on(async {
        // (invocation, dependency healthy, calls in it, pause before it)
        let script = [(1, true, 3, 0), (2, false, 6, 0), (3, true, 2, 21)];
        for (invocation, up, calls, pause) in script {
            tokio::time::sleep(Duration::from_secs(pause)).await;
            healthy.store(up, Ordering::SeqCst);
            for _ in 0..calls {
                let _ = registry
                    .execute(
                        "dynamodb",
                        "storeUserMessage",
                        || async {
                            if healthy.load(Ordering::SeqCst) {
                                Ok(())
                            } else {
                                Err(DbError::Unavailable)
                            }
                        },
                        |_: FallbackCause<DbError>| async { Err(DbError::CircuitOpen) },
                        &CircuitBreakerConfig::dynamodb(),
                    )
                    .await;
            }
            // End of the invocation: flush, as the Lambda integration does.
            collector.set_property("invocation", invocation);
            collector.flush(&mut *out)?;
        }
        Ok::<_, std::io::Error>(())
    })?;
    Ok(())
}
