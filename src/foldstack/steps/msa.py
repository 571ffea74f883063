"""`foldstack step msa`: jackhmmer (pyhmmer) → A3M + AlphaFold2 features.

Inputs: ``<scratch>/<run_id>/input/targets/<target>.fasta`` and the databases under the
DB root (see :mod:`foldstack.steps.databases` for how they are found).
Outputs, in ``<scratch>/<run_id>/msa/<target>/``:

* ``msa.a3m`` — query first, then the hits of every database (AlphaFold's
  ``deduplicate_stockholm_msa`` + ``convert_stockholm_to_a3m``);
* ``features.npz`` — AlphaFold's feature dict (``make_sequence_features``,
  ``make_msa_features``, empty template features); loads with ``allow_pickle=False``;
* ``features.json`` — tool, databases (names, versions, checksums), parameters, timings;
* ``msa.done.json`` — the step contract record.

jackhmmer runs through pyhmmer with AlphaFold's settings (``-N 1 --F1 0.0005
--F2 0.00005 --F3 0.0000005 --incE 0.0001 -E 0.0001``), which gives the hit set of the
``jackhmmer`` binary.

Multimer targets (chains joined by ':') are searched chain by chain; ``msa.a3m`` then
holds one section per chain (each starting with its query), and the features are built
with AlphaFold's multimer pipeline helpers (see :func:`_multimer_features`).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

from foldstack.steps.common import BadInputError, StepContext, run_step, write_json
from foldstack.steps.databases import Database, msa_databases
from foldstack.steps.features import (
    FEATURES_NPZ,
    build_monomer_features,
    save_features,
    summarize,
)

STEP = "msa"
SUPPORTED_TOOLS = ("jackhmmer",)
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
                  stats: dict[str, Any]) -> tuple[list, list[str]]:
    """Search one chain against every DB: (AlphaFold Msa objects, A3M texts)."""
    from alphafold.data import parsers

    msas, a3ms = [], []
    for db in dbs:
        with ctx.timer(f"jackhmmer_{db.name}"):
            sto = jackhmmer_stockholm(chain, query_name, db, cpus)
        tmp = ctx.work_dir / f".{db.name}.sto"
        tmp.write_text(sto)
        try:
            if db.max_hits:
                sto = parsers.truncate_stockholm_msa(str(tmp), db.max_hits)
        finally:
            tmp.unlink()
        msa = parsers.parse_stockholm(sto)
        msas.append(msa)
        a3m = parsers.convert_stockholm_to_a3m(parsers.deduplicate_stockholm_msa(sto))
        a3ms.append(a3m)
        stats.setdefault(db.name, []).append(len(msa) - 1)
        ctx.log(f"jackhmmer {db.name}/{db.version}: {len(msa) - 1} hits (chain of {len(chain)} aa)")
    return msas, a3ms


def _merge_a3m(a3ms: list[str]) -> str:
    """Concatenate per-DB A3Ms keeping only the first query line."""
    out: list[str] = []
    for i, text in enumerate(a3ms):
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if i > 0:
            lines = lines[2:]  # drop the repeated query record
        out.extend(lines)
    return "\n".join(out) + "\n"


def _multimer_features(ctx: StepContext, record, chain_results: list[tuple[list, str]]) -> dict:
    """AlphaFold-Multimer features from per-chain monomer features (pipeline_multimer)."""
    from alphafold.common import protein
    from alphafold.data import feature_processing, msa_pairing, pipeline, pipeline_multimer

    chain_features: dict[str, dict] = {}
    seen: dict[str, dict] = {}
    for index, ((msas, _), chain) in enumerate(zip(chain_results, record.chains, strict=True)):
        chain_id = protein.PDB_CHAIN_IDS[index]
        if chain in seen:
            feats = {k: v.copy() for k, v in seen[chain].items()}
        else:
            feats = dict(build_monomer_features(chain, f"{record.id}_{chain_id}", msas))
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

    `cache` (the MSA cache root) is accepted for the workflow's sake and not used yet.
    """
    if msa_tool not in SUPPORTED_TOOLS:
        raise BadInputError(f"--msa-tool {msa_tool!r} is not supported by this step (supported: "
                            f"{', '.join(SUPPORTED_TOOLS)})")

    def body(ctx: StepContext) -> None:
        import pyhmmer

        record = ctx.read_target()
        ctx.record_input(ctx.run_dir / "input" / "targets" / f"{target}.fasta")
        dbs = msa_databases(db)
        cpus = _cpus()
        ctx.tool_versions.update(_tool_versions(pyhmmer.__version__))
        ctx.log(f"{len(record.chains)} chain(s), {record.length} residues; databases: "
                + ", ".join(f"{d.name}/{d.version}" for d in dbs))

        stats: dict[str, Any] = {}
        chain_results = []
        for index, chain in enumerate(record.chains):
            name = record.id if len(record.chains) == 1 else f"{record.id}_{index + 1}"
            msas, a3ms = _search_chain(ctx, chain, name, dbs, cpus, stats)
            chain_results.append((msas, _merge_a3m(a3ms)))

        with ctx.timer("features"):
            if len(record.chains) == 1:
                features = build_monomer_features(record.chains[0], record.id, chain_results[0][0])
            else:
                features = _multimer_features(ctx, record, chain_results)
            save_features(ctx.work_dir / FEATURES_NPZ, features)
        (ctx.work_dir / "msa.a3m").write_text("".join(a3m for _, a3m in chain_results))
        write_json(ctx.work_dir / "features.json", {
            "schema_version": 1,
            "target": target,
            "run_id": run_id,
            "sequence": record.sequence,
            "chains": len(record.chains),
            "n_residues": record.length,
            "msa_tool": msa_tool,
            "multimer": len(record.chains) > 1,
            "tool": {"name": "jackhmmer", "implementation": "pyhmmer", "version": pyhmmer.__version__},
            "tool_versions": ctx.tool_versions,
            "parameters": {**JACKHMMER_PARAMS, "cpus": cpus,
                           "max_hits": {d.name: d.max_hits for d in dbs},
                           "templates": "none (empty template features)"},
            "databases": [d.provenance() for d in dbs],
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
