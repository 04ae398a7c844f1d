//! A circuit breaker for any [`tower::Service`](tower_service::Service): a lock-free Closed
//! path, a sliding time window, bounded half-open probes, fallbacks, honest stats, and the
//! presets of an AWS Lambda chat backend.
//!
//! # Overview
//!
//! A circuit breaker stops calling a dependency that keeps failing, fails fast while it
//! recovers, and lets a few probes through to find out when it has. "Open" means
//! *tripped*: calls are rejected.
//!
//! * [`CircuitBreakerLayer`] wraps a service; every service it wraps and every clone
//!   shares one [`Circuit`].
//! * [`Circuit`] is the state machine: [`state`](Circuit::state), [`stats`](Circuit::stats),
//!   manual control, listeners, live reconfiguration, and [`call`](Circuit::call) for
//!   futures outside tower.
//! * [`CircuitBreakerConfig`] holds validated settings, with the seed's presets
//!   [`cognito`](CircuitBreakerConfig::cognito), [`dynamodb`](CircuitBreakerConfig::dynamodb)
//!   and [`api_gateway_management`](CircuitBreakerConfig::api_gateway_management).
//! * [`classify`] decides what a failure is: success, failure, or ignored.
//! * A rejection is an [`error::CircuitOpen`], recognised by downcasting a [`BoxError`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerLayer, error::CircuitOpen};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = CircuitBreakerLayer::named("dynamodb", CircuitBreakerConfig::dynamodb());
//! let circuit = breaker.circuit().clone();
//! let svc = ServiceBuilder::new()
//!     .layer(breaker)
//!     .timeout(Duration::from_millis(800))
//!     .service_fn(|item: &'static str| async move { Ok::<_, BoxError>(item.len()) });
//!
//! assert_eq!(svc.clone().oneshot("hello").await?, 5);
//!
//! circuit.force_open();
//! let err = svc.oneshot("hello").await.unwrap_err();
//! assert!(err.is::<CircuitOpen>());
//! # Ok(())
//! # }
//! ```
//!
//! # Order
//!
//! Where the breaker sits in a `ServiceBuilder` decides what it counts:
//!
//! ```
//! # use std::time::Duration;
//! # use tower::ServiceBuilder;
//! # use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
//! # let inner = tower::service_fn(|r: u8| async move { Ok::<_, std::io::Error>(r) });
//! // Breaker outside the timeout: a timed-out call is a failure the breaker sees.
//! let svc = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(CircuitBreakerConfig::dynamodb()))
//!     .timeout(Duration::from_millis(800))
//!     .service(inner);
//! # drop(svc);
//! ```
//!
//! * **Breaker outside `timeout`** (above): timeouts count as failures. Inside it, a
//!   timed-out call is a dropped future, ignored unless
//!   [`dropped_call_is_failure`](config::CircuitBreakerConfigBuilder::dropped_call_is_failure)
//!   is set. `expected_response_time` only marks calls slow; aborting them is
//!   `timeout`'s job.
//! * **Retry outside the breaker** counts every attempt: three failed attempts of one
//!   operation are three failures, and a retry sent while the circuit is open is rejected
//!   at once (do not retry [`CircuitOpen`]; feature `retry`'s
//!   `retry::NoRetryOnOpen` wraps a `tower::retry::Policy` so that it never does).
//! * **Retry inside the breaker** counts operations: the breaker sees one outcome after
//!   all attempts.
//! * **Backpressure mode** ([`CircuitBreakerLayer::backpressure`]) makes `poll_ready`
//!   wait while open; put `load_shed()` above it when callers must not wait.
//!
//! # Time
//!
//! Time follows [`tokio::time::Instant`], so tests can use `tokio::time::pause` and
//! `advance`. There is no timer and no background task: Open → HalfOpen happens on the
//! first call after the break, which is right for an AWS Lambda sandbox frozen between
//! invocations.
//!
//! On Linux, when tokio's clock is not paused and the configuration measures nothing
//! shorter than 100 ms (`expected_response_time`, the bucket width), the Closed path
//! reads the kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`: the same clock,
//! with the resolution of a scheduler tick, 1–4 ms) for about 5 ns instead of 23. A
//! circuit made while tokio's clock is paused (`start_paused`) follows tokio's clock
//! exactly; pause the clock *before* building a circuit whose timing a test depends on.
//!
//! # Troubleshooting
//!
//! A stack awaited inside `tokio::spawn` or an axum handler that fails to compile with
//! "implementation of `From` is not general enough" or "one type is more general than the
//! other" trips rustc's higher-ranked `Send` inference on an `Into<BoxError>` bound over an
//! inner `BoxError`. Use the typed-error mode
//! ([`CircuitBreakerLayer::typed_errors`], error
//! [`CircuitBreakerError`](error::CircuitBreakerError)), give the inner service a concrete
//! error type, or end the stack with `.boxed_clone()`. More in `docs/semantics.md`.
//!
//! # Feature flags
//!
//! * `http`: [`classify::HttpStatusAsFailures`] (5xx, 408, 429 are failures; optional
//!   `Retry-After`).
//! * `serde`: `Serialize` for stats, (de)serialization of configuration, and registry
//!   configuration documents in JSON and TOML ([`document`]).
//! * `metrics`: per-circuit counters and a state gauge through the `metrics` facade
//!   (names and labels in [`metrics`]).
//! * `aws`: [`aws`], a breaker around an AWS SDK for Rust client's HTTP connector, one
//!   circuit per operation through a registry, classification that agrees with the SDK's
//!   retry verdicts. The AWS SDK crates need Rust 1.94.1 or newer.
//! * `retry`: `retry::NoRetryOnOpen`, a `tower::retry::Policy` wrapper that never
//!   retries a [`CircuitOpen`].
//! * `cognito`: `aws::cognito`, Cognito JWT verification with the JWKS fetch behind a
//!   breaker, failing closed.
//! * `fleet`: `fleet`, fleet-wide circuits: a circuit's trips, window counts and probe
//!   leases shared across processes through a store, off the request path.
//! * `trace`: `trace`, call traces as JSON lines: the schema, a streaming reader and
//!   writer with bounded memory, `trace::RecorderLayer` (records every call, never
//!   blocking it), and a CloudWatch Logs Insights CSV converter.
//! * `replay`: `replay`, runs a trace through real circuits under many configurations at
//!   once on a simulated clock and reports, per configuration and key, what each would
//!   have done (failures let through, false rejections, opens, time to open and close).
//! * `fleet-redis`, `fleet-dynamodb`: `fleet::RedisStore` and `fleet::DynamoDbStore`, the
//!   fleet state stores in Redis (one node or a Redis Cluster) and DynamoDB (the latter
//!   needs Rust 1.94.1 or newer).
//! * `fleet-redis-tls`: `rediss://` for `fleet::RedisStore` (rustls, with aws-lc-rs).
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.85 (edition 2024). Raising it is a minor
//! version change.
#![warn(
    missing_debug_implementations,
    missing_docs,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "aws")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws")))]
pub mod aws;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod body;
mod circuit;
pub mod classify;
mod clock;
pub mod config;
mod count_window;
mod default_observer;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod document;
#[cfg(feature = "serde")]
mod duration;
pub mod error;
mod fallback;
#[cfg(feature = "fleet")]
#[cfg_attr(docsrs, doc(cfg(feature = "fleet")))]
pub mod fleet;
pub mod future;
mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod primitives;
pub mod registry;
#[cfg(feature = "replay")]
#[cfg_attr(docsrs, doc(cfg(feature = "replay")))]
pub mod replay;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
mod service;
mod state;
pub mod stats;
#[cfg(feature = "serde")]
mod time;
#[cfg(feature = "trace")]
#[cfg_attr(docsrs, doc(cfg(feature = "trace")))]
pub mod trace;
mod window;

pub use circuit::{Circuit, Permit};
pub use classify::Verdict;
pub use config::{CircuitBreakerConfig, CircuitBreakerConfigBuilder, SlidingWindow};
pub use error::{CallError, CircuitOpen, RejectReason};
pub use fallback::{
    Fallback, FallbackCauseFn, FallbackFn, FallbackOnFailureToo, FallbackWithCause, NoFallback,
    TypedErrors,
};
pub use layer::CircuitBreakerLayer;
pub use registry::{CircuitBreakerRegistry, FallbackCause, RegistryConfig};
pub use service::CircuitBreaker;
pub use state::CircuitState;
pub use stats::{CircuitBreakerStats, ManualOverride, TransitionEvent, TransitionReason};

/// The boxed error of a [`CircuitBreaker`] without a fallback: the inner error, or a
/// [`CircuitOpen`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
