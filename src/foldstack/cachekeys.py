"""Cache keys: where the MSA cache keeps a target's and a chain's alignments.

One module both sides use: the ``msa_cache`` Lambda (:mod:`foldstack.tasks.msa_cache`)
looks whole targets up and fills them; the msa step (:mod:`foldstack.steps.chain_cache`)
keeps each chain's searches. Layout::

    <cache_root>/msa/<search>/<db_version>/<sha256>/            a whole target
    <cache_root>/msa/<search>/<db_version>/chains/<sha256>/     one chain

``search`` is :func:`search_label`: the MSA tool and the database preset
(``jackhmmer-reduced_dbs``, ``mmseqs2-colabfold``, ...), so MSAs of different presets never
meet.

``db_version`` is :func:`db_version_label` of the versions in use of every database
under the database root (``<db_root>/<name>/CURRENT``) plus ``PARAMS_VERSION`` (bumped
when the msa step's result-changing parameters change). It is deliberately
over-specific: refreshing any database invalidates the cache, never serves a stale
alignment.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

from foldstack import storage
from foldstack.core.uris import parse_uri

CACHED_FILES = ("msa.a3m", "features.npz", "features.json")
MARKER = "cache.json"
PARAMS_VERSION = "p2"  # p2: database presets (AlphaFold's MSA order and row deduplication)
CHAINS_DIR = "chains"  # per-chain entries of the msa step, next to the per-target ones
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@+._-]{0,127}$")  # db_version_label's output
_SHA = re.compile(r"^[0-9a-f]{64}$")


def resolve_db_versions(db_root: str, pins: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{name: version}`` from ``<db_root>/<name>/CURRENT`` (directories without one,
    e.g. ``weights/``, are not databases), with a run's pinned versions (the request's
    ``db_versions``) in place of CURRENT's."""
    root = parse_uri(db_root)
    currents: list[str] = []
    if root.is_s3:
        base = db_root.rstrip("/") + "/"
        currents = [o.uri for o in storage.list_prefix(db_root)
                    if o.uri.startswith(base) and re.fullmatch(r"[^/]+/CURRENT", o.uri[len(base):])]
    else:
        currents = [str(p) for p in sorted(Path(root.key).glob("*/CURRENT")) if not p.is_symlink()]
    versions: dict[str, str] = {}
    for uri in currents:
        name = uri.rstrip("/").rsplit("/", 2)[-2]
        version = storage.read_bytes(uri, max_bytes=256).decode("utf-8", "replace").strip()
        if _SAFE.fullmatch(name) and _SAFE.fullmatch(version):
            versions[name] = version
    for name, version in (pins or {}).items():
        if _SAFE.fullmatch(name) and _SAFE.fullmatch(version):
            versions[name] = version
    return dict(sorted(versions.items()))


def search_label(msa_tool: str | None, db_preset: str | None) -> str:
    """The cache's name for how an MSA was searched: ``<msa_tool>-<db_preset>``. Missing
    values take the request model's defaults (jackhmmer, or mmseqs2 for colabfold;
    reduced_dbs), as :class:`foldstack.core.request.RunRequest` fills them."""
    from foldstack.core.request import DEFAULT_DB_PRESET

    preset = db_preset or DEFAULT_DB_PRESET
    tool = msa_tool or ("mmseqs2" if preset == "colabfold" else "jackhmmer")
    label = f"{tool}-{preset}"
    if not _SAFE.fullmatch(label):
        raise ValueError(f"invalid msa_tool / db_preset: {msa_tool!r}, {db_preset!r}")
    return label


def db_version_label(versions: Mapping[str, str]) -> str:
    label = "+".join(f"{n}@{v}" for n, v in sorted(versions.items())) or "none"
    label = f"{label}.{PARAMS_VERSION}"
    if len(label) > 120:
        label = "h" + hashlib.sha256(label.encode()).hexdigest()[:24]
    return label


def cache_key(cache_root: str, msa_tool: str, db_version: str, sha256: str) -> str:
    if not _SHA.fullmatch(sha256) or not _SAFE.fullmatch(msa_tool):
        raise ValueError(f"invalid cache key parts: {msa_tool!r}, {sha256!r}")
    return storage.safe_join(cache_root, "msa", msa_tool, db_version, sha256)


def chain_cache_key(cache_root: str, msa_tool: str, db_version: str, sha256: str) -> str:
    """Where the msa step keeps one chain's searches (:mod:`foldstack.steps.chain_cache`);
    ``chains`` is no sha256, so it never collides with a target's entry."""
    if not _SHA.fullmatch(sha256) or not _SAFE.fullmatch(msa_tool) or not _LABEL.fullmatch(db_version):
        raise ValueError(f"invalid chain cache key parts: {msa_tool!r}, {db_version!r}, {sha256!r}")
    return storage.safe_join(cache_root, "msa", msa_tool, db_version, CHAINS_DIR, sha256)
