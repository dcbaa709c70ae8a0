//! Replay defences at the front door: a recently accepted event is not
//! written again, an event older than the age bound is refused, and an
//! ingest that names its audience takes only events signed for it.
//!
//! An event is recognised by its [`fingerprint`]: the first 16 bytes of the
//! SHA-256 of its signed payload, which holds its id. A copy of the same
//! event is a duplicate however it was re-signed; another event that reuses
//! an id is not (it is written, and the fold decides between the two as
//! docs/crdt.md says), so a `duplicate` answer always means "this very event
//! is in Kafka".
//!
//! Key decision: duplicates are remembered by fingerprint in two generations of
//! a hash set, each preallocated for half the capacity, instead of a cache
//! with per-entry timestamps. When the current generation is full or half
//! the window has passed, the older one is dropped whole and the current
//! one becomes older. A lookup checks both, so an id is recognised for at
//! least half the window (less only when more than half the capacity of new
//! ids arrives within it) and never longer than the window; the memory is
//! fixed at start (about 36 bytes per id of capacity, measured in
//! `ingest/tests/replay_memory.rs`), whatever the traffic. The merger stays
//! the real guarantee: it folds an event id once, whatever Kafka holds; this
//! only stops a captured envelope from being turned into many records.
//!
//! A fingerprint is *claimed* while its record is being produced, so a second copy
//! in the same moment is not written too: within one request it shares the
//! first copy's outcome; from another request it is answered 503
//! `duplicate_in_flight`, and its retry finds the id settled.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use sha2::{Digest as _, Sha256};
use tidemark_schemas::{EditEvent, Reason};

/// What recognises an event: the first 16 bytes of the SHA-256 of its
/// signed payload.
pub fn fingerprint(payload: &[u8]) -> u128 {
    let digest = Sha256::digest(payload);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

/// The replay policy of an ingest (`--max-event-age-s`, `--audience`,
/// `--dedup-window-s`, `--dedup-capacity`).
#[derive(Clone, Debug)]
pub struct ReplayPolicy {
    /// Events whose `hlc` is older than this (by ingest's clock) are refused.
    pub max_event_age: Duration,
    /// When set, events must carry exactly this `audience`.
    pub audience: Option<String>,
    /// How long an accepted event id is remembered (at most).
    pub dedup_window: Duration,
    /// How many ids are remembered (at most); 0 turns the memory off.
    pub dedup_capacity: usize,
}

impl Default for ReplayPolicy {
    /// Seven days (EHR downtime queues drain days late), no audience, one
    /// hour and one million ids.
    fn default() -> Self {
        Self {
            max_event_age: Duration::from_secs(7 * 24 * 3600),
            audience: None,
            dedup_window: Duration::from_secs(3600),
            dedup_capacity: 1_000_000,
        }
    }
}

impl ReplayPolicy {
    /// Whether the policy makes sense: an audience an event could carry.
    ///
    /// # Errors
    /// What is wrong with it, for the operator.
    pub fn check(&self) -> Result<(), String> {
        if let Some(a) = &self.audience {
            let valid =
                !a.is_empty() && a.len() <= 64 && a.bytes().all(|b| b.is_ascii_alphanumeric() || b".:_@-".contains(&b));
            if !valid {
                return Err(format!("--audience `{a}` is not an identifier: 1-64 characters of A-Z a-z 0-9 . _ : @ -"));
            }
        }
        Ok(())
    }

    /// The policy's refusal of a verified event received at `now_ms`, if any.
    pub fn refusal(&self, event: &EditEvent, now_ms: u64) -> Option<(Reason, String)> {
        let age_ms = now_ms.saturating_sub(event.hlc.wall_ms);
        let max_ms = u64::try_from(self.max_event_age.as_millis()).unwrap_or(u64::MAX);
        if age_ms > max_ms {
            let message =
                format!("event {} is {} s old, over the bound of {} s", event.event_id, age_ms / 1000, max_ms / 1000);
            return Some((Reason::EventTooOld, message));
        }
        if let Some(want) = &self.audience
            && event.audience.as_deref() != Some(want.as_str())
        {
            let what = if event.audience.is_some() { "is for another audience" } else { "names no audience" };
            return Some((
                Reason::WrongAudience,
                format!("event {} {what}; this ingest takes `{want}`", event.event_id),
            ));
        }
        None
    }
}

/// What [`RecentIds::claim`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Not seen: the caller writes it, then calls [`RecentIds::settle`].
    New,
    /// Accepted recently: answer `duplicate`, write nothing.
    Duplicate,
    /// Being written by another request right now: answer retry.
    InFlight,
}

/// Recently accepted event ids, in bounded memory (see the module doc).
pub struct RecentIds {
    window: Duration,
    generation_capacity: usize,
    inner: Mutex<Generations>,
}

struct Generations {
    current: HashSet<u128, RandomState>,
    older: HashSet<u128, RandomState>,
    in_flight: HashSet<u128, RandomState>,
    started: Instant,
}

impl RecentIds {
    /// Memory for `capacity` ids over `window`; allocated now, in full.
    pub fn new(window: Duration, capacity: usize) -> Self {
        let generation_capacity = capacity.div_ceil(2);
        let inner = Generations {
            current: HashSet::with_capacity_and_hasher(generation_capacity, RandomState::default()),
            older: HashSet::with_capacity_and_hasher(generation_capacity, RandomState::default()),
            in_flight: HashSet::default(),
            started: Instant::now(),
        };
        Self { window, generation_capacity, inner: Mutex::new(inner) }
    }

    /// Checks `id` (a [`fingerprint`]) and, if it is new, claims it.
    pub fn claim(&self, id: u128) -> Claim {
        if self.generation_capacity == 0 {
            return Claim::New;
        }
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        self.age_out(&mut g);
        if g.current.contains(&id) || g.older.contains(&id) {
            Claim::Duplicate
        } else if !g.in_flight.insert(id) {
            Claim::InFlight
        } else {
            Claim::New
        }
    }

    /// Ends a claim: remembers `id` if Kafka acknowledged it, forgets the
    /// claim either way (a failed write may be retried).
    pub fn settle(&self, id: u128, accepted: bool) {
        if self.generation_capacity == 0 {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.in_flight.remove(&id);
        if !accepted {
            return;
        }
        self.age_out(&mut g);
        if g.current.len() >= self.generation_capacity {
            Self::rotate(&mut g, Instant::now());
        }
        g.current.insert(id);
    }

    /// Drops what is older than the window: after a quiet spell of a whole
    /// window both generations, after half of one the older.
    fn age_out(&self, g: &mut Generations) {
        let elapsed = g.started.elapsed();
        if elapsed >= self.window {
            g.current.clear();
            g.older.clear();
            g.started = Instant::now();
        } else if elapsed >= self.window / 2 {
            // On the half-window grid, not from now: an id then lives at most
            // one window, however late the rotation runs.
            Self::rotate(g, g.started + self.window / 2);
        }
    }

    fn rotate(g: &mut Generations, started: Instant) {
        std::mem::swap(&mut g.current, &mut g.older);
        g.current.clear();
        g.started = started;
    }
}

/// The claims one request holds. A claim not settled when this is dropped
/// is released as not written: a request whose handler is dropped half way
/// (its client hung up while Kafka was slow, or shutdown) must not leave its
/// events claimed, or every retry of them would be answered
/// `duplicate_in_flight` for as long as ingest runs.
pub struct Claims<'a> {
    ids: &'a RecentIds,
    open: Vec<u128>,
}

impl<'a> Claims<'a> {
    /// No claims yet, on `ids`.
    pub fn new(ids: &'a RecentIds) -> Self {
        Self { ids, open: Vec::new() }
    }

    /// [`RecentIds::claim`], remembering a new claim until it is settled.
    pub fn claim(&mut self, id: u128) -> Claim {
        let claim = self.ids.claim(id);
        if claim == Claim::New {
            self.open.push(id);
        }
        claim
    }

    /// [`RecentIds::settle`] of a claim made here; nothing for any other id
    /// (it may be another request's claim).
    pub fn settle(&mut self, id: u128, accepted: bool) {
        if let Some(i) = self.open.iter().position(|&o| o == id) {
            self.open.swap_remove(i);
            self.ids.settle(id, accepted);
        }
    }
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        for id in self.open.drain(..) {
            self.ids.settle(id, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> u128 {
        fingerprint(&n.to_le_bytes())
    }

    #[test]
    fn an_accepted_id_is_a_duplicate_a_failed_one_is_not() {
        let ids = RecentIds::new(Duration::from_secs(60), 100);
        assert_eq!(ids.claim(id(1)), Claim::New);
        assert_eq!(ids.claim(id(1)), Claim::InFlight, "a second copy while the first is written");
        ids.settle(id(1), true);
        assert_eq!(ids.claim(id(1)), Claim::Duplicate);
        assert_eq!(ids.claim(id(2)), Claim::New);
        ids.settle(id(2), false);
        assert_eq!(ids.claim(id(2)), Claim::New, "an unacknowledged write may be retried");
    }

    #[test]
    fn memory_is_bounded_by_capacity_and_ids_live_at_least_half_of_it() {
        let ids = RecentIds::new(Duration::from_secs(3600), 100);
        for n in 0..1_000 {
            assert_eq!(ids.claim(id(n)), Claim::New);
            ids.settle(id(n), true);
            let g = ids.inner.lock().expect("not poisoned");
            assert!(g.current.len() + g.older.len() <= 100);
        }
        // The last half capacity is always remembered; long-gone ids are not.
        for n in 950..1_000 {
            assert_eq!(ids.claim(id(n)), Claim::Duplicate, "{n}");
        }
        assert_eq!(ids.claim(id(0)), Claim::New);
    }

    #[test]
    fn ids_expire_after_the_window() {
        let ids = RecentIds::new(Duration::from_millis(40), 100);
        assert_eq!(ids.claim(id(1)), Claim::New);
        ids.settle(id(1), true);
        std::thread::sleep(Duration::from_millis(25));
        ids.settle(id(2), true); // rotates: 1 is in the older generation
        assert_eq!(ids.claim(id(1)), Claim::Duplicate);
        std::thread::sleep(Duration::from_millis(25));
        ids.settle(id(3), true); // rotates again: 1 is gone
        assert_eq!(ids.claim(id(1)), Claim::New);
    }

    #[test]
    fn the_fingerprint_tells_payloads_apart_and_is_stable() {
        assert_eq!(fingerprint(b"{}"), fingerprint(b"{}"));
        assert_ne!(fingerprint(b"{\"a\":1}"), fingerprint(b"{\"a\":2}"));
        // SHA-256("abc") starts ba7816bf 8f01cfea 414140de 5dae2223.
        assert_eq!(fingerprint(b"abc"), 0xba78_16bf_8f01_cfea_4141_40de_5dae_2223);
    }

    /// The chaos run's failure: a request dropped while Kafka was down left
    /// its events claimed, and their retries got 503 until loadgen gave up.
    #[test]
    fn claims_of_a_dropped_request_are_released() {
        let ids = RecentIds::new(Duration::from_secs(60), 100);
        {
            let mut claims = Claims::new(&ids);
            assert_eq!(claims.claim(id(1)), Claim::New);
            assert_eq!(claims.claim(id(2)), Claim::New);
            claims.settle(id(2), true);
        }
        assert_eq!(ids.claim(id(1)), Claim::New, "the unsettled claim was released");
        assert_eq!(ids.claim(id(2)), Claim::Duplicate, "the settled one stays remembered");
    }

    /// The review's finding: rotation ran only on an accepted write, so
    /// after a quiet spell an id older than the window was still a duplicate.
    #[test]
    fn an_id_is_forgotten_after_the_window_even_when_nothing_else_arrives() {
        let ids = RecentIds::new(Duration::from_millis(40), 100);
        assert_eq!(ids.claim(id(1)), Claim::New);
        ids.settle(id(1), true);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ids.claim(id(1)), Claim::New);
    }

    /// The second review's case: a rotation that ran late used to restart
    /// the clock from then, so an id could live about 1.5 windows.
    #[test]
    fn a_late_rotation_does_not_stretch_the_window() {
        let window = Duration::from_millis(400);
        let ids = RecentIds::new(window, 100);
        assert_eq!(ids.claim(id(1)), Claim::New);
        ids.settle(id(1), true);
        std::thread::sleep(Duration::from_millis(390)); // late: the grid says 200
        assert_eq!(ids.claim(id(2)), Claim::New); // rotates: 1 is older
        std::thread::sleep(Duration::from_millis(130)); // 520 ms after 1 was taken
        assert_eq!(ids.claim(id(1)), Claim::New, "remembered past its window");
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let ids = RecentIds::new(Duration::from_secs(60), 0);
        ids.settle(id(1), true);
        assert_eq!(ids.claim(id(1)), Claim::New);
        assert_eq!(ids.claim(id(1)), Claim::New);
    }

    #[test]
    fn the_policy_refuses_old_events_and_foreign_audiences() {
        let json = serde_json::json!({
            "event_id": "01900000-0000-7000-8000-000000000001", "patient_id": "pt-1", "source": "s", "author": "a",
            "hlc": {"wall_ms": 1_000_000, "logical": 0}, "ops": [{"op": "set", "path": "x", "value": 1}]
        });
        let mut event = EditEvent::from_json(json.to_string().as_bytes()).expect("an event");
        let policy = ReplayPolicy { max_event_age: Duration::from_secs(10), ..ReplayPolicy::default() };
        assert_eq!(policy.refusal(&event, 1_000_000 + 10_000), None);
        assert_eq!(policy.refusal(&event, 1_000_000 + 10_001).map(|r| r.0), Some(Reason::EventTooOld));
        let policy = ReplayPolicy { audience: Some("prod".into()), ..ReplayPolicy::default() };
        assert_eq!(policy.refusal(&event, 1_000_000).map(|r| r.0), Some(Reason::WrongAudience));
        event.audience = Some("staging".into());
        assert_eq!(policy.refusal(&event, 1_000_000).map(|r| r.0), Some(Reason::WrongAudience));
        event.audience = Some("prod".into());
        assert_eq!(policy.refusal(&event, 1_000_000), None);
    }
}
