"""Weights: demo layout and loading path, and the real-download logic with the network mocked."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest

from foldstack.core.errors import BadInputError
from foldstack.steps.weights_layout import DEMO_MARKER, alphafold2_param_files
from foldstack.weights import fetch


def test_demo_weights_layout(weights):
    assert (weights / "esmfold" / "config.json").is_file()
    assert (weights / "esmfold" / "model.safetensors").is_file()
    assert (weights / "esmfold" / "vocab.txt").is_file()
    assert not list((weights / "esmfold").glob("*.bin"))
    assert set(alphafold2_param_files(weights)) == {"model_5_ptm", "model_1_multimer_v3"}
    for engine in ("esmfold", "alphafold2"):
        marker = json.loads((weights / engine / DEMO_MARKER).read_text())
        assert "NOT a meaningful" in marker["warning"]


def test_demo_af2_params_are_alphafold_npz(weights):
    """Flat '<scope>//<name>' arrays, unfused like DeepMind's files, loadable without pickle."""
    from alphafold.model import utils

    with np.load(weights / "alphafold2" / "params_model_5_ptm.npz", allow_pickle=False) as data:
        keys = list(data.files)
        flat = {k: data[k] for k in keys}
    assert all("//" in k for k in keys)
    assert any(k.endswith("triangle_multiplication_outgoing/left_projection//weights") for k in keys)
    fused = utils.flat_params_to_haiku(flat, fuse=True, to_jnp=False)
    assert any(k.endswith("triangle_multiplication_outgoing/projection") for k in fused)


def test_esmfold_demo_reloads_identically_offline(weights):
    import torch
    from transformers import EsmForProteinFolding

    from foldstack.steps.esmfold import load_model

    model = load_model(weights / "esmfold")
    again = EsmForProteinFolding.from_pretrained(str(weights / "esmfold"), local_files_only=True)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a.float(), b.float()), name


def test_demo_cli_is_idempotent_and_refuses_real_weights(tmp_path):
    from typer.testing import CliRunner

    from foldstack.cli.weights import app

    runner = CliRunner()
    dest = tmp_path / "w"
    first = runner.invoke(app, ["demo", "--dest", str(dest), "--engine", "esmfold"])
    assert first.exit_code == 0, first.output
    assert "NOT meaningful" in first.output
    mtime = (dest / "esmfold" / "model.safetensors").stat().st_mtime_ns
    assert runner.invoke(app, ["demo", "--dest", str(dest), "--engine", "esmfold"]).exit_code == 0
    assert (dest / "esmfold" / "model.safetensors").stat().st_mtime_ns == mtime
    (dest / "esmfold" / DEMO_MARKER).unlink()  # now it looks like real weights
    refused = runner.invoke(app, ["demo", "--dest", str(dest), "--engine", "esmfold"])
    assert refused.exit_code != 0 and isinstance(refused.exception, FileExistsError)
    assert runner.invoke(app, ["demo", "--dest", str(dest), "--engine", "nope"]).exit_code == 2


# --- fetch, network mocked ---------------------------------------------------------------

def _tar_bytes(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


class _Response(io.BytesIO):
    def __init__(self, data: bytes, length: int | None = None):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data) if length is None else length)}


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{"alphafold/alphafold_iteration//w": np.zeros(3, np.float32)})
    return buf.getvalue()


def test_fetch_alphafold2_extracts_only_params_safely(tmp_path):
    payload = _tar_bytes({
        "params_model_1_ptm.npz": _npz_bytes(),
        "./params_model_2_ptm.npz": _npz_bytes(),
        "LICENSE": b"CC BY 4.0",
        "../escape.npz": b"x",
        "/abs/params_model_3.npz": b"x",
        "sub/params_model_4.npz": b"x",
        "README.txt": b"x",
    }, symlink="params_model_5.npz")
    digest = hashlib.sha256(payload).hexdigest()
    seen = []

    def opener(url):
        seen.append(url)
        return _Response(payload)

    dest = tmp_path / "w"
    path = fetch.fetch_alphafold2(dest, sha256=digest, opener=opener)
    assert seen == [fetch.AF2_PARAMS_URL]
    files = sorted(p.name for p in path.iterdir())
    assert files == ["FETCHED.json", "LICENSE", "params_model_1_ptm.npz", "params_model_2_ptm.npz"]
    assert not (tmp_path / "escape.npz").exists()
    info = json.loads((path / "FETCHED.json").read_text())
    assert info["sha256"] == digest and info["source"] == fetch.AF2_PARAMS_URL
    assert set(alphafold2_param_files(dest)) == {"model_1_ptm", "model_2_ptm"}
    assert [p.name for p in dest.iterdir()] == ["alphafold2"]  # no temp files left


def test_fetch_alphafold2_rejects_bad_downloads(tmp_path):
    payload = _tar_bytes({"params_model_1.npz": _npz_bytes()})
    with pytest.raises(BadInputError, match="sha256 mismatch"):
        fetch.fetch_alphafold2(tmp_path / "w", sha256="0" * 64, opener=lambda url: _Response(payload))
    with pytest.raises(BadInputError, match="incomplete download"):
        fetch.fetch_alphafold2(tmp_path / "w", opener=lambda url: _Response(payload, length=len(payload) + 1))
    empty = _tar_bytes({"README": b"x"})
    with pytest.raises(BadInputError, match="no params"):
        fetch.fetch_alphafold2(tmp_path / "w", opener=lambda url: _Response(empty))
    assert not (tmp_path / "w" / "alphafold2").exists()
    assert list((tmp_path / "w").iterdir()) == []


def test_fetch_esmfold_converts_bin_to_safetensors(tmp_path, weights, monkeypatch):
    """A snapshot with only pytorch_model.bin is converted with weights_only loading."""
    import torch
    from safetensors.torch import load_file

    demo = weights / "esmfold"
    calls = []

    def fake_snapshot(**kwargs):
        calls.append(kwargs)
        local = kwargs["local_dir"]
        import pathlib

        out = pathlib.Path(local)
        out.mkdir(parents=True)
        for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
            (out / name).write_bytes((demo / name).read_bytes())
        torch.save(load_file(str(demo / "model.safetensors")), out / "pytorch_model.bin")
        return local

    monkeypatch.setattr(fetch, "_snapshot_download", fake_snapshot)
    path = fetch.fetch_weights("esmfold", tmp_path / "w", revision="abc123")
    assert calls[0]["repo_id"] == "facebook/esmfold_v1" and calls[0]["revision"] == "abc123"
    assert (path / "model.safetensors").is_file() and not (path / "pytorch_model.bin").exists()
    assert not (path / DEMO_MARKER).exists()
    from foldstack.steps.esmfold import load_model

    assert load_model(path) is not None
    info = json.loads((path / "FETCHED.json").read_text())
    assert info["revision"] == "abc123" and "model.safetensors" in info["files"]


def test_fetch_unknown_engine_and_non_https(tmp_path):
    with pytest.raises(BadInputError):
        fetch.fetch_weights("rosetta", tmp_path)
    with pytest.raises(BadInputError, match="non-https"):
        fetch.download("http://example.invalid/x.tar", tmp_path / "x.tar")
