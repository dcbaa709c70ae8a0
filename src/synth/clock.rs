//! A site's hybrid logical clock, as an EHR integration would keep it.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tidemark_schemas::Hlc;

/// The HLC of one source: readings strictly increase, and a reading taken
/// after observing a version is greater than every clock in it (the catalog
/// refuses an `observed` entry that is not older than the event).
#[derive(Debug, Default)]
pub struct SiteClock {
    last: Mutex<Hlc>,
}

impl SiteClock {
    /// The next reading: after the last one, after `seen`, and no earlier than the wall clock.
    pub fn tick(&self, seen: Option<Hlc>) -> Hlc {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let floor = seen.map_or(*last, |s| s.max(*last));
        let next = if now > floor.wall_ms { Hlc::new(now, 0) } else { Hlc::new(floor.wall_ms, floor.logical + 1) };
        *last = next;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_increase_and_pass_what_was_seen() {
        let clock = SiteClock::default();
        let mut prev = clock.tick(None);
        for _ in 0..1000 {
            let next = clock.tick(None);
            assert!(next > prev);
            prev = next;
        }
        let ahead = Hlc::new(prev.wall_ms + 60_000, 9);
        let after = clock.tick(Some(ahead));
        assert!(after > ahead, "{after} must pass {ahead}");
        assert!(clock.tick(None) > after);
    }
}
