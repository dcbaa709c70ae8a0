//! What ingest keeps of a checked line until its request is answered, and
//! what that costs against the in-flight bound.
//!
//! Key decision: a verified event is cut down at once, on the blocking pool
//! and before the next line is decoded, to what the answer and the Kafka
//! record need: its ids, source, signing key and payload fingerprint. Its
//! decoded ops and the signed message it was checked over are dropped
//! there. Ingest used to keep every decoded event of a request until all of
//! its lines were checked; an event's decoded form is several times its
//! signed bytes (every op, and every JSON object in a value, is a separate
//! allocation), so a request's memory was several times its body. What is
//! kept is charged to the request's [`Budget`](crate::budget::Budget) by
//! [`Checked::held_bytes`].

use tidemark_schemas::verify::VerifiedEvent;
use tidemark_schemas::{EDIT_EVENT_PAYLOAD_TYPE, Reason};
use uuid::Uuid;

use crate::replay::{ReplayPolicy, fingerprint};
use crate::verify::{LineError, MAX_BAD_BEFORE_GOOD};

/// The record headers, in the order every record carries them.
pub(crate) const HEADER_SCHEMA: &str = "tidemark-schema";
/// The event's source.
pub(crate) const HEADER_SOURCE: &str = "tidemark-source";
/// Ingest's clock when it took the request, ms since the epoch.
pub(crate) const HEADER_RECEIVED_MS: &str = "tidemark-received-ms";
/// The registry key id whose signature verified.
pub(crate) const HEADER_KEY_ID: &str = "tidemark-key-id";

/// The digits of the longest `tidemark-received-ms` value (`u64::MAX`).
const RECEIVED_MS_DIGITS: usize = 20;

/// What is left of one line once it was checked.
pub(crate) enum Checked {
    /// Verified, valid and within ingest's replay policy: to be written
    /// unless it is a duplicate.
    Accepted(Accepted),
    /// Refused for the event's own reason.
    Refused {
        /// The code.
        reason: Reason,
        /// What was wrong and where, never a value of the payload.
        message: String,
    },
    /// The same bytes as the line at this index (0-based) of the request: it
    /// shares that line's outcome.
    Repeat(usize),
}

/// What writing an accepted event and answering for it need.
pub(crate) struct Accepted {
    /// The fingerprint of its signed payload (the replay memory's key).
    pub(crate) print: u128,
    /// The registry key id whose signature verified.
    pub(crate) key_id: String,
    /// Its event id, for the answer.
    pub(crate) event_id: Uuid,
    /// Its patient: the record's key.
    pub(crate) patient_id: String,
    /// Its source, for the record's headers.
    pub(crate) source: String,
}

impl Checked {
    /// Cuts a verification outcome down to what the answer needs, applying
    /// ingest's replay `policy` to a verified event received at `now_ms`.
    pub(crate) fn of(outcome: Result<VerifiedEvent, LineError>, policy: &ReplayPolicy, now_ms: u64) -> Self {
        let verified = match outcome {
            Ok(v) => v,
            Err(LineError::Refused(e)) => return Checked::Refused { reason: e.reason(), message: e.to_string() },
            Err(LineError::Repeat(first)) => return Checked::Repeat(first),
            Err(LineError::NotChecked) => {
                let message = format!(
                    "not verified: the request had more bad signatures than its allowance \
                     ({MAX_BAD_BEFORE_GOOD}, and as many per distinct verified payload); fix the signing and resend"
                );
                return Checked::Refused { reason: Reason::BadSignature, message };
            }
        };
        if let Some((reason, message)) = policy.refusal(verified.event(), now_ms) {
            return Checked::Refused { reason, message };
        }
        let print = fingerprint(verified.payload());
        let key_id = verified.key_id().to_owned();
        let event = verified.into_event();
        Checked::Accepted(Accepted {
            print,
            key_id,
            event_id: event.event_id,
            patient_id: event.patient_id,
            source: event.source,
        })
    }

    /// The heap bytes this outcome holds until the answer, for a line of
    /// `line_len` bytes whose request checked `earlier` before it: its
    /// strings; for an accepted line, also the copy of its record (payload,
    /// key and headers) that the producer keeps until Kafka acknowledges
    /// it; for a repeat, the copy of the first line's message its answer
    /// gets. The outcome's own slot is part of the request's per-line
    /// bookkeeping, charged with it.
    pub(crate) fn held_bytes(&self, line_len: usize, earlier: &[Checked]) -> usize {
        match self {
            Checked::Accepted(a) => {
                let strings = a.key_id.capacity() + a.patient_id.capacity() + a.source.capacity();
                let headers = HEADER_SCHEMA.len()
                    + EDIT_EVENT_PAYLOAD_TYPE.len()
                    + HEADER_SOURCE.len()
                    + a.source.len()
                    + HEADER_RECEIVED_MS.len()
                    + RECEIVED_MS_DIGITS
                    + HEADER_KEY_ID.len()
                    + a.key_id.len();
                strings + line_len + a.patient_id.len() + headers
            }
            Checked::Refused { message, .. } => message.capacity(),
            Checked::Repeat(first) => match earlier.get(*first) {
                Some(Checked::Refused { message, .. }) => message.len(),
                _ => 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(patient_id: &str) -> Checked {
        Checked::Accepted(Accepted {
            print: 1,
            key_id: "k".into(),
            event_id: Uuid::nil(),
            patient_id: patient_id.into(),
            source: "s".into(),
        })
    }

    #[test]
    fn an_accepted_line_costs_its_record_copy_and_a_repeat_its_message_copy() {
        let fixed = HEADER_SCHEMA.len()
            + EDIT_EVENT_PAYLOAD_TYPE.len()
            + HEADER_SOURCE.len()
            + HEADER_RECEIVED_MS.len()
            + RECEIVED_MS_DIGITS
            + HEADER_KEY_ID.len();
        // Strings (1 + 4 + 1 bytes), the payload (500), the key (4), the
        // header names and values (the fixed ones, the source and key id).
        assert_eq!(accepted("pt-1").held_bytes(500, &[]), 6 + 500 + 4 + fixed + 2);
        let refused = Checked::Refused { reason: Reason::WrongType, message: "x".repeat(90) };
        assert!(refused.held_bytes(500, &[]) >= 90);
        let earlier = [refused, accepted("pt-1")];
        assert_eq!(Checked::Repeat(0).held_bytes(500, &earlier), 90);
        assert_eq!(Checked::Repeat(1).held_bytes(500, &earlier), 0, "a repeat of an accepted line answers `duplicate`");
    }
}
