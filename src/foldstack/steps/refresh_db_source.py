"""Database refresh, the source side: the refresh spec, the checksums it expects, fetching
files from ``https://``, ``s3://``, ``file://`` or a local path, and staging them in a
local directory where every file's sha256 is verified (then optionally unpacked) and the
version's ``manifest.json`` is written. Nothing here publishes anything: that is
:mod:`foldstack.steps.refresh_db_publish`. The step itself is :mod:`foldstack.steps.refresh_db`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from foldstack.core.clock import utcnow
from foldstack.core.errors import BadInputError
from foldstack.steps.common import StepContext, log
from foldstack.steps.databases import _VERSION_RE, write_manifest

STEP = "refresh_db"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
HTTP_TIMEOUT_ENV = "FOLDSTACK_DB_HTTP_TIMEOUT"


class ChecksumMismatchError(BadInputError):
    """A fetched file does not have the sha256 the request (or checksum file) expects."""


class DatabaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    source: str
    files: dict[str, str] | None = None
    checksums: str | None = None
    unpack: bool = False
    role: Literal["uniref90", "mgnify", "small_bfd"] | None = None
    sequences: str | None = None
    max_hits: int | None = Field(default=None, gt=0)
    license: str = ""
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"database name {v!r} must be 1-64 of [A-Za-z0-9_-], starting alphanumeric")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _VERSION_RE.match(v):
            raise ValueError(f"version {v!r} must be 1-64 of [A-Za-z0-9._-], starting alphanumeric")
        return v

    @field_validator("files")
    @classmethod
    def _files(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("files must list at least one file")
        return {_safe_rel(rel): _sha(digest, rel) for rel, digest in v.items()}

    @model_validator(mode="after")
    def _one_checksum_source(self) -> DatabaseSpec:
        if (self.files is None) == (self.checksums is None):
            raise ValueError("give exactly one of `files` (name -> sha256) or `checksums` (a sha256sum file)")
        if self.role is not None and not self.sequences:
            raise ValueError("a database with a `role` must name its `sequences` FASTA")
        return self


def _safe_rel(rel: str) -> str:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")) \
            or "\\" in rel or "\x00" in rel or rel == "manifest.json" or p.name.startswith("."):
        raise ValueError(f"file name {rel!r} must be a relative path without '.', '..' or hidden names")
    return rel


def _sha(digest: str, rel: str) -> str:
    d = digest.strip().lower().removeprefix("sha256:")
    if not _SHA_RE.match(d):
        raise ValueError(f"sha256 of {rel!r} must be 64 hex digits, got {digest!r}")
    return d


def parse_spec(raw: str | dict[str, Any]) -> DatabaseSpec:
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        return DatabaseSpec.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise BadInputError(f"invalid database refresh spec: {exc}") from exc


def parse_checksum_file(text: str) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <name>`` or ``<hex> *<name>``), or BSD ``SHA256 (name) = hex``."""
    out: dict[str, str] = {}
    bsd = re.compile(r"^SHA256 \((.+)\) = ([0-9a-fA-F]{64})$")
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = bsd.match(line)
        if m:
            name, digest = m.group(1), m.group(2)
        else:
            digest, _, name = line.partition(" ")
            name = name.strip().lstrip("*")
        try:
            out[_safe_rel(name)] = _sha(digest, name)
        except ValueError as exc:
            raise BadInputError(f"checksum file line {n}: {exc}") from exc
    if not out:
        raise BadInputError("checksum file lists no files")
    return out


# ------------------------------------------------------------------ fetching


def _join(source: str, rel: str) -> str:
    if re.match(r"^[a-z][a-z0-9+.-]*://", rel):
        return rel  # already a URI (checksum file given absolutely)
    if rel.startswith("/"):
        return rel
    return source.rstrip("/") + "/" + rel


@contextlib.contextmanager
def open_source(uri: str) -> Iterator[IO[bytes]]:
    """A binary stream for ``https://``, ``http://``, ``s3://``, ``file://`` or a local path."""
    if uri.startswith(("https://", "http://")):
        timeout = float(os.environ.get(HTTP_TIMEOUT_ENV, "300"))
        req = urllib.request.Request(uri, headers={"User-Agent": "foldstack-refresh-db"})  # noqa: S310
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310  # nosec B310 - scheme checked
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404, 410):
                raise BadInputError(f"{uri}: HTTP {exc.code}") from exc
            raise
        with resp:
            yield resp
    elif uri.startswith("s3://"):
        import boto3

        bucket, _, key = uri[5:].partition("/")
        if not bucket or not key:
            raise BadInputError(f"{uri}: expected s3://bucket/key")
        s3 = boto3.client("s3")
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        except s3.exceptions.NoSuchKey as exc:
            raise BadInputError(f"{uri}: no such object") from exc
        try:
            yield body
        finally:
            body.close()
    else:
        if "://" in uri and not uri.startswith("file://"):
            raise BadInputError(f"{uri}: unsupported scheme (use https://, s3://, file:// or a local path)")
        path = Path(urllib.parse.unquote(uri[7:]) if uri.startswith("file://") else uri)
        if not path.is_file():
            raise BadInputError(f"source file not found: {path}")
        with open(path, "rb") as f:
            yield f


def fetch(uri: str, dest: Path) -> tuple[str, int]:
    """Stream ``uri`` into ``dest``; return (sha256, bytes)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    n = 0
    with open_source(uri) as src, open(dest, "wb") as out:
        while block := src.read(_CHUNK):
            h.update(block)
            out.write(block)
            n += len(block)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest(), n


def _gunzip(path: Path) -> Path:
    target = path.with_suffix("")
    with gzip.open(path, "rb") as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)
    path.unlink()
    return target


# ------------------------------------------------------------------ staging and verification


def expected_checksums(spec: DatabaseSpec, timer: Any) -> dict[str, str]:
    if spec.files is not None:
        return dict(spec.files)
    assert spec.checksums is not None
    uri = _join(spec.source, spec.checksums)
    with timer("checksums"), open_source(uri) as f:
        return parse_checksum_file(f.read(4 << 20).decode("utf-8", "replace"))


def stage(spec: DatabaseSpec, expected: dict[str, str], staging: Path, run_id: str, previous: str | None,
          say: Any, timer: Any) -> tuple[dict[str, Any], int]:
    """Fetch every file into `staging`, verify its sha256, unpack, write manifest.json and
    check that the manifest lists exactly the verified set. Returns (manifest, bytes fetched)."""
    total = 0
    with timer("download"):
        for rel, want in sorted(expected.items()):
            uri = _join(spec.source, rel)
            say(f"fetching {uri}")
            got, size = fetch(uri, staging / rel)
            if got != want:
                raise ChecksumMismatchError(
                    f"{uri}: sha256 {got} does not match the expected {want}; nothing was published "
                    f"and CURRENT still names {previous!r}")
            total += size
    if spec.unpack:
        with timer("unpack"):
            for rel in sorted(expected):
                if rel.endswith(".gz"):
                    _gunzip(staging / rel)
    with timer("manifest"):
        manifest = write_manifest(
            staging, name=spec.name, version=spec.version, role=spec.role,  # type: ignore[arg-type]
            sequences=spec.sequences, max_hits=spec.max_hits, source=spec.source, license=spec.license,  # type: ignore[arg-type]
            extra={"source_files": expected, "fetched_at": utcnow(), "refresh_run_id": run_id,
                   **({"description": spec.description} if spec.description else {})},
        )
        if spec.sequences and spec.sequences not in manifest["files"]:
            raise BadInputError(f"`sequences` {spec.sequences!r} is not among the fetched files "
                                f"{sorted(manifest['files'])}")
        # write_manifest re-read every file from disk: the published set must be exactly
        # the verified set (with *.gz replaced by what it unpacked to).
        published = {rel[:-3] if spec.unpack and rel.endswith(".gz") else rel for rel in expected}
        if set(manifest["files"]) != published:
            raise BadInputError(f"staged files {sorted(manifest['files'])} differ from the verified "
                                f"set {sorted(published)}")
        for rel, want in expected.items():
            if rel in manifest["files"] and manifest["files"][rel]["sha256"] != want:
                raise ChecksumMismatchError(f"{rel} changed on disk after its download was verified")
    return manifest, total


def step_helpers(spec: DatabaseSpec, ctx: StepContext | None) -> tuple[Any, Any]:
    """(say, timer): the step's log and timings under the step contract, or plain logging."""
    say = ctx.log if ctx else (lambda m: log(STEP, spec.name, m))

    @contextlib.contextmanager
    def timer(name: str) -> Iterator[None]:
        if ctx is None:
            yield
        else:
            with ctx.timer(name):
                yield

    return say, timer
