"""Nothing read from S3, scratch or a weights directory is ever unpickled.

A static (AST) check over every Python file in src/, lambdas/ and scripts/ (bandit runs
too, in tests/test_static_checks.py), plus planted malicious pickles fed to the loaders
the product uses: their payload must never run (marker file absent) and the loader must
fail cleanly."""

from __future__ import annotations

import ast
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.helpers import REPO

SCANNED = [REPO / d for d in ("src", "lambdas", "scripts")]
UNSAFE_CALLS = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("_pickle", "load"), ("_pickle", "loads"),
    ("cPickle", "load"), ("cPickle", "loads"), ("dill", "load"), ("dill", "loads"), ("cloudpickle", "load"),
    ("cloudpickle", "loads"), ("joblib", "load"), ("shelve", "open"), ("marshal", "load"), ("marshal", "loads"),
    ("pandas", "read_pickle"), ("pd", "read_pickle"), ("jsonpickle", "decode"), ("yaml", "unsafe_load"),
    ("yaml", "full_load"), ("yaml", "unsafe_load_all"), ("torch", "load_state_dict_from_url"),
}
UNSAFE_IMPORTS = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def scan_source(source: str, filename: str = "<src>") -> list[str]:
    """Unsafe deserialisation in one module (file:line: what)."""
    problems = []
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in UNSAFE_IMPORTS:
                    problems.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in UNSAFE_IMPORTS:
            problems.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            parts = name.split(".")
            head, last = (parts[-2] if len(parts) > 1 else ""), parts[-1]
            if (head, last) in UNSAFE_CALLS:
                problems.append(f"{where}: {name}()")
            elif last == "load" and head in ("np", "numpy") and not _is_const(_kw(node, "allow_pickle"), False):
                problems.append(f"{where}: {name}() without allow_pickle=False")
            elif last == "load" and head == "torch" and not _is_const(_kw(node, "weights_only"), True):
                problems.append(f"{where}: {name}() without weights_only=True")
            elif (last in ("load", "load_all") and head == "yaml"
                  and "Safe" not in _dotted(_kw(node, "Loader") or ast.Constant(None))
                  and not (len(node.args) > 1 and "Safe" in _dotted(node.args[1]))):
                problems.append(f"{where}: {name}() without a SafeLoader")
            elif last == "from_pretrained" and head.endswith(("Model", "ForProteinFolding", "ForMaskedLM")) \
                    and not _is_const(_kw(node, "use_safetensors"), True):
                problems.append(f"{where}: {name}() without use_safetensors=True (would unpickle .bin)")
    return problems


def python_files() -> list[Path]:
    return sorted(p for d in SCANNED if d.is_dir() for p in d.rglob("*.py") if ".venv" not in p.parts)


def test_the_scanner_catches_what_it_should():
    bad = """
import pickle
from joblib import load
import numpy as np, torch, yaml
pickle.loads(b"")
np.load("x")
np.load("x", allow_pickle=True)
numpy.load(f, mmap_mode="r")
torch.load("m.bin")
torch.load("m.bin", weights_only=False)
yaml.load(text)
yaml.load(text, Loader=yaml.Loader)
EsmForProteinFolding.from_pretrained(path)
pd.read_pickle("x")
"""
    found = scan_source(bad)
    assert len(found) == 12, found
    good = """
np.load(p, allow_pickle=False)
torch.load(p, map_location="cpu", weights_only=True)
yaml.safe_load(t)
yaml.load(t, Loader=yaml.SafeLoader)
EsmForProteinFolding.from_pretrained(str(p), local_files_only=True, use_safetensors=True)
EsmTokenizer.from_pretrained(p)
"""
    assert scan_source(good) == []


@pytest.mark.slow
def test_no_unsafe_deserialisation_in_product_code():
    files = python_files()
    assert len(files) > 20
    problems = [p for f in files for p in scan_source(f.read_text(), str(f.relative_to(REPO)))]
    print(f"\nscanned {len(files)} files under src/, lambdas/, scripts/: {len(problems)} unsafe loads")
    assert problems == []


# -- planted malicious pickles ------------------------------------------------------------------------


class Payload:
    """Unpickling this creates the marker file (stands for arbitrary code execution)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _object_npz(path: Path, marker: Path) -> None:
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(marker)
    np.savez(path, aatype=np.zeros((3, 21), np.float32), domain_name=arr)


def _raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Payload(marker)))


def _npy_in_zip(path: Path, marker: Path) -> None:
    buf = io.BytesIO()
    arr = np.empty(2, dtype=object)
    arr[:] = [Payload(marker), "x"]
    np.save(buf, arr, allow_pickle=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("msa.npy", buf.getvalue())


PLANTS = {"object_array_npz": _object_npz, "raw_pickle_named_npz": _raw_pickle, "object_npy_in_zip": _npy_in_zip}


def planted(tmp_path: Path, plant: str, name: str = "features.npz") -> tuple[Path, Path]:
    """``tmp_path/name`` written by PLANTS[plant]: (it, the marker its payload would create)."""
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    PLANTS[plant](path, marker)
    return path, marker


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_features_loader_never_runs_a_planted_pickle(tmp_path, plant):
    from foldstack.steps.features import load_features

    path, marker = planted(tmp_path, plant)
    assert not marker.exists()
    with pytest.raises(ValueError, match="pickle"):
        load_features(path)
    assert not marker.exists()


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_the_plants_are_live(tmp_path, plant):
    """Control: loading each plant the unsafe way does run the payload."""
    path, marker = planted(tmp_path, plant)
    if plant == "raw_pickle_named_npz":
        pickle.loads(path.read_bytes())  # noqa: S301 - the control
    else:
        with np.load(path, allow_pickle=True) as data:
            [data[k] for k in data.files]
    assert marker.exists()


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_alphafold2_predict_refuses_planted_features_cleanly(tmp_path, plant):
    """The predict step's own entry point: a clean BadInputError (exit code 2), never the payload."""
    pytest.importorskip("alphafold")
    from foldstack.core.errors import BadInputError
    from foldstack.steps.alphafold2 import predict_alphafold2

    path, marker = planted(tmp_path, plant)
    with pytest.raises(BadInputError):
        predict_alphafold2(path, tmp_path / "weights", "monomer")
    assert not marker.exists()


@pytest.mark.parametrize("plant", sorted(PLANTS))
@pytest.mark.slow
def test_alphafold2_params_loader_never_runs_a_planted_pickle(tmp_path, plant):
    pytest.importorskip("alphafold")
    from foldstack.steps.alphafold2 import _load_params

    path, marker = planted(tmp_path, plant, "params_model_1.npz")
    with pytest.raises(ValueError):
        _load_params(path)
    assert not marker.exists()


def test_esmfold_weights_without_safetensors_are_refused(tmp_path):
    """A weights dir holding only a pickled pytorch_model.bin is refused before loading."""
    from foldstack.steps.weights_layout import require_esmfold

    marker = tmp_path / "PWNED"
    d = tmp_path / "weights" / "esmfold"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    _raw_pickle(d / "pytorch_model.bin", marker)
    with pytest.raises(Exception, match="safetensors"):
        require_esmfold(tmp_path / "weights")
    assert not marker.exists()


@pytest.mark.slow
def test_weights_fetch_conversion_never_runs_a_planted_pickle(tmp_path):
    """`foldstack weights fetch` converts a .bin once with torch.load(weights_only=True)."""
    pytest.importorskip("torch")
    import torch

    from foldstack.weights.fetch import _bin_to_safetensors

    marker = tmp_path / "PWNED"
    torch.save({"w": Payload(marker)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(pickle.UnpicklingError):
        _bin_to_safetensors(tmp_path)
    assert not marker.exists() and not (tmp_path / "model.safetensors").exists()
