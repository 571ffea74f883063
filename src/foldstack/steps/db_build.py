"""A database version from one's own FASTA files (``foldstack db build``), what is
installed (``foldstack db list``) and an index for a version published without one
(``foldstack db index``).

``build_database`` joins the FASTA files (plain or ``.gz``) into ``<name>.fasta`` in a
private staging directory, checks every record, and publishes it exactly the way the
``refresh_databases`` workflow publishes a download (:func:`foldstack.steps.refresh_db.refresh_database`):
the sha256 of every file in ``manifest.json``, the MMseqs2 index built once and published
with the version, then ``CURRENT`` last. The destination is a local database root
(``$FOLDSTACK_HOME/db``) or an ``s3://bucket/prefix``. Building the same files again is a
no-op; a different content under a version name that ``CURRENT`` names is refused.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from foldstack import storage
from foldstack.core.errors import BadInputError
from foldstack.core.hashing import sha256_file
from foldstack.steps.catalogue import SEQUENCE_ROLES
from foldstack.steps.databases import Database, installed_versions, open_database
from foldstack.steps.refresh_db import refresh_database
from foldstack.steps.refresh_db_publish import is_s3, read_current
from foldstack.steps.refresh_db_source import parse_spec

_RESIDUES = re.compile(rb"^[A-Za-z*.-]+$")
Log = Callable[[str], None]


def _open_fasta(path: Path) -> IO[bytes]:
    if not path.is_file():
        raise BadInputError(f"FASTA file not found: {path}")
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115 - closed by the caller


def _records(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(header line, sequence) of every record; BadInputError naming the line otherwise."""
    header: bytes | None = None
    parts: list[bytes] = []
    with _open_fasta(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith(b";"):
                continue
            if line.startswith(b">"):
                if header is not None:
                    yield header, b"".join(parts)
                if len(line) < 2 or line[1:2].isspace():
                    raise BadInputError(f"{path}:{n}: a FASTA header needs an id right after '>'")
                header, parts = line, []
            elif header is None:
                raise BadInputError(f"{path}:{n}: not FASTA (no '>' header before the first sequence line)")
            elif not _RESIDUES.match(line):
                raise BadInputError(f"{path}:{n}: a sequence line holds characters that are not residues")
            else:
                parts.append(line.rstrip(b"*"))
    if header is not None:
        yield header, b"".join(parts)


def join_fasta(fastas: Sequence[Path], dest: Path) -> dict[str, int]:
    """Write every record of `fastas` to `dest` (60 residues a line); counts."""
    records = residues = 0
    with open(dest, "wb") as out:
        for path in fastas:
            for header, seq in _records(Path(path)):
                if not seq:
                    raise BadInputError(f"{path}: record {header[1:].split()[0].decode(errors='replace')!r} "
                                        "has no sequence")
                out.write(header + b"\n")
                for i in range(0, len(seq), 60):
                    out.write(seq[i:i + 60] + b"\n")
                records += 1
                residues += len(seq)
    if not records:
        raise BadInputError(f"no FASTA records in {', '.join(map(str, fastas))}")
    return {"records": records, "residues": residues}


def build_database(dest: Path | str, name: str, version: str, fastas: Sequence[Path | str], *,
                   role: str | Sequence[str] | None = "uniref90", max_hits: int | None = None, index: bool = True,
                   gpu_index: bool = False, license: str = "", description: str | None = None,
                   staging_dir: Path | str | None = None, log: Log | None = None) -> dict[str, Any]:
    """Publish `fastas` as ``<dest>/<name>/<version>/`` (see the module docstring); returns
    what the refresh machinery reports (``action``: published | already_current | republished)."""
    paths = [Path(f).expanduser().resolve() for f in fastas]
    if not paths:
        raise BadInputError("db build needs at least one --fasta file")
    roles = [role] if isinstance(role, str) else list(role or [])
    bad = [r for r in roles if r not in SEQUENCE_ROLES]
    if bad:
        raise BadInputError(f"--role {', '.join(bad)}: a database built from FASTA serves {', '.join(SEQUENCE_ROLES)}")
    local = not is_s3(dest)
    if local:
        Path(dest).mkdir(parents=True, exist_ok=True)
    fasta_name = f"{name}.fasta"
    base_tmp = Path(staging_dir) if staging_dir else (Path(dest) if local else Path(tempfile.gettempdir()))
    base_tmp.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".db-build-", dir=base_tmp))
    try:
        counts = join_fasta(paths, work / fasta_name)
        digest = sha256_file(work / fasta_name)
        label = "foldstack db build: " + ", ".join(p.name for p in paths)
        spec = parse_spec({
            "name": name, "version": version, "source": str(work), "source_label": label,
            "files": {fasta_name: digest}, "role": roles[0] if roles else None,
            "roles": roles if len(roles) > 1 else None, "sequences": fasta_name, "max_hits": max_hits,
            "mmseqs_index": index, "mmseqs_gpu_index": gpu_index, "license": license,
            "description": description or f"{counts['records']} sequences, {counts['residues']} residues "
                                          f"from {', '.join(str(p) for p in paths)}",
        })
        run_id = f"dbbuild-{uuid.uuid4().hex[:12]}"
        outcome = refresh_database(spec, dest if not local else Path(dest), run_id,
                                   staging_root=work / "staging" if not local else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if log is not None:
        log(f"{name}/{version}: {outcome['action']} ({counts['records']} sequences) at {outcome['path']}")
    return {**outcome, **counts}


def register_profile_database(dest: Path | str, name: str, version: str, prefix: Path | str, *,
                              role: str = "colabfold_uniref30", index: bool = True, license: str = "",
                              description: str | None = None, log: Log | None = None) -> dict[str, Any]:
    """Publish a ColabFold prebuilt expandable profile database already on disk (what
    ``setup_databases.sh`` unpacks: ``<prefix>``, ``<prefix>_seq``, ``<prefix>_aln`` ...) as
    ``<dest>/<name>/<version>/`` serving `role`, the way the refresh workflow publishes the
    catalogue's ``colabfold_uniref30``/``colabfold_envdb`` downloads: every file's sha256 in
    the manifest (``mmseqs_db`` names the prefix), the index (``createindex``) built once,
    ``CURRENT`` last. An index already next to the files is not copied (it is rebuilt)."""
    from foldstack.steps.catalogue import PROFILE_ROLES
    from foldstack.steps.mmseqs_profile import missing_profile_parts

    if role not in PROFILE_ROLES:
        raise BadInputError(f"--role {role}: a prebuilt profile database serves {', '.join(PROFILE_ROLES)}")
    prefix = Path(prefix).expanduser().resolve()
    lacking = missing_profile_parts(prefix)
    if lacking:
        raise BadInputError(f"{prefix} is not an expandable MMseqs2 profile database: missing {', '.join(lacking)}")
    files = sorted(p for p in prefix.parent.iterdir() if p.is_file() and p.name.startswith(prefix.name)
                   and p.name[len(prefix.name):][:1] in ("", ".", "_")
                   and not p.name[len(prefix.name):].startswith(".idx"))
    spec = parse_spec({
        "name": name, "version": version, "source": str(prefix.parent),
        "source_label": f"foldstack db: the profile database {prefix.name}",
        "files": {p.name: sha256_file(p) for p in files}, "role": role, "mmseqs_db": prefix.name,
        "mmseqs_index": index, "license": license,
        "description": description or f"ColabFold expandable profile database {prefix.name}",
    })
    if not is_s3(dest):
        Path(dest).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".db-profile-") as work:
        outcome = refresh_database(spec, dest if is_s3(dest) else Path(dest), f"dbprofile-{uuid.uuid4().hex[:12]}",
                                   staging_root=Path(work) / "staging" if is_s3(dest) else None)
    if log is not None:
        log(f"{name}/{version}: {outcome['action']} ({len(files)} files of {prefix.name}) at {outcome['path']}")
    return outcome


def list_databases(root: Path | str) -> list[dict[str, Any]]:
    """Every database under `root` (a directory or ``s3://`` prefix): name, the version
    CURRENT names, and each installed version's role, size and MMseqs2 indexes."""
    if is_s3(root):
        return _list_s3(str(root).rstrip("/"))
    base = Path(root)
    if not base.is_dir():
        return []
    out = []
    for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = installed_versions(d)
        current = read_current(d)
        if not versions and current is None:
            continue  # e.g. weights/
        rows = []
        for v in versions:
            try:
                manifest = json.loads((d / v / "manifest.json").read_text())
            except (OSError, ValueError):
                manifest = {}
            rows.append(_version_row(v, manifest, current,
                                     [p.parent.name for p in sorted((d / v / "mmseqs").glob("*/BUILD.json"))]))
        out.append({"name": d.name, "current": current, "versions": rows})
    return out


def _version_row(version: str, manifest: dict[str, Any], current: str | None, indexes: list[str] | None = None,
                 ) -> dict[str, Any]:
    files = manifest.get("files") or {}
    if indexes is None:  # from the manifest (S3): the index dirs its files name
        indexes = sorted({rel.split("/")[1] for rel in files
                          if rel.startswith("mmseqs/") and rel.endswith("/BUILD.json")})
    return {"version": version, "current": version == current, "role": manifest.get("role"),
            "bytes": sum(int(m.get("bytes", 0)) for m in files.values()), "files": len(files),
            "mmseqs_indexes": indexes, "source": manifest.get("source"),
            "sequence_count": manifest.get("sequence_count")}


def _list_s3(root: str) -> list[dict[str, Any]]:
    names: dict[str, set[str]] = {}
    for info in storage.list_prefix(root):
        rel = info.uri[len(root) + 1:]
        parts = rel.split("/")
        if len(parts) == 3 and parts[2] == "manifest.json" and not parts[0].startswith("."):
            names.setdefault(parts[0], set()).add(parts[1])
        elif len(parts) == 2 and parts[1] == "CURRENT":
            names.setdefault(parts[0], set())
    out = []
    for name in sorted(names):
        current = read_current(f"{root}/{name}")
        rows = []
        for v in sorted(names[name]):
            try:
                manifest = json.loads(storage.read_bytes(f"{root}/{name}/{v}/manifest.json"))
            except ValueError:
                manifest = {}
            rows.append(_version_row(v, manifest, current))
        out.append({"name": name, "current": current, "versions": rows})
    return out


def index_database(root: Path | str, name: str, version: str | None = None, *, gpu: bool = False,
                   threads: int = 1, log: Log | None = None) -> Path:
    """Build the MMseqs2 index of a local version published without one (next to it;
    once). The manifest is not changed: the msa step finds the index by its path."""
    from foldstack.steps.mmseqs import build_target_index

    if is_s3(root):
        raise BadInputError("db index works on a local database root; for s3:// republish the version "
                            "(db build or the refresh workflow build the index)")
    db: Database = open_database(Path(root), name, version=version, verify=True)
    if db.mmseqs_db is not None:
        raise BadInputError(f"database {name}/{db.version} is a prebuilt profile database: republish it (the "
                            "refresh workflow or register_profile_database run its createindex)")
    if not db.manifest.get("sequences"):
        raise BadInputError(f"database {name}/{db.version} has no `sequences` FASTA to index")
    return build_target_index(db, threads=threads, gpu=gpu, log=log or (lambda m: None))
