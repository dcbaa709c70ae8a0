//! Distinct-event counter that stays bounded and idempotent.
//!
//! Counting events exactly under redelivery needs the set of ids seen, which
//! grows without end. This counter keeps the exact set of 64-bit event hashes
//! up to [`EXACT_LIMIT`], then a HyperLogLog sketch of 2^8 one-byte registers
//! (standard error 1.04/16 = 6.5%). The limit is high enough that nearly every
//! record counts exactly (8 KiB of hashes at most), and low enough that a
//! record edited for years stays bounded. Both forms are functions of the set of ids
//! seen (the sketch of a union is the register-wise max), so merge stays
//! commutative, associative and idempotent across the switch.

use uuid::Uuid;

/// Distinct events counted exactly up to this many.
pub const EXACT_LIMIT: usize = 1024;
const P: u32 = 8;
/// Registers in the sketch.
pub const REGISTERS: usize = 1 << P;

/// The counter's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventCounter {
    /// Sorted, unique hashes of the event ids seen.
    Exact(Vec<u64>),
    /// HyperLogLog registers.
    Sketch(Box<[u8; REGISTERS]>),
}

impl Default for EventCounter {
    fn default() -> Self {
        EventCounter::Exact(Vec::new())
    }
}

/// SplitMix64's finaliser: UUIDv7 ids lead with a timestamp, so their bits
/// must be mixed before the sketch uses the top ones as a register index.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 64-bit hash of an event id the counter works on.
pub fn event_hash(id: &Uuid) -> u64 {
    let (hi, lo) = id.as_u64_pair();
    mix(lo ^ mix(hi))
}

fn sketch_insert(regs: &mut [u8; REGISTERS], h: u64) {
    let idx = (h >> (64 - P)) as usize;
    let rest = h << P;
    // Rank of the first set bit in the remaining 56 bits, 1-based; 57 if none.
    let rank = (rest.leading_zeros().min(64 - P) + 1) as u8;
    if regs[idx] < rank {
        regs[idx] = rank;
    }
}

fn sketch_of(hashes: &[u64]) -> Box<[u8; REGISTERS]> {
    let mut regs = Box::new([0u8; REGISTERS]);
    for &h in hashes {
        sketch_insert(&mut regs, h);
    }
    regs
}

impl EventCounter {
    /// Counts an event id; idempotent.
    pub fn insert(&mut self, h: u64) {
        match self {
            EventCounter::Exact(v) => {
                if let Err(i) = v.binary_search(&h) {
                    if v.capacity() == 0 {
                        // A record sees a handful of events; skip growing 4, 8.
                        v.reserve_exact(8);
                    }
                    v.insert(i, h);
                    if v.len() > EXACT_LIMIT {
                        *self = EventCounter::Sketch(sketch_of(v));
                    }
                }
            }
            EventCounter::Sketch(regs) => sketch_insert(regs, h),
        }
    }

    /// Joins another replica's counter.
    pub fn merge(&mut self, other: &EventCounter) {
        match other {
            EventCounter::Exact(theirs) => {
                for &h in theirs {
                    self.insert(h);
                }
            }
            EventCounter::Sketch(theirs) => {
                if let EventCounter::Exact(mine) = self {
                    *self = EventCounter::Sketch(sketch_of(mine));
                }
                if let EventCounter::Sketch(regs) = self {
                    for (m, t) in regs.iter_mut().zip(theirs.iter()) {
                        *m = (*m).max(*t);
                    }
                }
            }
        }
    }

    /// The count: exact up to [`EXACT_LIMIT`], an estimate above.
    pub fn count(&self) -> u64 {
        match self {
            EventCounter::Exact(v) => v.len() as u64,
            EventCounter::Sketch(regs) => {
                let m = REGISTERS as f64;
                let sum: f64 = regs.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
                let zeros = regs.iter().filter(|&&r| r == 0).count();
                let alpha = 0.7213 / (1.0 + 1.079 / m);
                let raw = alpha * m * m / sum;
                let estimate = if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw };
                // Never report fewer than the exact phase could already see.
                (estimate.round() as u64).max(EXACT_LIMIT as u64 + 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u64, salt: u64) -> Vec<u64> {
        (0..n).map(|i| event_hash(&Uuid::from_u64_pair(0x0190_0000_0000_7000 + i, salt ^ i))).collect()
    }

    #[test]
    fn exact_below_the_limit_and_idempotent() {
        let mut c = EventCounter::default();
        for h in ids(EXACT_LIMIT as u64, 1).into_iter().chain(ids(10, 1)) {
            c.insert(h);
        }
        assert_eq!(c.count(), EXACT_LIMIT as u64);
        assert!(matches!(c, EventCounter::Exact(_)));
    }

    #[test]
    fn estimate_is_close_above_the_limit() {
        for n in [EXACT_LIMIT as u64 + 1, 2_000, 10_000, 100_000] {
            let mut c = EventCounter::default();
            for h in ids(n, n) {
                c.insert(h);
            }
            let err = (c.count() as f64 - n as f64).abs() / n as f64;
            assert!(err < 0.2, "n={n} estimated {} ({:.1}% off)", c.count(), err * 100.0);
        }
    }

    #[test]
    fn merge_across_the_switch_equals_one_fold() {
        let all = ids(EXACT_LIMIT as u64 + 18, 7);
        let mut whole = EventCounter::default();
        all.iter().for_each(|&h| whole.insert(h));
        assert!(matches!(whole, EventCounter::Sketch(_)));
        // Both halves are exact; their union crosses the switch.
        let (mut a, mut b) = (EventCounter::default(), EventCounter::default());
        all[..EXACT_LIMIT - 12].iter().for_each(|&h| a.insert(h));
        all[EXACT_LIMIT - 17..].iter().for_each(|&h| b.insert(h));
        assert!(matches!((&a, &b), (EventCounter::Exact(_), EventCounter::Exact(_))));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, whole);
        assert_eq!(ba, whole);
    }
}
