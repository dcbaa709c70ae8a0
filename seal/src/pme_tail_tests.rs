#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

/// A Thrift value of any type, for unknown fields and the encoder below.
#[derive(Clone, Debug)]
enum Value {
    Bool(bool),
    Byte(u8),
    I16(i16),
    I32(i32),
    I64(i64),
    Double(u64),
    Binary(Vec<u8>),
    Uuid([u8; 16]),
    List(Vec<Value>),
    Set(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Struct(Vec<(i16, Value)>),
}

impl Value {
    /// The type nibble in a field header (a bool's value is its type).
    fn ty(&self) -> u8 {
        match self {
            Value::Bool(true) => 1,
            Value::Bool(false) => 2,
            Value::Byte(_) => 3,
            Value::I16(_) => 4,
            Value::I32(_) => 5,
            Value::I64(_) => 6,
            Value::Double(_) => 7,
            Value::Binary(_) => 8,
            Value::List(_) => 9,
            Value::Set(_) => 10,
            Value::Map(_) => 11,
            Value::Struct(_) => 12,
            Value::Uuid(_) => 13,
        }
    }

    /// The element type in a collection header: one type for both bools.
    fn elem_ty(&self) -> u8 {
        if let Value::Bool(_) = self { 1 } else { self.ty() }
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// A Thrift compact-protocol writer; `long_ids` writes every field id in
/// the long form (type byte, then zigzag varint), as some writers do.
#[derive(Default)]
struct Enc {
    out: Vec<u8>,
    long_ids: bool,
}

impl Enc {
    fn field_header(&mut self, last: &mut i16, id: i16, ty: u8) {
        let delta = i32::from(id) - i32::from(*last);
        if !self.long_ids && (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | ty);
        } else {
            self.out.push(ty);
            varint(&mut self.out, zigzag(id.into()));
        }
        *last = id;
    }

    fn strukt(&mut self, fields: &[(i16, Value)]) {
        let mut last = 0;
        for (id, v) in fields {
            self.field_header(&mut last, *id, v.ty());
            self.value(v);
        }
        self.out.push(0);
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Bool(_) => {}
            Value::Byte(b) => self.out.push(*b),
            Value::I16(n) => varint(&mut self.out, zigzag((*n).into())),
            Value::I32(n) => varint(&mut self.out, zigzag((*n).into())),
            Value::I64(n) => varint(&mut self.out, zigzag(*n)),
            Value::Double(bits) => self.out.extend(bits.to_le_bytes()),
            Value::Binary(b) => {
                varint(&mut self.out, b.len() as u64);
                self.out.extend(b);
            }
            Value::Uuid(u) => self.out.extend(u),
            Value::List(items) | Value::Set(items) => {
                let Some(ty) = items.first().map(Value::elem_ty) else {
                    self.out.push(0);
                    return;
                };
                let items: Vec<&Value> = items.iter().filter(|i| i.elem_ty() == ty).collect();
                if items.len() < 15 {
                    self.out.push(((items.len() as u8) << 4) | ty);
                } else {
                    self.out.push(0xf0 | ty);
                    varint(&mut self.out, items.len() as u64);
                }
                items.into_iter().for_each(|i| self.element(i));
            }
            Value::Map(entries) => {
                let Some((kt, vt)) = entries.first().map(|(k, v)| (k.elem_ty(), v.elem_ty())) else {
                    self.out.push(0);
                    return;
                };
                let entries: Vec<_> = entries.iter().filter(|(a, b)| a.elem_ty() == kt && b.elem_ty() == vt).collect();
                varint(&mut self.out, entries.len() as u64);
                self.out.push((kt << 4) | vt);
                for (a, b) in entries {
                    self.element(a);
                    self.element(b);
                }
            }
            Value::Struct(fields) => self.strukt(fields),
        }
    }

    fn element(&mut self, v: &Value) {
        match v {
            Value::Bool(b) => self.out.push(if *b { 1 } else { 2 }),
            v => self.value(v),
        }
    }
}

/// What a test file says, and unknown fields to interleave.
#[derive(Clone, Debug, Default)]
struct Spec {
    ctr: bool,
    aad_prefix: Option<Vec<u8>>,
    aad_file_unique: Option<Vec<u8>>,
    supply_aad_prefix: Option<bool>,
    key_metadata: Option<Vec<u8>>,
    unknown_outer: Vec<(usize, i16, Value)>,
    unknown_inner: Vec<(usize, i16, Value)>,
}

fn interleave(mut known: Vec<(i16, Value)>, unknown: &[(usize, i16, Value)]) -> Vec<(i16, Value)> {
    for (at, id, v) in unknown {
        known.insert(at % (known.len() + 1), (*id, v.clone()));
    }
    known
}

fn encode(spec: &Spec, long_ids: bool) -> Vec<u8> {
    let mut inner = Vec::new();
    inner.extend(spec.aad_prefix.clone().map(|b| (1, Value::Binary(b))));
    inner.extend(spec.aad_file_unique.clone().map(|b| (2, Value::Binary(b))));
    inner.extend(spec.supply_aad_prefix.map(|b| (3, Value::Bool(b))));
    let union = vec![(if spec.ctr { 2 } else { 1 }, Value::Struct(interleave(inner, &spec.unknown_inner)))];
    let mut outer = vec![(1, Value::Struct(union))];
    outer.extend(spec.key_metadata.clone().map(|b| (2, Value::Binary(b))));
    let mut enc = Enc { long_ids, ..Enc::default() };
    enc.strukt(&interleave(outer, &spec.unknown_outer));
    enc.out
}

/// `meta` framed as a file tail: an encrypted footer module of `body`
/// ciphertext bytes (plus nonce and tag), the footer length and `PARE`.
fn tail_with(meta: &[u8], body: usize) -> Vec<u8> {
    let module_len = NONCE_LEN + body + TAG_LEN;
    let mut out = meta.to_vec();
    out.extend((module_len as u32).to_le_bytes());
    out.extend(std::iter::repeat_n(0xa5, module_len));
    out.extend(((out.len()) as u32).to_le_bytes());
    out.extend(ENCRYPTED_FOOTER_MAGIC);
    out
}

fn tail(meta: &[u8]) -> Vec<u8> {
    tail_with(meta, 40)
}

fn read(meta: &[u8]) -> Result<CryptoTail, TailError> {
    read_crypto_tail(&tail(meta))
}

fn reason(meta: &[u8]) -> String {
    why(read(meta))
}

fn why(read: Result<CryptoTail, TailError>) -> String {
    match read {
        Err(TailError::Malformed(r)) => r,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn expected(spec: &Spec, meta_len: usize, footer_len: u32) -> CryptoTail {
    CryptoTail {
        algorithm: if spec.ctr { Algorithm::AesGcmCtrV1 } else { Algorithm::AesGcmV1 },
        aad_prefix: spec.aad_prefix.clone(),
        aad_file_unique: spec.aad_file_unique.clone(),
        supply_aad_prefix: spec.supply_aad_prefix,
        key_metadata: spec.key_metadata.clone(),
        footer_len,
        crypto_metadata_len: meta_len,
    }
}

/// What arrow-rs writes with a stored prefix, byte by byte.
const ARROW_LIKE: &[u8] = &[
    0x1c, // field 1 of FileCryptoMetaData: struct
    0x1c, // member 1 of EncryptionAlgorithm (AES_GCM_V1): struct
    0x18, 0x01, b'x', // field 1, aad_prefix: binary "x"
    0x18, 0x08, 1, 2, 3, 4, 5, 6, 7, 8,    // field 2, aad_file_unique: 8 bytes
    0x12, // field 3, supply_aad_prefix: bool false
    0x00, 0x00, // end of AesGcmV1, of the union
    0x18, 0x03, b'{', b'k', b'}', // field 2, key_metadata
    0x00,
];

#[test]
fn the_minimal_and_an_arrow_like_tail_read() {
    let t = read(&[0x1c, 0x1c, 0, 0, 0]).unwrap();
    assert_eq!(t.algorithm, Algorithm::AesGcmV1);
    assert_eq!((t.aad_prefix, t.aad_file_unique, t.supply_aad_prefix, t.key_metadata), (None, None, None, None));
    assert_eq!((t.crypto_metadata_len, t.footer_len), (5, 5 + 4 + 68));

    let t = read(ARROW_LIKE).unwrap();
    assert_eq!(t.aad_prefix.as_deref(), Some(&b"x"[..]));
    assert_eq!(t.aad_file_unique.as_deref(), Some(&[1, 2, 3, 4, 5, 6, 7, 8][..]));
    assert_eq!(t.supply_aad_prefix, Some(false));
    assert_eq!(t.key_metadata.as_deref(), Some(&b"{k}"[..]));
    assert!(t.uses_aad_prefix());

    assert_eq!(read(&[0x1c, 0x1c, 0x31, 0, 0, 0]).unwrap().supply_aad_prefix, Some(true));
    assert_eq!(read(&[0x1c, 0x2c, 0, 0, 0]).unwrap().algorithm, Algorithm::AesGcmCtrV1);
}

#[test]
fn long_form_field_ids_read_like_short_ones() {
    // Field 1 as type 12 then zigzag(1) = 2, and so on.
    let long = [0x0c, 0x02, 0x0c, 0x02, 0x08, 0x04, 0x01, 0xaa, 0x01, 0x06, 0, 0, 0x08, 0x04, 0x01, 0xbb, 0];
    let t = read(&long).unwrap();
    assert_eq!(t.aad_file_unique.as_deref(), Some(&[0xaa][..]));
    assert_eq!(t.supply_aad_prefix, Some(true));
    assert_eq!(t.key_metadata.as_deref(), Some(&[0xbb][..]));
    // A whole file (leading magic and pages) reads like its tail alone.
    let mut file = b"PARE pages".to_vec();
    file.extend(tail(&long));
    assert_eq!(read_crypto_tail(&file).unwrap(), t);
}

#[test]
fn unknown_fields_of_every_type_are_skipped() {
    let every = vec![
        (4, Value::Bool(true)),
        (5, Value::Bool(false)),
        (6, Value::Byte(0xff)),
        (7, Value::I16(-300)),
        (8, Value::I32(i32::MIN)),
        (9, Value::I64(i64::MAX)),
        (10, Value::Double(f64::to_bits(1.5))),
        (11, Value::Binary(b"skipped".to_vec())),
        // Bools in a collection take one byte each.
        (12, Value::List(vec![Value::Bool(true), Value::Bool(false), Value::Bool(true)])),
        (13, Value::Set((0..20).map(Value::I32).collect())), // count in a varint
        (14, Value::Map(vec![(Value::Binary(vec![1]), Value::Struct(vec![(1, Value::Byte(2))])); 3])),
        (15, Value::Struct(vec![(-5, Value::Uuid([9; 16])), (200, Value::List(vec![]))])),
        (100, Value::Map(vec![])),
        (-1, Value::Uuid([7; 16])),
    ];
    let spec = Spec {
        aad_file_unique: Some(vec![1; 8]),
        supply_aad_prefix: Some(false),
        key_metadata: Some(b"km".to_vec()),
        unknown_outer: every.iter().map(|(id, v)| (1, *id, v.clone())).collect(),
        unknown_inner: every.iter().map(|(id, v)| (0, *id, v.clone())).collect(),
        ..Spec::default()
    };
    for long_ids in [false, true] {
        let meta = encode(&spec, long_ids);
        let t = read(&meta).unwrap();
        assert_eq!(t, expected(&spec, meta.len(), t.footer_len));
    }
}

fn nested_structs(levels: usize) -> Value {
    (0..levels).fold(Value::I32(1), |inner, _| Value::Struct(vec![(1, inner)]))
}

fn nested_lists(levels: usize) -> Value {
    (0..levels).fold(Value::Byte(1), |inner, _| Value::List(vec![inner]))
}

#[test]
fn nesting_is_bounded() {
    // An unknown field of FileCryptoMetaData is depth 2, of AesGcmV1 depth 4.
    for (levels, outer, ok) in [(15, true, true), (16, true, false), (13, false, true), (14, false, false)] {
        for nest in [nested_structs, nested_lists] {
            let mut spec = Spec::default();
            let unknown = if outer { &mut spec.unknown_outer } else { &mut spec.unknown_inner };
            unknown.push((0, 9, nest(levels)));
            let result = read(&encode(&spec, false)).map(drop).map_err(|e| e.to_string());
            let too_deep = result.as_ref().is_err_and(|r| r.contains("nesting deeper than 16 in field 9 of"));
            assert!(if ok { result.is_ok() } else { too_deep }, "{levels} levels: {result:?}");
        }
    }
}

#[test]
fn wrong_types_and_repeats_are_named() {
    assert_eq!(reason(&[0x18, 0x00, 0]), "field 1 of FileCryptoMetaData is not a struct (type 8)");
    assert_eq!(reason(&[0x1c, 0x1c, 0, 0, 0x15, 0x02, 0]), "field 2 of FileCryptoMetaData is not a binary (type 5)");
    assert_eq!(reason(&[0x1c, 0x1c, 0x19, 0x00, 0, 0, 0]), "field 1 of AesGcmV1 is not a binary (type 9)");
    assert_eq!(reason(&[0x1c, 0x1c, 0x35, 0x02, 0, 0, 0]), "field 3 of AesGcmV1 is not a bool (type 5)");
    assert_eq!(reason(&[0x1c, 0x18, 0x00, 0, 0]), "field 1 of EncryptionAlgorithm is not a struct (type 8)");
    assert_eq!(reason(&[0x1c, 0x2c, 0x28, 0x00, 0x08, 0x04, 0x00, 0, 0, 0]), "field 2 of AesGcmCtrV1 appears twice");
    assert_eq!(reason(&[0x1c, 0x1c, 0, 0, 0x0c, 0x02, 0x1c, 0, 0, 0]), "field 1 of FileCryptoMetaData appears twice");
    assert_eq!(reason(&[0x1c, 0x1c, 0, 0x1c, 0, 0, 0]), "EncryptionAlgorithm sets more than one member");
    assert_eq!(read(&[0x1c, 0x3c, 0, 0, 0]), Err(TailError::UnknownAlgorithm(3)));
    assert_eq!(read(&[0x1c, 0x0c, 0x01, 0, 0, 0]), Err(TailError::UnknownAlgorithm(-1)));
    assert_eq!(read(&[0x1c, 0x00, 0x28, 0x00, 0]), Err(TailError::MissingAlgorithm));
    assert_eq!(read(&[0x28, 0x00, 0x00]), Err(TailError::MissingAlgorithm));
}

#[test]
fn bad_encodings_are_named() {
    let r = reason(&[0x1c, 0x1c, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x01]);
    assert_eq!(r, "varint in field 1 of AesGcmV1 is longer than 10 bytes");
    let r = reason(&[0x1c, 0x1c, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
    assert_eq!(r, "varint in field 1 of AesGcmV1 overflows 64 bits");
    let r = reason(&[0x1c, 0x1c, 0x28, 0x80, 0xd0, 0xac, 0xf3, 0x0e, 0, 0, 0]);
    assert_eq!(r, "binary length 4000000000 of field 2 of AesGcmV1 exceeds the remaining 75 bytes");
    assert_eq!(reason(&[0x1c, 0x1c, 0, 0, 0x4e, 0]), "field 5 of FileCryptoMetaData has unknown type 14");
    let r = reason(&[0x1c, 0x1c, 0, 0, 0x49, 0x1e, 0]);
    assert_eq!(r, "a collection in field 5 of FileCryptoMetaData has unknown element type 14");
    let r = reason(&[0x1c, 0x1c, 0, 0, 0x49, 0x10, 0]);
    assert_eq!(r, "a collection in field 5 of FileCryptoMetaData has unknown element type 0");
    let r = reason(&[0x1c, 0x1c, 0, 0, 0x4b, 0x01, 0xe3, 0]);
    assert_eq!(r, "a collection in field 5 of FileCryptoMetaData has unknown element type 14");
    let r = reason(&[0x1c, 0x1c, 0, 0, 0x49, 0xf3, 0xff, 0xff, 0x03, 0]);
    assert_eq!(r, "a list of 65535 entries in field 5 of FileCryptoMetaData exceeds the remaining 73 bytes");
    let r = reason(&[0x1c, 0x1c, 0, 0, 0x4b, 0x29, 0x33, 0]);
    assert_eq!(r, "a map of 41 entries in field 5 of FileCryptoMetaData exceeds the remaining 73 bytes");
    // Long form 32767, then a delta of 1.
    let r = reason(&[0x1c, 0x1c, 0, 0, 0x03, 0xfe, 0xff, 0x03, 0x00, 0x13, 0x00, 0]);
    assert_eq!(r, "the field id in the field header after field 32767 of FileCryptoMetaData overflows");
    let r = reason(&[0x1c, 0x1c, 0x03, 0xe0, 0xc5, 0x08, 0, 0, 0, 0]);
    assert_eq!(r, "the field id 70000 in the first field header of AesGcmV1 is outside the i16 range");
    // Crypto metadata that ends inside a nested struct.
    let mut cur = Cursor { buf: &[0x1c, 0x1c, 0, 0, 0x4c, 0x13, 0x07], pos: 0 };
    let Err(TailError::Malformed(r)) = cur.file_crypto_metadata().map(drop) else { panic!("read past the end") };
    assert_eq!(r, "the footer ends inside the field header after field 1 of a struct in field 5 of FileCryptoMetaData");
}

#[test]
fn the_footer_module_must_match_the_footer_length() {
    let module = [&69u32.to_le_bytes()[..], &[0; 68]].concat();
    assert_eq!(
        framed_reason(&[0x1c, 0x1c, 0, 0, 0], &module),
        "the encrypted footer module's length field says 69 bytes but 68 follow"
    );
    // A consistent module too short for nonce and tag, after crypto metadata
    // padded to 23 bytes by an unknown 16-byte binary field.
    let meta = [&[0x1c, 0x1c, 0, 0, 0x58, 0x10][..], &[0; 17]].concat();
    let module = [&10u32.to_le_bytes()[..], &[0; 10]].concat();
    assert_eq!(framed_reason(&meta, &module), "the encrypted footer module of 14 bytes is under its 32-byte minimum");
}

/// The reason `meta || module || footer_len || PARE` is malformed.
fn framed_reason(meta: &[u8], module: &[u8]) -> String {
    let mut t = [meta, module].concat();
    t.extend((t.len() as u32).to_le_bytes());
    t.extend(ENCRYPTED_FOOTER_MAGIC);
    why(read_crypto_tail(&t))
}

#[test]
fn the_trailer_is_checked_first() {
    let mut t = tail(ARROW_LIKE);
    let n = t.len();
    t[n - 1] = b'1';
    assert_eq!(read_crypto_tail(&t), Err(TailError::NotEncryptedFooter));
    t[n - 1] = b'X';
    assert_eq!(read_crypto_tail(&t), Err(TailError::BadMagic));
    assert_eq!(read_crypto_tail(b"PARE"), Err(TailError::Truncated { needed: 8, available: 4 }));
    let mut huge = u32::MAX.to_le_bytes().to_vec();
    huge.extend(ENCRYPTED_FOOTER_MAGIC);
    assert_eq!(read_crypto_tail(&huge), Err(TailError::Truncated { needed: u64::from(u32::MAX) + 8, available: 8 }));
    let small: [u8; 8] = [36, 0, 0, 0, b'P', b'A', b'R', b'E'];
    assert_eq!(tail_len(&small), Err(TailError::FooterTooShort { footer_len: 36 }));
    assert_eq!(tail_len(&t[n - 8..].try_into().unwrap()), Err(TailError::BadMagic));
}

#[test]
fn every_truncation_is_an_error_naming_no_data() {
    let t = tail(ARROW_LIKE);
    assert!(read_crypto_tail(&t).is_ok());
    for i in 1..t.len() {
        let available = t.len() - i;
        let needed = if available < 8 { 8 } else { t.len() as u64 };
        assert_eq!(read_crypto_tail(&t[i..]), Err(TailError::Truncated { needed, available }), "cut {i} in front");
        assert!(read_crypto_tail(&t[..i]).is_err(), "cut at {i}");
    }
    // Crypto metadata cut short inside a well-framed tail.
    for i in 0..ARROW_LIKE.len() {
        let msg = read(&ARROW_LIKE[..i]).unwrap_err().to_string();
        assert!(!msg.contains("{k}"), "{msg}");
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<u8>().prop_map(Value::Byte),
        any::<i16>().prop_map(Value::I16),
        any::<i32>().prop_map(Value::I32),
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(Value::Double),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(Value::Binary),
        any::<[u8; 16]>().prop_map(Value::Uuid),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..20).prop_map(Value::List),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Set),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Value::Map),
            prop::collection::vec((any::<i16>(), inner), 0..4).prop_map(Value::Struct),
        ]
    })
}

fn unknown(known: std::ops::RangeInclusive<i16>) -> impl Strategy<Value = Vec<(usize, i16, Value)>> {
    prop::collection::vec(
        (any::<usize>(), any::<i16>().prop_filter("a known field", move |id| !known.contains(id)), value()),
        0..4,
    )
}

fn bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..max))
}

prop_compose! {
    fn spec()(ctr in any::<bool>(), aad_prefix in bytes(40), aad_file_unique in bytes(40),
        supply_aad_prefix in any::<Option<bool>>(), key_metadata in bytes(300),
        unknown_outer in unknown(1..=2), unknown_inner in unknown(1..=3)) -> Spec {
        Spec { ctr, aad_prefix, aad_file_unique, supply_aad_prefix, key_metadata, unknown_outer, unknown_inner }
    }
}

proptest! {
    #[test]
    fn what_is_encoded_reads_back(spec in spec(), long_ids in any::<bool>(), body in 0usize..100, junk in prop::collection::vec(any::<u8>(), 0..20)) {
        let meta = encode(&spec, long_ids);
        let mut file = junk;
        file.extend(tail_with(&meta, body));
        let footer_len = (meta.len() + 4 + NONCE_LEN + body + TAG_LEN) as u32;
        prop_assert_eq!(read_crypto_tail(&file), Ok(expected(&spec, meta.len(), footer_len)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..400), framed in any::<bool>()) {
        let input = if framed { tail_with(&raw, 0) } else { raw };
        if let Ok(t) = read_crypto_tail(&input) {
            prop_assert!(t.footer_len as usize + TRAILER_LEN <= input.len());
            prop_assert!(t.crypto_metadata_len + MIN_FOOTER_MODULE_LEN <= t.footer_len as usize);
            let copied = [&t.aad_prefix, &t.aad_file_unique, &t.key_metadata].iter().filter_map(|b| b.as_ref()).map(Vec::len).sum::<usize>();
            prop_assert!(copied <= t.crypto_metadata_len);
        }
    }

    #[test]
    fn mutated_tails_never_panic(spec in spec(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut t = tail(&encode(&spec, false));
        for (at, b) in flips {
            let n = t.len();
            t[at % n] = b;
        }
        let _ = read_crypto_tail(&t);
    }
}
