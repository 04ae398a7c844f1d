//! The `metrics` output after a scripted sequence, read back through a debugging recorder.
#![cfg(feature = "metrics")]

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tower_circuit_breaker::classify::Verdict;
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState};

fn snapshotter() -> &'static Snapshotter {
    static SNAP: OnceLock<Snapshotter> = OnceLock::new();
    SNAP.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        recorder
            .install()
            .expect("first recorder in this test binary");
        snap
    })
}

/// The debugging recorder's snapshot *drains* counters and gauges, so tests run one at a
/// time and every snapshot is folded into one store: counters add up, gauges keep the
/// value of the last snapshot in which they were set.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

type Labels = Vec<(String, String)>;

fn store() -> &'static Mutex<HashMap<(String, Labels), DebugValue>> {
    static STORE: OnceLock<Mutex<HashMap<(String, Labels), DebugValue>>> = OnceLock::new();
    STORE.get_or_init(Default::default)
}

/// The value of metric `name` whose labels include all of `labels`.
fn value(name: &str, labels: &[(&str, &str)]) -> Option<DebugValue> {
    let mut store = store().lock().unwrap();
    for (key, _, _, v) in snapshotter().snapshot().into_vec() {
        let k = key.key();
        let mut ls: Labels = k
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        ls.sort();
        let slot = (k.name().to_owned(), ls);
        match (store.get_mut(&slot), v) {
            (Some(DebugValue::Counter(total)), DebugValue::Counter(n)) => *total += n,
            (_, v) => {
                store.insert(slot, v);
            }
        }
    }
    store
        .iter()
        .find(|((n, ls), _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| match v {
            DebugValue::Counter(n) => DebugValue::Counter(*n),
            DebugValue::Gauge(g) => DebugValue::Gauge(*g),
            DebugValue::Histogram(h) => DebugValue::Histogram(h.clone()),
        })
}

fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(name, labels) {
        Some(DebugValue::Counter(n)) => n,
        None => 0,
        other => panic!("{name} {labels:?} is not a counter: {other:?}"),
    }
}

fn gauge(name: &str, labels: &[(&str, &str)]) -> f64 {
    match value(name, labels) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name} {labels:?} is not a gauge: {other:?}"),
    }
}

#[derive(Debug)]
struct Down;

#[tokio::test(start_paused = true)]
async fn counters_and_state_gauge_follow_a_scripted_outage() {
    let _serial = serial().await;
    snapshotter();
    let registry = CircuitBreakerRegistry::new();
    let config = CircuitBreakerConfig::dynamodb();
    let (svc, op) = ("dynamodb", "storeUserMessage");
    let circuit = registry.circuit(svc, op, &config);
    let calls = |outcome| {
        counter(
            "circuit_breaker_calls_total",
            &[("service", svc), ("operation", op), ("outcome", outcome)],
        )
    };
    let state = || {
        gauge(
            "circuit_breaker_state",
            &[("service", svc), ("operation", op)],
        )
    };
    assert_eq!(state(), 0.0);

    // Two successes, one of them slow (600 ms > 500 ms expected).
    circuit.call(async { Ok::<_, Down>(()) }).await.unwrap();
    circuit
        .call(async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Ok::<_, Down>(())
        })
        .await
        .unwrap();
    // One ignored call.
    let _ = circuit
        .call_with(&|_: &Result<(), Down>| Verdict::Ignored, async {
            Err(Down)
        })
        .await;
    // Failures until it opens: the slow success started the run, so 2 more failures make
    // 3 consecutive among 4 requests; the 5th request (a failure) trips it.
    for _ in 0..3 {
        let _ = circuit.call(async { Err::<(), _>(Down) }).await;
    }
    assert_eq!(circuit.state(), CircuitState::Open);
    assert_eq!(state(), 2.0);
    // Two rejections.
    for _ in 0..2 {
        assert!(circuit.call(async { Ok::<_, Down>(()) }).await.is_err());
    }
    // The probe succeeds after the recovery timeout.
    tokio::time::advance(Duration::from_secs(20)).await;
    circuit.call(async { Ok::<_, Down>(()) }).await.unwrap();
    assert_eq!(circuit.state(), CircuitState::Closed);
    // Read the gauge before anything else snapshots (a snapshot drains it).
    assert_eq!(state(), 0.0);

    assert_eq!(calls("success"), 3);
    assert_eq!(calls("failure"), 3);
    assert_eq!(calls("slow"), 1);
    assert_eq!(calls("ignored"), 1);
    assert_eq!(calls("rejected"), 2);
    let transitions = |from, to| {
        counter(
            "circuit_breaker_transitions_total",
            &[
                ("service", svc),
                ("operation", op),
                ("from", from),
                ("to", to),
            ],
        )
    };
    assert_eq!(transitions("closed", "open"), 1);
    assert_eq!(transitions("open", "half_open"), 1);
    assert_eq!(transitions("half_open", "closed"), 1);

    // The counters agree with the circuit's own stats.
    let s = circuit.stats();
    assert_eq!((s.success_count, s.failure_count, s.slow_count), (3, 3, 1));
    assert_eq!((s.ignored_count, s.rejected_count), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn two_keys_have_their_own_series() {
    let _serial = serial().await;
    snapshotter();
    let registry = CircuitBreakerRegistry::new();
    let a = registry.circuit(
        "apigateway-management",
        "postToConnection",
        &CircuitBreakerConfig::api_gateway_management(),
    );
    let b = registry.circuit("cognito", "verifyJWT", &CircuitBreakerConfig::cognito());
    a.call(async { Ok::<_, Down>(()) }).await.unwrap();
    let _ = b.call(async { Err::<(), _>(Down) }).await;
    let calls = |s, o, outcome| {
        counter(
            "circuit_breaker_calls_total",
            &[("service", s), ("operation", o), ("outcome", outcome)],
        )
    };
    assert_eq!(
        calls("apigateway-management", "postToConnection", "success"),
        1
    );
    assert_eq!(
        calls("apigateway-management", "postToConnection", "failure"),
        0
    );
    assert_eq!(calls("cognito", "verifyJWT", "failure"), 1);
    assert_eq!(calls("cognito", "verifyJWT", "success"), 0);
}

/// No label value is empty (CloudWatch rejects an empty dimension value): a circuit made
/// by name reports `"-"` as its operation; `for_operation` on the layer reports both.
#[tokio::test(start_paused = true)]
async fn named_circuits_have_a_non_empty_operation_label() {
    use tower::ServiceExt;
    use tower_circuit_breaker::CircuitBreakerLayer;
    use tower_circuit_breaker::metrics::{CALLS, NO_OPERATION, STATE, TRANSITIONS};
    let _serial = serial().await;
    snapshotter();
    let config = CircuitBreakerConfig::dynamodb();
    let named = CircuitBreakerLayer::named("metrics-named", config.clone());
    let op = CircuitBreakerLayer::for_operation("metrics-svc", "metrics-op", config.clone());
    assert_eq!(op.circuit().name(), "metrics-svc/metrics-op");
    let empty = tower_circuit_breaker::Circuit::for_operation("metrics-empty", "", config);
    for layer in [named, op] {
        let circuit = layer.circuit().clone();
        let svc = tower::ServiceBuilder::new()
            .layer(layer)
            .service_fn(|()| async { Ok::<_, tower_circuit_breaker::BoxError>(()) });
        svc.oneshot(()).await.unwrap();
        circuit.force_open();
    }
    empty.call(async { Ok::<_, Down>(()) }).await.unwrap();
    // Read the gauge before anything else snapshots (a snapshot drains it).
    assert_eq!(
        gauge(STATE, &[("service", "metrics-named"), ("operation", "-")]),
        2.0
    );

    let calls = |s, o| {
        counter(
            CALLS,
            &[("service", s), ("operation", o), ("outcome", "success")],
        )
    };
    assert_eq!(NO_OPERATION, "-");
    assert_eq!(calls("metrics-named", "-"), 1);
    assert_eq!(calls("metrics-svc", "metrics-op"), 1);
    assert_eq!(calls("metrics-empty", "-"), 1);
    let opened = |s, o| {
        counter(
            TRANSITIONS,
            &[
                ("service", s),
                ("operation", o),
                ("from", "closed"),
                ("to", "open"),
            ],
        )
    };
    assert_eq!(opened("metrics-named", "-"), 1);
    assert_eq!(opened("metrics-svc", "metrics-op"), 1);
    // Nothing this binary recorded has an empty label value.
    let store = store().lock().unwrap();
    for ((name, labels), _) in store.iter() {
        assert!(
            labels.iter().all(|(_, v)| !v.is_empty()),
            "{name} {labels:?} has an empty label"
        );
    }
}
