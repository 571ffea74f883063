"""AlphaFold2 inference from a features file (model code from `alphafold-colabfold`).

Reads only ``features.npz`` (``allow_pickle=False``, checked by
:func:`foldstack.core.npz.check_features`, as the MSA cache lookup checks it) and parameter
files from ``W/alphafold2/``; no database. A features file that cannot be used raises
:class:`~foldstack.core.errors.DamagedFileError` (code ``features_damaged``); parameter or
config-override files that cannot be loaded raise
:class:`~foldstack.steps.weights_layout.WeightsDamagedError`: both exit 2, naming the file.
Runs every model of the preset whose parameters are present
(``FOLDSTACK_AF2_MODELS=model_1_ptm,model_3_ptm`` narrows it), ranks them by AlphaFold's
ranking confidence and returns them best first.

The JAX compilation cache is persistent: ``FOLDSTACK_JAX_CACHE_DIR`` if set, else
``$FOLDSTACK_HOME/cache/jax`` if ``FOLDSTACK_HOME`` is set, else
``<tmp>/foldstack-jax-cache``. A rerun of the same model at the same length skips the
JIT compile (the largest cost for short targets).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from foldstack.core.errors import BadInputError, DamagedFileError
from foldstack.steps.outputs import Prediction
from foldstack.steps.weights_layout import AF2_OVERRIDES, engine_dir, require_alphafold2, weights_damaged

MONOMER_MODELS = ("model_1_ptm", "model_2_ptm", "model_3_ptm", "model_4_ptm", "model_5_ptm",
                  "model_1", "model_2", "model_3", "model_4", "model_5")
MULTIMER_MODELS = ("model_1_multimer_v3", "model_2_multimer_v3", "model_3_multimer_v3",
                   "model_4_multimer_v3", "model_5_multimer_v3")
PRESET_MODELS = {"monomer": MONOMER_MODELS, "multimer": MULTIMER_MODELS}
MODELS_ENV = "FOLDSTACK_AF2_MODELS"


def jax_cache_dir() -> Path:
    if os.environ.get("FOLDSTACK_JAX_CACHE_DIR"):
        return Path(os.environ["FOLDSTACK_JAX_CACHE_DIR"])
    if os.environ.get("FOLDSTACK_HOME"):
        return Path(os.environ["FOLDSTACK_HOME"]) / "cache" / "jax"
    return Path(tempfile.gettempdir()) / "foldstack-jax-cache"


def enable_jax_cache() -> Path:
    import jax

    path = jax_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


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
    try:
        overrides = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise weights_damaged("alphafold2", path, exc) from exc
    if not isinstance(overrides, dict):
        raise weights_damaged("alphafold2", path, f"is a JSON {type(overrides).__name__}, not an object")
    return overrides


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
                       log: Callable[[str], None] = print, timings: dict[str, float] | None = None,
                       ) -> list[Prediction]:
    """Run the preset's models on the features file; predictions best first."""
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

    param_files = require_alphafold2(weights, _selected_models(preset))

    t = time.perf_counter()
    import jax
    from alphafold.model import model as af_model

    cache = enable_jax_cache()
    timings["import_jax"] = round(time.perf_counter() - t, 3)
    log(f"alphafold2 {preset}: models {', '.join(param_files)}; JAX {jax.__version__} on "
        f"{jax.default_backend()}; compile cache {cache}")

    predictions = []
    for model_name, path in param_files.items():
        cfg = model_config(model_name, model_overrides(weights, model_name),
                           source=model_overrides_path(weights, model_name))
        t = time.perf_counter()
        params = load_params(path)
        runner = af_model.RunModel(cfg, params)
        processed = runner.process_features(dict(raw), random_seed=seed)
        timings[f"{model_name}_load"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        result, recycles = runner.predict(processed, random_seed=seed)
        timings[f"{model_name}_predict"] = round(time.perf_counter() - t, 3)
        pred = _to_prediction(model_name, raw, result, multimer_features)
        pred.extra["recycles"] = int(recycles)
        log(f"{model_name}: mean pLDDT {pred.mean_plddt:.1f}"
            + (f", pTM {pred.ptm:.3f}" if pred.ptm is not None else "")
            + f" ({timings[f'{model_name}_predict']:.1f}s incl. compile)")
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
