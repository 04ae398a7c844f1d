//! One key's entry in the registry's table: its circuit, the per-stripe handles calls
//! hold, the idle test, and the hash of a key.

use crate::{Circuit, CircuitBreakerConfig};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// One key's circuit in the table, with what the registry keeps beside it.
pub(super) struct Entry {
    pub(super) hash: u64,
    /// The length of the service name: the circuit's name is `service/operation`.
    pub(super) split: u32,
    pub(super) circuit: Circuit,
    /// The configuration asked for at creation, before overrides: re-applying a document
    /// recomputes the circuit's configuration from it.
    pub(super) base: Arc<CircuitBreakerConfig>,
    /// Per thread stripe, a handle to the circuit that lookups clone: a reference count
    /// per stripe, so threads running calls through one key write to no common line.
    /// Made on the stripe's first lookup.
    pub(super) handles: Box<[OnceLock<Arc<Handle>>]>,
    /// The wall time the circuit's clock started from (taken just after it, so to within
    /// microseconds): its stats' times minus this are instants of its own clock.
    pub(super) origin: SystemTime,
}

/// One stripe's handle to an entry's circuit: held for as long as a call runs through it.
#[repr(align(64))]
pub(super) struct Handle(pub(super) Circuit);

/// The hash of a key: 8-byte words folded in by xor, multiply and rotate (a name's last
/// bytes as one more word, see `tail`), the two names separated by their lengths, then a
/// final avalanche so high and low bits both depend on every byte (the chain comes from
/// the low bits).
pub(super) fn key_hash(seed: u64, service: &str, operation: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    #[inline]
    fn fold(mut h: u64, bytes: &[u8]) -> u64 {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            h = (h ^ word(w)).wrapping_mul(K).rotate_left(31);
        }
        (h ^ tail(bytes, words.remainder().len()) ^ (bytes.len() as u64) << 56)
            .wrapping_mul(K)
            .rotate_left(31)
    }
    /// The last `rem` (< 8) bytes of `bytes`, read with at most two loads rather than a
    /// byte at a time: where the name is long enough, the last 8 bytes (overlapping the
    /// word before); otherwise two overlapping halves. The length is mixed in after, so
    /// names that overlap differently still hash apart.
    #[inline]
    fn tail(bytes: &[u8], rem: usize) -> u64 {
        let n = bytes.len();
        match (rem, n) {
            (0, _) => 0,
            (_, 8..) => word(&bytes[n - 8..]),
            (_, 4..) => u64::from(half(&bytes[..4])) | u64::from(half(&bytes[n - 4..])) << 32,
            _ => u64::from(bytes[0]) | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1]) << 16,
        }
    }
    let mut h = fold(fold(seed, service.as_bytes()), operation.as_bytes());
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// `a == b`, in 8-byte words (the last one overlapping the word before) instead of a
/// call to `memcmp`: names are short, and every lookup compares two.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        8.. => {
            let whole = a.chunks_exact(8).zip(b.chunks_exact(8));
            whole.into_iter().all(|(x, y)| word(x) == word(y))
                && word(&a[n - 8..]) == word(&b[n - 8..])
        }
        4.. => half(&a[..4]) == half(&b[..4]) && half(&a[n - 4..]) == half(&b[n - 4..]),
        _ => a.iter().zip(b).all(|(x, y)| x == y),
    }
}

/// The 8 bytes of `s` (exactly 8) as a word.
#[inline]
fn word(s: &[u8]) -> u64 {
    u64::from_le_bytes(s.try_into().expect("8 bytes"))
}

/// The 4 bytes of `s` (exactly 4) as a half word.
#[inline]
fn half(s: &[u8]) -> u32 {
    u32::from_le_bytes(s.try_into().expect("4 bytes"))
}

impl Entry {
    pub(super) fn is(&self, service: &str, operation: &str) -> bool {
        let name = self.circuit.name().as_bytes();
        self.split as usize == service.len()
            && name.len() == service.len() + 1 + operation.len()
            && same_bytes(&name[..service.len()], service.as_bytes())
            && same_bytes(&name[service.len() + 1..], operation.as_bytes())
    }

    pub(super) fn service(&self) -> &str {
        &self.circuit.name()[..self.split as usize]
    }

    pub(super) fn operation(&self) -> &str {
        &self.circuit.name()[self.split as usize + 1..]
    }

    /// This stripe's handle.
    #[inline]
    pub(super) fn handle(&self, stripe: usize) -> &Arc<Handle> {
        self.handles[stripe].get_or_init(|| Arc::new(Handle(self.circuit.clone())))
    }

    /// Whether the registry may forget it; see the module docs, "Limits".
    pub(super) fn is_idle(self: &Arc<Self>, idle_ns: u64) -> bool {
        let held = |h: &OnceLock<Arc<Handle>>| h.get().is_some_and(|h| Arc::strong_count(h) > 1);
        if self.handles.iter().any(held) {
            return false; // a call is running through it
        }
        let c = &self.circuit;
        // The circuit's clock started at its creation: a young circuit is not idle, and
        // this check spares the stats of every circuit of a table that is filling up.
        let now = c.now_ns();
        if now < idle_ns || c.state() != crate::CircuitState::Closed {
            return false;
        }
        let stats = c.stats();
        if stats.manual_override.is_some() || stats.window.requests > 0 {
            return false;
        }
        let since = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(self.origin).ok())
                .map_or(0, |d| d.as_nanos() as u64)
        };
        let last = since(stats.last_success_time).max(since(stats.last_failure_time));
        now.saturating_sub(last) >= idle_ns
    }
}

#[cfg(test)]
mod tests {
    use super::key_hash;
    use std::collections::HashSet;

    /// Every byte of a name reaches the hash, whatever its length and place (the tail is
    /// read in overlapping loads): changing any one byte of a name of 0–40 bytes, or
    /// moving the split between service and operation, changes the hash.
    #[test]
    fn every_byte_and_the_split_reach_the_hash() {
        let mut seen = HashSet::new();
        for n in 0..=40usize {
            let base: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert!(seen.insert(key_hash(7, &base, "op")), "length {n}");
            for i in 0..n {
                let mut b = base.clone().into_bytes();
                b[i] = b'Z';
                let changed = String::from_utf8(b).unwrap();
                assert!(
                    seen.insert(key_hash(7, &changed, "op")),
                    "length {n}, byte {i}"
                );
                assert!(
                    seen.insert(key_hash(7, "svc", &changed)),
                    "operation {n}, byte {i}"
                );
            }
            if n > 0 {
                let (s, o) = base.split_at(n / 2);
                assert_ne!(key_hash(7, s, o), key_hash(7, o, s), "split at {}", n / 2);
            }
        }
        assert_eq!(
            key_hash(7, "dynamodb", "putItem"),
            key_hash(7, "dynamodb", "putItem")
        );
        assert_ne!(
            key_hash(7, "dynamodb", "putItem"),
            key_hash(8, "dynamodb", "putItem")
        );
    }

    /// `same_bytes` is `==` for every length and every place a difference can be.
    #[test]
    fn same_bytes_is_slice_equality() {
        for n in 0..=40usize {
            let a: Vec<u8> = (0..n).map(|i| i as u8 ^ 0x5a).collect();
            assert!(super::same_bytes(&a, &a.clone()), "length {n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 1;
                assert!(!super::same_bytes(&a, &b), "length {n}, byte {i}");
            }
            assert!(!super::same_bytes(&a, &a[..n.saturating_sub(1)]) || n == 0);
        }
    }
}
