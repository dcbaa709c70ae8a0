"""Type stubs of the Rust extension (python/src). Public names are re-exported
by `tidemark`; see its docstrings and python/README.md."""

import os
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

__version__: str

JsonInput = dict[str, Any] | str | bytes
PathLike = str | os.PathLike[str]

class TidemarkError(Exception):
    """The base of every error Tidemark raises for bad input or a failed check."""

class EditRefused(TidemarkError):
    """An edit or envelope the pipeline would refuse."""

    reason: str
    """The stable reason code (docs/events.md), e.g. `bad_signature`, `unknown_path`."""
    index: int | None
    """The refused input's position when several were given, else None."""

class ConfigError(TidemarkError):
    """A key file, key registry or catalog cannot be read or is invalid."""

class SnapshotError(TidemarkError):
    """A snapshot cannot be found, verified or opened."""

class DecodeError(TidemarkError):
    """Bytes that are not a document's canonical state encoding."""

class Registry:
    """A key registry (`[[key]]` TOML), loaded and checked once."""

    def __init__(self, path: PathLike) -> None: ...
    @property
    def key_ids(self) -> list[str]:
        """The ids of the registered keys, sorted."""

class DocumentMerge:
    """One patient's record as a CRDT (see python/README.md)."""

    def __init__(
        self,
        document_id: str,
        *,
        registry: Registry | PathLike | None = None,
        catalog: PathLike | None = None,
    ) -> None: ...
    def apply_edit(self, edit: JsonInput) -> int:
        """Applies an event or a signed envelope; returns the change of open conflicts."""
    def apply_edits(self, edits: Iterable[JsonInput]) -> int:
        """Applies many (signatures verified as a batch); stops at the first refused."""
    def get_state(self) -> dict[str, Any]:
        """The view: exactly the JSON object `tidemark fold` prints for the patient."""
    def state_json(self) -> str:
        """The view as the line `tidemark fold` prints."""
    def merge(self, other: DocumentMerge) -> None:
        """Merges another replica of the same patient's document into this one."""
    @property
    def conflicts(self) -> list[dict[str, Any]]:
        """The register fields in conflict, each its view with its `path`."""
    @property
    def open_conflicts(self) -> int:
        """How many fields hold a conflict."""
    @property
    def version(self) -> dict[str, dict[str, int]]:
        """The version vector, to send as an edit's `observed`."""
    @property
    def document_id(self) -> str:
        """The patient id."""
    @property
    def state_hash(self) -> str:
        """The canonical state hash, as the state topic carries it."""
    def to_bytes(self) -> bytes:
        """The canonical state encoding."""
    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        registry: Registry | PathLike | None = None,
        catalog: PathLike | None = None,
    ) -> DocumentMerge:
        """A document from `to_bytes` output."""
    def edit(
        self,
        source: str,
        author: str,
        ops: list[dict[str, Any]] | tuple[dict[str, Any], ...] | str | bytes,
        observed: dict[str, Any] | str | bytes | None = None,
        *,
        audience: str | None = None,
    ) -> dict[str, Any]:
        """A new, catalog-checked edit event stamped by the document's clock (not applied)."""
    def __eq__(self, other: object) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

class SnapshotKeys:
    """A verified snapshot and its master key (held in Rust memory)."""

    @property
    def snapshot(self) -> str: ...
    @property
    def profile(self) -> str: ...
    @property
    def master_key_id(self) -> str: ...
    @property
    def parts(self) -> list[str]:
        """Each part's location, in the manifest's order."""
    @property
    def rows(self) -> int: ...
    @property
    def created_at(self) -> str: ...
    @property
    def pages_checked(self) -> bool: ...
    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        """A part's data key, unwrapped from its footer's key material."""

def sign(event: JsonInput, *, key: PathLike) -> dict[str, Any]:
    """Signs an edit event: the DSSE envelope `tidemark sign` writes, as a dict."""

def sign_json(event: JsonInput, *, key: PathLike) -> str:
    """As `sign`, the envelope's JSON text byte for byte as `tidemark sign` writes it."""

def verify(
    envelope: JsonInput,
    *,
    registry: Registry | PathLike,
    catalog: PathLike | None = None,
) -> dict[str, Any]:
    """Verifies an envelope as ingest does; returns its event."""

def fold(
    envelopes: Iterable[JsonInput],
    *,
    registry: Registry | PathLike | None = None,
    catalog: PathLike | None = None,
    errors: Literal["raise", "skip"] = "raise",
) -> dict[str, dict[str, Any]]:
    """`tidemark fold` as a function: {patient_id: view}, in patient id order."""

def snapshot_keys(
    archive: PathLike,
    *,
    key: PathLike,
    archiver_pub: PathLike,
    profile: Literal["identified", "deidentified"] = "identified",
    snapshot: str = "latest",
    verify: Literal["hash", "pages"] = "hash",
    pin: PathLike | None = None,
) -> SnapshotKeys:
    """Verifies a snapshot and unwraps its master key with a recipient key."""
