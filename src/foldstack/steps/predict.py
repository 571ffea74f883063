"""`foldstack step predict`: fold one target (or a batch: `--target a,b,c`) with ESMFold or AlphaFold2.

Inputs: esmfold reads only ``<scratch>/<run_id>/input/targets/<target>.fasta``;
alphafold2 reads only ``<scratch>/<run_id>/msa/<target>/features.npz``; both read the run's
``input/request.json`` (models, seeds, relax). In a Batch job each is awaited against its
producer's done record (:func:`foldstack.steps.common.await_staged`, ``await_inputs``). Weights come
from ``W/<engine>/`` (:mod:`foldstack.steps.weights_layout`).
Outputs, in ``<scratch>/<run_id>/predict/<target>/``: every model as ``ranked_<i>.pdb/.cif``
with ``ranked_<i>.metrics.json`` (+ ``ranked_<i>.pae.json``), ``ranking_debug.json``,
``metrics.json``, ``plddt.tsv``, ``pae.json`` (when the model predicts PAE),
``plots/plddt.png`` (+ ``plots/pae.png``, ``plots/msa_coverage.png`` for AlphaFold2),
``relaxed_<i>.pdb/.cif`` for the models the request's ``relax`` selects
(:mod:`foldstack.steps.relax`) and ``predict.done.json`` (see :mod:`foldstack.steps.outputs`).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.steps.common import REQUEST_NAME, STAGE_DIR, StepContext, after_staged, in_batch_job, run_step
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


def _staged_request(ctx: StepContext) -> dict[str, Any]:
    """The run's staged request (``input/request.json``). In a workflow run it was awaited
    (:func:`foldstack.steps.common.await_staged`) before the body ran, so it is there and as
    Stage Inputs wrote it; a step run by hand without one gets {} and says so in its log."""
    import json

    path = ctx.run_dir / STAGE_DIR / REQUEST_NAME
    if not path.is_file():
        if in_batch_job():  # await_staged guarantees it: never fold with silent defaults
            raise BadInputError(f"the staged request {path} is missing")
        ctx.log(f"no staged request {path}: num_models, num_seeds and relax take the engine's defaults")
        return {}
    try:
        request = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInputError(f"the staged request {path} is not readable JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadInputError(f"the staged request {path} is not a JSON object")
    return request


def _request_options(request: dict[str, Any]) -> dict[str, int]:
    """``num_models`` / ``num_seeds`` of the run's staged request, where set."""
    return {k: int(request[k]) for k in ("num_models", "num_seeds") if request.get(k)}


def _relax_mode(request: dict[str, Any], engine: str) -> str:
    """``relax`` of the run's staged request, else the engine's default (a step run by hand)."""
    from foldstack.core.request import DEFAULT_RELAX, RELAX_MODES

    mode = request.get("relax")
    if mode is None:
        return DEFAULT_RELAX[engine]
    if mode not in RELAX_MODES:
        raise BadInputError(f"request.json: relax must be one of {', '.join(RELAX_MODES)}, not {mode!r}")
    return str(mode)


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
        request = _staged_request(ctx)  # awaited before the body (after_staged below)

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
            options = _request_options(request)  # num_models / num_seeds of the run's request
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
        # Amber relaxation (relaxed_<i>.pdb/.cif); a model that fails to relax is kept unrelaxed
        from foldstack.steps.relax import relax_models, relax_versions

        relax_mode = _relax_mode(request, engine)
        if relax_mode != "none":
            ctx.tool_versions.update(relax_versions())
        with ctx.timer("relax"):
            relax_records = relax_models(ctx.work_dir, predictions, mode=relax_mode, target=target, demo=demo,
                                         log=ctx.log)
        metrics["timings"]["relax"] = round(ctx.timings.get("relax", 0.0), 2)
        metrics["relax_mode"] = relax_mode
        metrics["relax"] = relax_records[0]
        metrics["models"] = [
            {"model_name": p.model_name, "mean_plddt": round(p.mean_plddt, 2),
             **{k: p.extra[k] for k in ("seed", "bucket", "compiled") if k in p.extra},
             "ptm": None if p.ptm is None else round(p.ptm, 4),
             "ranking_confidence": None if p.ranking_confidence is None else round(p.ranking_confidence, 4),
             "relax": record}
            for p, record in zip(predictions, relax_records, strict=True)
        ]
        with ctx.timer("write_outputs"):
            if engine == "alphafold2":  # ColabFold-style MSA coverage plot; msa_depth in metrics
                metrics.update(msa_coverage_from_features(ctx.work_dir / "plots", features, target=target))
            write_prediction(ctx.work_dir, best, target=target, metrics=metrics, models=predictions,
                             relax=relax_records)
        ctx.log(f"{best.model_name}: mean pLDDT {best.mean_plddt:.1f}"
                + (f", pTM {best.ptm:.3f}" if best.ptm is not None else "")
                + (" [DEMO WEIGHTS: not meaningful]" if demo else ""))

    return run_step(STEP, run_id, target, scratch, after_staged(lambda ctx: [REQUEST_NAME], body))


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


def parse_skip(value: str) -> list[str]:
    """``--skip '["b"]'`` (the workflow's JSON list of targets whose MSA failed) -> ``["b"]``."""
    import json

    try:
        skip = json.loads(value or "[]")
    except ValueError:
        raise BadInputError(f"--skip is not a JSON list of target ids: {value!r}") from None
    if not isinstance(skip, list) or not all(isinstance(t, str) for t in skip):
        raise BadInputError(f"--skip is not a JSON list of target ids: {value!r}")
    return skip


def run_predict_batch(run_id: str, targets: list[str], scratch: Path | str, weights: Path | str, engine: str,
                      preset: str, *, skip: list[str] | None = None) -> list[Path]:
    """Fold several targets in one process, loading the model once. Each target keeps the
    step contract (its own attempt dir and predict.done.json; done targets are skipped).
    `skip`: targets of the batch not to fold (their MSA failed; the workflow records them).

    Targets run in the given order (Plan Batches sorts them by length). One target's
    failure never stops the others, and each ends done or recorded:

    * out of memory stops the batch (longer targets would not fit either) and exits 3, so
      the workflow resubmits it one size class up, where the finished targets are skipped
      (on the largest class the targets not done are recorded as ``out_of_memory``);
    * inputs not ready: the others go on, then the job exits 75 (Batch retries it);
    * bad input or a crash: a failure record (``predict.failed.json``, with a stable code)
      and the others go on; the job then exits 0, or, when no target of the batch folded
      (a job-wide problem such as missing weights, or a batch of one), with the first
      failure's exit code (2, or the crash itself), so the job shows as failed.
    """
    from foldstack.core.errors import EXIT_INPUTS_NOT_READY, EXIT_OUT_OF_MEMORY
    from foldstack.steps.common import exit_code_for, log
    from foldstack.steps.failures import write_failure

    check_engine_preset(engine, preset)
    skipped = set(skip or ())
    todo = [t for t in targets if t not in skipped]
    done: list[Path] = []
    retried: list[BaseException] = []  # out of memory / inputs not ready: the job's exit code
    recorded: list[BaseException] = []
    with _SharedModels() as models:
        for index, target in enumerate(todo):
            try:
                if _oom_requested(target):
                    from foldstack.core.errors import OutOfMemoryError

                    raise OutOfMemoryError(f"injected out of memory for {target} ({BATCH_ENV_OOM})")
                done.append(run_predict(run_id, target, scratch, weights, engine, preset,
                                        batch={"size": len(todo), "index": index, "models": models}))
            except Exception as exc:  # noqa: BLE001 - recorded or mapped below
                code = exit_code_for(exc)
                log(STEP, target, f"failed in batch ({'crash' if code is None else f'exit {code}'}): {exc}")
                if code in (EXIT_OUT_OF_MEMORY, EXIT_INPUTS_NOT_READY):
                    retried.append(exc)
                    if code == EXIT_OUT_OF_MEMORY:
                        write_failure(scratch, run_id, STEP, target, exc)  # replaced if a bigger class folds it
                        break
                    continue
                write_failure(scratch, run_id, STEP, target, exc)
                recorded.append(exc)
        log(STEP, ",".join(targets), f"batch of {len(targets)}: {len(done)} done, model loads: {models.loads}; "
                                     f"{len(recorded)} failed, {len(skipped & set(targets))} skipped (MSA failed)")
    for wanted in (EXIT_OUT_OF_MEMORY, EXIT_INPUTS_NOT_READY):
        for exc in retried:
            if exit_code_for(exc) == wanted:
                raise exc
    if recorded and not done:  # nothing folded: the job failed (each target's record says why)
        raise recorded[0]
    return done
