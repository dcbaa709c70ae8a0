//! When a registered key may sign: an optional validity window and an
//! optional revocation time, each compared with the event's own signed HLC
//! wall time.
//!
//! Key decision: every bound is a time, never a flag such as `revoked =
//! true`, and it is compared with the time the event carries under its
//! signature, never with the checker's clock. The merger verifies an event
//! again whenever it reads it from Kafka (after a crash, a rebalance, a
//! replay), so the verdict must be a function of the event and the registry
//! alone: with a flag, revoking a key would turn every event it signed
//! before the revocation, already folded into patient records, into
//! dead letters on the next replay; with the checker's clock, the same event
//! would pass today and fail tomorrow. docs/events.md ("Key validity and
//! revocation") says what an operator writes and what each refusal means.

use std::fmt;

use crate::temporal::datetime_ms;
use crate::text::shorten;
use crate::view::format_utc_ms;

use super::RegistryError;

/// A key's validity, in milliseconds since the Unix epoch; `None` = unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validity {
    /// Events stamped before this are refused ([`NotValidAt::NotYet`]).
    pub not_before_ms: Option<u64>,
    /// Events stamped after this are refused ([`NotValidAt::Expired`]): the
    /// last millisecond the key may sign, as X.509's `notAfter`.
    pub not_after_ms: Option<u64>,
    /// Events stamped at or after this are refused ([`NotValidAt::Revoked`]).
    pub revoked_at_ms: Option<u64>,
}

/// Why a key may not sign an event stamped at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotValidAt {
    /// The event is stamped before the key's `not_before`.
    NotYet {
        /// The key's `not_before`.
        not_before_ms: u64,
    },
    /// The event is stamped after the key's `not_after`.
    Expired {
        /// The key's `not_after`.
        not_after_ms: u64,
    },
    /// The event is stamped at or after the key's `revoked_at`.
    Revoked {
        /// The key's `revoked_at`.
        revoked_at_ms: u64,
    },
}

/// Names the key's bound, never the event's time: the time is the event's
/// content, and the integrator who signed it already has it.
impl fmt::Display for NotValidAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NotValidAt::NotYet { not_before_ms } => write!(
                f,
                "is valid from {} (not_before) and the event's hlc is earlier: sign with the key in use at that time",
                format_utc_ms(not_before_ms)
            ),
            NotValidAt::Expired { not_after_ms } => write!(
                f,
                "expired at {} (not_after) and the event's hlc is later: sign with the key that replaced it",
                format_utc_ms(not_after_ms)
            ),
            NotValidAt::Revoked { revoked_at_ms } => write!(
                f,
                "was revoked at {} (revoked_at) and the event's hlc is at or after it: the key is no longer trusted",
                format_utc_ms(revoked_at_ms)
            ),
        }
    }
}

impl Validity {
    /// Whether an event stamped `wall_ms` may be signed by the key. When
    /// several bounds refuse it, revocation is named first, then expiry: the
    /// reason that most needs an operator's attention.
    ///
    /// # Errors
    /// [`NotValidAt`] saying which bound the time is outside of.
    pub fn check(&self, wall_ms: u64) -> Result<(), NotValidAt> {
        if let Some(revoked_at_ms) = self.revoked_at_ms
            && wall_ms >= revoked_at_ms
        {
            return Err(NotValidAt::Revoked { revoked_at_ms });
        }
        if let Some(not_after_ms) = self.not_after_ms
            && wall_ms > not_after_ms
        {
            return Err(NotValidAt::Expired { not_after_ms });
        }
        if let Some(not_before_ms) = self.not_before_ms
            && wall_ms < not_before_ms
        {
            return Err(NotValidAt::NotYet { not_before_ms });
        }
        Ok(())
    }

    /// Parses the three optional times of key `id`'s entry and checks that
    /// the window is not empty.
    pub(crate) fn parse(
        id: &str,
        not_before: Option<&str>,
        not_after: Option<&str>,
        revoked_at: Option<&str>,
    ) -> Result<Self, RegistryError> {
        let validity = Validity {
            not_before_ms: parse_time(id, "not_before", not_before)?,
            not_after_ms: parse_time(id, "not_after", not_after)?,
            revoked_at_ms: parse_time(id, "revoked_at", revoked_at)?,
        };
        if let (Some(from), Some(to)) = (validity.not_before_ms, validity.not_after_ms)
            && from >= to
        {
            return Err(RegistryError::EmptyWindow {
                id: id.to_owned(),
                not_before: format_utc_ms(from),
                not_after: format_utc_ms(to),
            });
        }
        Ok(validity)
    }
}

fn parse_time(id: &str, field: &'static str, text: Option<&str>) -> Result<Option<u64>, RegistryError> {
    let Some(text) = text else { return Ok(None) };
    match datetime_ms(text).map(u64::try_from) {
        Some(Ok(ms)) => Ok(Some(ms)),
        _ => Err(RegistryError::BadTime { id: id.to_owned(), field, value: shorten(text) }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn each_bound_refuses_exactly_its_side() {
        let v = Validity { not_before_ms: Some(T), not_after_ms: Some(T + 1000), revoked_at_ms: None };
        assert_eq!(v.check(T - 1), Err(NotValidAt::NotYet { not_before_ms: T }));
        assert_eq!(v.check(T), Ok(()), "not_before is the first valid millisecond");
        assert_eq!(v.check(T + 1000), Ok(()), "not_after is the last valid millisecond");
        assert_eq!(v.check(T + 1001), Err(NotValidAt::Expired { not_after_ms: T + 1000 }));
        let r = Validity { revoked_at_ms: Some(T + 500), ..v };
        assert_eq!(r.check(T + 499), Ok(()));
        assert_eq!(r.check(T + 500), Err(NotValidAt::Revoked { revoked_at_ms: T + 500 }), "at revoked_at");
        assert_eq!(r.check(T + 2000), Err(NotValidAt::Revoked { revoked_at_ms: T + 500 }), "revocation first");
        assert_eq!(Validity::default().check(0), Ok(()));
        assert_eq!(Validity::default().check(u64::MAX), Ok(()));
    }

    #[test]
    fn times_parse_to_milliseconds_and_bad_ones_name_key_and_field() {
        let v =
            Validity::parse("k", Some("2026-01-01T00:00:00Z"), None, Some("2026-01-01T00:00:01.5Z")).expect("valid");
        assert_eq!(v, Validity { not_before_ms: Some(T), not_after_ms: None, revoked_at_ms: Some(T + 1500) });
        let cases = [
            ((Some("2026-01-01"), None, None), "key `k`: not_before `2026-01-01` is not"),
            ((None, Some("2026-01-01T00:00:00+01:00"), None), "key `k`: not_after `2026-01-01T00:00:00+01:00`"),
            ((None, None, Some("1969-12-31T23:59:59Z")), "key `k`: revoked_at `1969-12-31T23:59:59Z`"),
            (
                (Some("2026-01-01T00:00:00Z"), Some("2026-01-01T00:00:00Z"), None),
                "key `k`: not_before 2026-01-01T00:00:00.000Z is not before not_after 2026-01-01T00:00:00.000Z",
            ),
        ];
        for ((from, to, revoked), want) in cases {
            let got = Validity::parse("k", from, to, revoked).expect_err(want).to_string();
            assert!(got.contains(want), "got {got}\nwant {want}");
        }
    }

    proptest! {
        /// The verdict is a function of the event's time and the bounds: an
        /// event is accepted exactly when it lies in [not_before, not_after]
        /// and before revoked_at, and the refusal names a bound it breaks.
        #[test]
        fn the_verdict_is_the_interval_rule(
            wall in 0u64..10_000,
            from in proptest::option::of(0u64..10_000),
            to in proptest::option::of(0u64..10_000),
            revoked in proptest::option::of(0u64..10_000),
        ) {
            let v = Validity { not_before_ms: from, not_after_ms: to, revoked_at_ms: revoked };
            let inside = from.is_none_or(|f| wall >= f) && to.is_none_or(|t| wall <= t)
                && revoked.is_none_or(|r| wall < r);
            let got = v.check(wall);
            prop_assert_eq!(got.is_ok(), inside);
            match got {
                Ok(()) => {}
                Err(NotValidAt::Revoked { revoked_at_ms }) => prop_assert!(Some(revoked_at_ms) == revoked && wall >= revoked_at_ms),
                Err(NotValidAt::Expired { not_after_ms }) => prop_assert!(Some(not_after_ms) == to && wall > not_after_ms),
                Err(NotValidAt::NotYet { not_before_ms }) => prop_assert!(Some(not_before_ms) == from && wall < not_before_ms),
            }
        }
    }
}
