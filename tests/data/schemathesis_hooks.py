"""Hooks for the schemathesis run of tests/ingest_schemathesis.rs.

schemathesis has no serializer for application/x-ndjson, so without this it
would skip the batch form of POST /v1/events. The spec types the body as a
string (one envelope per line): send the generated string as it is.
"""

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("utf-8")
