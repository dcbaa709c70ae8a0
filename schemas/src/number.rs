//! JSON numbers of a signed event: kept exactly as signed, or refused.
//!
//! Key decision: a number must mean exactly what Tidemark stores and prints
//! for it. serde_json reads a number that is not an integer of 64 bits as an
//! `f64`, and the view, the snapshots and every replay print that `f64` back
//! as its shortest text (serde_json's, which JavaScript's `String(x)` and
//! Python's `repr` agree with). A number is accepted when that text has the
//! same decimal value as the signed text: `36.60`, `3.66e1` and `36.6` all
//! are `36.6`. It is refused when it has more significant digits than an
//! `f64` holds (`0.1000000000000000055511151231257827` would come back as
//! `0.1`), when it is too small for one (`1e-400` would come back as `0.0`)
//! or too large (`1e400`), or when it is an integer beyond 64 bits that the
//! `f64` rounds (`18446744073709551617`). Rounding such a number silently
//! would store another value than the one its author signed, while the
//! stored bytes still say the signed one. Integers of 64 bits stay integers
//! and are always exact.
//!
//! The check needs a number's text, which serde_json does not hand a
//! visitor: event_de.rs borrows each op value's raw text from the payload
//! while parsing, and reads its numbers only when the parsed value holds a
//! float.

/// How the error for such a number starts; [`is_inexact`] recognises it.
const INEXACT: &str = "inexact number";

/// A decimal as its sign, its significant digits (without leading or
/// trailing zeros) and the power of ten of its first digit: `0.0361e3` is
/// `+`, `361`, 2 (0.361 × 10²). Zero has no digits and is never negative.
/// Borrows the digits from the text: most numbers are checked without
/// allocating.
#[derive(Debug)]
struct Decimal<'a> {
    negative: bool,
    /// The digits before and after the point, as written.
    int: &'a [u8],
    frac: &'a [u8],
    /// Of `int` then `frac`: how many leading zeros to skip, how many
    /// significant digits then follow.
    skip: usize,
    len: usize,
    exponent: i64,
}

impl Decimal<'_> {
    fn digits(&self) -> impl Iterator<Item = u8> + '_ {
        self.int.iter().chain(self.frac).copied().skip(self.skip).take(self.len)
    }
}

impl PartialEq for Decimal<'_> {
    fn eq(&self, other: &Self) -> bool {
        (self.negative, self.len, self.exponent) == (other.negative, other.len, other.exponent)
            && self.digits().eq(other.digits())
    }
}

/// Exponents beyond this are as good as infinite for an `f64` (whose range
/// ends near 1e308 and 1e-324) and are clamped so that the arithmetic on
/// them cannot overflow.
const EXPONENT_CLAMP: i64 = 1 << 40;

/// The most significant digits that every `f64` in the normal range keeps:
/// two decimals of up to 15 digits are always more than an `f64`'s step
/// apart, so such a decimal reads as a float that prints back as itself.
const ALWAYS_EXACT_DIGITS: usize = 15;

/// Decimal exponents (of [`Decimal`]) well inside the normal range of an
/// `f64` (about 1e-308 to 1e308), where [`ALWAYS_EXACT_DIGITS`] holds.
const NORMAL_EXPONENTS: std::ops::RangeInclusive<i64> = -300..=300;

/// `token` (JSON number syntax) as a [`Decimal`]; `None` if it is not one.
fn decimal(token: &str) -> Option<Decimal<'_>> {
    let mut rest = token.as_bytes();
    let negative = rest.first() == Some(&b'-');
    if negative {
        rest = &rest[1..];
    }
    let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (int, mut rest) = rest.split_at(int_len);
    let mut frac: &[u8] = &[];
    if let Some((b'.', after)) = rest.split_first() {
        let n = after.iter().take_while(|b| b.is_ascii_digit()).count();
        (frac, rest) = after.split_at(n);
    }
    let mut exp: i64 = 0;
    if let Some((b'e' | b'E', after)) = rest.split_first() {
        let (sign, digits) = match after.split_first() {
            Some((b'-', d)) => (-1, d),
            Some((b'+', d)) => (1, d),
            _ => (1, after),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for d in digits {
            exp = (exp * 10 + i64::from(d - b'0')).min(EXPONENT_CLAMP);
        }
        exp *= sign;
        rest = &[];
    }
    if int.is_empty() || !rest.is_empty() {
        return None;
    }
    let all = || int.iter().chain(frac);
    let skip = all().take_while(|d| **d == b'0').count();
    let trailing = all().rev().take_while(|d| **d == b'0').count();
    let len = (int.len() + frac.len()).saturating_sub(skip + trailing);
    if len == 0 {
        return Some(Decimal { negative: false, int, frac, skip: 0, len: 0, exponent: 0 });
    }
    // `int_len` and `skip` are at most the token's length.
    let exponent = i64::try_from(int_len).unwrap_or(EXPONENT_CLAMP) - i64::try_from(skip).unwrap_or(0) + exp;
    Some(Decimal { negative, int, frac, skip, len, exponent })
}

/// Whether the JSON number `token` is exactly what Tidemark keeps of it: an
/// integer of 64 bits, zero, or a number whose `f64` prints back with the
/// same decimal value.
pub(crate) fn is_exact(token: &str) -> bool {
    let integer = !token.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if integer && (token.parse::<u64>().is_ok() || token.parse::<i64>().is_ok()) {
        return true;
    }
    let Some(signed) = decimal(token) else { return false };
    if signed.len == 0 || (signed.len <= ALWAYS_EXACT_DIGITS && NORMAL_EXPONENTS.contains(&signed.exponent)) {
        return true;
    }
    prints_back(token, &signed)
}

/// Whether the `f64` that `token` (`signed`) reads as prints back with the
/// same decimal value: what [`is_exact`] decides when no shortcut applies.
fn prints_back(token: &str, signed: &Decimal<'_>) -> bool {
    // Correctly rounded, as serde_json reads it (its `float_roundtrip`).
    let Ok(float) = token.parse::<f64>() else { return false };
    // `None` for an infinity: the number is beyond the range of an f64.
    let Some(printed) = serde_json::Number::from_f64(float) else { return false };
    let printed = printed.to_string();
    decimal(&printed).is_some_and(|p| p == *signed)
}

/// The 1-based position among the numbers of `json` (valid JSON text) of
/// the first that is not exact, if any.
pub(crate) fn first_inexact(json: &str) -> Option<usize> {
    let bytes = json.as_bytes();
    let (mut at, mut seen) = (0, 0);
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                // Skip the string; `\` escapes the byte after it.
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let len = bytes[at..]
                    .iter()
                    .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                seen += 1;
                if !is_exact(&json[at..at + len]) {
                    return Some(seen);
                }
                at += len;
            }
            _ => at += 1,
        }
    }
    None
}

/// The error for the `nth` number (1-based) of an op's value; the caller's
/// deserializer adds where the value ends.
pub(crate) fn inexact_error<E: serde::de::Error>(nth: usize) -> E {
    E::custom(format_args!(
        "{INEXACT}: number {nth} of this op's value has more significant digits than a 64-bit float holds, \
         or is beyond its range; send the shortest text of the float meant, as JSON encoders print it"
    ))
}

/// Whether `err`, an error of [`EditEvent::from_json`](crate::EditEvent::from_json),
/// refused a number that is not exact.
pub(crate) fn is_inexact(err: &serde_json::Error) -> bool {
    // Every message of serde and serde_json starts with its own fixed words
    // (`invalid type`, `duplicate field`, `expected ...`), never with input.
    err.to_string().starts_with(INEXACT)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::verify::VerifyError;
    use crate::{EditEvent, Reason};

    /// `token` normalised: (negative, significant digits, exponent).
    fn parts(token: &str) -> Option<(bool, String, i64)> {
        decimal(token).map(|d| (d.negative, d.digits().map(char::from).collect(), d.exponent))
    }

    #[test]
    fn decimals_are_normalised() {
        let d = |negative, digits: &str, exponent| Some((negative, digits.to_owned(), exponent));
        assert_eq!(parts("36.60"), d(false, "366", 2));
        assert_eq!(parts("3.66e1"), d(false, "366", 2));
        assert_eq!(parts("0.0366E+3"), d(false, "366", 2));
        assert_eq!(parts("-1e-7"), d(true, "1", -6));
        assert_eq!(parts("1200"), d(false, "12", 4));
        assert_eq!(parts("-0.000"), d(false, "", 0));
        assert_eq!(decimal("0.0366e3"), decimal("36.60"));
        assert_ne!(decimal("36.6"), decimal("-36.6"));
        for not_a_number in ["", "-", ".5", "1e", "1e+", "1x", "1.2.3"] {
            assert!(decimal(not_a_number).is_none(), "{not_a_number}");
        }
    }

    #[test]
    fn numbers_an_f64_holds_are_exact_and_others_are_not() {
        for exact in [
            "0",
            "-0",
            "0.0",
            "-0.0e5",
            "72",
            "-9223372036854775808",
            "18446744073709551615",
            "36.6",
            "36.60",
            "1e2",
            "100.0",
            "1E-7",
            "0.1",
            "5e-324",
            "1.7976931348623157e308",
            "18446744073709552000",
            "1.2345678901234567e19",
        ] {
            assert!(is_exact(exact), "{exact}");
        }
        for inexact in [
            "12345678901234567890.123",
            "0.1000000000000000055511151231257827",
            "1e-400",
            "1e400",
            "-1e400",
            "18446744073709551616",
            "18446744073709551617",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "1.00000000000000000001",
            "2e-324",
            "1e99999999999999999999",
        ] {
            assert!(!is_exact(inexact), "{inexact}");
        }
    }

    #[test]
    fn the_first_inexact_number_is_found_outside_strings() {
        assert_eq!(first_inexact(r#"{"text": "1e-400 \" 1e-400", "amends": {"op": 3}}"#), None);
        assert_eq!(first_inexact(r#"[1, 2.5, -0.1000000000000000055511151231257827, 1e-400]"#), Some(3));
        assert_eq!(first_inexact("1e-400"), Some(1));
        assert_eq!(first_inexact(r#"{"a\\": 1e-400}"#), Some(1));
    }

    /// A valid event whose one op sets `vitals.temperature_c` (a decimal)
    /// to the JSON text `value`.
    fn event_with_value(value: &str) -> String {
        format!(
            r#"{{"event_id":"019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e","patient_id":"pt-1","source":"site-a-ehr","author":"clin-42","hlc":{{"wall_ms":1,"logical":0}},"ops":[{{"op":"set","path":"vitals.temperature_c","value":{value}}}]}}"#
        )
    }

    fn decoded_value(value: &str) -> Result<Value, VerifyError> {
        let event = EditEvent::from_json(event_with_value(value).as_bytes()).map_err(VerifyError::from_event_json)?;
        Ok(event.ops[0].value().expect("a set has a value").clone())
    }

    #[test]
    fn an_event_with_an_inexact_number_is_refused_as_inexact_number_without_quoting_it() {
        for (value, nth) in [
            ("0.1000000000000000055511151231257827", 1),
            ("1e-400", 1),
            ("1e400", 1),
            ("18446744073709551617", 1),
            ("[1, 2.5, 12345678901234567890.123]", 3),
            (r#"{"a": [0.5, {"b": 1e-400}], "c": "1e-400"}"#, 2),
        ] {
            let refused = decoded_value(value).expect_err(value);
            assert_eq!(refused.reason(), Reason::InexactNumber, "{value}: {refused}");
            let message = refused.to_string();
            assert!(message.starts_with(&format!("{INEXACT}: number {nth} of this op's value")), "{message}");
            assert!(message.contains(" at line 1 column "), "{message}");
            for quoted in ["400", "555111", "1844674", "1234567"] {
                assert!(!message.contains(quoted), "the message quotes the number: {message}");
            }
        }
        // Other errors in a value are still malformed_event.
        let refused = decoded_value(r#"{"a": 0.5, "a": 1}"#).expect_err("a repeated key");
        assert_eq!(refused.reason(), Reason::MalformedEvent, "{refused}");
        assert!(refused.to_string().contains("duplicate key `a` in an object at line 1 column "), "{refused}");
    }

    #[test]
    fn exact_numbers_keep_their_value() {
        for (value, want) in [
            ("36.60", serde_json::json!(36.6)),
            ("1e2", serde_json::json!(100.0)),
            ("-0", serde_json::json!(-0.0)),
            ("72", serde_json::json!(72)),
            ("18446744073709552000", serde_json::json!(18_446_744_073_709_551_616.0)),
            ("[1, 2.5]", serde_json::json!([1, 2.5])),
        ] {
            assert_eq!(decoded_value(value).expect(value), want, "{value}");
        }
    }

    /// A number with more significant digits than any float's shortest
    /// text has (17), the point anywhere, any exponent.
    fn long_decimal() -> impl Strategy<Value = String> {
        (
            1u8..=9,
            proptest::collection::vec(0u8..=9, 16..40),
            1u8..=9,
            any::<prop::sample::Index>(),
            -400i32..400,
            any::<bool>(),
        )
            .prop_map(|(first, middle, last, point, exponent, negative)| {
                let digits: String = std::iter::once(first)
                    .chain(middle)
                    .chain(std::iter::once(last))
                    .map(|d| char::from(b'0' + d))
                    .collect();
                let at = point.index(digits.len()) + 1;
                let sign = if negative { "-" } else { "" };
                let (int, frac) = digits.split_at(at);
                if frac.is_empty() {
                    format!("{sign}{int}e{exponent}")
                } else {
                    format!("{sign}{int}.{frac}e{exponent}")
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// The shortcut agrees with printing the float: any decimal of up
        /// to 15 significant digits in the normal range prints back as
        /// itself.
        #[test]
        fn up_to_15_digits_in_the_normal_range_print_back(
            digits in 1u64..1_000_000_000_000_000,
            exponent in -300i64..=285,
            negative in any::<bool>(),
        ) {
            let text = format!("{}{digits}e{exponent}", if negative { "-" } else { "" });
            let signed = decimal(&text).expect("a decimal");
            prop_assert!(signed.len <= ALWAYS_EXACT_DIGITS && NORMAL_EXPONENTS.contains(&signed.exponent), "{}", text);
            prop_assert!(prints_back(&text, &signed), "{}", text);
        }

        /// Whatever float serde_json prints is exact, is accepted in an
        /// event, and reads back as the same float.
        #[test]
        fn every_float_serde_json_prints_is_accepted_and_reads_back(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            prop_assume!(x.is_finite());
            let text = serde_json::to_string(&x).expect("a finite float prints");
            prop_assert!(is_exact(&text), "{}", text);
            let back = decoded_value(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(back.as_f64().map(f64::to_bits), Some(x.to_bits()), "{}", text);
        }

        /// More digits than a float holds are never exact, and such an event
        /// is refused as `inexact_number`.
        #[test]
        fn texts_with_more_digits_than_a_float_holds_are_refused(text in long_decimal()) {
            prop_assert!(!is_exact(&text), "{}", text);
            let refused = decoded_value(&text).expect_err("an inexact number");
            prop_assert_eq!(refused.reason(), Reason::InexactNumber, "{}: {}", text, refused);
        }
    }
}
