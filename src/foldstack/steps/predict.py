"""`foldstack step predict`: fold one target with ESMFold or AlphaFold2.

Inputs: esmfold reads only ``<scratch>/<run_id>/input/targets/<target>.fasta``;
alphafold2 reads only ``<scratch>/<run_id>/msa/<target>/features.npz``. Weights come
from ``W/<engine>/`` (:mod:`foldstack.weights.layout`).
Outputs, in ``<scratch>/<run_id>/predict/<target>/``: ``ranked_0.pdb``, ``ranked_0.cif``,
``metrics.json``, ``plddt.tsv``, ``pae.json`` (when the model predicts PAE),
``plots/plddt.png`` (+ ``plots/pae.png``) and ``predict.done.json``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from foldstack.steps.common import BadInputError, StepContext, run_step
from foldstack.steps.outputs import base_metrics, write_prediction
from foldstack.weights.layout import DEMO_WARNING, ENGINES, engine_dir, is_demo

STEP = "predict"
PRESETS = ("monomer", "multimer")


def check_engine_preset(engine: str, preset: str) -> None:
    if engine not in ENGINES:
        raise BadInputError(f"unknown --engine {engine!r} (known: {', '.join(ENGINES)})")
    if preset not in PRESETS:
        raise BadInputError(f"unknown --preset {preset!r} for {engine} (known: {', '.join(PRESETS)})")


def _banner(ctx: StepContext) -> None:
    line = "!" * 78
    print(f"{line}\n!! {DEMO_WARNING}\n{line}", file=sys.stderr, flush=True)
    ctx.log("using DEMO weights: the structure is not meaningful")


def _versions(engine: str) -> dict[str, str]:
    from importlib import metadata

    dists = ["numpy", "gemmi", "alphafold-colabfold"]
    dists += ["torch", "transformers"] if engine == "esmfold" else ["jax", "jaxlib", "dm-haiku"]
    out = {}
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def run_predict(run_id: str, target: str, scratch: Path | str, weights: Path | str, engine: str,
                preset: str) -> Path:
    check_engine_preset(engine, preset)
    weights = Path(weights)

    def body(ctx: StepContext) -> None:
        demo = is_demo(engine_dir(weights, engine))
        warnings: list[str] = []
        if demo:
            warnings.append(DEMO_WARNING)
            _banner(ctx)
        ctx.tool_versions.update(_versions(engine))
        engine_timings: dict[str, float] = {}

        if engine == "esmfold":
            from foldstack.steps.esmfold import predict_esmfold

            record = ctx.read_target()
            ctx.record_input(ctx.run_dir / "input" / "targets" / f"{target}.fasta")
            n_chains = len(record.chains)
            if preset == "monomer" and n_chains > 1:
                raise BadInputError(f"target {target} has {n_chains} chains but --preset is monomer; "
                                    "use --preset multimer")
            if preset == "multimer" and n_chains < 2:
                raise BadInputError(f"--preset multimer needs >= 2 chains joined by ':'; {target} has one")
            ctx.log(f"esmfold {preset}: {n_chains} chain(s), {record.length} residues")
            with ctx.timer("predict"):
                predictions = [predict_esmfold(record.chains, weights, log=ctx.log, timings=engine_timings)]
        else:
            from foldstack.steps.alphafold2 import predict_alphafold2

            features = ctx.run_dir / "msa" / target / "features.npz"
            if features.is_file():
                ctx.record_input(features)
            with ctx.timer("predict"):
                predictions = predict_alphafold2(features, weights, preset, log=ctx.log, timings=engine_timings)
            n_chains = int(predictions[0].chain_index.max()) + 1

        best = predictions[0]
        timings = {**engine_timings, "step_predict": ctx.timings.get("predict", 0.0)}
        metrics: dict[str, Any] = base_metrics(best, engine=engine, preset=preset, demo=demo,
                                               warnings=warnings, timings=timings, n_chains=n_chains)
        metrics["target"] = target
        metrics["run_id"] = run_id
        metrics["models"] = [
            {"model_name": p.model_name, "mean_plddt": round(p.mean_plddt, 2),
             "ptm": None if p.ptm is None else round(p.ptm, 4),
             "ranking_confidence": None if p.ranking_confidence is None else round(p.ranking_confidence, 4)}
            for p in predictions
        ]
        with ctx.timer("write_outputs"):
            write_prediction(ctx.work_dir, best, target=target, metrics=metrics)
        ctx.log(f"{best.model_name}: mean pLDDT {best.mean_plddt:.1f}"
                + (f", pTM {best.ptm:.3f}" if best.ptm is not None else "")
                + (" [DEMO WEIGHTS: not meaningful]" if demo else ""))

    return run_step(STEP, run_id, target, scratch, body)
