"""A local S3-compatible server (moto's server mode) with one bucket, reached through the standard AWS env vars."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

BUCKET = "cogumi-runs"


@dataclass
class LocalS3:
    """The running server: its endpoint, the bucket and a boto3 client to look inside it."""

    endpoint: str
    bucket: str
    client: Any

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` in the bucket."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()


def s3_env(endpoint: str) -> dict[str, str]:
    """What a process needs to reach the server: pyarrow's S3FileSystem and boto3 both read these."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture
def local_s3(monkeypatch) -> Iterator[LocalS3]:
    pytest.importorskip("moto", reason="moto[server] is a dev extra (pip install -e .[dev])")
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.support.openai_server import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for k, v in s3_env(endpoint).items():
        monkeypatch.setenv(k, v)
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    try:
        yield LocalS3(endpoint, BUCKET, client)
    finally:
        server.stop()
