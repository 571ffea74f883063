"""Damaged state heals or says so.

* The features file: one check (:func:`foldstack.core.npz.check_features`) decides whether
  Predict can use a ``features.npz``; the MSA cache lookup uses it too (tests/lambdas).
  Whatever the bytes, it returns the arrays or raises FeaturesFileError, and Predict turns
  that into a coded, exit-2 error naming the file, never a traceback.
* Weights: a truncated or garbled model file, a missing or corrupt config raise
  WeightsDamagedError naming the file and the command that installs the weights again;
  ``foldstack step predict`` exits 2 with that line on stderr.
* The per-chain cache: a truncated ``templates.npz`` or ``.a3m.gz`` is a miss (whether or
  not ``chain.json`` still matches it) and the next store repairs it.

Fast: demo weights are written once per module, no structure is predicted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from foldstack.core.errors import EXIT_BAD_INPUT, BadInputError, DamagedFileError
from foldstack.core.npz import FeaturesFileError, check_features
from tests.steps.conftest import DEMO_SEQ, TARGET, invoke, stage

# -------------------------------------------------------------------- the features check


@pytest.fixture(scope="module")
def feature_bytes() -> dict[str, tuple[bytes, int]]:
    """Monomer and multimer features as the msa step builds them (AlphaFold's pipeline)."""
    from foldstack.steps.alphafold2 import dummy_features
    from foldstack.steps.features import features_to_bytes

    return {"monomer": (features_to_bytes(dummy_features(False, 12)), 12),
            "multimer": (features_to_bytes(dummy_features(True, 12)), 24)}


def test_features_as_the_msa_step_writes_them_pass(feature_bytes, msa_done):
    for data, length in feature_bytes.values():
        assert check_features(data, length)["msa"].shape[1] == length
        assert check_features(data)["aatype"].shape[0] == length  # Predict: the features' own length
    scratch, run_id = msa_done
    arrays = check_features(scratch / run_id / "msa" / TARGET / "features.npz", len(DEMO_SEQ))
    assert arrays["aatype"].shape == (len(DEMO_SEQ), 21)


@pytest.mark.parametrize("kind", ["monomer", "multimer"])
@pytest.mark.slow
def test_any_truncation_or_garbling_gives_features_file_error_or_arrays(feature_bytes, kind):
    """What np.load, zipfile and zlib raise on damaged bytes varies (BadZipFile, zlib.error,
    EOFError, ValueError, NotImplementedError, tokenize.TokenError, ...): the check turns
    all of it into FeaturesFileError, so a lookup never crashes on an entry."""
    data, length = feature_bytes[kind]
    rng = random.Random(7)
    damaged = [data[:n] for n in range(0, len(data), 5)]
    for _ in range(600):
        b = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        damaged.append(bytes(b))
    refused = 0
    for blob in damaged:
        try:
            check_features(blob, length)
        except FeaturesFileError:
            refused += 1
    assert refused > len(damaged) * 0.8


def test_wrong_shapes_and_missing_features_are_named(feature_bytes):
    from foldstack.steps.features import features_from_bytes, features_to_bytes

    data, length = feature_bytes["monomer"]
    arrays = features_from_bytes(data)
    with pytest.raises(FeaturesFileError, match=r"aatype has shape \(12, 21\), expected \(13, 21\)"):
        check_features(data, 13)
    with pytest.raises(FeaturesFileError, match="lacks msa, deletion_matrix_int"):
        check_features(features_to_bytes({k: v for k, v in arrays.items()
                                          if k not in ("msa", "deletion_matrix_int")}))
    with pytest.raises(FeaturesFileError, match=r"msa has shape \(1, 11\), expected \(M, 12\)"):
        check_features(features_to_bytes({**arrays, "msa": arrays["msa"][:, :11]}))
    with pytest.raises(FeaturesFileError, match=r"seq_length says \[99\]"):
        check_features(features_to_bytes({**arrays, "seq_length": np.full(12, 99, np.int32)}))


# -------------------------------------------------------------------- Predict on damaged features


def _truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def _pickled(good: bytes) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, aatype=np.zeros((3, 21), np.float32), domain_name=np.array([object()], dtype=object))
    return buf.getvalue()


def _wrong_shape(good: bytes) -> bytes:
    from foldstack.steps.features import features_from_bytes, features_to_bytes

    arrays = features_from_bytes(good)
    return features_to_bytes({**arrays, "msa": arrays["msa"][:, :-1]})


FEATURE_DAMAGE = {"truncated": _truncated, "garbled": lambda good: b"\x00\xff garbage " * 50,
                  "pickled_object_array": _pickled, "wrong_shape": _wrong_shape}


@pytest.mark.parametrize("damage", sorted(FEATURE_DAMAGE))
def test_predict_on_features_it_cannot_load_is_a_coded_error_naming_the_file(scratch, feature_bytes, damage):
    """A cache hit that went bad after the lookup: exit 2 (a retry of Predict reads the same
    bytes) with a coded line naming the file and how to recompute it. Today's code let
    BadZipFile escape as a traceback and had no code."""
    from foldstack.steps.alphafold2 import predict_alphafold2

    path = scratch / "r" / "msa" / TARGET / "features.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(FEATURE_DAMAGE[damage](feature_bytes["monomer"][0]))
    with pytest.raises(DamagedFileError) as info:
        predict_alphafold2(path, scratch / "no-weights", "monomer")
    assert info.value.code == "features_damaged" and info.value.path == str(path)
    assert isinstance(info.value, BadInputError) and info.value.exit_code == EXIT_BAD_INPUT

    result = invoke(["predict", "--run-id", "r", "--target", TARGET, "--scratch", str(scratch),
                     "--weights", str(scratch / "no-weights"), "--engine", "alphafold2", "--preset", "monomer"])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    text = " ".join(result.output.split())
    assert f"[features_damaged] {path} cannot be used" in text and "reuse_msa=false" in text
    # nothing published; the target's failure record (steps/failures.py) says why
    assert not (scratch / "r" / "predict" / TARGET / "predict.done.json").exists()
    record = json.loads((scratch / "r" / "predict" / TARGET / "predict.failed.json").read_text())
    assert record["code"] == "features_damaged"


# -------------------------------------------------------------------- damaged weights


@pytest.fixture(scope="module")
def demo_weights(tmp_path_factory) -> Path:
    from foldstack.weights.demo import write_demo_weights

    return write_demo_weights(tmp_path_factory.mktemp("demo-weights") / "w")


def _copy(demo_weights: Path, tmp_path: Path, engine: str, *, real: bool = False) -> Path:
    """A copy of the demo weights of `engine` to damage (`real`: without the demo marker)."""
    weights = tmp_path / "w"
    shutil.copytree(demo_weights / engine, weights / engine)
    if real:
        (weights / engine / "DEMO_WEIGHTS").unlink()
    return weights


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


ESMFOLD_DAMAGE = {
    "truncated_safetensors": ("model.safetensors", lambda d: _truncate(d / "model.safetensors")),
    "safetensors_cut_by_a_few_bytes": ("model.safetensors",
                                       lambda d: (d / "model.safetensors").write_bytes(
                                           (d / "model.safetensors").read_bytes()[:-16])),
    "garbled_safetensors": ("model.safetensors", lambda d: (d / "model.safetensors").write_bytes(b"garbage" * 64)),
    "missing_config": ("config.json", lambda d: (d / "config.json").unlink()),
    "truncated_config": ("config.json", lambda d: _truncate(d / "config.json")),
    "config_not_an_object": ("config.json", lambda d: (d / "config.json").write_text("[1, 2]")),
}


def _predict(scratch: Path, weights: Path, engine: str, preset: str = "monomer"):
    return invoke(["predict", "--run-id", "r", "--target", TARGET, "--scratch", str(scratch),
                   "--weights", str(weights), "--engine", engine, "--preset", preset])


def _assert_predict_refuses(scratch: Path, weights: Path, engine: str, damaged: Path) -> None:
    """The predict step exits 2 naming the damaged file and the command that rewrites the
    (demo) weights, and publishes nothing."""
    result = _predict(scratch, weights, engine)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    text = " ".join(result.output.split())
    assert f"[weights_damaged] damaged {engine} weights: {damaged}" in text
    # demo weights are rewritten only with --force (`foldstack demo-data` keeps a current marker)
    assert f"foldstack weights demo --dest {weights} --engine {engine} --force" in text
    # nothing published; the target's failure record (steps/failures.py) says why
    assert not (scratch / "r" / "predict" / TARGET / "predict.done.json").exists()
    record = json.loads((scratch / "r" / "predict" / TARGET / "predict.failed.json").read_text())
    assert record["code"] == "weights_damaged"


@pytest.mark.parametrize("damage", sorted(ESMFOLD_DAMAGE))
@pytest.mark.slow
def test_damaged_esmfold_weights_exit_2_naming_the_file(demo_weights, tmp_path, scratch, damage):
    from foldstack.steps.esmfold import load_model
    from foldstack.steps.weights_layout import WeightsDamagedError, require_esmfold

    name, damage_fn = ESMFOLD_DAMAGE[damage]
    weights = _copy(demo_weights, tmp_path, "esmfold")
    damage_fn(weights / "esmfold")
    with pytest.raises(WeightsDamagedError) as info:
        load_model(require_esmfold(weights))
    assert info.value.code == "weights_damaged" and info.value.path == str(weights / "esmfold" / name)
    assert "\n" not in str(info.value)

    stage(scratch, "r", TARGET, DEMO_SEQ)
    _assert_predict_refuses(scratch, weights, "esmfold", weights / "esmfold" / name)


@pytest.mark.slow
def test_damaged_real_esmfold_weights_say_fetch_and_the_demo_hint_heals(demo_weights, tmp_path):
    from typer.testing import CliRunner

    from foldstack.cli.weights import app as weights_app
    from foldstack.steps.esmfold import load_model
    from foldstack.steps.weights_layout import WeightsDamagedError

    real = _copy(demo_weights, tmp_path / "real", "esmfold", real=True)
    _truncate(real / "esmfold" / "model.safetensors")
    with pytest.raises(WeightsDamagedError, match=rf"Install them again with `foldstack weights fetch esmfold "
                                                  rf"--dest {real}`"):
        load_model(real / "esmfold")

    demo = _copy(demo_weights, tmp_path / "demo", "esmfold")
    _truncate(demo / "esmfold" / "model.safetensors")
    result = CliRunner().invoke(weights_app, ["demo", "--dest", str(demo), "--engine", "esmfold", "--force"])
    assert result.exit_code == 0, result.output
    assert load_model(demo / "esmfold") is not None  # the command the message names heals it


AF2_DAMAGE = {
    "truncated_params": ("params_model_5_ptm.npz", lambda d: _truncate(d / "params_model_5_ptm.npz")),
    "params_cut_by_a_few_bytes": ("params_model_5_ptm.npz",
                                  lambda d: (d / "params_model_5_ptm.npz").write_bytes(
                                      (d / "params_model_5_ptm.npz").read_bytes()[:-16])),
    "params_not_npz": ("params_model_5_ptm.npz", lambda d: (d / "params_model_5_ptm.npz").write_text("not npz")),
    "params_without_scopes": ("params_model_5_ptm.npz",
                              lambda d: np.savez(d / "params_model_5_ptm.npz", weights=np.zeros(3))),
    "truncated_overrides": ("config_overrides.json", lambda d: _truncate(d / "config_overrides.json")),
    "overrides_not_an_object": ("config_overrides.json", lambda d: (d / "config_overrides.json").write_text("[]")),
    "overrides_of_the_wrong_type": ("config_overrides.json", lambda d: (d / "config_overrides.json").write_text(
        json.dumps({"model.num_recycle": "three"}))),
}


@pytest.mark.parametrize("damage", sorted(AF2_DAMAGE))
@pytest.mark.slow
def test_damaged_alphafold2_weights_exit_2_naming_the_file(demo_weights, feature_bytes, tmp_path, scratch,
                                                           damage, monkeypatch):
    """Fails before any prediction: the parameters and overrides load first."""
    from foldstack.steps.alphafold2 import load_params, model_overrides
    from foldstack.steps.weights_layout import WeightsDamagedError

    monkeypatch.setenv("FOLDSTACK_AF2_MODELS", "model_5_ptm")
    name, damage_fn = AF2_DAMAGE[damage]
    weights = _copy(demo_weights, tmp_path, "alphafold2")
    damage_fn(weights / "alphafold2")
    file = weights / "alphafold2" / name
    if name.startswith("params_"):
        with pytest.raises(WeightsDamagedError) as info:
            load_params(file)
        assert info.value.path == str(file)
    elif damage != "overrides_of_the_wrong_type":
        with pytest.raises(WeightsDamagedError):
            model_overrides(weights, "model_5_ptm")

    features = scratch / "r" / "msa" / TARGET / "features.npz"
    features.parent.mkdir(parents=True)
    features.write_bytes(feature_bytes["monomer"][0])
    _assert_predict_refuses(scratch, weights, "alphafold2", file)


@pytest.mark.slow
def test_the_step_process_exits_2_with_one_line_on_stderr(demo_weights, tmp_path):
    """The real command, as Batch runs it: exit code 2, the typed line on stderr."""
    weights = _copy(demo_weights, tmp_path, "esmfold", real=True)
    _truncate(weights / "esmfold" / "model.safetensors")
    scratch = tmp_path / "scratch"
    stage(scratch, "r", TARGET, DEMO_SEQ)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "foldstack"), "step", "predict", "--run-id", "r", "--target", TARGET,
         "--scratch", str(scratch), "--weights", str(weights), "--engine", "esmfold"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr[-3000:]
    [line] = [ln for ln in proc.stderr.splitlines() if "FAILED" in ln]
    assert f"[weights_damaged] damaged esmfold weights: {weights / 'esmfold' / 'model.safetensors'} does not load " \
           "(SafetensorError: " in line
    assert f"`foldstack weights fetch esmfold --dest {weights}`" in line
    assert "Traceback" not in proc.stderr


# -------------------------------------------------------------------- the per-chain cache

OTHER = "MTKILVKDKEDWLKLVNNLSKLRKEKGINQTDLG"


def _chain_cache(root: Path, logs: list[str]):
    from foldstack.steps.chain_cache import Alignment, ChainCache, ChainSearch
    from foldstack.steps.features import empty_template_features

    cache = ChainCache(str(root), "mmseqs2", "demo_uniref@v1.p1", {"demo_uniref": "v1"}, "2021-01-01",
                       {"mmseqs2": "15"}, logs.append)
    templates = empty_template_features(OTHER)
    templates["template_all_atom_masks"][0, :, 0] = 1.0  # one "real" template, so it is stored
    hits = "".join(f">hit{i}\n{OTHER[i:]}{OTHER[:i]}\n" for i in range(1, 40))
    search = ChainSearch.build([Alignment("demo_uniref", "a3m", f">query\n{OTHER}\n{hits}")], templates,
                               {"templates": ["1abc_A"], "errors": []})
    return cache, search


def _resign_chain(entry: Path, name: str, data: bytes) -> None:
    (entry / name).write_bytes(data)
    marker = json.loads((entry / "chain.json").read_text())
    marker["files"][name] = hashlib.sha256(data).hexdigest()
    (entry / "chain.json").write_text(json.dumps(marker))


def _cut_a3m_gz(entry: Path) -> bytes:
    return (entry / "demo_uniref.a3m.gz").read_bytes()[:-40]


def _cut_a3m_text(entry: Path) -> bytes:
    """A3M cut inside a row, then compressed intact (a writer that lost the end)."""
    text = gzip.decompress((entry / "demo_uniref.a3m.gz").read_bytes())
    return gzip.compress(text[: len(text) - 17], mtime=0)


CHAIN_DAMAGE = {
    "truncated_templates": ("templates.npz", lambda e: (e / "templates.npz").read_bytes()[:-50]),
    "truncated_a3m_gz": ("demo_uniref.a3m.gz", _cut_a3m_gz),
    "a3m_cut_inside_a_row": ("demo_uniref.a3m.gz", _cut_a3m_text),
}


@pytest.mark.parametrize("resigned", [False, True], ids=["checksum_mismatch", "checksum_resigned"])
@pytest.mark.parametrize("damage", sorted(CHAIN_DAMAGE))
def test_chain_cache_truncated_entry_is_a_miss_and_repaired(tmp_path, damage, resigned):
    """A truncated object fails chain.json's checksum; a truncated file that chain.json was
    re-signed for (a writer bug) must still be a miss: a cut gzip member (zlib alone returns
    the bytes it got) or a cut row would otherwise be served as a shorter alignment."""
    logs: list[str] = []
    cache, search = _chain_cache(tmp_path / "cache", logs)
    assert cache.put(OTHER, search, source_run="r1")
    entry = Path(cache.key(OTHER))
    assert cache.get(OTHER, ["demo_uniref"]) is not None

    name, cut = CHAIN_DAMAGE[damage]
    data = cut(entry)
    if resigned:
        _resign_chain(entry, name, data)
    else:
        (entry / name).write_bytes(data)
    logs.clear()
    assert cache.get(OTHER, ["demo_uniref"]) is None
    [line] = logs
    assert "not used (" in line and "searching instead" in line
    if not resigned:
        assert f"damaged: {name} does not match chain.json" in line

    assert cache.put(OTHER, search, source_run="r2")  # the step searched again and stores it
    again = cache.get(OTHER, ["demo_uniref"])
    assert again is not None and again.origin["source_run"] == "r2"
    assert again.alignments == search.alignments
