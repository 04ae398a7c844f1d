//! Configuration documents (feature `serde`): the registry's configuration as JSON or TOML.
//!
//! One document holds a [`RegistryConfig`]: the `default` configuration of circuits created
//! without one, and `services`, the overrides per service and per operation. Load it from
//! a string ([`RegistryConfig::from_toml`], [`RegistryConfig::from_json`]), a file
//! ([`RegistryConfig::from_file`]) or an environment variable
//! ([`RegistryConfig::from_env`]), and re-apply it to a live registry
//! ([`CircuitBreakerRegistry::apply_toml`], [`apply_json`](crate::CircuitBreakerRegistry::apply_json),
//! [`apply_file`](crate::CircuitBreakerRegistry::apply_file)): live circuits take the new
//! thresholds and keep their state and counts.
//!
//! # Format
//!
//! ```
//! use std::time::Duration;
//! use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry};
//! use tower_circuit_breaker::registry::RegistryConfig;
//!
//! let config = RegistryConfig::from_toml(r#"
//!     ## Circuits created without a configuration of their own.
//!     [default]
//!     preset = "dynamodb"          # the base the fields below are laid over (optional)
//!     recovery_timeout = "30s"
//!
//!     ## Every dynamodb operation...
//!     [services.dynamodb]
//!     failure_threshold = 4
//!
//!     ## ...and this one in particular.
//!     [services.dynamodb.operations.storeUserMessage]
//!     failure_threshold = 2
//!     expected_response_time = "300ms"
//!     backoff = { multiplier = 2.0, max = "2m", jitter = 0.1 }
//! "#)?;
//! assert_eq!(config.default.recovery_timeout(), Duration::from_secs(30));
//! assert_eq!(config.default.expected_response_time(), Duration::from_millis(500));
//!
//! let registry = CircuitBreakerRegistry::with_config(config);
//! let circuit = registry.circuit("dynamodb", "storeUserMessage", &CircuitBreakerConfig::dynamodb());
//! assert_eq!(circuit.config().failure_threshold(), 2);
//! assert_eq!(circuit.config().expected_response_time(), Duration::from_millis(300));
//! let other = registry.circuit("dynamodb", "getItem", &CircuitBreakerConfig::dynamodb());
//! assert_eq!(other.config().failure_threshold(), 4);
//! # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
//! ```
//!
//! The same in JSON:
//!
//! ```
//! # use tower_circuit_breaker::registry::RegistryConfig;
//! let config = RegistryConfig::from_json(r#"{
//!     "default": { "preset": "dynamodb", "recovery_timeout": "30s" },
//!     "services": {
//!         "dynamodb": {
//!             "failure_threshold": 4,
//!             "operations": {
//!                 "storeUserMessage": {
//!                     "failure_threshold": 2,
//!                     "expected_response_time": "300ms",
//!                     "backoff": { "multiplier": 2.0, "max": "2m", "jitter": 0.1 }
//!                 }
//!             }
//!         }
//!     }
//! }"#)?;
//! # assert_eq!(config, RegistryConfig::from_toml(r#"
//! #     [default]
//! #     preset = "dynamodb"
//! #     recovery_timeout = "30s"
//! #     [services.dynamodb]
//! #     failure_threshold = 4
//! #     [services.dynamodb.operations.storeUserMessage]
//! #     failure_threshold = 2
//! #     expected_response_time = "300ms"
//! #     backoff = { multiplier = 2.0, max = "2m", jitter = 0.1 }
//! # "#)?);
//! # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
//! ```
//!
//! * `default` (optional) is a full [`CircuitBreakerConfig`]: any of its fields, laid over
//!   [`CircuitBreakerConfig::default`], or over a preset named by `preset` (`"default"`,
//!   `"cognito"`, `"dynamodb"`, `"api_gateway_management"`).
//! * `services` (optional) maps a service to the fields its circuits override, and to
//!   `operations`, which maps an operation of that service to its own overrides (a
//!   [`ConfigPatch`] each). An operation's fields beat its service's, which beat the
//!   configuration passed at the call site.
//! * Field names are those of [`CircuitBreakerConfigBuilder`](crate::config::CircuitBreakerConfigBuilder):
//!   `failure_threshold`, `recovery_timeout`, `expected_response_time`,
//!   `monitoring_window`, `minimum_request_count`, `half_open_max_calls`,
//!   `half_open_max_wait` (a duration; left out, it is derived, see
//!   [`CircuitBreakerConfig::half_open_max_wait`]), `window_buckets`, `sliding_window`
//!   (`"time"` or `{ count = 100 }`, see [`SlidingWindow`](crate::SlidingWindow)), `failure_rate_threshold`, `slow_call_rate_threshold`,
//!   `slow_call_is_failure`, `dropped_call_is_failure`, `metrics_only`, and `backoff`
//!   (`{ multiplier, max, jitter }`, `jitter` optional).
//! * `limits` (optional) bounds the registry itself (see
//!   [`RegistryLimits`]): `capacity` (circuits, default
//!   10 000), `max_name_length` (bytes of a service or operation name, default 256) and
//!   `idle_timeout` (default `"15m"`). It is written out only when it differs from the
//!   defaults.
//! * `expected_response_time` also takes the word `"off"`: slow-call detection off, one
//!   clock read per call (the builder's `Duration::MAX`, written back as `"off"`).
//! * Durations are strings with a unit: `"250ns"`, `"250us"` (or `"250µs"`), `"500ms"`,
//!   `"30s"`, `"1m"`, `"2h"`, and decimals such as `"1.5s"`. A bare number is refused:
//!   `30` could mean seconds or milliseconds. See [`parse_duration`].
//!
//! # Errors
//!
//! A document is taken as a whole or refused as a whole: a syntax error, an unknown
//! field, a duplicate key, a value of the wrong type or one that breaks a rule of
//! [`CircuitBreakerConfig`] each give a [`RegistryConfigError`] whose
//! [`key`](crate::registry::RegistryConfigError::key) is the table (`default`, `services.dynamodb`,
//! `services.dynamodb.operations.storeUserMessage`) and whose
//! [`field`](crate::registry::RegistryConfigError::field) is the field:
//!
//! ```
//! # use tower_circuit_breaker::registry::RegistryConfig;
//! let err = RegistryConfig::from_toml(r#"
//!     [services.dynamodb.operations.storeUserMessage]
//!     failure_threshold = 0
//! "#).unwrap_err();
//! assert_eq!(err.key(), "services.dynamodb.operations.storeUserMessage");
//! assert_eq!(err.field(), Some("failure_threshold"));
//!
//! let err = RegistryConfig::from_json(r#"{ "default": { "recovery_timeout": 30 } }"#).unwrap_err();
//! assert_eq!((err.key(), err.field()), ("default", Some("recovery_timeout")));
//! assert!(err.message().contains(r#"a duration with a unit, like "30s" or "500ms""#));
//! ```
//!
//! Documents are treated as untrusted input: parsing never panics, documents over
//! [`MAX_DOCUMENT_BYTES`] and documents naming more than [`MAX_OVERRIDES`] services and
//! operations in all are refused.
//!
//! # Stats
//!
//! [`CircuitBreakerStats`](crate::CircuitBreakerStats) and
//! [`KeyedStats`](crate::registry::KeyedStats) serialize too, times as RFC 3339 UTC
//! strings with milliseconds (`"2026-11-27T10:14:11.123Z"`), so a health route can return
//! them as they are:
//!
//! ```
//! # use tower_circuit_breaker::CircuitBreakerRegistry;
//! let registry = CircuitBreakerRegistry::new();
//! registry.circuit("dynamodb", "storeUserMessage", None).force_open();
//! let body = serde_json::to_value(registry.all_stats()).unwrap();
//! assert_eq!(body[0]["service"], "dynamodb");
//! assert_eq!(body[0]["stats"]["state"], "open");
//! assert_eq!(body[0]["stats"]["manual_override"], "forced_open");
//! ```
//!
//! [`RegistryConfig`]: crate::registry::RegistryConfig
//! [`RegistryConfig::from_toml`]: crate::registry::RegistryConfig::from_toml
//! [`RegistryConfig::from_json`]: crate::registry::RegistryConfig::from_json
//! [`RegistryConfig::from_file`]: crate::registry::RegistryConfig::from_file
//! [`RegistryConfig::from_env`]: crate::registry::RegistryConfig::from_env
//! [`CircuitBreakerRegistry::apply_toml`]: crate::CircuitBreakerRegistry::apply_toml
//! [`CircuitBreakerConfig`]: crate::CircuitBreakerConfig
//! [`CircuitBreakerConfig::default`]: crate::CircuitBreakerConfig::default
//! [`CircuitBreakerConfig::half_open_max_wait`]: crate::CircuitBreakerConfig::half_open_max_wait
//! [`ConfigPatch`]: crate::config::ConfigPatch
//! [`RegistryLimits`]: crate::registry::RegistryLimits
//! [`RegistryConfigError`]: crate::registry::RegistryConfigError
//! [`RegistryConfigError::key`]: crate::registry::RegistryConfigError::key
//! [`RegistryConfigError::field`]: crate::registry::RegistryConfigError::field

// Layout. The durations and times the core's types are written with live in the core
// (`crate::duration`, `crate::time`); this module re-exports their public parts. Here:
// `fields` (the field table: names, reading one field, writing the set ones), `keys`
// (table keys: unknown and repeated ones refused), `raw` (the document's tables as
// written and the serde impls of the configuration types), `load` (JSON, TOML, files and
// the environment: size limits, where an error is) and `write` (JSON and TOML output).
// The public entry points (`RegistryConfig::from_json`, `CircuitBreakerRegistry::apply_file`,
// ...) are `impl`s in `crate::registry` that call `load` and `write`.
mod fields;
mod keys;
pub(crate) mod load;
mod raw;
pub(crate) mod write;

pub use crate::duration::string as duration;
pub use crate::duration::{DurationError, format_duration, parse_duration};

/// Documents longer than this many bytes (1 MiB) are refused.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Documents naming more services and operations than this, in all, are refused.
pub const MAX_OVERRIDES: usize = 10_000;
