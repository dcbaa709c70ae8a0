//! Topic and group names that no two tests share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Calls so far in this process; makes names unique between tests running in
/// parallel threads.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A topic name no other call, in this or any other process, returns:
/// `{prefix}-{pid}-{counter}-{micros since epoch}`.
///
/// Characters Kafka does not allow in a topic name (anything but ASCII
/// letters, digits, `.`, `_` and `-`) are replaced by `-` in `prefix`.
/// The process id separates concurrent test binaries, the counter separates
/// calls within one, and the time separates runs against a broker that keeps
/// its data (a restarted Tansu).
pub fn unique_topic(prefix: &str) -> String {
    unique_name(prefix)
}

/// A consumer group name no other call returns; built like [`unique_topic`].
pub fn unique_group(prefix: &str) -> String {
    unique_name(prefix)
}

fn unique_name(prefix: &str) -> String {
    let prefix: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .collect();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    // A clock before 1970 only weakens uniqueness across runs, not within one.
    let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    format!("{prefix}-{}-{count}-{micros}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_between_calls() {
        let a = unique_topic("t");
        let b = unique_topic("t");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("t-{}-", std::process::id())), "{a}");
    }

    #[test]
    fn illegal_characters_are_replaced() {
        let name = unique_group("my group/é");
        assert!(name.starts_with("my-group--"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')), "{name}");
    }
}
