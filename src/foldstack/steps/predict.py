"""`foldstack step predict`: fold one target (or a batch: `--target a,b,c`) with ESMFold or AlphaFold2.

Inputs: esmfold reads only ``<scratch>/<run_id>/input/targets/<target>.fasta``;
alphafold2 reads only ``<scratch>/<run_id>/msa/<target>/features.npz``. Weights come
from ``W/<engine>/`` (:mod:`foldstack.steps.weights_layout`).
Outputs, in ``<scratch>/<run_id>/predict/<target>/``: every model as ``ranked_<i>.pdb/.cif``
with ``ranked_<i>.metrics.json`` (+ ``ranked_<i>.pae.json``), ``ranking_debug.json``,
``metrics.json``, ``plddt.tsv``, ``pae.json`` (when the model predicts PAE),
``plots/plddt.png`` (+ ``plots/pae.png``, ``plots/msa_coverage.png`` for AlphaFold2) and
``predict.done.json`` (see :mod:`foldstack.steps.outputs`).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.steps.common import StepContext, run_step
from foldstack.steps.outputs import base_metrics, msa_coverage_from_features, write_prediction
from foldstack.steps.weights_layout import DEMO_WARNING, ENGINES, engine_dir, is_demo

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


def _request_options(run_dir: Path) -> dict[str, int]:
    """``num_models`` / ``num_seeds`` of the run's staged request (``input/request.json``),
    where set; {} without one (a step run by hand)."""
    import json

    path = run_dir / "input" / "request.json"
    try:
        request = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(request, dict):
        return {}
    return {k: int(request[k]) for k in ("num_models", "num_seeds") if request.get(k)}


def run_predict(run_id: str, target: str, scratch: Path | str, weights: Path | str, engine: str,
                preset: str, *, batch: dict[str, Any] | None = None) -> Path:
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

            # msa's output, possibly written in another AZ: wait until it matches msa.done.json
            # (exit 75, retried, if it never does); hand-placed features without a record are used
            features = ctx.await_inputs("msa", ["features.npz"], accept_unrecorded=True)["features.npz"]
            options = _request_options(ctx.run_dir)  # num_models / num_seeds of the run's request
            with ctx.timer("predict"):
                predictions = predict_alphafold2(features, weights, preset, log=ctx.log, timings=engine_timings,
                                                 **options)
            n_chains = int(predictions[0].chain_index.max()) + 1

        best = predictions[0]
        timings = {**engine_timings, "step_predict": ctx.timings.get("predict", 0.0)}
        metrics: dict[str, Any] = base_metrics(best, engine=engine, preset=preset, demo=demo,
                                               warnings=warnings, timings=timings, n_chains=n_chains)
        metrics["target"] = target
        metrics["run_id"] = run_id
        if batch is not None:  # batched prediction: the model was loaded once for the batch
            metrics["batch"] = {"size": batch["size"], "index": batch["index"],
                                "model_loads": batch["models"].loads}
        metrics["models"] = [
            {"model_name": p.model_name, "mean_plddt": round(p.mean_plddt, 2),
             **{k: p.extra[k] for k in ("seed", "bucket", "compiled") if k in p.extra},
             "ptm": None if p.ptm is None else round(p.ptm, 4),
             "ranking_confidence": None if p.ranking_confidence is None else round(p.ranking_confidence, 4)}
            for p in predictions
        ]
        with ctx.timer("write_outputs"):
            if engine == "alphafold2":  # ColabFold-style MSA coverage plot; msa_depth in metrics
                metrics.update(msa_coverage_from_features(ctx.work_dir / "plots", features, target=target))
            write_prediction(ctx.work_dir, best, target=target, metrics=metrics, models=predictions)
        ctx.log(f"{best.model_name}: mean pLDDT {best.mean_plddt:.1f}"
                + (f", pTM {best.ptm:.3f}" if best.ptm is not None else "")
                + (" [DEMO WEIGHTS: not meaningful]" if demo else ""))

    return run_step(STEP, run_id, target, scratch, body)


# --------------------------------------------------------------------------- batches

BATCH_ENV_OOM = "FOLDSTACK_FAULT_OOM"  # test hook: "<size class>" or "<target>" -> exit 3 (see below)


class _SharedModels:
    """Load each model once per process while a batch runs (batched predict jobs).

    The engine modules load their model per call (``esmfold.load_model``,
    ``alphafold2._load_params`` + ``alphafold.model.model.RunModel``); for the length of a
    batch those names are replaced by memoised versions, so the weights are read once and
    AlphaFold2's jitted ``RunModel`` (and its compiled shapes) is reused across targets.
    ``loads`` counts real loads; it is recorded in every target's metrics.json.
    """

    def __init__(self) -> None:
        self.loads = 0
        self._cache: dict[Any, Any] = {}
        self._saved: list[tuple[Any, str, Any]] = []

    def _memo(self, kind: str, fn: Any, key_fn: Any, count: bool) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = (kind, key_fn(*args, **kwargs))
            if key not in self._cache:
                if count:
                    self.loads += 1
                self._cache[key] = fn(*args, **kwargs)
            return self._cache[key]

        return wrapper

    def _patch(self, module: Any, name: str, replacement: Any) -> None:
        self._saved.append((module, name, getattr(module, name)))
        setattr(module, name, replacement)

    def __enter__(self) -> _SharedModels:
        from foldstack.steps import esmfold

        self._patch(esmfold, "load_model", self._memo("esmfold", esmfold.load_model, lambda p: str(p), True))
        with contextlib.suppress(ImportError):
            from foldstack.steps import alphafold2

            self._patch(alphafold2, "_load_params",
                        self._memo("af2_params", alphafold2._load_params, lambda p: str(p), True))
            from alphafold.model import model as af_model

            def cfg_key(cfg: Any, params: Any, *a: Any, **k: Any) -> Any:
                # one runner per config: models of the same config share its compiled function
                # (predict_alphafold2 sets runner.params to each model's own), as ColabFold does
                to_json = getattr(cfg, "to_json_best_effort", None)
                return to_json() if to_json else repr(cfg)

            self._patch(af_model, "RunModel", self._memo("af2_runner", af_model.RunModel, cfg_key, False))
        return self

    def __exit__(self, *exc: Any) -> None:
        for module, name, original in reversed(self._saved):
            setattr(module, name, original)
        self._saved.clear()
        self._cache.clear()


def split_targets(value: str) -> list[str]:
    """``--target a,b,c`` -> ``["a", "b", "c"]`` (target ids never contain ',')."""
    targets = [t.strip() for t in value.split(",") if t.strip()]
    if not targets:
        raise BadInputError("--target names no target")
    if len(set(targets)) != len(targets):
        raise BadInputError(f"--target lists a target twice: {value!r}")
    return targets


def _oom_requested(target: str) -> bool:
    """Test hook (off unless the variable is set): ``FOLDSTACK_FAULT_OOM=<class>[,<target>...]``
    makes predict fail as out of memory when this job runs on that size class (the Batch
    queue's name ends with ``-<class>``, as ``AWS_BATCH_JQ_NAME`` reports) or for that target."""
    import os

    wanted = {w.strip() for w in os.environ.get(BATCH_ENV_OOM, "").split(",") if w.strip()}
    if not wanted:
        return False
    queue = os.environ.get("AWS_BATCH_JQ_NAME", "")
    return target in wanted or any(queue.endswith(f"-{w}") for w in wanted)


def run_predict_batch(run_id: str, targets: list[str], scratch: Path | str, weights: Path | str, engine: str,
                      preset: str) -> list[Path]:
    """Fold several targets in one process, loading the model once. Each target keeps the
    step contract (its own attempt dir and predict.done.json; done targets are skipped).

    Targets run in the given order (Plan Batches sorts them by length). The first out of
    memory stops the batch (longer targets would not fit either) and exits 3, so the
    workflow resubmits the batch one size class up, where the finished targets are skipped.
    Bad input or a crash of one target does not stop the others; the job then exits 75 if
    a target's inputs were not ready (Batch retries it; done targets are skipped), else
    re-raises the crash, else exits 2, after the rest are done.
    """
    from foldstack.steps.common import exit_code_for, log

    check_engine_preset(engine, preset)
    done: list[Path] = []
    failures: list[tuple[str, BaseException]] = []
    with _SharedModels() as models:
        for index, target in enumerate(targets):
            try:
                if _oom_requested(target):
                    from foldstack.core.errors import OutOfMemoryError

                    raise OutOfMemoryError(f"injected out of memory for {target} ({BATCH_ENV_OOM})")
                done.append(run_predict(run_id, target, scratch, weights, engine, preset,
                                        batch={"size": len(targets), "index": index, "models": models}))
            except Exception as exc:  # noqa: BLE001 - mapped below
                failures.append((target, exc))
                code = exit_code_for(exc)
                log(STEP, target, f"failed in batch ({'crash' if code is None else f'exit {code}'}): {exc}")
                if code == 3:
                    break
        log(STEP, ",".join(targets), f"batch of {len(targets)}: {len(done)} done, model loads: {models.loads}")
    if failures:
        from foldstack.core.errors import EXIT_INPUTS_NOT_READY, EXIT_OUT_OF_MEMORY

        codes = [(exit_code_for(e), t, e) for t, e in failures]
        for wanted in (EXIT_OUT_OF_MEMORY, EXIT_INPUTS_NOT_READY, None):  # 75 before a crash: retried
            for code, _t, exc in codes:
                if code == wanted:
                    raise exc
        raise codes[0][2]
    return done
