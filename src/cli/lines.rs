//! NDJSON input: numbered lines with a size bound, from a file or stdin.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use anyhow::Context as _;

/// Longest input line accepted; longer lines are reported and skipped
/// without being held in memory.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// One input line.
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The bytes without the trailing `\n` / `\r\n`, or the length of a line
    /// longer than the bound.
    pub content: Result<Vec<u8>, usize>,
}

impl Line {
    /// Whether the line is empty or whitespace only (skipped).
    pub fn is_blank(&self) -> bool {
        self.content.as_ref().is_ok_and(|b| b.iter().all(u8::is_ascii_whitespace))
    }
}

/// Reads numbered lines.
pub struct Lines {
    reader: Box<dyn BufRead>,
    number: usize,
    max_bytes: usize,
}

/// Opens `path`, or stdin if it is absent or `-`.
///
/// # Errors
/// If the file cannot be opened.
pub fn open(path: Option<&Path>) -> anyhow::Result<Lines> {
    let reader: Box<dyn BufRead> = match path {
        None => Box::new(io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(io::stdin().lock()),
        Some(p) => {
            let file = File::open(p).with_context(|| format!("opening input {}", p.display()))?;
            Box::new(BufReader::with_capacity(1 << 16, file))
        }
    };
    Ok(Lines { reader, number: 0, max_bytes: MAX_LINE_BYTES })
}

impl Lines {
    /// The next line, `None` at end of input.
    ///
    /// # Errors
    /// Read errors.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        let mut buf = Vec::new();
        let mut len = 0usize;
        let mut saw_any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !saw_any {
                    return Ok(None);
                }
                break;
            }
            saw_any = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            len += chunk.len();
            if len <= self.max_bytes {
                buf.extend_from_slice(chunk);
            }
            let used = chunk.len() + usize::from(newline.is_some());
            self.reader.consume(used);
            if newline.is_some() {
                break;
            }
        }
        self.number += 1;
        if len > self.max_bytes {
            return Ok(Some(Line { number: self.number, content: Err(len) }));
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(Some(Line { number: self.number, content: Ok(buf) }))
    }
}

impl Lines {
    /// Reads every non-blank line in chunks of at most `chunk_lines` and hands
    /// each chunk to `f`, which returns how many of its lines failed; returns
    /// the total. Chunking lets callers batch signature checks while still
    /// reporting as input streams in.
    ///
    /// # Errors
    /// Read errors, and whatever `f` returns.
    pub fn for_each_chunk(
        &mut self,
        chunk_lines: usize,
        mut f: impl FnMut(&[Line]) -> anyhow::Result<usize>,
    ) -> anyhow::Result<usize> {
        let mut failed = 0usize;
        let mut chunk: Vec<Line> = Vec::with_capacity(chunk_lines);
        loop {
            let line = self.next_line().context("reading the input")?;
            let at_end = line.is_none();
            if let Some(line) = line.filter(|l| !l.is_blank()) {
                chunk.push(line);
            }
            if chunk.len() == chunk_lines || (at_end && !chunk.is_empty()) {
                failed += f(&chunk)?;
                chunk.clear();
            }
            if at_end {
                return Ok(failed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &'static [u8], max_bytes: usize) -> Vec<(usize, Result<Vec<u8>, usize>)> {
        let mut l = Lines { reader: Box::new(input), number: 0, max_bytes };
        let mut out = Vec::new();
        while let Some(line) = l.next_line().expect("reading a slice cannot fail") {
            out.push((line.number, line.content));
        }
        out
    }

    #[test]
    fn splits_trims_and_bounds() {
        let got = lines(b"a\r\nbb\n\ncccccc\nlast", 4);
        assert_eq!(
            got,
            vec![
                (1, Ok(b"a".to_vec())),
                (2, Ok(b"bb".to_vec())),
                (3, Ok(vec![])),
                (4, Err(6)),
                (5, Ok(b"last".to_vec()))
            ]
        );
        assert_eq!(lines(b"", 4), vec![]);
        assert_eq!(lines(b"x\n", 4), vec![(1, Ok(b"x".to_vec()))]);
        assert_eq!(lines(b" x \r\r\n", 8), vec![(1, Ok(b" x \r".to_vec()))]);
    }
}
