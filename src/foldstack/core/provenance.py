"""What code, image, job definition, weights and databases produced a result.

Two levels, both in the manifest:

* per step (``provenance.<step>.build``, from the ``build`` block of each step's done
  record, written by the step contract): :func:`build_info` of the process that ran the
  step, plus, for predict, the identity of the weights it loaded (:func:`weights_identity`);
* per run (``Manifest.provenance``): :func:`run_provenance` of the published targets: the
  code that collected, every image, job-definition revision, code version and weights seen,
  and every database version the MSAs searched, which is what ``foldstack rerun`` pins.

Where each value comes from (nothing is computed at import time; the git commit is looked
up once per process):

* ``foldstack_version``: the installed package;
* ``git_commit``: ``$FOLDSTACK_GIT_COMMIT`` (set in the step images at build time), else
  the file ``foldstack/GIT_COMMIT`` written into a package at build time, else ``git
  rev-parse HEAD`` when running from a checkout, else ``"unknown"``;
* ``image``: ``$FOLDSTACK_IMAGE`` (the job definition sets it to the image URI it runs);
* ``job_definition``: ``$FOLDSTACK_JOB_DEFINITION`` (the workflow passes the job
  definition's ARN, revision included, in the SubmitJob container overrides).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import subprocess  # nosec B404 - only `git rev-parse HEAD`, fixed arguments
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from foldstack.core.hashing import sha256_file

GIT_COMMIT_ENV = "FOLDSTACK_GIT_COMMIT"
IMAGE_ENV = "FOLDSTACK_IMAGE"
JOB_DEFINITION_ENV = "FOLDSTACK_JOB_DEFINITION"
COMMIT_FILE = "GIT_COMMIT"  # in the package directory, written by a build that has no git
UNKNOWN = "unknown"
# What a job adds to every done record it writes (predict: the weights it loaded), set once
# per job around its steps (:func:`recording`), since a batch job folds many targets.
_EXTRA: ContextVar[Mapping[str, Any] | None] = ContextVar("foldstack_build_extra", default=None)


def _package_dir() -> Path:
    return Path(__file__).resolve().parents[1]


@functools.cache
def _commit_from_package_or_checkout() -> str:
    package = _package_dir()
    try:
        text = (package / COMMIT_FILE).read_text().strip()
    except OSError:
        text = ""
    if text:
        return text
    checkout = package.parents[1]  # <checkout>/src/foldstack
    if not (checkout / ".git").exists():
        return UNKNOWN
    try:
        proc = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"],  # noqa: S603,S607  # nosec B603 B607
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else UNKNOWN


def git_commit() -> str:
    """The commit of the running code (see the module docstring for the order)."""
    return os.environ.get(GIT_COMMIT_ENV, "").strip() or _commit_from_package_or_checkout()


def foldstack_version() -> str:
    from foldstack import __version__

    return __version__


def build_info() -> dict[str, Any]:
    """The code, image and job definition of this process: ``foldstack_version``,
    ``git_commit``, ``image`` and ``job_definition`` (None where not set: a local run has
    no image or job definition), plus what :func:`recording` added (``weights``)."""
    return {
        "foldstack_version": foldstack_version(),
        "git_commit": git_commit(),
        "image": os.environ.get(IMAGE_ENV, "").strip() or None,
        "job_definition": os.environ.get(JOB_DEFINITION_ENV, "").strip() or None,
        **(_EXTRA.get() or {}),
    }


@contextlib.contextmanager
def recording(**extra: Any) -> Iterator[None]:
    """While active, :func:`build_info` (so every done record written) also carries
    `extra`, e.g. ``recording(weights=weights_identity(...))`` around a predict job."""
    token = _EXTRA.set({**(_EXTRA.get() or {}), **extra})
    try:
        yield
    finally:
        _EXTRA.reset(token)


def _digest(files: Mapping[str, str]) -> str:
    """One sha256 naming a set of files: of their sorted ``{path: sha256}`` as JSON."""
    return hashlib.sha256(json.dumps(dict(sorted(files.items())), separators=(",", ":")).encode()).hexdigest()


def weights_identity(engine_dir: Path | str, *, record_name: str, demo_marker: str) -> dict[str, Any]:
    """Which weights are in ``W/<engine>/``: ``{"engine", "demo", "source", "files",
    "digest"}``. ``files`` (path -> sha256) comes from the record the weights installer
    wrote (`record_name`, e.g. ``FETCHED.json``: ``source`` = ``"record"``, plus the record's
    ``origin``, ``revision`` and its own ``record_sha256``), else every file is hashed now
    (``source`` = ``"hashed"``; demo weights are small). ``digest`` is one sha256 over
    ``files``, so two runs used the same weights exactly when their digests match."""
    path = Path(engine_dir)
    record_path = path / record_name
    out: dict[str, Any] = {"engine": path.name, "demo": (path / demo_marker).is_file()}
    record: Any = None
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = None
    if isinstance(record, dict) and isinstance(record.get("files"), dict):
        files = {str(k): str(v) for k, v in record["files"].items()}
        out.update(source="record", record_sha256=sha256_file(record_path), origin=record.get("source"),
                   revision=record.get("revision"))
    else:
        files = {str(f.relative_to(path)): sha256_file(f) for f in sorted(path.rglob("*"))
                 if f.is_file() and not f.name.startswith(".")}
        out["source"] = "hashed"
    out.update(files=files, digest=_digest(files))
    return out


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` for dicts, ``obj.key`` for models (a TargetResult or its provenance)."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    value = getattr(obj, key, None)
    if value is None and hasattr(obj, "model_extra"):
        value = (obj.model_extra or {}).get(key)
    return value


def run_provenance(targets: Iterable[Any]) -> dict[str, Any]:
    """The run-level ``provenance`` of a manifest, from its targets (TargetResult models or
    their dicts) and the collecting process.

    ``collected_by``: :func:`build_info` of the code that collected; per step
    (``steps.<step>``): the sorted distinct ``images``, ``job_definitions`` and ``code``
    (``<foldstack_version>+<git_commit>``) its jobs recorded; ``weights``: each distinct
    weights identity (engine, demo, source, digest); ``db_preset``: the presets searched;
    ``databases``: ``{name: version}`` of every database the MSAs searched, and
    ``databases_mixed`` ``{name: [versions]}`` only if targets searched different versions
    of one database (e.g. its CURRENT moved during the run): such a run cannot be pinned."""
    steps: dict[str, dict[str, set[str]]] = {}
    weights: dict[str, dict[str, Any]] = {}
    versions: dict[str, set[str]] = {}
    presets: set[str] = set()
    for target in targets:
        for step, prov in (_get(target, "provenance") or {}).items():
            build = _get(prov, "build")
            if isinstance(build, Mapping):
                seen = steps.setdefault(step, {"images": set(), "job_definitions": set(), "code": set()})
                if build.get("image"):  # <uri>:<tag>@sha256:<digest> where the step knew its image's digest
                    digest = f"@{build['image_digest']}" if build.get("image_digest") else ""
                    seen["images"].add(f"{build['image']}{digest}")
                if build.get("job_definition"):
                    seen["job_definitions"].add(str(build["job_definition"]))
                seen["code"].add(f"{build.get('foldstack_version') or UNKNOWN}+{build.get('git_commit') or UNKNOWN}")
                w = build.get("weights")
                if isinstance(w, Mapping) and w.get("digest"):
                    weights.setdefault(str(w["digest"]), {k: w.get(k) for k in ("engine", "demo", "source", "digest")})
            for name, version in (_get(prov, "databases") or {}).items():
                versions.setdefault(str(name), set()).add(str(version))
            if _get(prov, "db_preset"):
                presets.add(str(_get(prov, "db_preset")))
    out: dict[str, Any] = {
        "collected_by": build_info(),
        "steps": {step: {k: sorted(v) for k, v in seen.items()} for step, seen in sorted(steps.items())},
        "weights": [weights[d] for d in sorted(weights)],
        "db_preset": sorted(presets),
        "databases": {n: next(iter(v)) for n, v in sorted(versions.items()) if len(v) == 1},
    }
    mixed = {n: sorted(v) for n, v in sorted(versions.items()) if len(v) > 1}
    if mixed:
        out["databases_mixed"] = mixed
    return out
