"""Helpers of the reliability/security suite: the malformed corpus, handlers, request
templates, and a moto S3 estate (lake + scratch buckets)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_handler as load_handler  # re-exported for the reliability tests

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fixtures" / "malformed"
SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
DUMMY_RUN_ID = "x-1-0000000000000000"


def load_manifest() -> dict[str, Any]:
    return json.loads((CORPUS / "manifest.json").read_text())


def corpus_cases(kind: str | None = None) -> list[dict[str, Any]]:
    return [c for c in load_manifest()["cases"] if kind is None or c["kind"] == kind]


def case_id(case: dict[str, Any]) -> str:
    return Path(case["file"]).stem




def substitute(value: Any, mapping: dict[str, str]) -> Any:
    """Replace {inputs}/{outputs}/{outside} in every string of a request template."""
    if isinstance(value, str):
        for key, repl in mapping.items():
            value = value.replace("{" + key + "}", repl)
        return value
    if isinstance(value, list):
        return [substitute(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, mapping) for k, v in value.items()}
    return value


def request_case(case: dict[str, Any]) -> dict[str, Any]:
    return json.loads((CORPUS / case["file"]).read_text())


def fasta_request(input_uri: str, output_uri: str) -> dict[str, Any]:
    return {"inputs": [input_uri], "output_uri": output_uri, "engine": "esmfold"}


def size_classes_env() -> str:
    from foldstack.workflows.specs import load_workflow

    classes = load_workflow("fold", REPO / "statemachines").jobs.size_classes
    return json.dumps({k: v.model_dump() for k, v in classes.items()})


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[Any]:
    """A moto S3 with buckets `lake` (inputs/, results/, other/) and `scratch`; the task
    settings point at them. Module-scoped: create it once, reset objects per test."""
    from tests.fake_aws import task_buckets

    mp = pytest.MonkeyPatch()
    try:
        with task_buckets(mp, size_classes_env()) as s3:
            yield s3
    finally:
        mp.undo()


def all_keys(s3) -> dict[str, list[str]]:
    out = {}
    for bucket in ("lake", "scratch"):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        out[bucket] = sorted(o["Key"] for p in pages for o in p.get("Contents", []))
    return out


def empty_buckets(s3) -> None:
    for bucket, keys in all_keys(s3).items():
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})


def valid_event(fasta_uri: str, output_uri: str, data: str, **options: Any) -> dict[str, Any]:
    """A request event whose run id is the one Validate Input computes."""
    from foldstack.core.fasta import parse_fasta
    from foldstack.core.request import RunRequest
    from foldstack.core.runid import make_run_id

    request = {"inputs": [fasta_uri], "output_uri": output_uri, "engine": "esmfold", **options}
    return {"run_id": make_run_id(RunRequest.model_validate(request), parse_fasta(data)), "request": request}


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file/link under root -> content (links -> 'link:<target>'), for escape checks."""
    import os

    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            out[rel] = f"link:{os.readlink(path)}" if os.path.islink(path) else Path(path).read_bytes()
    return out
