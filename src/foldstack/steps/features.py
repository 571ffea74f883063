"""The features file: the MSA → Predict hand-off (docs/architecture.md).

``features.npz`` holds the AlphaFold2 feature dict exactly as AlphaFold's data pipeline
builds it, except that object arrays of bytes (``domain_name``, ``sequence``,
``msa_species_identifiers``, ``template_domain_names``, ``template_sequence``) are
stored as fixed-width bytes (``dtype="S"``), so the file always loads with
``np.load(path, allow_pickle=False)``. Nothing is ever unpickled.

Whether a features file is usable (it loads, AlphaFold's required features are there, their
shapes fit the sequence) is decided by one function, :func:`foldstack.core.npz.check_features`:
the MSA cache lookup (a Lambda, which carries ``core`` but not the steps) and the predict
step both call it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from foldstack.core.npz import load_npz

FEATURES_NPZ = "features.npz"


def empty_template_features(sequence: str) -> dict[str, np.ndarray]:
    """Template features for "no templates".

    One all-masked placeholder template (ColabFold's convention), so models 1/2 (which
    embed templates) and models 3-5 (which ignore them) both accept the dict; with every
    atom mask zero it contributes nothing.
    """
    from alphafold.common import residue_constants

    n = len(sequence)
    gaps = "-" * n
    aatype = residue_constants.sequence_to_onehot(gaps, residue_constants.HHBLITS_AA_TO_ID)
    return {
        "template_aatype": np.asarray(aatype, np.float32)[None],
        "template_all_atom_masks": np.zeros((1, n, 37), np.float32),
        "template_all_atom_positions": np.zeros((1, n, 37, 3), np.float32),
        "template_domain_names": np.array([b"none"], dtype="S"),
        "template_sequence": np.array([gaps.encode()], dtype="S"),
        "template_sum_probs": np.zeros((1, 1), np.float32),
    }


def make_msa_features(msas: Sequence, *, dedupe: bool) -> dict[str, np.ndarray]:
    """AlphaFold's ``pipeline.make_msa_features``. With `dedupe` a row whose aligned
    sequence came earlier (in this or an earlier MSA) is dropped, as upstream AlphaFold
    does; the ``alphafold-colabfold`` fork keeps every row (ColabFold's MSAs are filtered
    by MMseqs2 instead), which is what ``dedupe=False`` gives."""
    from alphafold.data import pipeline

    msas = list(msas)
    if not dedupe:
        return pipeline.make_msa_features(msas)
    from alphafold.data import parsers

    seen: set[str] = set()
    unique = []
    for msa in msas:
        keep = [i for i, seq in enumerate(msa.sequences) if not (seq in seen or seen.add(seq))]
        unique.append(parsers.Msa(sequences=[msa.sequences[i] for i in keep],
                                  deletion_matrix=[msa.deletion_matrix[i] for i in keep],
                                  descriptions=[msa.descriptions[i] for i in keep]))
    # pipeline.make_msa_features refuses an empty MSA: one whose every row came before adds nothing
    return pipeline.make_msa_features([m for m in unique if m.sequences])


def build_monomer_features(sequence: str, description: str, msas: Sequence,
                           templates: Mapping[str, np.ndarray] | None = None, *,
                           dedupe: bool = True) -> dict[str, np.ndarray]:
    """AlphaFold's own feature functions: sequence + MSA + templates.

    `templates` is the feature dict of AlphaFold's template featurizer
    (:func:`foldstack.steps.templates.search_templates`); None or an empty one gives the
    all-masked placeholder (:func:`empty_template_features`). `dedupe`: see
    :func:`make_msa_features` (the database preset decides).
    """
    from alphafold.data import pipeline

    if templates is None or not n_templates(templates):
        templates = empty_template_features(sequence)
    feats = {
        **pipeline.make_sequence_features(sequence=sequence, description=description, num_res=len(sequence)),
        **make_msa_features(msas, dedupe=dedupe),
        **templates,
    }
    return to_storable(feats)


def n_templates(features: Mapping[str, np.ndarray]) -> int:
    """How many real templates a feature dict holds (the placeholder counts as zero)."""
    masks = features.get("template_all_atom_masks", features.get("template_all_atom_mask"))
    if masks is None or np.asarray(masks).size == 0:
        return 0
    masks = np.asarray(masks)
    return int(np.count_nonzero(masks.reshape(masks.shape[0], -1).any(axis=1)))


def to_storable(features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Object arrays of bytes/str → fixed-width bytes; everything else unchanged."""
    out = {}
    for key, value in features.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            items = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in arr.reshape(-1)]
            arr = np.array(items, dtype="S").reshape(arr.shape) if items else np.zeros(arr.shape, dtype="S1")
        out[key] = arr
    return out


def features_to_bytes(features: Mapping[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` of the storable features (no object arrays, so no pickle)."""
    storable = to_storable(features)
    for key, arr in storable.items():
        if arr.dtype == object:  # pragma: no cover - to_storable guarantees this
            raise TypeError(f"feature {key} would need pickle")
    buf = io.BytesIO()
    np.savez_compressed(buf, **storable)
    return buf.getvalue()


def features_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Load ``.npz`` bytes; never unpickles (object arrays, and anything that is not an
    intact archive, raise :class:`~foldstack.core.npz.NpzError`, a ValueError)."""
    return load_npz(data)


def save_features(path: Path, features: Mapping[str, np.ndarray]) -> None:
    Path(path).write_bytes(features_to_bytes(features))


def load_features(path: Path) -> dict[str, np.ndarray]:
    """Load a features file; never unpickles (object arrays raise ValueError)."""
    return features_from_bytes(Path(path).read_bytes())


def summarize(features: Mapping[str, np.ndarray]) -> dict[str, object]:
    """Shapes and dtypes for features.json."""
    return {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)} for k, v in features.items()}
