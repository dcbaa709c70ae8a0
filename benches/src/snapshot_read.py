"""Times pyarrow and DuckDB reading a snapshot's parts, plain beside
encrypted (Parquet Modular Encryption), for benches/benches/archive.rs.

Reads a JSON config on stdin (the part files of each variant, the keys a
recipient recovers, the runs) and prints one JSON object: for each reader its
version and the minimum of `runs` timings, in seconds, of each read; or
`skip` (not installed) or `error` (it failed), so the bench can print the
other readers' rows. Each encrypted read is checked against the plain one.
"""

import base64
import json
import sys
import time


def best(runs, read):
    """The fastest of `runs` calls of `read`, and what the last one returned."""
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = read()
        times.append(time.perf_counter() - start)
    return min(times), out


def sql_string(s):
    return "'" + s.replace("'", "''") + "'"


def sql_list(files):
    return "[" + ", ".join(sql_string(f) for f in files) + "]"


def ident(s):
    return '"' + s.replace('"', '""') + '"'


def pyarrow_reads(cfg):
    import pyarrow
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import pyarrow.parquet.encryption as pe

    runs, files = cfg["runs"], cfg["files"]
    out = {"version": pyarrow.__version__}
    pq.read_table(files["plain"])  # untimed: the first read starts pyarrow's thread pools
    out["plain"], plain = best(runs, lambda: pq.read_table(files["plain"]))
    out["one_page"], one_page = best(runs, lambda: pq.read_table(files["one_page"]))
    data_key = base64.b64decode(cfg["data_key"])
    out["data_key"], table = best(
        runs,
        lambda: pq.read_table(files["archived"], decryption_properties=pe.create_decryption_properties(data_key)),
    )
    # Parts are cut by a hash of the patient, so their order is not the
    # patients' order: compare sorted.
    key = [("patient_id", "ascending")]
    if not table.sort_by(key).equals(plain.sort_by(key)) or not one_page.sort_by(key).equals(plain.sort_by(key)):
        raise AssertionError("the encrypted or one-page parts do not hold the plain parts' rows")
    out["rows"] = plain.num_rows
    lookup = [("patient_id", "=", cfg["patient_id"])]
    out["lookup_plain"], hit = best(runs, lambda: pq.read_table(files["plain"], filters=lookup))
    out["lookup_one_page"], hit1 = best(runs, lambda: pq.read_table(files["one_page"], filters=lookup))
    if hit.num_rows != 1 or hit1.num_rows != 1:
        raise AssertionError(f"the point lookup found {hit.num_rows} and {hit1.num_rows} rows, not 1")
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as e:
        out["kms_skip"] = f"the `cryptography` package is missing ({e}): pip install cryptography"
        return out
    masters = {cfg["master_key_id"]: base64.b64decode(cfg["master_key"])}

    class KmsClient(pe.KmsClient):
        """`tidemark snapshot keys --format pyarrow`'s client."""

        def __init__(self, config):
            pe.KmsClient.__init__(self)

        def wrap_key(self, key_bytes, master_key_identifier):
            raise NotImplementedError("reading only")

        def unwrap_key(self, wrapped_key, master_key_identifier):
            raw = base64.b64decode(wrapped_key)
            aad = master_key_identifier.encode()
            return AESGCM(masters[master_key_identifier]).decrypt(raw[:12], raw[12:], aad)

    def kms_read():
        # A new factory each time: its key cache would otherwise skip the
        # unwrap from the second run on.
        factory = pe.CryptoFactory(KmsClient)
        props = factory.file_decryption_properties(pe.KmsConnectionConfig(), pe.DecryptionConfiguration())
        return pq.read_table(files["archived"], decryption_properties=props)

    out["kms"], table = best(runs, kms_read)
    if table.num_rows != plain.num_rows:
        raise AssertionError("the KMS read holds another number of rows")
    return out


def duckdb_reads(cfg):
    import duckdb

    runs, files, flat = cfg["runs"], cfg["files"], cfg["flat_columns"]
    out = {"version": duckdb.__version__}
    encrypted = f"{sql_list(files['archived'])}, encryption_config = {{footer_key: 'bench'}}"
    # The connection `tidemark snapshot keys --format duckdb` prints: DuckDB's
    # filter pushdown fails on encrypted files.
    con = duckdb.connect()
    con.execute("SET disabled_optimizers = 'filter_pushdown'")
    con.execute(f"PRAGMA add_parquet_key('bench', {sql_string(cfg['data_key'])})")
    agg = f"SELECT count(*), sum({ident(cfg['sum_column'])}) FROM read_parquet"
    con.execute(f"{agg}({sql_list(files['plain'])})").fetchall()  # untimed: the first query starts DuckDB
    out["scan_plain"], a = best(runs, lambda: con.execute(f"{agg}({sql_list(files['plain'])})").fetchall())
    out["scan_encrypted"], b = best(runs, lambda: con.execute(f"{agg}({encrypted})").fetchall())
    if a != b:
        raise AssertionError(f"DuckDB's aggregate differs: plain {a}, encrypted {b}")
    # As text: DuckDB hands timestamps with a time zone to Python through
    # pytz, which it does not depend on; one row, so the cast costs nothing.
    cols = ", ".join(f"CAST({ident(c)} AS VARCHAR)" for c in flat)
    where = f"WHERE patient_id = {sql_string(cfg['patient_id'])}"
    out["lookup_encrypted"], c = best(
        runs, lambda: con.execute(f"SELECT {cols} FROM read_parquet({encrypted}) {where}").fetchall()
    )
    # The same lookup on the plain parts in this connection: what turning
    # filter pushdown off costs, apart from decrypting.
    one_page = sql_list(files["one_page"])
    out["lookup_plain_no_pushdown"], _ = best(
        runs, lambda: con.execute(f"SELECT {cols} FROM read_parquet({one_page}) {where}").fetchall()
    )
    # Point lookups on plain files get DuckDB's defaults, filter pushdown on.
    plain_con = duckdb.connect()
    lookups = {}
    for name, variant in (("lookup_plain", "plain"), ("lookup_one_page", "one_page")):
        q = f"SELECT {cols} FROM read_parquet({sql_list(files[variant])}) {where}"
        out[name], lookups[name] = best(runs, lambda: plain_con.execute(q).fetchall())
    if not (len(c) == 1 and lookups["lookup_plain"] == lookups["lookup_one_page"] == c):
        raise AssertionError(f"DuckDB's point lookups differ: {lookups} against encrypted {c}")
    return out


def section(read, cfg, needs):
    try:
        return read(cfg)
    except ImportError as e:
        return {"skip": f"{needs} is not installed ({e}): `scripts/test` installs it from PyPI"}
    except Exception as e:  # noqa: BLE001: reported in the bench's table, not raised
        first = (str(e).splitlines() or [""])[0]
        return {"error": f"{type(e).__name__}: {first}"}


def main():
    cfg = json.load(sys.stdin)
    result = {
        "python": sys.version.split()[0],
        "pyarrow": section(pyarrow_reads, cfg, "pyarrow"),
        "duckdb": section(duckdb_reads, cfg, "duckdb"),
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
