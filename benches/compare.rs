//! This crate next to its peers: the same calls, driven the same way, in one run.
//!
//! ```text
//! cargo bench --bench compare                    # full run, about 3 minutes
//! COMPARE_QUICK=1 cargo bench --bench compare    # smoke run, well under 30 s
//! scripts/compare [--quick]                       # the same, from anywhere
//! ```
//!
//! # Contestants
//!
//! * Through tower (`poll_ready`, then `call`, then await the response future):
//!   the bare service (the baseline), our `CircuitBreakerLayer` with
//!   `CircuitBreakerConfig::dynamodb()` (time window, slow-call detection on), and
//!   `tower-resilience-circuitbreaker` 0.14.0 (count window of 100, its defaults otherwise).
//! * Through a call API (a closure or future run by the breaker): the bare fn (the
//!   baseline), our `Circuit::call` (same preset), `failsafe` 1.3.0's `CircuitBreaker::call`
//!   (`consecutive_failures(3, constant 20 s)`), `recloser` 1.4.0's `Recloser::call`
//!   (defaults: ring of 100, 50 %), `circuitbreaker-rs` 0.1.1's `call` (default policy).
//!
//! The operation is the same `#[inline(never)]` fn everywhere, always `Ok`.
//!
//! # Scenarios
//!
//! * `closed_1t`, `closed_2t`: every call succeeds. Two threads share ONE breaker, each
//!   through its own clone or handle, and the figure is time per call per thread (the
//!   slower thread's).
//! * `open_1t`, `open_2t`: the breaker was tripped by real failures with a 1 h recovery
//!   timeout (not forced open), so every call is rejected. failsafe's backoff is 1 h
//!   here instead of 20 s, recloser's `open_wait` and circuitbreaker-rs's `cooldown` 1 h.
//! * `flat_1k`, `flat_1m`: per-call cost (through tower, closed) with 1 000 and
//!   1 000 000 calls already recorded in a 1 h time window (nothing expires): our layer
//!   with `monitoring_window` 1 h, tower-resilience with its time-based window of 1 h.
//!   Each call records one more outcome, so a fixture is refilled after `n / 20` measured
//!   calls: the window always holds between `n` and `1.05 n` records. tower-resilience
//!   scans every record on each call, so filling it is quadratic: its "10⁶" point is
//!   measured at 100 000 records (10 000 in quick mode) and the table says so.
//! * `registry`: our `CircuitBreakerRegistry::execute` on an existing key among 10 000,
//!   next to a bare `Circuit::call` on the same circuit (as `benches/registry.rs`).
//!
//! # Driving
//!
//! tower-resilience's response future locks a `tokio::sync::Mutex`, and when that lock
//! is contended its `poll_ready` sleeps on a tokio timer, so it needs a runtime: every
//! tower contestant (bare service and ours included, for parity) runs its loop inside
//! `block_on` of a current-thread runtime with timers, one runtime per thread. The
//! futures of the bare service and of ours complete on their first poll, so the runtime
//! does no work per call for them (no task switch, no timer). Call-API contestants run a plain loop; our
//! `Circuit::call` future completes on its first poll and is polled once with a no-op
//! waker.
//!
//! # The table
//!
//! Criterion's estimates are not reachable from inside the bench, so after criterion's
//! groups a last pass measures every contestant and scenario again itself: after a
//! calibration run, best of 5 rounds of about 50 ms (5 ms in quick mode), and prints
//! one Markdown table of ns per call and the ratio to the bare baseline of the same
//! thread count (the bare tower service for tower contestants, the bare fn for call-API
//! ones). Numbers are only meaningful on an otherwise idle machine.

use criterion::{Criterion, Throughput};
use failsafe::CircuitBreaker as _;
use std::fmt::Write as _;
use std::future::{Future, Ready, poll_fn, ready};
use std::hint::black_box;
use std::io;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tower_circuit_breaker::{
    BoxError, Circuit, CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakerRegistry,
    CircuitState, NoFallback,
};
use tower_layer::Layer;
use tower_service::Service;

const HOUR: Duration = Duration::from_secs(3600);

/// The protected operation, for every contestant.
#[inline(never)]
fn op(i: u64) -> Result<u64, io::Error> {
    Ok(i)
}

fn down() -> io::Error {
    io::Error::other("down")
}

/// The bare tower service: answers `op` at once, or fails (to trip a breaker).
#[derive(Clone)]
struct Svc {
    fail: bool,
}

impl Service<u64> for Svc {
    type Response = u64;
    type Error = io::Error;
    type Future = Ready<Result<u64, io::Error>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: u64) -> Self::Future {
        ready(if self.fail { Err(down()) } else { op(req) })
    }
}

const OK: Svc = Svc { fail: false };
const FAIL: Svc = Svc { fail: true };

/// Polls a future that completes at once.
#[inline]
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the operation never waits"),
    }
}

// ===== settings =====

#[derive(Clone, Copy)]
struct Settings {
    quick: bool,
    /// Calls each thread makes before a timed run (fills caches, stripes, a runtime).
    warm: u64,
    /// The large fill of the flat-cost scenario, for tower-resilience.
    resilience_big: u64,
    /// Target length of one table round.
    round: Duration,
}

impl Settings {
    /// Quick with `COMPARE_QUICK` set (not to `0`), and when criterion only tests.
    fn new(bench_mode: bool) -> Self {
        let quick =
            !bench_mode || std::env::var("COMPARE_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        Settings {
            quick,
            warm: if quick { 100 } else { 1_000 },
            resilience_big: if quick { 10_000 } else { 100_000 },
            round: Duration::from_millis(if quick { 5 } else { 50 }),
        }
    }

    fn group(&self, g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
        g.sample_size(10).throughput(Throughput::Elements(1));
        if self.quick {
            // Criterion's analysis (bootstrap) dominates such short runs: resample less.
            g.warm_up_time(Duration::from_millis(30))
                .measurement_time(Duration::from_millis(100))
                .nresamples(5_000);
        } else {
            g.warm_up_time(Duration::from_millis(1_000))
                .measurement_time(Duration::from_secs(3));
        }
    }
}

// ===== runners =====

/// Runs `iters` calls (per thread) and returns the time they took.
type Runner = Box<dyn FnMut(u64) -> Duration>;

/// Runs `body` on `threads` threads at once, each with its own clone of `handle`;
/// returns the slowest thread's time. `body` times itself after waiting at the barrier.
fn on_threads<H, B>(threads: usize, handle: &H, body: B) -> Duration
where
    H: Clone + Send,
    B: Fn(&mut H, &Barrier) -> Duration + Sync,
{
    if threads == 1 {
        return body(&mut handle.clone(), &Barrier::new(1));
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let mut h = handle.clone();
                let (barrier, body) = (&barrier, &body);
                s.spawn(move || body(&mut h, barrier))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

/// A current-thread runtime with timers (tower-resilience sleeps on contention).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// `n` tower calls: `poll_ready`, `call`, await the response.
async fn tower_loop<S: Service<u64>>(svc: &mut S, n: u64) {
    for i in 0..n {
        let ok = match poll_fn(|cx| svc.poll_ready(cx)).await {
            Ok(()) => svc.call(black_box(i)).await.is_ok(),
            Err(_) => false,
        };
        black_box(ok);
    }
}

fn tower_runner<S>(s: Settings, threads: usize, svc: S) -> Runner
where
    S: Service<u64> + Clone + Send + 'static,
{
    Box::new(move |iters| {
        on_threads(threads, &svc, |svc, barrier| {
            runtime().block_on(async {
                tower_loop(svc, s.warm).await;
                barrier.wait();
                let start = Instant::now();
                tower_loop(svc, iters).await;
                start.elapsed()
            })
        })
    })
}

#[inline]
fn call_loop<H, F: Fn(&H, u64) -> bool>(h: &H, call: &F, n: u64) {
    for i in 0..n {
        black_box(call(h, black_box(i)));
    }
}

fn call_runner<H, F>(s: Settings, threads: usize, handle: H, call: F) -> Runner
where
    H: Clone + Send + 'static,
    F: Fn(&H, u64) -> bool + Sync + 'static,
{
    Box::new(move |iters| {
        on_threads(threads, &handle, |h, barrier| {
            call_loop(h, &call, s.warm);
            barrier.wait();
            let start = Instant::now();
            call_loop(h, &call, iters);
            start.elapsed()
        })
    })
}

/// A tower service whose window holds between `fill` and `fill + fill / 20` records
/// whenever a measured call runs: it is rebuilt and refilled (untimed) as needed.
fn flat_runner<S, M>(fill: u64, make: M) -> Runner
where
    S: Service<u64> + 'static,
    M: Fn() -> S + 'static,
{
    let budget = (fill / 20).max(1);
    let rt = runtime();
    let mut svc: Option<S> = None;
    let mut spent = budget;
    Box::new(move |iters| {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            if spent >= budget {
                let mut fresh = make();
                rt.block_on(tower_loop(&mut fresh, fill));
                svc = Some(fresh);
                spent = 0;
            }
            let k = left.min(budget - spent);
            let svc = svc.as_mut().unwrap();
            total += rt.block_on(async {
                let start = Instant::now();
                tower_loop(svc, k).await;
                start.elapsed()
            });
            spent += k;
            left -= k;
        }
        total
    })
}

// ===== contestants =====

#[derive(Clone, Copy, PartialEq, Eq)]
enum Row {
    BareTower,
    OursLayer,
    Resilience,
    BareFn,
    OursCall,
    Failsafe,
    Recloser,
    CbRs,
    OursRegistry,
}

impl Row {
    const ALL: [Row; 9] = [
        Row::BareTower,
        Row::OursLayer,
        Row::Resilience,
        Row::BareFn,
        Row::OursCall,
        Row::Failsafe,
        Row::Recloser,
        Row::CbRs,
        Row::OursRegistry,
    ];

    fn id(self) -> &'static str {
        match self {
            Row::BareTower => "bare_tower_service",
            Row::OursLayer => "ours_layer_dynamodb",
            Row::Resilience => "tower_resilience_0.14",
            Row::BareFn => "bare_fn",
            Row::OursCall => "ours_circuit_call_dynamodb",
            Row::Failsafe => "failsafe_1.3",
            Row::Recloser => "recloser_1.4",
            Row::CbRs => "circuitbreaker_rs_0.1",
            Row::OursRegistry => "ours_registry_execute",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Row::BareTower => "bare tower service (tower baseline)",
            Row::OursLayer => "**tower-circuit-breaker** `CircuitBreakerLayer`, dynamodb (tower)",
            Row::Resilience => "tower-resilience-circuitbreaker 0.14.0 (tower, count window 100)",
            Row::BareFn => "bare fn (call-API baseline)",
            Row::OursCall => "**tower-circuit-breaker** `Circuit::call`, dynamodb",
            Row::Failsafe => "failsafe 1.3.0 `call`, consecutive_failures(3)",
            Row::Recloser => "recloser 1.4.0 `call`, ring 100",
            Row::CbRs => "circuitbreaker-rs 0.1.1 `call`, default policy",
            Row::OursRegistry => "**tower-circuit-breaker** `CircuitBreakerRegistry::execute`",
        }
    }

    fn tower(self) -> bool {
        matches!(self, Row::BareTower | Row::OursLayer | Row::Resilience)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    Closed1,
    Closed2,
    Open1,
    Open2,
    Flat1k,
    FlatBig,
    Registry,
}

impl Col {
    const ALL: [Col; 7] = [
        Col::Closed1,
        Col::Closed2,
        Col::Open1,
        Col::Open2,
        Col::Flat1k,
        Col::FlatBig,
        Col::Registry,
    ];

    fn id(self) -> &'static str {
        match self {
            Col::Closed1 => "closed_1t",
            Col::Closed2 => "closed_2t_one_breaker",
            Col::Open1 => "open_1t",
            Col::Open2 => "open_2t_one_breaker",
            Col::Flat1k => "flat_1k_recorded",
            Col::FlatBig => "flat_1m_recorded",
            Col::Registry => "registry_10000_keys",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Col::Closed1 => "Closed 1t",
            Col::Closed2 => "Closed 2t",
            Col::Open1 => "Open 1t",
            Col::Open2 => "Open 2t",
            Col::Flat1k => "Flat, 10³ recorded",
            Col::FlatBig => "Flat, 10⁶ recorded",
            Col::Registry => "Registry (10 000 keys)",
        }
    }

    fn threads(self) -> usize {
        match self {
            Col::Closed2 | Col::Open2 => 2,
            _ => 1,
        }
    }

    /// The column whose bare row is this column's baseline.
    fn baseline(self) -> Col {
        if self.threads() == 2 {
            Col::Closed2
        } else {
            Col::Closed1
        }
    }
}

struct Entry {
    row: Row,
    col: Col,
    run: Runner,
    /// Records in the window, where the row's figure is not at the column's nominal count.
    note: Option<u64>,
}

fn ours_config(open: bool) -> CircuitBreakerConfig {
    let preset = CircuitBreakerConfig::dynamodb();
    if open {
        preset.to_builder().recovery_timeout(HOUR).build().unwrap()
    } else {
        preset
    }
}

fn ours_layer(open: bool) -> tower_circuit_breaker::CircuitBreaker<Svc> {
    let layer = CircuitBreakerLayer::new(ours_config(open));
    if open {
        // Services of one layer share its circuit: trip it through a failing one.
        now(tower_loop(&mut layer.layer(FAIL), 10));
        assert_eq!(layer.circuit().state(), CircuitState::Open);
    }
    layer.layer(OK)
}

type Resilience = tower_resilience_circuitbreaker::CircuitBreaker<
    Svc,
    tower_resilience_circuitbreaker::DefaultClassifier,
>;

fn resilience(
    builder: tower_resilience_circuitbreaker::CircuitBreakerConfigBuilder<
        tower_resilience_circuitbreaker::DefaultClassifier,
    >,
    open: bool,
) -> Resilience {
    // `build()` would give every service of the layer its own state; `build_with_handle()`
    // shares one circuit among them (and their clones share it in either case).
    let (layer, _handle) = builder.build_with_handle().unwrap();
    if open {
        runtime().block_on(tower_loop(&mut layer.layer(FAIL), 100));
    }
    let svc = layer.layer(OK);
    let want = if open {
        tower_resilience_circuitbreaker::CircuitState::Open
    } else {
        tower_resilience_circuitbreaker::CircuitState::Closed
    };
    assert_eq!(svc.state_sync(), want);
    svc
}

fn resilience_count(open: bool) -> Resilience {
    let b =
        tower_resilience_circuitbreaker::CircuitBreakerLayer::builder().sliding_window_size(100);
    resilience(
        if open {
            b.wait_duration_in_open(HOUR)
        } else {
            b
        },
        open,
    )
}

fn resilience_timed() -> Resilience {
    let b = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .sliding_window_type(tower_resilience_circuitbreaker::SlidingWindowType::TimeBased)
        .sliding_window_duration(HOUR);
    resilience(b, false)
}

fn ours_circuit(open: bool) -> Circuit {
    let c = Circuit::new(ours_config(open));
    if open {
        for _ in 0..10 {
            let _ = now(c.call(async { Err::<u64, _>(down()) }));
        }
        assert_eq!(c.state(), CircuitState::Open);
    }
    c
}

fn failsafe_breaker(open: bool) -> impl failsafe::CircuitBreaker + Clone + Send + Sync + 'static {
    let backoff = failsafe::backoff::constant(if open { HOUR } else { Duration::from_secs(20) });
    let cb = failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(3, backoff))
        .build();
    if open {
        for _ in 0..3 {
            let _ = failsafe::CircuitBreaker::call(&cb, || Err::<u64, _>(down()));
        }
        assert!(!failsafe::CircuitBreaker::is_call_permitted(&cb));
    }
    cb
}

fn recloser_breaker(open: bool) -> Arc<recloser::Recloser> {
    let r = if open {
        recloser::Recloser::custom().open_wait(HOUR).build()
    } else {
        recloser::Recloser::default()
    };
    if open {
        // Its ring of 100 must be full before it computes a failure rate: the 101st
        // failure trips it.
        let tripped = (0..1_000).any(|_| {
            matches!(
                r.call(|| Err::<u64, _>(down())),
                Err(recloser::Error::Rejected)
            )
        });
        assert!(tripped);
    }
    Arc::new(r)
}

fn cbrs_breaker(
    open: bool,
) -> circuitbreaker_rs::CircuitBreaker<circuitbreaker_rs::DefaultPolicy, io::Error> {
    let builder =
        circuitbreaker_rs::CircuitBreaker::<circuitbreaker_rs::DefaultPolicy, io::Error>::builder();
    let cb = if open {
        builder.cooldown(HOUR)
    } else {
        builder
    }
    .build();
    if open {
        for _ in 0..10 {
            let _ = cb.call(|| Err::<u64, _>(down()));
        }
        assert_eq!(cb.current_state(), circuitbreaker_rs::State::Open);
    }
    cb
}

fn entries(s: Settings) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut add = |row, col, run| {
        out.push(Entry {
            row,
            col,
            run,
            note: None,
        })
    };
    for col in [Col::Closed1, Col::Closed2, Col::Open1, Col::Open2] {
        let (t, open) = (col.threads(), matches!(col, Col::Open1 | Col::Open2));
        if !open {
            add(Row::BareTower, col, tower_runner(s, t, OK));
        }
        add(Row::OursLayer, col, tower_runner(s, t, ours_layer(open)));
        add(
            Row::Resilience,
            col,
            tower_runner(s, t, resilience_count(open)),
        );
        if !open {
            add(
                Row::BareFn,
                col,
                call_runner(s, t, (), |_: &(), i| op(i).is_ok()),
            );
        }
        add(
            Row::OursCall,
            col,
            call_runner(s, t, ours_circuit(open), |c: &Circuit, i| {
                now(c.call(async move { op(i) })).is_ok()
            }),
        );
        add(
            Row::Failsafe,
            col,
            call_runner(s, t, failsafe_breaker(open), |cb, i| {
                cb.call(|| op(i)).is_ok()
            }),
        );
        add(
            Row::Recloser,
            col,
            call_runner(s, t, recloser_breaker(open), |r, i| {
                r.call(|| op(i)).is_ok()
            }),
        );
        add(
            Row::CbRs,
            col,
            call_runner(s, t, cbrs_breaker(open), |cb, i| cb.call(|| op(i)).is_ok()),
        );
    }

    let ours_timed = || {
        let config = CircuitBreakerConfig::dynamodb()
            .to_builder()
            .monitoring_window(HOUR)
            .build()
            .unwrap();
        CircuitBreakerLayer::new(config).layer(OK)
    };
    add(Row::OursLayer, Col::Flat1k, flat_runner(1_000, ours_timed));
    add(
        Row::OursLayer,
        Col::FlatBig,
        flat_runner(1_000_000, ours_timed),
    );
    add(
        Row::Resilience,
        Col::Flat1k,
        flat_runner(1_000, resilience_timed),
    );
    out.push(Entry {
        row: Row::Resilience,
        col: Col::FlatBig,
        run: flat_runner(s.resilience_big, resilience_timed),
        note: Some(s.resilience_big),
    });

    let (registry, config, key) = registry();
    let circuit = registry.get(&key.0, &key.1).unwrap();
    out.push(Entry {
        row: Row::OursCall,
        col: Col::Registry,
        run: call_runner(s, 1, circuit, |c: &Circuit, i| {
            now(c.call(async move { op(i) })).is_ok()
        }),
        note: None,
    });
    let registry = Arc::new(registry);
    out.push(Entry {
        row: Row::OursRegistry,
        col: Col::Registry,
        run: call_runner(s, 1, registry, move |r: &Arc<CircuitBreakerRegistry>, i| {
            let r: Result<u64, BoxError> = now(r.execute(
                &key.0,
                &key.1,
                || async move { Ok(op(i)?) },
                NoFallback,
                &config,
            ));
            r.is_ok()
        }),
        note: None,
    });
    out
}

/// A registry of 10 000 circuits (100 services × 100 operations) and one existing key.
fn registry() -> (
    CircuitBreakerRegistry,
    CircuitBreakerConfig,
    (String, String),
) {
    let config = CircuitBreakerConfig::dynamodb();
    let registry = CircuitBreakerRegistry::new();
    let names: Vec<(String, String)> = (0..10_000)
        .map(|i| (format!("service-{}", i % 100), format!("operation-{i}")))
        .collect();
    for (s, o) in &names {
        registry.circuit(s, o, &config);
    }
    let key = names[4_242].clone();
    (registry, config, key)
}

// ===== the table =====

/// ns per call: best of 5 rounds of about `s.round`, after a calibration run.
fn measure(s: Settings, run: &mut Runner) -> f64 {
    let mut n = 1;
    let per_call = loop {
        let d = run(n);
        if d >= s.round / 10 || n >= 1 << 30 {
            break d.as_secs_f64() / n as f64;
        }
        n *= if d < s.round / 1_000 { 8 } else { 2 };
    };
    let n = ((s.round.as_secs_f64() / per_call) as u64).max(1);
    (0..5)
        .map(|_| run(n).as_secs_f64() * 1e9 / n as f64)
        .fold(f64::INFINITY, f64::min)
}

fn table(s: Settings, entries: &mut [Entry]) -> String {
    let mut ns = Vec::new();
    for e in entries.iter_mut() {
        ns.push((e.row, e.col, measure(s, &mut e.run), e.note));
    }
    let get = |row: Row, col: Col| {
        ns.iter()
            .find(|(r, c, _, _)| *r == row && *c == col)
            .map(|(_, _, v, n)| (*v, *n))
    };
    let mut out = String::new();
    let _ = write!(out, "| contestant |");
    for col in Col::ALL {
        let _ = write!(out, " {} |", col.label());
    }
    let _ = write!(out, "\n|---|");
    for _ in Col::ALL {
        let _ = write!(out, "---:|");
    }
    out.push('\n');
    for row in Row::ALL {
        let _ = write!(out, "| {} |", row.label());
        for col in Col::ALL {
            let base_row = if row.tower() {
                Row::BareTower
            } else {
                Row::BareFn
            };
            let base = get(base_row, col.baseline()).map(|b| b.0);
            match (get(row, col), base) {
                (Some((v, note)), Some(b)) => {
                    let _ = write!(out, " {} ({:.1}×)", fmt_ns(v), v / b);
                    if let Some(n) = note {
                        let _ = write!(out, " at {} records†", fmt_count(n));
                    }
                    out.push_str(" |");
                }
                _ => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nns per call (per thread for 2t), best of 5 rounds of ~{} ms; (×) = ratio to the bare \
         baseline of the same thread count (the bare tower service for tower rows, the bare fn \
         for call-API rows, 1-thread baseline for the flat and registry columns). The flat \
         columns use 1 h time windows: our `monitoring_window`, tower-resilience's `TimeBased` \
         window.",
        s.round.as_millis()
    );
    if let (Some((call, _)), Some((exec, _))) = (
        get(Row::OursCall, Col::Registry),
        get(Row::OursRegistry, Col::Registry),
    ) {
        let _ = writeln!(
            out,
            "Registry: `execute` on an existing key of 10 000 costs {} vs {} for a bare \
             `Circuit::call` on the same circuit ({:.2}×).",
            fmt_ns(exec),
            fmt_ns(call),
            exec / call
        );
    }
    for row in [Row::OursLayer, Row::Resilience] {
        if let (Some((small, _)), Some((big, note))) =
            (get(row, Col::Flat1k), get(row, Col::FlatBig))
        {
            let n = note.unwrap_or(1_000_000);
            let _ = write!(
                out,
                "Flat cost, {}: {} with 10³ recorded, {} with {} recorded ({:.2}×)",
                row.id(),
                fmt_ns(small),
                fmt_ns(big),
                fmt_count(n),
                big / small
            );
            if note.is_some() {
                // Per-call cost grows linearly with the records held: extrapolate.
                let slope = (big - small) / (n - 1_000) as f64;
                let _ = write!(
                    out,
                    "; linear extrapolation to 10⁶ recorded: {}",
                    fmt_ns(small + slope * 999_000.0)
                );
            }
            out.push_str(".\n");
        }
    }
    if let Some(e) = entries.iter().find(|e| e.note.is_some()) {
        let _ = writeln!(
            out,
            "† tower-resilience scans every record of its time window on each call, so filling \
             10⁶ records would take minutes (quadratic); its point is measured at {} records.",
            fmt_count(e.note.unwrap())
        );
    }
    out
}

fn fmt_ns(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        v if v >= 1e4 => format!("{:.1} µs", v / 1e3),
        v if v >= 100.0 => format!("{v:.0} ns"),
        v => format!("{v:.1} ns"),
    }
}

/// `1000000` as `1 000 000`.
fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn main() {
    // Criterion runs each benchmark once when not given `--bench` (`cargo test --benches`);
    // then the settings are the quick ones and the table pass is skipped.
    let args: Vec<String> = std::env::args().collect();
    let bench_mode =
        args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list");
    let s = Settings::new(bench_mode);
    let mut criterion = Criterion::default().configure_from_args();
    let mut entries = entries(s);
    for col in Col::ALL {
        let mut g = criterion.benchmark_group(col.id());
        s.group(&mut g);
        if matches!(col, Col::Flat1k | Col::FlatBig) {
            // Refills are untimed but take wall time: keep these short.
            g.warm_up_time(Duration::from_millis(if s.quick { 10 } else { 200 }))
                .measurement_time(Duration::from_millis(if s.quick { 50 } else { 1_000 }));
        }
        for e in entries.iter_mut().filter(|e| e.col == col) {
            g.bench_function(e.row.id(), |b| b.iter_custom(|n| (e.run)(n)));
        }
        g.finish();
    }
    criterion.final_summary();
    if bench_mode {
        println!("\n{}", table(s, &mut entries));
    }
}
