//! Decoding a signed event in one pass, refusing a key repeated in any JSON
//! object.
//!
//! The bytes of a signed event are stored and replayed as signed, and other
//! JSON readers keep the *first* of two equal keys where serde keeps the
//! last: a note or an `observed` clock could read one way here and another
//! way there. So no object in an event may name a key twice.
//!
//! Key decision: the check happens inside the typed parse, not in a second
//! pass over the bytes. The struct fields (`EditEvent`, `Hlc`) get it from
//! serde's derive (`duplicate field`); the places serde would silently keep
//! the last key are decoded here: [`UniqueValue`] for op values (a
//! `serde_json::Value` whose objects are checked as they are read),
//! [`observed`] for the version vector, and [`Op`]'s own `Deserialize`,
//! which also reads an op without serde's internally tagged buffering (every
//! op map copied into a `Content` tree first). One parse instead of two was
//! about 1.9 us less per event of the merger's and ingest's CPU.
//!
//! An op's value is also checked for numbers that a 64-bit float cannot
//! hold exactly (crate::number). serde_json hands a visitor the `f64` it
//! made of a number, not its text, so [`OpValue`] borrows the value's raw
//! text from the payload as it passes, parses that, and reads the text's
//! numbers only when the value holds a float. The value's bytes are read
//! twice (once to find its end, once to parse it); the rest of the payload
//! once. Measured in a release build on 2,000 events of a mix of ints,
//! floats, codes and notes (398 bytes on average): 0.98 us per event
//! before, 1.03-1.04 us with this check and correctly rounded floats; on
//! the worst case, one 60 KB value of 5,000 floats, 128 us before and 231 us
//! after.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event::Op;
use crate::hlc::{Hlc, VersionVector};
use crate::number::{first_inexact, inexact_error};
use crate::text::shorten;

fn duplicate_key<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate key `{}` in an object", shorten(key)))
}

/// A JSON value in which no object names a key twice.
pub(crate) struct UniqueValue(pub Value);

impl<'de> Deserialize<'de> for UniqueValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueValueVisitor).map(UniqueValue)
    }
}

struct UniqueValueVisitor;

impl<'de> Visitor<'de> for UniqueValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        UniqueValue::deserialize(d).map(|u| u.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(UniqueValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(duplicate_key(&key));
            }
            let UniqueValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// An op's value: a [`UniqueValue`] whose numbers are exactly what it keeps
/// of them. Reads only from JSON borrowed whole ([`crate::EditEvent::from_json`]),
/// since it borrows the value's text.
pub(crate) struct OpValue(pub Value);

impl<'de> Deserialize<'de> for OpValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        let parsed = serde_json::from_str::<UniqueValue>(text);
        // A number beyond a float's range fails the parse itself.
        let suspect = parsed.as_ref().map_or(true, |v| holds_float(&v.0));
        if let Some(nth) = suspect.then(|| first_inexact(text)).flatten() {
            return Err(inexact_error(nth));
        }
        // Where the value ends is added by the payload's own parser.
        parsed.map(|v| OpValue(v.0)).map_err(|e| de::Error::custom(without_position(&e)))
    }
}

/// Whether `v` holds a number that is not an integer of 64 bits.
fn holds_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(holds_float),
        Value::Object(map) => map.values().any(holds_float),
        Value::Null | Value::Bool(_) | Value::String(_) => false,
    }
}

/// `e`'s message without the position in the op's value, which would read
/// as a position in the payload.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let at = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&at).map_or_else(|| text.clone(), str::to_owned)
}

/// `EditEvent::observed`: absent or null is `None` (a blind write); a
/// source named twice is refused.
pub(crate) fn observed<'de, D: Deserializer<'de>>(d: D) -> Result<Option<VersionVector>, D::Error> {
    Ok(Option::<UniqueVv>::deserialize(d)?.map(|u| u.0))
}

struct UniqueVv(VersionVector);

impl<'de> Deserialize<'de> for UniqueVv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(UniqueVvVisitor).map(UniqueVv)
    }
}

struct UniqueVvVisitor;

impl<'de> Visitor<'de> for UniqueVvVisitor {
    type Value = VersionVector;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map from source to {\"wall_ms\", \"logical\"}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<VersionVector, A::Error> {
        let mut out = VersionVector::new();
        while let Some(source) = map.next_key::<String>()? {
            if out.contains_key(&source) {
                return Err(duplicate_key(&source));
            }
            let hlc: Hlc = map.next_value()?;
            out.insert(source, hlc);
        }
        Ok(out)
    }
}

/// The op names, in the order serde's derive would list the variants, and
/// the kind each names.
const OP_NAMES: &[&str] = &["set", "clear", "add", "remove", "append"];
const OP_KINDS: [OpKind; 5] = [OpKind::Set, OpKind::Clear, OpKind::Add, OpKind::Remove, OpKind::Append];
const OP_FIELDS: &[&str] = &["op", "path", "value"];

/// Reads `{"op": ..., "path": ..., "value": ...}` in any key order, with the
/// errors serde's internally tagged derive gives (`missing field`, `unknown
/// field`, `unknown variant`), plus `duplicate field` for any of the three.
/// Also reads the array form that derive accepted, `["set", path, value]` /
/// `["clear", path]`: events signed that way were accepted before, and a
/// replay of the edit topic must fold them as it did.
impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OpVisitor)
    }
}

struct OpVisitor;

/// The three keys an op may have.
enum OpKey {
    Op,
    Path,
    Value,
}

impl<'de> Deserialize<'de> for OpKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = OpKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`op`, `path` or `value`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<OpKey, E> {
                match v {
                    "op" => Ok(OpKey::Op),
                    "path" => Ok(OpKey::Path),
                    "value" => Ok(OpKey::Value),
                    other => Err(E::unknown_field(&shorten(other), OP_FIELDS)),
                }
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// The op's kind, read from its name without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Set,
    Clear,
    Add,
    Remove,
    Append,
}

impl<'de> Deserialize<'de> for OpKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = OpKind;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an op name")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<OpKind, E> {
                OP_NAMES
                    .iter()
                    .position(|n| *n == v)
                    .map(|i| OP_KINDS[i])
                    .ok_or_else(|| E::unknown_variant(&shorten(v), OP_NAMES))
            }
        }
        d.deserialize_str(NameVisitor)
    }
}

impl<'de> Visitor<'de> for OpVisitor {
    type Value = Op;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an op: {\"op\", \"path\"[, \"value\"]}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Op, A::Error> {
        let kind: OpKind = seq.next_element()?.ok_or_else(|| de::Error::missing_field("op"))?;
        let path: String = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let (op, len) = if kind == OpKind::Clear {
            (Op::Clear { path }, 2)
        } else {
            let OpValue(value) = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(2, &self))?;
            (op_of(kind, path, value), 3)
        };
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(len + 1, &self));
        }
        Ok(op)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Op, A::Error> {
        let mut kind: Option<OpKind> = None;
        let mut path: Option<String> = None;
        let mut value: Option<Value> = None;
        while let Some(key) = map.next_key::<OpKey>()? {
            match key {
                OpKey::Op if kind.is_some() => return Err(de::Error::duplicate_field("op")),
                OpKey::Op => kind = Some(map.next_value()?),
                OpKey::Path if path.is_some() => return Err(de::Error::duplicate_field("path")),
                OpKey::Path => path = Some(map.next_value()?),
                OpKey::Value if value.is_some() => return Err(de::Error::duplicate_field("value")),
                OpKey::Value => value = Some(map.next_value::<OpValue>()?.0),
            }
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("op"))?;
        let path = path.ok_or_else(|| de::Error::missing_field("path"))?;
        if kind == OpKind::Clear {
            return match value {
                Some(_) => Err(de::Error::unknown_field("value", &OP_FIELDS[..2])),
                None => Ok(Op::Clear { path }),
            };
        }
        let value = value.ok_or_else(|| de::Error::missing_field("value"))?;
        Ok(op_of(kind, path, value))
    }
}

/// The op of `kind` with its path and value. Both callers handle `clear`
/// first, since it takes no value (and refuse one).
fn op_of(kind: OpKind, path: String, value: Value) -> Op {
    match kind {
        OpKind::Set => Op::Set { path, value },
        OpKind::Clear => Op::Clear { path },
        OpKind::Add => Op::Add { path, value },
        OpKind::Remove => Op::Remove { path, value },
        OpKind::Append => Op::Append { path, value },
    }
}
