"""Per-chain MSA cache: a chain is searched once, whatever complex it comes in.

The workflow's cache (:mod:`foldstack.tasks.msa_cache`) keys whole targets, so a complex
hits only when the same chains come again together. Inside the msa job, every chain's
search results are kept as well, under

    <cache_root>/msa/<search>/<db_version>/chains/<chain sequence sha256>/
        <database>.<sto|a3m>.gz   that database's alignment as the search returned it
                                  (after max_hits), so re-parsing it gives the same features;
                                  one per MSA search of the preset, plus UniProt's when a
                                  multimer searched it for pairing
        templates.npz             the chain's template features (absent: no template hit)
        chain.json                written last: every file's sha256, template provenance

``db_version`` is the workflow cache's label of every database version under the DB root
(:func:`~foldstack.tasks.msa_cache.db_version_label`), so a database refresh invalidates
both levels at once. The cache is used only when every database the step searches has the
label's version. An entry is a miss (searched again, and overwritten) when a file does not
match ``chain.json``, is cut short (a gzip member without its end, an alignment row shorter
than the chain, a ``templates.npz`` that does not load) or does not parse, or when it was
made with another template date cut-off, template search (hmmsearch or hhsearch) or other
search/featurizer versions, or lacks an alignment the job needs (a monomer's entry has no
UniProt alignment for a multimer: searched again, and stored with it). An entry with more
alignments than a job needs serves it (a multimer's entry serves a monomer). A search
whose template featurisation reported errors is not stored. Every chain is searched under
one fixed query name, so two jobs storing the same chain at once write the same alignments.
Jobs that run at the same time do not wait for each other: both search a new chain they
share.

Reads and writes go through :mod:`foldstack.storage`: a local directory, or
``s3://<database bucket>/cache`` in the cloud, where the msa job role may read and write
``cache/``. A cache failure never fails the step; it searches instead.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from foldstack import storage
from foldstack.core.clock import utcnow
from foldstack.core.hashing import sha256_bytes
from foldstack.steps.databases import Database, current_pins
from foldstack.steps.features import features_from_bytes, features_to_bytes, n_templates

MARKER = "chain.json"
TEMPLATES = "templates.npz"
FORMATS = ("sto", "a3m")
QUERY_NAME = "query"  # every chain is searched under this name, so entries do not depend on a target id
_MAX_MARKER_BYTES = 1 << 20
_MAX_FILE_BYTES = 1 << 30  # a stored (compressed) alignment or templates.npz
_MAX_ALIGNMENT_BYTES = 4 << 30  # an alignment once decompressed


@dataclass(frozen=True)
class Alignment:
    """One database's search result for one chain, in the search tool's own format."""

    database: str
    fmt: str  # "sto" (jackhmmer) | "a3m" (MMseqs2)
    text: str

    @property
    def filename(self) -> str:
        return f"{self.database}.{self.fmt}.gz"


def parse_alignments(alignments: Sequence[Alignment]) -> tuple[list, list[str]]:
    """(AlphaFold Msa objects, A3M texts), one per database, as AlphaFold's pipeline makes
    them: Stockholm is deduplicated and converted, A3M is used as it is."""
    from alphafold.data import parsers

    msas, a3ms = [], []
    for alignment in alignments:
        if alignment.fmt == "a3m":
            msas.append(parsers.parse_a3m(alignment.text))
            a3ms.append(alignment.text)
        elif alignment.fmt == "sto":
            msas.append(parsers.parse_stockholm(alignment.text))
            a3ms.append(parsers.convert_stockholm_to_a3m(parsers.deduplicate_stockholm_msa(alignment.text)))
        else:
            raise ValueError(f"unknown alignment format {alignment.fmt!r}")
    return msas, a3ms


@dataclass
class ChainSearch:
    """Everything the features need from one chain's searches (use :meth:`build`)."""

    alignments: list[Alignment]
    templates: dict[str, Any] | None  # AlphaFold template features; None = no template
    template_info: dict[str, Any] | None  # hits/templates/errors/warnings; None = no template DB
    msas: list = field(repr=False)  # parsed alignments (AlphaFold Msa objects)
    a3ms: list[str] = field(repr=False)
    origin: dict[str, Any] | None = None  # cached: the run that searched it, and when

    @classmethod
    def build(cls, alignments: list[Alignment], templates: dict[str, Any] | None,
              template_info: dict[str, Any] | None, origin: dict[str, Any] | None = None) -> ChainSearch:
        msas, a3ms = parse_alignments(alignments)
        return cls(alignments, templates, template_info, msas, a3ms, origin)

    @property
    def cached(self) -> bool:
        return self.origin is not None


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress one gzip member; a truncated one raises (zlib alone returns what it got)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise ValueError(f"alignment larger than {limit} bytes once decompressed")
    if not inflater.eof:
        raise ValueError("truncated gzip stream")
    return out


@dataclass
class ChainCache:
    """Get/put one chain's :class:`ChainSearch` under the key of its sequence.

    An entry is used only if it was made with the same template cut-off and the same
    search/featurizer versions (``tool_versions``), for the same databases in the same
    order, and every file matches ``chain.json`` and parses.
    """

    cache_root: str
    msa_tool: str
    db_version: str
    databases: dict[str, str]  # {name: version} the label was made from
    max_template_date: str | None  # the templates' cut-off (None: no template DB)
    tool_versions: dict[str, str]  # e.g. pyhmmer / mmseqs2 and alphafold-colabfold versions
    log: Callable[[str], None]
    template_search: str | None = None  # "hmmsearch" | "hhsearch" | None (templates off)

    @classmethod
    def open(cls, cache_root: str, msa_tool: str, db_root: str, used: Sequence[Database],
             max_template_date: str | None, tool_versions: dict[str, str],
             log: Callable[[str], None], template_search: str | None = None) -> tuple[ChainCache | None, str]:
        """The cache for this step, or (None, why not)."""
        from foldstack.cachekeys import db_version_label, resolve_db_versions

        try:
            versions = resolve_db_versions(str(db_root), current_pins())  # a run's pinned versions count
        except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
            return None, f"database versions unreadable: {type(exc).__name__}: {exc}"
        stale = sorted(f"{d.name}@{d.version}" for d in used if versions.get(d.name) != d.version)
        if stale:
            return None, f"database(s) not at their CURRENT version: {', '.join(stale)}"
        return cls(cache_root, msa_tool, db_version_label(versions), versions, max_template_date,
                   dict(tool_versions), log, template_search), "ok"

    def key(self, chain: str) -> str:
        from foldstack.cachekeys import chain_cache_key

        return chain_cache_key(self.cache_root, self.msa_tool, self.db_version, sha256_bytes(chain.encode("ascii")))

    # -- read -----------------------------------------------------------------------------
    def get(self, chain: str, databases: Sequence[str]) -> ChainSearch | None:
        """The chain's stored search against `databases` (alignment names, in the order the
        job wants them; the entry may hold more), or None."""
        try:
            key = self.key(chain)
            found, why = self._get(key, chain, list(databases))
        except Exception as exc:  # noqa: BLE001 - a broken cache means a search, never a failure
            self.log(f"chain cache read failed ({type(exc).__name__}: {exc}); searching instead")
            return None
        if found is None and why:
            self.log(f"chain cache entry {key} not used ({why}); searching instead")
        return found

    def _get(self, key: str, chain: str, databases: list[str]) -> tuple[ChainSearch | None, str]:
        marker_uri = storage.safe_join(key, MARKER)
        if not storage.exists(marker_uri):
            return None, ""
        marker = json.loads(storage.read_bytes(marker_uri, max_bytes=_MAX_MARKER_BYTES))
        if marker.get("max_template_date") != self.max_template_date:
            return None, "made with another template date cut-off"
        if marker.get("tool_versions") != self.tool_versions:
            return None, f"made by {marker.get('tool_versions')}, this job runs {self.tool_versions}"
        if marker.get("template_search") != self.template_search:
            return None, f"templates made by {marker.get('template_search')}, this job uses {self.template_search}"
        stored = [(str(a["database"]), str(a["fmt"])) for a in marker["alignments"]]
        if any(fmt not in FORMATS for _, fmt in stored):
            return None, "made for other databases"
        formats = dict(stored)
        if not set(databases) <= set(formats):
            return None, f"lacks {', '.join(sorted(set(databases) - set(formats)))}"
        wanted = [(name, formats[name]) for name in databases]
        expected = {f"{name}.{fmt}.gz" for name, fmt in stored}
        files: dict[str, str] = marker["files"]
        if not expected <= set(files) <= expected | {TEMPLATES}:
            return None, "its file list does not match its alignments"
        needed = {f"{name}.{fmt}.gz" for name, fmt in wanted} | ({TEMPLATES} & set(files))
        blobs = {}
        for name, digest in files.items():
            if name not in needed:
                continue
            data = storage.read_bytes(storage.safe_join(key, name), max_bytes=_MAX_FILE_BYTES)
            if sha256_bytes(data) != digest:
                return None, f"damaged: {name} does not match {MARKER}"
            blobs[name] = data
        alignments = []
        for name, fmt in wanted:
            filename = f"{name}.{fmt}.gz"
            try:
                text = _gunzip(blobs[filename], _MAX_ALIGNMENT_BYTES).decode("utf-8")
            except (ValueError, zlib.error) as exc:  # truncated or garbled (UnicodeDecodeError is a ValueError)
                return None, f"damaged: {filename} does not decompress ({type(exc).__name__}: {exc})"
            alignments.append(Alignment(name, fmt, text))
        templates = None
        if TEMPLATES in blobs:
            try:
                templates = features_from_bytes(blobs[TEMPLATES])
            except ValueError as exc:  # NpzError: not an intact npz, or pickled data
                return None, f"damaged: {TEMPLATES} {exc}"
        if templates is not None and np.shape(templates.get("template_aatype"))[1:2] != (len(chain),):
            return None, "its templates do not fit the chain"
        origin = {"source_run": marker.get("source_run"), "created_at": marker.get("created_at")}
        search = ChainSearch.build(alignments, templates, marker.get("template_info"), origin)
        if any(not msa.sequences or msa.sequences[0] != chain for msa in search.msas):
            return None, "an alignment does not start with the chain"
        if any(len(row) != len(chain) for msa in search.msas for row in msa.sequences):
            return None, "an alignment row does not fit the chain (a cut-off alignment)"
        return search, ""

    # -- write ----------------------------------------------------------------------------
    def put(self, chain: str, search: ChainSearch, source_run: str) -> bool:
        """Store the search (files first, ``chain.json`` last); False if it was not stored."""
        if search.template_info and search.template_info.get("errors"):
            self.log("chain cache: not storing a search whose template featurisation had errors")
            return False
        try:
            key = self.key(chain)
            blobs = {a.filename: gzip.compress(a.text.encode("utf-8"), mtime=0) for a in search.alignments}
            if search.templates is not None and n_templates(search.templates):
                blobs[TEMPLATES] = features_to_bytes(search.templates)
            for name, data in blobs.items():
                storage.write_bytes(storage.safe_join(key, name), data)
            marker = {
                "schema_version": 1, "sha256": sha256_bytes(chain.encode("ascii")), "length": len(chain),
                "msa_tool": self.msa_tool, "db_version": self.db_version, "databases": self.databases,
                "alignments": [{"database": a.database, "fmt": a.fmt} for a in search.alignments],
                "max_template_date": self.max_template_date, "tool_versions": self.tool_versions,
                "template_search": self.template_search, "template_info": search.template_info,
                "files": {name: sha256_bytes(data) for name, data in blobs.items()},
                "source_run": source_run, "created_at": utcnow(),
            }
            storage.write_bytes(storage.safe_join(key, MARKER),
                                json.dumps(marker, indent=2, sort_keys=True).encode(),
                                content_type="application/json")
            return True
        except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
            self.log(f"chain cache write failed ({type(exc).__name__}: {exc}); the result is not kept")
            return False
