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
  ``colabfold_search`` does (:func:`foldstack.steps.mmseqs.colabfold_search_a3m`).

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
phase (:func:`run_msa_chains`) fills it before the per-target jobs, which then only
featurise. ``features.json`` records, per chain, ``hit``, ``miss`` or ``off``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess  # nosec B404 - fixed argv, no shell
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.steps.chain_cache import QUERY_NAME, Alignment, ChainCache, ChainSearch
from foldstack.steps.common import StepContext, run_step, write_json
from foldstack.steps.databases import (
    DEFAULT_PRESET,
    JACKHMMER,
    PRESETS,
    Database,
    PlannedSearch,
    SearchPlan,
    plan_searches,
    with_request_pins,
)
from foldstack.steps.features import (
    FEATURES_NPZ,
    build_monomer_features,
    make_msa_features,
    n_templates,
    save_features,
    summarize,
)

STEP = "msa"
SUPPORTED_TOOLS = ("jackhmmer", "mmseqs2")
HHBLITS_ENV = "FOLDSTACK_HHBLITS"
# AlphaFold's jackhmmer flags (alphafold/data/tools/jackhmmer.py), as features.json has always
# named them; the presets' own form is foldstack.steps.databases.JACKHMMER.
JACKHMMER_PARAMS: dict[str, Any] = {
    "max_iterations": JACKHMMER["n_iter"],
    "F1": JACKHMMER["F1"],
    "F2": JACKHMMER["F2"],
    "F3": JACKHMMER["F3"],
    "incE": JACKHMMER["e_value"],
    "E": JACKHMMER["e_value"],
}


def _cpus() -> int:
    value = os.environ.get("FOLDSTACK_CPUS")
    if value:
        return max(1, int(value))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- tools


def jackhmmer_stockholm(sequence: str, name: str, db: Database, cpus: int,
                        params: dict[str, Any] | None = None, stats=None) -> str:
    """One jackhmmer search, streamed from disk; the Stockholm alignment (query first), as
    the binary's -A. Z is the database's recorded ``sequence_count`` (else counted)."""
    from foldstack.steps.hmmer import jackhmmer

    return jackhmmer(sequence, name, db.sequences, params or JACKHMMER, cpus=cpus, z=db.sequence_count,
                     stats=stats)


def hhblits_binary() -> str:
    return os.environ.get(HHBLITS_ENV) or shutil.which("hhblits") or "hhblits"


def hhblits_argv(binary: str, fasta: str, a3m_out: str, prefixes: Sequence[Path], cpus: int,
                 params: dict[str, Any]) -> list[str]:
    """AlphaFold's hhblits command line (alphafold/data/tools/hhblits.py ``HHBlits.query``)."""
    argv = [binary, "-i", fasta, "-cpu", str(cpus), "-oa3m", a3m_out, "-o", "/dev/null",
            "-n", str(params["n_iter"]), "-e", str(params["e_value"]), "-maxseq", str(params["maxseq"]),
            "-realign_max", str(params["realign_max"]), "-maxfilt", str(params["maxfilt"]),
            "-min_prefilter_hits", str(params["min_prefilter_hits"])]
    if params.get("all_seqs"):
        argv += ["-all"]
    if params.get("alt"):
        argv += ["-alt", str(params["alt"])]
    if params.get("p", 20) != 20:
        argv += ["-p", str(params["p"])]
    if params.get("z", 500) != 500:
        argv += ["-Z", str(params["z"])]
    for prefix in prefixes:
        argv += ["-d", str(prefix)]
    return argv


def hhblits_a3m(sequence: str, name: str, dbs: Sequence[Database], *, cpus: int, work_dir: Path,
                params: dict[str, Any]) -> str:
    """hhblits of one sequence against the HH-suite databases (AlphaFold: BFD + UniRef30,
    one search): the A3M. The databases' ffindex files are read by hhblits as usual."""
    import tempfile

    prefixes = []
    for db in dbs:
        if db.hhsuite_prefix is None or not list(db.hhsuite_prefix.parent.glob(db.hhsuite_prefix.name + "_*")):
            raise BadInputError(f"HH-suite database {db.name}: no files {db.hhsuite_prefix}_* (manifest hhsuite_db)")
        prefixes.append(db.hhsuite_prefix)
    with tempfile.TemporaryDirectory(prefix=".hhblits-", dir=work_dir) as tmp:
        fasta, out = os.path.join(tmp, "query.fasta"), os.path.join(tmp, "output.a3m")
        Path(fasta).write_text(f">{name}\n{sequence}\n")
        proc = subprocess.run(hhblits_argv(hhblits_binary(), fasta, out, prefixes, cpus, params),  # nosec B603
                              capture_output=True, text=True)
        if proc.returncode:
            tail = proc.stderr[-2000:]
            if proc.returncode in (-9, 137) or "bad_alloc" in tail or "out of memory" in tail.lower():
                raise MemoryError(f"hhblits ran out of memory: {tail}")
            raise RuntimeError(f"hhblits failed (exit {proc.returncode}): {tail}")
        return Path(out).read_text()


def _truncate_sto(ctx_dir: Path, sto: str, max_hits: int | None, label: str) -> str:
    """AlphaFold's ``truncate_stockholm_msa`` (run_msa_tool's max_sto_sequences)."""
    if not max_hits:
        return sto
    from alphafold.data import parsers

    tmp = ctx_dir / f".{label}.sto"
    tmp.write_text(sto)
    try:
        return parsers.truncate_stockholm_msa(str(tmp), max_hits)
    finally:
        tmp.unlink()


def _truncate_a3m(a3m: str, max_hits: int | None) -> str:
    return "".join(a3m.splitlines(keepends=True)[: 2 * (max_hits + 1)]) if max_hits else a3m


def alignment_name(search: PlannedSearch) -> str:
    """The name of a search's alignment (features.json ``hits``, chain cache files): its
    sequence databases' names joined by '+' (hhblits: BFD + UniRef30 in one alignment)."""
    return "+".join(d.name for d in search.databases)


# ----------------------------------------------------------------------------- searching chains


class Searcher:
    """Runs a plan's MSA (and pairing) searches for chains; records timings, MMseqs2 run
    info and streaming statistics on the step context."""

    def __init__(self, ctx: StepContext, plan: SearchPlan, cpus: int) -> None:
        self.ctx, self.plan, self.cpus = ctx, plan, cpus
        self.runs: dict[str, Any] = {}
        self.streams: dict[str, Any] = {}

    @property
    def searches(self) -> list[PlannedSearch]:
        """MSA searches, then the pairing search (heteromers with a UniProt database)."""
        return [*self.plan.msa, *([self.plan.pairing] if self.plan.pairing else [])]

    def names(self) -> list[str]:
        return [alignment_name(s) for s in self.searches]

    def search(self, chains: Sequence[str]) -> dict[str, list[Alignment]]:
        """{chain: its alignments, in :meth:`names` order}; MMseqs2 searches every chain of
        the batch in one search, jackhmmer and hhblits search them one by one."""
        chains = list(dict.fromkeys(chains))
        out: dict[str, dict[str, Alignment]] = {c: {} for c in chains}
        if self.plan.preset.name == "colabfold":
            self._colabfold(chains, out)
        for search in self.searches:
            name = alignment_name(search)
            if all(name in out[c] for c in chains):
                continue
            if search.tool == "mmseqs2":
                self._mmseqs(search, chains, out)
            else:
                for chain in chains:
                    out[chain][name] = self._one(search, chain)
        return {c: [out[c][n] for n in self.names()] for c in chains}

    def _one(self, search: PlannedSearch, chain: str) -> Alignment:
        from foldstack.steps.hmmer import StreamStats

        name = alignment_name(search)
        with self.ctx.timer(f"{search.tool}_{name}"):
            if search.tool == "jackhmmer":
                stats = StreamStats()
                sto = jackhmmer_stockholm(chain, QUERY_NAME, search.databases[0], self.cpus, search.spec.params, stats)
                self.streams.setdefault(name, []).append(stats.to_dict())
                return Alignment(name, "sto", _truncate_sto(self.ctx.work_dir, sto, search.spec.max_hits, name))
            if search.tool == "hhblits":
                a3m = hhblits_a3m(chain, QUERY_NAME, search.databases, cpus=self.cpus, work_dir=self.ctx.work_dir,
                                  params=search.spec.params)
                return Alignment(name, "a3m", _truncate_a3m(a3m, search.spec.max_hits))
        raise BadInputError(f"no runner for tool {search.tool!r}")  # pragma: no cover - presets name known tools

    def _mmseqs(self, search: PlannedSearch, chains: list[str], out: dict[str, dict[str, Alignment]]) -> None:
        from foldstack.steps.mmseqs import search_many_a3m

        name = alignment_name(search)
        queries = [(f"q{i}", c) for i, c in enumerate(chains)]
        params = search.spec.params if search.spec.tool == "mmseqs2" else None  # fast path: MMSEQS_PARAMS
        with self.ctx.timer(f"mmseqs2_{name}"):
            a3ms, info = search_many_a3m(queries, search.databases[0], cpus=self.cpus, work_dir=self.ctx.work_dir,
                                         params=params, log=self.ctx.log)
        self.runs.setdefault(search.databases[0].name, []).append(info)
        for qname, chain in queries:
            a3m = _renamed(a3ms[qname], QUERY_NAME)
            out[chain][name] = Alignment(name, "a3m", _truncate_a3m(a3m, search.spec.max_hits))

    def _colabfold(self, chains: list[str], out: dict[str, dict[str, Alignment]]) -> None:
        from foldstack.steps.mmseqs import colabfold_search_a3m

        uniref, env = self.plan.msa
        queries = [(f"q{i}", c) for i, c in enumerate(chains)]
        with self.ctx.timer(f"mmseqs2_{alignment_name(uniref)}+{alignment_name(env)}"):
            result, info = colabfold_search_a3m(queries, uniref.databases[0], env.databases[0], cpus=self.cpus,
                                                work_dir=self.ctx.work_dir, params=uniref.spec.params,
                                                log=self.ctx.log)
        self.runs.setdefault("colabfold_search", []).append(info)
        for qname, chain in queries:
            a, b = result[qname]
            out[chain][alignment_name(uniref)] = Alignment(alignment_name(uniref), "a3m", _renamed(a, QUERY_NAME))
            out[chain][alignment_name(env)] = Alignment(alignment_name(env), "a3m", _renamed(b, QUERY_NAME))


def _renamed(a3m: str, name: str) -> str:
    """The A3M with its first (query) record named `name`."""
    if not a3m.startswith(">"):
        return a3m
    return f">{name}\n" + a3m.split("\n", 1)[1]


def _chain_templates(ctx: StepContext, chain: str, plan: SearchPlan, first: Alignment,
                     cpus: int) -> tuple[dict | None, dict[str, Any] | None]:
    """AlphaFold template features for one chain and their provenance ((None, None):
    templates off; (None, info): no hit). The search starts from the first MSA search's
    alignment (UniRef90, or ColabFold's UniRef30), as AlphaFold's does."""
    search = plan.templates
    if search is None:
        return None, None
    from foldstack.steps.templates import search_templates, search_templates_hhsearch

    by_role = {role: db for role, db in zip(search.spec.roles, search.databases, strict=True)}
    mmcif = by_role["pdb_mmcif"]
    with ctx.timer("templates"):
        if search.tool == "hhsearch":
            result = search_templates_hhsearch(chain, by_role["pdb70"], mmcif, **{first.fmt: first.text})
        else:
            result = search_templates(chain, mmcif, cpus=cpus, **{first.fmt: first.text})
    info = {"search": search.tool, "hits": result.hits, "templates": result.used, "errors": result.errors[:20],
            "warnings": result.warnings[:20]}
    ctx.log(f"templates ({search.tool}, {search.label}): {len(result.hits)} hits, "
            f"{len(result.used)} template(s) featurized" + (f": {', '.join(result.used[:4])}" if result.used else ""))
    return result.features, info


def _chain_searches(ctx: StepContext, chains: Sequence[str], searcher: Searcher,
                    chain_cache: ChainCache | None) -> dict[str, ChainSearch]:
    """Every distinct chain's alignments and templates: from the chain cache, else searched
    (all misses together: one batched MMseqs2 search) and kept.

    Searched under a fixed query name: the alignments depend on the chain only, so they
    can serve any target (the A3M sections get the target's own names afterwards).
    """
    found: dict[str, ChainSearch] = {}
    names = searcher.names()
    for chain in dict.fromkeys(chains):
        if chain_cache is not None:
            cached = chain_cache.get(chain, names)
            if cached is not None:
                ctx.log(f"chain of {len(chain)} aa: alignments and templates from the chain cache "
                        f"({chain_cache.key(chain)}, searched by run {cached.origin['source_run']}); not searched")
                found[chain] = cached
    missing = [c for c in dict.fromkeys(chains) if c not in found]
    if missing:
        alignments = searcher.search(missing)
        for chain in missing:
            templates, info = _chain_templates(ctx, chain, searcher.plan, alignments[chain][0], searcher.cpus)
            search = ChainSearch.build(alignments[chain], templates, info)
            if chain_cache is not None:
                chain_cache.put(chain, search, source_run=ctx.run_id)
            found[chain] = search
    return found


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


# ----------------------------------------------------------------------------- the step


def _staged_preset(run_dir: Path) -> str | None:
    """The db_preset of the run's request as Stage Inputs staged it (input/request.json)."""
    path = run_dir / "input" / "request.json"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return json.loads(path.read_text()).get("db_preset")
    return None


def resolve_preset(db_preset: str | None, run_dir: Path) -> str:
    preset = db_preset or _staged_preset(run_dir) or DEFAULT_PRESET
    if preset not in PRESETS:
        raise BadInputError(f"--db-preset {preset!r} is not a database preset (known: {', '.join(PRESETS)})")
    return preset


def _check_args(msa_tool: str, cache: str | None) -> None:
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


def chain_label(msa_tool: str, plan: SearchPlan) -> str:
    """The chain cache's search label: tool and preset, plus ``.hhsearch`` when templates
    come from hhsearch on pdb70 (a monomer's, differing from a multimer's hmmsearch ones)."""
    from foldstack.cachekeys import search_label

    label = search_label(msa_tool, plan.preset.name)
    return label + (".hhsearch" if plan.templates is not None and plan.templates.tool == "hhsearch" else "")


def _open_chain_cache(ctx: StepContext, cache: str | None, plan: SearchPlan, db: Path | str,
                      msa_tool: str) -> tuple[ChainCache | None, str]:
    if not cache:
        return None, "no --cache given"
    from foldstack.steps.templates import max_template_date

    mmcif = next((d for d in (plan.templates.databases if plan.templates else []) if "pdb_mmcif" in d.roles), None)
    result_versions = {k: v for k, v in ctx.tool_versions.items()
                       if k in ("pyhmmer", "mmseqs2", "hhblits", "alphafold-colabfold")}
    return ChainCache.open(cache, chain_label(msa_tool, plan), str(db), plan.databases(),
                           max_template_date(mmcif) if mmcif else None, result_versions, ctx.log,
                           plan.templates.tool if plan.templates else None)


RUN_STORE = "chains"  # <scratch>/<run_id>/chains/: the chain search phase's results when there is no cache


def run_store_root(scratch: Path | str, run_id: str) -> Path:
    return Path(scratch) / run_id / RUN_STORE


def _run_store(scratch: Path, run_id: str, plan: SearchPlan, db: Path | str, msa_tool: str,
               ctx: StepContext) -> ChainCache | None:
    """This run's chain store (what its chain search phase found with no cache to fill), or
    None when the phase wrote none."""
    root = run_store_root(scratch, run_id)
    if not root.is_dir():
        return None
    store, _ = _open_chain_cache(ctx, str(root), plan, db, msa_tool)
    return store


def _tool_record(ctx: StepContext, plan: SearchPlan) -> tuple[dict[str, Any], dict[str, Any]]:
    """(features.json ``tool``, legacy top-level ``parameters``), and tool versions."""
    import pyhmmer

    ctx.tool_versions.update(_tool_versions(pyhmmer.__version__))
    tools = {s.tool for s in [*plan.msa, *([plan.pairing] if plan.pairing else [])]}
    tool: dict[str, Any] = {"name": "jackhmmer", "implementation": "pyhmmer", "streamed": True,
                            "version": pyhmmer.__version__}
    params: dict[str, Any] = {**JACKHMMER_PARAMS}
    if "mmseqs2" in tools:
        from foldstack.steps.mmseqs import MMSEQS_PARAMS, mmseqs_binary, mmseqs_version

        binary = mmseqs_binary()
        version = mmseqs_version(binary)
        ctx.tool_versions["mmseqs2"] = version
        if plan.msa_tool == "mmseqs2":
            tool = {"name": "mmseqs2", "implementation": "mmseqs", "version": version, "binary": binary}
            params = ({**plan.msa[0].spec.params, "msa_format_mode": 6} if plan.preset.name == "colabfold"
                      else {**MMSEQS_PARAMS, "msa_format_mode": 6})
    if "hhblits" in tools:
        ctx.tool_versions["hhblits"] = _hhblits_version()
    return tool, params


def _hhblits_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([hhblits_binary(), "-h"], capture_output=True, text=True, timeout=30)  # nosec B603
        for line in (out.stdout + out.stderr).splitlines():
            if line.startswith("HHblits"):
                return line.strip()
    return "unknown"


def run_msa(run_id: str, target: str, scratch: Path | str, db: Path | str, msa_tool: str = "jackhmmer",
            cache: str | None = None, db_preset: str | None = None) -> Path:
    """Run the msa step under the step contract; return the final directory.

    `cache`: the MSA cache root (a directory or ``s3://`` URI) whose chain entries this step
    reuses and fills (:mod:`foldstack.steps.chain_cache`); None searches every chain. The
    run's own chain store (filled by :func:`run_msa_chains`) is read as well.
    `db_preset`: None takes the staged request's (else ``reduced_dbs``).
    """
    _check_args(msa_tool, cache)

    def body(ctx: StepContext) -> None:
        record = ctx.read_target()
        ctx.record_input(ctx.run_dir / "input" / "targets" / f"{target}.fasta")
        preset = resolve_preset(db_preset, ctx.run_dir)
        multimer = len(record.chains) > 1
        heteromer = len(set(record.chains)) > 1
        plan = plan_searches(db, preset, msa_tool, multimer=multimer, pairing=heteromer)
        cpus = _cpus()
        tool, params = _tool_record(ctx, plan)
        ctx.log(f"{len(record.chains)} chain(s), {record.length} residues; db_preset {preset}: "
                + "; ".join(f"{s.tool} on {s.label}" for s in plan.msa)
                + (f"; templates: {plan.templates.tool} on {plan.templates.label}" if plan.templates
                   else f"; {plan.template_note}")
                + (f"; pairing {plan.pairing_note}" if multimer else ""))

        chain_cache, why = _open_chain_cache(ctx, cache, plan, db, msa_tool)
        if chain_cache is None:
            ctx.log(f"chain cache off: {why}")
        run_store = _run_store(ctx.scratch, run_id, plan, db, msa_tool, ctx)
        searcher = Searcher(ctx, plan, cpus)
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
            searched.update(_chain_searches(ctx, rest, searcher, chain_cache))

        names = searcher.names()
        n_msa = len(plan.msa)
        stats: dict[str, Any] = {}
        template_info: list[dict[str, Any]] = []
        chain_report: list[dict[str, Any]] = []
        for chain in distinct:
            search = searched[chain]
            for name, msa in zip(names, search.msas, strict=True):
                stats.setdefault(name, []).append(len(msa) - 1)
                ctx.log(f"{name}: {len(msa) - 1} hits (chain of {len(chain)} aa" + (", cached)" if search.cached else ")"))
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
            a3m_sections.append(_renamed(_merge_a3m(search.a3ms[:n_msa]), name))
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
            ctx, record, target, run_id, plan, tool, params, cpus, features, stats, template_info, chain_report,
            chain_cache, why, searcher, pairing))

    return run_step(STEP, run_id, target, scratch, with_request_pins(body))


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
    }


def _tool_versions(pyhmmer_version: str) -> dict[str, str]:
    from importlib import metadata

    versions = {"pyhmmer": pyhmmer_version}
    for dist in ("alphafold-colabfold", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


# ----------------------------------------------------------------------------- the chain search phase

CHAINS_STEP = "msa_chains"


def _run_chains(scratch: Path, run_id: str) -> list[tuple[str, list[str]]]:
    """(target id, chains) of every target of the run, from the staged target list and FASTAs."""
    from foldstack.steps.common import read_target_fasta, target_fasta_path

    listing = Path(scratch) / run_id / "input" / "targets.json"
    if not listing.is_file():
        raise BadInputError(f"no staged target list {listing} (Stage Inputs writes it)")
    targets = json.loads(listing.read_text())
    return [(str(t["id"]), list(read_target_fasta(target_fasta_path(scratch, run_id, str(t["id"]))).chains))
            for t in targets]


def shard_chains(targets: Sequence[tuple[str, Sequence[str]]], shard: int, shards: int
                 ) -> list[tuple[tuple[bool, bool], str]]:
    """This shard's (context, chain) pairs. Context = (multimer, heteromer) of a target the
    chain is in: it decides the templates (monomer vs multimer search) and whether UniProt
    is searched. Every distinct (context, chain) of the run is in exactly one shard; longest
    first, dealt round-robin, so shards get similar work."""
    work: dict[tuple[tuple[bool, bool], str], None] = {}
    for _, chains in targets:
        context = (len(chains) > 1, len(set(chains)) > 1)
        for chain in chains:
            work[(context, chain)] = None
    ordered = sorted(work, key=lambda item: (-len(item[1]), hashlib.sha256(item[1].encode()).hexdigest(), item[0]))
    return ordered[shard::shards]


def run_msa_chains(run_id: str, scratch: Path | str, db: Path | str, msa_tool: str = "jackhmmer",
                   cache: str | None = None, db_preset: str | None = None, shard: int = 0,
                   shards: int = 1) -> Path:
    """The run's chain search phase, one shard of it (``foldstack step msa-chains``).

    Before the per-target msa jobs, the run's distinct chains are searched once: the
    shard's chains that the cache (`cache`, else this run's own chain store
    ``<scratch>/<run_id>/chains/``) does not hold are searched together — MMseqs2: one
    batched search; jackhmmer/hhblits: one chain after another, the workflow spreading the
    chains over a bounded number of shards — and stored there. The per-target jobs then
    find every chain stored and only featurise. Runs under the step contract with target
    ``shard-<i>-of-<n>`` (``msa_chains.done.json`` records what was searched).
    """
    _check_args(msa_tool, cache)
    if not 0 <= shard < shards:
        raise BadInputError(f"--shard {shard} is not in 0..{shards - 1} (--shards {shards})")
    scratch = Path(scratch)

    def body(ctx: StepContext) -> None:
        preset = resolve_preset(db_preset, ctx.run_dir)
        mine = shard_chains(_run_chains(scratch, run_id), shard, shards)
        root = cache or str(run_store_root(scratch, run_id))
        cpus = _cpus()
        report: dict[str, Any] = {"db_preset": preset, "shard": shard, "shards": shards, "store": root,
                                  "contexts": []}
        for context in sorted({c for c, _ in mine}):
            multimer, heteromer = context
            chains = [chain for c, chain in mine if c == context]
            plan = plan_searches(db, preset, msa_tool, multimer=multimer, pairing=heteromer)
            tool, _ = _tool_record(ctx, plan)
            store, why = _open_chain_cache(ctx, root, plan, db, msa_tool)
            if store is None:
                raise BadInputError(f"chain store {root} unusable: {why}")
            searcher = Searcher(ctx, plan, cpus)
            names = searcher.names()
            todo = [c for c in chains if store.get(c, names) is None]
            ctx.log(f"{'heteromer' if heteromer else 'multimer' if multimer else 'monomer'} chains: {len(chains)}, "
                    f"{len(chains) - len(todo)} already stored, searching {len(todo)} ({tool['name']})")
            if todo:
                found = _chain_searches(ctx, todo, searcher, store)
                stored = [c for c in todo if store.get(c, names) is not None]
            else:
                found, stored = {}, []
            report["contexts"].append({
                "multimer": multimer, "heteromer": heteromer, "chains": len(chains), "searched": len(todo),
                "stored": len(stored), "label": store.msa_tool, "db_version": store.db_version,
                "hits": {n: [len(found[c].msas[i]) - 1 for c in todo] for i, n in enumerate(names)},
                "mmseqs_target_db": searcher.runs or None, "streamed": searcher.streams or None,
            })
            if len(stored) < len(todo):  # a store that cannot be written to helps no target: fail loudly
                raise RuntimeError(f"chain store {root}: {len(todo) - len(stored)} chain search(es) not stored")
        report["tool_versions"] = ctx.tool_versions
        report["timings"] = dict(ctx.timings)
        write_json(ctx.work_dir / "chains.json", report)

    return run_step(CHAINS_STEP, run_id, f"shard-{shard}-of-{shards}", scratch, with_request_pins(body))
