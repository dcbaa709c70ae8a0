"""Every Python example of python/README.md, and of the repository README,
run as written in a directory holding what `scripts/demo` writes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PACKAGE_README = HERE.parent / "README.md"
ROOT_README = HERE.parent.parent / "README.md"


def blocks(readme: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)


def run_block(code: str, name: str, cwd: Path) -> None:
    before = set(cwd.rglob("*"))
    exec(compile(code, name, "exec"), {"__name__": "__readme__"})
    written = set(cwd.rglob("*")) - before
    assert not written, f"{name} wrote files: {sorted(map(str, written))}"


def test_the_readmes_have_examples():
    assert len(blocks(PACKAGE_README)) >= 4
    assert len(blocks(ROOT_README)) >= 1


@pytest.mark.parametrize("index", range(len(blocks(PACKAGE_README))))
def test_package_readme_example(index, demo_root, monkeypatch):
    monkeypatch.chdir(demo_root)
    run_block(blocks(PACKAGE_README)[index], f"{PACKAGE_README}:example-{index + 1}", demo_root)
    assert os.getcwd() == str(demo_root)


@pytest.mark.parametrize("index", range(len(blocks(ROOT_README))))
def test_root_readme_example(index, demo, tmp_path, monkeypatch):
    # The repository README writes keys/NAME.key and ARCHIVE as its shell
    # examples do: here they are the demo's.
    (tmp_path / "keys").symlink_to(demo / "keys")
    monkeypatch.chdir(tmp_path)
    code = blocks(ROOT_README)[index].replace('"ARCHIVE"', repr(str(demo / "archive")))
    run_block(code, f"{ROOT_README}:example-{index + 1}", tmp_path)
