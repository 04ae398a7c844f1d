//! What the trace itself shows, per key and per time bucket: calls, failures, latency
//! quantiles, and the labelled incidents. The report's upper plots.
//!
//! Memory is fixed by the number of keys and buckets, not by the trace's length:
//! latencies go into a log-scale histogram per bucket (20 bins a decade, so a quantile
//! is off by at most 12 %).

use std::collections::BTreeMap;
use tower_circuit_breaker::trace::{TraceOutcome, TraceRecord};

/// Histogram bins per decade of microseconds.
const BINS_PER_DECADE: f64 = 20.0;
/// Bins: 1 µs to 10^8 µs (100 s), the last one holding everything longer.
const BINS: usize = 8 * 20 + 1;

/// One time bucket of one key.
#[derive(Clone, Debug)]
pub struct Bucket {
    /// Calls that started in it.
    pub calls: u32,
    /// Of those, failed.
    pub failed: u32,
    /// Latency histogram of its calls.
    hist: Vec<u32>,
}

impl Bucket {
    fn new() -> Self {
        Bucket {
            calls: 0,
            failed: 0,
            hist: Vec::new(),
        }
    }

    /// The latency below which a share `q` of the bucket's calls fell, in ms (the upper
    /// edge of its bin); `None` for an empty bucket.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u32 = self.hist.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (q * f64::from(total)).ceil().max(1.0) as u32;
        let mut seen = 0;
        for (bin, n) in self.hist.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(10f64.powf((bin + 1) as f64 / BINS_PER_DECADE) / 1_000.0);
            }
        }
        None
    }
}

/// An incident, as the replay found it (labelled or inferred).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// The `inc` label, or a word saying it was inferred.
    pub label: String,
    /// Start, ms since the epoch.
    pub start_ms: u64,
    /// End (recovery), ms since the epoch.
    pub end_ms: u64,
}

/// One key's traffic.
#[derive(Clone, Debug)]
pub struct KeyTraffic {
    /// Its buckets, `Traffic::buckets` of them.
    pub buckets: Vec<Bucket>,
    /// Its incidents, in time order (filled in from the replay).
    pub incidents: Vec<Span>,
    /// Calls in all.
    pub calls: u64,
    /// Failed calls in all.
    pub failed: u64,
}

/// Every key's traffic over the trace's time span.
#[derive(Clone, Debug)]
pub struct Traffic {
    /// Start of the first bucket, ms since the epoch.
    pub start_ms: u64,
    /// Width of a bucket, ms.
    pub bucket_ms: u64,
    /// Buckets per key.
    pub buckets: usize,
    /// Per `(service, operation)`.
    pub keys: BTreeMap<(String, String), KeyTraffic>,
}

impl Traffic {
    /// Empty, for calls starting in `[start_ms, end_ms]`, in about `target` buckets,
    /// each a whole number of `align_ms`, the first starting at a multiple of `align_ms`
    /// (so the replay's buckets fall inside ours).
    pub fn new(start_ms: u64, end_ms: u64, target: u64, align_ms: u64) -> Self {
        let align_ms = align_ms.max(1);
        let start_ms = start_ms / align_ms * align_ms;
        let span = end_ms.saturating_sub(start_ms).max(1);
        let bucket_ms = span.div_ceil(target.max(1)).div_ceil(align_ms).max(1) * align_ms;
        Traffic {
            start_ms,
            bucket_ms,
            buckets: (span / bucket_ms + 1) as usize,
            keys: BTreeMap::new(),
        }
    }

    /// The bucket a time falls in (clamped to the span).
    pub fn bucket_of(&self, t_ms: u64) -> usize {
        ((t_ms.saturating_sub(self.start_ms) / self.bucket_ms) as usize).min(self.buckets - 1)
    }

    /// Counts one call.
    pub fn add(&mut self, r: &TraceRecord) {
        let b = self.bucket_of(r.start_ms);
        let n = self.buckets;
        let key = match self.keys.get_mut(&(r.service.clone(), r.operation.clone())) {
            Some(k) => k,
            None => self
                .keys
                .entry((r.service.clone(), r.operation.clone()))
                .or_insert_with(|| KeyTraffic {
                    buckets: vec![Bucket::new(); n],
                    incidents: Vec::new(),
                    calls: 0,
                    failed: 0,
                }),
        };
        let bucket = &mut key.buckets[b];
        if bucket.hist.is_empty() {
            bucket.hist = vec![0; BINS];
        }
        bucket.calls += 1;
        key.calls += 1;
        if r.outcome == TraceOutcome::Fail {
            bucket.failed += 1;
            key.failed += 1;
        }
        let bin = ((r.duration_us.max(1) as f64).log10() * BINS_PER_DECADE) as usize;
        bucket.hist[bin.min(BINS - 1)] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let mut t = Traffic::new(0, 10_000, 10, 1_000);
        assert_eq!((t.bucket_ms, t.buckets), (1_000, 11));
        for i in 0..100u64 {
            let mut r = TraceRecord::new(i * 10, 1_000 * (i + 1), TraceOutcome::Ok, "s", "o");
            if i == 99 {
                r.outcome = TraceOutcome::Fail;
            }
            t.add(&r);
        }
        let k = &t.keys[&("s".to_owned(), "o".to_owned())];
        assert_eq!((k.calls, k.failed, k.buckets[0].calls), (100, 1, 100));
        let p50 = k.buckets[0].quantile_ms(0.5).unwrap();
        assert!((50.0..57.0).contains(&p50), "{p50}");
        assert!(k.buckets[1].quantile_ms(0.5).is_none());
    }
}
