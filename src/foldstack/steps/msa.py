"""`foldstack step msa`: jackhmmer (pyhmmer) or MMseqs2 → A3M + templates + AlphaFold2 features.

Inputs: ``<scratch>/<run_id>/input/targets/<target>.fasta`` and the databases under the
DB root (see :mod:`foldstack.steps.databases` for how they are found).
Outputs, in ``<scratch>/<run_id>/msa/<target>/``:

* ``msa.a3m`` — query first, then the hits of every database (AlphaFold's
  ``deduplicate_stockholm_msa`` + ``convert_stockholm_to_a3m``);
* ``features.npz`` — AlphaFold's feature dict (``make_sequence_features``,
  ``make_msa_features``, template features — see :mod:`foldstack.steps.templates`; the
  empty placeholder when there is no template DB or no hit); loads with
  ``allow_pickle=False``. The GPU step needs nothing else (no database);
* ``features.json`` — tool (and version) that made the MSA, databases (names, versions,
  checksums), templates used, parameters, timings;
* ``msa.done.json`` — the step contract record.

jackhmmer runs through pyhmmer with AlphaFold's settings (``-N 1 --F1 0.0005
--F2 0.00005 --F3 0.0000005 --incE 0.0001 -E 0.0001``), which gives the hit set of the
``jackhmmer`` binary. ``--msa-tool mmseqs2`` is the fast path (:mod:`foldstack.steps.mmseqs`):
same databases, same A3M/feature files, fewer remote homologs.

Multimer targets (chains joined by ':') are searched chain by chain; ``msa.a3m`` then
holds one section per chain (each starting with its query), and the features are built
with AlphaFold's multimer pipeline helpers (see :func:`_multimer_features`).

With ``--cache`` every chain's alignments and templates are looked up in, and on a miss
stored to, the chain cache (:mod:`foldstack.steps.chain_cache`): a chain already searched
in any earlier target (monomer or complex) is not searched again. ``features.json``
records, per chain, ``hit``, ``miss`` or ``off``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.steps.chain_cache import QUERY_NAME, Alignment, ChainCache, ChainSearch
from foldstack.steps.common import StepContext, run_step, write_json
from foldstack.steps.databases import Database, msa_databases
from foldstack.steps.features import (
    FEATURES_NPZ,
    build_monomer_features,
    n_templates,
    save_features,
    summarize,
)

STEP = "msa"
SUPPORTED_TOOLS = ("jackhmmer", "mmseqs2")
# AlphaFold's jackhmmer flags (alphafold/data/tools/jackhmmer.py).
JACKHMMER_PARAMS: dict[str, Any] = {
    "max_iterations": 1,
    "F1": 0.0005,
    "F2": 0.00005,
    "F3": 0.0000005,
    "incE": 0.0001,
    "E": 0.0001,
}


def _cpus() -> int:
    value = os.environ.get("FOLDSTACK_CPUS")
    if value:
        return max(1, int(value))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def jackhmmer_stockholm(sequence: str, name: str, db: Database, cpus: int) -> str:
    """One jackhmmer search; the Stockholm alignment (query first), as the binary's -A."""
    import pyhmmer
    from pyhmmer.easel import Alphabet, SequenceFile, TextSequence

    alphabet = Alphabet.amino()
    query = TextSequence(name=name, sequence=sequence).digitize(alphabet)
    with SequenceFile(str(db.sequences), digital=True, alphabet=alphabet) as targets:
        result = next(pyhmmer.hmmer.jackhmmer(query, targets, cpus=cpus, **JACKHMMER_PARAMS))
    buf = io.BytesIO()
    result.msa.write(buf, "stockholm")
    return buf.getvalue().decode("utf-8", errors="replace")


def _search_chain(ctx: StepContext, chain: str, query_name: str, dbs: list[Database], cpus: int,
                  msa_tool: str = "jackhmmer", runs: dict[str, Any] | None = None) -> list[Alignment]:
    """Search one chain against every DB; each alignment as the tool gives it (after max_hits).

    jackhmmer gives Stockholm, truncated as AlphaFold's ``truncate_stockholm_msa``; MMseqs2
    gives A3M, cut to the query + max_hits rows.
    """
    from alphafold.data import parsers

    alignments = []
    for db in dbs:
        if msa_tool == "mmseqs2":
            from foldstack.steps.mmseqs import search_a3m

            with ctx.timer(f"mmseqs2_{db.name}"):
                a3m, info = search_a3m(chain, query_name, db, cpus=cpus, work_dir=ctx.work_dir, log=ctx.log)
            if runs is not None:
                runs.setdefault(db.name, []).append(info)
            if db.max_hits:
                a3m = "".join(a3m.splitlines(keepends=True)[: 2 * (db.max_hits + 1)])
            alignments.append(Alignment(db.name, "a3m", a3m))
        else:
            with ctx.timer(f"jackhmmer_{db.name}"):
                sto = jackhmmer_stockholm(chain, query_name, db, cpus)
            if db.max_hits:
                tmp = ctx.work_dir / f".{db.name}.sto"
                tmp.write_text(sto)
                try:
                    sto = parsers.truncate_stockholm_msa(str(tmp), db.max_hits)
                finally:
                    tmp.unlink()
            alignments.append(Alignment(db.name, "sto", sto))
    return alignments


def _chain_templates(ctx: StepContext, chain: str, template_db, alignments: list[Alignment],
                     cpus: int) -> tuple[dict | None, dict[str, Any] | None]:
    """AlphaFold template features for one chain and their provenance ((None, None): no
    template database; (None, info): no hit). The search starts from the first
    (UniRef90-role) database's alignment, as AlphaFold's does."""
    if template_db is None:
        return None, None
    from foldstack.steps.templates import search_templates

    first = alignments[0]
    with ctx.timer("templates"):
        result = search_templates(chain, template_db, cpus=cpus, **{first.fmt: first.text})
    info = {"hits": result.hits, "templates": result.used, "errors": result.errors[:20],
            "warnings": result.warnings[:20]}
    ctx.log(f"templates {template_db.name}/{template_db.version}: {len(result.hits)} hmmsearch hits, "
            f"{len(result.used)} template(s) featurized" + (f": {', '.join(result.used[:4])}" if result.used else ""))
    return result.features, info


def _chain_search(ctx: StepContext, chain: str, dbs: list[Database], template_db, cpus: int, msa_tool: str,
                  runs: dict[str, Any], chain_cache: ChainCache | None) -> ChainSearch:
    """One chain's alignments and templates: from the chain cache, else searched (and kept).

    Searched under a fixed query name: the alignments depend on the chain only, so they
    can serve any target (the A3M sections get the target's own names afterwards).
    """
    if chain_cache is not None:
        cached = chain_cache.get(chain, [d.name for d in dbs])
        if cached is not None:
            ctx.log(f"chain of {len(chain)} aa: alignments and templates from the chain cache "
                    f"({chain_cache.key(chain)}, searched by run {cached.origin['source_run']}); not searched")
            return cached
    alignments = _search_chain(ctx, chain, QUERY_NAME, dbs, cpus, msa_tool, runs)
    templates, info = _chain_templates(ctx, chain, template_db, alignments, cpus)
    search = ChainSearch.build(alignments, templates, info)
    if chain_cache is not None:
        chain_cache.put(chain, search, source_run=ctx.run_id)
    return search


def _merge_a3m(a3ms: list[str]) -> str:
    """Concatenate per-DB A3Ms keeping only the first query line."""
    out: list[str] = []
    for i, text in enumerate(a3ms):
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if i > 0:
            lines = lines[2:]  # drop the repeated query record
        out.extend(lines)
    return "\n".join(out) + "\n"


def _multimer_features(ctx: StepContext, record, chain_results: list[tuple[list, str]],
                       chain_templates: list[dict | None] | None = None) -> dict:
    """AlphaFold-Multimer features from per-chain monomer features (pipeline_multimer)."""
    from alphafold.common import protein
    from alphafold.data import feature_processing, msa_pairing, pipeline, pipeline_multimer

    chain_features: dict[str, dict] = {}
    seen: dict[str, dict] = {}
    chain_templates = chain_templates or [None] * len(record.chains)
    for index, ((msas, _), chain) in enumerate(zip(chain_results, record.chains, strict=True)):
        chain_id = protein.PDB_CHAIN_IDS[index]
        if chain in seen:
            feats = {k: v.copy() for k, v in seen[chain].items()}
        else:
            feats = dict(build_monomer_features(chain, f"{record.id}_{chain_id}", msas, chain_templates[index]))
            # The pairing features come from the first (UniRef-like) search, as AlphaFold's
            # uniprot search; species ids decide which rows pair up.
            all_seq = pipeline.make_msa_features([msas[0]])
            feats.update({f"{k}_all_seq": v for k, v in all_seq.items()
                          if k in msa_pairing.MSA_FEATURES + ("msa_species_identifiers",)})
            feats = pipeline_multimer.convert_monomer_features(feats, chain_id=chain_id)
            seen[chain] = feats
        chain_features[chain_id] = feats
    chain_features = pipeline_multimer.add_assembly_features(chain_features)
    np_example = feature_processing.pair_and_merge(all_chain_features=chain_features)
    return pipeline_multimer.pad_msa(np_example, 512)


def run_msa(run_id: str, target: str, scratch: Path | str, db: Path | str, msa_tool: str = "jackhmmer",
            cache: str | None = None) -> Path:
    """Run the msa step under the step contract; return the final directory.

    `cache`: the MSA cache root (a directory or ``s3://`` URI) whose chain entries this step
    reuses and fills (:mod:`foldstack.steps.chain_cache`); None searches every chain.
    """
    if msa_tool not in SUPPORTED_TOOLS:
        raise BadInputError(f"--msa-tool {msa_tool!r} is not supported by this step (supported: "
                            f"{', '.join(SUPPORTED_TOOLS)})")
    if cache:
        from foldstack.core.errors import InputValidationError
        from foldstack.core.uris import parse_uri

        try:
            parse_uri(cache)
        except InputValidationError as exc:
            raise BadInputError(f"--cache {cache!r}: {exc}") from exc

    def body(ctx: StepContext) -> None:
        import pyhmmer

        from foldstack.steps.templates import (
            HMMSEARCH_PARAMS,
            MAX_TEMPLATE_HITS,
            max_template_date,
            template_database,
        )

        record = ctx.read_target()
        ctx.record_input(ctx.run_dir / "input" / "targets" / f"{target}.fasta")
        dbs = msa_databases(db)
        template_db = template_database(db)
        cpus = _cpus()
        ctx.tool_versions.update(_tool_versions(pyhmmer.__version__))
        tool = {"name": "jackhmmer", "implementation": "pyhmmer", "version": pyhmmer.__version__}
        params: dict[str, Any] = {**JACKHMMER_PARAMS}
        if msa_tool == "mmseqs2":
            from foldstack.steps.mmseqs import MMSEQS_PARAMS, mmseqs_binary, mmseqs_version

            binary = mmseqs_binary()
            version = mmseqs_version(binary)
            ctx.tool_versions["mmseqs2"] = version
            tool = {"name": "mmseqs2", "implementation": "mmseqs", "version": version, "binary": binary}
            params = {**MMSEQS_PARAMS, "msa_format_mode": 6}
        ctx.log(f"{len(record.chains)} chain(s), {record.length} residues; {msa_tool}; databases: "
                + ", ".join(f"{d.name}/{d.version}" for d in dbs)
                + (f"; templates: {template_db.name}/{template_db.version}" if template_db else "; no template DB"))

        chain_cache, why = None, "no --cache given"
        if cache:  # what makes a stored search this job's result: see foldstack.steps.chain_cache
            result_versions = {k: v for k, v in ctx.tool_versions.items()
                               if k in ("pyhmmer", "mmseqs2", "alphafold-colabfold")}
            chain_cache, why = ChainCache.open(
                cache, msa_tool, str(db), dbs + ([template_db] if template_db else []),
                max_template_date(template_db) if template_db else None, result_versions, ctx.log)
        if chain_cache is None:
            ctx.log(f"chain cache off: {why}")

        stats: dict[str, Any] = {}
        runs: dict[str, Any] = {}
        template_info: list[dict[str, Any]] = []
        chain_report: list[dict[str, Any]] = []
        chain_results, chain_templates = [], []
        searched: dict[str, ChainSearch] = {}
        for index, chain in enumerate(record.chains):
            name = record.id if len(record.chains) == 1 else f"{record.id}_{index + 1}"
            if chain not in searched:  # homomers: one search per distinct chain
                search = _chain_search(ctx, chain, dbs, template_db, cpus, msa_tool, runs, chain_cache)
                searched[chain] = search
                for d, msa in zip(dbs, search.msas, strict=True):
                    stats.setdefault(d.name, []).append(len(msa) - 1)
                    ctx.log(f"{msa_tool} {d.name}/{d.version}: {len(msa) - 1} hits (chain of {len(chain)} aa"
                            + (", cached)" if search.cached else ")"))
                if search.template_info is not None:
                    template_info.append(search.template_info)
            search = searched[chain]
            chain_report.append({"chain": index + 1, "sha256": hashlib.sha256(chain.encode("ascii")).hexdigest(),
                                 "cache": "hit" if search.cached else ("miss" if chain_cache else "off"),
                                 **(search.origin or {})})
            a3m = _merge_a3m(search.a3ms)
            if a3m.startswith(">"):  # each section starts with this target's name for the chain
                a3m = f">{name}\n" + a3m.split("\n", 1)[1]
            chain_results.append((search.msas, a3m))
            chain_templates.append(search.templates)

        with ctx.timer("features"):
            if len(record.chains) == 1:
                features = build_monomer_features(record.chains[0], record.id, chain_results[0][0],
                                                  chain_templates[0])
            else:
                features = _multimer_features(ctx, record, chain_results, chain_templates)
            save_features(ctx.work_dir / FEATURES_NPZ, features)
        (ctx.work_dir / "msa.a3m").write_text("".join(a3m for _, a3m in chain_results))
        template_block: dict[str, Any] = {"database": None, "n_templates": n_templates(features)}
        if template_db is not None:
            template_block.update({
                "database": template_db.provenance(), "search": "hmmsearch (pyhmmer) of the MSA's HMM vs "
                + template_db.manifest["seqres"], "featurizer": "alphafold.data.templates.HmmsearchHitFeaturizer",
                "hmmsearch": HMMSEARCH_PARAMS, "max_template_date": max_template_date(template_db),
                "max_hits": MAX_TEMPLATE_HITS, "per_chain": template_info,
            })
        write_json(ctx.work_dir / "features.json", {
            "schema_version": 1,
            "target": target,
            "run_id": run_id,
            "sequence": record.sequence,
            "chains": len(record.chains),
            "n_residues": record.length,
            "msa_tool": msa_tool,
            "multimer": len(record.chains) > 1,
            "tool": tool,
            "msa_tools": {d.name: {"tool": msa_tool, "version": tool["version"]} for d in dbs},
            "tool_versions": ctx.tool_versions,
            "parameters": {**params, "cpus": cpus,
                           "max_hits": {d.name: d.max_hits for d in dbs},
                           "templates": "hmmsearch + HmmsearchHitFeaturizer" if template_db
                           else "none (empty template features)"},
            "databases": [d.provenance() for d in dbs],  # the MSA databases; templates: see "templates"
            "templates": template_block,
            "mmseqs_target_db": runs or None,
            "chain_cache": {"db_version": chain_cache.db_version if chain_cache else None,
                            "status": "on" if chain_cache else f"off: {why}", "chains": chain_report},
            "hits": stats,
            "msa_depth": int(features["msa"].shape[0]),
            "features": summarize(features),
            "timings": dict(ctx.timings),
        })

    return run_step(STEP, run_id, target, scratch, body)


def _tool_versions(pyhmmer_version: str) -> dict[str, str]:
    from importlib import metadata

    versions = {"pyhmmer": pyhmmer_version}
    for dist in ("alphafold-colabfold", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions
