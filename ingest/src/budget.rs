//! One request's share of the in-flight byte bound (`--max-in-flight-bytes`).
//!
//! Key decision: a request is charged for what it holds in memory, not only
//! for its body. The body's bytes are charged as they arrive
//! ([`crate::body`]); then, line by line as verification proceeds and
//! before the next line is decoded, what the checked line leaves behind
//! until the request is answered: its outcome, its slots in the request's
//! per-line bookkeeping, and the copy of its record that the Kafka producer
//! keeps until the broker acknowledges it ([`crate::verify`]). Charging the
//! body alone let every request that fitted the bound then hold several
//! times its body once decoded (docs/ingest.md, "Bounded memory", has the
//! measurements). The charge is never waited for: a request that finds the
//! bound full is answered 503 at once, so no request holds permits while it
//! waits for others'.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many times `--max-body-bytes` the in-flight bound must be at least,
/// so that a request at the body limit can always be taken when no other
/// request holds permits: its body is held twice while its frames are
/// joined, and a body of the smallest valid events holds about 3.1 times
/// itself once checked (`a_full_request_of_the_smallest_valid_events_fits_the_bound_start_up_asks_for`).
pub(crate) const BOUND_PER_BODY: usize = 4;

/// Why a charge was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Other requests hold the bound: retry after `Retry-After`.
    Full,
    /// The request alone needs more than the whole bound; retrying cannot
    /// help, it must be split.
    OverBound {
        /// What the request would hold with this charge.
        needed: usize,
        /// The bound.
        bound: usize,
    },
}

/// The permits one request holds; they go back when it is dropped, after the
/// request was answered.
pub(crate) struct Budget {
    bytes: Arc<Semaphore>,
    bound: usize,
    held: Option<OwnedSemaphorePermit>,
}

impl Budget {
    /// A request holding nothing yet of `bytes`, a semaphore of `bound` permits.
    pub(crate) fn new(bytes: Arc<Semaphore>, bound: usize) -> Self {
        Self { bytes, bound, held: None }
    }

    /// Takes `n` more permits at once, without waiting.
    ///
    /// # Errors
    /// [`Refused`]; what the request held before stays held.
    pub(crate) fn charge(&mut self, n: usize) -> Result<(), Refused> {
        if n == 0 {
            return Ok(());
        }
        let needed = self.held().saturating_add(n);
        if needed > self.bound {
            return Err(Refused::OverBound { needed, bound: self.bound });
        }
        // Within the bound, which start-up keeps within the semaphore's range.
        let n = u32::try_from(n).map_err(|_| Refused::OverBound { needed, bound: self.bound })?;
        let permit = self.bytes.clone().try_acquire_many_owned(n).map_err(|_| Refused::Full)?;
        match self.held.as_mut() {
            Some(h) => h.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }

    /// Gives back `n` of the permits held (all of them if fewer are held):
    /// for memory the request freed before its answer.
    pub(crate) fn release(&mut self, n: usize) {
        if let Some(h) = self.held.as_mut() {
            let n = n.min(h.num_permits());
            drop(h.split(n));
        }
    }

    /// The permits held.
    pub(crate) fn held(&self) -> usize {
        self.held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_and_go_back_when_dropped() {
        let bytes = Arc::new(Semaphore::new(100));
        let mut b = Budget::new(bytes.clone(), 100);
        b.charge(30).expect("fits");
        b.charge(0).expect("nothing");
        b.charge(20).expect("fits");
        assert_eq!((b.held(), bytes.available_permits()), (50, 50));
        drop(b);
        assert_eq!(bytes.available_permits(), 100);
    }

    #[test]
    fn a_full_bound_and_a_request_over_the_bound_are_told_apart() {
        let bytes = Arc::new(Semaphore::new(100));
        let mut other = Budget::new(bytes.clone(), 100);
        other.charge(70).expect("fits");
        let mut b = Budget::new(bytes.clone(), 100);
        b.charge(20).expect("fits");
        assert_eq!(b.charge(20), Err(Refused::Full));
        assert_eq!(b.charge(81), Err(Refused::OverBound { needed: 101, bound: 100 }));
        assert_eq!((b.held(), bytes.available_permits()), (20, 10), "a refused charge takes nothing");
        drop(other);
        b.charge(80).expect("fits once the other request is answered");
        b.release(30);
        assert_eq!((b.held(), bytes.available_permits()), (70, 30));
        b.release(1_000);
        assert_eq!((b.held(), bytes.available_permits()), (0, 100));
    }
}
