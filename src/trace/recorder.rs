//! [`Recorder`]: a bounded queue of finished calls and the thread that writes them.

use super::{TraceOutcome, TraceRecord, TraceWriter};
use crate::classify::Verdict;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The circuit key a call is recorded under, `(service, operation)`, registered with
/// one recorder by [`Recorder::key`]: a queued call carries only its number, so
/// recording touches no reference count the writer thread also touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordKey {
    id: u32,
}

/// Keys a recorder registers before new ones go to the overflow key.
pub const MAX_KEYS: usize = 1024;
/// The longest service or operation name a recorder registers, in bytes.
pub const MAX_KEY_NAME: usize = 256;
/// The key of names past the limits.
const OVERFLOW: &str = "(overflow)";

/// The keys registered with a recorder, by number; shared with its writer thread.
type KeyTable = Arc<Mutex<Vec<(Box<str>, Box<str>)>>>;

/// When a call started, on the recorder's clock: from [`Recorder::start`].
#[derive(Clone, Copy, Debug)]
pub struct CallStart(Instant);

/// One finished call in the queue: 24 bytes, no allocation.
struct Entry {
    start_ms: u64,
    duration_us: u64,
    key: u32,
    outcome: TraceOutcome,
}

enum Message {
    Call(Entry),
    /// Everything before this is written and flushed; then the sender is answered.
    Flush(SyncSender<()>),
    /// Write what is queued, flush, and stop.
    Stop,
}

struct Shared {
    tx: SyncSender<Message>,
    /// The wall clock at `origin`, in whole milliseconds since the Unix epoch.
    origin_ms: u64,
    origin: Instant,
    queued: AtomicU64,
    dropped: AtomicU64,
    keys: KeyTable,
}

/// Counts of a recorder's life: see [`Recorder::stats`] and [`RecorderHandle::finish`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecorderStats {
    /// Calls accepted into the queue.
    pub queued: u64,
    /// Calls dropped because the queue was full (never blocking the call).
    pub dropped: u64,
    /// Calls written to the trace (known once the writer has finished; 0 before).
    pub written: u64,
}

/// Records finished calls into a trace without ever blocking or failing them.
///
/// [`Recorder::spawn`] starts one writer thread with a bounded queue in front of it
/// ([`std::sync::mpsc::sync_channel`], lock-free on the sending side). A call is queued
/// with one non-blocking `try_send`; when the queue is full the call is dropped from the
/// trace and counted ([`RecorderStats::dropped`]), and the call itself goes on
/// untouched. The writer thread never waits on the queue (a waiting receiver would cost
/// every send a wake-up): it drains it, then sleeps for [`WRITER_PERIOD`], so the queue
/// must hold the calls of one period (65 536 holds 6.5 million calls a second). It turns
/// queued calls into JSON lines through a [`TraceWriter`] over a 64 KiB `BufWriter`.
///
/// Cheap to clone (an `Arc`). The tower face is [`RecorderLayer`](super::RecorderLayer);
/// [`record`](Self::record) wraps any future (the work inside a
/// [`Circuit::call`](crate::Circuit::call) or a registry's `execute`), and
/// [`start`](Self::start) and [`finish`](Self::finish) are the hook for anything else (a
/// [`Permit`](crate::Permit), a callback API).
///
/// # Time
///
/// Start times are the wall clock when the recorder was made plus tokio's
/// [`Instant`] since, in whole milliseconds; durations are tokio's
/// [`Instant`] differences in microseconds. So under a paused tokio clock a
/// recorded run moves with `advance`, exactly like a circuit's clock, and a replay of it
/// lands on the same milliseconds.
///
/// ```
/// use tower_circuit_breaker::classify::Verdict;
/// use tower_circuit_breaker::trace::{RecordKey, Recorder};
///
/// let (recorder, handle) = Recorder::spawn(Vec::new(), 1024);
/// let key: RecordKey = recorder.key("dynamodb", "query");
/// let start = recorder.start();
/// // ... the call ...
/// recorder.finish(key, start, Verdict::Success);
/// drop(recorder);
/// let (bytes, stats) = handle.finish().unwrap();
/// assert_eq!(stats.written, 1);
/// assert!(String::from_utf8(bytes).unwrap().contains("\"svc\":\"dynamodb\""));
/// ```
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The writer thread of a [`Recorder`]: flush it, or finish it to get the writer back.
///
/// Call [`finish`](Self::finish) at shutdown: it is what guarantees every queued call is
/// written and flushed before the process exits. Dropping the handle instead asks the
/// thread to stop once it has written what is queued, without waiting for it (the
/// thread also stops, flushing, when every [`Recorder`] clone and the handle are gone).
pub struct RecorderHandle<W> {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<io::Result<(W, u64)>>>,
    flush: Mutex<()>,
}

impl<W> std::fmt::Debug for RecorderHandle<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderHandle").finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder whose calls `writer` receives as JSON lines, through a queue of
    /// `capacity` calls (at least 1; a slot is 32 bytes: the 24-byte call and the
    /// channel's stamp). Starts one thread.
    pub fn spawn<W: Write + Send + 'static>(
        writer: W,
        capacity: usize,
    ) -> (Self, RecorderHandle<W>) {
        let (tx, rx) = sync_channel(capacity.max(1));
        let keys: KeyTable = Arc::default();
        let origin = Instant::now();
        let origin_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let shared = Arc::new(Shared {
            tx,
            origin_ms,
            origin,
            queued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            keys: keys.clone(),
        });
        let thread = std::thread::Builder::new()
            .name("tcb-trace-writer".into())
            .spawn(move || write_loop(rx, writer, keys))
            .expect("spawning the trace writer thread");
        let handle = RecorderHandle {
            shared: shared.clone(),
            thread: Some(thread),
            flush: Mutex::new(()),
        };
        (Recorder { shared }, handle)
    }

    /// Registers the key `service`/`operation` with this recorder (the same pair
    /// registered twice gets the same key). Takes a lock: call it when setting up, not per
    /// call (a [`RecorderLayer`](super::RecorderLayer) does it once).
    ///
    /// Bounded like a registry, for names that may come from requests: a name longer than
    /// [`MAX_KEY_NAME`] bytes, or a key past the first [`MAX_KEYS`], is recorded under
    /// `(overflow)`/`(overflow)`.
    pub fn key(&self, service: &str, operation: &str) -> RecordKey {
        let mut keys = self.shared.keys.lock().unwrap_or_else(|e| e.into_inner());
        let (service, operation) = if service.len() > MAX_KEY_NAME
            || operation.len() > MAX_KEY_NAME
            || (keys.len() >= MAX_KEYS
                && !keys
                    .iter()
                    .any(|(s, o)| **s == *service && **o == *operation))
        {
            (OVERFLOW, OVERFLOW)
        } else {
            (service, operation)
        };
        let id = match keys
            .iter()
            .position(|(s, o)| **s == *service && **o == *operation)
        {
            Some(id) => id,
            None => {
                keys.push((service.into(), operation.into()));
                keys.len() - 1
            }
        };
        RecordKey { id: id as u32 }
    }

    /// Marks the start of a call.
    #[inline]
    pub fn start(&self) -> CallStart {
        CallStart(Instant::now())
    }

    /// Records a call under `key` (registered with this recorder; another recorder's key
    /// names whatever this one registered under its number, or is dropped) that started
    /// at `start` and ended now with `verdict` ([`Verdict::OpenFor`] is a failure). Never
    /// blocks: a full queue drops the record and counts it.
    #[inline]
    pub fn finish(&self, key: RecordKey, start: CallStart, verdict: Verdict) {
        let now = Instant::now();
        let outcome = match verdict {
            Verdict::Success => TraceOutcome::Ok,
            Verdict::Ignored => TraceOutcome::Ignored,
            _ => TraceOutcome::Fail,
        };
        // Whole units without `as_millis`' and `as_micros`' 128-bit division.
        let since = start.0.saturating_duration_since(self.shared.origin);
        let took = now.saturating_duration_since(start.0);
        self.push(Entry {
            start_ms: self.shared.origin_ms
                + since.as_secs() * 1_000
                + u64::from(since.subsec_millis()),
            duration_us: took.as_secs() * 1_000_000 + u64::from(took.subsec_micros()),
            key: key.id,
            outcome,
        });
    }

    #[inline]
    fn push(&self, entry: Entry) {
        match self.shared.tx.try_send(Message::Call(entry)) {
            Ok(()) => {
                self.shared.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The wall-clock milliseconds of the recorder's time origin (start times are this
    /// plus tokio time since; see [Time](Self#time)).
    pub fn origin_ms(&self) -> u64 {
        self.shared.origin_ms
    }

    /// The tokio instant of the recorder's time origin.
    pub fn origin(&self) -> Instant {
        self.shared.origin
    }

    /// Calls queued and dropped so far (`written` is 0 here: see
    /// [`RecorderHandle::finish`]).
    pub fn stats(&self) -> RecorderStats {
        RecorderStats {
            queued: self.shared.queued.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            written: 0,
        }
    }
}

impl<W> RecorderHandle<W> {
    /// Waits until everything queued before this call is written and flushed. Blocks the
    /// calling thread (not a call path: use it in tests, at shutdown).
    ///
    /// # Errors
    ///
    /// When the writer thread has stopped (its writer failed).
    pub fn flush(&self) -> io::Result<()> {
        let _one = self.flush.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, rx) = sync_channel(1);
        self.shared
            .tx
            .send(Message::Flush(tx))
            .map_err(|_| io::Error::other("the trace writer has stopped"))?;
        rx.recv()
            .map_err(|_| io::Error::other("the trace writer has stopped"))
    }

    /// Writes what is queued, flushes, stops the thread and returns the writer with the
    /// final counts. Blocks the calling thread. Calls recorded after this are dropped and
    /// counted.
    ///
    /// # Errors
    ///
    /// The writer's first error (the thread stops writing at it).
    pub fn finish(mut self) -> io::Result<(W, RecorderStats)> {
        let _ = self.shared.tx.send(Message::Stop);
        let thread = self.thread.take().expect("finish runs once");
        let (writer, written) = thread
            .join()
            .map_err(|_| io::Error::other("the trace writer thread panicked"))??;
        let stats = RecorderStats {
            queued: self.shared.queued.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            written,
        };
        Ok((writer, stats))
    }
}

impl<W> Drop for RecorderHandle<W> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // Not waiting: the thread writes what is queued and stops.
            let _ = self.shared.tx.try_send(Message::Stop);
        }
    }
}

/// How long the writer thread sleeps when it finds the queue empty.
pub const WRITER_PERIOD: Duration = Duration::from_millis(10);

fn write_loop<W: Write>(rx: Receiver<Message>, writer: W, keys: KeyTable) -> io::Result<(W, u64)> {
    let mut out = TraceWriter::new(io::BufWriter::with_capacity(64 * 1024, writer));
    // The writer's copy of the key table, refreshed when a call names a key it lacks.
    let mut names: Vec<TraceRecord> = Vec::new();
    loop {
        let message = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => {
                std::thread::sleep(WRITER_PERIOD);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
        };
        match message {
            Message::Call(entry) => {
                let id = entry.key as usize;
                if id >= names.len() {
                    let keys = keys.lock().unwrap_or_else(|e| e.into_inner());
                    names.extend(
                        keys[names.len()..]
                            .iter()
                            .map(|(s, o)| TraceRecord::new(0, 0, TraceOutcome::Ok, &**s, &**o)),
                    );
                }
                let Some(record) = names.get_mut(id) else {
                    continue;
                };
                record.start_ms = entry.start_ms;
                record.duration_us = entry.duration_us;
                record.outcome = entry.outcome;
                out.write(record)?;
            }
            Message::Flush(done) => {
                out.flush()?;
                let _ = done.send(());
            }
            Message::Stop => break,
        }
    }
    out.flush()?;
    let written = out.records_written();
    let writer = out.into_inner().into_inner().map_err(|e| e.into_error())?;
    Ok((writer, written))
}

#[cfg(test)]
mod tests {
    /// What the docs say a queued call costs.
    #[test]
    fn a_queued_call_is_24_bytes() {
        assert_eq!(std::mem::size_of::<super::Message>(), 24);
    }
}
