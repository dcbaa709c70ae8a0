"""open_snapshot on a real pipeline snapshot, against `tidemark snapshot decrypt`."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
import pytest

import tidemark
from tidemark import SnapshotError

from conftest import run


@pytest.fixture(scope="module")
def opened(demo: Path) -> dict:
    return dict(key=demo / "keys" / "analytics.key", archiver_pub=demo / "keys" / "archiver.pub")


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")}


def test_one_row_per_patient_equal_to_decrypt(demo, opened, fold_lines, tmp_path):
    before = files_under(demo)
    dataset = tidemark.open_snapshot(demo / "archive", **opened)
    table = dataset.to_table().sort_by("patient_id")
    assert files_under(demo) == before, "reading in place must write nothing"
    ids = table.column("patient_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(fold_lines)
    assert set(ids) == set(fold_lines)
    out = tmp_path / "plain"
    run("snapshot", "decrypt", "--archive", str(demo / "archive"), "--archiver-pub", str(opened["archiver_pub"]),
        "--key", str(opened["key"]), "--out", str(out), "latest")
    plain = pq.read_table(out).sort_by("patient_id")
    assert table.equals(plain.select(table.column_names))


def test_snapshot_keys_and_kms_client(demo, opened):
    keys = tidemark.snapshot_keys(str(demo / "archive"), **opened, verify="pages")
    assert keys.pages_checked and keys.profile == "identified"
    assert keys.rows == sum(pq.ParquetFile(p, decryption_properties=_props(keys)).metadata.num_rows for p in keys.parts)
    helper = tidemark.snapshots.decryption_properties(keys)
    assert pq.read_table(keys.parts[0], decryption_properties=helper).num_rows > 0
    named = tidemark.open_snapshot(demo / "archive", snapshot=keys.snapshot, **opened)
    assert named.count_rows() == keys.rows
    with pytest.raises(SnapshotError, match="master key"):
        keys.unwrap_key("AAAA", "tidemark.snap-another")
    with pytest.raises(SnapshotError):
        tidemark.KmsClient(keys).wrap_key(b"0" * 32, keys.master_key_id)


def _props(keys):
    factory = pe.CryptoFactory(lambda config: tidemark.KmsClient(keys))
    return factory.file_decryption_properties(pe.KmsConnectionConfig())


def test_engines_query_the_dataset(demo, opened):
    dataset = tidemark.open_snapshot(demo / "archive", **opened)
    fast = dataset.to_table(filter=ds.field("vitals_heart_rate_bpm") > 100, columns=["patient_id"])
    count = duckdb.sql("SELECT count(*) FROM dataset WHERE vitals_heart_rate_bpm > 100").fetchall()[0][0]
    assert count == fast.num_rows


def test_a_profile_without_snapshots(demo, opened):
    # The demo archives the identified profile only.
    with pytest.raises(SnapshotError, match="deidentified"):
        tidemark.open_snapshot(demo / "archive", profile="deidentified", **opened)


def test_refusals(demo, opened, tmp_path):
    run("keys", "generate", "--kind", "recipient", "--out", str(tmp_path), "--name", "stranger")
    with pytest.raises(SnapshotError):
        tidemark.open_snapshot(demo / "archive", key=tmp_path / "stranger.key", archiver_pub=opened["archiver_pub"])
    run("keys", "generate", "--kind", "archiver", "--out", str(tmp_path), "--name", "impostor")
    with pytest.raises(SnapshotError, match="verif"):
        tidemark.open_snapshot(demo / "archive", key=opened["key"], archiver_pub=tmp_path / "impostor.pub")
    with pytest.raises(tidemark.ConfigError):
        tidemark.open_snapshot(demo / "archive", key=tmp_path / "missing.key", archiver_pub=opened["archiver_pub"])
    with pytest.raises(ValueError):
        tidemark.open_snapshot(demo / "archive", verify="none", **opened)
    with pytest.raises(ValueError):
        tidemark.open_snapshot(demo / "archive", profile="everything", **opened)
    with pytest.raises(SnapshotError, match="no such directory"):
        tidemark.open_snapshot(tmp_path / "no-archive", **opened)
    assert not (tmp_path / "no-archive").exists(), "a reader must not create the archive"


def test_a_tampered_part_is_refused_before_pyarrow_reads_it(demo, opened, tmp_path):
    archive = tmp_path / "archive"
    shutil.copytree(demo / "archive", archive)
    part = sorted(archive.glob("identified/*/part-*.parquet"))[0]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match=part.name):
        tidemark.open_snapshot(archive, **opened)


def test_pin_refuses_a_rollback(demo, opened, tmp_path):
    archive = tmp_path / "archive"
    shutil.copytree(demo / "archive", archive)
    pin = tmp_path / "archive.pin"
    tidemark.open_snapshot(archive, pin=pin, **opened)
    assert pin.exists()
    with pytest.raises(ValueError, match="latest"):
        tidemark.open_snapshot(archive, pin=pin, snapshot="some-id", **opened)
    # Forge a pin that saw a newer snapshot: the archive now looks rolled back.
    text = pin.read_text()
    import json as _json
    data = _json.loads(text)
    data["profiles"]["identified"]["sequence"] += 1
    pin.write_text(_json.dumps(data))
    with pytest.raises(SnapshotError, match="rollback"):
        tidemark.open_snapshot(archive, pin=pin, **opened)


def test_a_directory_whose_manifest_does_not_verify_is_skipped_with_a_warning(demo, opened, tmp_path):
    archive = tmp_path / "archive"
    shutil.copytree(demo / "archive", archive)
    bogus = archive / "identified" / "01a2ffff-0000-7000-8000-000000000000"
    bogus.mkdir()
    (bogus / "manifest.dsse.json").write_text('{"payloadType": "x", "payload": "", "signatures": []}')
    with pytest.warns(RuntimeWarning, match="01a2ffff-0000-7000-8000-000000000000.*does not verify"):
        dataset = tidemark.open_snapshot(archive, **opened)
    assert dataset.count_rows() > 0


def test_remote_settings_pyarrow_cannot_see_are_refused(monkeypatch):
    from tidemark import snapshots

    monkeypatch.setenv("TIDEMARK_OBJECT_STORE_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(SnapshotError, match="filesystem="):
        snapshots._locate(["s3://bucket/identified/x/part-00000.parquet"], None)
    monkeypatch.delenv("TIDEMARK_OBJECT_STORE_ENDPOINT")
    with pytest.raises(SnapshotError, match="az://"):
        snapshots._locate(["az://container/identified/x/part-00000.parquet"], None)
    paths, fs = snapshots._locate(["s3://bucket/p/identified/x/part-00000.parquet"], pafs.LocalFileSystem())
    assert paths == ["bucket/p/identified/x/part-00000.parquet"]
