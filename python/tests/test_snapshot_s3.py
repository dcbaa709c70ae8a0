"""open_snapshot on an `s3://` archive: a local S3 (moto's server, on
127.0.0.1) holds a copy of the demo's archive; the snapshot is verified
through the object store the CLI uses and read by pyarrow's S3 filesystem,
both configured from the same AWS_* variables."""

from __future__ import annotations

import logging

import boto3
import pytest
from moto.server import ThreadedMotoServer

import tidemark
from tidemark import SnapshotError


@pytest.fixture(scope="module")
def s3(demo):
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket="snapshots")
    for path in (demo / "archive").rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "snapshots", f"tm/{path.relative_to(demo / 'archive')}")
    yield client, env
    server.stop()


def test_an_s3_archive_reads_as_the_local_one(s3, demo, monkeypatch):
    _, env = s3
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    keys = dict(key=demo / "keys" / "analytics.key", archiver_pub=demo / "keys" / "archiver.pub")
    remote = tidemark.open_snapshot("s3://snapshots/tm", **keys).to_table().sort_by("patient_id")
    local = tidemark.open_snapshot(demo / "archive", **keys).to_table().sort_by("patient_id")
    assert remote.equals(local)


def test_a_tampered_object_is_refused(s3, demo, monkeypatch):
    client, env = s3
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    keys = dict(key=demo / "keys" / "analytics.key", archiver_pub=demo / "keys" / "archiver.pub")
    part = sorted(p for p in (demo / "archive").rglob("part-*.parquet"))[0]
    key = f"tm/{part.relative_to(demo / 'archive')}"
    data = bytearray(part.read_bytes())
    data[100] ^= 0x01
    client.put_object(Bucket="snapshots", Key=key.replace("tm/", "bad/", 1), Body=bytes(data))
    for path in (demo / "archive").rglob("*"):
        if path.is_file() and path != part:
            client.upload_file(str(path), "snapshots", f"bad/{path.relative_to(demo / 'archive')}")
    with pytest.raises(SnapshotError, match=part.name):
        tidemark.open_snapshot("s3://snapshots/bad", **keys)
