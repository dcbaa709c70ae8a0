"""sign, verify and fold against `tidemark sign`, `verify` and `fold`."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import tidemark
from tidemark import ConfigError, DocumentMerge, EditRefused

from conftest import run


@pytest.fixture()
def event() -> dict:
    doc = DocumentMerge(document_id="pt-000001")
    return doc.edit(
        source="site-a-ehr", author="dr-ames", observed={},
        ops=[{"op": "set", "path": "vitals.heart_rate_bpm", "value": 71},
             {"op": "add", "path": "allergies", "value": "rxnorm:723"}],
    )


def test_sign_is_byte_for_byte_the_cli(demo, event):
    text = json.dumps(event, separators=(",", ":"))
    ours = tidemark.sign_json(text, key=demo / "keys" / "site-a.key")
    cli = run("sign", "--key", str(demo / "keys" / "site-a.key"), "-", stdin=text.encode() + b"\n").stdout.decode()
    assert cli == ours + "\n"
    # A dict is serialized compactly: the same bytes as the text above.
    assert tidemark.sign_json(event, key=demo / "keys" / "site-a.key") == ours
    assert tidemark.sign(event, key=demo / "keys" / "site-a.key") == json.loads(ours)


def test_sign_verifies_with_the_cli_and_the_reverse(demo, event, tmp_path):
    registry = str(demo / "registry.toml")
    ours = tidemark.sign_json(event, key=demo / "keys" / "site-a.key")
    result = run("verify", "--keys", registry, "-", stdin=ours.encode() + b"\n").stdout.decode()
    assert result == f"line 1: ok {event['event_id']}\n"
    theirs = run("sign", "--key", str(demo / "keys" / "site-a.key"), "-",
                 stdin=json.dumps(event).encode() + b"\n").stdout.decode().strip()
    assert tidemark.verify(theirs, registry=registry) == event
    assert tidemark.verify(theirs.encode(), registry=tidemark.Registry(registry)) == event


def test_verify_refuses_what_ingest_refuses(demo, event):
    registry = tidemark.Registry(demo / "registry.toml")
    envelope = tidemark.sign(event, key=demo / "keys" / "site-a.key")
    tampered = dict(envelope, payload=envelope["payload"].replace("A", "B", 1))
    cases = {
        "bad_signature": tampered,
        "unknown_key": dict(envelope, signatures=[{"keyid": "nobody", "sig": envelope["signatures"][0]["sig"]}]),
        "malformed": "{not json",
        "wrong_payload_type": dict(envelope, payloadType="text/plain"),
    }
    for reason, bad in cases.items():
        with pytest.raises(EditRefused) as refused:
            tidemark.verify(bad, registry=registry)
        assert refused.value.reason == reason
    # site-b's key signing a site-a event: refused before signing.
    with pytest.raises(EditRefused) as refused:
        tidemark.sign(event, key=demo / "keys" / "site-b.key")
    assert refused.value.reason == "source_mismatch"


def test_key_files_are_checked(demo, event, tmp_path):
    loose = tmp_path / "loose.key"
    shutil.copy(demo / "keys" / "site-a.key", loose)
    os.chmod(loose, 0o644)
    with pytest.raises(ConfigError, match="loose.key"):
        tidemark.sign(event, key=loose)
    with pytest.raises(ConfigError):
        tidemark.sign(event, key=tmp_path / "missing.key")
    bad_registry = tmp_path / "registry.toml"
    bad_registry.write_text('[[key]]\nid = "x"\n')
    with pytest.raises(ConfigError, match="registry"):
        tidemark.Registry(bad_registry)
    with pytest.raises(TypeError):
        tidemark.verify("{}", registry=42)


def test_fold_equals_the_cli(demo, envelopes, fold_lines):
    views = tidemark.fold(envelopes, registry=demo / "registry.toml")
    assert list(views) == sorted(fold_lines)
    assert views == {p: json.loads(line) for p, line in fold_lines.items()}
    assert tidemark.fold(reversed(envelopes)) == views


def test_fold_raises_or_skips(envelopes, fold_lines):
    inputs = [envelopes[0], "garbage", *envelopes[1:]]
    with pytest.raises(EditRefused) as refused:
        tidemark.fold(inputs)
    assert (refused.value.reason, refused.value.index) == ("malformed", 1)
    with pytest.warns(RuntimeWarning, match=r"skipped 1 refused envelopes \(1: malformed\)"):
        assert tidemark.fold(inputs, errors="skip") == {p: json.loads(v) for p, v in fold_lines.items()}
    with pytest.raises(ValueError):
        tidemark.fold(inputs, errors="ignore")


def test_sign_takes_lines_and_non_ascii_as_the_cli(demo):
    doc = DocumentMerge(document_id="pt-000002")
    event = doc.edit("site-a-ehr", "dr-mueller", [{"op": "set", "path": "demographics.family_name", "value": "Müller"}])
    line = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    key = demo / "keys" / "site-a.key"
    cli = run("sign", "--key", str(key), "-", stdin=line.encode() + b"\r\n").stdout.decode()
    assert tidemark.sign_json(event, key=key) + "\n" == cli
    assert tidemark.sign_json(line + "\n", key=key) + "\n" == cli
    assert tidemark.sign_json((line + "\r\n").encode(), key=key) + "\n" == cli


def test_fold_reads_an_ndjson_file_as_the_cli(demo, fold_lines, tmp_path):
    path = tmp_path / "with-blanks.ndjson"
    path.write_text("\n" + (demo / "envelopes.ndjson").read_text() + "\n\n")
    with open(path) as f:
        assert tidemark.fold(f) == {p: json.loads(v) for p, v in fold_lines.items()}
    with pytest.raises(TypeError, match="envelopes must be an iterable"):
        tidemark.fold(path.read_text())
    with pytest.raises(TypeError):
        tidemark.fold(path.read_bytes())
