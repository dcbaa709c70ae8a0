"""A client of the query service written from docs/query.md alone (not from
the Rust code): it signs each request as the page says (RFC 9421, Ed25519,
the signature base spelled out there) with the `cryptography` package, and
prints what the service answered. tests/query_e2e.rs runs it against the
real service: an independent implementation of the signing profile.

    python3 client.py URL KEYFILE PATH [NONCE]

Prints `STATUS BODY` on one line. KEYFILE is a signing key file as
`tidemark keys generate` writes it (TOML: id, secret_key as standard
base64 of the 32-byte Ed25519 seed).
"""

import base64
import http.client
import sys
import time
import tomllib
import urllib.parse
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def sign(method, path, query, key_id, seed, created, nonce):
    params = (
        '("@method" "@path" "@query")'
        f';created={created};keyid="{key_id}";alg="ed25519";nonce="{nonce}"'
    )
    base = "\n".join(
        [
            f'"@method": {method}',
            f'"@path": {path}',
            f'"@query": ?{query}',
            f'"@signature-params": {params}',
        ]
    )
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(base.encode("ascii"))
    return {
        "Signature-Input": f"sig1={params}",
        "Signature": f"sig1=:{base64.b64encode(signature).decode('ascii')}:",
    }


def main(url, key_file, target, nonce=None):
    with open(key_file, "rb") as f:
        key = tomllib.load(f)
    seed = base64.b64decode(key["secret_key"])
    parts = urllib.parse.urlsplit(url)
    path, _, query = target.partition("?")
    headers = sign("GET", path, query, key["id"], seed, int(time.time()), nonce or uuid.uuid4().hex)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", target, headers=headers)
    answer = conn.getresponse()
    print(answer.status, answer.read().decode("utf-8").strip())


if __name__ == "__main__":
    main(*sys.argv[1:])
