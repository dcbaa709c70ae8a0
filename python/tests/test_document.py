"""DocumentMerge against the pipeline's reference, `tidemark fold`."""

from __future__ import annotations

import base64
import json
import random
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidemark
from tidemark import DecodeError, DocumentMerge, EditRefused


def patient_of(envelope: str) -> str:
    return json.loads(base64.b64decode(json.loads(envelope)["payload"]))["patient_id"]


@pytest.fixture(scope="module")
def by_patient(envelopes: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for e in envelopes:
        groups[patient_of(e)].append(e)
    return dict(groups)


def test_every_patient_equals_fold(by_patient, fold_lines):
    assert set(by_patient) == set(fold_lines)
    for patient, mine in by_patient.items():
        doc = DocumentMerge(document_id=patient)
        for e in mine:
            doc.apply_edit(e)
        assert doc.state_json() == fold_lines[patient]
        assert doc.get_state() == json.loads(fold_lines[patient])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_order_and_duplication_equals_fold(by_patient, fold_lines, data):
    patient = data.draw(st.sampled_from(sorted(by_patient, key=lambda p: -len(by_patient[p]))[:20]))
    mine = by_patient[patient]
    order = data.draw(st.permutations(mine))
    again = data.draw(st.lists(st.sampled_from(mine), max_size=5))
    doc = DocumentMerge(document_id=patient)
    for e in [*order, *again]:
        doc.apply_edit(e)
    assert doc.state_json() == fold_lines[patient]


def test_split_replicas_merge_to_the_whole(by_patient, fold_lines):
    rng = random.Random(7)
    for patient in list(by_patient)[:25]:
        left, right = DocumentMerge(document_id=patient), DocumentMerge(document_id=patient)
        for e in by_patient[patient]:
            (left if rng.random() < 0.5 else right).apply_edit(e)
        restored = DocumentMerge.from_bytes(right.to_bytes())
        assert restored == right
        left.merge(restored)
        assert left.state_json() == fold_lines[patient]


def test_registry_verifies_envelopes_and_refuses_bare_events(demo, by_patient):
    patient, mine = next(iter(by_patient.items()))
    doc = DocumentMerge(document_id=patient, registry=demo / "registry.toml")
    doc.apply_edits(mine)
    envelope = json.loads(mine[0])
    bare = base64.b64decode(envelope["payload"])
    with pytest.raises(EditRefused) as refused:
        doc.apply_edit(bare)
    assert refused.value.reason == "malformed"
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(64)).decode()
    with pytest.raises(EditRefused) as refused:
        doc.apply_edits([mine[0], envelope])
    assert (refused.value.reason, refused.value.index) == ("bad_signature", 1)


def test_edits_the_catalog_refuses():
    doc = DocumentMerge(document_id="pt-1")
    cases = [
        ([{"op": "set", "path": "no.such.field", "value": 1}], "unknown_path"),
        ([{"op": "set", "path": "vitals.heart_rate_bpm", "value": "fast"}], "wrong_type"),
        ([{"op": "add", "path": "vitals.heart_rate_bpm", "value": 1}], "op_not_allowed"),
        ([], "no_ops"),
    ]
    for ops, reason in cases:
        with pytest.raises(EditRefused) as refused:
            doc.edit(source="site-a-ehr", author="dr-a", ops=ops)
        assert refused.value.reason == reason, ops
        assert "fast" not in str(refused.value), "a refusal must not quote the value"
    assert doc.get_state()["event_count"] == 0


def test_bad_input_raises_the_documented_errors():
    doc = DocumentMerge(document_id="pt-1")
    for garbage in ["", "{", "not json", b"\xff\xfe", "[]", '[{"payloadType": 1}]', '{"payloadType": 1}']:
        with pytest.raises(EditRefused):
            doc.apply_edit(garbage)
    with pytest.raises(EditRefused) as refused:
        doc.apply_edit('[{"payloadType": "x"}]')
    assert refused.value.reason == "malformed_event", "an array is not an envelope"
    for nested in ['{"ops": [{"payloadType": 1}]}', '{"author": "\\"payloadType\\":", "payloadType": "x"}']:
        with pytest.raises(EditRefused) as refused:
            doc.apply_edit(nested)
        assert refused.value.reason == "malformed_event", nested
    with pytest.raises(TypeError):
        doc.apply_edit(42)
    other = DocumentMerge(document_id="pt-2")
    event = other.edit("site-a-ehr", "a", heart_rate(60))
    with pytest.raises(EditRefused) as refused:
        doc.apply_edit(event)
    assert refused.value.reason == "key_mismatch"
    with pytest.raises(TypeError, match="iterable"):
        doc.apply_edits(json.dumps(event))
    with pytest.raises(ValueError):
        doc.merge(other)
    with pytest.raises(DecodeError):
        DocumentMerge.from_bytes(b"TMDC\x01garbage")
    with pytest.raises(ValueError):
        DocumentMerge(document_id="")
    with pytest.raises(tidemark.ConfigError):
        DocumentMerge(document_id="pt-1", registry="/nonexistent/registry.toml")


def heart_rate(value: int) -> list[dict]:
    return [{"op": "set", "path": "vitals.heart_rate_bpm", "value": value}]


def test_edit_stamps_a_clock_past_everything_seen():
    doc = DocumentMerge(document_id="pt-1")
    seen = DocumentMerge(document_id="pt-1").edit("site-b-ehr", "b", heart_rate(1))
    ahead = dict(seen, hlc={"wall_ms": seen["hlc"]["wall_ms"] + 2_000, "logical": 7})  # a clock 2 s fast
    doc.apply_edit(ahead)
    mine = doc.edit("site-a-ehr", "a", heart_rate(2), doc.version)  # positional, as the issue writes it
    assert (mine["hlc"]["wall_ms"], mine["hlc"]["logical"]) > (ahead["hlc"]["wall_ms"], 7)
    doc.apply_edit(mine)
    assert doc.get_state()["fields"]["vitals.heart_rate_bpm"]["value"] == 2
    assert doc.open_conflicts == 0


def test_edit_is_checked_as_ingest_checks_it():
    # A source whose clock runs a day ahead: the fold takes its edit (replay
    # ignores receive-time skew), but an edit stamped past it would be
    # refused by ingest, so edit() refuses it now.
    doc = DocumentMerge(document_id="pt-1")
    event = DocumentMerge(document_id="pt-1").edit("site-b-ehr", "b", heart_rate(1))
    doc.apply_edit(dict(event, hlc={"wall_ms": event["hlc"]["wall_ms"] + 86_400_000, "logical": 0}))
    with pytest.raises(EditRefused) as refused:
        doc.edit("site-a-ehr", "a", heart_rate(2), doc.version)
    assert refused.value.reason == "hlc_in_future"
    # At the clock's end there is no later time: a clear error, not a crash.
    end = DocumentMerge(document_id="pt-1")
    end.apply_edit(dict(event, hlc={"wall_ms": 2**64 - 1, "logical": 2**32 - 1}))
    with pytest.raises(ValueError, match="maximum"):
        end.edit("site-a-ehr", "a", heart_rate(2))


def test_merging_with_itself_changes_nothing():
    doc = DocumentMerge(document_id="pt-1")
    doc.apply_edit(doc.edit("site-a-ehr", "a", heart_rate(60)))
    before = doc.state_hash
    doc.merge(doc)
    assert doc.state_hash == before and doc == doc
    assert doc.__hash__ is None, "a mutable document must not be hashable"


def test_identifiers_are_checked_up_front():
    for bad in ["", "pt 1", "pt/1", "x" * 65, "pt-é"]:
        with pytest.raises(ValueError, match="not a patient id"):
            DocumentMerge(document_id=bad)


def test_numbers_are_kept_exactly_as_written():
    doc = DocumentMerge(document_id="pt-1")
    with pytest.raises(EditRefused) as refused:
        doc.edit(source="s", author="a", ops='[{"op":"set","path":"vitals.weight_kg","value":0.1000000000000000055511151231257827}]')
    assert refused.value.reason == "inexact_number"


def test_an_envelope_is_one_whatever_its_key_order(by_patient, fold_lines):
    patient, mine = next(iter(by_patient.items()))
    doc = DocumentMerge(document_id=patient)
    for e in mine:
        env = json.loads(e)
        doc.apply_edit(json.dumps({"signatures": env["signatures"], "payload": env["payload"],
                                   "payloadType": env["payloadType"]}, indent=1))
    assert doc.state_json() == fold_lines[patient]


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
PATHS = st.sampled_from(["vitals.heart_rate_bpm", "allergies", "notes", "demographics.birth_date", "nope"])
OPS = st.lists(
    st.fixed_dictionaries({"op": st.sampled_from(["set", "clear", "add", "remove", "append", "x"]),
                           "path": PATHS, "value": JSONISH}),
    max_size=4,
)
DOCUMENTED = (tidemark.TidemarkError, TypeError, ValueError)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.binary(max_size=400), st.text(max_size=400), JSONISH), ops=OPS, flip=st.integers(0, 10_000))
def test_arbitrary_input_raises_only_documented_errors(demo, value, ops, flip):
    # A Rust panic would surface as pyo3's PanicException, a BaseException
    # outside DOCUMENTED: the test fails on it.
    doc = DocumentMerge(document_id="pt-1")
    calls = [
        lambda: doc.apply_edit(value),
        lambda: doc.apply_edits([value, value]),
        lambda: tidemark.fold([value]),
        lambda: tidemark.verify(value, registry=demo / "registry.toml"),
        lambda: doc.edit("site-a-ehr", "dr-a", ops, observed=value if isinstance(value, dict) else None),
        lambda: DocumentMerge.from_bytes(value if isinstance(value, bytes) else b""),
    ]
    good = DocumentMerge(document_id="pt-1")
    good.apply_edit(good.edit("site-a-ehr", "dr-a", [{"op": "append", "path": "notes", "value": {"text": "x"}}]))
    state = bytearray(good.to_bytes())
    state[flip % len(state)] ^= 1 << (flip % 8)
    calls.append(lambda: DocumentMerge.from_bytes(bytes(state)))
    for call in calls:
        try:
            call()
        except DOCUMENTED:
            pass
