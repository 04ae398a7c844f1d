//! The registry: the seed's `CircuitBreakerService` keyed by `(service, operation)`.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{ServiceExt, service_fn};
use tower_circuit_breaker::config::ConfigPatch;
use tower_circuit_breaker::error::{CircuitOpen, RejectReason};
use tower_circuit_breaker::registry::{
    FallbackCause, KeyRefused, RegistryConfig, RegistryLimits, ServiceOverrides, on_failure_too,
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

// ===== limits (issue 11, item 4) =====

async fn ok(registry: &CircuitBreakerRegistry, service: &str, operation: &str) -> bool {
    registry
        .execute(
            service,
            operation,
            || async { Ok::<_, BoxError>(()) },
            NoFallback,
            &CircuitBreakerConfig::dynamodb(),
        )
        .await
        .is_ok()
}

/// Written against the API of c3fdb08: there, every key got a circuit (10 001).
#[tokio::test(start_paused = true)]
async fn distinct_keys_beyond_the_default_capacity_get_no_circuit_of_their_own() {
    let registry = CircuitBreakerRegistry::new();
    for i in 0..10_001 {
        assert!(ok(&registry, "tenant", &format!("op-{i}")).await);
    }
    assert_eq!(registry.len(), 10_000);
    assert!(registry.get("tenant", "op-10000").is_none());
}

/// Written against the API of c3fdb08: there, the name was copied into a circuit.
#[tokio::test(start_paused = true)]
async fn a_16_mib_operation_name_gets_no_circuit() {
    let registry = CircuitBreakerRegistry::new();
    let huge = "x".repeat(16 << 20);
    assert!(ok(&registry, "dynamodb", &huge).await);
    assert_eq!(registry.len(), 0);
    assert!(registry.get("dynamodb", &huge).is_none());
}

/// Written against the API of c3fdb08: there, idle circuits stayed forever (2 000).
#[tokio::test(start_paused = true)]
async fn idle_circuits_leave_as_new_keys_arrive() {
    let registry = CircuitBreakerRegistry::new();
    for i in 0..1_000 {
        assert!(ok(&registry, "old", &format!("op-{i}")).await);
    }
    tokio::time::advance(Duration::from_secs(16 * 60)).await;
    for i in 0..1_000 {
        assert!(ok(&registry, "new", &format!("op-{i}")).await);
    }
    assert!(registry.len() < 1_500, "{} circuits", registry.len());
    assert!(registry.get("new", "op-999").is_some());
}

fn limits(capacity: usize, idle: Duration) -> RegistryConfig {
    RegistryConfig {
        limits: RegistryLimits::builder()
            .capacity(capacity)
            .idle_timeout(idle)
            .build()
            .unwrap(),
        ..RegistryConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn keys_beyond_capacity_share_the_overflow_circuit_and_are_counted() {
    let registry = CircuitBreakerRegistry::with_config(limits(3, Duration::from_secs(3600)));
    for i in 0..3 {
        assert!(ok(&registry, "s", &format!("op-{i}")).await);
    }
    assert!(registry.overflow().is_none());
    assert_eq!(
        registry.try_circuit("s", "op-3", None).unwrap_err(),
        KeyRefused::Full { capacity: 3 }
    );
    // Through execute a refused key still runs, on the overflow circuit.
    assert!(ok(&registry, "s", "op-4").await);
    assert!(ok(&registry, "s", "op-5").await);
    let overflow = registry
        .overflow()
        .expect("made on the first refused execute");
    assert_eq!(overflow.name(), "(overflow)/(overflow)");
    assert_eq!(overflow.stats().success_count, 2);
    assert!(registry.circuit("s", "op-6", None).ptr_eq(&overflow));
    // Existing keys are unaffected.
    assert!(ok(&registry, "s", "op-0").await);
    assert_eq!(registry.stats("s", "op-0").unwrap().success_count, 2);
    let rs = registry.registry_stats();
    assert_eq!((rs.circuits, rs.capacity, rs.refused_full), (3, 3, 4));
    assert_eq!(registry.len(), 3);
    // The overflow circuit is one circuit: failures of refused keys open it for all.
    for i in 0..10 {
        fail(
            &registry,
            "s",
            &format!("bad-{i}"),
            &CircuitBreakerConfig::dynamodb(),
        )
        .await;
    }
    assert_eq!(overflow.state(), CircuitState::Open);
    let out: Result<(), BoxError> = registry
        .execute("s", "other", || async { Ok(()) }, NoFallback, None)
        .await;
    assert!(out.unwrap_err().is::<CircuitOpen>());
    assert_eq!(
        registry.stats("s", "op-0").unwrap().state,
        CircuitState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn a_name_over_the_limit_is_refused_with_a_typed_error() {
    let registry = CircuitBreakerRegistry::new();
    let long = "x".repeat(257);
    assert_eq!(
        registry.try_circuit("dynamodb", &long, None).unwrap_err(),
        KeyRefused::NameTooLong {
            field: "operation",
            length: 257,
            max: 256
        }
    );
    let e = registry.try_circuit(&long, "op", None).unwrap_err();
    assert!(e.to_string().contains("service name is 257 bytes"), "{e}");
    assert!(registry.try_circuit("dynamodb", &long[..256], None).is_ok());
    assert_eq!(registry.registry_stats().refused_name_too_long, 2);
    assert_eq!(registry.len(), 1);
}

#[test]
fn invalid_limits_are_refused_naming_the_field() {
    let e = RegistryLimits::builder().capacity(0).build().unwrap_err();
    assert_eq!(e.field(), "capacity");
    let e = RegistryLimits::builder()
        .max_name_length(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_name_length");
    let e = RegistryLimits::builder()
        .max_name_length(64 * 1024 + 1)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_name_length");
    let e = RegistryLimits::builder()
        .idle_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "idle_timeout");
    let d = RegistryLimits::default();
    assert_eq!(
        (d.capacity(), d.max_name_length(), d.idle_timeout()),
        (10_000, 256, Duration::from_secs(900))
    );
}

#[tokio::test(start_paused = true)]
async fn evict_idle_forgets_only_idle_circuits_and_held_handles_keep_working() {
    let idle = Duration::from_secs(60);
    let registry = CircuitBreakerRegistry::with_config(limits(100, idle));
    let transitions = Arc::new(Mutex::new(0));
    let t = transitions.clone();
    registry.on_transition(move |_| *t.lock().unwrap() += 1);
    let config = CircuitBreakerConfig::dynamodb();
    let held = registry.circuit("s", "held", &config);
    assert!(ok(&registry, "s", "held").await);
    registry.circuit("s", "forced", &config).force_open();
    for _ in 0..10 {
        fail(&registry, "s", "open", &config).await;
    }
    assert_eq!(
        registry.stats("s", "open").unwrap().state,
        CircuitState::Open
    );
    // A call in flight through execute keeps its circuit.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let r2 = registry.clone();
    let in_flight = tokio::spawn(async move {
        r2.execute(
            "s",
            "in-flight",
            || async move {
                rx.await.unwrap();
                Ok::<_, BoxError>(())
            },
            NoFallback,
            None,
        )
        .await
    });
    tokio::task::yield_now().await;
    // Too early: nothing is idle yet.
    assert_eq!(registry.evict_idle(), 0);
    tokio::time::advance(idle).await;
    let before = registry.len();
    assert_eq!(before, 4);
    // Only `held` is idle (Closed, empty window, unused for `idle`).
    assert_eq!(registry.evict_idle(), 1);
    assert!(registry.get("s", "held").is_none());
    assert!(registry.get("s", "forced").is_some());
    assert!(registry.get("s", "open").is_some());
    assert!(registry.get("s", "in-flight").is_some());
    assert_eq!(registry.registry_stats().evicted, 1);
    // The handle held elsewhere still works, on the evicted circuit.
    let out = held.call(async { Ok::<_, io::Error>(7) }).await;
    assert_eq!(out.unwrap(), 7);
    assert_eq!(held.stats().success_count, 2);
    // The registry makes a fresh circuit for the key, with its listeners.
    let fresh = registry.circuit("s", "held", &config);
    assert!(!fresh.ptr_eq(&held));
    assert_eq!(
        fresh.stats().success_count,
        0,
        "eviction forgets lifetime counts"
    );
    let seen = *transitions.lock().unwrap();
    fresh.force_open();
    assert_eq!(*transitions.lock().unwrap(), seen + 1);
    tx.send(()).unwrap();
    in_flight.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_circuit_with_outcomes_in_its_window_is_not_idle() {
    // The window (60 s for dynamodb) is longer than the idle time.
    let registry = CircuitBreakerRegistry::with_config(limits(100, Duration::from_secs(10)));
    assert!(ok(&registry, "s", "busy").await);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(registry.evict_idle(), 0);
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(registry.evict_idle(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_registry_makes_room_by_evicting_idle_circuits_lazily() {
    let registry = CircuitBreakerRegistry::with_config(limits(64, Duration::from_secs(60)));
    for i in 0..64 {
        assert!(ok(&registry, "s", &format!("old-{i}")).await);
    }
    tokio::time::advance(Duration::from_secs(61)).await;
    for i in 0..200 {
        assert!(ok(&registry, "s", &format!("new-{i}")).await);
    }
    // The 64 old keys sit in random shards; a shard is swept when new keys land in it.
    let rs = registry.registry_stats();
    assert_eq!(rs.circuits, 64);
    assert!(rs.evicted >= 32, "{rs:?}");
    assert_eq!(rs.refused_full, 200 - rs.evicted, "{rs:?}");
    // An explicit sweep takes the rest; the new circuits are not idle.
    let rest = registry.evict_idle() as u64;
    assert_eq!(rs.evicted + rest, 64);
    assert_eq!(registry.len() as u64, 64 - rest);
    assert!(
        registry
            .all_stats()
            .iter()
            .all(|k| k.operation.starts_with("new-"))
    );
}

#[tokio::test(start_paused = true)]
async fn apply_config_changes_the_limits() {
    let registry = CircuitBreakerRegistry::new();
    assert!(ok(&registry, "s", "a").await);
    registry
        .apply_config(limits(1, Duration::from_secs(60)))
        .unwrap();
    assert_eq!(
        registry.try_circuit("s", "b", None).unwrap_err(),
        KeyRefused::Full { capacity: 1 }
    );
    assert_eq!(registry.config().limits.capacity(), 1);
}

#[cfg(feature = "serde")]
#[test]
fn limits_are_read_from_documents_checked_and_written_back() {
    let toml = r#"
        [limits]
        capacity = 500
        max_name_length = 64
        idle_timeout = "2m"
    "#;
    let config = RegistryConfig::from_toml(toml).unwrap();
    let l = config.limits;
    assert_eq!(
        (l.capacity(), l.max_name_length(), l.idle_timeout()),
        (500, 64, Duration::from_secs(120))
    );
    let json = r#"{ "limits": { "capacity": 7 } }"#;
    let config = RegistryConfig::from_json(json).unwrap();
    assert_eq!(config.limits.capacity(), 7);
    assert_eq!(config.limits.max_name_length(), 256);
    // Round trip; the defaults are not written out.
    let back = RegistryConfig::from_toml(&config.to_toml().unwrap()).unwrap();
    assert_eq!(back, config);
    assert!(
        !RegistryConfig::default()
            .to_toml()
            .unwrap()
            .contains("limits")
    );
    let back = RegistryConfig::from_json(&config.to_json().unwrap()).unwrap();
    assert_eq!(back, config);
    // Bad values name the table and the field.
    let err = RegistryConfig::from_toml("[limits]\ncapacity = 0\n").unwrap_err();
    assert_eq!(
        (err.key(), err.field()),
        ("limits", Some("capacity")),
        "{err}"
    );
    let err = RegistryConfig::from_json(r#"{ "limits": { "idle_timeout": "0s" } }"#).unwrap_err();
    assert_eq!(
        (err.key(), err.field()),
        ("limits", Some("idle_timeout")),
        "{err}"
    );
    let err = RegistryConfig::from_json(r#"{ "limits": { "idle_timeout": 60 } }"#).unwrap_err();
    assert_eq!(
        (err.key(), err.field()),
        ("limits", Some("idle_timeout")),
        "{err}"
    );
    let err = RegistryConfig::from_json(r#"{ "limits": { "capacty": 5 } }"#).unwrap_err();
    assert_eq!(err.key(), "limits", "{err}");
    assert!(err.message().contains("capacty"), "{err}");
}

/// Lookups read a copy of the table per thread stripe: an evicted key is gone from every
/// copy, and a key made on one thread is found from every other.
#[tokio::test(start_paused = true)]
async fn every_thread_sees_inserts_and_evictions() {
    let registry = CircuitBreakerRegistry::with_config(limits(1_000, Duration::from_secs(60)));
    for i in 0..100 {
        assert!(ok(&registry, "s", &format!("op-{i}")).await);
    }
    let look = |registry: &CircuitBreakerRegistry| {
        std::thread::scope(|scope| {
            (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..100)
                            .filter(|i| registry.get("s", &format!("op-{i}")).is_some())
                            .count()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(look(&registry), [100; 8]);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(registry.evict_idle(), 100);
    assert_eq!(look(&registry), [0; 8]);
    assert_eq!(registry.len(), 0);
}

// ===== execute_with: a classifier for the operation's Result =====

mod execute_with;
