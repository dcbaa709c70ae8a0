"""Tidemark for Python: the pipeline's merge layer, DSSE signing and
encrypted Parquet snapshots, built from the same Rust crates as the
`tidemark` binary, so Python gets the pipeline's exact semantics.

- `DocumentMerge`: one patient's CRDT document (`apply_edit`, `get_state`,
  `merge`, `conflicts`, `version`, `edit`, `to_bytes` / `from_bytes`).
- `sign`, `sign_json`, `verify`, `fold`: `tidemark sign`, `verify` and `fold`
  as functions; `Registry` loads a key registry once.
- `open_snapshot`: a verified snapshot as a `pyarrow.dataset.Dataset`, read
  in place (the parts stay encrypted on disk); `snapshot_keys` and
  `KmsClient` for pyarrow's own encryption API.

Every refusal is a `TidemarkError`; an edit the pipeline would refuse raises
`EditRefused` with the pipeline's stable reason code as `reason`.
"""

from typing import TYPE_CHECKING

from ._native import (
    ConfigError,
    DecodeError,
    DocumentMerge,
    EditRefused,
    Registry,
    SnapshotError,
    SnapshotKeys,
    TidemarkError,
    __version__,
    fold,
    sign,
    sign_json,
    snapshot_keys,
    verify,
)
if TYPE_CHECKING:
    from .snapshots import KmsClient, open_snapshot

__all__ = [
    "ConfigError",
    "DecodeError",
    "DocumentMerge",
    "EditRefused",
    "KmsClient",
    "Registry",
    "SnapshotError",
    "SnapshotKeys",
    "TidemarkError",
    "__version__",
    "fold",
    "open_snapshot",
    "sign",
    "sign_json",
    "snapshot_keys",
    "verify",
]


def __getattr__(name: str):
    # The snapshot readers need pyarrow; importing them only when asked keeps
    # `import tidemark` light for those who merge and sign.
    if name in ("KmsClient", "open_snapshot"):
        from . import snapshots

        return getattr(snapshots, name)
    raise AttributeError(f"module 'tidemark' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
