//! The registry test that counts log lines, in a binary of its own: tracing's per-callsite
//! interest cache races with other tests' threads when they share a binary (see
//! `tests/fleet_logs`).

use std::io::Write;
use std::sync::{Arc, Mutex};
use tower_circuit_breaker::registry::{RegistryConfig, RegistryLimits};
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry};

/// Captures this thread's tracing output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Issue 11, item 4: 10 000 refused keys log 14 warn lines (the 1st, 2nd, 4th, …, 8 192nd
/// refusal), not one per key, and never the names themselves.
#[test]
fn refused_keys_are_logged_at_powers_of_two_without_their_names() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let registry = CircuitBreakerRegistry::with_config(RegistryConfig {
        limits: RegistryLimits::builder().capacity(1).build().unwrap(),
        ..RegistryConfig::default()
    });
    let config = CircuitBreakerConfig::dynamodb();
    registry.circuit("s", "kept", &config);
    for i in 0..5_000 {
        registry.circuit("s", &format!("secret-tenant-{i}"), &config);
        registry.circuit("s", &format!("{i}{}", "x".repeat(300)), &config);
    }
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let lines = text.matches("circuit registry refused a key").count();
    // Each line carries the message and its `reason`, which repeats the phrase.
    assert_eq!(lines, 2 * 14, "{text}");
    assert!(text.contains("WARN"), "{text}");
    assert!(!text.contains("secret-tenant"), "{text}");
    assert!(!text.contains("xxxxxxxx"), "{text}");
    let stats = registry.registry_stats();
    assert_eq!(stats.refused_full + stats.refused_name_too_long, 10_000);
}
