//! `body::RecordBody`: a streamed body records its call's outcome when it ends, so a body
//! that fails mid-way counts as a failure although its head was a 200.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame};
use tower_circuit_breaker::body::RecordBody;
use tower_circuit_breaker::classify::Verdict;
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitState};

/// A body that yields its frames in order (an `Err` is an error frame), then ends.
struct Frames(VecDeque<Result<&'static [u8], std::io::Error>>);

impl Frames {
    fn data_then(n: usize, error: bool) -> Self {
        let mut frames: VecDeque<_> = (0..n).map(|_| Ok(&b"chunk"[..])).collect();
        if error {
            frames.push_back(Err(std::io::Error::other("connection reset mid-body")));
        }
        Frames(frames)
    }
}

impl Body for Frames {
    type Data = &'static [u8];
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|f| f.map(Frame::data)))
    }
}

/// Reads `body` to its end or its first error; the number of data frames read.
async fn drain<B: Body + Unpin>(body: &mut B) -> usize {
    let mut frames = 0;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
        if frame.is_err() {
            break;
        }
        frames += 1;
    }
    frames
}

fn circuit() -> Circuit {
    Circuit::named("stream", CircuitBreakerConfig::default())
}

#[tokio::test(start_paused = true)]
async fn a_body_that_errors_after_some_frames_is_a_failure() {
    let c = circuit();
    for _ in 0..5 {
        let mut body = RecordBody::new(Frames::data_then(3, true), c.try_acquire().unwrap());
        assert_eq!(drain(&mut body).await, 3);
        assert!(!body.is_pending());
    }
    assert_eq!(c.stats().failure_count, 5);
    assert_eq!(c.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_body_read_to_its_end_is_a_success_and_nothing_before() {
    let c = circuit();
    let mut body = RecordBody::new(Frames::data_then(3, false), c.try_acquire().unwrap());
    let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
    assert!(first.is_some_and(|f| f.is_ok()));
    assert!(body.is_pending());
    assert_eq!(c.stats().total_requests, 0);
    assert_eq!(drain(&mut body).await, 2);
    let s = c.stats();
    assert_eq!((s.success_count, s.failure_count), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn the_error_and_end_verdicts_can_be_chosen() {
    let c = circuit();
    let mut body = RecordBody::with_error_classifier(
        Frames::data_then(1, true),
        c.try_acquire().unwrap(),
        |_: &std::io::Error| Verdict::Ignored,
    );
    drain(&mut body).await;
    let mut body = RecordBody::new(Frames::data_then(1, false), c.try_acquire().unwrap())
        .with_eos_verdict(Verdict::Failure);
    drain(&mut body).await;
    let s = c.stats();
    assert_eq!((s.ignored_count, s.failure_count), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_before_its_end_follows_the_dropped_call_policy() {
    let ignored = circuit();
    let body = RecordBody::new(Frames::data_then(2, false), ignored.try_acquire().unwrap());
    drop(body);
    assert_eq!(ignored.stats().ignored_count, 1);

    let config = CircuitBreakerConfig::builder()
        .dropped_call_is_failure(true)
        .build()
        .unwrap();
    let counted = Circuit::named("stream", config);
    let body = RecordBody::new(Frames::data_then(2, false), counted.try_acquire().unwrap());
    drop(body);
    assert_eq!(counted.stats().failure_count, 1);
}

/// A consumer may stop at `is_end_stream` (hyper does): dropping a finished body is its end.
#[tokio::test(start_paused = true)]
async fn a_body_dropped_at_its_end_is_a_success() {
    let c = circuit();
    drop(RecordBody::new(String::new(), c.try_acquire().unwrap()));
    assert_eq!(c.stats().success_count, 1);
}
