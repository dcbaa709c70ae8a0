//! Strings from the outside, made safe to quote in error messages.

/// How long a string from the outside may get in an error message.
const SHOWN_CHARS: usize = 64;

/// `s`, cut to its first 64 characters (with an ellipsis) so a hostile input
/// cannot flood logs, responses or DLQ headers through an error message.
pub(crate) fn shorten(s: &str) -> String {
    if s.chars().count() <= SHOWN_CHARS {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(SHOWN_CHARS).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::shorten;

    #[test]
    fn short_strings_stay_and_long_ones_are_cut_by_chars() {
        assert_eq!(shorten("site-a"), "site-a");
        let long = "é".repeat(100);
        let cut = shorten(&long);
        assert_eq!(cut.chars().count(), 65);
        assert!(cut.ends_with('…'));
    }
}
