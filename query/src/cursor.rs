//! The change feed's cursor as clients see it: `c1.` then
//! `PARTITION-OFFSET` pairs joined by `.`, the last state-topic offset
//! delivered per partition (`c1.` alone: from the start). Clients treat it
//! as opaque; it means the same on every replica.

use crate::store::Cursor;

/// The longest cursor text taken (room for a few thousand partitions).
pub const MAX_CURSOR: usize = 64 * 1024;

/// Writes a cursor.
pub fn encode(cursor: &Cursor) -> String {
    let pairs: Vec<String> = cursor.iter().map(|(p, o)| format!("{p}-{o}")).collect();
    format!("c1.{}", pairs.join("."))
}

/// Reads a cursor; `None` when it is not one this service wrote.
pub fn decode(text: &str) -> Option<Cursor> {
    if text.len() > MAX_CURSOR {
        return None;
    }
    let rest = text.strip_prefix("c1.")?;
    let mut cursor = Cursor::new();
    for pair in rest.split('.').filter(|p| !p.is_empty()) {
        let (p, o) = pair.split_once('-')?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(p) || !digits(o) {
            return None;
        }
        if cursor.insert(p.parse().ok()?, o.parse().ok()?).is_some() {
            return None;
        }
    }
    Some(cursor)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn refuses_what_it_did_not_write() {
        assert_eq!(decode("c1."), Some(Cursor::new()));
        assert_eq!(decode("c1.0-5.3-9"), Some(Cursor::from([(0, 5), (3, 9)])));
        for bad in ["", "c2.0-5", "c1.0", "c1.0-", "c1.-1-5", "c1.0-5.0-6", "c1.a-1", "c1.0-+5"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(pairs in proptest::collection::btree_map(0i32.., 0i64.., 0..20)) {
            prop_assert_eq!(decode(&encode(&pairs)), Some(pairs));
        }
    }
}
