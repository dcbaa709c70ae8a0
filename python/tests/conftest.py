"""Fixtures: the `tidemark` binary the package is checked against, and one
real pipeline run (`tidemark demo` on its embedded Kafka) whose keys,
accepted envelopes and snapshot archive the tests read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import settings

# No example database in the working tree: CI runs a fresh clone anyway.
settings.register_profile("tidemark", database=None)
settings.load_profile("tidemark")


def _binary() -> str:
    found = os.environ.get("TIDEMARK_BIN") or shutil.which("tidemark")
    if not found:
        pytest.fail("set TIDEMARK_BIN to the tidemark binary (scripts/python-test does)")
    return found


def run(*args: str, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Runs the tidemark binary; fails the test with its stderr if `check` and it fails."""
    done = subprocess.run([_binary(), *args], input=stdin, capture_output=True, timeout=300)
    if check and done.returncode != 0:
        pytest.fail(f"tidemark {' '.join(args)} exited {done.returncode}: {done.stderr.decode(errors='replace')}")
    return done


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding `tidemark-demo/`, as `scripts/demo` leaves it."""
    root = tmp_path_factory.mktemp("demo")
    run(
        "demo", "--dir", str(root / "tidemark-demo"), "--duration", "3", "--patients", "250",
        "--rate", "250", "--partitions", "4",
    )
    return root


@pytest.fixture(scope="session")
def demo(demo_root: Path) -> Path:
    return demo_root / "tidemark-demo"


@pytest.fixture(scope="session")
def envelopes(demo: Path) -> list[str]:
    lines = (demo / "envelopes.ndjson").read_text().splitlines()
    assert len(lines) > 100, "the demo accepted too few edits to test with"
    return lines


@pytest.fixture(scope="session")
def fold_lines(demo: Path) -> dict[str, str]:
    """`tidemark fold --keys` of the demo's envelopes: patient id -> the exact line."""
    out = run("fold", "--keys", str(demo / "registry.toml"), str(demo / "envelopes.ndjson")).stdout.decode()
    return {json.loads(line)["patient_id"]: line for line in out.splitlines()}
