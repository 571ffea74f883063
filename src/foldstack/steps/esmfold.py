"""ESMFold inference: ``transformers.EsmForProteinFolding.from_pretrained(W/esmfold)``.

Reads only the target FASTA. Loads offline (``HF_HUB_OFFLINE=1``, ``local_files_only``)
and only from safetensors (``use_safetensors=True``): no pickle is ever loaded.
Complexes (chains joined by ':') use ESMFold's own recipe: chains joined by a 25-residue
poly-Gly linker, residue index jumps of 512 between chains, linker removed from the output.
pLDDT is converted from ESMFold's 0–1 scale to AlphaFold's 0–100.

Weights that are there but do not load (a truncated or garbled ``*.safetensors``, a
corrupt ``config.json``) raise :class:`~foldstack.steps.weights_layout.WeightsDamagedError`
naming the file (exit 2), never the loader's own exception.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from foldstack.steps.outputs import Prediction
from foldstack.steps.weights_layout import read_json_object, require_esmfold, weights_damaged

CHAIN_LINKER = "G" * 25
RESIDUE_INDEX_OFFSET = 512
MODEL_NAME = "esmfold"


def encode_chains(chains: tuple[str, ...] | list[str]) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(joined sequence, position ids, chain index, keep mask) for ESMFold's multimer recipe."""
    seq = CHAIN_LINKER.join(chains)
    position = np.arange(len(seq), dtype=np.int64)
    chain_index = np.zeros(len(seq), dtype=np.int32)
    keep = np.ones(len(seq), dtype=bool)
    start = 0
    for i, chain in enumerate(chains):
        span = len(chain) + (len(CHAIN_LINKER) if i < len(chains) - 1 else 0)
        position[start:start + span] += i * RESIDUE_INDEX_OFFSET
        chain_index[start:start + len(chain)] = i
        if i < len(chains) - 1:
            keep[start + len(chain):start + span] = False
            chain_index[start + len(chain):start + span] = i
        start += span
    return seq, position, chain_index, keep


def _check_config(path: Path) -> None:
    """``config.json`` must be a JSON object (transformers would raise OSError for bad JSON
    and TypeError for any other JSON value)."""
    read_json_object("esmfold", Path(path) / "config.json")


def _damaged_model_file(path: Path) -> Path:
    """The first ``*.safetensors`` whose header does not load (safetensors checks that the
    header's tensors cover the file exactly, so this finds a truncated file), else the
    directory itself."""
    from safetensors import SafetensorError, safe_open

    for file in sorted(Path(path).glob("*.safetensors")):
        try:
            with safe_open(str(file), "np"):
                pass
        except (SafetensorError, OSError):
            return file
    return Path(path)


def load_model(path: Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from safetensors import SafetensorError
    from transformers import EsmForProteinFolding

    _check_config(path)
    try:
        # a local directory, never the hub (local_files_only): no revision to pin
        model = EsmForProteinFolding.from_pretrained(  # nosec B615
            str(path), local_files_only=True, use_safetensors=True
        )
    except (SafetensorError, OSError, ValueError, EOFError) as exc:  # what loading a damaged file raises
        raise weights_damaged("esmfold", _damaged_model_file(path), exc) from exc
    model = model.eval()
    if torch.cuda.is_available():
        model = model.cuda()
    else:
        model.esm = model.esm.float()  # fp16 language model is GPU-only
    return model


def predict_esmfold(chains: tuple[str, ...], weights: Path, *, log: Callable[[str], None] = print,
                    timings: dict[str, float] | None = None, chunk_size: int | None = None) -> Prediction:
    import torch
    from transformers.models.esm.openfold_utils.feats import atom14_to_atom37

    timings = timings if timings is not None else {}
    path = require_esmfold(weights)
    t = time.perf_counter()
    model = load_model(path)
    timings["load"] = round(time.perf_counter() - t, 3)
    device = next(model.parameters()).device
    log(f"esmfold: loaded {path} ({sum(p.numel() for p in model.parameters()):,} parameters) on {device}")
    if chunk_size:
        model.trunk.set_chunk_size(chunk_size)

    seq, position, chain_index, keep = encode_chains(chains)
    t = time.perf_counter()
    with torch.inference_mode():
        out = model.infer([seq], position_ids=torch.from_numpy(position)[None])
    timings["predict"] = round(time.perf_counter() - t, 3)

    out_np = {k: v.detach().to("cpu").float().numpy() if torch.is_floating_point(v) else v.detach().cpu().numpy()
              for k, v in out.items() if isinstance(v, torch.Tensor)}
    positions37 = atom14_to_atom37(out_np["positions"][-1], out_np)[0]
    mask37 = out_np["atom37_atom_exists"][0]
    plddt = out_np["plddt"][0][:, 1] * 100.0  # per residue, CA; 0-1 → 0-100
    aatype = out_np["aatype"][0].astype(np.int32)
    pae = out_np.get("predicted_aligned_error")
    residue_index = np.zeros(len(seq), dtype=np.int32)
    for c in range(len(chains)):
        idx = np.nonzero((chain_index == c) & keep)[0]
        residue_index[idx] = np.arange(1, len(idx) + 1)
    k = keep
    return Prediction(
        aatype=aatype[k],
        atom_positions=positions37[k],
        atom_mask=mask37[k],
        residue_index=residue_index[k],
        chain_index=chain_index[k],
        plddt=plddt[k],
        model_name=MODEL_NAME,
        pae=None if pae is None else pae[0][np.ix_(k, k)],
        max_pae=float(out_np["max_predicted_aligned_error"].reshape(-1)[0])
        if "max_predicted_aligned_error" in out_np else None,
        ptm=float(out_np["ptm"].reshape(-1)[0]) if "ptm" in out_np else None,
    )
