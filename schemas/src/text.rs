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

/// A JSON error as a message that never quotes the input's values.
///
/// serde describes a value of the wrong type or an unknown enum variant by
/// quoting it (`invalid type: string "Jane Doe", expected ...`), and these
/// messages reach HTTP answers and the dead-letter topic's headers, which
/// gateways and tools log. Here every quoted or backquoted item of the part
/// before `, expected` is replaced by `…` in such messages; what was
/// expected, the field names and the line and column stay.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let quotes_a_value = ["invalid type: ", "invalid value: ", "unknown variant "].iter().any(|p| text.starts_with(p));
    if !quotes_a_value {
        return text;
    }
    let (found, rest) = match text.find(", expected") {
        Some(at) => text.split_at(at),
        None => (text.as_str(), ""),
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = found.chars();
    while let Some(c) = chars.next() {
        if c != '"' && c != '`' {
            out.push(c);
            continue;
        }
        // Skip to the closing delimiter; serde escapes `"` inside strings.
        let mut escaped = false;
        for inner in chars.by_ref() {
            match inner {
                '\\' if !escaped => escaped = true,
                d if d == c && !escaped => break,
                _ => escaped = false,
            }
        }
        out.push(c);
        out.push('…');
        out.push(c);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{json_error, shorten};

    #[test]
    fn json_errors_keep_the_shape_but_never_a_value() {
        let hlc = serde_json::from_str::<std::collections::BTreeMap<String, u64>>(r#"{"hlc": "Jane \"J\" Doe 1962"}"#)
            .expect_err("a string is not a number");
        let msg = json_error(&hlc);
        assert!(!msg.contains("Jane") && !msg.contains("1962"), "{msg}");
        assert!(msg.starts_with("invalid type: string \"…\", expected u64 at line 1 column"), "{msg}");
        let number = serde_json::from_str::<String>("19620301").expect_err("a number is not a string");
        assert!(!json_error(&number).contains("19620301"), "{}", json_error(&number));
        let syntax = serde_json::from_str::<String>("{oops").expect_err("not JSON");
        assert_eq!(json_error(&syntax), syntax.to_string(), "syntax errors quote nothing");
    }

    #[test]
    fn short_strings_stay_and_long_ones_are_cut_by_chars() {
        assert_eq!(shorten("site-a"), "site-a");
        let long = "é".repeat(100);
        let cut = shorten(&long);
        assert_eq!(cut.chars().count(), 65);
        assert!(cut.ends_with('…'));
    }
}
