//! Change circuit breaker thresholds without redeploying: poll a configuration document
//! and re-apply it to the live registry.
//!
//! In a Lambda function the document would come from a file shipped in a layer, from an
//! environment variable, or from the AWS AppConfig Lambda extension (which serves it on
//! `http://localhost:2772/applications/<app>/environments/<env>/configurations/<profile>`;
//! fetch it with any HTTP client and hand the body to `apply_json`/`apply_toml`). Poll at
//! the start of an invocation, not from a timer: a frozen sandbox runs no timers.
//!
//! This example writes the document itself so it can show the three cases: a first load,
//! a change applied to a live circuit (state and counts kept), and a bad document refused
//! with the running configuration untouched.
//!
//! ```text
//! cargo run --example config_reload --features serde
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry};

/// Re-applies a configuration file when its content changes.
struct FileWatcher {
    path: PathBuf,
    last: Option<String>,
}

impl FileWatcher {
    fn new(path: impl Into<PathBuf>) -> Self {
        FileWatcher {
            path: path.into(),
            last: None,
        }
    }

    /// Reads the file; if it changed since the last poll, applies it. Returns whether a
    /// new document was applied. A refused document is not retried until it changes.
    fn poll(
        &mut self,
        registry: &CircuitBreakerRegistry,
    ) -> Result<bool, Box<dyn std::error::Error>> {
        let text = std::fs::read_to_string(&self.path)?;
        if self.last.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        self.last = Some(text);
        registry.apply_file(&self.path)?;
        Ok(true)
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the demo document");
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("circuit-breakers-{}.toml", std::process::id()));
    let registry = CircuitBreakerRegistry::new();
    let mut watcher = FileWatcher::new(&path);

    write(
        &path,
        r#"
[services.dynamodb]
failure_threshold = 3
recovery_timeout = "20s"
"#,
    );
    println!("first load applied: {}", watcher.poll(&registry)?);

    // Live traffic: three successes, then two failures (a run of 2 < 3: still closed).
    let circuit = registry.circuit(
        "dynamodb",
        "storeUserMessage",
        &CircuitBreakerConfig::dynamodb(),
    );
    for ok in [true, true, true, false, false] {
        let _ = circuit
            .call(async move { if ok { Ok(()) } else { Err("throttled") } })
            .await;
    }
    let s = circuit.stats();
    println!(
        "live: threshold={} state={} requests={} consecutive_failures={}",
        circuit.config().failure_threshold(),
        s.state,
        s.total_requests,
        s.consecutive_failures
    );

    println!(
        "polling again without a change applied: {}",
        watcher.poll(&registry)?
    );

    // Operations lower the threshold for one operation.
    tokio::time::sleep(Duration::from_secs(5)).await;
    write(
        &path,
        r#"
[services.dynamodb]
failure_threshold = 3
recovery_timeout = "20s"

[services.dynamodb.operations.storeUserMessage]
failure_threshold = 2
"#,
    );
    println!("changed document applied: {}", watcher.poll(&registry)?);
    let s = circuit.stats();
    println!(
        "live: threshold={} state={} requests={} (counts kept)",
        circuit.config().failure_threshold(),
        s.state,
        s.total_requests
    );
    let _ = circuit.call(async { Err::<(), _>("throttled") }).await;
    println!("next failure -> state={}", circuit.state());

    // A bad document is refused as a whole; the running configuration stays.
    write(
        &path,
        r#"
[services.dynamodb.operations.storeUserMessage]
failure_threshold = 0
"#,
    );
    match watcher.poll(&registry) {
        Ok(applied) => println!("unexpected: applied={applied}"),
        Err(e) => println!("refused: {e}"),
    }
    println!(
        "still in force: threshold={}",
        circuit.config().failure_threshold()
    );

    std::fs::remove_file(&path)?;
    Ok(())
}
