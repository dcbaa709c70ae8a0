//! The DSSE decoder (`Envelope::decode`), the first parser every byte from an
//! integrator meets. Beyond "no panic": a decoded envelope keeps its PAE
//! invariant, and re-encoding it decodes to the same envelope.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_schemas::dsse::{self, Envelope, MAX_SIGNATURES};

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::decode(data) else { return };
    assert_eq!(envelope.pae(), dsse::pae(envelope.payload_type(), envelope.payload()), "PAE invariant");
    assert!((1..=MAX_SIGNATURES).contains(&envelope.signatures().len()));
    assert!(envelope.signatures().iter().all(|s| !s.keyid.is_empty()));
    let typed = Envelope::decode_as(data, envelope.payload_type()).expect("decode_as agrees with decode");
    assert_eq!(typed, envelope);
    let again = Envelope::decode(envelope.to_json().as_bytes()).expect("an envelope's own JSON decodes");
    assert_eq!(again, envelope, "re-encoding changed the envelope");
});
