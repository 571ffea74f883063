"""Database lifecycle: fetch a named database version, verify it, then publish it.

``foldstack step refresh-db --run-id R --scratch S --db D --spec JSON`` (the
``refresh_databases`` workflow's Batch job) does, for one database::

    <db_root>/<name>/.<version>.partial-<run_id>-<uuid>/   staging (same file system)
        <file>            streamed from <source>/<file>, sha256 computed while writing
    -> every file's sha256 == the expected value (request or checksum file)
    -> manifest.json written (databases.write_manifest) and re-verified
    -> staging renamed to <db_root>/<name>/<version>/      (atomic rename)
    -> <db_root>/<name>/CURRENT replaced atomically         (tmp file + os.replace)

A failure at any point removes the staging directory and leaves ``CURRENT`` (and every
published version) untouched; nothing half-downloaded is ever visible under a version
name. A job killed before its own cleanup runs leaves only a ``.partial-<run_id>-*``
directory, which the workflow's ``CleanupOnFailure`` job (``refresh-db-cleanup``)
removes.

``D`` may also be ``s3://bucket/prefix`` (the cloud: the database FSx file systems are
import-only from that bucket and mounted read-only, so the bucket is the source of
truth). Then the files are fetched and verified into a local staging directory (under
``<scratch>/<run_id>/refresh_db/``, or ``$FOLDSTACK_DB_STAGING_DIR``) and uploaded::

    <D>/<name>/<version>/<file>...   each file (boto3 managed multipart upload)
    <D>/<name>/<version>/manifest.json
    <D>/<name>/CURRENT               last; PutObject is atomic per object

The FSx import is asynchronous, so readers (``databases.open_database``) wait until the
version CURRENT names has its manifest and files. A failure deletes what this run
uploaded for the version (never another version, never the version CURRENT names); the
version CURRENT names is never overwritten. A killed job leaves a marker
``<D>/.refresh/<run_id>/<name>/<version>`` from which ``refresh-db-cleanup`` removes the
partial version.

The spec (JSON, one database; the workflow passes one Map item)::

    {"name": "uniref90", "version": "2024_01",
     "source": "https://ftp.example.org/uniref90/2024_01",   # base: https://, s3://, file://, /abs/dir
     "files": {"uniref90.fasta.gz": "<sha256>"},             # expected checksums, or
     "checksums": "SHA256SUMS",                              # a sha256sum-format file (URI, or
                                                             #   a name relative to source)
     "unpack": true,                     # gunzip *.gz after verification (manifest lists the result)
     "role": "uniref90", "sequences": "uniref90.fasta", "max_hits": 10000,
     "license": "CC BY 4.0", "description": "..."}

Each file is fetched from ``<source>/<relative path>``. A checksum file is itself not
trusted for anything but the list of names and digests; fetch it over a channel you
trust (s3:// in your account, https from the publisher).

The step runs under the step contract (:func:`foldstack.steps.common.run_step`) with
``target = name``, so it leaves ``<scratch>/<run_id>/refresh_db/<name>/refresh_db.done.json``
(timings, for cost) and ``published.json`` (what was published, and the previous version).
Exit codes: 0 published (or already current), 2 bad spec / checksum mismatch / missing
file (never retried), anything else a crash.
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
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from foldstack import storage
from foldstack.steps.common import BadInputError, StepContext, log, run_step, sha256_file, utcnow, write_json
from foldstack.steps.databases import _VERSION_RE, Database, verify_database, write_manifest

STEP = "refresh_db"
CLEANUP_STEP = "refresh_db_cleanup"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
HTTP_TIMEOUT_ENV = "FOLDSTACK_DB_HTTP_TIMEOUT"
STAGING_ENV = "FOLDSTACK_DB_STAGING_DIR"  # S3 destination: where to download first (default: scratch)


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


# ------------------------------------------------------------------ publishing


def staging_prefix(version: str, run_id: str) -> str:
    return f".{version}.partial-{run_id}-"


def read_current(base: Path) -> str | None:
    current = base / "CURRENT"
    return current.read_text().strip() if current.is_file() else None


def set_current(base: Path, version: str) -> None:
    """Atomically point ``<base>/CURRENT`` at ``version`` (tmp file, fsync, rename)."""
    tmp = base / f".CURRENT.{uuid.uuid4().hex[:12]}"
    with open(tmp, "w") as f:
        f.write(version + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, base / "CURRENT")


def _existing_matches(base: Path, version: str, expected: dict[str, str]) -> bool:
    """An existing version dir published from exactly these source files, and intact on
    disk (sizes always, sha256 up to the databases module's size limit)."""
    path = base / version
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("source_files") != expected:
        return False
    if manifest.get("sequences") is None:
        manifest = {k: v for k, v in manifest.items() if k != "sequences"}  # role-less DB (no FASTA)
    try:
        verify_database(Database(name=base.name, version=version, path=path, manifest=manifest,
                                 manifest_sha256=sha256_file(path / "manifest.json")))
    except BadInputError:
        return False
    return True


def _expected_checksums(spec: DatabaseSpec, timer: Any) -> dict[str, str]:
    if spec.files is not None:
        return dict(spec.files)
    assert spec.checksums is not None
    uri = _join(spec.source, spec.checksums)
    with timer("checksums"), open_source(uri) as f:
        return parse_checksum_file(f.read(4 << 20).decode("utf-8", "replace"))


def _stage(spec: DatabaseSpec, expected: dict[str, str], staging: Path, run_id: str, previous: str | None,
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


def _helpers(spec: DatabaseSpec, ctx: StepContext | None) -> tuple[Any, Any]:
    say = ctx.log if ctx else (lambda m: log(STEP, spec.name, m))

    @contextlib.contextmanager
    def timer(name: str) -> Iterator[None]:
        if ctx is None:
            yield
        else:
            with ctx.timer(name):
                yield

    return say, timer


def is_s3(db_root: Path | str) -> bool:
    return str(db_root).startswith("s3://")


def refresh_database(spec: DatabaseSpec, db_root: Path | str, run_id: str, ctx: StepContext | None = None,
                     *, staging_root: Path | str | None = None) -> dict[str, Any]:
    """Fetch, verify and publish one database version; return what happened.

    ``db_root`` is a local directory (staged and renamed on the same file system) or
    ``s3://bucket/prefix`` (staged under ``staging_root``, then uploaded: see
    :func:`refresh_database_s3`)."""
    if is_s3(db_root):
        if staging_root is None:
            raise BadInputError("publishing to S3 needs a local staging directory (the step passes its scratch)")
        return refresh_database_s3(spec, str(db_root), run_id, Path(staging_root), ctx)
    db_root = Path(db_root)
    if not db_root.is_dir():
        raise BadInputError(f"database root {db_root} does not exist")
    base = db_root / spec.name
    base.mkdir(exist_ok=True)
    final = base / spec.version
    previous = read_current(base)
    say, timer = _helpers(spec, ctx)
    expected = _expected_checksums(spec, timer)

    result: dict[str, Any] = {"name": spec.name, "version": spec.version, "previous": previous,
                              "path": str(final), "source": spec.source}
    if final.exists():
        if _existing_matches(base, spec.version, expected):
            if previous != spec.version:
                set_current(base, spec.version)
            say(f"version {spec.version} already present and verified; CURRENT -> {spec.version}")
            return {**result, "action": "already_current" if previous == spec.version else "republished"}
        if previous == spec.version:
            raise BadInputError(
                f"{final} is the CURRENT version but does not match the requested checksums; "
                "refusing to replace a version in use (publish under a new version name)")
        stale = base / f".{spec.version}.stale-{uuid.uuid4().hex[:12]}"
        say(f"{final} exists but does not match the request; moving it aside")
        os.rename(final, stale)
        shutil.rmtree(stale, ignore_errors=True)

    staging = base / f"{staging_prefix(spec.version, run_id)}{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        _, total = _stage(spec, expected, staging, run_id, previous, say, timer)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    set_current(base, spec.version)
    say(f"published {spec.name}/{spec.version} ({total} bytes fetched); CURRENT {previous!r} -> {spec.version!r}")
    return {**result, "action": "published", "bytes_fetched": total,
            "manifest_sha256": sha256_file(final / "manifest.json")}


# ------------------------------------------------------------------ publishing to S3
#
# The database FSx file systems import the database bucket (read-only, one per AZ), so in
# the cloud the bucket is the source of truth. S3 has no rename: the version's objects are
# uploaded under their final keys, then manifest.json, then CURRENT (PutObject is atomic
# per object, and readers wait for a version's manifest and files: databases.py). An
# empty marker ``<db_root>/.refresh/<run_id>/<name>/<version>`` exists while this run may
# have written under the version prefix, so ``refresh-db-cleanup`` can remove
# what a killed job left; the job removes the marker itself once it has published or
# rolled back.

MARKER_DIR = ".refresh"


def _s3_text(uri: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return storage.read_bytes(uri).decode("utf-8")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def _s3_current(base: str) -> str | None:
    text = _s3_text(f"{base}/CURRENT")
    return text.strip() if text is not None else None


def _s3_existing_matches(prefix: str, expected: dict[str, str]) -> tuple[bool, str | None]:
    """(the version under `prefix` was published from exactly these source files and every
    file its manifest lists is present with the recorded size, manifest sha256)."""
    text = _s3_text(f"{prefix}/manifest.json")
    if text is None:
        return False, None
    try:
        manifest = json.loads(text)
    except ValueError:
        return False, None
    if not isinstance(manifest, dict) or manifest.get("source_files") != expected:
        return False, None
    sizes = {info.uri[len(prefix) + 1:]: info.size for info in storage.list_prefix(prefix)}
    for rel, meta in (manifest.get("files") or {}).items():
        if sizes.get(rel) != int(meta.get("bytes", -1)):
            return False, None
    return True, hashlib.sha256(text.encode("utf-8")).hexdigest()


def refresh_database_s3(spec: DatabaseSpec, db_root: str, run_id: str, staging_root: Path,
                        ctx: StepContext | None = None) -> dict[str, Any]:
    """Stage and verify locally under `staging_root`, then upload to
    ``<db_root>/<name>/<version>/...``, then ``manifest.json``, then ``CURRENT`` last.
    A failure removes whatever was uploaded for this version (never another version, and
    never the version CURRENT names), and leaves CURRENT as it was."""
    root = db_root.rstrip("/")
    base = f"{root}/{spec.name}"
    prefix = f"{base}/{spec.version}"
    marker = f"{root}/{MARKER_DIR}/{run_id}/{spec.name}"  # + /<version>
    previous = _s3_current(base)
    say, timer = _helpers(spec, ctx)
    expected = _expected_checksums(spec, timer)
    result: dict[str, Any] = {"name": spec.name, "version": spec.version, "previous": previous,
                              "path": prefix, "source": spec.source}

    matches, manifest_sha = _s3_existing_matches(prefix, expected)
    if matches:
        if previous != spec.version:
            storage.write_bytes(f"{base}/CURRENT", (spec.version + "\n").encode(), content_type="text/plain")
        say(f"version {spec.version} already in {prefix} (manifest and file sizes match); CURRENT -> {spec.version}")
        return {**result, "action": "already_current" if previous == spec.version else "republished",
                "manifest_sha256": manifest_sha}
    if previous == spec.version:
        raise BadInputError(
            f"{prefix} is the CURRENT version but does not match the requested checksums; "
            "refusing to replace a version in use (publish under a new version name)")

    staging_root.mkdir(parents=True, exist_ok=True)
    staging = staging_root / f".{spec.name}-{spec.version}-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    touched = False
    try:
        manifest, total = _stage(spec, expected, staging, run_id, previous, say, timer)
        manifest_bytes = (staging / "manifest.json").read_bytes()
        # From here on this run writes under the version prefix: mark it for cleanup first.
        storage.write_bytes(f"{marker}/{spec.version}", b"", content_type="text/plain")
        touched = True
        stale = storage.delete_prefix(prefix)  # a non-current leftover of an earlier attempt
        if stale:
            say(f"removed {stale} object(s) of an earlier, unpublished {prefix}")
        with timer("upload"):
            for rel in sorted(manifest["files"]):
                say(f"uploading {rel} -> {prefix}/{rel}")
                storage.copy(str(staging / rel), f"{prefix}/{rel}")
            storage.write_bytes(f"{prefix}/manifest.json", manifest_bytes, content_type="application/json")
            storage.write_bytes(f"{base}/CURRENT", (spec.version + "\n").encode(), content_type="text/plain")
    except BaseException:
        if touched:
            _rollback_s3(base, spec.version, say)
            _delete_marker(marker)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _delete_marker(marker)
    say(f"published {spec.name}/{spec.version} to {prefix} ({total} bytes fetched); "
        f"CURRENT {previous!r} -> {spec.version!r}")
    return {**result, "action": "published", "bytes_fetched": total,
            "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest()}


def _rollback_s3(base: str, version: str, say: Any) -> int:
    """Delete ``<base>/<version>/`` unless CURRENT names it (a CURRENT write that succeeded
    but whose response was lost: then the version is published and must stay)."""
    try:
        if _s3_current(base) == version:
            say(f"CURRENT already names {version}; keeping {base}/{version}")
            return 0
        removed = storage.delete_prefix(f"{base}/{version}")
    except Exception as exc:  # noqa: BLE001 - the original error matters more; cleanup job retries
        say(f"could not remove the partial upload {base}/{version}: {exc}")
        return 0
    say(f"removed {removed} object(s) of the partial upload {base}/{version}")
    return removed


def _delete_marker(marker: str) -> None:
    with contextlib.suppress(Exception):  # a leftover marker only makes the cleanup job look again
        storage.delete_prefix(marker)


def run_refresh_db(run_id: str, scratch: Path | str, db: Path | str, raw_spec: str) -> Path:
    """The Batch step: refresh one database under the step contract."""
    spec = parse_spec(raw_spec)

    def body(ctx: StepContext) -> None:
        ctx.tool_versions["foldstack"] = _foldstack_version()
        staging = os.environ.get(STAGING_ENV) or (Path(scratch) / run_id / STEP)
        outcome = refresh_database(spec, db if is_s3(db) else Path(db), run_id, ctx, staging_root=staging)
        write_json(ctx.work_dir / "published.json", {**outcome, "spec": spec.model_dump(mode="json")})

    return run_step(STEP, run_id, spec.name, scratch, body)


def cleanup_partials(db_root: Path | str, run_id: str) -> list[str]:
    """Remove what killed refresh jobs of this run left: locally the
    ``<db_root>/*/.*.partial-<run_id>-*`` staging dirs; on S3 the version prefixes named by
    this run's markers (``<db_root>/.refresh/<run_id>/<name>/<version>``), unless CURRENT
    names that version. Never touches CURRENT or a published version."""
    if is_s3(db_root):
        return _cleanup_s3(str(db_root).rstrip("/"), run_id)
    root = Path(db_root)
    removed: list[str] = []
    if not root.is_dir():
        return removed
    marker = f".partial-{run_id}-"
    for base in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        for entry in sorted(base.iterdir()):
            if entry.name.startswith(".") and marker in entry.name and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(str(entry))
    return removed


def _cleanup_s3(root: str, run_id: str) -> list[str]:
    markers = f"{root}/{MARKER_DIR}/{run_id}"
    removed: list[str] = []
    for info in list(storage.list_prefix(markers)):
        name, _, version = info.uri[len(markers) + 1:].partition("/")
        if not _NAME_RE.match(name) or not _VERSION_RE.match(version):
            continue
        base = f"{root}/{name}"
        if _s3_current(base) != version and storage.delete_prefix(f"{base}/{version}"):
            removed.append(f"{base}/{version}")
        storage.delete_prefix(f"{markers}/{name}")
    return removed


def run_cleanup(run_id: str, db: Path | str) -> list[str]:
    from foldstack.steps.common import check_ids

    check_ids(run_id, "cleanup")
    if is_s3(db):
        db = str(db)
    removed = cleanup_partials(db, run_id)
    log(CLEANUP_STEP, run_id, f"removed {len(removed)} partial download(s): {removed}")
    return removed


def _foldstack_version() -> str:
    from foldstack import __version__

    return __version__
