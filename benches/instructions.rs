//! Runs one scenario `n` times, for counting instructions per call under callgrind,
//! which counts the same on a busy machine as on an idle one:
//!
//! ```text
//! cargo build --release -p tower-circuit-breaker-benches --bin instructions
//! scripts/instructions            # every scenario: instructions per call
//! ```
//!
//! Instructions per call = (instructions at 2n − instructions at n) / n, so set-up cost
//! cancels out. Valgrind runs `clock_gettime` as a system call rather than through the
//! vDSO, so the clock's own instructions are not in these counts (the clock is about
//! 5 ns coarse, 23 ns precise on the bench machine; see BENCHMARKS.md).

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower_circuit_breaker::{
    BoxError, Circuit, CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakerRegistry,
    NoFallback,
};
use tower_layer::Layer;
use tower_service::Service;

#[derive(Clone)]
struct Echo(bool);

impl Service<u64> for Echo {
    type Response = u64;
    type Error = std::io::Error;
    type Future = Ready<Result<u64, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(if self.0 {
            Ok(req)
        } else {
            Err(std::io::Error::other("down"))
        })
    }
}

fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!(),
    }
}

fn drive<S: Service<u64>>(svc: &mut S, i: u64) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    now(svc.call(black_box(i))).is_ok()
}

fn tripped() -> Circuit {
    let config = CircuitBreakerConfig::dynamodb()
        .to_builder()
        .recovery_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let circuit = Circuit::new(config);
    for _ in 0..10 {
        let _ = now(circuit.call(async { Err::<(), _>(std::io::Error::other("down")) }));
    }
    circuit
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().expect("scenario");
    let n: u64 = args.next().expect("n").parse().unwrap();
    let mut ok = 0u64;
    let mut count = |b: bool| ok += u64::from(b);
    match scenario.as_str() {
        "bare" => {
            let mut svc = Echo(true);
            (0..n).for_each(|i| count(drive(&mut svc, i)));
        }
        "closed" => {
            let mut svc =
                CircuitBreakerLayer::new(CircuitBreakerConfig::dynamodb()).layer(Echo(true));
            (0..n).for_each(|i| count(drive(&mut svc, i)));
        }
        "open" => {
            let mut svc = CircuitBreakerLayer::from_circuit(tripped()).layer(Echo(true));
            (0..n).for_each(|i| count(drive(&mut svc, i)));
        }
        "closed_call" => {
            let circuit = Circuit::new(CircuitBreakerConfig::dynamodb());
            (0..n).for_each(|i| {
                count(now(circuit.call(async move { Ok::<_, Infallible>(black_box(i)) })).is_ok())
            });
        }
        "open_call" => {
            let circuit = tripped();
            (0..n).for_each(|i| {
                count(now(circuit.call(async move { Ok::<_, Infallible>(black_box(i)) })).is_ok())
            });
        }
        "registry_execute" => {
            let config = CircuitBreakerConfig::dynamodb();
            let registry = CircuitBreakerRegistry::new();
            for i in 0..10_000 {
                registry.circuit(
                    &format!("service-{}", i % 100),
                    &format!("operation-{i}"),
                    &config,
                );
            }
            let (s, o) = ("service-42".to_string(), "operation-4242".to_string());
            (0..n).for_each(|i| {
                let r: Result<u64, BoxError> = now(registry.execute(
                    &s,
                    &o,
                    || async move { Ok(black_box(i)) },
                    NoFallback,
                    &config,
                ));
                count(r.is_ok())
            });
        }
        // Feature `replay` (scripts/instructions builds without it): the recorder layer,
        // its caller's side and its writer thread's, to `io::sink()`; the queue holds
        // 2^18 calls (n up to that: none is dropped).
        #[cfg(feature = "replay")]
        "recorded" => {
            use tower_circuit_breaker::trace::{Recorder, RecorderLayer};
            let (recorder, writer) = Recorder::spawn(std::io::sink(), 1 << 18);
            let mut svc =
                RecorderLayer::new(recorder, "dynamodb", "storeUserMessage").layer(Echo(true));
            (0..n).for_each(|i| count(drive(&mut svc, i)));
            drop(svc);
            let (_, stats) = writer.finish().unwrap();
            assert_eq!(stats.written, n);
        }
        other => panic!("unknown scenario {other}"),
    }
    black_box(ok);
}
