"""Tiny random-weight demo models, written in the on-disk formats the real loaders read.

* ESMFold: a shrunken ``EsmConfig`` (``is_folding_model=True``) → ``EsmForProteinFolding``
  with random weights → ``save_pretrained`` (safetensors) + ``EsmTokenizer`` vocab.
  The predict step loads it with ``from_pretrained`` exactly as it loads facebook/esmfold_v1.
* AlphaFold2: AlphaFold's ``model_5_ptm`` config with fewer blocks (widths are hard-coded
  in places, so only block counts shrink), parameter shapes from a JAX trace
  (``jax.eval_shape``, no compile), random values, saved as ``params_model_5_ptm.npz``
  in AlphaFold's flat ``"<scope>//<name>"`` format (unfused triangle projections, as in
  DeepMind's files), plus ``config_overrides.json``; and the multimer model
  ``model_1_multimer_v3`` shrunk the same way (one Evoformer / extra-MSA / template-pair
  block, one structure-module layer, no recycling, 16 MSA clusters, float32 on CPU) as
  ``params_model_1_multimer_v3.npz`` with its own ``config_overrides.model_1_multimer_v3.json``
  (per-model overrides win over the shared file; the monomer keys do not exist in the
  multimer config).

Parameter shapes come from a JAX trace; the traces of the two demo configs are shipped in
``foldstack/data/af2_demo_param_shapes.json`` (keyed by alphafold-colabfold version and
overrides), so building the demo weights takes well under a second; any other model,
override set or version is traced (~10 s each on 2 cores).

Both get a ``DEMO_WEIGHTS`` marker. Structures from these models are NOT meaningful.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from foldstack import storage
from foldstack.core.hashing import sha256_bytes
from foldstack.steps.weights_layout import AF2_OVERRIDES, DEMO_MARKER, DEMO_WARNING, ENGINES

DEMO_VERSION = 2
AF2_DEMO_MODEL = "model_5_ptm"
AF2_MULTIMER_DEMO_MODEL = "model_1_multimer_v3"
AF2_MULTIMER_DEMO_OVERRIDES: dict[str, Any] = {
    "model.embeddings_and_evoformer.evoformer_num_block": 1,
    "model.embeddings_and_evoformer.extra_msa_stack_num_block": 1,
    "model.embeddings_and_evoformer.template.template_pair_stack.num_block": 1,
    "model.heads.structure_module.num_layer": 1,
    "model.num_recycle": 0,
    "model.embeddings_and_evoformer.num_msa": 16,
    "model.embeddings_and_evoformer.num_extra_msa": 16,
    "model.global_config.bfloat16": False,
}
SHAPES_FILE = Path(__file__).resolve().parents[1] / "data" / "af2_demo_param_shapes.json"
AF2_DEMO_OVERRIDES: dict[str, Any] = {
    "model.embeddings_and_evoformer.evoformer_num_block": 1,
    "model.embeddings_and_evoformer.extra_msa_stack_num_block": 1,
    "model.heads.structure_module.num_layer": 2,
    "model.num_recycle": 0,
    "data.common.num_recycle": 0,
    "data.common.max_extra_msa": 16,
    "data.eval.max_msa_clusters": 16,
}

ESMFOLD_DEMO_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 1026,
    "position_embedding_type": "rotary",
    "emb_layer_norm_before": False,
    "token_dropout": True,
    "esmfold_config": {
        "fp16_esm": False,
        "lddt_head_hid_dim": 16,
        "trunk": {
            "num_blocks": 1,
            "sequence_state_dim": 32,
            "pairwise_state_dim": 16,
            "sequence_head_width": 16,
            "pairwise_head_width": 8,
            "max_recycles": 1,
            "structure_module": {
                "sequence_dim": 32,
                "pairwise_dim": 16,
                "ipa_dim": 8,
                "resnet_dim": 16,
                "num_heads_ipa": 2,
                "num_qk_points": 2,
                "num_v_points": 2,
                "num_blocks": 2,
            },
        },
    },
}


def _marker_text(engine: str, details: dict[str, Any]) -> str:
    return json.dumps({"engine": engine, "demo_version": DEMO_VERSION, "warning": DEMO_WARNING, **details},
                      indent=2, sort_keys=True) + "\n"


def _is_current(path: Path) -> bool:
    try:
        return json.loads((path / DEMO_MARKER).read_text()).get("demo_version") == DEMO_VERSION
    except (OSError, ValueError):
        return False


def write_esmfold_demo(dest: Path, seed: int = 0, config: dict[str, Any] | None = None) -> Path:
    """Write a tiny random ESMFold to `dest` (a HF save_pretrained dir)."""
    import torch
    from transformers import EsmConfig, EsmForProteinFolding, EsmTokenizer
    from transformers.models.esm.configuration_esm import get_default_vocab_list

    vocab = list(get_default_vocab_list())
    cfg = EsmConfig(
        vocab_size=len(vocab),
        pad_token_id=vocab.index("<pad>"),
        mask_token_id=vocab.index("<mask>"),
        is_folding_model=True,
        vocab_list=vocab,
        **(config or ESMFOLD_DEMO_CONFIG),
    )
    torch.manual_seed(seed)
    model = EsmForProteinFolding(cfg).eval()
    with torch.no_grad():  # zero-initialised heads give a flat, degenerate structure: add noise
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    vocab_file = dest / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    EsmTokenizer(vocab_file=str(vocab_file)).save_pretrained(dest)
    return dest


def _shapes_key(model_name: str, overrides: dict[str, Any]) -> str:
    from importlib import metadata

    blob = json.dumps({"model": model_name, "overrides": overrides,
                       "alphafold-colabfold": metadata.version("alphafold-colabfold")}, sort_keys=True)
    return sha256_bytes(blob.encode())


def traced_param_shapes(model_name: str, overrides: dict[str, Any]) -> dict[str, dict[str, list[int]]]:
    """{scope: {name: shape}} in haiku's order, from a JAX trace (no XLA compile)."""
    import jax
    from alphafold.model import model as af_model

    from foldstack.steps.alphafold2 import dummy_features, model_config

    cfg = model_config(model_name, overrides)
    runner = af_model.RunModel(cfg)
    multimer = cfg.model.global_config.multimer_mode
    feat = runner.process_features(dummy_features(multimer=multimer), random_seed=0)
    if multimer:  # this fork's multimer init path needs the recycling state given explicitly
        n = feat["aatype"].shape[0]
        feat = {**feat, "prev": {"prev_msa_first_row": np.zeros([n, 256], np.float16),
                                 "prev_pair": np.zeros([n, n, 128], np.float16),
                                 "prev_pos": np.zeros([n, 37, 3], np.float16)}}
    shapes = jax.eval_shape(runner.init, jax.random.PRNGKey(0), feat)
    return {scope: {name: [int(d) for d in spec.shape] for name, spec in params.items()}
            for scope, params in shapes.items()}


def param_shapes(model_name: str, overrides: dict[str, Any]) -> dict[str, dict[str, list[int]]]:
    """The shipped trace for this model/overrides/version if there is one, else a trace."""
    key = _shapes_key(model_name, overrides)
    try:
        shipped = json.loads(SHAPES_FILE.read_text())
        return shipped[key]["shapes"]
    except (OSError, ValueError, KeyError):
        return traced_param_shapes(model_name, overrides)


def write_shapes_file(path: Path = SHAPES_FILE) -> Path:
    """Regenerate the shipped shapes of the demo configs (after an alphafold-colabfold upgrade)."""
    out = {}
    for model, overrides in ((AF2_DEMO_MODEL, AF2_DEMO_OVERRIDES),
                             (AF2_MULTIMER_DEMO_MODEL, AF2_MULTIMER_DEMO_OVERRIDES)):
        out[_shapes_key(model, overrides)] = {"model": model, "overrides": overrides,
                                              "shapes": traced_param_shapes(model, overrides)}
    path.write_text(json.dumps(out, sort_keys=False, separators=(",", ":")) + "\n")
    return path


def af2_random_params(model_name: str, overrides: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """Random parameters for an AlphaFold model, flat AlphaFold npz layout (unfused)."""
    from alphafold.model import utils

    shapes = param_shapes(model_name, overrides)
    rng = np.random.default_rng(seed)
    flat: dict[str, np.ndarray] = {}
    for scope, params in shapes.items():
        for name, spec in params.items():
            shape = tuple(spec)
            if name == "scale":
                arr = np.ones(shape, np.float32)
            elif name in ("offset", "bias"):
                arr = rng.normal(0.0, 0.02, shape).astype(np.float32)
            else:
                fan_in = shape[0] if len(shape) > 1 else max(1, shape[0] if shape else 1)
                std = 1.0 / np.sqrt(fan_in)
                if "structure_module" in scope:
                    std *= 0.1  # keeps random backbone updates small: a compact, chain-like model
                arr = rng.normal(0.0, std, shape).astype(np.float32)
            flat[f"{scope}//{name}"] = arr
    unfused = utils.flat_params_to_haiku(flat, fuse=False, to_jnp=False)
    return {f"{scope}//{name}": np.asarray(a) for scope, d in unfused.items() for name, a in d.items()}


def write_alphafold2_demo(dest: Path, seed: int = 0, model_name: str = AF2_DEMO_MODEL,
                          overrides: dict[str, Any] | None = None, multimer: bool = True) -> Path:
    """The monomer demo model (shared ``config_overrides.json``) and, with `multimer`, the
    multimer demo model (``config_overrides.<model>.json``)."""
    overrides = dict(AF2_DEMO_OVERRIDES if overrides is None else overrides)
    params = af2_random_params(model_name, overrides, seed=seed)
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / f"params_{model_name}.npz", "wb") as f:
        np.savez(f, **params)
    (dest / AF2_OVERRIDES).write_text(json.dumps(overrides, indent=2, sort_keys=True) + "\n")
    if multimer:
        mm = dict(AF2_MULTIMER_DEMO_OVERRIDES)
        params = af2_random_params(AF2_MULTIMER_DEMO_MODEL, mm, seed=seed)
        with open(dest / f"params_{AF2_MULTIMER_DEMO_MODEL}.npz", "wb") as f:
            np.savez(f, **params)
        (dest / model_overrides_name(AF2_MULTIMER_DEMO_MODEL)).write_text(
            json.dumps(mm, indent=2, sort_keys=True) + "\n")
    return dest


def model_overrides_name(model_name: str) -> str:
    """Per-model overrides file name in ``W/alphafold2/`` (wins over ``config_overrides.json``)."""
    return AF2_OVERRIDES.replace(".json", f".{model_name}.json")


def write_demo_weights(weights: Path | str, engines: tuple[str, ...] = ENGINES, *, force: bool = False) -> Path:
    """Write demo weights for `engines` under `weights/<engine>/`; idempotent."""
    weights = Path(weights)
    weights.mkdir(parents=True, exist_ok=True)
    for engine in engines:
        final = weights / engine
        if not force and final.exists() and _is_current(final):
            continue
        if final.exists() and not (final / DEMO_MARKER).exists():
            raise FileExistsError(f"{final} holds non-demo weights; refusing to overwrite them with demo weights")
        if engine not in ("esmfold", "alphafold2"):
            raise ValueError(f"unknown engine {engine!r}")
        # Written into a hidden sibling and swapped into place (storage.publish), so a
        # reader never sees a half-written dir; the marker is what makes it complete.
        with storage.publish(final, marker=DEMO_MARKER, replace=True) as pub:
            tmp = pub.local_dir()
            if engine == "esmfold":
                write_esmfold_demo(tmp)
                details = {"config": ESMFOLD_DEMO_CONFIG}
            else:
                write_alphafold2_demo(tmp)
                details = {"model": AF2_DEMO_MODEL, "overrides": AF2_DEMO_OVERRIDES,
                           "multimer_model": AF2_MULTIMER_DEMO_MODEL,
                           "multimer_overrides": AF2_MULTIMER_DEMO_OVERRIDES}
            (tmp / DEMO_MARKER).write_text(_marker_text(engine, details))
    return weights
