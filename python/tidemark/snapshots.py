"""Snapshots read in place with pyarrow: the parts stay encrypted on disk
(Parquet Modular Encryption) and pyarrow decrypts pages in memory with the
data keys this package's KMS client unwraps.

Trust comes from `snapshot_keys`: before any part is handed to pyarrow, the
signed manifest is verified under the archiver's public key and every part's
size and SHA-256 are checked against it. pyarrow then authenticates every
page it decrypts (AES-GCM). A part replaced between the check and the read
by someone who holds the snapshot's keys is the one case the page tags do not
catch (`verify="pages"` does not narrow that window), so keep the archive
writable by the archiver alone.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet.encryption as pe

from ._native import SnapshotError, SnapshotKeys, snapshot_keys

# How long pyarrow may keep an unwrapped data key in its cache: long enough
# for one scan, short enough that a notebook left open drops it.
KEY_CACHE_LIFETIME = timedelta(minutes=10)
# The environment the CLI (and `snapshot_keys`) configures object stores
# from besides the clouds' own variables: a custom endpoint, say. pyarrow's
# filesystems do not read it.
OBJECT_STORE_PREFIX = "TIDEMARK_OBJECT_STORE_"


class KmsClient(pe.KmsClient):
    """A pyarrow KMS client that unwraps a Tidemark snapshot's data keys.

    It holds a verified `SnapshotKeys`; the master key stays in Rust memory.
    It only reads: `wrap_key` raises, since snapshots are written by the
    archiver alone.

    Use it with pyarrow's `CryptoFactory`::

        keys = tidemark.snapshot_keys(archive, key=..., archiver_pub=...)
        factory = pe.CryptoFactory(lambda config: tidemark.KmsClient(keys))
        props = factory.file_decryption_properties(pe.KmsConnectionConfig())
        table = pq.read_table(keys.parts[0], decryption_properties=props)
    """

    def __init__(self, keys: SnapshotKeys) -> None:
        super().__init__()
        self._keys = keys

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        raise SnapshotError("a Tidemark snapshot's keys are read-only: only the archiver writes snapshots")

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        return self._keys.unwrap_key(wrapped_key, master_key_identifier)


def crypto_factory(keys: SnapshotKeys) -> pe.CryptoFactory:
    """A pyarrow `CryptoFactory` whose KMS client unwraps `keys`' data keys."""
    return pe.CryptoFactory(lambda _config: KmsClient(keys))


def decryption_properties(keys: SnapshotKeys) -> Any:
    """`FileDecryptionProperties` for `pq.read_table` / `pq.ParquetFile`."""
    return crypto_factory(keys).file_decryption_properties(
        pe.KmsConnectionConfig(), pe.DecryptionConfiguration(cache_lifetime=KEY_CACHE_LIFETIME)
    )


def dataset(keys: SnapshotKeys, *, filesystem: pafs.FileSystem | None = None) -> ds.Dataset:
    """The snapshot's parts as one `pyarrow.dataset.Dataset`, decrypted as read."""
    config = ds.ParquetDecryptionConfig(
        crypto_factory(keys),
        pe.KmsConnectionConfig(),
        pe.DecryptionConfiguration(cache_lifetime=KEY_CACHE_LIFETIME),
    )
    fmt = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(decryption_config=config))
    paths, fs = _locate(keys.parts, filesystem)
    return ds.dataset(paths, format=fmt, filesystem=fs)


def _locate(parts: list[str], filesystem: pafs.FileSystem | None) -> tuple[list[str], pafs.FileSystem | None]:
    """Paths as pyarrow's filesystem takes them: local paths as they are;
    object-store URLs through `filesystem`, or the one pyarrow infers from
    the URL (`s3://`, `gs://`)."""
    if not parts or "://" not in parts[0]:
        return parts, filesystem
    scheme = urlparse(parts[0]).scheme
    if filesystem is not None:
        return [p.split("://", 1)[1] for p in parts], filesystem
    custom = sorted(name for name in os.environ if name.startswith(OBJECT_STORE_PREFIX))
    if custom:
        # The parts were verified through those settings; pyarrow would read
        # them from wherever its own configuration points.
        raise SnapshotError(
            f"{', '.join(custom)} configure(s) how the snapshot was verified, which pyarrow's filesystem "
            "does not read: pass filesystem= configured to the same store"
        )
    if scheme not in ("s3", "gs"):
        raise SnapshotError(
            f"pyarrow cannot infer a filesystem for {scheme}:// archives: pass filesystem= "
            "(e.g. pyarrow.fs.AzureFileSystem(account_name=...)) to open_snapshot"
        )
    fs, first = pafs.FileSystem.from_uri(parts[0])
    prefix = parts[0][: len(parts[0]) - len(first)]
    return [p[len(prefix) :] if p.startswith(prefix) else pafs.FileSystem.from_uri(p)[1] for p in parts], fs


def open_snapshot(
    archive: str | os.PathLike[str],
    *,
    key: str | os.PathLike[str],
    archiver_pub: str | os.PathLike[str],
    profile: str = "identified",
    snapshot: str = "latest",
    verify: str = "hash",
    pin: str | os.PathLike[str] | None = None,
    filesystem: pafs.FileSystem | None = None,
) -> ds.Dataset:
    """Verifies a snapshot and returns it as a `pyarrow.dataset.Dataset`
    read in place: the parts stay encrypted where they are and pages are
    decrypted in memory as the dataset is scanned. Nothing is written to disk.

    `archive` is a directory or an `s3://`, `gs://` or `az://` URL (as the
    CLI takes; `filesystem` gives pyarrow's filesystem for it when pyarrow
    cannot infer one); `key` a recipient secret key file the snapshot is
    encrypted to; `archiver_pub` the archiver's public key file; `snapshot`
    an id, or `latest` (the newest whose manifest verifies); `verify` and
    `pin` (a pin file refusing a rolled-back `latest`, as the CLI's `--pin`)
    as for `snapshot_keys`.

    Raises `SnapshotError` when the snapshot does not verify or cannot be
    read, `ConfigError` for an unreadable key file.
    """
    keys = snapshot_keys(
        str(archive),
        key=key,
        archiver_pub=archiver_pub,
        profile=profile,
        snapshot=snapshot,
        verify=verify,
        pin=pin,
    )
    return dataset(keys, filesystem=filesystem)
