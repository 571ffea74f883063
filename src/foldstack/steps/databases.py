"""Sequence databases under the DB root (read-only to jobs).

Layout (the DB cache)::

    <db_root>/<db_name>/CURRENT                  text file: the version in use, e.g. "2022_05"
    <db_root>/<db_name>/<version>/manifest.json  what the version holds
    <db_root>/<db_name>/<version>/<files...>

``manifest.json``::

    {
      "schema_version": 1,
      "name": "uniref90", "version": "2022_05",
      "role": "uniref90",               # uniref90 | mgnify | small_bfd (AlphaFold's jackhmmer DBs)
      "sequences": "uniref90.fasta",    # the FASTA file jackhmmer searches
      "max_hits": 10000,                # AlphaFold: uniref90 10000, mgnify 501, small_bfd all
      "files": {"uniref90.fasta": {"sha256": "...", "bytes": 123}},
      "source": "...", "license": "..."
    }

How the msa step finds its databases: it lists ``<db_root>/*/CURRENT``, reads each
version's manifest, and searches every database that declares a ``role``, in
AlphaFold's order (uniref90, mgnify, small_bfd; names sorted within a role). Other
directories under the root (e.g. ``weights/``) have no ``CURRENT`` and are ignored.
A missing or inconsistent database is a bad-input error (exit 2) naming the path.

Checksums: file sizes are always checked against the manifest; sha256 is checked for
files up to ``FOLDSTACK_DB_VERIFY_MAX_BYTES`` (default 256 MiB) — hashing a 70 GB
UniRef90 on every job would cost more than the search. The manifest's own sha256 and
the per-file sha256 values go into features.json as provenance.

Publication and import (cloud): the refresh job publishes to the database bucket
(files, then ``manifest.json``, then ``CURRENT``); the per-AZ DB file systems import
those objects asynchronously, so a job may see a ``CURRENT`` that names a version whose
``manifest.json`` or files are not there yet. :func:`open_database` then waits and looks
again (``FOLDSTACK_DB_IMPORT_RETRIES`` more looks, default 10, every
``FOLDSTACK_DB_IMPORT_INTERVAL_S`` seconds, default 30), and finally fails naming the
database, the version and what is missing; it never uses a half-imported version.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.core.errors import BadInputError
from foldstack.core.hashing import sha256_file
from foldstack.steps.common import log

ROLE_ORDER = ("uniref90", "mgnify", "small_bfd")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VERIFY_ENV = "FOLDSTACK_DB_VERIFY_MAX_BYTES"
DEFAULT_VERIFY_MAX = 256 * 1024 * 1024
IMPORT_RETRIES_ENV = "FOLDSTACK_DB_IMPORT_RETRIES"
IMPORT_INTERVAL_ENV = "FOLDSTACK_DB_IMPORT_INTERVAL_S"
DEFAULT_IMPORT_RETRIES = 10
DEFAULT_IMPORT_INTERVAL_S = 30.0


class DatabaseNotReadyError(BadInputError):
    """CURRENT names a version whose manifest or files are still missing after the wait
    (on FSx: not imported from the database bucket yet)."""


@dataclass(frozen=True)
class Database:
    name: str
    version: str
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str

    @property
    def role(self) -> str | None:
        return self.manifest.get("role")

    @property
    def sequences(self) -> Path:
        return self.path / self.manifest["sequences"]

    @property
    def max_hits(self) -> int | None:
        value = self.manifest.get("max_hits")
        return int(value) if value is not None else None

    def provenance(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "role": self.role,
            "path": str(self.path),
            "manifest_sha256": self.manifest_sha256,
            "files": self.manifest.get("files", {}),
            "source": self.manifest.get("source"),
            "license": self.manifest.get("license"),
        }


def _import_wait() -> tuple[int, float]:
    try:
        retries = int(os.environ.get(IMPORT_RETRIES_ENV, DEFAULT_IMPORT_RETRIES))
        interval = float(os.environ.get(IMPORT_INTERVAL_ENV, DEFAULT_IMPORT_INTERVAL_S))
    except ValueError as exc:
        raise BadInputError(f"{IMPORT_RETRIES_ENV} / {IMPORT_INTERVAL_ENV} must be numbers: {exc}") from exc
    return max(retries, 0), max(interval, 0.0)


def _read_version(base: Path, name: str) -> str:
    current = base / "CURRENT"
    if not current.is_file():
        raise BadInputError(f"database {name!r}: no {current} (a text file naming the version in use)")
    version = current.read_text().strip()
    if not _VERSION_RE.match(version):
        raise BadInputError(f"database {name!r}: {current} holds an invalid version {version!r}")
    return version


def _not_yet_there(path: Path) -> list[str]:
    """What of the version at `path` is missing: its manifest.json, or files it lists."""
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        return [str(manifest_path)]
    try:
        files = json.loads(manifest_path.read_text()).get("files") or {}
    except (ValueError, AttributeError):
        return []  # not JSON: reported as such by open_database, no point in waiting
    return [str(path / rel) for rel in sorted(files) if not (path / rel).is_file()]


def open_database(db_root: Path, name: str, *, verify: bool = True) -> Database:
    base = Path(db_root) / name
    retries, interval = _import_wait()
    for attempt in range(retries + 1):
        version = _read_version(base, name)  # re-read: CURRENT may move while we wait
        path = base / version
        missing = _not_yet_there(path)
        if not missing:
            break
        if attempt < retries:
            log("databases", name, f"version {version}: waiting {interval:g}s for {len(missing)} missing "
                f"path(s) (e.g. {missing[0]}) to be imported ({attempt + 1}/{retries})")
            time.sleep(interval)
    else:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatabaseNotReadyError(
            f"database {name!r} version {version} (named by {base / 'CURRENT'}) is incomplete after "
            f"{retries} retries {interval:g}s apart: missing {shown}. If it was just published, the DB file "
            f"system has not imported it yet (retry later, or raise {IMPORT_RETRIES_ENV}); otherwise republish it.")
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise BadInputError(f"database {name!r}: {manifest_path} is not valid JSON: {exc}") from exc
    db = Database(name=name, version=version, path=path, manifest=manifest,
                  manifest_sha256=sha256_file(manifest_path))
    if verify:
        verify_database(db)
    return db


def verify_database(db: Database) -> None:
    limit = int(os.environ.get(VERIFY_ENV, DEFAULT_VERIFY_MAX))
    files = db.manifest.get("files") or {}
    if "sequences" in db.manifest and db.manifest["sequences"] not in files:
        raise BadInputError(f"database {db.name}: manifest lists no checksum for {db.manifest['sequences']}")
    for rel, meta in files.items():
        f = (db.path / rel).resolve()
        if not f.is_relative_to(db.path.resolve()):
            raise BadInputError(f"database {db.name}: manifest path {rel!r} escapes {db.path}")
        if not f.is_file():
            raise BadInputError(f"database {db.name} version {db.version}: missing file {f}")
        size = f.stat().st_size
        if "bytes" in meta and size != int(meta["bytes"]):
            raise BadInputError(f"database {db.name}: {f} is {size} bytes, manifest says {meta['bytes']}")
        if size <= limit and "sha256" in meta and sha256_file(f) != meta["sha256"]:
            raise BadInputError(f"database {db.name}: sha256 of {f} does not match its manifest")


def msa_databases(db_root: Path | str) -> list[Database]:
    """The databases the jackhmmer search uses, in AlphaFold's order."""
    root = Path(db_root)
    if not root.is_dir():
        raise BadInputError(
            f"database root {root} does not exist (for the local demo, "
            "foldstack.demo_data.build_demo_data(<home>) builds <home>/db)"
        )
    found = []
    for current in sorted(root.glob("*/CURRENT")):
        db = open_database(root, current.parent.name, verify=False)
        if db.role in ROLE_ORDER and db.manifest.get("sequences"):
            found.append(db)
    if not found:
        raise BadInputError(
            f"no sequence database for the MSA under {root}: expected <db_root>/<name>/CURRENT and "
            f"<version>/manifest.json with a role in {ROLE_ORDER} (the demo builds {root}/demo_uniref)"
        )
    found.sort(key=lambda d: (ROLE_ORDER.index(d.role or ""), d.name))
    for db in found:
        verify_database(db)
    return found


def write_manifest(db_dir: Path, *, name: str, version: str, role: str, sequences: str,
                   max_hits: int | None, source: str, license: str, extra: dict[str, Any] | None = None,
                   ) -> dict[str, Any]:
    """Write `<db_dir>/manifest.json` for the files already in `db_dir` (used by the demo
    builder and by DB refresh scripts)."""
    files = {}
    for f in sorted(db_dir.rglob("*")):
        if f.is_file() and f.name != "manifest.json":
            files[str(f.relative_to(db_dir))] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    manifest = {
        "schema_version": 1,
        "name": name,
        "version": version,
        "role": role,
        "sequences": sequences,
        "max_hits": max_hits,
        "files": files,
        "source": source,
        "license": license,
        **(extra or {}),
    }
    (db_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def build_local_version(db_root: Path, name: str, version: str, fill: Callable[[Path], None]) -> Path:
    """Build `<db_root>/<name>/<version>/` locally unless it is already current and intact:
    `fill(tmp)` writes the files and the manifest into a hidden staging dir, which
    :func:`foldstack.storage.publish` renames into place (replacing a stale or corrupt
    version dir) before `CURRENT` is replaced atomically. Returns the version dir.
    Used by the demo and fixture builders; the cloud path is `steps.refresh_db`."""
    base, final = db_root / name, db_root / name / version
    if (base / "CURRENT").is_file():
        try:
            if open_database(db_root, name, verify=True).version == version:
                return final
        except BadInputError:
            pass  # missing, stale or corrupt: rebuild below
    with storage.publish(final, marker="manifest.json", replace=True) as pub:
        fill(pub.local_dir())
    storage.write_pointer(str(base / "CURRENT"), version + "\n")
    return final
