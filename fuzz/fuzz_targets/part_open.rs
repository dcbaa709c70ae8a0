//! The archiver's encrypted-part reader: `read_header` and `open_part` with a
//! fixed recipient key (the golden part's). Whatever opens must account for
//! every byte: the stats give the input's length, and the header parsed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_seal::{open_part, read_header};
use tidemark_fuzz::fixtures;

fuzz_target!(|data: &[u8]| {
    let f = fixtures();
    let header = read_header(data);
    let mut plain = Vec::new();
    if let Ok(stats) = open_part(data, &mut plain, &f.recipient) {
        assert!(header.is_ok(), "a part opened whose header does not parse");
        assert_eq!(stats.ciphertext_bytes, data.len() as u64);
        assert_eq!(stats.plaintext_bytes, plain.len() as u64);
    }
});
