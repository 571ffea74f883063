"""Which AlphaFold2 models a run uses, and multimer length buckets, with a stand-in model.

The real model compiles for minutes on a CPU and the demo weights hold one monomer model,
so these tests replace AlphaFold's ``RunModel`` with a small one that keeps what matters
here: the parameters it was given, the features it was fed, and a ``jax.jit`` function
whose executable cache counts compiles per input shape, as the real one does.
"""

from __future__ import annotations

import numpy as np
import pytest


class FakeRunModel:
    """AlphaFold's RunModel interface: config, params, multimer_mode, process_features,
    predict and a jitted ``apply`` (what predict_alphafold2 reads the compile count from)."""

    instances: list[FakeRunModel] = []

    def __init__(self, config, params):
        import jax
        import jax.numpy as jnp

        self.config = config
        self.params = params
        self.multimer_mode = bool(config.model.global_config.get("multimer_mode", False))
        self.fed: list[dict] = []
        self.used: list[str] = []

        def apply(feat):  # every output depends on the padded shape and on the masks
            mask = feat["seq_mask"].astype(jnp.float32)
            mask = mask if mask.ndim == 1 else mask[0]
            n = mask.shape[0]
            return {"plddt": 50.0 + 40.0 * mask, "pae": jnp.outer(mask, mask) * 3.0 + 1.0,
                    "pos": jnp.zeros((n, 37, 3)) + mask[:, None, None], "conf": mask.sum() / n}

        self.apply = jax.jit(apply)
        FakeRunModel.instances.append(self)

    def process_features(self, raw, random_seed):
        if self.multimer_mode:
            return raw
        from alphafold.model import features

        return features.np_example_to_features(np_example=raw, config=self.config, random_seed=random_seed)

    def predict(self, feat, random_seed=0):
        self.fed.append({k: np.asarray(v) for k, v in feat.items()})
        self.used.append(self.params)
        out = {k: np.asarray(v) for k, v in self.apply({"seq_mask": feat["seq_mask"]}).items()}
        n = out["plddt"].shape[0]
        result = {"structure_module": {"final_atom_positions": out["pos"], "final_atom_mask": np.ones((n, 37))},
                  "plddt": out["plddt"], "predicted_aligned_error": out["pae"], "max_predicted_aligned_error": 31.75,
                  "ptm": float(out["conf"]), "ranking_confidence": float(out["conf"])}
        if self.multimer_mode:
            result["iptm"] = float(out["conf"])
        return result, 0


@pytest.fixture
def fake_model(monkeypatch):
    """RunModel replaced; each parameter file 'loads' as its own model name."""
    from alphafold.model import model as af_model

    from foldstack.steps import alphafold2

    FakeRunModel.instances = []
    monkeypatch.setattr(af_model, "RunModel", FakeRunModel)
    monkeypatch.setattr(alphafold2, "_load_params", lambda path: path.stem.removeprefix("params_"))
    return FakeRunModel


def _weights(tmp_path, names):
    """A weights directory holding a (tiny, never loaded for real) parameter file per model."""
    d = tmp_path / "weights" / "alphafold2"
    d.mkdir(parents=True)
    for name in names:
        (d / f"params_{name}.npz").write_bytes(b"tiny")
    return tmp_path / "weights"


def _features(tmp_path, name, multimer, length):
    from foldstack.steps.alphafold2 import dummy_features
    from foldstack.steps.features import save_features

    path = tmp_path / f"{name}.npz"
    save_features(path, dummy_features(multimer, length))
    return path


@pytest.mark.slow
def test_monomer_run_uses_alphafolds_five_models_by_default(tmp_path, fake_model, monkeypatch):
    """All ten monomer parameter files present: a default run predicts with model_1..5_ptm,
    once each; num_models widens it, FOLDSTACK_AF2_NUM_MODELS overrides the request."""
    from foldstack.steps.alphafold2 import MONOMER_MODELS, NUM_MODELS_ENV, NUM_SEEDS_ENV, predict_alphafold2

    monkeypatch.delenv(NUM_MODELS_ENV, raising=False)
    monkeypatch.delenv(NUM_SEEDS_ENV, raising=False)
    monkeypatch.delenv("FOLDSTACK_AF2_MODELS", raising=False)
    monkeypatch.setenv("FOLDSTACK_JAX_CACHE_DIR", str(tmp_path / "jax"))
    weights = _weights(tmp_path, MONOMER_MODELS)
    assert len(list((weights / "alphafold2").glob("params_*.npz"))) == 10
    feats = _features(tmp_path, "f", False, 30)

    preds = predict_alphafold2(feats, weights, "monomer", log=lambda m: None)
    expected = ["model_1_ptm", "model_2_ptm", "model_3_ptm", "model_4_ptm", "model_5_ptm"]
    assert sorted(p.model_name for p in preds) == expected
    assert sorted(u for r in fake_model.instances for u in r.used) == expected  # each model's own parameters
    assert {p.extra["seed"] for p in preds} == {0}  # one seed per model for monomers

    assert len(predict_alphafold2(feats, weights, "monomer", num_models=10, log=lambda m: None)) == 10
    monkeypatch.setenv(NUM_MODELS_ENV, "2")
    assert [p.model_name for p in sorted(predict_alphafold2(feats, weights, "monomer", num_models=10,
                                                            log=lambda m: None), key=lambda p: p.model_name)] == \
        ["model_1_ptm", "model_2_ptm"]


@pytest.mark.slow
def test_multimer_default_is_five_models_five_seeds(tmp_path, fake_model, monkeypatch):
    from foldstack.steps.alphafold2 import MULTIMER_MODELS, predict_alphafold2

    for env in ("FOLDSTACK_AF2_NUM_MODELS", "FOLDSTACK_AF2_NUM_SEEDS", "FOLDSTACK_AF2_MODELS"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("FOLDSTACK_JAX_CACHE_DIR", str(tmp_path / "jax"))
    preds = predict_alphafold2(_features(tmp_path, "m", True, 20), _weights(tmp_path, MULTIMER_MODELS), "multimer",
                               log=lambda m: None)
    assert len(preds) == 25 and {p.model_name for p in preds} == set(MULTIMER_MODELS)
    assert sorted({p.extra["seed"] for p in preds}) == [0, 1, 2, 3, 4]


def test_multimer_padding_keeps_the_real_residues():
    from foldstack.steps.alphafold2 import MULTIMER_RESIDUE_AXIS, dummy_features, pad_multimer_to_length

    raw = dummy_features(True, 20)  # two chains of 20: 40 residues
    assert set(raw) <= set(MULTIMER_RESIDUE_AXIS)
    padded = pad_multimer_to_length(raw, 64)
    assert padded["aatype"].shape == (64,) and padded["msa"].shape == (raw["msa"].shape[0], 64)
    assert padded["template_all_atom_positions"].shape[:2] == (4, 64) and padded["all_atom_positions"].shape[0] == 64
    assert padded["seq_mask"][:40].all() and not padded["seq_mask"][40:].any()
    assert not padded["msa_mask"][:, 40:].any() and not padded["asym_id"][40:].any()
    assert padded["cluster_bias_mask"].shape == raw["cluster_bias_mask"].shape  # per MSA row: untouched
    for key, value in raw.items():  # the real residues are the input's, exactly
        axis = MULTIMER_RESIDUE_AXIS[key]
        real = padded[key] if axis is None else np.take(padded[key], range(40), axis=axis)
        np.testing.assert_array_equal(real, value, err_msg=key)
    with pytest.raises(RuntimeError, match="residue axis unknown"):
        pad_multimer_to_length({**raw, "new_feature": np.zeros(40)}, 64)


@pytest.mark.slow
def test_multimer_lengths_in_one_bucket_compile_once(tmp_path, fake_model, monkeypatch):
    """Complexes of 70 and 90 residues (bucket 96) in one batch compile the model once; 130
    (bucket 160) compiles again. Predictions come back at the real length and the model
    never sees a padded residue unmasked. With bucketing off, each length compiles."""
    from foldstack.steps.alphafold2 import BUCKETS_ENV, predict_alphafold2
    from foldstack.steps.predict import _SharedModels

    monkeypatch.setenv("FOLDSTACK_JAX_CACHE_DIR", str(tmp_path / "jax"))
    monkeypatch.setenv("FOLDSTACK_AF2_NUM_SEEDS", "1")
    weights = _weights(tmp_path, ["model_1_multimer_v3"])
    paths = {2 * half: _features(tmp_path, f"c{half}", True, half) for half in (35, 45, 65)}

    def batch():
        with _SharedModels():
            return {n: predict_alphafold2(paths[n], weights, "multimer", log=lambda m: None)[0] for n in paths}

    runs = batch()
    assert [runs[n].extra["bucket"] for n in (70, 90, 130)] == [96, 96, 160]
    assert [runs[n].extra["compiled"] for n in (70, 90, 130)] == [1, 0, 1]
    for n, pred in runs.items():
        assert pred.plddt.shape == (n,) and pred.pae.shape == (n, n) and pred.atom_positions.shape == (n, 37, 3)
        assert (pred.plddt == 90.0).all()  # only real (unmasked) residues are returned
    (runner,) = fake_model.instances
    for fed, n in zip(runner.fed, (70, 90, 130), strict=True):
        assert fed["seq_mask"][:n].all() and not fed["seq_mask"][n:].any() and not fed["msa_mask"][:, n:].any()

    monkeypatch.setenv(BUCKETS_ENV, "off")
    fake_model.instances = []
    runs = batch()
    assert [runs[n].extra["compiled"] for n in (70, 90, 130)] == [1, 1, 1]
    assert [runs[n].extra["bucket"] for n in (70, 90, 130)] == [70, 90, 130]


def test_multimer_with_an_unknown_feature_runs_unpadded(tmp_path, fake_model, monkeypatch):
    """A features file with a feature whose residue axis is not known is never padded by
    guess: it runs at its own length (and says so), rather than failing."""
    from foldstack.steps.alphafold2 import dummy_features, predict_alphafold2
    from foldstack.steps.features import save_features

    monkeypatch.setenv("FOLDSTACK_JAX_CACHE_DIR", str(tmp_path / "jax"))
    monkeypatch.setenv("FOLDSTACK_AF2_NUM_SEEDS", "1")
    path = tmp_path / "m.npz"
    save_features(path, {**dummy_features(True, 35), "future_feature": np.zeros(70, np.float32)})
    said = []
    (pred,) = predict_alphafold2(path, _weights(tmp_path, ["model_1_multimer_v3"]), "multimer", log=said.append)
    assert pred.extra["bucket"] == 70 and pred.plddt.shape == (70,)
    assert any("not padded to 96" in m and "future_feature" in m for m in said)
