"""Sequence databases under the DB root (read-only to jobs).

Layout (the DB cache)::

    <db_root>/<db_name>/CURRENT                  text file: the version in use, e.g. "2022_05"
    <db_root>/<db_name>/<version>/manifest.json  what the version holds
    <db_root>/<db_name>/<version>/<files...>

``manifest.json``::

    {
      "schema_version": 1,
      "name": "uniref90", "version": "2022_05",
      "role": "uniref90",               # what it is for: one of ROLES (below)
      "roles": ["uniref90", ...],       # optional: a database serving several roles (the demo's)
      "sequences": "uniref90.fasta",    # the FASTA file jackhmmer streams / MMseqs2 indexes
      "sequence_count": 135301051,      # records in it, counted once at build: jackhmmer's Z
      "hhsuite_db": "bfd_..._opt",      # HH-suite roles (bfd, uniref30, pdb70): the ffindex prefix
      "mmseqs_db": "uniref30_2302_db",  # ColabFold's prebuilt expandable profile DB (colabfold_* roles, no FASTA)
      "max_hits": 10000,                # informational; the preset decides (AlphaFold's caps)
      "files": {"uniref90.fasta": {"sha256": "...", "bytes": 123}},
      "source": "...", "license": "..."
    }

Which roles a run searches, with which tool and parameters, is its **database preset**
(:mod:`foldstack.steps.presets`).

How databases are found: the step lists ``<db_root>/*/CURRENT``, reads each version's
manifest and serves each role from the databases that declare it (names sorted within a
role). Other directories under the root (e.g. ``weights/``) have no ``CURRENT`` and are
ignored. A missing or inconsistent database is a bad-input error (exit 2) naming the path.

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

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.core.errors import BadInputError
from foldstack.core.hashing import sha256_file
from foldstack.steps.common import log

ROLE_ORDER = ("uniref90", "small_bfd", "mgnify")  # the FASTA (jackhmmer) MSA roles, in AlphaFold's MSA order

# Every role a database can serve, with how to get it (the hint a missing one gets).
_AF = "AlphaFold's scripts/download_{}.sh"
ROLES: dict[str, str] = {
    "uniref90": _AF.format("uniref90") + " (FASTA)",
    "mgnify": _AF.format("mgnify") + " (FASTA)",
    "small_bfd": _AF.format("small_bfd") + " (FASTA)",
    "bfd": _AF.format("bfd") + " (HH-suite database; manifest: hhsuite_db = its ffindex prefix)",
    "uniref30": _AF.format("uniref30") + " (HH-suite database; manifest: hhsuite_db)",
    "uniprot": _AF.format("uniprot") + " (FASTA of UniProt TrEMBL + Swiss-Prot, headers sp|ACC|NAME_SPECIES)",
    "pdb70": _AF.format("pdb70") + " (HH-suite database; manifest: hhsuite_db)",
    "pdb_mmcif": _AF.format("pdb_mmcif") + " and download_pdb_seqres.sh (mmcif_files/ + pdb_seqres.txt)",
    "colabfold_uniref30": "ColabFold's setup_databases.sh: its prebuilt UniRef30 profile database (catalogue "
                          "colabfold_uniref30; manifest: mmseqs_db = its MMseqs2 prefix) or sequences (FASTA) "
                          "that foldstack indexes with MMseqs2",
    "colabfold_envdb": "ColabFold's setup_databases.sh: its prebuilt environmental profile database (catalogue "
                       "colabfold_envdb; manifest: mmseqs_db) or sequences (FASTA) indexed with MMseqs2",
}
PUBLISH_HINT = ("publish it under the database root with the refresh_databases workflow (or `foldstack db`), "
                "its manifest naming the role")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VERIFY_ENV = "FOLDSTACK_DB_VERIFY_MAX_BYTES"
DEFAULT_VERIFY_MAX = 256 * 1024 * 1024
IMPORT_RETRIES_ENV = "FOLDSTACK_DB_IMPORT_RETRIES"
IMPORT_INTERVAL_ENV = "FOLDSTACK_DB_IMPORT_INTERVAL_S"
DEFAULT_IMPORT_RETRIES = 10
DEFAULT_IMPORT_INTERVAL_S = 30.0


def check_name(name: str) -> str:
    """A database's (or a catalogue entry's) name, else ValueError: it is a path segment."""
    if not _NAME_RE.match(name):
        raise ValueError(f"name {name!r} must be 1-64 of [A-Za-z0-9_-], starting alphanumeric")
    return name


def check_version(version: str) -> str:
    """A database version, else ValueError: it is a path segment (and what CURRENT holds)."""
    if not _VERSION_RE.match(version):
        raise ValueError(f"version {version!r} must be 1-64 of [A-Za-z0-9._-], starting alphanumeric")
    return version


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
    def roles(self) -> tuple[str, ...]:
        """Every role this database serves (``roles``, else its one ``role``)."""
        roles = self.manifest.get("roles")
        if isinstance(roles, list) and roles:
            return tuple(str(r) for r in roles)
        return (self.role,) if self.role else ()

    @property
    def sequence_count(self) -> int | None:
        """Records in the FASTA, counted at build (jackhmmer's Z); None if not recorded."""
        value = self.manifest.get("sequence_count")
        return int(value) if value is not None else None

    @property
    def hhsuite_prefix(self) -> Path | None:
        """HH-suite databases: the ffindex prefix (``<prefix>_a3m.ffdata`` etc.)."""
        value = self.manifest.get("hhsuite_db")
        return self._inside(value) if value else None

    @property
    def mmseqs_db(self) -> Path | None:
        """ColabFold's prebuilt expandable profile database: its MMseqs2 prefix (``<prefix>``,
        ``<prefix>_seq``, ``<prefix>_aln``, ``<prefix>.idx`` ...), or None (a FASTA database)."""
        value = self.manifest.get("mmseqs_db")
        return self._inside(value) if value else None

    @property
    def sequences(self) -> Path:
        return self._inside(self.manifest["sequences"])

    def _inside(self, rel: str) -> Path:
        """``<version dir>/<rel>`` for a manifest path; bad input if it names a place outside
        the version directory (absolute, ``..``). Searches open databases unverified, so the
        check is here, not only in :func:`verify_database` (which also resolves links)."""
        norm = os.path.normpath(str(rel))
        if os.path.isabs(norm) or norm == ".." or norm.startswith("../"):
            raise BadInputError(f"database {self.name}: manifest path {rel!r} escapes {self.path}")
        return self.path / rel

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


_PINS: ContextVar[Mapping[str, str] | None] = ContextVar("foldstack_db_pins", default=None)


@contextlib.contextmanager
def pinned_versions(pins: Mapping[str, str] | None) -> Iterator[None]:
    """While active, :func:`open_database` opens ``pins[name]`` instead of the version
    ``CURRENT`` names (a run's ``db_versions``: ``--db NAME=VERSION``)."""
    for name, version in (pins or {}).items():
        if not _VERSION_RE.match(str(version)) or not _VERSION_RE.match(str(name)):
            raise BadInputError(f"invalid pinned database version {name!r}={version!r}")
    token = _PINS.set(dict(pins or {}))
    try:
        yield
    finally:
        _PINS.reset(token)


def current_pins() -> dict[str, str]:
    """The versions pinned by :func:`pinned_versions` (empty: every database at CURRENT)."""
    return dict(_PINS.get() or {})


def request_pins(run_dir: Path) -> dict[str, str]:
    """A run's pinned versions: ``db_versions`` of ``<run_dir>/input/request.json`` (what
    Stage Inputs wrote), or {} when absent."""
    path = Path(run_dir) / "input" / "request.json"
    if not path.is_file():
        return {}
    try:
        pins = json.loads(path.read_text()).get("db_versions") or {}
    except (ValueError, AttributeError) as exc:
        raise BadInputError(f"{path}: not a JSON request object: {exc}") from exc
    return {str(k): str(v) for k, v in pins.items()}


def with_request_pins(body: Callable[[Any], None]) -> Callable[[Any], None]:
    """A step body (``body(ctx)``) that runs with its run's pinned database versions
    (:func:`request_pins` of ``ctx.run_dir``) active."""
    def pinned_body(ctx: Any) -> None:
        pins = request_pins(ctx.run_dir)
        if pins:
            ctx.log(f"database versions pinned by the request: {pins}")
        with pinned_versions(pins):
            body(ctx)

    return pinned_body


def open_database(db_root: Path, name: str, *, verify: bool = True, version: str | None = None) -> Database:
    """The database `name` at `version`, else the version pinned for this run
    (:func:`pinned_versions`), else the one ``CURRENT`` names."""
    base = Path(db_root) / name
    pinned = version or (_PINS.get() or {}).get(name)
    if pinned is not None and not _VERSION_RE.match(pinned):
        raise BadInputError(f"database {name!r}: invalid version {pinned!r}")
    if pinned is not None and not base.is_dir():
        raise BadInputError(f"database {name!r} version {pinned} was asked for, but {base} does not exist")
    named_by = f"pinned for this run (installed: {', '.join(installed_versions(base)) or 'none'})" \
        if pinned is not None else f"named by {base / 'CURRENT'}"
    retries, interval = _import_wait()
    for attempt in range(retries + 1):
        version = pinned or _read_version(base, name)  # re-read: CURRENT may move while we wait
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
            f"database {name!r} version {version} ({named_by}) is incomplete after "
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


def installed_versions(base: Path) -> list[str]:
    """Versions published under ``<db_root>/<name>`` (directories with a manifest.json)."""
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file())


def verify_database(db: Database) -> None:
    limit = int(os.environ.get(VERIFY_ENV, DEFAULT_VERIFY_MAX))
    files = db.manifest.get("files") or {}
    if db.manifest.get("sequences") and db.manifest["sequences"] not in files:  # null: no FASTA (templates)
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
    builder and by DB refresh scripts). A FASTA `sequences` file is counted once here
    (``sequence_count``: jackhmmer's Z, so a streamed search needs no counting pass)."""
    extra = dict(extra or {})
    fasta = db_dir / sequences if sequences else None
    if fasta is not None and fasta.is_file() and "sequence_count" not in extra:
        extra["sequence_count"] = count_fasta_records(fasta)
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
        **extra,
    }
    (db_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def count_fasta_records(path: Path) -> int:
    """Records (``>`` lines) in a FASTA file, read in 8 MiB chunks (memory stays flat)."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            count += chunk.count(b"\n>") + (1 if last == b"\n" and chunk[:1] == b">" else 0)
            last = chunk[-1:]
    return count


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

