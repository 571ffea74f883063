"""AlphaFold2 compiles once per length bucket: padded inputs, a shared runner in a batch,
the persistent compilation cache keyed by JAX build and model config, num_models/num_seeds."""

from __future__ import annotations

import numpy as np
import pytest

from foldstack.core.errors import BadInputError


def test_length_buckets(monkeypatch):
    from foldstack.steps.alphafold2 import BUCKETS_ENV, DEFAULT_BUCKETS, configured_buckets, length_bucket

    assert [length_bucket(n) for n in (1, 64, 65, 100, 257, 2500, 4096, 4097)] == \
        [64, 64, 96, 128, 320, 2560, 4096, 4608]
    assert all((b2 - b1) / b2 <= 1 / 3 for b1, b2 in zip(DEFAULT_BUCKETS, DEFAULT_BUCKETS[1:], strict=False))  # waste
    monkeypatch.setenv(BUCKETS_ENV, "100,50")
    assert configured_buckets() == (50, 100) and length_bucket(60) == 100
    monkeypatch.setenv(BUCKETS_ENV, "off")
    assert length_bucket(77) == 77
    monkeypatch.setenv(BUCKETS_ENV, "ten")
    with pytest.raises(BadInputError):
        configured_buckets()


def test_cache_dir_is_keyed_by_jax_build_and_model_config(tmp_path, monkeypatch):
    import jax

    from foldstack.steps.alphafold2 import model_cache_dir, model_config

    monkeypatch.setenv("FOLDSTACK_JAX_CACHE_DIR", str(tmp_path))
    a = model_cache_dir("model_5_ptm", model_config("model_5_ptm"))
    b = model_cache_dir("model_5_ptm", model_config("model_5_ptm", {"model.num_recycle": 1}))
    c = model_cache_dir("model_3_ptm", model_config("model_3_ptm"))
    assert a.parent == b.parent == c.parent == tmp_path / a.parent.name
    assert a.parent.name.startswith(f"jax-{jax.__version__}-jaxlib-") and a.parent.name.endswith(jax.default_backend())
    assert len({a, b, c}) == 3 and a.name.startswith("model_5_ptm-")
    assert model_cache_dir("model_5_ptm", model_config("model_5_ptm")) == a  # stable


@pytest.mark.slow  # loads the AlphaFold2 model and its feature pipeline: `make test` only
def test_padding_keeps_the_real_residues(weights):
    """The demo model on 68 residues, unpadded and padded to 96: same structure and pLDDT."""
    from alphafold.model import model as af_model

    from foldstack.steps.alphafold2 import (
        dummy_features,
        load_params,
        model_config,
        model_overrides,
        pad_to_length,
    )
    from foldstack.steps.weights_layout import engine_dir

    name = "model_5_ptm"
    cfg = model_config(name, model_overrides(weights, name))
    raw = dummy_features(False, 68)
    runner = af_model.RunModel(cfg, load_params(engine_dir(weights, "alphafold2") / f"params_{name}.npz"))
    processed = runner.process_features(dict(raw), random_seed=0)
    padded = pad_to_length(processed, runner.config, 96)
    assert padded["aatype"].shape == (1, 96) and padded["msa_feat"].shape[1] == processed["msa_feat"].shape[1]
    assert padded["seq_mask"][0, 68:].sum() == 0 and padded["seq_mask"][0, :68].all()
    assert padded["msa_feat"].shape[2] == 96 and not np.any(padded["msa_mask"][..., 68:])


@pytest.mark.slow
def test_two_lengths_in_one_bucket_compile_once(tmp_path, weights, monkeypatch):
    """Targets of 70 and 90 residues (bucket 96) in one batch: the model compiles for the
    first only; a target of 130 (bucket 160) compiles again. Results have the real length."""
    from foldstack.steps.alphafold2 import dummy_features, predict_alphafold2
    from foldstack.steps.features import save_features
    from foldstack.steps.predict import _SharedModels

    paths = {}
    for n in (70, 90, 130):
        paths[n] = tmp_path / f"f{n}.npz"
        save_features(paths[n], dummy_features(False, n))
    monkeypatch.setenv("FOLDSTACK_JAX_CACHE_DIR", str(tmp_path / "jax"))  # a cold cache: real compiles
    with _SharedModels():
        runs = {n: predict_alphafold2(paths[n], weights, "monomer", log=lambda m: None) for n in (70, 90, 130)}
    (p70,), (p90,), (p130,) = runs[70], runs[90], runs[130]
    assert (p70.extra["bucket"], p90.extra["bucket"], p130.extra["bucket"]) == (96, 96, 160)
    assert (p70.extra["compiled"], p90.extra["compiled"], p130.extra["compiled"]) == (1, 0, 1)
    assert p70.plddt.shape == (70,) and p90.atom_positions.shape == (90, 37, 3) and p130.pae.shape == (130, 130)
    # the persistent cache got entries, under the JAX build's and the model config's directory
    (model_dir,) = (tmp_path / "jax").glob("jax-*/model_5_ptm-*")
    assert any(model_dir.iterdir())


@pytest.mark.slow
def test_num_seeds_runs_each_model_per_seed(tmp_path, weights, monkeypatch):
    from foldstack.steps.alphafold2 import dummy_features, predict_alphafold2
    from foldstack.steps.features import save_features

    path = tmp_path / "f.npz"
    save_features(path, dummy_features(False, 70))
    preds = predict_alphafold2(path, weights, "monomer", num_seeds=2, seed=7, log=lambda m: None)
    assert sorted(p.extra["seed"] for p in preds) == [7, 8] and {p.model_name for p in preds} == {"model_5_ptm"}
    with pytest.raises(BadInputError, match="num_models must be 1..10"):
        predict_alphafold2(path, weights, "monomer", num_models=11, log=lambda m: None)
