//! A response body that records its call's outcome at end of stream.
//!
//! A streamed response is not over when its head arrives: the body can still fail after
//! some frames (a reset connection, an upstream that dies mid-way). [`RecordBody`] holds
//! the call's [`Permit`] until the body ends, the way tower-http's `classify_eos` defers
//! classification to the end of stream:
//!
//! * the body ends (it returned its last frame, or says
//!   [`is_end_stream`](Body::is_end_stream) after a frame or when dropped): the verdict at
//!   end of stream, [`Verdict::Success`] unless set with [`RecordBody::with_eos_verdict`];
//! * a frame is an error: [`Verdict::Failure`] (or what the classifier given to
//!   [`RecordBody::with_error_classifier`] says);
//! * the body is dropped before either: the permit is dropped unrecorded, so the
//!   dropped-call policy decides
//!   ([`dropped_call_is_failure`](crate::CircuitBreakerConfig::dropped_call_is_failure)).
//!
//! The call is timed from the permit's acquisition to the end of the body.
//!
//! ```
//! use http_body::Body;
//! use tower_circuit_breaker::body::RecordBody;
//! use tower_circuit_breaker::{Circuit, CircuitBreakerConfig};
//!
//! # fn send() -> http::Response<String> { http::Response::new(String::from("hello")) }
//! let circuit = Circuit::new(CircuitBreakerConfig::default());
//! let permit = circuit.try_acquire()?;
//! let response = send(); // the request, made while holding the permit
//! let response = response.map(|body| RecordBody::new(body, permit));
//! assert!(!response.body().is_end_stream());
//! # Ok::<(), tower_circuit_breaker::error::CircuitOpen>(())
//! ```

use crate::circuit::Permit;
use crate::classify::Verdict;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project_lite::pin_project! {
    /// A body that records its [`Permit`]'s outcome when it ends or fails; see the
    /// [module docs](self).
    pub struct RecordBody<B, F = fn(&<B as Body>::Error) -> Verdict>
    where
        B: Body,
    {
        #[pin]
        inner: B,
        permit: Option<Permit>,
        eos: Verdict,
        on_error: F,
    }

    impl<B, F> PinnedDrop for RecordBody<B, F>
    where
        B: Body,
    {
        fn drop(this: Pin<&mut Self>) {
            // A consumer may stop polling once `is_end_stream` says the body is over
            // (hyper does): that is the end of the stream, not a dropped call.
            let this = this.project();
            if this.inner.is_end_stream() {
                if let Some(permit) = this.permit.take() {
                    permit.record(*this.eos);
                }
            }
        }
    }
}

impl<B: Body> RecordBody<B> {
    /// Wraps `body`: `permit` is recorded as a success at its end, a failure at its first
    /// error frame.
    pub fn new(body: B, permit: Permit) -> Self {
        RecordBody {
            inner: body,
            permit: Some(permit),
            eos: Verdict::Success,
            on_error: |_| Verdict::Failure,
        }
    }
}

impl<B: Body, F> RecordBody<B, F>
where
    F: Fn(&B::Error) -> Verdict,
{
    /// Like [`new`](RecordBody::new), with `on_error` deciding the verdict of an error
    /// frame (`new` counts every error as a [`Verdict::Failure`]).
    pub fn with_error_classifier(body: B, permit: Permit, on_error: F) -> Self {
        RecordBody {
            inner: body,
            permit: Some(permit),
            eos: Verdict::Success,
            on_error,
        }
    }
}

impl<B: Body, F> RecordBody<B, F> {
    /// The verdict recorded when the body ends without an error (by default
    /// [`Verdict::Success`]); e.g. decided from the response's status before wrapping it.
    pub fn with_eos_verdict(mut self, verdict: Verdict) -> Self {
        self.eos = verdict;
        self
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Whether the outcome is still to be recorded.
    pub fn is_pending(&self) -> bool {
        self.permit.is_some()
    }
}

impl<B, F> Body for RecordBody<B, F>
where
    B: Body,
    F: Fn(&B::Error) -> Verdict,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            None => {
                if let Some(permit) = this.permit.take() {
                    permit.record(*this.eos);
                }
            }
            Some(Err(error)) => {
                if let Some(permit) = this.permit.take() {
                    permit.record((this.on_error)(error));
                }
            }
            Some(Ok(_)) => {
                if this.inner.is_end_stream() {
                    if let Some(permit) = this.permit.take() {
                        permit.record(*this.eos);
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body, F> std::fmt::Debug for RecordBody<B, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBody")
            .field("pending", &self.permit.is_some())
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}
