//! The consistency token ingest answers for each accepted event, and the
//! query service's `?after=` takes: where the event sits in the edit topic.
//!
//! Key decision: the token names a position, not a time. A patient's events
//! all go to one edit partition, and a merger stamps each view with the
//! offset it folded up to (`tidemark-edits-through`), so "the view includes
//! my write" is exactly "the patient's view folded past my offset", with no
//! clock in the comparison. Written `tm1.PARTITION.OFFSET`; clients treat it
//! as opaque.

use std::fmt;
use std::str::FromStr;

/// Where an accepted event sits in the edit topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsistencyToken {
    /// The edit partition (the patient's).
    pub partition: i32,
    /// The event's offset in it.
    pub offset: i64,
}

/// The longest token text taken.
pub const MAX_TOKEN: usize = 40;

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tm1.{}.{}", self.partition, self.offset)
    }
}

/// Why a token was refused (it is never quoted: it is the client's text).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a consistency token is `tm1.PARTITION.OFFSET`, as ingest answered it")]
pub struct BadToken;

impl FromStr for ConsistencyToken {
    type Err = BadToken;

    fn from_str(s: &str) -> Result<Self, BadToken> {
        if s.len() > MAX_TOKEN {
            return Err(BadToken);
        }
        let rest = s.strip_prefix("tm1.").ok_or(BadToken)?;
        let (partition, offset) = rest.split_once('.').ok_or(BadToken)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(partition) || !digits(offset) {
            return Err(BadToken);
        }
        Ok(Self { partition: partition.parse().map_err(|_| BadToken)?, offset: offset.parse().map_err(|_| BadToken)? })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_what_it_writes_and_nothing_else() {
        let t = ConsistencyToken { partition: 3, offset: 1_234 };
        assert_eq!(t.to_string(), "tm1.3.1234");
        assert_eq!("tm1.3.1234".parse(), Ok(t));
        for bad in
            ["", "tm1.3", "tm1.3.", "tm1..4", "tm2.3.4", "tm1.-3.4", "tm1.3.+4", "tm1.3.4.5", "tm1.99999999999.1"]
        {
            assert_eq!(bad.parse::<ConsistencyToken>(), Err(BadToken), "{bad}");
        }
        assert_eq!(format!("tm1.1.{}", "9".repeat(40)).parse::<ConsistencyToken>(), Err(BadToken));
    }

    proptest! {
        #[test]
        fn every_position_round_trips(partition in 0i32.., offset in 0i64..) {
            let t = ConsistencyToken { partition, offset };
            prop_assert_eq!(t.to_string().parse(), Ok(t));
        }
    }
}
