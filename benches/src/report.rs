//! What every bench binary shares: whether this is a measurement or a smoke
//! run, timing ours and the peer the same way, and the side-by-side table.
//!
//! Key decision: one timing function ([`timings`]) for ours and for every
//! peer or bound, so that setup, dropping the output and the choice of the
//! best run are identical on both sides of a ratio; and one table layout
//! ([`row`]), so that every bench reads the same way: what, ours, theirs, the
//! ratio, the target (docs/design.md#targets) and whether it is met.

use std::hint::black_box;
use std::time::Instant;

/// How a bench binary was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// `cargo bench` (it passes `--bench`): measure, on the full input.
    /// Otherwise (`cargo test --benches`): run every path once on a small
    /// input, to prove the code paths work, not to measure them.
    pub full: bool,
    /// `--list` or `--profile-time`: criterion only lists its benchmarks,
    /// or runs one under a profiler; print no table.
    pub list: bool,
}

impl Mode {
    /// Reads the process arguments.
    pub fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        // `cargo bench` passes --bench; `cargo test --benches` does not.
        let profiling = args.iter().any(|a| a == "--profile-time" || a.starts_with("--profile-time="));
        Self { full: has("--bench") && !has("--test"), list: has("--list") || profiling }
    }

    /// `full` in a measurement, `smoke` otherwise.
    pub fn pick<T>(&self, full: T, smoke: T) -> T {
        if self.full { full } else { smoke }
    }

    /// A size from the environment variable `var` (default `default`) in a
    /// measurement; `smoke` (or less, if `var` asks for less) otherwise.
    ///
    /// # Panics
    /// If `var` is set to something that is not a number: the run would not
    /// measure what the user asked for.
    pub fn size(&self, var: &str, default: usize, smoke: usize) -> usize {
        let wanted = match std::env::var(var) {
            Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{var} must be a whole number, got `{v}`")),
            Err(_) => default,
        };
        if self.full { wanted } else { wanted.min(smoke) }
    }

    /// Ends the side-by-side output: in a smoke run, says the figures above
    /// are not measurements.
    pub fn footer(&self) {
        if !self.full {
            println!("(a smoke run of the code paths, as under `cargo test --benches`: these are not measurements)");
        }
    }
}

/// `runs` timings of `run` in seconds, fastest first; `setup` and dropping
/// the output are not timed.
pub fn timings<I, O>(runs: usize, mut setup: impl FnMut() -> I, mut run: impl FnMut(I) -> O) -> Vec<f64> {
    let mut t: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let input = setup();
            let t = Instant::now();
            let out = black_box(run(black_box(input)));
            let elapsed = t.elapsed();
            drop(out);
            elapsed.as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t
}

/// The best of `runs` timings of `run`, in seconds: [`timings`] without setup.
pub fn best<O>(runs: usize, mut run: impl FnMut() -> O) -> f64 {
    timings(runs, || (), |()| run())[0]
}

/// The median of timings sorted fastest first.
pub fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

/// The `p` quantile (0 to 1) of sorted values, nearest rank.
pub fn percentile(sorted: &[usize], p: f64) -> usize {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The mean, 0 for no values.
pub fn mean(v: &[usize]) -> f64 {
    v.iter().sum::<usize>() as f64 / v.len().max(1) as f64
}

/// `1234567.8` as `1,234,568`.
pub fn grouped(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `x` with `decimals` digits after the point, for GB/s and microseconds.
pub fn fixed(x: f64, decimals: usize) -> String {
    format!("{x:.decimals$}")
}

/// Bytes per second as GB/s (10^9, as network and disk figures are quoted).
pub fn gbps(bytes: f64, secs: f64) -> String {
    fixed(bytes / secs / 1e9, 2)
}

/// How fast ours is against the peer, from the two rates: `0.93x the rate`.
pub fn of_rate(ours: f64, theirs: f64) -> String {
    format!("{:.2}x the rate", ours / theirs)
}

/// One line of the side-by-side table; the header is a `row` too.
pub fn row(what: &str, ours: String, theirs: String, ratio: String, target: &str) {
    let line = format!("{what:<44} {ours:>13} {theirs:>13} {ratio:>16}   {target}");
    println!("{}", line.trim_end());
}

/// How a target reads in the table.
pub fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_puts_commas_every_three_digits() {
        assert_eq!(grouped(0.0), "0");
        assert_eq!(grouped(999.4), "999");
        assert_eq!(grouped(1_234_567.8), "1,234,568");
        assert_eq!(grouped(-5.0), "0");
    }

    #[test]
    fn percentile_and_mean_of_small_lists() {
        let v = [1, 2, 3, 4, 100];
        assert_eq!(percentile(&v, 0.5), 3);
        assert_eq!(percentile(&v, 0.99), 100);
        assert_eq!(mean(&v), 22.0);
        assert_eq!(mean(&[]), 0.0);
    }

    #[test]
    fn timings_are_sorted_and_one_per_run() {
        let t = timings(5, || 3u64, |x| x * 2);
        assert_eq!(t.len(), 5);
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
    }
}
