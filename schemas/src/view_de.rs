//! Decoding a [`FieldView`] by the keys it has.
//!
//! A field's view is one of three shapes, told apart by their keys: a
//! register (`value`, `author`, `source`, `hlc`, `conflicts`), a set
//! (`values`), a log (`entries`). Key decision: read the object once and
//! pick the shape from the keys seen, in that order of precedence, instead
//! of serde's `untagged`, which copies every field into a `Content` tree
//! and then tries each variant against it in turn. The archiver decodes a
//! view per patient per snapshot; this was half of its time per row.
//! Unknown keys are ignored, as the `untagged` derive ignored them.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::hlc::Hlc;
use crate::view::{ConflictView, FieldView, LogEntryView};

impl<'de> Deserialize<'de> for FieldView {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FieldViewVisitor)
    }
}

enum Key {
    Value,
    Author,
    Source,
    Hlc,
    Conflicts,
    Values,
    Entries,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field view key")
            }

            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "value" => Key::Value,
                    "author" => Key::Author,
                    "source" => Key::Source,
                    "hlc" => Key::Hlc,
                    "conflicts" => Key::Conflicts,
                    "values" => Key::Values,
                    "entries" => Key::Entries,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

struct FieldViewVisitor;

/// Stores `next` into `slot`, refusing a second one.
fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, next: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(next);
    Ok(())
}

impl<'de> Visitor<'de> for FieldViewVisitor {
    type Value = FieldView;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field view: a register, a set or a log")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldView, A::Error> {
        let mut value: Option<Value> = None;
        let mut author: Option<String> = None;
        let mut source: Option<String> = None;
        let mut hlc: Option<Hlc> = None;
        let mut conflicts: Option<Vec<ConflictView>> = None;
        let mut values: Option<Vec<String>> = None;
        let mut entries: Option<Vec<LogEntryView>> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Value => once(&mut value, "value", map.next_value()?)?,
                Key::Author => once(&mut author, "author", map.next_value()?)?,
                Key::Source => once(&mut source, "source", map.next_value()?)?,
                Key::Hlc => once(&mut hlc, "hlc", map.next_value()?)?,
                Key::Conflicts => once(&mut conflicts, "conflicts", map.next_value()?)?,
                Key::Values => once(&mut values, "values", map.next_value()?)?,
                Key::Entries => once(&mut entries, "entries", map.next_value()?)?,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if let (Some(value), Some(author), Some(source), Some(hlc), Some(conflicts)) =
            (value, author, source, hlc, conflicts)
        {
            return Ok(FieldView::Register { value, author, source, hlc, conflicts });
        }
        if let Some(values) = values {
            return Ok(FieldView::Set { values });
        }
        if let Some(entries) = entries {
            return Ok(FieldView::Log { entries });
        }
        Err(de::Error::custom(
            "a field view needs `value`, `author`, `source`, `hlc` and `conflicts` (a register), \
             `values` (a set) or `entries` (a log)",
        ))
    }
}
