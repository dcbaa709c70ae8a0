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

Workload: `--events` edit events over `--patients` patients, each of 1 to 3
ops drawn from the catalog's kinds as the demo's clinicians make them
(register sets of vitals and demographics, set adds and removes, note
appends), every event having observed its patient's current version, each
signed into a DSSE envelope line before any clock starts.
- ours: each envelope line passed to `apply_edit` of its patient's document
  (no registry: signatures unchecked, as below): envelope and base64 decode,
  event decode, catalog rules, CRDT apply, one Python call per event.
- Rust fold: `tidemark.fold` over the same lines in one call: the same Rust
  fold `tidemark fold` runs (decode, rules, apply), in this process, with no
  Python in the loop; its views' conversion to dicts at the end is timed
  too. The same lines through the `tidemark fold` process are printed
  beside it, start and output included.
- ours, bare events: the same events' JSON text, unsigned, to `apply_edit`.
- pycrdt: one Yrs document per patient receives each edit as a remote
  update (a map per register field and per set, an array for notes); the
  updates are encoded before the clock starts, as our envelopes are.
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


def sign_all(binary: str, events: list[tuple[str, str]], workdir: Path) -> list[tuple[str, str]]:
    """Each event signed by its site's key: (patient id, envelope line)."""
    key_dir = workdir / "keys"
    for site in ("site-a", "site-b", "site-c"):
        subprocess.run([binary, "keys", "generate", "--kind", "signing", "--out", str(key_dir), "--name", site,
                        "--source", f"{site}-ehr"], check=True, capture_output=True)
    keys = {f"{s}-ehr": key_dir / f"{s}.key" for s in ("site-a", "site-b", "site-c")}
    return [(pid, tidemark.sign_json(text, key=keys[json.loads(text)["source"]])) for pid, text in events]


def bench_ours(lines: list[tuple[str, str]]) -> tuple[float, dict]:
    docs = {pid: tidemark.DocumentMerge(document_id=pid) for pid, _ in lines}
    t0 = time.perf_counter()
    for pid, line in lines:
        docs[pid].apply_edit(line)
    return time.perf_counter() - t0, docs


def bench_fold_in_process(lines: list[tuple[str, str]]) -> tuple[float, dict]:
    just = [line for _, line in lines]
    t0 = time.perf_counter()
    views = tidemark.fold(just)
    return time.perf_counter() - t0, views


def bench_fold_process(binary: str, lines: list[tuple[str, str]], workdir: Path) -> tuple[float, dict]:
    path = workdir / "envelopes.ndjson"
    path.write_text("".join(line + "\n" for _, line in lines))
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
        lines = sign_all(args.tidemark, events, work)
        ours_s, docs = bench_ours(lines)
        bare_s, _ = bench_ours(events)
        fold_s, fold_views = bench_fold_in_process(lines)
        process_s, views = bench_fold_process(args.tidemark, lines, work)
        mismatched = [p for p, d in docs.items() if d.state_json() != views[p] or d.get_state() != fold_views[p]]
        assert not mismatched, f"{len(mismatched)} documents differ from tidemark fold"
        crdt_s = bench_pycrdt(events)
        snap = bench_snapshot(args.tidemark, args.snapshot_patients, work)

    print(f"tidemark Python package benchmark ({'smoke, not figures' if args.smoke else 'figures'}); "
          f"CPython {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"edits: {len(events):,} events, {ops:,} ops, {args.patients:,} patients")
    print(f"  DocumentMerge.apply_edit (envelope)  {rate(len(events), ours_s)} events  {rate(ops, ours_s)} ops  "
          f"{ours_s / ops * 1e9:,.0f} ns/op")
    print(f"  DocumentMerge.apply_edit (bare event){rate(len(events), bare_s)} events  {rate(ops, bare_s)} ops  "
          f"{bare_s / ops * 1e9:,.0f} ns/op")
    print(f"  Rust fold (tidemark.fold, one call)  {rate(len(events), fold_s)} events  {rate(ops, fold_s)} ops  "
          f"{fold_s / ops * 1e9:,.0f} ns/op")
    print(f"  tidemark fold, the process           {rate(len(events), process_s)} events  {rate(ops, process_s)} ops  "
          f"{process_s / ops * 1e9:,.0f} ns/op")
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
    print(f"  in place / plain speed: {snap['plain'] / snap['ours']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
