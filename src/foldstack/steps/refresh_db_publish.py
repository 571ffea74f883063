"""Database refresh, the publishing side: a verified version goes to
``<db_root>/<name>/<version>/`` with :func:`foldstack.storage.publish` (``manifest.json``
is the completeness marker), then ``<db_root>/<name>/CURRENT`` is replaced with
:func:`foldstack.storage.write_pointer`. ``db_root`` is a local directory or an
``s3://bucket/prefix``; what a reader can observe at any moment is the storage
primitive's guarantee, and ``CURRENT`` only ever names a complete version.

Also: recognising a version that is already published from the same source files, and
removing what killed refresh jobs left. Fetching and verification are
:mod:`foldstack.steps.refresh_db_source`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.core.errors import BadInputError
from foldstack.core.hashing import sha256_bytes, sha256_file
from foldstack.steps.common import StepContext
from foldstack.steps.databases import _NAME_RE, _VERSION_RE, Database, verify_database
from foldstack.steps.refresh_db_source import (
    DatabaseSpec,
    expected_checksums,
    source_matches,
    stage,
    step_helpers,
)
from foldstack.storage.publishing import PARTIAL, partial_prefix

MANIFEST = "manifest.json"


def is_s3(db_root: Path | str) -> bool:
    return str(db_root).startswith("s3://")


def staging_prefix(version: str, run_id: str) -> str:
    """Name prefix of a local staging dir: ``.<version>.partial-<run_id>-``."""
    return partial_prefix(version, f"{run_id}-")


def _current_uri(base: Path | str) -> str:
    return f"{base}/CURRENT" if is_s3(base) else str(Path(base) / "CURRENT")


def read_current(base: Path | str) -> str | None:
    """The version ``<base>/CURRENT`` names (``base``: a local dir or an S3 prefix), or None."""
    return storage.read_pointer(_current_uri(base))


def set_current(base: Path | str, version: str) -> None:
    """Atomically point ``<base>/CURRENT`` at ``version`` (local: tmp file, fsync, rename)."""
    storage.write_pointer(_current_uri(base), version + "\n")


def _refuse_replacing_current(where: str) -> BadInputError:
    return BadInputError(f"{where} is the CURRENT version but does not match the requested checksums; "
                         "refusing to replace a version in use (publish under a new version name)")


# ------------------------------------------------------------------ local directory


def _existing_matches(base: Path, version: str, expected: dict[str, str | None]) -> bool:
    """An existing version dir published from exactly these source files, and intact on
    disk (sizes always, sha256 up to the databases module's size limit)."""
    path = base / version
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not source_matches(manifest.get("source_files"), expected):
        return False
    if manifest.get("sequences") is None:
        manifest = {k: v for k, v in manifest.items() if k != "sequences"}  # role-less DB (no FASTA)
    try:
        verify_database(Database(name=base.name, version=version, path=path, manifest=manifest,
                                 manifest_sha256=sha256_file(path / MANIFEST)))
    except BadInputError:
        return False
    return True


def refresh_local(spec: DatabaseSpec, db_root: Path, run_id: str, ctx: StepContext | None = None) -> dict[str, Any]:
    """Stage and verify in ``<db_root>/<name>/.<version>.partial-<run_id>-<hex>/``, publish
    it as ``<db_root>/<name>/<version>/`` (a non-current version dir that does not match
    the request is replaced), then point CURRENT at it."""
    if not db_root.is_dir():
        raise BadInputError(f"database root {db_root} does not exist")
    base = db_root / spec.name
    base.mkdir(exist_ok=True)
    final = base / spec.version
    previous = read_current(base)
    say, timer = step_helpers(spec, ctx)
    expected = expected_checksums(spec, timer)

    result: dict[str, Any] = {"name": spec.name, "version": spec.version, "previous": previous,
                              "path": str(final), "source": spec.source}
    if final.exists():
        if _existing_matches(base, spec.version, expected):
            if previous != spec.version:
                set_current(base, spec.version)
            say(f"version {spec.version} already present and verified; CURRENT -> {spec.version}")
            return {**result, "action": "already_current" if previous == spec.version else "republished"}
        if previous == spec.version:
            raise _refuse_replacing_current(str(final))
        say(f"{final} exists but does not match the request; it will be replaced")

    with storage.publish(final, marker=MANIFEST, replace=True, tag=f"{run_id}-") as pub:
        _, total = stage(spec, expected, pub.local_dir(), run_id, previous, say, timer)
    set_current(base, spec.version)
    say(f"published {spec.name}/{spec.version} ({total} bytes fetched); CURRENT {previous!r} -> {spec.version!r}")
    return {**result, "action": "published", "bytes_fetched": total,
            "manifest_sha256": sha256_file(final / MANIFEST)}


# ------------------------------------------------------------------ S3 prefix
#
# The database FSx file systems import the database bucket (read-only, one per AZ), so in
# the cloud the bucket is the source of truth. The version is staged and verified locally,
# then published under its final prefix (files, then manifest.json), then CURRENT is
# written; readers wait for a version's manifest and files (databases.py). An empty
# marker ``<db_root>/.refresh/<run_id>/<name>/<version>`` exists while this run may have
# written under the version prefix, so ``refresh-db-cleanup`` can remove what a killed
# job left; the job removes the marker itself once it has published or rolled back.

MARKER_DIR = ".refresh"


def _s3_existing_matches(prefix: str, expected: dict[str, str | None]) -> tuple[bool, str | None]:
    """(the version under `prefix` was published from exactly these source files and every
    file its manifest lists is present with the recorded size, manifest sha256)."""
    data = _s3_bytes(f"{prefix}/{MANIFEST}")
    if data is None:
        return False, None
    try:
        manifest = json.loads(data)
    except ValueError:
        return False, None
    if not isinstance(manifest, dict) or not source_matches(manifest.get("source_files"), expected):
        return False, None
    sizes = {info.uri[len(prefix) + 1:]: info.size for info in storage.list_prefix(prefix)}
    for rel, meta in (manifest.get("files") or {}).items():
        if sizes.get(rel) != int(meta.get("bytes", -1)):
            return False, None
    return True, sha256_bytes(data)


def _s3_bytes(uri: str) -> bytes | None:
    from botocore.exceptions import ClientError

    try:
        return storage.read_bytes(uri)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def refresh_s3(spec: DatabaseSpec, db_root: str, run_id: str, staging_root: Path,
               ctx: StepContext | None = None) -> dict[str, Any]:
    """Stage and verify locally under `staging_root`, then publish
    ``<db_root>/<name>/<version>/...`` (``manifest.json`` last), then ``CURRENT``.
    A failure removes whatever was uploaded for this version (never another version, and
    never the version CURRENT names), and leaves CURRENT as it was."""
    root = db_root.rstrip("/")
    base = f"{root}/{spec.name}"
    prefix = f"{base}/{spec.version}"
    marker = f"{root}/{MARKER_DIR}/{run_id}/{spec.name}"  # + /<version>
    previous = read_current(base)
    say, timer = step_helpers(spec, ctx)
    expected = expected_checksums(spec, timer)
    result: dict[str, Any] = {"name": spec.name, "version": spec.version, "previous": previous,
                              "path": prefix, "source": spec.source}

    matches, manifest_sha = _s3_existing_matches(prefix, expected)
    if matches:
        if previous != spec.version:
            set_current(base, spec.version)
        say(f"version {spec.version} already in {prefix} (manifest and file sizes match); CURRENT -> {spec.version}")
        return {**result, "action": "already_current" if previous == spec.version else "republished",
                "manifest_sha256": manifest_sha}
    if previous == spec.version:
        raise _refuse_replacing_current(prefix)

    staging_root.mkdir(parents=True, exist_ok=True)
    staging = staging_root / f".{spec.name}-{spec.version}-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    touched = False
    try:
        manifest, total = stage(spec, expected, staging, run_id, previous, say, timer)
        manifest_bytes = (staging / MANIFEST).read_bytes()
        # From here on this run writes under the version prefix: mark it for cleanup first.
        storage.write_bytes(f"{marker}/{spec.version}", b"", content_type="text/plain")
        touched = True
        with timer("upload"):
            # replace: what is there is neither CURRENT nor a match (checked above): an
            # earlier run's leftover, or a version published from other files.
            with storage.publish(prefix, marker=MANIFEST, replace=True) as pub:
                if pub.removed_stale:
                    say(f"removed {pub.removed_stale} object(s) of an earlier, unpublished {prefix}")
                for rel in sorted(manifest["files"]):
                    say(f"uploading {rel} -> {prefix}/{rel}")
                    pub.put_file(rel, staging / rel)
                pub.put(MANIFEST, manifest_bytes, content_type="application/json")
            set_current(base, spec.version)
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
    return {**result, "action": "published", "bytes_fetched": total, "manifest_sha256": sha256_bytes(manifest_bytes)}


def _rollback_s3(base: str, version: str, say: Any) -> int:
    """Delete ``<base>/<version>/`` unless CURRENT names it (a CURRENT write that succeeded
    but whose response was lost: then the version is published and must stay). The
    publish rolled back its own objects already; this also covers a published version
    whose CURRENT write failed."""
    try:
        if read_current(base) == version:
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


# ------------------------------------------------------------------ leftovers of killed jobs


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
    tag = f"{PARTIAL}{run_id}-"
    for base in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        for entry in sorted(base.iterdir()):
            if entry.name.startswith(".") and tag in entry.name and entry.is_dir() and not entry.is_symlink():
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
        if read_current(base) != version and storage.delete_prefix(f"{base}/{version}"):
            removed.append(f"{base}/{version}")
        storage.delete_prefix(f"{markers}/{name}")
    return removed
