//! The catalog's two time formats, parsed once for everyone: `date` is
//! `YYYY-MM-DD` (a real calendar day, year 1 or later) and `datetime` is
//! RFC 3339 UTC with `Z` and 0 or 1-9 fraction digits. Validation accepts
//! exactly what these parse, and the archiver converts with the same
//! parsers, so a value that passed ingest can always be written to a snapshot.
//! The key registry's validity times use the `datetime` format too, so an
//! operator writes one time format everywhere.

/// A parsed catalog `datetime`: the calendar day, the time of day, and the
/// milliseconds of the fraction (sub-millisecond digits truncated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instant {
    /// Year, month (1-12), day (1-31).
    pub date: (u32, u32, u32),
    /// Hour (0-23), minute (0-59), second (0-59).
    pub time: (u32, u32, u32),
    /// Milliseconds (0-999).
    pub millis: u32,
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a catalog `date` into (year, month, day); `None` if it is not one.
pub fn parse_date(s: &str) -> Option<(u32, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (y >= 1 && (1..=month_days).contains(&d)).then_some((y, m, d))
}

/// Parses a catalog `datetime`; `None` if it is not one.
pub fn parse_datetime(s: &str) -> Option<Instant> {
    let rest = s.strip_suffix('Z')?;
    if rest.len() < 19 || rest.as_bytes()[10] != b'T' {
        return None;
    }
    let date = parse_date(rest.get(..10)?)?;
    let time = rest.get(11..)?;
    let (hms, frac) = time.split_once('.').map_or((time, None), |(a, b)| (a, Some(b)));
    let b = hms.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, mi, sec) = (digits(&hms[0..2])?, digits(&hms[3..5])?, digits(&hms[6..8])?);
    if h >= 24 || mi >= 60 || sec >= 60 {
        return None;
    }
    let millis = match frac {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) => {
            digits(f)?;
            // Pad or cut to exactly three digits: "5" is 500 ms, "123456" is 123 ms.
            let mut three = [b'0'; 3];
            for (dst, src) in three.iter_mut().zip(f.bytes()) {
                *dst = src;
            }
            three.iter().fold(0, |acc, c| acc * 10 + u32::from(c - b'0'))
        }
        Some(_) => return None,
    };
    Some(Instant { date, time: (h, mi, sec), millis })
}

/// Milliseconds in a day.
const MS_PER_DAY: i64 = 86_400_000;

impl Instant {
    /// Milliseconds since 1970-01-01T00:00:00Z (negative before it).
    pub fn unix_ms(&self) -> i64 {
        let (y, mo, d) = self.date;
        let (h, mi, sec) = self.time;
        let secs = i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec);
        days_from_civil(i64::from(y), mo, d) * MS_PER_DAY + secs * 1000 + i64::from(self.millis)
    }
}

/// A catalog `datetime` as milliseconds since the Unix epoch (negative before
/// it), sub-millisecond digits truncated; `None` if it is not one.
pub fn datetime_ms(s: &str) -> Option<i64> {
    parse_datetime(s).map(|i| i.unix_ms())
}

/// Days from 1970-01-01 to a proleptic Gregorian (year, month, day), negative
/// before it: Howard Hinnant's `days_from_civil`, hand-written rather than a
/// date crate because the formats are fixed by validation.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_instants_parse_exactly_the_catalog_formats() {
        assert_eq!(parse_date("2024-02-29"), Some((2024, 2, 29)));
        for bad in ["2023-02-29", "0000-01-01", "2024-13-01", "2024-1-01", "2024-01-01T", "2024/01/01"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        let i = parse_datetime("2026-11-22T09:15:07.123456Z").expect("valid");
        assert_eq!((i.date, i.time, i.millis), ((2026, 11, 22), (9, 15, 7), 123));
        assert_eq!(parse_datetime("2026-11-22T09:15:07.5Z").map(|i| i.millis), Some(500));
        for bad in ["2026-11-22T09:15:07", "2026-11-22T24:00:00Z", "2026-11-22T09:15:07.Z", "2026-11-22 09:15:07Z"] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn datetimes_become_unix_milliseconds() {
        assert_eq!(datetime_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(datetime_ms("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(datetime_ms("2025-11-22T07:00:00.123987654Z"), Some(1_763_794_800_123));
        assert_eq!(datetime_ms("2000-02-29T00:00:00Z"), Some(11_016 * MS_PER_DAY));
        assert_eq!(datetime_ms("2025-11-22T07:00:00+01:00"), None);
    }

    proptest::proptest! {
        /// The formatter every service prints instants with and this parser
        /// agree: whatever is printed reads back as the same millisecond.
        #[test]
        fn formatted_instants_read_back(ms in 0u64..253_402_300_800_000) {
            let text = crate::format_utc_ms(ms);
            proptest::prop_assert_eq!(datetime_ms(&text), i64::try_from(ms).ok(), "{}", text);
        }
    }
}
