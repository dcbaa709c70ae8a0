//! The subset of Structured Field Values (RFC 8941) that the
//! `Signature-Input` and `Signature` fields of RFC 9421 use: a dictionary
//! whose members are an inner list of strings with parameters, or a byte
//! sequence. Parsing is strict (a field is taken whole or refused whole, as
//! RFC 8941 section 4.2 says); serializing gives the canonical form that the
//! signature base's `@signature-params` line is made of.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// A parameter's or item's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bare {
    /// An integer (at most 15 digits).
    Integer(i64),
    /// A string of printable ASCII.
    String(String),
    /// A token.
    Token(String),
    /// A byte sequence.
    Bytes(Vec<u8>),
    /// A boolean.
    Boolean(bool),
}

/// A dictionary member's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    /// An inner list of items, each with parameters, and the list's own parameters.
    InnerList(Vec<(Bare, Params)>, Params),
    /// One item with parameters.
    Item(Bare, Params),
}

/// Parameters, in the order written.
pub type Params = Vec<(String, Bare)>;

/// Parses a dictionary; `Err` says, without quoting the field, where it broke.
pub fn parse_dictionary(text: &str) -> Result<Vec<(String, Member)>, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    p.skip(b' ');
    let mut members: Vec<(String, Member)> = Vec::new();
    while !p.done() {
        let key = p.key()?;
        let member = if p.eat(b'=') {
            if p.peek() == Some(b'(') { p.inner_list()? } else { p.item()? }
        } else {
            Member::Item(Bare::Boolean(true), p.params()?)
        };
        // A repeated key's last value wins (RFC 8941 section 4.2.2).
        members.retain(|(k, _)| *k != key);
        members.push((key, member));
        p.ows();
        if p.done() {
            break;
        }
        if !p.eat(b',') {
            return Err(format!("expected `,` between members at byte {}", p.i));
        }
        p.ows();
        if p.done() {
            return Err("a trailing `,`".into());
        }
    }
    Ok(members)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len() || self.s[self.i..].iter().all(|&b| b == b' ')
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    fn skip(&mut self, b: u8) {
        while self.eat(b) {}
    }

    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn key(&mut self) -> Result<String, String> {
        let start = self.i;
        if !matches!(self.peek(), Some(b'a'..=b'z' | b'*')) {
            return Err(format!("a key must start with a lowercase letter or `*` at byte {start}"));
        }
        while matches!(self.peek(), Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')) {
            self.i += 1;
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn inner_list(&mut self) -> Result<Member, String> {
        self.i += 1; // `(`
        let mut items = Vec::new();
        loop {
            self.skip(b' ');
            if self.eat(b')') {
                return Ok(Member::InnerList(items, self.params()?));
            }
            let bare = self.bare()?;
            items.push((bare, self.params()?));
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return Err(format!("an inner list's items are separated by spaces (byte {})", self.i));
            }
        }
    }

    fn item(&mut self) -> Result<Member, String> {
        let bare = self.bare()?;
        Ok(Member::Item(bare, self.params()?))
    }

    fn params(&mut self) -> Result<Params, String> {
        let mut params: Params = Vec::new();
        while self.eat(b';') {
            self.skip(b' ');
            let key = self.key()?;
            let value = if self.eat(b'=') { self.bare()? } else { Bare::Boolean(true) };
            // RFC 8941 overwrites a repeated parameter in place, which would
            // make the signed parameter line differ from the one sent: a
            // signature's parameters are never repeated, so refuse it.
            if params.iter().any(|(k, _)| *k == key) {
                return Err(format!("a parameter is repeated (byte {})", self.i));
            }
            params.push((key, value));
        }
        Ok(params)
    }

    fn bare(&mut self) -> Result<Bare, String> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b':') => self.bytes(),
            Some(b'?') => {
                self.i += 1;
                let value = match self.peek() {
                    Some(b'1') => true,
                    Some(b'0') => false,
                    _ => return Err(format!("a boolean is ?0 or ?1 (byte {})", self.i)),
                };
                self.i += 1;
                Ok(Bare::Boolean(value))
            }
            Some(b'-' | b'0'..=b'9') => self.integer(),
            Some(b'A'..=b'Z' | b'a'..=b'z' | b'*') => {
                let start = self.i;
                while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b)) {
                    self.i += 1;
                }
                Ok(Bare::Token(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
            }
            _ => Err(format!("expected a value at byte {}", self.i)),
        }
    }

    fn string(&mut self) -> Result<Bare, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(b) = self.peek() else { return Err("a string is not closed".into()) };
            self.i += 1;
            match b {
                b'"' => return Ok(Bare::String(out)),
                b'\\' => match self.peek() {
                    Some(e @ (b'"' | b'\\')) => {
                        self.i += 1;
                        out.push(char::from(e));
                    }
                    _ => return Err(format!("a string escapes only `\"` and `\\` (byte {})", self.i)),
                },
                0x20..=0x7e => out.push(char::from(b)),
                _ => return Err(format!("a string holds printable ASCII only (byte {})", self.i - 1)),
            }
        }
    }

    fn bytes(&mut self) -> Result<Bare, String> {
        self.i += 1;
        let start = self.i;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')) {
            self.i += 1;
        }
        let text = &self.s[start..self.i];
        if !self.eat(b':') {
            return Err(format!("a byte sequence is not closed with `:` (byte {})", self.i));
        }
        B64.decode(text).map(Bare::Bytes).map_err(|_| "a byte sequence is not padded base64".to_owned())
    }

    fn integer(&mut self) -> Result<Bare, String> {
        let start = self.i;
        self.eat(b'-');
        let digits = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        if self.i == digits || self.i - digits > 15 {
            return Err(format!("an integer has 1 to 15 digits (byte {start})"));
        }
        if self.peek() == Some(b'.') {
            return Err(format!("decimals are not used here (byte {})", self.i));
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
        text.parse().map(Bare::Integer).map_err(|e| format!("integer: {e}"))
    }
}

/// The canonical serialization of a bare item.
pub fn serialize_bare(bare: &Bare, out: &mut String) {
    match bare {
        Bare::Integer(n) => out.push_str(&n.to_string()),
        Bare::String(s) => {
            out.push('"');
            for c in s.chars() {
                if matches!(c, '"' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        Bare::Token(t) => out.push_str(t),
        Bare::Bytes(b) => {
            out.push(':');
            out.push_str(&B64.encode(b));
            out.push(':');
        }
        Bare::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
}

/// The canonical serialization of parameters (`;key=value`, `;flag` for true).
pub fn serialize_params(params: &Params, out: &mut String) {
    for (key, value) in params {
        out.push(';');
        out.push_str(key);
        if *value != Bare::Boolean(true) {
            out.push('=');
            serialize_bare(value, out);
        }
    }
}

/// The canonical serialization of an inner list with its parameters.
pub fn serialize_inner_list(items: &[(Bare, Params)], params: &Params) -> String {
    let mut out = String::from("(");
    for (i, (bare, item_params)) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        serialize_bare(bare, &mut out);
        serialize_params(item_params, &mut out);
    }
    out.push(')');
    serialize_params(params, &mut out);
    out
}

/// Whether `s` can be written as a structured-field string (printable ASCII).
pub fn is_sf_string(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_rfc_9421_writes_and_serializes_it_back() {
        let text = r#"sig1=("@method" "@authority" "@path");created=1618884473;keyid="test-key-ed25519";nonce="b3k2", sig2=:AAEC:"#;
        let d = parse_dictionary(text).expect("parses");
        let Member::InnerList(items, params) = &d[0].1 else { panic!("an inner list") };
        assert_eq!(d[0].0, "sig1");
        assert_eq!(
            serialize_inner_list(items, params),
            r#"("@method" "@authority" "@path");created=1618884473;keyid="test-key-ed25519";nonce="b3k2""#
        );
        assert_eq!(d[1], ("sig2".into(), Member::Item(Bare::Bytes(vec![0, 1, 2]), vec![])));
    }

    #[test]
    fn refuses_what_is_not_structured() {
        for bad in [
            "Sig=(\"a\")",
            "sig=(\"a\"",
            "sig=(\"a\"\"b\")",
            "sig=\"open",
            "sig=:AAEC",
            "sig=:!!:",
            "sig=1.5",
            "sig=1234567890123456",
            "sig=?2",
            "sig=(\"a\"), ",
            "sig=(\"a\") x",
            "sig=\"\\n\"",
            "sig=\"é\"",
        ] {
            assert!(parse_dictionary(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strings_round_trip_with_escapes() {
        let items = vec![(Bare::String("a\"b\\c".into()), vec![])];
        let text = format!("x={}", serialize_inner_list(&items, &vec![("f".into(), Bare::Boolean(true))]));
        assert_eq!(text, r#"x=("a\"b\\c");f"#);
        assert_eq!(
            parse_dictionary(&text).expect("parses")[0].1,
            Member::InnerList(items, vec![("f".into(), Bare::Boolean(true))])
        );
    }
}
