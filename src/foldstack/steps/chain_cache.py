"""Per-chain MSA cache: a chain is searched once, whatever complex it comes in.

The workflow's cache (:mod:`foldstack.tasks.msa_cache`) keys whole targets, so a complex
hits only when the same chains come again together. Inside the msa job, every chain's
search results are kept as well, under

    <cache_root>/msa/<msa_tool>/<db_version>/chains/<chain sequence sha256>/
        <database>.<sto|a3m>.gz   that database's alignment as the search returned it
                                  (after max_hits), so re-parsing it gives the same features
        templates.npz             the chain's template features (absent: no template hit)
        chain.json                written last: every file's sha256, template provenance

``db_version`` is the workflow cache's label of every database version under the DB root
(:func:`~foldstack.tasks.msa_cache.db_version_label`), so a database refresh invalidates
both levels at once. The cache is used only when every database the step searches has the
label's version. An entry whose files do not match ``chain.json`` (or made with another
template date cut-off) is a miss. Reads and writes go through :mod:`foldstack.storage`: a
local directory, or ``s3://<database bucket>/cache`` in the cloud, where the msa job role
may read and write ``cache/``. A cache failure never fails the step; it searches instead.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from foldstack import storage
from foldstack.steps.databases import Database
from foldstack.steps.features import features_from_bytes, features_to_bytes, n_templates

MARKER = "chain.json"
TEMPLATES = "templates.npz"
FORMATS = ("sto", "a3m")
_MAX_MARKER_BYTES = 1 << 20


@dataclass(frozen=True)
class Alignment:
    """One database's search result for one chain, in the search tool's own format."""

    database: str
    fmt: str  # "sto" (jackhmmer) | "a3m" (MMseqs2)
    text: str

    @property
    def filename(self) -> str:
        return f"{self.database}.{self.fmt}.gz"


@dataclass
class ChainSearch:
    """Everything the features need from one chain's searches."""

    alignments: list[Alignment]
    templates: dict[str, Any] | None = None  # AlphaFold template features; None = no template
    template_info: dict[str, Any] | None = None  # hits/templates/errors/warnings; None = no template DB
    cached: bool = False  # read from the chain cache, not searched


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class ChainCache:
    """Get/put one chain's :class:`ChainSearch` under the key of its sequence."""

    cache_root: str
    msa_tool: str
    db_version: str
    databases: dict[str, str]  # {name: version} the label was made from
    max_template_date: str | None  # the templates' cut-off (None: no template DB)
    log: Callable[[str], None]

    @classmethod
    def open(cls, cache_root: str, msa_tool: str, db_root: str, used: Sequence[Database],
             max_template_date: str | None, log: Callable[[str], None]) -> tuple[ChainCache | None, str]:
        """The cache for this step, or (None, why not)."""
        from foldstack.tasks.msa_cache import db_version_label, resolve_db_versions

        try:
            versions = resolve_db_versions(str(db_root))
        except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
            return None, f"database versions unreadable: {type(exc).__name__}: {exc}"
        stale = sorted(f"{d.name}@{d.version}" for d in used if versions.get(d.name) != d.version)
        if stale:
            return None, f"database(s) not at their CURRENT version: {', '.join(stale)}"
        return cls(cache_root, msa_tool, db_version_label(versions), versions, max_template_date, log), "ok"

    def key(self, chain: str) -> str:
        from foldstack.tasks.msa_cache import chain_cache_key

        return chain_cache_key(self.cache_root, self.msa_tool, self.db_version,
                               _sha(chain.encode("ascii")))

    # -- read -----------------------------------------------------------------------------
    def get(self, chain: str) -> ChainSearch | None:
        key = self.key(chain)
        try:
            return self._get(key)
        except Exception as exc:  # noqa: BLE001 - a broken cache means a search, never a failure
            self.log(f"chain cache read failed ({type(exc).__name__}: {exc}); searching instead")
            return None

    def _get(self, key: str) -> ChainSearch | None:
        marker_uri = storage.safe_join(key, MARKER)
        if not storage.exists(marker_uri):
            return None
        marker = json.loads(storage.read_bytes(marker_uri, max_bytes=_MAX_MARKER_BYTES))
        if marker.get("max_template_date") != self.max_template_date:
            return None  # templates cut off at another date: not this search's result
        files: dict[str, str] = marker["files"]
        blobs = {}
        for name, digest in files.items():
            data = storage.read_bytes(storage.safe_join(key, name))
            if _sha(data) != digest:
                self.log(f"chain cache entry {key} is damaged ({name}); searching instead")
                return None
            blobs[name] = data
        alignments = []
        for entry in marker["alignments"]:
            if entry["fmt"] not in FORMATS:
                return None
            database, fmt = str(entry["database"]), entry["fmt"]
            text = gzip.decompress(blobs[f"{database}.{fmt}.gz"]).decode("utf-8")
            alignments.append(Alignment(database, fmt, text))
        templates = features_from_bytes(blobs[TEMPLATES]) if TEMPLATES in blobs else None
        return ChainSearch(alignments, templates, marker.get("template_info"), cached=True)

    # -- write ----------------------------------------------------------------------------
    def put(self, chain: str, search: ChainSearch, source_run: str) -> bool:
        """Store the search (files first, ``chain.json`` last); False if it could not be."""
        key = self.key(chain)
        try:
            blobs = {a.filename: gzip.compress(a.text.encode("utf-8"), mtime=0) for a in search.alignments}
            if search.templates is not None and n_templates(search.templates):
                blobs[TEMPLATES] = features_to_bytes(search.templates)
            for name, data in blobs.items():
                storage.write_bytes(storage.safe_join(key, name), data)
            marker = {
                "schema_version": 1, "sha256": _sha(chain.encode("ascii")), "length": len(chain),
                "msa_tool": self.msa_tool, "db_version": self.db_version, "databases": self.databases,
                "alignments": [{"database": a.database, "fmt": a.fmt} for a in search.alignments],
                "max_template_date": self.max_template_date, "template_info": search.template_info,
                "files": {name: _sha(data) for name, data in blobs.items()},
                "source_run": source_run, "created_at": _now(),
            }
            storage.write_bytes(storage.safe_join(key, MARKER),
                                json.dumps(marker, indent=2, sort_keys=True).encode(),
                                content_type="application/json")
            return True
        except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
            self.log(f"chain cache write failed ({type(exc).__name__}: {exc}); the result is not kept")
            return False
