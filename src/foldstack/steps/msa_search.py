"""The msa step's searches: tools, the search plan run chain by chain, shared helpers.

:class:`Searcher` runs a :class:`~foldstack.steps.presets.SearchPlan`'s MSA (and UniProt)
searches for a set of chains — jackhmmer streamed from disk (:mod:`foldstack.steps.hmmer`),
hhblits with AlphaFold's command line, MMseqs2 in one batched search
(:mod:`foldstack.steps.mmseqs`) — and :func:`chain_searches` adds the chain cache and the
templates. Used by the per-target step (:mod:`foldstack.steps.msa`) and the run's chain
search phase (:mod:`foldstack.steps.msa_chains`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess  # nosec B404 - fixed argv, no shell
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.steps.chain_cache import QUERY_NAME, Alignment, ChainCache, ChainSearch
from foldstack.steps.common import StepContext
from foldstack.steps.databases import Database
from foldstack.steps.presets import DEFAULT_PRESET, JACKHMMER, PRESETS, PlannedSearch, SearchPlan

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


CPU_CLASS_ENV = "FOLDSTACK_CPU_CLASS"  # "escalated" on the workflow's out-of-memory rerun (jobs.yaml escalation)
FAULT_OOM_ENV = "FOLDSTACK_FAULT_OOM_MSA"  # test hook: "<cpu class>" or "<target>" -> out of memory (exit 3)


def cpu_class() -> str:
    """The CPU class this job runs on: ``standard`` (jobs.yaml resources) or ``escalated``."""
    return os.environ.get(CPU_CLASS_ENV) or "standard"


def injected_oom(target: str) -> bool:
    """Test hook (off unless set): ``FOLDSTACK_FAULT_OOM_MSA=<cpu class>[,<target>...]``
    makes the msa step fail as out of memory on that CPU class or for that target."""
    wanted = {w.strip() for w in os.environ.get(FAULT_OOM_ENV, "").split(",") if w.strip()}
    return bool(wanted) and (target in wanted or cpu_class() in wanted)


def cpus() -> int:
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
            a3m = renamed(a3ms[qname], QUERY_NAME)
            out[chain][name] = Alignment(name, "a3m", _truncate_a3m(a3m, search.spec.max_hits))

    def _colabfold(self, chains: list[str], out: dict[str, dict[str, Alignment]]) -> None:
        from foldstack.steps.mmseqs_profile import colabfold_search  # FASTA-built or ColabFold's profile DBs

        uniref, env = self.plan.msa
        queries = [(f"q{i}", c) for i, c in enumerate(chains)]
        with self.ctx.timer(f"mmseqs2_{alignment_name(uniref)}+{alignment_name(env)}"):
            result, info = colabfold_search(queries, uniref.databases[0], env.databases[0], cpus=self.cpus,
                                            work_dir=self.ctx.work_dir, params=uniref.spec.params, log=self.ctx.log)
        self.runs.setdefault("colabfold_search", []).append(info)
        for qname, chain in queries:
            a, b = result[qname]
            out[chain][alignment_name(uniref)] = Alignment(alignment_name(uniref), "a3m", renamed(a, QUERY_NAME))
            out[chain][alignment_name(env)] = Alignment(alignment_name(env), "a3m", renamed(b, QUERY_NAME))


def renamed(a3m: str, name: str) -> str:
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


def chain_searches(ctx: StepContext, chains: Sequence[str], searcher: Searcher,
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



# ----------------------------------------------------------------------------- shared by the steps


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


def check_args(msa_tool: str, cache: str | None) -> None:
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


def open_chain_cache(ctx: StepContext, cache: str | None, plan: SearchPlan, db: Path | str,
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


def tool_record(ctx: StepContext, plan: SearchPlan) -> tuple[dict[str, Any], dict[str, Any]]:
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


def _tool_versions(pyhmmer_version: str) -> dict[str, str]:
    from importlib import metadata

    versions = {"pyhmmer": pyhmmer_version}
    for dist in ("alphafold-colabfold", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions
