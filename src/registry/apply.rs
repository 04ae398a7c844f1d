//! Applying a configuration to a live registry: live circuits take the new thresholds
//! and keep their state and counts; from a [`RegistryConfig`] or (feature `serde`) a
//! document.

use super::{CircuitBreakerRegistry, RegistryConfig, RegistryConfigError, duration_ns, key_path};
use crate::config::ConfigError;
#[cfg(feature = "serde")]
use std::path::Path;
use std::sync::atomic::Ordering;

impl CircuitBreakerRegistry {
    /// The configuration in force.
    pub fn config(&self) -> RegistryConfig {
        self.settings().config.clone()
    }

    /// Replaces the registry's configuration and re-applies it to every live circuit,
    /// which keeps its state and counts. New limits take effect at once: a capacity
    /// below the number of circuits evicts nothing by itself, it refuses new keys until
    /// eviction brings the count below it.
    ///
    /// All or nothing: every circuit's new configuration is computed and checked first;
    /// if one is invalid nothing changes.
    ///
    /// # Errors
    ///
    /// A [`RegistryConfigError`] naming the key and field that broke a rule.
    pub fn apply_config(&self, config: RegistryConfig) -> Result<(), RegistryConfigError> {
        config
            .limits
            .check()
            .map_err(|e| RegistryConfigError::invalid("limits", e))?;
        let mut settings = self.settings_mut();
        let entries = self.inner.table.entries();
        let mut plan = Vec::with_capacity(entries.len());
        for e in &entries {
            let new = config.resolve(e.service(), e.operation(), &e.base)?;
            let live = e.circuit.config();
            for (field, changed) in [
                ("window_buckets", new.window_buckets != live.window_buckets),
                ("sliding_window", new.sliding_window != live.sliding_window),
            ] {
                if changed {
                    return Err(RegistryConfigError::invalid(
                        &key_path(&["services", e.service(), "operations", e.operation()]),
                        ConfigError::new(field, "cannot change on a live circuit"),
                    ));
                }
            }
            plan.push(new);
        }
        for (e, new) in entries.iter().zip(plan) {
            e.circuit.reconfigure(new).expect("checked above");
        }
        let limits = config.limits;
        self.inner
            .capacity
            .store(limits.capacity(), Ordering::Relaxed);
        self.inner
            .max_name_length
            .store(limits.max_name_length(), Ordering::Relaxed);
        self.inner
            .idle_ns
            .store(duration_ns(limits.idle_timeout()), Ordering::Relaxed);
        settings.config = config;
        Ok(())
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl CircuitBreakerRegistry {
    /// Reads a JSON document ([`RegistryConfig::from_json`]) and applies it
    /// ([`apply_config`](Self::apply_config)): live circuits take the new thresholds and
    /// keep their state and counts. A refused document changes nothing.
    ///
    /// ```
    /// use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry};
    ///
    /// let registry = CircuitBreakerRegistry::new();
    /// let circuit = registry.circuit("dynamodb", "storeUserMessage", &CircuitBreakerConfig::dynamodb());
    /// registry.apply_json(r#"{ "services": { "dynamodb": { "failure_threshold": 2 } } }"#)?;
    /// assert_eq!(circuit.config().failure_threshold(), 2);
    ///
    /// let err = registry.apply_json(r#"{ "services": { "dynamodb": { "failure_threshold": 0 } } }"#).unwrap_err();
    /// assert_eq!(err.field(), Some("failure_threshold"));
    /// assert_eq!(circuit.config().failure_threshold(), 2);
    /// # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RegistryConfig::from_json`] and [`apply_config`](Self::apply_config).
    pub fn apply_json(&self, document: &str) -> Result<(), RegistryConfigError> {
        self.apply_config(RegistryConfig::from_json(document)?)
    }

    /// Reads a TOML document ([`RegistryConfig::from_toml`]) and applies it, as
    /// [`apply_json`](Self::apply_json) does.
    ///
    /// # Errors
    ///
    /// As [`RegistryConfig::from_toml`] and [`apply_config`](Self::apply_config).
    pub fn apply_toml(&self, document: &str) -> Result<(), RegistryConfigError> {
        self.apply_config(RegistryConfig::from_toml(document)?)
    }

    /// Reads a document from a file ([`RegistryConfig::from_file`]) and applies it, as
    /// [`apply_json`](Self::apply_json) does.
    ///
    /// # Errors
    ///
    /// As [`RegistryConfig::from_file`] and [`apply_config`](Self::apply_config).
    pub fn apply_file(&self, path: impl AsRef<Path>) -> Result<(), RegistryConfigError> {
        self.apply_config(RegistryConfig::from_file(path)?)
    }
}
