"""Database refresh, the source side: the refresh spec, the checksums it expects, fetching
files from ``https://``, ``s3://``, ``file://`` or a local path, and staging them in a
local directory where every file's sha256 is verified (then optionally unpacked) and the
version's ``manifest.json`` is written. Nothing here publishes anything: that is
:mod:`foldstack.steps.refresh_db_publish`. The step itself is :mod:`foldstack.steps.refresh_db`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from foldstack.core.clock import utcnow
from foldstack.core.errors import BadInputError
from foldstack.steps.catalogue import (
    SEQUENCE_ROLES,
    check_role,
    check_role_fields,
    load_catalogue,
)
from foldstack.steps.common import StepContext, log
from foldstack.steps.databases import check_name, check_version, write_manifest
from foldstack.steps.refresh_db_unpack import archive_format, unpack_archive

STEP = "refresh_db"
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
    # name -> sha256; a null digest only with trust_on_first_use (the catalogue's entries
    # whose publisher announces no checksum): the digest seen is recorded, not checked.
    files: dict[str, str | None] | None = None
    checksums: str | None = None
    file_sources: dict[str, str] | None = None  # name -> its own URI instead of <source>/<name>
    trust_on_first_use: bool = False
    unpack: bool = False  # unpack every *.tar, *.tar.gz/*.tgz, *.tar.zst, *.gz, *.zst after verification
    role: str | None = None  # one of foldstack.steps.databases.ROLES
    roles: list[str] | None = None  # several roles (the manifest's "roles"); role defaults to the first
    sequences: str | None = None
    seqres: str | None = None  # pdb_mmcif: the pdb_seqres file
    mmcif_dir: str | None = None  # pdb_mmcif: the directory of <pdb_id>.cif files
    hhsuite_db: str | None = None  # bfd, uniref30, pdb70: the HH-suite ffindex prefix
    mmseqs_db: str | None = None  # ColabFold's prebuilt expandable profile DB: its MMseqs2 prefix (no FASTA)
    max_template_date: str | None = None
    max_hits: int | None = Field(default=None, gt=0)
    mmseqs_index: bool | None = None  # None: yes for a sequence role (SEQUENCE_ROLES)
    mmseqs_gpu_index: bool = False  # also the padded GPU index (makepaddedseqdb)
    catalogue: str | None = None  # "name@version" this spec was made from (provenance)
    source_label: str | None = None  # what the manifest's "source" says, when not `source` (db build)
    license: str = ""
    description: str | None = None

    _check_name = field_validator("name")(check_name)
    _check_version = field_validator("version")(check_version)
    _check_role = field_validator("role")(check_role)

    @field_validator("files")
    @classmethod
    def _files(cls, v: dict[str, str | None] | None) -> dict[str, str | None] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("files must list at least one file")
        return {_safe_rel(rel): None if digest is None else _sha(digest, rel) for rel, digest in v.items()}

    @field_validator("file_sources")
    @classmethod
    def _file_sources(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return None if v is None else {_safe_rel(rel): uri for rel, uri in v.items()}

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("roles must list at least one role")
            for role in v:
                check_role(role)
        return v

    @model_validator(mode="before")
    @classmethod
    def _first_role(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("roles") and not data.get("role"):
            data = {**data, "role": data["roles"][0]}
        return data

    @model_validator(mode="after")
    def _one_checksum_source(self) -> DatabaseSpec:
        if (self.files is None) == (self.checksums is None):
            raise ValueError("give exactly one of `files` (name -> sha256) or `checksums` (a sha256sum file)")
        unknown = [f for f in (self.files or {}) if self.files and self.files[f] is None]
        if unknown and not self.trust_on_first_use:
            raise ValueError(f"no sha256 for {unknown}: give one, or set trust_on_first_use (the digest "
                             "seen is then recorded in the manifest, not verified)")
        stray = set(self.file_sources or {}) - set(self.files or {})
        if stray and self.files is not None:
            raise ValueError(f"file_sources names files not in `files`: {sorted(stray)}")
        for role in self.roles or [self.role]:
            check_role_fields(f"database {self.name}", role, self.sequences, self.seqres, self.mmcif_dir,
                              self.hhsuite_db, self.mmseqs_db)
        if self.build_index and not (self.sequences or self.mmseqs_db):
            raise ValueError("mmseqs_index needs `sequences` (the FASTA to index) or `mmseqs_db`")
        if self.mmseqs_db:
            _safe_rel(self.mmseqs_db)
            if self.sequences or self.mmseqs_gpu_index:
                raise ValueError("`mmseqs_db` (a prebuilt profile database) takes no `sequences` and no "
                                 "mmseqs_gpu_index (its GPU index is not supported yet)")
        return self

    @property
    def build_index(self) -> bool:
        """Whether publishing builds the MMseqs2 index (once per version)."""
        if self.mmseqs_index is not None:
            return self.mmseqs_index
        return any(r in SEQUENCE_ROLES for r in (self.roles or [self.role]))


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
    """A refresh spec. ``{"catalogue": "uniref90@2022_05", ...}`` expands the catalogue entry
    (:mod:`foldstack.steps.catalogue`); other keys given with it override the entry's."""
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(data, dict) and data.get("catalogue"):
            data = {**load_catalogue().refresh_spec(str(data["catalogue"])),
                    **{k: v for k, v in data.items() if k != "catalogue"}}
        return DatabaseSpec.model_validate(data)
    except (ValueError, ValidationError, KeyError) as exc:
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


# ------------------------------------------------------------------ staging and verification


def expected_checksums(spec: DatabaseSpec, timer: Any) -> dict[str, str | None]:
    if spec.files is not None:
        return dict(spec.files)
    assert spec.checksums is not None
    uri = _join(spec.source, spec.checksums)
    with timer("checksums"), open_source(uri) as f:
        return dict(parse_checksum_file(f.read(4 << 20).decode("utf-8", "replace")))


def source_uri(spec: DatabaseSpec, rel: str) -> str:
    """Where file `rel` is fetched from: its own ``file_sources`` URI, else ``<source>/<rel>``."""
    return (spec.file_sources or {}).get(rel) or _join(spec.source, rel)


def source_matches(recorded: Any, expected: dict[str, str | None]) -> bool:
    """A published version's ``source_files`` against a request: the same names, and the
    same digest wherever the request gives one (a trust-on-first-use name matches any)."""
    if not isinstance(recorded, dict) or set(recorded) != set(expected):
        return False
    return all(want is None or recorded[rel] == want for rel, want in expected.items())


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _build_indexes(spec: DatabaseSpec, staging: Path, say: Any) -> dict[str, Any]:
    """MMseqs2 index(es) of the version's FASTA inside the staging dir: published with it."""
    from foldstack.steps.mmseqs import INDEX_DIR, build_index, index_name, mmseqs_binary

    if spec.mmseqs_db:  # ColabFold's prebuilt profile DB: createindex next to it, as setup_databases.sh does
        from foldstack.steps.mmseqs_profile import build_profile_index

        rel = f"{INDEX_DIR}/{index_name(mmseqs_binary(False))}"
        build = build_profile_index(staging / spec.mmseqs_db, staging / rel, threads=_cpus(), log=say)
        return {"mmseqs2": {"path": rel, "target": spec.mmseqs_db, **build}}
    assert spec.sequences is not None
    sequences = staging / spec.sequences
    if not sequences.is_file():
        raise BadInputError(f"`sequences` {spec.sequences!r} is not among the fetched (and unpacked) files")
    out: dict[str, Any] = {}
    for gpu in (False, True) if spec.mmseqs_gpu_index else (False,):
        binary = mmseqs_binary(gpu)  # the GPU index by the CUDA build that searches it
        rel = f"{INDEX_DIR}/{index_name(binary, gpu=gpu)}"
        build = build_index(sequences, staging / rel, binary=binary, threads=_cpus(), gpu=gpu, log=say)
        out["mmseqs2_gpu" if gpu else "mmseqs2"] = {"path": rel, "target": f"{rel}/target", **build}
    return out


def stage(spec: DatabaseSpec, expected: dict[str, str | None], staging: Path, run_id: str, previous: str | None,
          say: Any, timer: Any) -> tuple[dict[str, Any], int]:
    """Fetch every file into `staging`, verify its sha256, unpack, build the MMseqs2 index,
    write manifest.json and check that the manifest lists exactly what was verified and
    produced from it. Returns (manifest, bytes fetched)."""
    total = 0
    seen: dict[str, str] = {}
    with timer("download"):
        for rel, want in sorted(expected.items()):
            uri = source_uri(spec, rel)
            say(f"fetching {uri}")
            got, size = fetch(uri, staging / rel)
            if want is None:
                say(f"{rel}: no published sha256; recorded {got} (trust on first use)")
            elif got != want:
                raise ChecksumMismatchError(
                    f"{uri}: sha256 {got} does not match the expected {want}; nothing was published "
                    f"and CURRENT still names {previous!r}")
            seen[rel] = got
            total += size
    produced = set(expected)
    if spec.unpack:
        with timer("unpack"):
            for rel in sorted(expected):
                fmt = archive_format(rel)
                if fmt is not None:
                    names = unpack_archive(staging / rel, staging, fmt)
                    say(f"unpacked {rel} ({fmt}): {len(names)} file(s)")
                    produced.discard(rel)
                    produced.update(names)
    indexes: dict[str, Any] = {}
    if spec.build_index:
        with timer("mmseqs_index"):
            indexes = _build_indexes(spec, staging, say)
        produced.update(str(f.relative_to(staging)) for f in (staging / "mmseqs").rglob("*") if f.is_file())
        if spec.mmseqs_db:  # the profile index lies next to its DB (<prefix>.idx*), where MMseqs2 looks for it
            prefix = staging / spec.mmseqs_db
            produced.update(str(f.relative_to(staging)) for f in prefix.parent.glob(prefix.name + ".idx*"))
    with timer("manifest"):
        extra: dict[str, Any] = {
            "source_files": seen, "fetched_at": utcnow(), "refresh_run_id": run_id,
            **({"unverified_files": sorted(r for r, w in expected.items() if w is None)}
               if any(w is None for w in expected.values()) else {}),
            **({"indexes": indexes} if indexes else {}),
            **({"roles": list(spec.roles)} if spec.roles else {}),
            **{k: v for k, v in (("seqres", spec.seqres), ("mmcif_dir", spec.mmcif_dir),
                                 ("hhsuite_db", spec.hhsuite_db), ("mmseqs_db", spec.mmseqs_db),
                                 ("max_template_date", spec.max_template_date),
                                 ("catalogue", spec.catalogue), ("description", spec.description)) if v},
        }
        manifest = write_manifest(
            staging, name=spec.name, version=spec.version, role=spec.role,  # type: ignore[arg-type]
            sequences=spec.sequences, max_hits=spec.max_hits, source=spec.source_label or spec.source,  # type: ignore[arg-type]
            license=spec.license, extra=extra,
        )
        for key in ("sequences", "seqres"):
            rel = getattr(spec, key)
            if rel and rel not in manifest["files"]:
                raise BadInputError(f"`{key}` {rel!r} is not among the fetched (and unpacked) files "
                                    f"{sorted(manifest['files'])[:20]}")
        if spec.mmcif_dir and not (staging / spec.mmcif_dir).is_dir():
            raise BadInputError(f"`mmcif_dir` {spec.mmcif_dir!r} is not a directory of the fetched files")
        if spec.hhsuite_db and not any(rel.startswith(spec.hhsuite_db + "_") for rel in manifest["files"]):
            raise BadInputError(f"`hhsuite_db` {spec.hhsuite_db!r}: no {spec.hhsuite_db}_* files were fetched")
        if spec.mmseqs_db:
            from foldstack.steps.mmseqs_profile import missing_profile_parts

            lacking = missing_profile_parts(staging / spec.mmseqs_db)
            if lacking:
                raise BadInputError(f"`mmseqs_db` {spec.mmseqs_db!r}: the fetched files lack {', '.join(lacking)} "
                                    "(an expandable profile database as ColabFold's tsv2exprofiledb writes it)")
        # write_manifest re-read every file from disk: the published set must be exactly
        # the verified set (archives replaced by what they unpacked to, plus the index).
        if set(manifest["files"]) != produced:
            raise BadInputError(f"staged files {sorted(manifest['files'])[:20]} differ from the verified "
                                f"set {sorted(produced)[:20]}")
        for rel, got in seen.items():
            if rel in manifest["files"] and manifest["files"][rel]["sha256"] != got:
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
