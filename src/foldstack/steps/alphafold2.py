"""AlphaFold2 inference from a features file (model code from `alphafold-colabfold`).

Reads only ``features.npz`` (``allow_pickle=False``, checked by
:func:`foldstack.core.npz.check_features`, as the MSA cache lookup checks it) and parameter
files from ``W/alphafold2/``; no database. A features file that cannot be used raises
:class:`~foldstack.core.errors.DamagedFileError` (code ``features_damaged``); parameter or
config-override files that cannot be loaded raise
:class:`~foldstack.steps.weights_layout.WeightsDamagedError`: both exit 2, naming the file.
Runs the first ``num_models`` (default 5, as AlphaFold) of the preset's models whose
parameters are present (``FOLDSTACK_AF2_MODELS=model_1_ptm,model_3_ptm`` narrows the
list), ``num_seeds`` predictions each (default 1 for monomers, 5 for multimers: AlphaFold's
``num_multimer_predictions_per_model``; seeds ``seed, seed+1, ...``), ranks them by
AlphaFold's ranking confidence and returns them best first. The run's request sets both
(``num_models`` / ``num_seeds``); ``FOLDSTACK_AF2_NUM_MODELS`` / ``FOLDSTACK_AF2_NUM_SEEDS``
override it.

**Compile once per length bucket.** XLA compiles the model once per input shape. As
ColabFold does, monomer inputs are padded after feature processing to the next length
bucket (:data:`DEFAULT_BUCKETS`; ``FOLDSTACK_AF2_BUCKETS=64,128,...`` or ``off``) with
AlphaFold's own ``make_fixed_size``; padded residues are masked (``seq_mask`` 0), so the
structure and every confidence metric of the real residues are unchanged (outputs are cut
back to the real length). The MSA dimensions are already fixed by the eval config. A batch
of mixed lengths therefore compiles once per bucket and model config (models with the same
config, e.g. model_3 and model_4, share one compiled function: the parameters are swapped,
as ColabFold does). Multimer inputs are padded to the same buckets before the model sees
them (:func:`pad_multimer_to_length`, the idea of ColabFold's ``pad_input_multimer`` /
``make_fixed_size_multimer``: zeros along every residue axis, ``seq_mask`` and ``msa_mask``
0, so the model's masks and its confidence metrics, which ColabFold's model code weighs by
``seq_mask``, leave the padding out); their MSA depth is bucketed by the model
(``split_msa_sampling``). Each prediction records its ``bucket`` and how many executables
it ``compiled`` (0: reused).

**Persistent compilation cache**, shared by every job: ``FOLDSTACK_JAX_CACHE_DIR`` if set,
else ``$FOLDSTACK_HOME/cache/jax`` (local mode), else ``$FOLDSTACK_SCRATCH_ROOT/.cache/jax``
(the scratch FSx: every Batch job definition sets ``FOLDSTACK_SCRATCH_ROOT``), else
``<tmp>/foldstack-jax-cache``; inside it one directory per JAX/jaxlib version and backend
and, below, per model config (``<model>-<sha256 of the config and the
alphafold-colabfold version>``), so different JAX or model versions never mix
(:func:`model_cache_dir`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from foldstack.core.errors import BadInputError, DamagedFileError
from foldstack.steps.outputs import Prediction
from foldstack.steps.weights_layout import (
    AF2_OVERRIDES,
    engine_dir,
    read_json_object,
    require_alphafold2,
    weights_damaged,
)

MONOMER_MODELS = ("model_1_ptm", "model_2_ptm", "model_3_ptm", "model_4_ptm", "model_5_ptm",
                  "model_1", "model_2", "model_3", "model_4", "model_5")
MULTIMER_MODELS = ("model_1_multimer_v3", "model_2_multimer_v3", "model_3_multimer_v3",
                   "model_4_multimer_v3", "model_5_multimer_v3")
PRESET_MODELS = {"monomer": MONOMER_MODELS, "multimer": MULTIMER_MODELS}
MODELS_ENV = "FOLDSTACK_AF2_MODELS"
NUM_MODELS_ENV = "FOLDSTACK_AF2_NUM_MODELS"
NUM_SEEDS_ENV = "FOLDSTACK_AF2_NUM_SEEDS"
BUCKETS_ENV = "FOLDSTACK_AF2_BUCKETS"
DEFAULT_NUM_MODELS = 5  # AlphaFold runs all five models of a preset
DEFAULT_NUM_SEEDS = {"monomer": 1, "multimer": 5}  # AlphaFold: num_multimer_predictions_per_model = 5
# Padded lengths (as ColabFold pads): at most ~25 % waste, about 20 compiles up to 2,500 residues.
DEFAULT_BUCKETS = (64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536,
                   1792, 2048, 2560, 3072, 3584, 4096)


def jax_cache_dir() -> Path:
    """The root of the persistent compilation cache (see the module docstring):
    ``FOLDSTACK_JAX_CACHE_DIR``, else ``$FOLDSTACK_HOME/cache/jax``, else
    ``$FOLDSTACK_SCRATCH_ROOT/.cache/jax`` (the scratch FSx every Batch job mounts), else
    ``<tmp>/foldstack-jax-cache``."""
    if os.environ.get("FOLDSTACK_JAX_CACHE_DIR"):
        return Path(os.environ["FOLDSTACK_JAX_CACHE_DIR"])
    if os.environ.get("FOLDSTACK_HOME"):
        return Path(os.environ["FOLDSTACK_HOME"]) / "cache" / "jax"
    if os.environ.get("FOLDSTACK_SCRATCH_ROOT"):
        return Path(os.environ["FOLDSTACK_SCRATCH_ROOT"]) / ".cache" / "jax"
    return _TMP_CACHE


_TMP_CACHE = Path(tempfile.gettempdir()) / "foldstack-jax-cache"


def _dist_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def jax_cache_root() -> Path:
    """``<jax_cache_dir>/jax-<jax>-jaxlib-<jaxlib>-<backend>``: one JAX build's entries."""
    import jax

    return jax_cache_dir() / f"jax-{jax.__version__}-jaxlib-{_dist_version('jaxlib')}-{jax.default_backend()}"


def model_cache_dir(model_name: str, cfg: Any) -> Path:
    """Where one model config's compiled executables live: the JAX build's directory, then
    ``<model>-<12 hex of sha256(config JSON, alphafold-colabfold version)>``."""
    to_json = getattr(cfg, "to_json_best_effort", None)
    blob = (to_json(sort_keys=True) if to_json else repr(cfg)) + "|" + _dist_version("alphafold-colabfold")
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return jax_cache_root() / f"{model_name}-{digest}"


def enable_jax_cache(path: Path | None = None) -> Path:
    """Point JAX's persistent compilation cache at `path` (default: the JAX build's
    directory); switching directories mid-process re-initialises the cache."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    path = path or jax_cache_root()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # shared storage not writable here: a private cache, never a failed job
        path = _TMP_CACHE / path.relative_to(jax_cache_dir()) if path.is_relative_to(jax_cache_dir()) else _TMP_CACHE
        path.mkdir(parents=True, exist_ok=True)
    if jax.config.jax_compilation_cache_dir != str(path):
        cc.set_cache_dir(str(path))
        cc.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def length_bucket(n: int, buckets: tuple[int, ...] | None = None) -> int:
    """The padded length for `n` residues: the smallest bucket >= n (past the last one, the
    next multiple of 512); `n` itself when bucketing is off (``FOLDSTACK_AF2_BUCKETS=off``)."""
    if buckets is None:
        buckets = configured_buckets()
    if not buckets:
        return n
    for b in buckets:
        if b >= n:
            return b
    return -(-n // 512) * 512


def configured_buckets() -> tuple[int, ...]:
    """:data:`DEFAULT_BUCKETS`, or ``FOLDSTACK_AF2_BUCKETS`` (comma-separated; ``off``: none)."""
    value = os.environ.get(BUCKETS_ENV, "").strip()
    if not value:
        return DEFAULT_BUCKETS
    if value.lower() in ("off", "none", "0"):
        return ()
    try:
        buckets = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError as exc:
        raise BadInputError(f"{BUCKETS_ENV}={value!r}: expected lengths like 64,128,256 or 'off'") from exc
    if not buckets or buckets[0] < 1:
        raise BadInputError(f"{BUCKETS_ENV}={value!r}: lengths must be positive")
    return buckets


def pad_to_length(processed: dict[str, np.ndarray], cfg: Any, length: int) -> dict[str, np.ndarray]:
    """Monomer processed features padded along the residue axis to `length` with
    AlphaFold's ``make_fixed_size`` (the eval config's shape schema; the MSA and template
    dimensions keep their fixed sizes). Padded residues are masked out."""
    from alphafold.model.tf import data_transforms

    schema = {k: [None, *v] for k, v in dict(cfg.data.eval.feat).items()}
    unknown = sorted(set(processed) - set(schema))
    if unknown:
        raise RuntimeError(f"cannot pad features {unknown}: not in the model's shape schema")
    return data_transforms.make_fixed_size(schema, None, None, length, None)(dict(processed))


# The residue axis of each AF2-multimer feature (the keys feature_processing.process_final
# keeps, plus pad_msa's); None: no residue axis (scalars, per-MSA-row masks).
MULTIMER_RESIDUE_AXIS: dict[str, int | None] = {
    "aatype": 0, "residue_index": 0, "asym_id": 0, "entity_id": 0, "sym_id": 0, "seq_mask": 0, "entity_mask": 0,
    "deletion_mean": 0, "all_atom_mask": 0, "all_atom_positions": 0,
    "msa": 1, "msa_mask": 1, "deletion_matrix": 1, "bert_mask": 1,
    "template_aatype": 1, "template_all_atom_mask": 1, "template_all_atom_positions": 1,
    "cluster_bias_mask": None, "num_alignments": None, "num_templates": None, "seq_length": None,
    "assembly_num_chains": None, "resolution": None,
}


def pad_multimer_to_length(raw: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """Multimer features padded with zeros along their residue axis to `length`. Zero
    ``seq_mask``/``msa_mask`` hide the padding from the model (pair masks, attention, the
    structure module and the pTM/ipTM weights); padded residues get ``asym_id`` 0, a chain
    of their own, so no real chain's relative positions or interface terms include them.
    A feature whose residue axis is not known is refused rather than padded by guess."""
    n = int(np.asarray(raw["aatype"]).shape[0])
    if length < n:
        raise ValueError(f"cannot pad {n} residues to {length}")
    unknown = sorted(set(raw) - set(MULTIMER_RESIDUE_AXIS))
    if unknown:
        raise RuntimeError(f"cannot pad multimer features {unknown}: residue axis unknown")
    out = {}
    for key, value in raw.items():
        arr = np.asarray(value)
        axis = MULTIMER_RESIDUE_AXIS[key]
        if axis is None or length == n:
            out[key] = arr
            continue
        if arr.shape[axis] != n:
            raise ValueError(f"multimer feature {key} has {arr.shape[axis]} residues on axis {axis}, not {n}")
        widths = [(0, 0)] * arr.ndim
        widths[axis] = (0, length - n)
        out[key] = np.pad(arr, widths)
    return out


def _executables(runner: Any) -> int:
    """How many executables the model's jitted function holds (one per input shape)."""
    size = getattr(getattr(runner, "apply", None), "_cache_size", None)
    return int(size()) if callable(size) else 0


def _count(value: int | None, env: str, default: int, top: int) -> int:
    if os.environ.get(env):
        try:
            value = int(os.environ[env])
        except ValueError as exc:
            raise BadInputError(f"{env} must be a whole number") from exc
    value = default if value is None else value
    if not 1 <= value <= top:
        raise BadInputError(f"{env.removeprefix('FOLDSTACK_AF2_').lower()} must be 1..{top}, got {value}")
    return value


def model_config(model_name: str, overrides: dict[str, Any] | None = None, *, source: Path | None = None):
    """AlphaFold's config for `model_name` with flattened overrides applied (`source`: the
    overrides file, named when a value does not fit the config)."""
    from alphafold.model import config

    try:
        cfg = config.model_config(model_name)
    except ValueError as exc:
        raise BadInputError(f"unknown AlphaFold model {model_name!r}") from exc
    if overrides:
        try:
            cfg.update_from_flattened_dict(dict(overrides))
        except (TypeError, ValueError) as exc:  # ml_collections: a value of the wrong type
            if source is None:
                raise
            raise weights_damaged("alphafold2", source, exc) from exc
    return cfg


def dummy_features(multimer: bool = False, length: int = 16) -> dict[str, np.ndarray]:
    """A minimal raw feature dict (poly-Ala) for tracing parameter shapes."""
    from alphafold.data import parsers

    from foldstack.steps.features import build_monomer_features

    seq = "A" * length
    msa = parsers.Msa(sequences=[seq], deletion_matrix=[[0] * length], descriptions=["query"])
    feats = build_monomer_features(seq, "dummy", [msa])
    if not multimer:
        return feats
    from alphafold.data import feature_processing, pipeline, pipeline_multimer

    chains = {}
    for chain_id in ("A", "B"):
        f = dict(feats)
        all_seq = pipeline.make_msa_features([msa])
        f.update({f"{k}_all_seq": v for k, v in all_seq.items()
                  if k in ("msa", "msa_mask", "deletion_matrix", "deletion_matrix_int", "msa_species_identifiers")})
        chains[chain_id] = pipeline_multimer.convert_monomer_features(f, chain_id=chain_id)
    chains = pipeline_multimer.add_assembly_features(chains)
    example = feature_processing.pair_and_merge(all_chain_features=chains)
    return pipeline_multimer.pad_msa(example, 512)


def model_overrides_path(weights: Path, model_name: str) -> Path | None:
    """``config_overrides.<model_name>.json`` if present, else the shared
    ``config_overrides.json``, else None."""
    base = engine_dir(weights, "alphafold2")
    for path in (base / AF2_OVERRIDES.replace(".json", f".{model_name}.json"), base / AF2_OVERRIDES):
        if path.is_file():
            return path
    return None


def model_overrides(weights: Path, model_name: str) -> dict[str, Any]:
    """Config overrides for one model (:func:`model_overrides_path`; none: {}). (Monomer and
    multimer configs have different keys, so a weights dir holding both needs per-model
    files.) A file that is not a JSON object raises WeightsDamagedError naming it."""
    path = model_overrides_path(weights, model_name)
    if path is None:
        return {}
    return read_json_object("alphafold2", path)


def _load_params(path: Path):
    """AlphaFold's parameters from a ``params_*.npz`` (never unpickled). Raises ValueError
    (:class:`~foldstack.core.npz.NpzError` for a file that is not an intact npz)."""
    from alphafold.model import utils

    from foldstack.core.npz import load_npz

    return utils.flat_params_to_haiku(load_npz(path), fuse=True)


def load_params(path: Path):
    """The loading boundary for a parameter file: :func:`_load_params` (memoised while a
    batch runs), with a file that does not load (truncated, not an npz, not AlphaFold's
    ``<scope>//<name>`` layout) reported as WeightsDamagedError naming it."""
    try:
        return _load_params(path)
    except ValueError as exc:  # NpzError, or flat_params_to_haiku on keys it cannot split
        raise weights_damaged("alphafold2", path, exc) from exc


def _selected_models(preset: str) -> tuple[str, ...]:
    if preset not in PRESET_MODELS:
        raise BadInputError(f"unknown preset {preset!r} for alphafold2 (known: {', '.join(PRESET_MODELS)})")
    names = PRESET_MODELS[preset]
    wanted = [m.strip() for m in os.environ.get(MODELS_ENV, "").split(",") if m.strip()]
    if wanted:
        names = tuple(m for m in names if m in wanted)
        if not names:
            raise BadInputError(f"{MODELS_ENV}={','.join(wanted)} names no {preset} model")
    return names


def predict_alphafold2(features_path: Path, weights: Path, preset: str, *, seed: int = 0,
                       num_models: int | None = None, num_seeds: int | None = None,
                       log: Callable[[str], None] = print, timings: dict[str, float] | None = None,
                       ) -> list[Prediction]:
    """Run the preset's models (``num_models`` of them, ``num_seeds`` seeds each) on the
    features file; predictions best first."""
    from foldstack.core.npz import FeaturesFileError, check_features

    timings = timings if timings is not None else {}
    if not features_path.is_file():
        raise BadInputError(f"features file not found: {features_path} (the msa step writes it)")
    try:
        raw = check_features(features_path)
    except FeaturesFileError as exc:
        raise DamagedFileError(
            f"{features_path} cannot be used: {exc}. It is the msa step's output (or its copy from the MSA "
            "cache), so running predict again reads the same file: submit the target again (the MSA cache "
            "lookup verifies its entry and recomputes a damaged one), or with reuse_msa=false to recompute "
            "the MSA regardless", path=features_path, code="features_damaged") from exc
    multimer_features = "asym_id" in raw
    if preset == "multimer" and not multimer_features:
        raise BadInputError("preset 'multimer' needs multimer features (a target of >= 2 chains joined by ':')")
    if preset == "monomer" and multimer_features:
        raise BadInputError("these features are for a complex; use --preset multimer")

    n_models = _count(num_models, NUM_MODELS_ENV, DEFAULT_NUM_MODELS, len(PRESET_MODELS[preset]))
    n_seeds = _count(num_seeds, NUM_SEEDS_ENV, DEFAULT_NUM_SEEDS[preset], 100)
    param_files = dict(list(require_alphafold2(weights, _selected_models(preset)).items())[:n_models])
    n_res = int(np.asarray(raw["aatype"]).shape[0])
    bucket = length_bucket(n_res)
    unpaddable = sorted(set(raw) - set(MULTIMER_RESIDUE_AXIS)) if multimer_features else []
    if unpaddable:  # a feature whose residue axis we do not know: run unpadded (a compile per length)
        log(f"alphafold2 multimer: not padded to {bucket} (features {unpaddable} have no known residue axis)")
        bucket = n_res

    t = time.perf_counter()
    import jax
    from alphafold.model import model as af_model

    timings["import_jax"] = round(time.perf_counter() - t, 3)
    log(f"alphafold2 {preset}: models {', '.join(param_files)} x {n_seeds} seed(s); {n_res} residues"
        + (f" padded to {bucket}" if bucket != n_res else "") + f"; JAX {jax.__version__} on "
        f"{jax.default_backend()}; compile cache {jax_cache_root()}")

    predictions = []
    for model_name, path in param_files.items():
        cfg = model_config(model_name, model_overrides(weights, model_name),
                           source=model_overrides_path(weights, model_name))
        cache_dir = model_cache_dir(model_name, cfg)  # before RunModel, which adds keys to the config
        t = time.perf_counter()
        params = load_params(path)
        runner = af_model.RunModel(cfg, params)
        runner.params = params  # a runner shared by models of the same config (batches) gets this model's
        enable_jax_cache(cache_dir)
        timings[f"{model_name}_load"] = round(time.perf_counter() - t, 3)
        for index in range(n_seeds):
            model_seed = seed + index
            key = model_name if index == 0 else f"{model_name}_seed_{model_seed}"
            t = time.perf_counter()
            processed = runner.process_features(dict(raw), random_seed=model_seed)
            if bucket > n_res and multimer_features:  # multimer: process_features returns the raw features
                processed = pad_multimer_to_length(processed, bucket)
            elif bucket > n_res:
                processed = pad_to_length(processed, runner.config, bucket)
            timings[f"{key}_features"] = round(time.perf_counter() - t, 3)
            before = _executables(runner)
            t = time.perf_counter()
            result, recycles = runner.predict(processed, random_seed=model_seed)
            timings[f"{key}_predict"] = round(time.perf_counter() - t, 3)
            compiled = _executables(runner) - before
            pred = _to_prediction(model_name, raw, result, multimer_features)
            pred.extra.update(recycles=int(recycles), seed=model_seed, bucket=bucket, compiled=compiled)
            log(f"{model_name} seed {model_seed}: mean pLDDT {pred.mean_plddt:.1f}"
                + (f", pTM {pred.ptm:.3f}" if pred.ptm is not None else "")
                + f" ({timings[f'{key}_predict']:.1f}s" + (", compiled" if compiled else ", no compile") + ")")
            predictions.append(pred)
    predictions.sort(key=lambda p: -(p.ranking_confidence if p.ranking_confidence is not None else p.mean_plddt))
    return predictions


def _to_prediction(model_name: str, raw: dict[str, np.ndarray], result: dict[str, Any],
                   multimer: bool) -> Prediction:
    sm = result["structure_module"]
    positions = np.asarray(sm["final_atom_positions"], np.float32)
    mask = np.asarray(sm["final_atom_mask"], np.float32)
    if multimer:
        aatype = np.asarray(raw["aatype"], np.int32)
        chain_index = np.asarray(raw["asym_id"], np.int32) - 1
    else:
        aatype = np.argmax(np.asarray(raw["aatype"]), axis=-1).astype(np.int32)
        chain_index = np.zeros(aatype.shape[0], np.int32)
    n = aatype.shape[0]
    residue_index = np.asarray(raw["residue_index"], np.int32)[:n] + 1
    plddt = np.asarray(result["plddt"], np.float32)[:n]
    pae = result.get("predicted_aligned_error")
    return Prediction(
        aatype=aatype,
        atom_positions=positions[:n],
        atom_mask=mask[:n],
        residue_index=residue_index,
        chain_index=chain_index[:n],
        plddt=plddt,
        model_name=model_name,
        pae=None if pae is None else np.asarray(pae, np.float32)[:n, :n],
        max_pae=None if result.get("max_predicted_aligned_error") is None
        else float(result["max_predicted_aligned_error"]),
        ptm=None if result.get("ptm") is None else float(result["ptm"]),
        iptm=None if result.get("iptm") is None else float(result["iptm"]),
        ranking_confidence=None if result.get("ranking_confidence") is None
        else float(result["ranking_confidence"]),
    )
