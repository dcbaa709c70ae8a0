//! One way for a test or a harness to wait for a condition: poll it, back
//! off, and fail saying what was awaited and what was last seen.
//!
//! Key decision: these panic instead of returning an error. They are called
//! from test bodies and benchmark harnesses only, where a condition that
//! never comes is the failure to report, with what was seen; nothing above
//! them could handle it better.

use std::fmt;
use std::time::{Duration, Instant};

/// What one look at the world says: done (with a value), or not yet (with
/// what was seen, for the failure message).
pub trait Check {
    /// The value a wait returns once the check passes.
    type Output;
    /// `Ok` when done; `Err` with what was seen, if the check says.
    fn outcome(self) -> Result<Self::Output, Option<String>>;
}

impl Check for bool {
    type Output = ();
    fn outcome(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Check for Option<T> {
    type Output = T;
    fn outcome(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: fmt::Display> Check for Result<T, E> {
    type Output = T;
    fn outcome(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// Runs `check` until it passes or `limit` has passed; at least once, and
/// once more at the limit. Polls every 20 ms at first, backing off to every
/// 500 ms, so a quick condition is seen quickly and a slow one (a broker
/// read) does not load the machine. `Err` holds the last observation.
pub fn within<C: Check>(limit: Duration, check: impl FnMut() -> C) -> Result<C::Output, Option<String>> {
    poll(limit, None, check)
}

/// Waits (see [`within`]) for `check` to pass and returns its value; panics
/// after `limit` saying `what` was awaited and what was last seen. The
/// end-to-end tests wait for a condition through here, [`eventually_every`]
/// or [`within`], never with a loop of their own.
pub fn eventually<C: Check>(what: &str, limit: Duration, check: impl FnMut() -> C) -> C::Output {
    or_panic(what, limit, poll(limit, None, check))
}

/// [`eventually`], polling every `every` without backing off: for a moment
/// that must be caught soon after it comes (e.g. to kill a service mid-stream).
pub fn eventually_every<C: Check>(what: &str, limit: Duration, every: Duration, check: impl FnMut() -> C) -> C::Output {
    or_panic(what, limit, poll(limit, Some(every), check))
}

fn poll<C: Check>(
    limit: Duration,
    every: Option<Duration>,
    mut check: impl FnMut() -> C,
) -> Result<C::Output, Option<String>> {
    let deadline = Instant::now() + limit;
    let mut pause = every.unwrap_or(Duration::from_millis(20));
    loop {
        let last = match check().outcome() {
            Ok(done) => return Ok(done),
            Err(seen) => seen,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        std::thread::sleep(pause.min(left));
        if every.is_none() {
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

fn or_panic<T>(what: &str, limit: Duration, outcome: Result<T, Option<String>>) -> T {
    match outcome {
        Ok(done) => done,
        Err(None) => panic!("{what}: not within {limit:?}"),
        Err(Some(seen)) => panic!("{what}: not within {limit:?}; last seen:\n{seen}"),
    }
}
