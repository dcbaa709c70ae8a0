"""The Python package's benchmark: `DocumentMerge.apply_edit` beside the Rust
fold and beside pycrdt (Yrs, the CRDT of Jupyter's collaboration), on the
same edits, and `open_snapshot` beside pyarrow reading the same snapshot
decrypted to plain Parquet. Every figure is measured in this run.

    python python/bench/bench_python.py --tidemark target/release/tidemark \
        [--patients 2000] [--events 100000] [--snapshot-patients 40000]

Run it with a release wheel (`pip install ./python`) and a release binary;
docs/benchmarks.md has the figures and the command. `--smoke` runs it on a
tiny input (the test suite does, to keep it working; its figures mean
nothing).

Workload: `--events` edit events over `--patients` patients, each of 1 to 4
ops drawn from the catalog's kinds as the demo's clinicians make them
(register sets of vitals and demographics, set adds and removes, note
appends), every event having observed its patient's current version.
- ours: each event's JSON text passed to `apply_edit` of its patient's
  document (the whole check: decode, catalog rules, apply).
- Rust fold: `tidemark fold` (no keys: signatures unchecked) over the same
  events in DSSE envelopes: decode, catalog rules, apply, in one native process; its
  process start and the printing of the views are timed too, so this is a
  bound the Rust fold beats.
- pycrdt: one Yrs document per patient receives each edit as a remote
  update (a map per register field and per set, an array for notes); the
  updates are encoded before the clock starts, as our JSON text is.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

import tidemark

REGISTERS = [
    ("vitals.heart_rate_bpm", lambda r: r.randint(40, 180)),
    ("vitals.systolic_bp_mmhg", lambda r: r.randint(80, 200)),
    ("vitals.weight_kg", lambda r: round(r.uniform(3, 150), 1)),
    ("demographics.given_name", lambda r: r.choice(["Ada", "Grace", "Ken", "Barbara", "Edsger"])),
    ("demographics.family_name", lambda r: r.choice(["Lovelace", "Hopper", "Thompson", "Liskov"])),
]
SET = "allergies"
LOG = "notes"


def workload(patients: int, events: int, seed: int = 1) -> list[tuple[str, str]]:
    """(patient id, event JSON text), in arrival order."""
    rng = random.Random(seed)
    docs = {f"pt-{i:06d}": tidemark.DocumentMerge(document_id=f"pt-{i:06d}") for i in range(patients)}
    ids = list(docs)
    out = []
    for n in range(events):
        pid = rng.choice(ids)
        doc = docs[pid]
        ops = []
        kinds = rng.sample(["register", "register", "set", "log"], rng.randint(1, 3))
        used = set()
        for kind in kinds:
            if kind == "register":
                path, value = rng.choice(REGISTERS)
                if path in used:
                    continue
                used.add(path)
                ops.append({"op": "set", "path": path, "value": value(rng)})
            elif kind == "set" and SET not in used:
                used.add(SET)
                op = "add" if rng.random() < 0.8 else "remove"
                ops.append({"op": op, "path": SET, "value": f"rxnorm:{rng.randint(1, 40)}"})
            elif kind == "log" and LOG not in used:
                used.add(LOG)
                ops.append({"op": "append", "path": LOG, "value": {"text": f"note {n}: stable, reviewed."}})
        if not ops:
            ops.append({"op": "set", "path": "vitals.heart_rate_bpm", "value": 70})
        source = rng.choice(["site-a-ehr", "site-b-ehr", "site-c-ehr"])
        event = doc.edit(source=source, author=f"clin-{rng.randint(0, 11)}", observed=doc.version, ops=ops)
        text = json.dumps(event, separators=(",", ":"))
        doc.apply_edit(text)
        out.append((pid, text))
    return out


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def bench_ours(events: list[tuple[str, str]]) -> tuple[float, dict]:
    docs = {pid: tidemark.DocumentMerge(document_id=pid) for pid, _ in events}
    t0 = time.perf_counter()
    for pid, text in events:
        docs[pid].apply_edit(text)
    return time.perf_counter() - t0, docs


def bench_fold(binary: str, events: list[tuple[str, str]], workdir: Path) -> tuple[float, dict]:
    key_dir = workdir / "keys"
    for site in ("site-a", "site-b", "site-c"):
        subprocess.run([binary, "keys", "generate", "--kind", "signing", "--out", str(key_dir), "--name", site,
                        "--source", f"{site}-ehr"], check=True, capture_output=True)
    path = workdir / "envelopes.ndjson"
    with open(path, "w") as f:
        for _, text in events:
            site = json.loads(text)["source"].removesuffix("-ehr")
            f.write(tidemark.sign_json(text, key=key_dir / f"{site}.key") + "\n")
    t0 = time.perf_counter()
    done = subprocess.run([binary, "fold", str(path)], check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    views = {json.loads(line)["patient_id"]: line for line in done.stdout.decode().splitlines()}
    return seconds, views


def bench_pycrdt(events: list[tuple[str, str]]) -> float:
    import pycrdt

    senders: dict[str, pycrdt.Doc] = {}
    updates = []
    for pid, text in events:
        doc = senders.get(pid)
        if doc is None:
            doc = senders[pid] = pycrdt.Doc()
            doc["fields"] = pycrdt.Map()
            doc["notes"] = pycrdt.Array()
        fields, notes = doc["fields"], doc["notes"]
        before = doc.get_state()
        with doc.transaction():
            for op in json.loads(text)["ops"]:
                if op["op"] == "set":
                    fields[op["path"]] = op["value"]
                elif op["op"] in ("add", "remove"):
                    if SET not in fields:
                        fields[SET] = pycrdt.Map()
                    if op["op"] == "add":
                        fields[SET][op["value"]] = True
                    elif op["value"] in fields[SET]:
                        del fields[SET][op["value"]]
                else:
                    notes.append(op["value"]["text"])
        updates.append((pid, doc.get_update(before)))
    receivers = {pid: pycrdt.Doc() for pid in senders}
    t0 = time.perf_counter()
    for pid, update in updates:
        receivers[pid].apply_update(update)
    seconds = time.perf_counter() - t0
    for pid, doc in list(receivers.items())[:50]:
        assert doc.get_state() == senders[pid].get_state(), "pycrdt replicas diverged"
    return seconds


def bench_snapshot(binary: str, patients: int, workdir: Path) -> dict[str, float]:
    demo = workdir / "demo"
    # The demo's embedded Kafka keeps about 1,500 events a partition: 64
    # partitions hold 1.5 events per patient of the default 40,000.
    events = max(patients * 3 // 2, 600)
    subprocess.run([binary, "demo", "--dir", str(demo), "--patients", str(patients), "--rate", "6000",
                    "--duration", f"{events / 6000:.2f}", "--partitions", "64"], check=True, capture_output=True)
    keys = dict(key=demo / "keys" / "analytics.key", archiver_pub=demo / "keys" / "archiver.pub")
    plain = workdir / "plain"
    subprocess.run([binary, "snapshot", "decrypt", "--archive", str(demo / "archive"), "--archiver-pub",
                    str(keys["archiver_pub"]), "--key", str(keys["key"]), "--out", str(plain), "latest"],
                   check=True, capture_output=True)
    best = {"open": 1e9, "ours": 1e9, "plain": 1e9}
    rows = 0
    for _ in range(3):
        t0 = time.perf_counter()
        dataset = tidemark.open_snapshot(demo / "archive", **keys)
        t1 = time.perf_counter()
        table = dataset.to_table()
        t2 = time.perf_counter()
        best["open"] = min(best["open"], t1 - t0)
        best["ours"] = min(best["ours"], t2 - t0)
        t0 = time.perf_counter()
        plain_table = pq.read_table(plain)
        best["plain"] = min(best["plain"], time.perf_counter() - t0)
        rows = table.num_rows
        assert rows == plain_table.num_rows
    best["rows"] = rows
    best["bytes"] = sum(p.stat().st_size for p in (demo / "archive").rglob("part-*.parquet"))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tidemark", required=True, help="the tidemark binary (release for figures)")
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--snapshot-patients", type=int, default=40_000)
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.smoke:
        args.patients, args.events, args.snapshot_patients = 20, 300, 200

    events = workload(args.patients, args.events)
    ops = sum(len(json.loads(t)["ops"]) for _, t in events)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours_s, docs = bench_ours(events)
        fold_s, views = bench_fold(args.tidemark, events, work)
        mismatched = [p for p, d in docs.items() if d.state_json() != views[p]]
        assert not mismatched, f"{len(mismatched)} documents differ from tidemark fold"
        crdt_s = bench_pycrdt(events)
        snap = bench_snapshot(args.tidemark, args.snapshot_patients, work)

    print(f"tidemark Python package benchmark ({'smoke, not figures' if args.smoke else 'figures'}); "
          f"CPython {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"edits: {len(events):,} events, {ops:,} ops, {args.patients:,} patients")
    print(f"  DocumentMerge.apply_edit (JSON text) {rate(len(events), ours_s)} events  {rate(ops, ours_s)} ops  "
          f"{ours_s / ops * 1e9:,.0f} ns/op")
    print(f"  Rust fold (tidemark fold, bound)     {rate(len(events), fold_s)} events  {rate(ops, fold_s)} ops  "
          f"{fold_s / ops * 1e9:,.0f} ns/op")
    print(f"  pycrdt apply_update                  {rate(len(events), crdt_s)} events  {rate(ops, crdt_s)} ops  "
          f"{crdt_s / ops * 1e9:,.0f} ns/op")
    print(f"  ours per op / Rust fold per op: {ours_s / fold_s:.2f}x (goal <= 2)   "
          f"ours / pycrdt speed: {crdt_s / ours_s:.1f}x (goal >= 10)")
    print(f"snapshot: {snap['rows']:,} rows, {snap['bytes'] / 2**20:,.1f} MiB of encrypted parts (best of 3)")
    print(f"  open_snapshot (verify manifest, hash parts, unwrap keys)  {snap['open'] * 1e3:,.1f} ms")
    print(f"  open_snapshot + to_table                                  {snap['ours'] * 1e3:,.1f} ms  "
          f"{snap['rows'] / snap['ours']:,.0f} rows/s")
    print(f"  pyarrow read_table of the same, decrypted to plain        {snap['plain'] * 1e3:,.1f} ms  "
          f"{snap['rows'] / snap['plain']:,.0f} rows/s")
    print(f"  plain / in place speed: {snap['plain'] / snap['ours']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
