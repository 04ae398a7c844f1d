//! The length of a break: the recovery timeout, grown by the optional backoff, with jitter.

use super::Locked;
use std::time::Duration;

impl Locked {
    /// The length of the next break: the recovery timeout, grown by the backoff.
    pub(super) fn break_duration(&mut self) -> Duration {
        let base = self.config.recovery_timeout;
        let Some(b) = self.config.backoff else {
            return base;
        };
        let grown = base.as_secs_f64() * b.multiplier.powi(self.opens_in_a_row.min(1_000) as i32);
        let nominal = grown.min(b.max.as_secs_f64());
        let shrink = if b.jitter > 0.0 {
            b.jitter * self.next_unit()
        } else {
            0.0
        };
        Duration::from_secs_f64(nominal * (1.0 - shrink))
    }

    /// A pseudo-random number in `[0, 1)` (splitmix64): jitter needs spread, not secrecy.
    fn next_unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}
