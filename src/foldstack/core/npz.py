"""``.npz`` archives, loaded without pickle, and the check that one is a features file
Predict can use.

The features file (``features.npz``, written by the msa step, :mod:`foldstack.steps.features`)
is the MSA → Predict hand-off; the per-target MSA cache serves copies of it. Both the
cache lookup (the ``msa_cache`` Lambda, :mod:`foldstack.tasks.msa_cache`) and the predict
step (:mod:`foldstack.steps.alphafold2`) decide whether a file is usable with the one
function here, :func:`check_features`, which loads it exactly as Predict does
(``np.load(..., allow_pickle=False)``, every array read, so a truncated or garbled archive
fails its CRC or decompression here) and checks that AlphaFold's required features are
present with shapes that fit the sequence. It lives in ``core`` because the Lambda zip
carries ``core`` but not the steps; it needs numpy and nothing else (imported lazily).
"""

from __future__ import annotations

import io
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# What np.load / zipfile / zlib raise on bytes that are not an intact .npz archive (found by
# truncating and garbling real feature files): not a zip or bad CRC (BadZipFile), a
# truncated or corrupt stream (EOFError, zlib.error), a bad .npy header (ValueError,
# tokenize.TokenError, struct.error), pickled data refused (ValueError), a garbled zip
# header flag: "encrypted" or an unknown compression method (RuntimeError,
# NotImplementedError), an unreadable file (OSError).
LOAD_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, tokenize.TokenError, struct.error,
)


class NpzError(ValueError):
    """Not an ``.npz`` archive that loads without pickle (the message says why, on one line)."""


class FeaturesFileError(NpzError):
    """Not a features file Predict can use: it does not load, lacks a required feature,
    or a feature's shape does not fit the sequence."""


# Required features and their shapes: "L" residues, "M" MSA rows, "T" templates, numbers
# fixed. What the msa step writes (AlphaFold's own feature functions) and the model needs.
MONOMER_FEATURES: dict[str, tuple[str | int, ...]] = {
    "aatype": ("L", 21),
    "between_segment_residues": ("L",),
    "residue_index": ("L",),
    "seq_length": ("L",),
    "num_alignments": ("L",),
    "msa": ("M", "L"),
    "deletion_matrix_int": ("M", "L"),
    "template_aatype": ("T", "L", 22),
    "template_all_atom_masks": ("T", "L", 37),
    "template_all_atom_positions": ("T", "L", 37, 3),
}
MULTIMER_FEATURES: dict[str, tuple[str | int, ...]] = {
    "aatype": ("L",),
    "residue_index": ("L",),
    "asym_id": ("L",),
    "entity_id": ("L",),
    "sym_id": ("L",),
    "seq_mask": ("L",),
    "msa": ("M", "L"),
    "deletion_matrix": ("M", "L"),
    "msa_mask": ("M", "L"),
    "bert_mask": ("M", "L"),
    "cluster_bias_mask": ("M",),
    "template_aatype": ("T", "L"),
    "template_all_atom_mask": ("T", "L", 37),
    "template_all_atom_positions": ("T", "L", 37, 3),
}
_MAX_DETAIL = 200


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def iter_npz(source: bytes | str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) for every array of an ``.npz`` archive (bytes or a file), one at a
    time, each read in full (so its CRC is checked); never unpickles. Raises
    :class:`NpzError` (a ValueError) for anything that is not such an archive."""
    import numpy as np

    try:
        loaded: Any = np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False)
    except LOAD_ERRORS as exc:
        raise NpzError(f"does not load ({_one_line(exc)})") from exc
    if not hasattr(loaded, "files"):
        raise NpzError("does not load (a single .npy array, not an .npz archive)")
    with loaded as npz:
        for key in npz.files:
            try:
                array = npz[key]
            except LOAD_ERRORS as exc:
                raise NpzError(f"does not load ({_one_line(exc)})") from exc
            yield key, array


def load_npz(source: bytes | str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive (:func:`iter_npz`)."""
    return dict(iter_npz(source))


def _fits(shape: tuple[int, ...], spec: tuple[str | int, ...], dims: dict[str, int]) -> bool:
    if len(shape) != len(spec):
        return False
    for size, want in zip(shape, spec, strict=True):
        if isinstance(want, int):
            if size != want:
                return False
        elif dims.setdefault(want, size) != size:
            return False
    return True


def check_features(source: bytes | str | Path, length: int | None = None, *, keep: bool = True,
                   ) -> dict[str, np.ndarray]:
    """Load a features file as Predict does and check it; return its arrays.

    `length`: the target's residue count (all chains); None takes it from the features'
    own ``aatype`` (Predict, which reads only the features). `keep=False` (the cache
    lookup, in a Lambda's memory) reads every array but keeps none: it returns {}. Raises
    :class:`FeaturesFileError` with a one-line reason, e.g. ``does not load (BadZipFile:
    ...)``, ``lacks msa``, ``msa has shape (3, 7), expected (M, 12)``.
    """
    import numpy as np

    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, tuple[tuple[int, ...], Any]] = {}  # every array's shape and dtype
    try:
        for key, array in iter_npz(source):
            meta[key] = (tuple(array.shape), array.dtype)
            if keep or key in ("aatype", "seq_length"):
                arrays[key] = array
    except NpzError as exc:
        raise FeaturesFileError(str(exc)) from exc
    spec = MULTIMER_FEATURES if "asym_id" in meta else MONOMER_FEATURES
    missing = [key for key in spec if key not in meta]
    if missing:
        raise FeaturesFileError(f"lacks {', '.join(missing)}")
    if length is None:
        length = int(meta["aatype"][0][0]) if meta["aatype"][0] else 0
    if length < 1:
        raise FeaturesFileError(f"is for {length} residues")
    dims = {"L": int(length)}
    for key, want in spec.items():
        shape, dtype = meta[key]
        if dtype.kind not in "biuf":
            raise FeaturesFileError(f"{key} has dtype {dtype}, expected numbers")
        if not _fits(shape, want, dims):
            parts = [str(dims["L"]) if w == "L" else str(w) for w in want]
            expected = "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
            raise FeaturesFileError(f"{key} has shape {shape}, expected {expected} for {length} residues")
    if dims.get("M", 0) < 1:
        raise FeaturesFileError("msa has no rows")
    if "seq_length" in arrays:  # AlphaFold sizes the model's input from it
        said = arrays["seq_length"].reshape(-1)
        if said.dtype.kind not in "biu" or said.size == 0 or bool(np.any(said != length)):
            raise FeaturesFileError(f"seq_length says {said[:1].tolist()}, not {length} residues")
    return arrays if keep else {}
