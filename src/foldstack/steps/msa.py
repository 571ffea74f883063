"""`foldstack step msa`: a database preset's searches → A3M + templates + AlphaFold2 features.

Inputs: ``<scratch>/<run_id>/input/targets/<target>.fasta`` and the databases under the
DB root. What is searched, with which tool and parameters, is the request's **database
preset** (``--db-preset``, else the run's staged ``input/request.json``, else
``reduced_dbs``; see :data:`foldstack.steps.databases.PRESETS`):

* ``full_dbs`` / ``reduced_dbs`` (AlphaFold): jackhmmer on UniRef90 and MGnify, hhblits on
  BFD + UniRef30 (``full_dbs``) or jackhmmer on small BFD (``reduced_dbs``); templates by
  hhsearch on pdb70 (monomers; hmmsearch on pdb_seqres when pdb70 is not installed, noted)
  or hmmsearch on pdb_seqres (multimers); for heteromers, jackhmmer on UniProt, whose
  species identifiers pair MSA rows across chains. ``--msa-tool mmseqs2`` searches the
  jackhmmer databases with MMseqs2 instead (the fast path; hhblits stays hhblits).
* ``colabfold``: MMseqs2 on UniRef30, then the environmental DB seeded by its profile, as
  ``colabfold_search`` does, on ColabFold's prebuilt profile databases or on ones built from
  FASTA (:func:`foldstack.steps.mmseqs_profile.colabfold_search`).

Outputs, in ``<scratch>/<run_id>/msa/<target>/``:

* ``msa.a3m`` — query first, then the hits of every MSA search, in the preset's order
  (AlphaFold's ``deduplicate_stockholm_msa`` + ``convert_stockholm_to_a3m`` for jackhmmer);
* ``features.npz`` — AlphaFold's feature dict (``make_sequence_features``,
  ``make_msa_features`` — rows deduplicated across MSAs as upstream AlphaFold does for its
  presets —, template features, see :mod:`foldstack.steps.templates`); loads with
  ``allow_pickle=False``. The GPU step needs nothing else (no database);
* ``features.json`` — the preset and its plan, the tool (and version) of every search, every
  database (name, version, manifest checksum), templates, pairing, parameters, timings;
* ``msa.done.json`` — the step contract record (with peak RSS and CPU seconds).

**Memory does not grow with the database**: jackhmmer and hmmsearch stream their FASTA
from disk (:mod:`foldstack.steps.hmmer`), MMseqs2 memory-maps its prebuilt index, hhblits
reads its ffindex files. An out-of-memory failure exits 3, and the workflow retries the
job once on the bigger CPU class.

Multimer targets (chains joined by ':') are searched chain by chain (MMseqs2: all chains in
one batched search); ``msa.a3m`` then holds one section per chain, and the features are
built with AlphaFold's multimer helpers (:func:`_multimer_features`). Without a UniProt
database pairing is off, and features.json says so (``pairing.status``).

With ``--cache`` every chain's alignments and templates are looked up in, and on a miss
stored to, the chain cache (:mod:`foldstack.steps.chain_cache`); the run's chain-search
phase (:func:`foldstack.steps.msa_chains.run_msa_chains`) fills it before the per-target jobs, which then only
featurise. ``features.json`` records, per chain, ``hit``, ``miss`` or ``off``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from foldstack.steps.chain_cache import ChainCache, ChainSearch
from foldstack.steps.common import REQUEST_NAME, StepContext, after_staged, run_step, staged_fasta_name, write_json
from foldstack.steps.databases import with_request_pins
from foldstack.steps.features import (
    FEATURES_NPZ,
    build_monomer_features,
    make_msa_features,
    n_templates,
    save_features,
    summarize,
)
from foldstack.steps.msa_search import (
    JACKHMMER_PARAMS,
    RUN_STORE,
    SUPPORTED_TOOLS,
    Searcher,
    chain_searches,
    check_args,
    cpu_class,
    cpus,
    injected_oom,
    jackhmmer_stockholm,
    open_chain_cache,
    renamed,
    resolve_preset,
    run_store_root,
    tool_record,
)
from foldstack.steps.presets import SearchPlan, plan_searches

__all__ = ["JACKHMMER_PARAMS", "RUN_STORE", "STEP", "SUPPORTED_TOOLS", "jackhmmer_stockholm", "run_msa"]

STEP = "msa"


def _merge_a3m(a3ms: list[str]) -> str:
    """Concatenate per-DB A3Ms keeping only the first query line."""
    out: list[str] = []
    for i, text in enumerate(a3ms):
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if i > 0:
            lines = lines[2:]  # drop the repeated query record
        out.extend(lines)
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- features


def _query_only_msa(chain: str, name: str):
    from alphafold.data import parsers

    return parsers.Msa(sequences=[chain], deletion_matrix=[[0] * len(chain)], descriptions=[name])


def _multimer_features(ctx: StepContext, record, msas_per_chain: list[list], pairing_msas: list | None,
                       chain_templates: list[dict | None], dedupe: bool) -> tuple[dict, dict[str, Any]]:
    """AlphaFold-Multimer features from per-chain monomer features (pipeline_multimer), and
    what the pairing did. `pairing_msas`: per chain, its UniProt MSA (None: pairing off,
    each chain's pairing MSA holds only its query)."""
    from alphafold.common import protein
    from alphafold.data import feature_processing, msa_pairing, pipeline_multimer

    chain_features: dict[str, dict] = {}
    seen: dict[str, dict] = {}
    species: dict[str, int] = {}
    for index, chain in enumerate(record.chains):
        chain_id = protein.PDB_CHAIN_IDS[index]
        if chain in seen:
            feats = {k: v.copy() for k, v in seen[chain].items()}
        else:
            feats = dict(build_monomer_features(chain, f"{record.id}_{chain_id}", msas_per_chain[index],
                                                chain_templates[index], dedupe=dedupe))
            # pipeline_multimer._all_seq_msa_features: the UniProt MSA's species identifiers
            # decide which rows pair up across chains
            all_seq_msa = pairing_msas[index] if pairing_msas else _query_only_msa(chain, f"{record.id}_{chain_id}")
            all_seq = make_msa_features([all_seq_msa], dedupe=dedupe)
            feats.update({f"{k}_all_seq": v for k, v in all_seq.items()
                          if k in msa_pairing.MSA_FEATURES + ("msa_species_identifiers",)})
            feats = pipeline_multimer.convert_monomer_features(feats, chain_id=chain_id)
            seen[chain] = feats
        ids = [s for s in feats["msa_species_identifiers_all_seq"].tolist() if s]
        species[chain_id] = len(set(ids))
        chain_features[chain_id] = feats
    chain_features = pipeline_multimer.add_assembly_features(chain_features)
    # feature_processing.pair_and_merge, step by step, to count the rows it pairs
    feature_processing.process_unmerged_features(chain_features)
    np_chains_list = list(chain_features.values())
    pair = not feature_processing._is_homomer_or_monomer(np_chains_list)  # noqa: SLF001 - AlphaFold's own test
    paired_rows = 0
    if pair:
        np_chains_list = msa_pairing.create_paired_features(chains=np_chains_list)
        paired_rows = int(np_chains_list[0]["msa_all_seq"].shape[0]) - 1  # without the query row
        np_chains_list = msa_pairing.deduplicate_unpaired_sequences(np_chains_list)
    np_chains_list = feature_processing.crop_chains(
        np_chains_list, msa_crop_size=feature_processing.MSA_CROP_SIZE, pair_msa_sequences=pair,
        max_templates=feature_processing.MAX_TEMPLATES)
    np_example = msa_pairing.merge_chain_features(np_chains_list=np_chains_list, pair_msa_sequences=pair,
                                                  max_templates=feature_processing.MAX_TEMPLATES)
    np_example = feature_processing.process_final(np_example)
    return pipeline_multimer.pad_msa(np_example, 512), {"paired_rows": paired_rows, "species_identifiers": species,
                                                        "pairs": pair}


def _run_store(scratch: Path, run_id: str, plan: SearchPlan, db: Path | str, msa_tool: str,
               ctx: StepContext) -> ChainCache | None:
    """This run's chain store (what its chain search phase found with no cache to fill), or
    None when the phase wrote none."""
    root = run_store_root(scratch, run_id)
    if not root.is_dir():
        return None
    store, _ = open_chain_cache(ctx, str(root), plan, db, msa_tool)
    return store


def run_msa(run_id: str, target: str, scratch: Path | str, db: Path | str, msa_tool: str = "jackhmmer",
            cache: str | None = None, db_preset: str | None = None) -> Path:
    """Run the msa step under the step contract; return the final directory.

    `cache`: the MSA cache root (a directory or ``s3://`` URI) whose chain entries this step
    reuses and fills (:mod:`foldstack.steps.chain_cache`); None searches every chain. The
    run's own chain store (filled by :mod:`foldstack.steps.msa_chains`) is read as well.
    `db_preset`: None takes the staged request's (else ``reduced_dbs``).
    """
    check_args(msa_tool, cache)

    def body(ctx: StepContext) -> None:
        record = ctx.read_target()
        ctx.record_input(ctx.run_dir / "input" / "targets" / f"{target}.fasta")
        if injected_oom(target):
            from foldstack.core.errors import OutOfMemoryError

            raise OutOfMemoryError(f"injected out of memory (FOLDSTACK_FAULT_OOM_MSA) on the {cpu_class()} CPU class")
        preset = resolve_preset(db_preset, ctx.run_dir)
        multimer = len(record.chains) > 1
        heteromer = len(set(record.chains)) > 1
        plan = plan_searches(db, preset, msa_tool, multimer=multimer, pairing=heteromer)
        n_cpus = cpus()
        tool, params = tool_record(ctx, plan)
        ctx.log(f"{len(record.chains)} chain(s), {record.length} residues; db_preset {preset}: "
                + "; ".join(f"{s.tool} on {s.label}" for s in plan.msa)
                + (f"; templates: {plan.templates.tool} on {plan.templates.label}" if plan.templates
                   else f"; {plan.template_note}")
                + (f"; pairing {plan.pairing_note}" if multimer else ""))

        chain_cache, why = open_chain_cache(ctx, cache, plan, db, msa_tool)
        if chain_cache is None:
            ctx.log(f"chain cache off: {why}")
        run_store = _run_store(ctx.scratch, run_id, plan, db, msa_tool, ctx)
        searcher = Searcher(ctx, plan, n_cpus)
        distinct = list(dict.fromkeys(record.chains))
        searched: dict[str, ChainSearch] = {}
        if run_store is not None:  # the run's chain phase searched these already
            for chain in distinct:
                found = run_store.get(chain, searcher.names())
                if found is not None:
                    found.origin = {**(found.origin or {}), "run_store": True}
                    searched[chain] = found
                    ctx.log(f"chain of {len(chain)} aa: from this run's chain search phase; not searched")
        rest = [c for c in distinct if c not in searched]
        if rest:
            searched.update(chain_searches(ctx, rest, searcher, chain_cache))

        names = searcher.names()
        n_msa = len(plan.msa)
        stats: dict[str, Any] = {}
        template_info: list[dict[str, Any]] = []
        chain_report: list[dict[str, Any]] = []
        for chain in distinct:
            search = searched[chain]
            for name, msa in zip(names, search.msas, strict=True):
                stats.setdefault(name, []).append(len(msa) - 1)
                ctx.log(f"{name}: {len(msa) - 1} hits (chain of {len(chain)} aa"
                        + (", cached)" if search.cached else ")"))
            if search.template_info is not None:
                template_info.append(search.template_info)
        a3m_sections, msas_per_chain, templates_per_chain, pairing_msas = [], [], [], []
        for index, chain in enumerate(record.chains):
            name = record.id if len(record.chains) == 1 else f"{record.id}_{index + 1}"
            search = searched[chain]
            source = "hit" if search.cached else ("miss" if chain_cache else "off")
            if search.origin and search.origin.get("run_store"):
                source = "run"
            chain_report.append({"chain": index + 1, "sha256": hashlib.sha256(chain.encode("ascii")).hexdigest(),
                                 "cache": source, **{k: v for k, v in (search.origin or {}).items()
                                                     if k != "run_store"}})
            a3m_sections.append(renamed(_merge_a3m(search.a3ms[:n_msa]), name))
            msas_per_chain.append(search.msas[:n_msa])
            templates_per_chain.append(search.templates)
            if plan.pairing is not None:
                pairing_msas.append(search.msas[n_msa])

        pairing: dict[str, Any] = {"status": plan.pairing_note if multimer else "monomer: no pairing",
                                   "database": plan.pairing.databases[0].provenance() if plan.pairing else None}
        with ctx.timer("features"):
            if not multimer:
                features = build_monomer_features(record.chains[0], record.id, msas_per_chain[0],
                                                  templates_per_chain[0], dedupe=plan.preset.dedupe)
            else:
                features, paired = _multimer_features(ctx, record, msas_per_chain, pairing_msas or None,
                                                      templates_per_chain, plan.preset.dedupe)
                pairing.update(paired)
                if not heteromer:
                    pairing["status"] = "off: a homomer (AlphaFold pairs no rows and searches no UniProt for it)"
                ctx.log(f"pairing {pairing['status']}; {paired['paired_rows']} paired row(s)")
            save_features(ctx.work_dir / FEATURES_NPZ, features)
        (ctx.work_dir / "msa.a3m").write_text("".join(a3m_sections))
        write_json(ctx.work_dir / "features.json", _features_json(
            ctx, record, target, run_id, plan, tool, params, n_cpus, features, stats, template_info, chain_report,
            chain_cache, why, searcher, pairing))

    # the staged request (preset, pinned database versions) and FASTA, before anything reads them
    staged = after_staged(lambda ctx: [REQUEST_NAME, staged_fasta_name(target)], with_request_pins(body))
    return run_step(STEP, run_id, target, scratch, staged)


def _features_json(ctx, record, target, run_id, plan: SearchPlan, tool, params, cpus, features, stats,
                   template_info, chain_report, chain_cache, why, searcher: Searcher,
                   pairing: dict[str, Any]) -> dict[str, Any]:
    from foldstack.steps.templates import MAX_TEMPLATE_HITS, max_template_date

    template_block: dict[str, Any] = {"database": None, "n_templates": n_templates(features),
                                      "note": plan.template_note or None}
    if plan.templates is not None:
        search = plan.templates
        mmcif = search.databases[search.spec.roles.index("pdb_mmcif")]
        template_block.update({
            "database": mmcif.provenance(), "search": search.tool,
            "search_databases": [d.provenance() for d in search.databases],
            "featurizer": "alphafold.data.templates." + ("HhsearchHitFeaturizer" if search.tool == "hhsearch"
                                                        else "HmmsearchHitFeaturizer"),
            search.tool: search.spec.params, "max_template_date": max_template_date(mmcif),
            "max_hits": MAX_TEMPLATE_HITS, "per_chain": template_info,
        })
    names = searcher.names()
    msa_dbs = [d for s in plan.msa for d in s.databases]
    return {
        "schema_version": 2,
        "target": target,
        "run_id": run_id,
        "sequence": record.sequence,
        "chains": len(record.chains),
        "n_residues": record.length,
        "msa_tool": plan.msa_tool,
        "db_preset": plan.preset.name,
        "preset": plan.describe(),
        "multimer": len(record.chains) > 1,
        "tool": tool,
        "msa_tools": {name: {"tool": s.tool, "version": ctx.tool_versions.get(
            "pyhmmer" if s.tool == "jackhmmer" else s.tool, tool["version"])}
            for name, s in zip(names, searcher.searches, strict=True)},
        "tool_versions": ctx.tool_versions,
        "parameters": {**params, "cpus": cpus,
                       "max_hits": {n: s.spec.max_hits for n, s in zip(names, searcher.searches, strict=True)},
                       "searches": {n: s.spec.params if s.tool == s.spec.tool else "mmseqs2 fast path"
                                    for n, s in zip(names, searcher.searches, strict=True)},
                       "templates": f"{plan.templates.tool} + featurizer" if plan.templates
                       else "none (empty template features)"},
        # the MSA databases, then UniProt (pairing); templates: see "templates"
        "databases": [d.provenance() for d in msa_dbs]
        + ([plan.pairing.databases[0].provenance()] if plan.pairing else []),
        "templates": template_block,
        "pairing": pairing,
        "mmseqs_target_db": searcher.runs or None,
        "streamed": searcher.streams or None,
        "chain_cache": {"db_version": chain_cache.db_version if chain_cache else None,
                        "status": "on" if chain_cache else f"off: {why}", "chains": chain_report},
        "hits": stats,
        "msa_depth": int(features["msa"].shape[0]),
        "features": summarize(features),
        "timings": dict(ctx.timings),
        "cpu_class": cpu_class(),  # standard, or escalated (the workflow's rerun after running out of memory)
    }
