#!/usr/bin/env python3
"""Self-test of the Spark integration: Spark reads a small encrypted dataset
laid out as Tidemark's archiver lays out snapshot parts, and refuses it under a
wrong or unknown master key, a malformed key list, or a tampered data page.

    python3 integrations/spark/test_fixture.py      # exit 0 when every check passes

The dataset is written by pyarrow, an independent PME writer: AES_GCM_V1,
256-bit data keys, uniform encryption, encrypted footer, V1 pages, PKMT1 key
material stored in the footer, single wrapping, wrappedDEK =
base64(nonce || AES-GCM(dek) || tag) under the master key with the master key id
as associated data (parquet-java's KeyToolkit.encryptKeyLocally).
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = os.path.dirname(os.path.abspath(__file__))
MASTER_KEY_ID = "tidemark.snap-5f0c6a58-2f7e-4c1e-9b1a-0d4c1e2f3a4b"
KMS = pe.KmsConnectionConfig(kms_instance_id="tidemark", kms_instance_url="tidemark-manifest")
# Two parts of one snapshot: (first id, rows).
PARTS = [(0, 1000), (1000, 1500)]

failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, file=sys.stderr)
    if not condition:
        failures.append(what)


class LocalWrapClient(pe.KmsClient):
    """Wraps like Tidemark's archiver (and parquet-java's InMemoryKMS)."""

    def __init__(self, master_keys):
        pe.KmsClient.__init__(self)
        self.master_keys = master_keys

    def wrap_key(self, key_bytes, master_key_identifier):
        nonce = os.urandom(12)
        sealed = AESGCM(self.master_keys[master_key_identifier]).encrypt(
            nonce, key_bytes, master_key_identifier.encode()
        )
        return base64.b64encode(nonce + sealed).decode()

    def unwrap_key(self, wrapped_key, master_key_identifier):
        raw = base64.b64decode(wrapped_key)
        return AESGCM(self.master_keys[master_key_identifier]).decrypt(
            raw[:12], raw[12:], master_key_identifier.encode()
        )


def write_dataset(folder, master_key):
    factory = pe.CryptoFactory(lambda _config: LocalWrapClient({MASTER_KEY_ID: master_key}))
    config = pe.EncryptionConfiguration(
        footer_key=MASTER_KEY_ID,
        uniform_encryption=True,  # the footer key encrypts every column
        encryption_algorithm="AES_GCM_V1",
        plaintext_footer=False,
        double_wrapping=False,
        internal_key_material=True,
        data_key_length_bits=256,
    )
    paths, total = [], 0
    for number, (first, count) in enumerate(PARTS):
        ids = list(range(first, first + count))
        amounts = [(i * 7919) % 1000 - 300 for i in ids]  # some negative
        total += sum(amounts)
        table = pa.table({
            "id": pa.array(ids, pa.int64()),
            "amount": pa.array(amounts, pa.int64()),
            "source": pa.array([f"sensor-{i % 13}" for i in ids], pa.string()),
        })
        path = os.path.join(folder, f"part-{number:05}.parquet")
        pq.write_table(
            table, path, data_page_version="1.0", use_dictionary=False,
            encryption_properties=factory.file_encryption_properties(KMS, config),
        )
        paths.append(path)
    return paths, total, factory


def footer_key_metadata(path):
    """The PKMT1 JSON from the plaintext FileCryptoMetaData that precedes the
    encrypted footer (read without any key, as a reader first sees it)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"PARE" and data[-4:] == b"PARE", "not an encrypted-footer file"
    footer_len = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - footer_len:-8]
    start = footer.index(b'{"keyMaterialType"')
    value, _ = json.JSONDecoder().raw_decode(footer[start:].decode("utf-8", "replace"))
    return value


def read(properties, jar, paths, sum_column="amount"):
    cmd = [sys.executable, os.path.join(HERE, "read_snapshot.py"),
           "--properties", properties, "--jar", jar]
    if sum_column:
        cmd += ["--sum-column", sum_column]
    started = time.monotonic()
    done = subprocess.run(cmd + paths, capture_output=True, text=True, timeout=300)
    print(f"     ({time.monotonic() - started:.1f} s, exit {done.returncode})", file=sys.stderr)
    return done


def write_properties(path, key_list):
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            "# Spark settings for reading Tidemark snapshots\n\n"
            "spark.hadoop.parquet.crypto.factory.class="
            "org.apache.parquet.crypto.keytools.PropertiesDrivenCryptoFactory\n"
            "spark.hadoop.parquet.encryption.kms.client.class=io.tidemark.parquet.KeyListKmsClient\n"
            f"spark.hadoop.parquet.encryption.key.list={key_list}\n"
        )
    return path


def expect_refusal(done, what, needle, secrets):
    check(done.returncode != 0 and done.stdout == "", f"{what}: refused, nothing on stdout")
    check(needle in done.stderr, f"{what}: stderr says {needle!r}")
    check(len(done.stderr.splitlines()) <= 20, f"{what}: stderr is short ({len(done.stderr.splitlines())} lines)")
    check(not any(s in done.stderr for s in secrets), f"{what}: no key bytes on stderr")
    if done.returncode == 0 or needle not in done.stderr:
        print(done.stderr, file=sys.stderr)


def main():
    jar = subprocess.run([os.path.join(HERE, "build")], check=True, capture_output=True,
                         text=True).stdout.strip()
    master_key, wrong_key = os.urandom(32), os.urandom(32)
    b64, wrong_b64 = base64.b64encode(master_key).decode(), base64.b64encode(wrong_key).decode()
    secrets = [b64, wrong_b64, master_key.hex(), wrong_key.hex()]

    with tempfile.TemporaryDirectory(prefix="tidemark-spark-fixture-") as tmp:
        data = os.path.join(tmp, "snapshot")
        os.mkdir(data)
        paths, total, factory = write_dataset(data, master_key)
        rows = sum(count for _, count in PARTS)

        # The fixture is what the brief describes, checked on the bytes.
        meta = footer_key_metadata(paths[0])
        check(meta.get("keyMaterialType") == "PKMT1" and meta.get("internalStorage") is True
              and meta.get("isFooterKey") is True and meta.get("doubleWrapping") is False
              and meta.get("masterKeyID") == MASTER_KEY_ID
              and meta.get("kmsInstanceID") == "tidemark"
              and meta.get("kmsInstanceURL") == "tidemark-manifest",
              f"fixture key metadata is Tidemark's layout: {sorted(meta)}")
        wrapped = base64.b64decode(meta["wrappedDEK"])
        dek = AESGCM(master_key).decrypt(wrapped[:12], wrapped[12:], MASTER_KEY_ID.encode())
        check(len(wrapped) == 12 + 32 + 16 and len(dek) == 32,
              "wrappedDEK is nonce || AES-GCM(32-byte DEK) || tag, AAD = master key id")

        good = write_properties(os.path.join(tmp, "good.properties"), f"{MASTER_KEY_ID}:{b64}")
        done = read(good, jar, [os.path.join(data, "*.parquet")])
        try:
            result = json.loads(done.stdout)
        except ValueError:
            result = None
        check(done.returncode == 0 and result == {"rows": rows, "sum": total,
                                                  "columns": ["id", "amount", "source"]},
              f"Spark reads the snapshot: {done.stdout.strip()!r} (want rows {rows}, sum {total})")
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
        check(len(done.stdout.splitlines()) == 1, "exactly one line on stdout")

        # Right id, wrong key: the wrapped data key's GCM tag fails in the KMS client.
        wrong = write_properties(os.path.join(tmp, "wrong.properties"),
                                 f"{MASTER_KEY_ID}:{wrong_b64}")
        expect_refusal(read(wrong, jar, paths), "wrong master key",
                       f"does not authenticate under master key '{MASTER_KEY_ID}'", secrets)

        # Another snapshot's key list: the id is not there.
        other = write_properties(os.path.join(tmp, "other.properties"),
                                 f"tidemark.snap-other:{b64}")
        expect_refusal(read(other, jar, paths, sum_column=None), "unknown master key id",
                       f"master key '{MASTER_KEY_ID}' is not in parquet.encryption.key.list",
                       secrets)

        # A truncated key: named by id, its length given, its bytes not.
        short = write_properties(os.path.join(tmp, "short.properties"),
                                 f"{MASTER_KEY_ID}:{b64[:20]}")
        expect_refusal(read(short, jar, paths, sum_column=None), "truncated master key",
                       f"master key '{MASTER_KEY_ID}' in parquet.encryption.key.list is 15 bytes",
                       secrets + [b64[:20]])

        # One byte flipped in the middle of part 0's `amount` data page: the
        # page's GCM tag fails. (Only read columns are checked, hence the sum.)
        decryption = factory.file_decryption_properties(KMS, pe.DecryptionConfiguration())
        column = pq.ParquetFile(paths[0], decryption_properties=decryption).metadata \
            .row_group(0).column(1)
        offset = column.data_page_offset + column.total_compressed_size // 2
        with open(paths[0], "r+b") as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0x01]))
        expect_refusal(read(good, jar, paths), f"tampered data page (byte {offset} of part 0)",
                       "GCM tag check failed", secrets)

    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("spark integration: all checks passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
