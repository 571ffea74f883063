"""The run's chain search phase (``foldstack step msa-chains``): each distinct chain once.

Before the per-target msa jobs, the workflow runs this step in a bounded number of shards
(one batched MMseqs2 search in one job; jackhmmer/hhblits chains dealt to one job per
target, at most ``knobs.chain_search.max_jobs``). Each shard searches the run's distinct
chains dealt to it that the chain cache (or, without one, the run's chain store
``<scratch>/<run_id>/chains/``) does not hold yet, and stores them there; the per-target
msa jobs then find every chain stored and only featurise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.steps.common import REQUEST_NAME, TARGETS_NAME, StepContext, after_staged, run_step, write_json
from foldstack.steps.databases import with_request_pins
from foldstack.steps.msa_search import (
    Searcher,
    chain_label,
    chain_searches,
    check_args,
    cpus,
    open_chain_cache,
    resolve_preset,
    run_store_root,
    tool_record,
)
from foldstack.steps.presets import plan_searches

CHAINS_STEP = "msa_chains"


def _run_chains(ctx: StepContext) -> list[tuple[str, list[str]]]:
    """(target id, chains) of every target of the run, from the staged target list and FASTAs
    (awaited against Stage Inputs' done record, :meth:`StepContext.await_staged`)."""
    from foldstack.steps.common import read_target_fasta, staged_fasta_name

    listing = ctx.await_staged([TARGETS_NAME])[TARGETS_NAME]
    if not listing.is_file():
        raise BadInputError(f"no staged target list {listing} (Stage Inputs writes it)")
    ids = [str(t["id"]) for t in json.loads(listing.read_text())]
    fastas = ctx.await_staged([staged_fasta_name(t) for t in ids])
    return [(t, list(read_target_fasta(fastas[staged_fasta_name(t)]).chains)) for t in ids]


Context = tuple[bool, bool]  # (multimer, heteromer) of a target a chain is in


def contexts_of(targets: Sequence[tuple[str, Sequence[str]]]) -> dict[str, set[Context]]:
    """{chain: the contexts it occurs in}. A context decides the template search (monomer vs
    multimer) and whether UniProt is searched (heteromers, as AlphaFold does)."""
    found: dict[str, set[Context]] = {}
    for _, chains in targets:
        context = (len(chains) > 1, len(set(chains)) > 1)
        for chain in chains:
            found.setdefault(chain, set()).add(context)
    return found


def work_items(targets: Sequence[tuple[str, Sequence[str]]], plan_for) -> list[tuple[Context, str]]:
    """The run's distinct searches: one (context, chain) per chain and chain-cache label
    (`plan_for(context)` -> (label, alignment names)); where one chain needs the same label
    in several contexts, the one with the most alignments (UniProt too) serves them all.
    Longest chains first, ties by sha256: every shard computes the same order."""
    items: dict[tuple[str, str], tuple[int, Context]] = {}
    for chain, contexts in contexts_of(targets).items():
        for context in sorted(contexts):
            label, names = plan_for(context)
            best = items.get((label, chain))
            if best is None or len(names) > best[0]:
                items[(label, chain)] = (len(names), context)
    return sorted(((context, chain) for (_, chain), (_, context) in items.items()),
                  key=lambda item: (-len(item[1]), hashlib.sha256(item[1].encode()).hexdigest(), item[0]))


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
    check_args(msa_tool, cache)
    if not 0 <= shard < shards:
        raise BadInputError(f"--shard {shard} is not in 0..{shards - 1} (--shards {shards})")
    scratch = Path(scratch)

    def body(ctx: StepContext) -> None:
        preset = resolve_preset(db_preset, ctx.run_dir)
        targets = _run_chains(ctx)
        plans = {context: plan_searches(db, preset, msa_tool, multimer=context[0], pairing=context[1])
                 for context in {c for contexts in contexts_of(targets).values() for c in contexts}}
        n_cpus = cpus()
        searchers = {context: Searcher(ctx, plan, n_cpus) for context, plan in plans.items()}
        items = work_items(targets, lambda c: (chain_label(msa_tool, plans[c]), searchers[c].names()))
        mine = items[shard::shards]
        root = cache or str(run_store_root(scratch, run_id))
        report: dict[str, Any] = {"db_preset": preset, "shard": shard, "shards": shards, "store": root,
                                  "run_searches": len(items), "contexts": []}
        for context in sorted({c for c, _ in mine}):
            multimer, heteromer = context
            chains = [chain for c, chain in mine if c == context]
            plan, searcher = plans[context], searchers[context]
            tool, _ = tool_record(ctx, plan)
            store, why = open_chain_cache(ctx, root, plan, db, msa_tool)
            if store is None:
                raise BadInputError(f"chain store {root} unusable: {why}")
            names = searcher.names()
            todo = [c for c in chains if store.get(c, names) is None]
            ctx.log(f"{'heteromer' if heteromer else 'multimer' if multimer else 'monomer'} chains: {len(chains)}, "
                    f"{len(chains) - len(todo)} already stored, searching {len(todo)} ({tool['name']})")
            found = chain_searches(ctx, todo, searcher, store) if todo else {}
            stored = [c for c in todo if store.get(c, names) is not None]
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

    staged = after_staged(lambda ctx: [REQUEST_NAME], with_request_pins(body))  # before the pins are read
    return run_step(CHAINS_STEP, run_id, f"shard-{shard}-of-{shards}", scratch, staged)
