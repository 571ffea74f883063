"""`Client.rerun(manifest)`: the request that computes a published run again, pinned to the
database versions it searched.

The manifest is the record of what ran: its ``request`` gives the inputs and every
parameter, its ``provenance.databases`` (:func:`foldstack.core.provenance.run_provenance`;
for a manifest written before that existed, the same computed from its targets'
``provenance.msa.databases``) every database version the MSAs searched. The rerun's request
is the old one with those versions in ``db_versions``, so its msa steps open exactly them
instead of each database's ``CURRENT``; a version that is no longer installed is refused
before anything is submitted (:class:`DatabaseVersionMissingError`).

A rerun is a new run, never an attempt of the old one: the request's ``rerun_of`` (the old run
id; ``<run_id>.<n>`` for the n-th rerun) counts in the run id, so the old run's published
results stay as they are for comparison, and rerunning twice gives two runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from foldstack.core.errors import DatabaseVersionMissingError, InputValidationError
from foldstack.core.manifest import MANIFEST, Manifest, load_manifest
from foldstack.core.provenance import run_provenance
from foldstack.core.request import RunRequest
from foldstack.core.uris import join_under

_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def read_manifest(client: Any, manifest: Manifest | str | Path) -> Manifest:
    """A run's manifest from a :class:`Manifest`, a local ``manifest.json`` (or the run's
    results folder holding one), an ``s3://`` URI of either (cloud), or a run id of
    `client`'s environment (its published manifest)."""
    if isinstance(manifest, Manifest):
        return manifest
    text = str(manifest)
    if text.startswith("s3://"):
        if client.is_local:
            raise InputValidationError(f"{text}: an s3:// manifest needs a cloud environment (--env ENV)",
                                       code="invalid_request")
        uri = text if text.endswith(f"/{MANIFEST}") else join_under(text, MANIFEST)
        data = client._backend.read(uri)
        if data is None:
            raise InputValidationError(f"{uri} does not exist", code="manifest_not_found", source=uri)
        return load_manifest(data, source=uri)
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / MANIFEST
    if path.is_file():
        return load_manifest(path.read_bytes(), source=str(path))
    if _RUN_ID.fullmatch(text) and not path.parent.name:  # a bare name: a run id
        return client.run(text).manifest()
    raise InputValidationError(f"{text}: no such manifest (give a manifest.json, a run's results folder, an "
                               "s3:// URI or a run id)", code="manifest_not_found", source=text)


def searched_versions(manifest: Manifest) -> dict[str, str]:
    """``{database: version}`` of every database the run's MSAs searched. A run whose
    targets searched different versions of one database cannot be pinned to one."""
    prov = manifest.provenance or run_provenance(manifest.targets)
    mixed = prov.get("databases_mixed") or {}
    if mixed:
        shown = "; ".join(f"{n}: {', '.join(v)}" for n, v in mixed.items())
        raise InputValidationError(
            f"run {manifest.run_id}: its targets searched different versions of a database ({shown}), so no "
            "single version can be pinned", code="db_versions_mixed",
            hint="submit the inputs again with --db NAME=VERSION for the version you want")
    return {str(k): str(v) for k, v in (prov.get("databases") or {}).items()}


MAX_RERUNS = 999  # reruns of one run (`<run_id>.2` ... ): far more than anyone compares


def rerun_label(run_id: str, n: int = 1) -> str:
    """``rerun_of`` of the `n`-th rerun of `run_id`: the run id, then ``<run_id>.<n>``."""
    return run_id if n == 1 else f"{run_id}.{n}"


def rerun_request(manifest: Manifest, n: int = 1) -> RunRequest:
    """The manifest's request with ``db_versions`` = the versions it searched (and any it
    pinned already) and ``rerun_of`` naming the run and which rerun of it this is (`n`), so
    the rerun has a run id of its own even when the pins change nothing; validated like any
    request."""
    request = manifest.request.model_dump(mode="json")
    pins = {**request.get("db_versions", {}), **searched_versions(manifest)}
    if pins:
        request["db_versions"] = pins
    return RunRequest.model_validate({**request, "rerun_of": rerun_label(manifest.run_id, n)})


def check_pins(missing: dict[str, str], where: str, run_id: str) -> None:
    """Refuse a rerun whose pinned versions are not all installed (`missing`, from the
    backend's ``missing_db_versions``)."""
    if missing:
        shown = ", ".join(f"{n}={v}" for n, v in sorted(missing.items()))
        raise DatabaseVersionMissingError(
            f"cannot rerun {run_id}: database version(s) {shown} it searched are no longer installed under "
            f"{where}; nothing was submitted", missing=dict(sorted(missing.items())), where=where,
            hint="reinstall them (foldstack db build / the refresh workflow), or submit the inputs again "
                 "without pins to use each database's CURRENT version")
