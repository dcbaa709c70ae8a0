//! Why an edit event was refused: one closed set of stable codes.
//!
//! Key decision: a reason is a [`Reason`] value everywhere (ingest's answer,
//! the merger's dead-letter header, metric labels, the CLI) and becomes a
//! string only at the edge, through [`Reason::as_str`]. The HTTP status and
//! whether the merger can dead-letter an event for it are derived from the
//! variant, so renaming or adding a code cannot leave a consumer behind: the
//! compiler finds every `match`, and [`Reason::ALL`] is written by the same
//! macro as the enum. docs/events.md and schemas/openapi.v1.yaml list the
//! codes; a test holds them equal to [`Reason::ALL`].

use std::fmt;

use serde::{Serialize, Serializer};

/// Declares [`Reason`], [`Reason::ALL`] and [`Reason::as_str`] from one list,
/// so the three cannot disagree.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $variant:ident => $code:literal,)+) => {
        /// Why an edit event was refused. Never worth retrying with the same
        /// bytes: ingest answers 4xx, the merger dead-letters the event.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Reason {
            /// Every reason, in declaration order: for pre-registering metric
            /// labels and for checking documentation.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            /// The stable code: a metric label value, the `reason` of an
            /// ingest answer, the merger's `tidemark-dlq-reason` header.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $code,)+
                }
            }
        }
    };
}

reasons! {
    /// Not a DSSE envelope of the expected shape: not JSON, unknown or missing
    /// fields, bad base64, no or too many signatures, an empty keyid.
    Malformed => "malformed",
    /// `payloadType` is not the edit event type.
    WrongPayloadType => "wrong_payload_type",
    /// The payload is larger than the catalog allows.
    TooLarge => "too_large",
    /// No signature names a registered key.
    UnknownKey => "unknown_key",
    /// A registered key's signature does not verify (or has the wrong length).
    BadSignature => "bad_signature",
    /// The signed payload is not a v1 edit event (JSON error, duplicate key).
    MalformedEvent => "malformed_event",
    /// A number in an op's value is not exactly what a 64-bit float holds
    /// (more significant digits, beyond its range, or an integer beyond 64
    /// bits whose float prints back as another value): stored, it would read
    /// as another value.
    InexactNumber => "inexact_number",
    /// The event's source is not its signing key's source.
    SourceMismatch => "source_mismatch",
    /// The signing key may not sign for the event's patient.
    PatientOutOfScope => "patient_out_of_scope",
    /// The event's signed HLC wall time is before the signing key's `not_before`.
    KeyNotYetValid => "key_not_yet_valid",
    /// The event's signed HLC wall time is after the signing key's `not_after`.
    KeyExpired => "key_expired",
    /// The event's signed HLC wall time is at or after the signing key's `revoked_at`.
    KeyRevoked => "key_revoked",
    /// Catalog rule: `event_id` is not a UUIDv7.
    EventIdNotV7 => "event_id_not_v7",
    /// Catalog rule: `patient_id`, `source`, `author` or an `observed` source is malformed.
    BadIdentifier => "bad_identifier",
    /// Catalog rule: the event has no ops.
    NoOps => "no_ops",
    /// Catalog rule: more ops than the catalog allows.
    TooManyOps => "too_many_ops",
    /// Catalog rule: more `observed` entries than the catalog allows.
    TooManyObserved => "too_many_observed",
    /// Catalog rule: an `observed` entry is not strictly older than the event's `hlc`.
    ObservedNotOlder => "observed_not_older",
    /// Catalog rule: the `hlc` is further ahead of the receiver's clock than allowed.
    HlcInFuture => "hlc_in_future",
    /// Ingest policy: the `hlc` is older than ingest's `--max-event-age-s`
    /// (a captured event replayed long after).
    EventTooOld => "event_too_old",
    /// Ingest policy: ingest runs with `--audience` and the event names
    /// another audience, or none.
    WrongAudience => "wrong_audience",
    /// Catalog rule: an op's path is not in the catalog.
    UnknownPath => "unknown_path",
    /// Catalog rule: the op is not one the field's kind takes.
    OpNotAllowed => "op_not_allowed",
    /// Catalog rule: the value has the wrong type for the field.
    WrongType => "wrong_type",
    /// Catalog rule: a string or text value is longer than allowed.
    TooLong => "too_long",
    /// Catalog rule: two ops of the event touch the same register or element.
    AmbiguousOps => "ambiguous_ops",
    /// Merger: the Kafka record's key is not the event's patient id (only a
    /// writer that bypassed ingest can do that).
    KeyMismatch => "key_mismatch",
    /// Merger: the patient's document refused the event (a catalog that lets
    /// one path change kind).
    Apply => "apply",
}

impl Reason {
    /// The HTTP status ingest answers for an event refused for this reason;
    /// `None` for the reasons only the merger finds (`key_mismatch`, `apply`),
    /// which no HTTP answer carries.
    pub const fn http_status(self) -> Option<u16> {
        match self {
            Reason::Malformed => Some(400),
            Reason::UnknownKey
            | Reason::BadSignature
            | Reason::KeyNotYetValid
            | Reason::KeyExpired
            | Reason::KeyRevoked => Some(401),
            Reason::TooLarge => Some(413),
            Reason::WrongPayloadType
            | Reason::MalformedEvent
            | Reason::InexactNumber
            | Reason::SourceMismatch
            | Reason::PatientOutOfScope
            | Reason::EventIdNotV7
            | Reason::BadIdentifier
            | Reason::NoOps
            | Reason::TooManyOps
            | Reason::TooManyObserved
            | Reason::ObservedNotOlder
            | Reason::HlcInFuture
            | Reason::EventTooOld
            | Reason::WrongAudience
            | Reason::UnknownPath
            | Reason::OpNotAllowed
            | Reason::WrongType
            | Reason::TooLong
            | Reason::AmbiguousOps => Some(422),
            Reason::KeyMismatch | Reason::Apply => None,
        }
    }

    /// Whether the merger can send an event to the dead-letter topic for this
    /// reason (the code is then its `tidemark-dlq-reason` header). Every
    /// reason but ingest's clock and deployment policies: the future-skew
    /// and age bounds are checked against the receiver's clock at ingest, and
    /// a replay must not depend on when it runs; the audience is ingest's
    /// setting. The merger applies none of them.
    pub const fn dead_lettered(self) -> bool {
        !matches!(self, Reason::HlcInFuture | Reason::EventTooOld | Reason::WrongAudience)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serialises as its code.
impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_found_somewhere() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            let code = r.as_str();
            assert!(seen.insert(code), "{code} twice");
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{code}");
            assert_eq!(r.to_string(), code);
            assert_eq!(serde_json::to_string(r).expect("a code serialises"), format!("\"{code}\""));
            if let Some(status) = r.http_status() {
                assert!((400..500).contains(&status), "{code}: {status}");
            }
            assert!(r.http_status().is_some() || r.dead_lettered(), "{code} is found nowhere");
        }
    }
}
