use crate::circuit::{Circuit, Permit, Rejection, Ticket};
use crate::classify::{Classify, ErrorsAsFailures};
use crate::error::CircuitOpen;
use crate::fallback::{Fallback, NoFallback};
use crate::future::{FallbackFuture, ResponseFuture};
use crate::{BoxError, CircuitBreakerConfig, CircuitBreakerLayer};
use std::borrow::Borrow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Sleep;
use tower_service::Service;

/// A [`Service`] behind a circuit breaker. Made by [`CircuitBreakerLayer`].
///
/// Every clone shares one [`Circuit`]. Each clone keeps its own readiness decision:
/// `poll_ready` asks the circuit, `call` acts on the answer, and "readiness only counts
/// once".
///
/// * **Reject mode** (default): when the circuit rejects, `poll_ready` is ready at once
///   *without polling the inner service*, and `call` returns a future that fails with
///   [`CircuitOpen`] (or runs the fallback). `poll_ready` never fails because the circuit
///   is open: a `Buffer` would latch such an error and a balancer would evict the service.
/// * **Backpressure mode** ([`CircuitBreakerLayer::backpressure`]): `poll_ready` is
///   `Pending` while the circuit would reject, and wakes when the break ends, a probe slot
///   frees up, the probe deadline of a hung half-open probe passes
///   ([`half_open_max_wait`](crate::CircuitBreakerConfig::half_open_max_wait)), or the
///   circuit is reset. Waiting is not counted as a rejection. With feature `fleet`, a
///   waiter whose break has ended while another instance holds the fleet's probe lease
///   looks again every 100 ms rather than spinning.
///
/// A half-open probe slot is reserved in `poll_ready` and moved into the response future;
/// it is given back if the future is dropped, the call is ignored, or the service is
/// dropped before `call`.
pub struct CircuitBreaker<S, C = ErrorsAsFailures, F = NoFallback> {
    inner: S,
    circuit: Circuit,
    classifier: C,
    fallback: F,
    backpressure: bool,
    decision: Decision,
    /// The permit of a half-open probe admitted by `poll_ready` (`Decision::Probe`), held
    /// until `call`: dropped with the service or a forgotten decision, it gives the
    /// probe slot back.
    probe: Option<Permit<Handle>>,
    /// What admission refused (`Decision::Rejected`), held until `call` makes the error.
    rejection: Option<Rejection>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// This clone's own handle to the circuit, made on its second call.
    local: Option<Arc<Local>>,
    /// Whether this clone has decided a call yet.
    used: bool,
}

/// What `poll_ready` decided for the next `call`. `Copy` and two words, so deciding and
/// taking the decision run no drop code: the handle a response future needs is made in
/// `call`, a probe's slot is held by `CircuitBreaker::probe`, and a rejection waits in
/// `CircuitBreaker::rejection`.
#[derive(Clone, Copy)]
enum Decision {
    Undecided,
    /// Admitted, not as a probe: the permit is made in `call`.
    Admitted(Ticket),
    /// Admitted as a half-open probe: its permit is in `CircuitBreaker::probe`.
    Probe,
    /// Rejected: the rejection is in `CircuitBreaker::rejection`, the error made in `call`.
    Rejected,
}

/// How a response future reaches its circuit.
///
/// A future must own a handle (it outlives `call`), and cloning the circuit's own `Arc`
/// for every call makes every core that calls write to one reference count: two threads
/// calling through one circuit would pass that cache line back and forth on every call.
/// So a service clone that makes more than one call gets a handle of its own, aligned to
/// a cache line, and its futures count references on it. A clone made for one call (as
/// `oneshot` on a fresh clone does) borrows the circuit's handle instead of allocating.
pub(crate) enum Handle {
    Shared(Circuit),
    Local(Arc<Local>),
}

/// A circuit handle on a cache line of its own.
#[repr(align(128))]
pub(crate) struct Local {
    circuit: Circuit,
}

impl Borrow<Circuit> for Handle {
    #[inline]
    fn borrow(&self) -> &Circuit {
        match self {
            Handle::Shared(c) => c,
            Handle::Local(l) => &l.circuit,
        }
    }
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` in a new circuit with `config`.
    pub fn new(inner: S, config: CircuitBreakerConfig) -> Self {
        Self::from_parts(
            inner,
            Circuit::new(config),
            ErrorsAsFailures,
            NoFallback,
            false,
        )
    }

    /// A [`CircuitBreakerLayer`] with a new circuit; a shortcut for
    /// [`CircuitBreakerLayer::new`].
    pub fn layer(config: CircuitBreakerConfig) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(config)
    }
}

impl<S, C, F> CircuitBreaker<S, C, F> {
    pub(crate) fn from_parts(
        inner: S,
        circuit: Circuit,
        classifier: C,
        fallback: F,
        backpressure: bool,
    ) -> Self {
        CircuitBreaker {
            inner,
            circuit,
            classifier,
            fallback,
            backpressure,
            decision: Decision::Undecided,
            probe: None,
            rejection: None,
            sleep: None,
            local: None,
            used: false,
        }
    }

    /// This clone's own handle, made on its second call: `None` on the first.
    #[inline]
    fn local(&mut self) -> Option<&Arc<Local>> {
        if self.local.is_none() {
            return self.first_calls();
        }
        self.local.as_ref()
    }

    #[cold]
    fn first_calls(&mut self) -> Option<&Arc<Local>> {
        if !self.used {
            self.used = true;
            return None;
        }
        Some(self.local.insert(Arc::new(Local {
            circuit: self.circuit.clone(),
        })))
    }

    /// A handle to the circuit for one response future.
    #[inline]
    fn handle(&mut self) -> Handle {
        match self.local() {
            Some(local) => Handle::Local(local.clone()),
            None => Handle::Shared(self.circuit.clone()),
        }
    }

    #[inline]
    fn admitted(&mut self, ticket: Ticket) -> Decision {
        if ticket.is_probe() {
            return self.probe_admitted(ticket);
        }
        Decision::Admitted(ticket)
    }

    #[cold]
    fn probe_admitted(&mut self, ticket: Ticket) -> Decision {
        self.probe = Some(Permit::new(self.handle(), ticket));
        Decision::Probe
    }

    #[inline]
    fn rejected(&mut self, rejection: Rejection) -> Decision {
        self.rejection = Some(rejection);
        Decision::Rejected
    }

    /// Forgets the decision (the inner service failed to get ready): a probe gives its
    /// slot back, and the next `poll_ready` decides again.
    fn forget_decision(&mut self) {
        self.decision = Decision::Undecided;
        self.probe = None;
    }

    /// The circuit this service reports to.
    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Decides admission for the next call. `Pending` only in backpressure mode.
    #[inline]
    fn poll_decision(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !matches!(self.decision, Decision::Undecided) {
            return Poll::Ready(());
        }
        if !self.backpressure {
            self.decision = match self.circuit.admit(true) {
                Ok(ticket) => self.admitted(ticket),
                Err(rejection) => self.rejected(rejection),
            };
            return Poll::Ready(());
        }
        self.poll_backpressure(cx)
    }

    /// Backpressure mode: admitted, or `Pending` until the circuit may admit again.
    ///
    /// A rejected waiter registers with the circuit (woken by any transition or returned
    /// probe slot) and sleeps until the instant admission can next change on its own: the
    /// end of the break, or the probe deadline of a HalfOpen circuit whose slots are all
    /// taken. When that instant has already passed and admission still refuses (feature
    /// `fleet`: another instance holds the fleet's probe lease, which the circuit is not
    /// told about), it looks again every [`RECHECK`] instead of spinning.
    fn poll_backpressure(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut looked_again = false;
        loop {
            if let Ok(ticket) = self.circuit.admit(false) {
                self.sleep = None;
                self.decision = self.admitted(ticket);
                return Poll::Ready(());
            }
            // Register first, then look again: a transition in between is not lost.
            self.circuit.register_waiter(cx.waker());
            if let Ok(ticket) = self.circuit.admit(false) {
                self.sleep = None;
                self.decision = self.admitted(ticket);
                return Poll::Ready(());
            }
            let Some(mut at) = self.circuit.retry_at() else {
                return Poll::Pending;
            };
            let now = tokio::time::Instant::now();
            if at <= now {
                if !looked_again {
                    // The instant may have passed between admission and this read.
                    looked_again = true;
                    continue;
                }
                at = now + RECHECK;
            }
            match &mut self.sleep {
                Some(sleep) if sleep.deadline() == at => {}
                Some(sleep) => sleep.as_mut().reset(at),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            let sleep = self.sleep.as_mut().expect("set above");
            ready!(sleep.as_mut().poll(cx));
            looked_again = true;
        }
    }

    /// The error of the rejection `poll_ready` decided.
    #[inline]
    fn rejection_error(&mut self) -> CircuitOpen {
        let rejection = self.rejection.take().expect("a rejection is held");
        rejection.into_error(self.circuit.rejection_name())
    }

    /// Acts on the decision `poll_ready` made: the started permit of an admitted call,
    /// or the error of a rejected one.
    #[inline]
    fn take_permit(&mut self) -> Result<Permit<Handle>, CircuitOpen> {
        let decision = std::mem::replace(&mut self.decision, Decision::Undecided);
        let Decision::Admitted(ticket) = decision else {
            return self.take_other(decision);
        };
        let handle = self.handle();
        // Started through the service's own circuit handle, not the permit's: the clock
        // read then leaves the permit in registers.
        Ok(Permit::started(&self.circuit, handle, ticket))
    }

    /// `take_permit` for a probe, a rejection, or no decision (a contract violation).
    #[inline]
    fn take_other(&mut self, decision: Decision) -> Result<Permit<Handle>, CircuitOpen> {
        match decision {
            Decision::Probe => {
                let mut permit = self.probe.take().expect("a probe holds its permit");
                permit.start();
                Ok(permit)
            }
            Decision::Rejected => Err(self.rejection_error()),
            Decision::Admitted(_) | Decision::Undecided => {
                panic!("poll_ready must be called first")
            }
        }
    }

    /// `poll_ready` of the modes without a fallback: the inner service is polled only when
    /// the call is admitted (a rejection is ready at once); its error forgets the decision.
    #[inline]
    fn poll_ready_admitted<Req>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>>
    where
        S: Service<Req>,
    {
        ready!(self.poll_decision(cx));
        match self.decision {
            Decision::Admitted(_) | Decision::Probe => {
                let ready = ready!(self.inner.poll_ready(cx));
                if ready.is_err() {
                    self.forget_decision();
                }
                Poll::Ready(ready)
            }
            _ => Poll::Ready(Ok(())),
        }
    }

    /// `poll_ready` of the modes with a fallback: the inner service is polled when the
    /// call is admitted, the fallback (through `poll_fallback`) when it is not; an error
    /// from either forgets the decision, so the next `poll_ready` decides again.
    fn poll_ready_or_fallback<Req>(
        &mut self,
        cx: &mut Context<'_>,
        poll_fallback: impl FnOnce(&mut F, &mut Context<'_>) -> Poll<Result<(), S::Error>>,
    ) -> Poll<Result<(), S::Error>>
    where
        S: Service<Req>,
    {
        ready!(self.poll_decision(cx));
        let ready = match self.decision {
            Decision::Admitted(_) | Decision::Probe => ready!(self.inner.poll_ready(cx)),
            _ => ready!(poll_fallback(&mut self.fallback, cx)),
        };
        if ready.is_err() {
            self.forget_decision();
        }
        Poll::Ready(ready)
    }
}

use std::future::Future as _;

mod modes;

/// Backpressure mode: how often a waiter looks again when the circuit's own deadline has
/// passed but admission still refuses (feature `fleet`: the fleet's probe lease is held
/// by another instance, and lease changes do not wake waiters).
pub(crate) const RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

impl<S, C, F> Clone for CircuitBreaker<S, C, F>
where
    S: Clone,
    C: Clone,
    F: Clone,
{
    fn clone(&self) -> Self {
        Self::from_parts(
            self.inner.clone(),
            self.circuit.clone(),
            self.classifier.clone(),
            self.fallback.clone(),
            self.backpressure,
        )
    }
}

impl<S: std::fmt::Debug, C, F> std::fmt::Debug for CircuitBreaker<S, C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("circuit", &self.circuit)
            .field("backpressure", &self.backpressure)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C, NoFallback>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.poll_ready_admitted::<Req>(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self.take_permit() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}

impl<S, C, G, Req> Service<Req> for CircuitBreaker<S, C, Fallback<G>>
where
    S: Service<Req>,
    G: Service<Req, Response = S::Response, Error = S::Error>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = FallbackFuture<S::Future, C, G::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.poll_ready_or_fallback::<Req>(cx, |fallback, cx| fallback.0.poll_ready(cx))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.take_permit() {
            Ok(permit) => {
                FallbackFuture::called(self.inner.call(req), permit, self.classifier.clone())
            }
            Err(_) => FallbackFuture::fallback(self.fallback.0.call(req)),
        }
    }
}

#[cfg(all(test, feature = "fleet"))]
mod tests {
    use super::*;
    use crate::circuit::AdmissionGate as _;
    use crate::fleet::FleetHook;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tower_layer::Layer as _;

    /// `fleet::hook::GATE_NO_LEASE` (private to the fleet module): the fleet is Open and
    /// another instance holds its probe lease. Checked below through `holds_back_probe`.
    const GATE_NO_LEASE: u8 = 1;
    /// `fleet::hook::GATE_OFF`: no fleet gating.
    const GATE_OFF: u8 = 0;

    /// An inner service that is always ready and counts how often it is polled.
    #[derive(Clone)]
    struct Inner(Arc<AtomicUsize>);

    impl Service<()> for Inner {
        type Response = ();
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<(), Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Ok(()))
        }
    }

    /// Backpressure mode once the local break is over while another instance holds the
    /// fleet's probe lease: admission refuses while the break's end lies in the past. On
    /// c3fdb08 `poll_ready` slept until that past instant, over and over, until tokio's
    /// budget ran out, and woke itself: 1 000 polls for 1 000 turns of the scheduler, with
    /// no time passing. Now it sleeps `RECHECK` between looks: 1 poll.
    #[tokio::test(start_paused = true)]
    async fn backpressure_does_not_spin_while_another_instance_holds_the_fleet_lease() {
        let config = CircuitBreakerConfig::builder()
            .failure_threshold(1)
            .minimum_request_count(1)
            .recovery_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let layer = CircuitBreakerLayer::new(config).backpressure();
        let circuit = layer.circuit().clone();
        let _ = circuit.call(async { Err::<(), ()>(()) }).await;
        assert_eq!(circuit.state(), crate::CircuitState::Open);
        tokio::time::advance(Duration::from_secs(10)).await;
        FleetHook::of(&circuit).set_gate(GATE_NO_LEASE);
        assert!(FleetHook::of(&circuit).holds_back_probe());

        let inner_polls = Arc::new(AtomicUsize::new(0));
        let mut svc = layer.layer(Inner(inner_polls.clone()));
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = polls.clone();
        let waiter = tokio::spawn(async move {
            std::future::poll_fn(|cx| {
                counted.fetch_add(1, Ordering::Relaxed);
                svc.poll_ready(cx)
            })
            .await
            .unwrap();
            svc
        });
        for _ in 0..1_000 {
            tokio::task::yield_now().await;
        }
        let spun = polls.load(Ordering::Relaxed);
        assert_eq!(spun, 1, "polls of poll_ready in 1 000 scheduler turns");
        assert_eq!(inner_polls.load(Ordering::Relaxed), 0);

        // Still held elsewhere: one look per RECHECK.
        tokio::time::advance(RECHECK).await;
        tokio::task::yield_now().await;
        assert_eq!(polls.load(Ordering::Relaxed), 2);

        // The lease comes free (the fleet sync does not wake waiters): admitted within
        // one RECHECK, as the probe.
        FleetHook::of(&circuit).set_gate(GATE_OFF);
        tokio::time::advance(RECHECK).await;
        let svc = waiter.await.unwrap();
        assert_eq!(circuit.state(), crate::CircuitState::HalfOpen);
        assert_eq!(inner_polls.load(Ordering::Relaxed), 1);
        assert_eq!(circuit.stats().rejected_count, 0, "waiting is no rejection");
        drop(svc);
    }
}
