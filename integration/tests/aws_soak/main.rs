//! Chaos soak: a real DynamoDB SDK client built with `aws_client!` (breaker around the
//! SDK's own HTTPS connector) against the test crate's fault server, whose health flaps
//! between healthy, erroring (500), slow (answers after more than the expected response
//! time) and black-holed (reads the request, never answers: the SDK's attempt timeout
//! drops the attempt, a failure for the breaker).
//!
//! Operations run in concurrent batches of four, so half-open probes race. Checked, from
//! the circuit's own events and stats and from the order of things, never from a clock:
//!
//! * **no extra probes**: whenever an attempt reaches the wire, the circuit's own count of
//!   half-open probes in flight (which includes that attempt if it is a probe) is at most
//!   `half_open_max_calls`;
//! * **recovers at once**: in a healthy phase the circuit never opens; a rejection there
//!   is `Open` only until its own `retry_after` has passed (the soak then waits exactly
//!   that long, as a client honouring it would; the circuit's coarse clock may make that
//!   one clock tick, at most 4 ms, more), after which the next batch is admitted as probes
//!   and the circuit closes within `half_open_max_calls` probes;
//! * **no hang**: every operation ends within a generous bound of its attempt timeouts;
//! * **exact accounting**: attempts on the wire = successes + failures + ignored, and
//!   rejected operations = rejected count (the SDK never retries a rejection); the
//!   events form one unbroken chain.
//!
//! `TCB_SOAK_OPS` sets the number of operations (default 3000; the long form is e.g.
//! `TCB_SOAK_OPS=100000 cargo test --features aws --test aws_soak -- --nocapture`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

use aws_sdk_dynamodb::types::AttributeValue;
use support::{CountingHttpClient, FaultServer, Mode, default_http_client, sdk_config_in};
use tower_circuit_breaker::aws::circuit_rejection;
use tower_circuit_breaker::error::RejectReason;
use tower_circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState, aws_client,
};

use CircuitState::{Closed, HalfOpen, Open};

const RECOVERY: Duration = Duration::from_millis(100);
const EXPECTED: Duration = Duration::from_millis(200);
const SLOW: Duration = Duration::from_millis(400);
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(600);
/// An operation that takes longer than this has hung (3 attempts and their backoff fit
/// many times over).
const HANG: Duration = Duration::from_secs(20);
const HALF_OPEN_MAX: u32 = 2;
/// The coarsest clock tick a circuit accepts for its coarse time source.
const COARSE_TICK: Duration = Duration::from_millis(4);
const BATCH: usize = 4;
const KEY: (&str, &str) = ("dynamodb", "PutItem");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Healthy,
    Erroring,
    Slow,
    BlackHole,
}

impl Health {
    fn mode(self) -> Mode {
        match self {
            Health::Healthy => Mode::ok(),
            Health::Erroring => Mode::dynamodb_error(500, "InternalServerError"),
            Health::Slow => Mode::Delay(SLOW),
            Health::BlackHole => Mode::BlackHole,
        }
    }
}

/// An SDK `HttpClient` in front of the wire that looks, at every attempt the breaker lets
/// through, at how many half-open probes the circuit has in flight, and keeps the highest.
#[derive(Clone, Debug)]
struct ProbeWatch {
    inner: SharedHttpClient,
    registry: CircuitBreakerRegistry,
    most: Arc<AtomicU32>,
}

impl HttpClient for ProbeWatch {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(ProbeWatchConnector {
            inner: self.inner.http_connector(settings, components),
            watch: self.clone(),
        })
    }
}

#[derive(Debug)]
struct ProbeWatchConnector {
    inner: SharedHttpConnector,
    watch: ProbeWatch,
}

impl HttpConnector for ProbeWatchConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        if let Some(s) = self.watch.registry.stats(KEY.0, KEY.1) {
            self.watch
                .most
                .fetch_max(s.half_open_in_flight, Ordering::SeqCst);
        }
        self.inner.call(request)
    }
}

#[derive(Debug)]
enum Outcome {
    Ok,
    Rejected(RejectReason, Option<Duration>),
    Failed,
}

/// Every transition, in order.
type Log = Arc<Mutex<Vec<(CircuitState, CircuitState)>>>;

fn ops() -> usize {
    std::env::var("TCB_SOAK_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_dependency_never_wedges_the_circuit() {
    let server = FaultServer::start(Mode::ok()).await;
    let wire = CountingHttpClient::new(default_http_client());
    let registry = CircuitBreakerRegistry::new();
    let log: Log = Arc::default();
    let sink = log.clone();
    registry.on_transition(move |e| sink.lock().unwrap().push((e.from, e.to)));
    let most_probes = Arc::new(AtomicU32::new(0));
    let watch = ProbeWatch {
        inner: SharedHttpClient::new(wire.clone()),
        registry: registry.clone(),
        most: most_probes.clone(),
    };
    let conf = sdk_config_in(&server.url(), "soak-1", Some(ATTEMPT_TIMEOUT));
    let config = CircuitBreakerConfig::dynamodb()
        .to_builder()
        .recovery_timeout(RECOVERY)
        .expected_response_time(EXPECTED)
        .half_open_max_calls(HALF_OPEN_MAX)
        .build()
        .unwrap();
    let ddb = aws_client!(aws_sdk_dynamodb, &conf, &registry, config, inner = watch);

    let total = ops();
    // Phases: healthy between every fault; fault phases are short (once open, their
    // operations are rejected in microseconds), healthy ones long.
    let faults = [
        Health::Erroring,
        Health::Slow,
        Health::Erroring,
        Health::BlackHole,
    ];
    let mut done = 0;
    let mut phase = 0;
    let (mut ok, mut failed, mut rejected) = (0usize, 0usize, 0usize);
    let mut waits = 0;
    let mut tick_rewaits = 0;
    let mut per_health = std::collections::BTreeMap::<&str, usize>::new();
    while done < total {
        let health = if phase % 2 == 0 {
            Health::Healthy
        } else {
            faults[(phase / 2) % faults.len()]
        };
        let len = match health {
            Health::Healthy => 120,
            Health::Slow | Health::BlackHole => 12,
            Health::Erroring => 60,
        }
        .min(total - done);
        server.set_mode(health.mode());
        let events_before = log.lock().unwrap().len();
        let mut phase_ops = 0;
        let mut waited_in_phase = false;
        let mut probes_admitted_after_wait = false;
        while phase_ops < len {
            let n = BATCH.min(len - phase_ops);
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                let ddb = ddb.clone();
                set.spawn(async move {
                    let op = ddb
                        .put_item()
                        .table_name("connections")
                        .item("connectionId", AttributeValue::S("c".into()))
                        .send();
                    match tokio::time::timeout(HANG, op).await {
                        Err(_) => panic!("an operation hung past {HANG:?}"),
                        Ok(Ok(_)) => Outcome::Ok,
                        Ok(Err(e)) => match circuit_rejection(&e) {
                            Some(open) => Outcome::Rejected(open.reason(), open.retry_after()),
                            None => Outcome::Failed,
                        },
                    }
                });
            }
            let mut retry_after = None;
            let mut admitted = 0;
            while let Some(out) = set.join_next().await {
                match out.expect("operation task") {
                    Outcome::Ok => {
                        ok += 1;
                        admitted += 1;
                    }
                    Outcome::Failed => {
                        failed += 1;
                        assert_ne!(health, Health::Healthy, "an operation failed while healthy");
                    }
                    Outcome::Rejected(reason, after) => {
                        rejected += 1;
                        if health == Health::Healthy {
                            assert_ne!(reason, RejectReason::ForcedOpen);
                            if reason == RejectReason::Open {
                                let d = after.expect("an Open rejection says when");
                                assert!(d <= RECOVERY, "retry_after {d:?} beyond the break");
                                // After waiting its retry_after, a call may find the break
                                // not quite over only by one tick of the circuit's coarse
                                // clock (it reads the kernel's clock as of its last tick).
                                assert!(
                                    !waited_in_phase || d <= COARSE_TICK,
                                    "rejected as Open for {d:?} more after waiting its retry_after"
                                );
                                tick_rewaits += usize::from(waited_in_phase);
                                retry_after = retry_after.max(Some(d));
                            }
                        }
                    }
                }
            }
            if health == Health::Healthy {
                if waited_in_phase && admitted > 0 {
                    probes_admitted_after_wait = true;
                }
                if let Some(d) = retry_after {
                    // Honour the circuit's own retry_after, as a client would.
                    tokio::time::sleep(d).await;
                    waited_in_phase = true;
                    waits += 1;
                }
            }
            phase_ops += n;
        }
        *per_health
            .entry(match health {
                Health::Healthy => "healthy",
                Health::Erroring => "erroring",
                Health::Slow => "slow",
                Health::BlackHole => "black-holed",
            })
            .or_default() += phase_ops;
        let events = log.lock().unwrap()[events_before..].to_vec();
        if health == Health::Healthy {
            assert!(
                events.iter().all(|e| e.1 != Open),
                "the circuit opened while the dependency was healthy: {events:?}"
            );
            let state = registry.stats(KEY.0, KEY.1).map_or(Closed, |s| s.state);
            assert_eq!(
                state, Closed,
                "a healthy phase of {len} ops did not close it"
            );
            if waited_in_phase {
                assert!(probes_admitted_after_wait, "no probe after the retry_after");
            }
        }
        done += phase_ops;
        phase += 1;
    }

    // Exact accounting, from the circuit's own stats.
    let s = registry.stats(KEY.0, KEY.1).expect("circuit");
    assert_eq!(ok + failed + rejected, total);
    assert_eq!(
        s.rejected_count as usize, rejected,
        "one rejection per rejected op"
    );
    assert_eq!(
        (s.total_requests + s.ignored_count) as usize,
        wire.attempts(),
        "every admitted attempt is counted once: {s:?}"
    );
    // Never more probes in flight than allowed, and one unbroken chain of events.
    let most = most_probes.load(Ordering::SeqCst);
    assert!(most <= HALF_OPEN_MAX, "{most} probes in flight at once");
    let events = log.lock().unwrap().clone();
    let mut at = Closed;
    let mut cycles = 0;
    for (i, &(from, to)) in events.iter().enumerate() {
        assert_eq!(from, at, "event {i} does not follow the one before");
        assert_ne!(from, to);
        at = to;
        cycles += usize::from(to == HalfOpen);
    }
    assert_eq!(at, s.state);
    assert!(
        cycles >= 4,
        "the soak must really have flapped: {cycles} cycles"
    );
    support::report(&format!(
        "aws soak: {total} operations {per_health:?} (ok {ok}, failed {failed}, rejected {rejected}); \
         {} attempts on the wire; {} transitions, {cycles} half-open cycles, at most {most} probes in flight; \
         {waits} waits on retry_after ({tick_rewaits} of them a clock tick more)\n",
        wire.attempts(),
        events.len()
    ));
}
