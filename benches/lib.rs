//! What the benches share: a service that answers at once, and the loop that drives a
//! service the way every bench here does (`poll_ready`, `call`, one poll of the response
//! future with a no-op waker; no runtime in the loop).

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tower_service::Service;

/// A service whose response is ready at once: the bare baseline.
#[derive(Clone, Debug)]
pub struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

/// One call: `poll_ready`, `call`, one poll of the response future. Whether it succeeded.
#[inline]
pub fn drive<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, i: u64) -> bool {
    assert!(svc.poll_ready(cx).is_ready());
    let fut = pin!(svc.call(black_box(i)));
    match fut.poll(cx) {
        Poll::Ready(r) => r.is_ok(),
        Poll::Pending => unreachable!("the benches' services answer at once"),
    }
}

/// `iters` calls through `svc`; the time they took.
pub fn run<S: Service<u64>>(svc: &mut S, iters: u64) -> Duration {
    let mut cx = Context::from_waker(Waker::noop());
    let start = Instant::now();
    for i in 0..iters {
        black_box(drive(svc, &mut cx, i));
    }
    start.elapsed()
}
