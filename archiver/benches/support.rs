//! Timing shared by the archiver's bench binaries.

use std::time::Instant;

/// Best of `n` runs, in seconds: the bounds and ours measured the same way.
pub fn best(n: usize, mut f: impl FnMut()) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}
