"""Per-micrograph preprocessing cache: a movie is motion-corrected, CTF-fitted, picked and
extracted once per preprocessing setting, whatever run it comes in.

A scientist re-running a dataset with other 2D/3D knobs, another reference or the bias
guard on or off gets the same preprocessing; it is the part of the chain that scales with
the movies. Each micrograph's outputs are kept under

    <cache_root>/cryoem/preprocess/<key>/
        files/<path>    every file of the micrograph the later stages read, at the path it
                        has in the extract stage's folder (its particle stack)
        entry.json      written last: every file's sha256, the micrograph's particle STAR
                        rows (columns + rows), the optics block and its QC record

``key`` is the sha256 of a canonical JSON (:func:`key_material`) of the movie's bytes
(sha256) and name (the STAR rows name it), the optics, particle diameter and box, every
knob preprocessing reads (:data:`PREPROCESS_KNOBS`), the CTF estimator that will run
(and the CTFFIND binary's sha256), RELION's version and the sha256 of foldstack's
preprocessing code. The knobs only later stages read (:data:`DOWNSTREAM_KNOBS`) are not in
it. Every knob is in exactly one of the two lists (a test holds that).

A hit re-verifies every file against ``entry.json``; a damaged, partial or unreadable
entry is a miss, computed again and rewritten. Entries are JSON and raw files only
(nothing unpickled), and an entry's paths are checked to stay inside it and inside the
stage folder they are restored into. A cache failure never fails the step: a read failure
is a miss, a write failure is logged once and the result is not kept. Two jobs that store
one micrograph at once (the same movie in two runs) may leave files of one and the
``entry.json`` of the other (RELION stamps the time into MRC headers): a damaged entry, so
a miss, rewritten by the next run.

Reads and writes go through :mod:`foldstack.storage`: ``<home>/cache`` locally, the
database bucket's ``cache/`` prefix in the cloud (Stage Inputs hands the root to the
preprocess job, empty when the request's ``reuse_cache`` is false; the job role may read
and write ``cache/``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from foldstack import __version__ as foldstack_version
from foldstack import storage
from foldstack.core.clock import utcnow
from foldstack.core.hashing import sha256_bytes, sha256_file
from foldstack.cryoem.knobs import Knobs
from foldstack.cryoem.request import CryoemRequest

SCHEMA_VERSION = 1
MARKER = "entry.json"
FILES_DIR = "files"
HIT, MISS, OFF = "hit", "miss", "off"
_MAX_MARKER_BYTES = 16 << 20
_MAX_FILE_BYTES = 2 << 30  # one micrograph's particle stack
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")

# The knobs the preprocess stages read (motioncorr, ctf, pick, extract): all in the key.
PREPROCESS_KNOBS = ("ctf_estimator", "ctf_defocus_min", "ctf_defocus_max", "ctffind_box", "ctffind_min_resolution",
                    "ctffind_max_resolution", "ctffind_astigmatism", "pick_threshold")
# The knobs only curate and later stages read: not in the key (curation reads the QC record).
DOWNSTREAM_KNOBS = ("max_drift_px", "max_ctf_resolution", "min_ctf_fom", "min_ctffind_cc", "min_particles",
                    "classes_2d", "iter_2d", "fast_subsets_2d", "maxsig_2d", "max_resolution_2d", "offset_range_2d",
                    "min_class_fraction", "max_class_resolution_ratio", "reference_lowpass", "guard_lowpass",
                    "guard_denovo", "denovo_iter", "denovo_resolution", "denovo_subset", "denovo_offset_range",
                    "mask_protein_fraction")
# foldstack's code that makes the cached outputs: its bytes are in the key
CODE_MODULES = ("preprocess", "ctf", "ctffind", "mrc", "star", "stagekit", "relion", "cache")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    here = Path(__file__).parent
    return sha256_bytes(b"".join(sha256_bytes((here / f"{m}.py").read_bytes()).encode() for m in CODE_MODULES))


def tool_versions(knobs: Knobs) -> dict[str, str]:
    """What runs: RELION's version, the CTF estimator this job will use (and CTFFIND's
    binary, by its bytes), foldstack's version and preprocessing code."""
    from foldstack.cryoem import ctffind
    from foldstack.cryoem.relion import relion_version

    estimator, binary = ctffind.choose(knobs.ctf_estimator)
    return {"relion": relion_version(), "ctf_estimator": estimator,
            "ctffind_sha256": sha256_file(binary) if binary else "", "foldstack": foldstack_version,
            "preprocess_code_sha256": code_digest()}


def key_material(request: CryoemRequest, knobs: Knobs, *, movie_name: str, movie_sha256: str,
                 tools: dict[str, str]) -> dict[str, Any]:
    """Everything a micrograph's preprocessing outputs depend on (the key is its sha256)."""
    return {"schema_version": SCHEMA_VERSION, "movie": {"name": movie_name, "sha256": movie_sha256},
            "optics": asdict(request.optics), "particle_diameter": request.particle_diameter,
            "box_size": request.box_size, "frames": request.frames,
            "knobs": {name: getattr(knobs, name) for name in PREPROCESS_KNOBS}, "tools": dict(tools)}


def key_of(material: dict[str, Any]) -> str:
    return sha256_bytes(json.dumps(material, sort_keys=True, separators=(",", ":")).encode())


def check_relpath(relpath: str) -> str:
    """A file's path inside an entry: relative, POSIX, plain names only (ValueError)."""
    parts = PurePosixPath(relpath).parts
    if not parts or relpath.startswith("/") or "\\" in relpath or not all(_SAFE_PART.match(p) for p in parts):
        raise ValueError(f"unsafe path {relpath!r} in a cache entry")
    return relpath


@dataclass
class Entry:
    """One micrograph's preprocessing outputs, as the extract stage assembles them."""

    micrograph: str  # the micrograph's name (the movie's, less its extension)
    columns: list[str]  # particles.star's particle columns
    rows: list[list[str]]  # this micrograph's particle rows
    optics: dict[str, Any]  # particles.star's optics block: {"columns": [...], "rows": [[...]]}
    qc: dict[str, Any]  # its qc.json record
    files: dict[str, bytes] = field(repr=False)  # path in the extract folder -> bytes


@dataclass
class PreprocessCache:
    """Get/put micrograph entries under ``<cache_root>/cryoem/preprocess/``."""

    cache_root: str
    tools: dict[str, str]
    log: Callable[[str], None]
    _write_failed: bool = False

    def key(self, request: CryoemRequest, knobs: Knobs, movie: Path) -> str:
        return key_of(key_material(request, knobs, movie_name=movie.name, movie_sha256=sha256_file(movie),
                                   tools=self.tools))

    def _dir(self, key: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ValueError(f"bad cache key {key!r}")
        return storage.safe_join(self.cache_root, "cryoem", "preprocess", key)

    # -- read -----------------------------------------------------------------------------
    def get(self, key: str, micrograph: str) -> Entry | None:
        """The entry, verified, or None (absent, damaged or unreadable: a miss)."""
        try:
            found, why = self._get(key, micrograph)
        except Exception as exc:  # noqa: BLE001 - a broken cache is a miss, never a failure
            found, why = None, f"unreadable ({type(exc).__name__}: {exc})"
        if found is None and why:
            self.log(f"preprocess cache entry {key} not used ({why}); computing it again")
        return found

    def _get(self, key: str, micrograph: str) -> tuple[Entry | None, str]:
        folder = self._dir(key)
        marker_uri = storage.safe_join(folder, MARKER)
        if not storage.exists(marker_uri):
            return None, ""
        marker = json.loads(storage.read_bytes(marker_uri, max_bytes=_MAX_MARKER_BYTES))
        if marker.get("schema_version") != SCHEMA_VERSION or marker.get("key") != key:
            return None, "made for another key or schema"
        if marker.get("micrograph") != micrograph:
            return None, f"made for micrograph {marker.get('micrograph')!r}"
        files: dict[str, bytes] = {}
        for relpath, digest in dict(marker["files"]).items():
            data = storage.read_bytes(storage.safe_join(folder, FILES_DIR, *check_relpath(relpath).split("/")),
                                      max_bytes=_MAX_FILE_BYTES)
            if sha256_bytes(data) != digest:
                return None, f"damaged: {relpath} does not match {MARKER}"
            files[relpath] = data
        columns = [str(c) for c in marker["columns"]]
        rows = [[str(v) for v in row] for row in marker["rows"]]
        if any(len(row) != len(columns) for row in rows):
            return None, "a particle row does not fit its columns"
        optics = {"columns": [str(c) for c in marker["optics"]["columns"]],
                  "rows": [[str(v) for v in row] for row in marker["optics"]["rows"]]}
        if not isinstance(marker.get("qc"), dict):
            return None, "no QC record"
        return Entry(micrograph, columns, rows, optics, dict(marker["qc"]), files), ""

    # -- write ----------------------------------------------------------------------------
    def put(self, key: str, entry: Entry, source_run: str) -> bool:
        """Store the entry (files first, ``entry.json`` last); False if it was not stored.
        A failure is logged once per job, and never raised."""
        try:
            folder = self._dir(key)
            digests = {}
            for relpath, data in sorted(entry.files.items()):
                storage.write_bytes(storage.safe_join(folder, FILES_DIR, *check_relpath(relpath).split("/")), data)
                digests[relpath] = sha256_bytes(data)
            marker = {"schema_version": SCHEMA_VERSION, "key": key, "micrograph": entry.micrograph,
                      "files": digests, "columns": entry.columns, "rows": entry.rows, "optics": entry.optics,
                      "qc": entry.qc, "tools": self.tools, "source_run": source_run, "created_at": utcnow()}
            storage.write_bytes(storage.safe_join(folder, MARKER),
                                json.dumps(marker, indent=2, sort_keys=True).encode(),
                                content_type="application/json")
            return True
        except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
            if not self._write_failed:
                self.log(f"preprocess cache write failed ({type(exc).__name__}: {exc}); results are not kept")
            self._write_failed = True
            return False


def open_cache(cache_root: str | None, knobs: Knobs, log: Callable[[str], None]) -> PreprocessCache | None:
    """The cache for a preprocess job, or None (no root: ``reuse_cache`` off, or none
    configured; or the tool versions unreadable)."""
    if not cache_root:
        return None
    try:
        return PreprocessCache(str(cache_root), tool_versions(knobs), log)
    except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
        log(f"preprocess cache off ({type(exc).__name__}: {exc})")
        return None
