//! The one seeded generator of tests, benchmarks and the synthetic workload
//! of `tidemark demo` and `tidemark loadgen`.
//!
//! Key decision: xorshift64* written out here rather than a `rand`
//! generator, so a seed gives the same sequence on every platform and
//! version; it is the algorithm the benchmark workload was measured with, so
//! that workload (and the figures taken on it) stays as it was. It is not
//! for secrets: keys come from the operating system's generator.

/// xorshift64*: 64 bits of state, one shift-xor chain and a multiply per draw.
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator from `seed`. The seed is spread by a multiply and made
    /// odd, so every seed (0 included) gives a non-zero state.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n` > 0), by Lemire's multiply-shift (the bias is
    /// below 2^-32 for the sizes used here).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0, "below(0)");
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// True with probability `pct` percent (`next_u64() % 100 < pct`: the
    /// draw the benchmark workload makes).
    pub fn percent(&mut self, pct: u64) -> bool {
        self.next_u64() % 100 < pct
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// One of `items` (non-empty), uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_draws_stay_in_range() {
        let (mut a, mut b) = (SeededRng::new(7), SeededRng::new(7));
        let mut seen = [0usize; 10];
        for _ in 0..10_000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let i = a.below(10);
            b.below(10);
            seen[i] += 1;
            let u = a.unit();
            b.unit();
            assert!((0.0..1.0).contains(&u));
        }
        // Every bucket of 10 is hit roughly 1,000 times.
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_ne!(SeededRng::new(1).next_u64(), SeededRng::new(2).next_u64());
        assert_ne!(SeededRng::new(0).next_u64(), 0, "seed 0 is not a stuck state");
    }

    /// The sequence is part of the contract: the benchmark workload depends on it.
    #[test]
    fn the_sequence_for_a_seed_is_fixed() {
        let mut r = SeededRng::new(1);
        let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(first, [0x0d83_b3e2_9a21_487a, 0x54c4_4c79_f1fe_9d67, 0xa845_f342_007a_0e78]);
    }
}
