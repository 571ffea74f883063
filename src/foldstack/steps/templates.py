"""Template search inside the msa step, as AlphaFold does it (hmmsearch + mmCIF).

AlphaFold's monomer pipeline (``alphafold/data/pipeline.py``) takes the UniRef90
jackhmmer alignment, deduplicates it and removes empty columns, builds a profile HMM
from it (``hmmbuild --hand --amino``), searches ``pdb_seqres.txt`` with ``hmmsearch``
(``--F1 0.1 --F2 0.1 --F3 0.1 --incE 100 -E 100 --domE 100 --incdomE 100``), turns the
hits into an A3M (``convert_stockholm_to_a3m(remove_first_row_gaps=False)``,
``parse_hmmsearch_a3m(skip_first=False)``) and extracts template features from the
mmCIF files with ``templates.HmmsearchHitFeaturizer`` (realigning with kalign when the
mmCIF's sequence differs from the hit's). We do exactly that, with hmmbuild/hmmsearch
run in-process by pyhmmer and AlphaFold's own parsers and featurizer.

When the MSA came from MMseqs2 (no Stockholm), the HMM is built from the A3M the way
AlphaFold's ``Hmmbuild.build_profile_from_a3m`` does (insertions removed, ``fast``
architecture).

The template database is an ordinary database under the DB root whose manifest has
``"role": "pdb_mmcif"``::

    <db_root>/pdb_mmcif/CURRENT
    <db_root>/pdb_mmcif/<version>/manifest.json     role, "seqres": "pdb_seqres.txt",
                                                    "mmcif_dir": "mmcif_files",
                                                    optional "max_template_date"
    <db_root>/pdb_mmcif/<version>/pdb_seqres.txt    ">1a7g_E mol:protein length:82  ..."
    <db_root>/pdb_mmcif/<version>/mmcif_files/<pdb_id>.cif

No template database under the root (or no hit) keeps the empty-template placeholder
(:func:`foldstack.steps.features.empty_template_features`).

hmmsearch streams ``pdb_seqres.txt`` from disk (:mod:`foldstack.steps.hmmer`), never
loading it whole.

**hhsearch on pdb70** (AlphaFold's monomer template search, ``--db_preset`` full_dbs and
reduced_dbs, :func:`search_templates_hhsearch`): the deduplicated, empty-column-free
UniRef90 alignment as A3M → ``hhsearch -i q.a3m -o out.hhr -maxseq 1000000 -d <pdb70>``
→ ``parsers.parse_hhr`` → ``templates.HhsearchHitFeaturizer`` on the same mmCIF files.
The pdb70 database is one with role ``pdb70`` (manifest ``hhsuite_db``: its ffindex
prefix); the binary is ``$FOLDSTACK_HHSEARCH`` or ``hhsearch`` on PATH (Debian hhsuite).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.steps.databases import (
    Database,
    build_local_version,
    open_database,
    verify_database,
    write_manifest,
)
from foldstack.steps.presets import HHSEARCH, HMMSEARCH, MAX_TEMPLATE_HITS

TEMPLATE_ROLE = "pdb_mmcif"
DEFAULT_MAX_TEMPLATE_DATE = "2100-01-01"  # no cutoff (ColabFold's default); set per DB in its manifest
TEMPLATE_DATE_ENV = "FOLDSTACK_MAX_TEMPLATE_DATE"
HHSEARCH_ENV = "FOLDSTACK_HHSEARCH"
HMMSEARCH_PARAMS: dict[str, float] = dict(HMMSEARCH)  # alphafold/data/tools/hmmsearch.py defaults


@dataclass
class TemplateResult:
    """Template features (AlphaFold's dict, or None for "no template") plus provenance."""

    features: dict[str, Any] | None
    hits: list[str] = field(default_factory=list)  # pdb_chain of every hmmsearch hit
    used: list[str] = field(default_factory=list)  # pdb_chain of every template featurized
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def template_database(db_root: Path | str) -> Database | None:
    """The (first, by name) database with role ``pdb_mmcif`` under the root, or None."""
    root = Path(db_root)
    if not root.is_dir():
        return None
    for current in sorted(root.glob("*/CURRENT")):
        db = open_database(root, current.parent.name, verify=False)
        if db.role == TEMPLATE_ROLE:
            for key in ("seqres", "mmcif_dir"):
                if not db.manifest.get(key):
                    raise BadInputError(f"template database {db.name}: manifest lacks {key!r}")
            verify_database(db)
            if not (db.path / db.manifest["mmcif_dir"]).is_dir():
                raise BadInputError(f"template database {db.name}: no {db.path / db.manifest['mmcif_dir']}")
            return db
    return None


def max_template_date(db: Database) -> str:
    return os.environ.get(TEMPLATE_DATE_ENV) or db.manifest.get("max_template_date") or DEFAULT_MAX_TEMPLATE_DATE


def kalign_binary() -> str:
    """kalign for AlphaFold's realignment (Debian ``kalign``); only called on a mismatch."""
    return os.environ.get("FOLDSTACK_KALIGN") or shutil.which("kalign") or "kalign"


def _hmm_from_stockholm(sto: str):
    """``hmmbuild --hand --amino`` on AlphaFold's cleaned-up template MSA."""
    from alphafold.data import parsers

    sto = parsers.remove_empty_columns_from_stockholm_msa(parsers.deduplicate_stockholm_msa(sto))
    return _build_hmm(sto, "stockholm", "hand")


def _hmm_from_a3m(a3m: str):
    """AlphaFold's ``build_profile_from_a3m``: insertions removed, ``fast`` architecture."""

    rows = []
    for line in a3m.splitlines():
        if line.startswith(">"):
            rows.append(line.split()[0] + "\n")
        elif line.strip():
            rows.append(re.sub("[a-z]+", "", line.strip()) + "\n")
    return _build_hmm("".join(rows), "afa", "fast")


def _build_hmm(alignment: str, fmt: str, architecture: str):
    """An HMM of the query's alignment (``hmmbuild --<architecture>``), named ``query``."""
    import pyhmmer

    alphabet = pyhmmer.easel.Alphabet.amino()
    with pyhmmer.easel.MSAFile(io.BytesIO(alignment.encode()), format=fmt, digital=True, alphabet=alphabet) as f:
        msa = f.read()
    msa.name = b"query"
    builder = pyhmmer.plan7.Builder(alphabet, architecture=architecture)
    hmm, _, _ = builder.build_msa(msa, pyhmmer.plan7.Background(alphabet))
    return hmm


def hmmsearch_stockholm(hmm, seqres: Path, cpus: int) -> str:
    """``hmmsearch --noali <flags> -A out.sto`` against pdb_seqres (streamed from disk):
    the Stockholm output."""
    from foldstack.steps.hmmer import hmmsearch_stockholm as streamed

    return streamed(hmm, seqres, HMMSEARCH_PARAMS, cpus=cpus)


def search_templates(query: str, db: Database, *, sto: str | None = None, a3m: str | None = None,
                     cpus: int = 1, max_hits: int = MAX_TEMPLATE_HITS) -> TemplateResult:
    """Template features for `query` from its MSA (Stockholm preferred, else A3M)."""
    from alphafold.data import parsers, templates

    if sto is not None:
        hmm = _hmm_from_stockholm(sto)
    elif a3m is not None:
        hmm = _hmm_from_a3m(a3m)
    else:  # pragma: no cover - programming error
        raise ValueError("search_templates needs the query MSA (sto or a3m)")
    out = hmmsearch_stockholm(hmm, db.path / db.manifest["seqres"], cpus)
    if not out:
        return TemplateResult(features=None)
    a3m_hits = parsers.convert_stockholm_to_a3m(out, remove_first_row_gaps=False)
    hits = parsers.parse_hmmsearch_a3m(query_sequence=query, a3m_string=a3m_hits, skip_first=False)
    return _featurize(templates.HmmsearchHitFeaturizer, query, hits, db, max_hits)


def _featurize(featurizer_class: Any, query: str, hits: list, mmcif: Database, max_hits: int) -> TemplateResult:
    """AlphaFold's template featurizer (the hmmsearch or the hhsearch one) over ``hits``,
    with structures from ``mmcif``: features only if some template was used."""
    featurizer = featurizer_class(
        mmcif_dir=str(mmcif.path / mmcif.manifest["mmcif_dir"]),
        max_template_date=max_template_date(mmcif),
        max_hits=max_hits,
        kalign_binary_path=kalign_binary(),
        release_dates_path=None,
        obsolete_pdbs_path=None,
    )
    result = featurizer.get_templates(query_sequence=query, hits=hits)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in result.features["template_domain_names"]]
    used = [n for n in names if n]
    return TemplateResult(
        features=dict(result.features) if used else None,
        hits=[h.name for h in hits],
        used=used,
        errors=list(result.errors),
        warnings=list(result.warnings),
    )


def hhsearch_binary() -> str:
    return os.environ.get(HHSEARCH_ENV) or shutil.which("hhsearch") or "hhsearch"


def hhsearch_argv(binary: str, a3m_path: str, hhr_path: str, pdb70: Path) -> list[str]:
    """AlphaFold's hhsearch command line (alphafold/data/tools/hhsearch.py)."""
    return [binary, "-i", a3m_path, "-o", hhr_path, "-maxseq", str(HHSEARCH["maxseq"]), "-d", str(pdb70)]


def run_hhsearch(a3m: str, pdb70: Path, *, binary: str | None = None) -> str:
    """hhsearch of the query A3M against pdb70: the .hhr text."""
    import subprocess  # nosec B404 - fixed argv, no shell
    import tempfile

    with tempfile.TemporaryDirectory(prefix="foldstack-hhsearch-") as tmp:
        a3m_path, hhr_path = os.path.join(tmp, "query.a3m"), os.path.join(tmp, "output.hhr")
        Path(a3m_path).write_text(a3m)
        argv = hhsearch_argv(binary or hhsearch_binary(), a3m_path, hhr_path, pdb70)
        proc = subprocess.run(argv, capture_output=True, text=True)  # nosec B603
        if proc.returncode:
            if proc.returncode in (-9, 137) or "bad_alloc" in proc.stderr or "out of memory" in proc.stderr.lower():
                raise MemoryError(f"hhsearch ran out of memory: {proc.stderr[-2000:]}")
            raise RuntimeError(f"hhsearch failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        return Path(hhr_path).read_text()


def _template_a3m(sto: str | None, a3m: str | None) -> str:
    """AlphaFold's hhsearch input: the UniRef90 Stockholm, deduplicated, empty columns
    removed, as A3M (an MMseqs2 A3M is used as it is)."""
    from alphafold.data import parsers

    if sto is not None:
        clean = parsers.remove_empty_columns_from_stockholm_msa(parsers.deduplicate_stockholm_msa(sto))
        return parsers.convert_stockholm_to_a3m(clean)
    if a3m is None:  # pragma: no cover - programming error
        raise ValueError("the template search needs the query MSA (sto or a3m)")
    return a3m


def search_templates_hhsearch(query: str, pdb70: Database, mmcif: Database, *, sto: str | None = None,
                              a3m: str | None = None, max_hits: int = MAX_TEMPLATE_HITS) -> TemplateResult:
    """AlphaFold's monomer template search: hhsearch on pdb70, HhsearchHitFeaturizer."""
    from alphafold.data import parsers, templates

    if pdb70.hhsuite_prefix is None:
        raise BadInputError(f"template database {pdb70.name}: manifest lacks hhsuite_db (the pdb70 prefix)")
    hhr = run_hhsearch(_template_a3m(sto, a3m), pdb70.hhsuite_prefix)
    hits = parsers.parse_hhr(hhr)
    if not hits:
        return TemplateResult(features=None)
    return _featurize(templates.HhsearchHitFeaturizer, query, hits, mmcif, max_hits)


# --- building a (tiny) template database --------------------------------------------

def _read_cif(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:  # type: ignore[operator]
        return f.read()


def build_template_db(db_root: Path, cif_files: list[Path], *, name: str = "pdb_mmcif", version: str,
                      source: str, license: str, max_template_date: str | None = None) -> Path:
    """Assemble ``<db_root>/<name>/<version>/`` (mmcif_files/*.cif + pdb_seqres.txt) from
    mmCIF files (plain or .gz) and publish it as CURRENT; idempotent; return the version dir.

    pdb_seqres.txt is written from AlphaFold's own mmCIF parse (``chain_to_seqres``, author
    chain ids), so every hit's sequence matches what the featurizer finds in the file.
    Each mmCIF must carry ``_pdbx_audit_revision_history.revision_date`` (AlphaFold's
    release date)."""
    from alphafold.data import mmcif_parsing

    def fill(tmp: Path) -> None:
        (tmp / "mmcif_files").mkdir()
        seqres = []
        for path in cif_files:
            pdb_id = path.name.split(".")[0].lower()
            text = _read_cif(path)
            parsed = mmcif_parsing.parse(file_id=pdb_id, mmcif_string=text)
            obj = parsed.mmcif_object
            if obj is None:
                raise ValueError(f"cannot parse {path}: {parsed.errors}")
            if "release_date" not in obj.header:
                raise ValueError(f"{path} has no _pdbx_audit_revision_history.revision_date (AlphaFold "
                                 "needs the release date)")
            (tmp / "mmcif_files" / f"{pdb_id}.cif").write_text(text)
            for chain, seq in sorted(obj.chain_to_seqres.items()):
                seqres.append(f">{pdb_id}_{chain} mol:protein length:{len(seq)}  {pdb_id.upper()} chain {chain}\n"
                              f"{seq}\n")
        (tmp / "pdb_seqres.txt").write_text("".join(seqres))
        extra: dict[str, Any] = {"seqres": "pdb_seqres.txt", "mmcif_dir": "mmcif_files"}
        if max_template_date:
            extra["max_template_date"] = max_template_date
        write_manifest(tmp, name=name, version=version, role=TEMPLATE_ROLE, sequences="pdb_seqres.txt",
                       max_hits=MAX_TEMPLATE_HITS, source=source, license=license, extra=extra)

    return build_local_version(db_root, name, version, fill)
