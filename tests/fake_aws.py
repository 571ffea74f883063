"""moto for tests: fake credentials, one mock, storage's cached clients reset around it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest


@contextmanager
def fake_aws(monkeypatch: pytest.MonkeyPatch, region: str = "us-east-1") -> Iterator[None]:
    """Everything boto3 does inside is served by moto; never a real account (the profile
    is unset, the keys are fake)."""
    from moto import mock_aws

    from foldstack import storage

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        # storage caches its boto3 clients: one made before the mock would reach AWS.
        storage.reset_clients()
        try:
            yield
        finally:
            storage.reset_clients()


@contextmanager
def task_buckets(monkeypatch: pytest.MonkeyPatch, size_classes_json: str) -> Iterator[Any]:
    """Inside :func:`fake_aws`: buckets `lake` (inputs/, results/) and `scratch`, and the
    Lambda task settings pointing at them; yields the S3 client."""
    import boto3

    with fake_aws(monkeypatch):
        s3 = boto3.client("s3")
        for bucket in ("lake", "scratch"):
            s3.create_bucket(Bucket=bucket)
        monkeypatch.setenv("FOLDSTACK_SCRATCH_ROOT", "s3://scratch")
        monkeypatch.setenv("FOLDSTACK_ALLOWED_INPUT_PREFIXES", "s3://lake/inputs")
        monkeypatch.setenv("FOLDSTACK_ALLOWED_OUTPUT_PREFIXES", "s3://lake/results")
        monkeypatch.setenv("FOLDSTACK_SIZE_CLASSES", size_classes_json)
        yield s3


@dataclass
class RecordedBucket:
    """A moto bucket and the key of every object write to it, in order (PutObject,
    multipart uploads)."""

    name: str
    client: Any  # storage's S3 client
    writes: list[str] = field(default_factory=list)

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def body(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def bodies(self, prefix: str = "") -> dict[str, bytes]:
        return {key: self.body(key) for key in self.keys(prefix)}


def recorded_bucket(name: str) -> RecordedBucket:
    """Create bucket ``name`` (inside :func:`fake_aws`) and start recording its writes."""
    from foldstack import storage

    bucket = RecordedBucket(name, storage._s3())
    bucket.client.create_bucket(Bucket=name)

    def record(params, model, **_):
        if model.name in ("PutObject", "CreateMultipartUpload"):
            bucket.writes.append(params["Key"])

    bucket.client.meta.events.register("before-parameter-build.s3", record)
    return bucket


def recorded_bucket_fixture(name: str):
    """A fixture ``s3``: moto (:func:`fake_aws`) with bucket ``name``, a :class:`RecordedBucket`."""

    @pytest.fixture(name="s3")
    def fixture(monkeypatch):
        with fake_aws(monkeypatch):
            yield recorded_bucket(name)

    return fixture


def fail_writes_to(monkeypatch: pytest.MonkeyPatch, suffix: str, error: BaseException) -> None:
    """Make ``foldstack.storage.write_bytes`` raise `error` for every URI ending in
    `suffix` (a storage failure midway through a publish); other writes go through."""
    from foldstack import storage

    real_write = storage.write_bytes

    def write_bytes(uri, data, **kwargs):
        if str(uri).endswith(suffix):
            raise error
        return real_write(uri, data, **kwargs)

    monkeypatch.setattr(storage, "write_bytes", write_bytes)
