"""The benchmark runs (on a tiny input: its figures mean nothing here)."""

import subprocess
import sys
from pathlib import Path

from conftest import _binary

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_python.py"


def test_benchmark_smoke_run():
    done = subprocess.run([sys.executable, str(BENCH), "--tidemark", _binary(), "--smoke"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "pycrdt apply_update" in done.stdout and "in place / plain speed" in done.stdout
