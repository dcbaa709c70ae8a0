//! The NDJSON batch splitter of `POST /v1/events`.
//!
//! Key decision: request framing is part of the contract, so it lives here,
//! beside the envelope it frames: ingest, the CLI and the fuzz target of the
//! batch parser all run this exact code, and none of them needs the
//! service's Kafka and HTTP stack to do so.

/// The most envelopes one NDJSON request may hold. Every line gets a result
/// in the answer, and a rejected line's result (its message) is up to ~100x
/// the line's own bytes: without this bound, 8 MiB of `{}` lines made one
/// request hold ~1.5 GB and answer 670 MB, outside the in-flight byte bound.
pub const MAX_BATCH_LINES: usize = 10_000;

/// Lines with their 1-based numbers, skipping blank ones; the whole body is
/// line 1 when it is a single JSON envelope. Stops after
/// [`MAX_BATCH_LINES`]` + 1` lines: one more than allowed tells the caller
/// the batch is too long, without listing millions of lines first.
pub fn split_lines(body: &[u8], ndjson: bool) -> Vec<(usize, &[u8])> {
    if !ndjson {
        return vec![(1, body)];
    }
    body.split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .take(MAX_BATCH_LINES + 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_lines_numbers_lines_and_skips_blank_ones() {
        let lines = split_lines(b"a\r\n\n  \nb\n", true);
        assert_eq!(lines, vec![(1, &b"a"[..]), (4, &b"b"[..])]);
        assert_eq!(split_lines(b"a\nb", false), vec![(1, &b"a\nb"[..])]);
    }

    /// Regression: 8 MiB of `{}` lines listed 2.8 million lines and answered
    /// each; the split now stops one line past the bound.
    #[test]
    fn split_lines_stops_one_past_the_batch_bound() {
        let body = "{}\n".repeat(3 * MAX_BATCH_LINES);
        let lines = split_lines(body.as_bytes(), true);
        assert_eq!(lines.len(), MAX_BATCH_LINES + 1);
        assert_eq!(lines.last().map(|l| l.0), Some(MAX_BATCH_LINES + 1));
    }
}
