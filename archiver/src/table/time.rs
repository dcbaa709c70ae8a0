//! Calendar arithmetic for snapshot columns: catalog dates (`YYYY-MM-DD`) and
//! instants (RFC 3339 UTC with `Z`) to Arrow's day and millisecond counts, and
//! either to its year.
//!
//! Hand-written (Howard Hinnant's `civil_from_days`, signed so birth dates
//! before 1970 work) rather than a date crate: the formats are fixed by event
//! validation, so a few dozen lines replace a dependency. The parsing and the
//! conversion to days and milliseconds are `tidemark_schemas::temporal`'s,
//! the ones validation and the key registry use.

use tidemark_schemas::temporal::{datetime_ms, days_from_civil, parse_date as parse_date_contract};

const MS_PER_DAY: i64 = 86_400_000;

/// `YYYY-MM-DD` as (year, month, day), by the catalog's own parser.
pub(crate) fn parse_date(s: &str) -> Option<(i64, u32, u32)> {
    parse_date_contract(s).map(|(y, m, d)| (i64::from(y), m, d))
}

/// `YYYY-MM-DD` to days since 1970-01-01 (Arrow `Date32`).
pub(crate) fn date_to_days(s: &str) -> Option<i32> {
    let (y, m, d) = parse_date(s)?;
    i32::try_from(days_from_civil(y, m, d)).ok()
}

/// An RFC 3339 UTC instant (`2026-11-22T09:15:00Z`, optional 1-9 fraction
/// digits) to milliseconds since the epoch; sub-millisecond digits are
/// truncated, as Arrow's millisecond timestamps require.
pub(crate) fn instant_to_ms(s: &str) -> Option<i64> {
    datetime_ms(s)
}

/// The proleptic Gregorian year of a day count since 1970-01-01.
pub(crate) fn year_of_days(days: i64) -> i32 {
    let (y, _, _) = civil_from_days(days);
    // Days come from i32 dates or i64 ms / 86.4M: the year always fits.
    i32::try_from(y).unwrap_or(if y < 0 { i32::MIN } else { i32::MAX })
}

/// The year of a millisecond instant since the epoch (UTC).
pub(crate) fn year_of_ms(ms: i64) -> i32 {
    year_of_days(ms.div_euclid(MS_PER_DAY))
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both casts hold by construction: d is in 1..=31 and m in 1..=12.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_to_days_and_back() {
        assert_eq!(date_to_days("1970-01-01"), Some(0));
        assert_eq!(date_to_days("1969-12-31"), Some(-1));
        assert_eq!(date_to_days("2000-02-29"), Some(11_016));
        assert_eq!(date_to_days("0001-01-01"), Some(-719_162));
        assert_eq!(date_to_days("2001-02-29"), None);
        assert_eq!(date_to_days("1984-13-01"), None);
        assert_eq!(date_to_days("84-01-01"), None);
        for days in [-719_162_i64, -1, 0, 59, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(year_of_days(-1), 1969);
    }

    #[test]
    fn instants_to_ms() {
        assert_eq!(instant_to_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(instant_to_ms("2025-11-22T07:00:00.123Z"), Some(1_763_794_800_123));
        assert_eq!(instant_to_ms("2025-11-22T07:00:00.1Z"), Some(1_763_794_800_100));
        assert_eq!(instant_to_ms("2025-11-22T07:00:00.123987654Z"), Some(1_763_794_800_123));
        assert_eq!(instant_to_ms("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(instant_to_ms("2025-11-22T07:00:00"), None);
        assert_eq!(instant_to_ms("2025-11-22T24:00:00Z"), None);
        assert_eq!(instant_to_ms("2025-11-22T07:00:00.Z"), None);
        assert_eq!(instant_to_ms("2025-11-22T07:00:00.1234567890Z"), None);
        assert_eq!(year_of_ms(-1), 1969);
        assert_eq!(year_of_ms(1_763_794_800_123), 2025);
    }

    #[test]
    fn agrees_with_the_contract_formatter() {
        for ms in [0_u64, 951_782_400_000, 1_763_794_800_123, 4_107_542_399_999] {
            let text = tidemark_schemas::format_utc_ms(ms);
            assert_eq!(instant_to_ms(&text), i64::try_from(ms).ok(), "{text}");
        }
    }
}
