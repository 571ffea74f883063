"""Real weights, for machines with internet (``foldstack weights fetch <engine>``).

* ``esmfold``: a Hugging Face hub snapshot of ``facebook/esmfold_v1`` (config, tokenizer,
  weights). The hub verifies each LFS file against its sha256. If the snapshot has only a
  ``pytorch_model.bin``, it is converted once to ``model.safetensors`` with
  ``torch.load(weights_only=True)`` (no arbitrary unpickling) and the ``.bin`` is
  dropped, so predict only ever loads safetensors.
* ``alphafold2``: DeepMind's ``alphafold_params_2022-12-06.tar`` from
  storage.googleapis.com; streamed to a ``.part`` file, checked against the
  Content-Length and (``--sha256``) an expected digest, then extracted safely: only
  regular files named ``params_*.npz`` or ``LICENSE`` at the top level, with tarfile's
  ``data`` filter (no absolute paths, ``..``, links or devices).

Both install into a hidden dir beside the destination, write ``FETCHED.json`` (source,
revision, sha256 of every file) and swap it into place (:func:`foldstack.storage.publish`),
so a reader sees the earlier weights or the complete new ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.core.clock import utcnow
from foldstack.core.errors import BadInputError
from foldstack.core.hashing import sha256_file
from foldstack.steps.catalogue import load_catalogue
from foldstack.steps.weights_layout import ENGINES

# Where the weights come from: the catalogue's weights entries (src/foldstack/data/catalogue/).
ESMFOLD_REPO = load_catalogue().get("esmfold_v1").hub_repo or "facebook/esmfold_v1"
ESMFOLD_PATTERNS = ["*.json", "*.txt", "*.safetensors", "pytorch_model.bin"]
AF2_PARAMS_URL = load_catalogue().get("alphafold2_params").files[0].url
_AF2_MEMBER = re.compile(r"^(params_[A-Za-z0-9_]+\.npz|LICENSE)$")
CHUNK = 8 << 20
FETCHED = "FETCHED.json"  # written last: marks an install complete


def _manifest(path: Path, info: dict[str, Any]) -> None:
    files = {str(f.relative_to(path)): sha256_file(f) for f in sorted(path.rglob("*")) if f.is_file()}
    (path / FETCHED).write_text(json.dumps({**info, "fetched_at": utcnow(), "files": files},
                                                  indent=2, sort_keys=True) + "\n")


def _publication(final: Path) -> storage.Publication:
    """A hidden sibling of `final`, swapped into place once FETCHED.json is written."""
    return storage.publish(final, marker=FETCHED, replace=True)


# --- ESMFold ---------------------------------------------------------------------------

def _snapshot_download(**kwargs: Any) -> str:
    from huggingface_hub import snapshot_download

    # revision: `foldstack weights fetch esmfold --revision <commit>` pins it; the hub checks
    # every file's sha256 and FETCHED.json records them.
    return snapshot_download(**kwargs)  # nosec B615


def _bin_to_safetensors(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    # safetensors refuses shared storage: give every tensor its own contiguous copy.
    save_file({k: v.contiguous().clone() for k, v in state.items()}, str(path / "model.safetensors"),
              metadata={"format": "pt"})
    (path / "pytorch_model.bin").unlink()


def fetch_esmfold(dest: Path, revision: str | None = None) -> Path:
    final = dest / "esmfold"
    with _publication(final) as pub:
        tmp = pub.local_dir(create=False)  # the hub creates it
        _snapshot_download(repo_id=ESMFOLD_REPO, revision=revision, local_dir=str(tmp),
                           allow_patterns=ESMFOLD_PATTERNS)
        shutil.rmtree(tmp / ".cache", ignore_errors=True)  # hub bookkeeping, not model files
        if not (tmp / "config.json").is_file():
            raise BadInputError(f"{ESMFOLD_REPO} snapshot has no config.json")
        if not any(tmp.glob("*.safetensors")):
            if not (tmp / "pytorch_model.bin").is_file():
                raise BadInputError(f"{ESMFOLD_REPO} snapshot has neither model.safetensors nor pytorch_model.bin")
            _bin_to_safetensors(tmp)
        else:
            (tmp / "pytorch_model.bin").unlink(missing_ok=True)
        _manifest(tmp, {"engine": "esmfold", "source": f"huggingface:{ESMFOLD_REPO}", "revision": revision})
    return final


# --- AlphaFold2 ------------------------------------------------------------------------

def _urlopen(url: str):  # indirection for tests
    # download() only passes https URLs
    return urllib.request.urlopen(url, timeout=60)  # noqa: S310  # nosec B310


def download(url: str, target: Path, *, expected_sha256: str | None = None,
             opener: Callable[[str], Any] | None = None) -> str:
    """Stream `url` to `target` (via `target.part`); return its sha256."""
    if not url.startswith("https://"):
        raise BadInputError(f"refusing non-https download {url}")
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    size = 0
    with (opener or _urlopen)(url) as resp, open(part, "wb") as out:
        length = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
        while block := resp.read(CHUNK):
            out.write(block)
            digest.update(block)
            size += len(block)
    if length is not None and int(length) != size:
        part.unlink(missing_ok=True)
        raise BadInputError(f"incomplete download of {url}: {size} of {length} bytes")
    got = digest.hexdigest()
    if expected_sha256 and got != expected_sha256.lower():
        part.unlink(missing_ok=True)
        raise BadInputError(f"sha256 mismatch for {url}: got {got}, expected {expected_sha256}")
    os.replace(part, target)
    return got


def safe_extract_params(tar_path: Path, dest: Path) -> list[str]:
    """Extract only top-level `params_*.npz` / `LICENSE` regular files; return their names."""
    names = []
    with tarfile.open(tar_path) as tar:
        members = []
        for m in tar.getmembers():
            name = m.name[2:] if m.name.startswith("./") else m.name
            if not m.isfile() or "/" in name or "\\" in name or not _AF2_MEMBER.match(name):
                continue
            m.name = name
            members.append(m)
            names.append(name)
        if not any(n.startswith("params_") for n in names):
            raise BadInputError(f"{tar_path} holds no params_*.npz files")
        tar.extractall(dest, members=members, filter="data")  # noqa: S202 - members vetted above
    return names


def fetch_alphafold2(dest: Path, *, url: str = AF2_PARAMS_URL, sha256: str | None = None,
                     opener: Callable[[str], Any] | None = None) -> Path:
    final = dest / "alphafold2"
    dest.mkdir(parents=True, exist_ok=True)
    tar_path = dest / f".{Path(url).name}.{uuid.uuid4().hex[:8]}"
    try:
        with _publication(final) as pub:
            tmp = pub.local_dir()
            digest = download(url, tar_path, expected_sha256=sha256, opener=opener)
            names = safe_extract_params(tar_path, tmp)
            _manifest(tmp, {"engine": "alphafold2", "source": url, "sha256": digest, "members": names})
    finally:
        tar_path.unlink(missing_ok=True)
    return final


def fetch_weights(engine: str, dest: Path | str, *, sha256: str | None = None, revision: str | None = None) -> Path:
    if engine not in ENGINES:
        raise BadInputError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if engine == "esmfold":
        return fetch_esmfold(dest, revision=revision)
    return fetch_alphafold2(dest, sha256=sha256)
