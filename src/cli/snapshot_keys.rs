//! `tidemark snapshot keys`: verify a snapshot, unwrap its master key with a
//! recipient key, and print what one reader needs to read the parts in
//! place, still encrypted: a DuckDB SQL snippet, Spark settings, a pyarrow
//! snippet, or the keys as JSON.
//!
//! Key decision: every format carries only this snapshot's keys (its master
//! key or its data key), never the recipient's long-term secret, and the
//! snapshot is verified first (signature, chain, every part's size, SHA-256
//! and encryption metadata), so the files the snippet names are the ones the
//! archiver signed at the time of the check. The output is a secret: with
//! `--out` it goes to a new file created 0600.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tidemark_archiver::manifest::Manifest;
use tidemark_archiver::pme::ReadKeys;
use tidemark_archiver::reader;
use zeroize::Zeroizing;

use super::Outcome;
use super::snapshot::{Opened, Which, check_pin, failed, open, profile_name};

/// The Java class of Tidemark's key-list KMS client for Spark
/// (integrations/spark).
pub const SPARK_KMS_CLASS: &str = "io.tidemark.parquet.KeyListKmsClient";

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    which: Which,
    /// A recipient secret key the snapshot is encrypted to.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// What to print: a DuckDB SQL snippet, Spark settings, a pyarrow snippet, or JSON.
    #[arg(long, value_enum, default_value_t = KeysFormat::Json)]
    format: KeysFormat,
    /// Write to this new file (mode 0600; never over an existing file) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// The formats of `snapshot keys`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeysFormat {
    /// `PRAGMA add_parquet_key` and a view over the parts (exposes the data key).
    Duckdb,
    /// Spark/Hadoop properties for the key-list KMS client (exposes the master key).
    Spark,
    /// A Python snippet: a pyarrow KMS client, a table and a dataset (exposes the master key).
    Pyarrow,
    /// Snapshot id, master key id, master key and each part's footer key (exposes both).
    Json,
}

pub async fn keys(args: KeysArgs) -> anyhow::Result<Outcome> {
    let key = tidemark_seal::load_recipient_secret(&args.key).context("loading --key")?;
    if let Some(out) = &args.out
        && std::fs::symlink_metadata(out).is_ok()
    {
        anyhow::bail!("refusing to overwrite {}: remove it first or choose another --out", out.display());
    }
    let opened = open(&args.which).await?;
    if let Some(refused) = check_pin("verification", &args.which, &opened)? {
        return Ok(refused);
    }
    let Opened { archive, id, archiver, chain } = &opened;
    let profile = profile_name(args.which.profile);
    if let Some(b) = chain.breaks().first() {
        eprintln!("verification FAILED for snapshot {id}: the chain of {profile} is broken: {b}");
        return Ok(Outcome::SomeInputFailed);
    }
    // Every page decrypted: the snippet is only printed for parts that read.
    let (manifest, schema, keys) = match reader::verify(archive, profile, id, archiver, Some(&key)).await {
        Ok(reader::Verified { manifest, schema, keys: Some(keys), .. }) => (manifest, schema, keys),
        Ok(_) => unreachable!("verify with a key returns the keys"),
        Err(e) => return Ok(failed("verification", id, &e)),
    };
    let parts: Vec<String> = manifest.parts.iter().map(|p| archive.object_location(profile, id, &p.name)).collect();
    let columns = Columns::of(schema.as_deref());
    let text = render(args.format, &manifest, &keys, &parts, &columns);
    match &args.out {
        Some(out) => {
            crate::keyfiles::write_new(out, text.as_bytes(), 0o600)?;
            eprintln!("wrote the keys of snapshot {id} ({profile}) to {} (mode 0600)", out.display());
        }
        None => std::io::stdout().write_all(text.as_bytes()).context("writing to stdout")?,
    }
    Ok(Outcome::Ok)
}

/// The text of one format. Secret: it holds a key. It is written into room
/// reserved up front, so no reallocation leaves a copy of a key in freed
/// memory, and it is zeroized when dropped.
fn render(format: KeysFormat, m: &Manifest, keys: &ReadKeys, parts: &[String], columns: &Columns) -> Zeroizing<String> {
    let room = 16 * 1024 + parts.iter().map(|p| 2 * p.len() + 80).sum::<usize>();
    let mut out = Zeroizing::new(String::with_capacity(room));
    let header = format!(
        "Tidemark snapshot {} ({}), {} rows in {} parts. SECRET: this holds the snapshot's {}; keep it out of \
         shell history, notebooks and logs.",
        m.snapshot_id,
        m.profile,
        m.rows,
        m.parts.len(),
        match format {
            KeysFormat::Duckdb => "data key",
            KeysFormat::Json => "master and data keys",
            KeysFormat::Spark | KeysFormat::Pyarrow => "master key",
        }
    );
    let mk_id = &m.encryption.master_key_id;
    let (master, data) = (keys.master.to_base64(), keys.data.to_base64());
    let (master, data) = (master.as_str(), data.as_str());
    let w = &mut *out;
    // Writing to a String cannot fail.
    let _ = match format {
        KeysFormat::Json => {
            let json = |s: &str| serde_json::Value::from(s).to_string();
            let footer: Vec<String> = parts.iter().map(|p| json(p)).collect();
            write!(
                w,
                "{{\"snapshot\":{},\"profile\":{},\"master_key_id\":{},\"master_key\":\"{master}\",\"footer_keys\":{{",
                json(&m.snapshot_id),
                json(&m.profile),
                json(mk_id)
            )
            .and_then(|()| {
                footer
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, p)| write!(w, "{}{p}:\"{data}\"", if i == 0 { "" } else { "," }))
            })
            .and_then(|()| w.write_str("}}\n"))
        }
        KeysFormat::Duckdb => {
            let name = format!("tidemark_{}", m.snapshot_id.replace('-', "_"));
            let list = parts.iter().map(|p| sql_string(p)).collect::<Vec<_>>().join(", ");
            write!(
                w,
                "-- {header}\n-- DuckDB (2.0.1) cannot decrypt nested columns (lists, structs), so the view holds the \
                 flat ones; left out: {}.\n-- Read every column through pyarrow instead: `--format pyarrow`, then \
                 duckdb.sql(\"SELECT ... FROM dataset\").\n-- Scans with pushed-down filters fail on encrypted files \
                 too (\"Computed AES tag differs\"): this connection does without them.\nSET disabled_optimizers = \
                 'filter_pushdown,top_n,join_filter_pushdown';\nPRAGMA add_parquet_key('{name}', '{data}');\nCREATE OR \
                 REPLACE VIEW tidemark_{} AS SELECT {} FROM read_parquet([{list}], encryption_config = {{footer_key: \
                 '{name}'}});\n",
                if columns.nested.is_empty() { "none".to_owned() } else { columns.nested.join(", ") },
                m.profile,
                columns.flat.iter().map(|c| sql_identifier(c)).collect::<Vec<_>>().join(", "),
            )
        }
        KeysFormat::Spark => write!(
            w,
            "# {header}\n# Spark shows Hadoop settings in its UI: the redaction rule below hides the key list.\n\
             spark.hadoop.parquet.crypto.factory.class=org.apache.parquet.crypto.keytools.PropertiesDrivenCryptoFactory\n\
             spark.hadoop.parquet.encryption.kms.client.class={SPARK_KMS_CLASS}\n\
             spark.hadoop.parquet.encryption.key.list={mk_id}:{master}\n\
             spark.redaction.regex=(?i)secret|password|token|access[.]?key|credential|parquet[.]encryption[.]key[.]list\n\
             # spark.jars: the jar integrations/spark/build prints (Tidemark's key-list KMS client)\n\
             # parts: {}\n",
            parts.iter().map(|p| spark_path(p)).collect::<Vec<_>>().join(" "),
        ),
        KeysFormat::Pyarrow => pyarrow_snippet(w, &header, mk_id, master, parts),
    };
    out
}

/// The parts' top-level columns, split by whether DuckDB can decrypt them.
struct Columns {
    flat: Vec<String>,
    nested: Vec<String>,
}

impl Columns {
    fn of(schema: Option<&arrow_schema::Schema>) -> Self {
        let (mut flat, mut nested) = (Vec::new(), Vec::new());
        for f in schema.map(|s| s.fields().iter()).into_iter().flatten() {
            if f.data_type().is_nested() { &mut nested } else { &mut flat }.push(f.name().clone());
        }
        Self { flat, nested }
    }
}

/// A SQL identifier, quoted.
fn sql_identifier(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A part's location as Spark's Hadoop file systems name it (`s3a://` for S3).
fn spark_path(location: &str) -> String {
    match location.strip_prefix("s3://") {
        Some(rest) => format!("s3a://{rest}"),
        None => location.to_owned(),
    }
}

/// A SQL string literal.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A Python string literal (JSON's escaping is valid Python).
fn py_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn pyarrow_snippet(w: &mut String, header: &str, mk_id: &str, master_b64: &str, parts: &[String]) -> std::fmt::Result {
    let list = parts.iter().map(|p| py_string(p)).collect::<Vec<_>>().join(",\n    ");
    write!(
        w,
        r#"# {header}
# Reads the parts in place: pages are decrypted in memory, nothing is written.
# Needs pyarrow and cryptography. Defines `table` (a pyarrow.Table) and
# `dataset` (a pyarrow.dataset.Dataset, e.g. for DuckDB: duckdb.sql("SELECT count(*) FROM dataset")).
import base64

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER_KEYS = {{{mk}: base64.b64decode("{master_b64}")}}
PARTS = [
    {list},
]


class TidemarkKmsClient(pe.KmsClient):
    """Unwraps a part's data key with the snapshot's master key: base64 of
    nonce (12 bytes) || AES-256-GCM ciphertext || tag, with the master key id
    as associated data (the Parquet key tools' local wrap)."""

    def __init__(self, config):
        pe.KmsClient.__init__(self)

    def wrap_key(self, key_bytes, master_key_identifier):
        raise NotImplementedError("reading only")

    def unwrap_key(self, wrapped_key, master_key_identifier):
        if master_key_identifier not in MASTER_KEYS:
            raise LookupError(f"{{master_key_identifier}} is not this snapshot's master key: a file of another snapshot")
        raw = base64.b64decode(wrapped_key)
        aad = master_key_identifier.encode()
        try:
            return AESGCM(MASTER_KEYS[master_key_identifier]).decrypt(raw[:12], raw[12:], aad)
        except InvalidTag:
            raise ValueError(f"the data key does not unwrap under {{master_key_identifier}}: wrong key or altered file")


crypto_factory = pe.CryptoFactory(TidemarkKmsClient)
kms_config = pe.KmsConnectionConfig()
decryption_config = pe.DecryptionConfiguration()
table = pq.read_table(
    PARTS, decryption_properties=crypto_factory.file_decryption_properties(kms_config, decryption_config)
)
dataset = ds.dataset(
    PARTS,
    format=ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(
            decryption_config=ds.ParquetDecryptionConfig(crypto_factory, kms_config, decryption_config)
        )
    ),
)
"#,
        mk = py_string(mk_id),
    )
}
