//! Restarting a killed Tansu, and its one known fault.
//!
//! Tansu 0.6.0's storage task can panic after a producer bumps its epoch
//! (timed-out requests); it then never answers again until restarted.
//! Apache Kafka has no such fault: the tests that kill brokers restart
//! Tansu when its log shows a new panic, as a supervisor would.

use std::time::Duration;

use tidemark_testkit::TansuBroker;

/// Restarts `broker`, again after a pause when it does not come up (a
/// restarted Tansu whose storage task panics again at once never answers
/// metadata); gives up after five tries.
pub fn restart_broker(broker: &mut TansuBroker) {
    for attempt in 1..=5 {
        match broker.restart() {
            Ok(()) => return,
            Err(e) if attempt < 5 => {
                eprintln!("tansu restart {attempt} failed ({e}); trying again");
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => panic!("tansu never came back: {e}"),
        }
    }
}

/// Panics in `broker`'s log so far.
pub fn tansu_panics(broker: &TansuBroker) -> usize {
    std::fs::read_to_string(broker.log_path()).unwrap_or_default().matches("panicked").count()
}
