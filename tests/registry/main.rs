//! The registry: the seed's `CircuitBreakerService` keyed by `(service, operation)`.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{ServiceExt, service_fn};
use tower_circuit_breaker::config::ConfigPatch;
use tower_circuit_breaker::error::{CircuitOpen, RejectReason};
use tower_circuit_breaker::registry::{
    FallbackCause, RegistryConfig, ServiceOverrides, on_failure_too,
};
use tower_circuit_breaker::{
    BoxError, CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState, NoFallback,
};

#[derive(Debug, PartialEq)]
enum DbError {
    Down,
    Unavailable,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for DbError {}

async fn fail(
    registry: &CircuitBreakerRegistry,
    service: &str,
    operation: &str,
    config: &CircuitBreakerConfig,
) {
    let _: Result<(), BoxError> = registry
        .execute(
            service,
            operation,
            || async { Err(DbError::Down.into()) },
            NoFallback,
            config,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_racing_for_one_key_get_one_circuit() {
    let registry = CircuitBreakerRegistry::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (registry, barrier) = (registry.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                registry.circuit(
                    "dynamodb",
                    "storeUserMessage",
                    &CircuitBreakerConfig::dynamodb(),
                )
            })
        })
        .collect();
    let mut circuits = Vec::new();
    for t in tasks {
        circuits.push(t.await.unwrap());
    }
    assert!(circuits.iter().all(|c| c.ptr_eq(&circuits[0])));
    assert_eq!(registry.len(), 1);
    assert_eq!(circuits[0].name(), "dynamodb/storeUserMessage");
}

#[tokio::test(start_paused = true)]
async fn execute_runs_the_fallback_when_open_and_not_when_closed() {
    let registry = CircuitBreakerRegistry::new();
    let config = CircuitBreakerConfig::dynamodb();
    let fallback_runs = Arc::new(Mutex::new(0));
    let exec = |ok: bool| {
        let (registry, config, runs) = (registry.clone(), config.clone(), fallback_runs.clone());
        async move {
            registry
                .execute(
                    "dynamodb",
                    "storeUserMessage",
                    || async move { if ok { Ok("stored") } else { Err(DbError::Down) } },
                    |cause: FallbackCause<DbError>| async move {
                        assert!(matches!(cause, FallbackCause::Rejected(ref o) if o.reason() == RejectReason::Open));
                        *runs.lock().unwrap() += 1;
                        Err(DbError::Unavailable)
                    },
                    &config,
                )
                .await
        }
    };
    assert_eq!(exec(true).await, Ok("stored"));
    // Failures pass through unchanged: the fallback answers rejections only. The 4th
    // failure makes 5 requests with a run of 4: the circuit opens.
    for _ in 0..4 {
        assert_eq!(exec(false).await, Err(DbError::Down));
    }
    assert_eq!(*fallback_runs.lock().unwrap(), 0);
    assert_eq!(
        registry
            .get("dynamodb", "storeUserMessage")
            .unwrap()
            .state(),
        CircuitState::Open
    );
    // Open: the operation does not run, the fallback answers.
    assert_eq!(exec(true).await, Err(DbError::Unavailable));
    assert_eq!(*fallback_runs.lock().unwrap(), 1);
    let stats = registry.stats("dynamodb", "storeUserMessage").unwrap();
    assert_eq!(
        (
            stats.success_count,
            stats.failure_count,
            stats.rejected_count
        ),
        (1, 4, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_fallback_on_failure_too_answers_failed_operations() {
    let registry = CircuitBreakerRegistry::new();
    let out = registry
        .execute(
            "apigateway-management",
            "postToConnection",
            || async { Err::<&str, _>(DbError::Down) },
            on_failure_too(|cause: FallbackCause<DbError>| async move {
                match cause {
                    FallbackCause::Failed(DbError::Down) => Ok("queued for retry"),
                    other => panic!("unexpected {other:?}"),
                }
            }),
            &CircuitBreakerConfig::api_gateway_management(),
        )
        .await;
    assert_eq!(out, Ok("queued for retry"));
    // The failure still counts.
    assert_eq!(
        registry
            .stats("apigateway-management", "postToConnection")
            .unwrap()
            .failure_count,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_fallback_inner_errors_pass_through_and_rejections_are_circuit_open() {
    let registry = CircuitBreakerRegistry::new();
    let config = CircuitBreakerConfig::dynamodb();
    let run = || {
        registry.execute(
            "dynamodb",
            "removeConnection",
            || async { Err::<(), BoxError>(Box::new(DbError::Down)) },
            NoFallback,
            &config,
        )
    };
    let err = run().await.unwrap_err();
    assert_eq!(err.downcast_ref::<DbError>(), Some(&DbError::Down));
    for _ in 0..4 {
        let _ = run().await;
    }
    let err = run().await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("a rejection");
    assert_eq!(open.circuit(), "dynamodb/removeConnection");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(20)));
}

#[tokio::test(start_paused = true)]
async fn two_keys_never_share_state() {
    let registry = CircuitBreakerRegistry::new();
    let config = CircuitBreakerConfig::dynamodb();
    for _ in 0..5 {
        fail(&registry, "dynamodb", "storeUserMessage", &config).await;
    }
    let user = registry.get("dynamodb", "storeUserMessage").unwrap();
    let bot = registry.circuit("dynamodb", "storeBotMessage", &config);
    assert_eq!(user.state(), CircuitState::Open);
    assert_eq!(bot.state(), CircuitState::Closed);
    assert_eq!(bot.stats().total_requests, 0);
    // Same operation name under another service is another key too.
    assert!(registry.get("cognito", "storeUserMessage").is_none());
    assert!(
        !registry
            .circuit("cognito", "storeUserMessage", None)
            .ptr_eq(&user)
    );
}

#[tokio::test(start_paused = true)]
async fn stats_reset_and_force_open_by_key() {
    let registry = CircuitBreakerRegistry::new();
    assert!(registry.stats("cognito", "verifyJWT").is_none());
    assert!(!registry.reset("cognito", "verifyJWT"));
    let c = registry.circuit("cognito", "verifyJWT", &CircuitBreakerConfig::cognito());
    registry.circuit("apigateway-management", "postToConnection", None);
    registry.circuit("dynamodb", "storeUserMessage", None);
    assert!(registry.force_open("cognito", "verifyJWT"));
    assert_eq!(c.state(), CircuitState::Open);
    let all = registry.all_stats();
    let keys: Vec<_> = all
        .iter()
        .map(|k| (k.service.as_str(), k.operation.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("apigateway-management", "postToConnection"),
            ("cognito", "verifyJWT"),
            ("dynamodb", "storeUserMessage")
        ]
    );
    assert_eq!(all[1].stats.state, CircuitState::Open);
    assert!(registry.reset("cognito", "verifyJWT"));
    assert_eq!(c.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_registry_default_serves_calls_without_a_config() {
    let default = CircuitBreakerConfig::builder()
        .failure_threshold(2)
        .minimum_request_count(2)
        .build()
        .unwrap();
    let registry = CircuitBreakerRegistry::with_config(RegistryConfig {
        default: default.clone(),
        ..Default::default()
    });
    assert_eq!(registry.circuit("any", "thing", None).config(), default);
    // A call-site configuration wins over the default.
    assert_eq!(
        registry
            .circuit("dynamodb", "x", &CircuitBreakerConfig::dynamodb())
            .config(),
        CircuitBreakerConfig::dynamodb()
    );
}

fn patch(f: impl FnOnce(&mut ConfigPatch)) -> ConfigPatch {
    let mut p = ConfigPatch::default();
    f(&mut p);
    p
}

#[tokio::test(start_paused = true)]
async fn overrides_per_operation_beat_per_service_beat_the_call_site() {
    let mut config = RegistryConfig::default();
    config.services.insert(
        "dynamodb".into(),
        ServiceOverrides {
            all: patch(|p| {
                p.failure_threshold = Some(4);
                p.recovery_timeout = Some(Duration::from_secs(10));
            }),
            operations: [(
                "storeUserMessage".to_string(),
                patch(|p| p.failure_threshold = Some(2)),
            )]
            .into(),
        },
    );
    let registry = CircuitBreakerRegistry::with_config(config);
    let user = registry
        .circuit(
            "dynamodb",
            "storeUserMessage",
            &CircuitBreakerConfig::dynamodb(),
        )
        .config();
    let bot = registry
        .circuit(
            "dynamodb",
            "storeBotMessage",
            &CircuitBreakerConfig::dynamodb(),
        )
        .config();
    let jwt = registry
        .circuit("cognito", "verifyJWT", &CircuitBreakerConfig::cognito())
        .config();
    assert_eq!(
        (user.failure_threshold(), user.recovery_timeout()),
        (2, Duration::from_secs(10))
    );
    assert_eq!(
        (bot.failure_threshold(), bot.recovery_timeout()),
        (4, Duration::from_secs(10))
    );
    assert_eq!(jwt, CircuitBreakerConfig::cognito());
    // Fields nobody overrode keep the call site's value.
    assert_eq!(user.expected_response_time(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn a_reapplied_config_lowers_a_threshold_and_the_next_failure_trips_with_counts_intact() {
    let registry = CircuitBreakerRegistry::new();
    let config = CircuitBreakerConfig::dynamodb()
        .to_builder()
        .failure_threshold(10)
        .build()
        .unwrap();
    let c = registry.circuit("dynamodb", "storeUserMessage", &config);
    for _ in 0..6 {
        fail(&registry, "dynamodb", "storeUserMessage", &config).await;
    }
    assert_eq!(c.state(), CircuitState::Closed);
    let before = c.stats();

    let mut doc = RegistryConfig::default();
    doc.services.insert(
        "dynamodb".into(),
        ServiceOverrides {
            all: patch(|p| p.failure_threshold = Some(3)),
            ..Default::default()
        },
    );
    registry.apply_config(doc).unwrap();
    assert_eq!(c.config().failure_threshold(), 3);
    assert_eq!(c.stats(), before, "reconfiguring changes no count");

    fail(&registry, "dynamodb", "storeUserMessage", &config).await;
    assert_eq!(c.state(), CircuitState::Open);
    assert_eq!(c.stats().failure_count, 7);
}

#[tokio::test(start_paused = true)]
async fn a_bad_config_changes_nothing_and_names_the_key_and_field() {
    let registry = CircuitBreakerRegistry::new();
    let c = registry.circuit(
        "dynamodb",
        "storeUserMessage",
        &CircuitBreakerConfig::dynamodb(),
    );
    let before_config = registry.config();
    let mut doc = RegistryConfig::default();
    doc.services.insert(
        "cognito".into(),
        ServiceOverrides {
            all: patch(|p| p.failure_threshold = Some(1)),
            ..Default::default()
        },
    );
    doc.services.insert(
        "dynamodb".into(),
        ServiceOverrides {
            operations: [(
                "storeUserMessage".to_string(),
                patch(|p| p.recovery_timeout = Some(Duration::ZERO)),
            )]
            .into(),
            ..Default::default()
        },
    );
    let err = registry.apply_config(doc).unwrap_err();
    assert_eq!(err.key(), "services.dynamodb.operations.storeUserMessage");
    assert_eq!(err.field(), Some("recovery_timeout"));
    assert!(err.to_string().contains("recovery_timeout"), "{err}");
    assert_eq!(registry.config(), before_config);
    assert_eq!(c.config(), CircuitBreakerConfig::dynamodb());
}

#[tokio::test(start_paused = true)]
async fn a_tower_stack_and_execute_share_one_circuit() {
    let registry = CircuitBreakerRegistry::new();
    let config = CircuitBreakerConfig::dynamodb();
    let layer = registry.layer("dynamodb", "storeUserMessage", &config);
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: ()| async {
            Err::<(), _>(io::Error::other("down"))
        }));
    for _ in 0..5 {
        let _ = svc.clone().oneshot(()).await;
    }
    // Tripped by the tower stack; execute sees it open.
    let out = registry
        .execute(
            "dynamodb",
            "storeUserMessage",
            || async { Ok::<_, DbError>("stored") },
            |_: FallbackCause<DbError>| async { Err(DbError::Unavailable) },
            &config,
        )
        .await;
    assert_eq!(out, Err(DbError::Unavailable));
}

#[tokio::test(start_paused = true)]
async fn registry_listeners_hear_every_circuit_with_its_key() {
    let registry = CircuitBreakerRegistry::new();
    let early = registry.circuit(
        "dynamodb",
        "storeUserMessage",
        &CircuitBreakerConfig::dynamodb(),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    registry.on_transition(move |e| {
        s.lock()
            .unwrap()
            .push((e.service.to_string(), e.operation.to_string(), e.from, e.to));
    });
    let late = registry.circuit("cognito", "verifyJWT", &CircuitBreakerConfig::cognito());
    early.force_open();
    late.force_open();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (
                "dynamodb".into(),
                "storeUserMessage".into(),
                CircuitState::Closed,
                CircuitState::Open
            ),
            (
                "cognito".into(),
                "verifyJWT".into(),
                CircuitState::Closed,
                CircuitState::Open
            ),
        ]
    );
}

/// `execute` with an operation that never completes and is never dropped, then a healthy
/// dependency: on c3fdb08 3 000 of 3 000 calls at +1 min, +1 h and +7 days were turned
/// away (to the fallback) as "half-open, probes in flight". Now the first one after the
/// probe deadline is the fresh probe.
#[tokio::test(start_paused = true)]
async fn execute_behind_a_hung_probe_is_not_wedged() {
    let registry = CircuitBreakerRegistry::new();
    let config = CircuitBreakerConfig::dynamodb();
    for _ in 0..5 {
        fail(&registry, "dynamodb", "putItem", &config).await;
    }
    let circuit = registry.circuit("dynamodb", "putItem", &config);
    assert_eq!(circuit.state(), CircuitState::Open);
    tokio::time::advance(config.recovery_timeout()).await;

    let hung = registry.execute(
        "dynamodb",
        "putItem",
        std::future::pending::<Result<u32, BoxError>>,
        NoFallback,
        &config,
    );
    let mut hung = tokio_test::task::spawn(hung);
    assert!(hung.poll().is_pending());
    assert_eq!(circuit.state(), CircuitState::HalfOpen);

    let mut fell_back = 0;
    for wait in [60, 3_600, 7 * 24 * 3_600] {
        tokio::time::advance(Duration::from_secs(wait)).await;
        for _ in 0..1_000 {
            let out: Result<u32, BoxError> = registry
                .execute(
                    "dynamodb",
                    "putItem",
                    || async { Ok(1) },
                    |_cause: FallbackCause<BoxError>| async { Ok(0) },
                    &config,
                )
                .await;
            fell_back += usize::from(out.unwrap() == 0);
        }
        assert!(hung.poll().is_pending());
    }
    assert_eq!(fell_back, 0, "calls turned away out of 3 000");
    assert_eq!(circuit.state(), CircuitState::Closed);
}
