"""Database lifecycle: fetch a named database version, verify it, then publish it.

``foldstack step refresh-db --run-id R --scratch S --db D --spec JSON`` (the
``refresh_databases`` workflow's Batch job) does, for one database::

    <db_root>/<name>/.<version>.partial-<run_id>-<uuid>/   staging (same file system)
        <file>            streamed from <source>/<file>, sha256 computed while writing
    -> every file's sha256 == the expected value (request or checksum file)
    -> manifest.json written (databases.write_manifest) and re-verified
    -> staging renamed to <db_root>/<name>/<version>/      (storage.publish: atomic rename)
    -> <db_root>/<name>/CURRENT replaced atomically         (storage.write_pointer)

A failure at any point removes the staging directory and leaves ``CURRENT`` (and every
published version) untouched; nothing half-downloaded is ever visible under a version
name. A job killed before its own cleanup runs leaves only a ``.partial-<run_id>-*``
directory, which the workflow's ``CleanupOnFailure`` job (``refresh-db-cleanup``)
removes.

``D`` may also be ``s3://bucket/prefix`` (the cloud: the database FSx file systems are
import-only from that bucket and mounted read-only, so the bucket is the source of
truth). Then the files are fetched and verified into a local staging directory (under
``<scratch>/<run_id>/refresh_db/``, or ``$FOLDSTACK_DB_STAGING_DIR``) and uploaded::

    <D>/<name>/<version>/<file>...   each file (boto3 managed multipart upload)
    <D>/<name>/<version>/manifest.json                  (storage.publish: the marker, last)
    <D>/<name>/CURRENT               last; PutObject is atomic per object

The FSx import is asynchronous, so readers (``databases.open_database``) wait until the
version CURRENT names has its manifest and files. A failure deletes what this run
uploaded for the version (never another version, never the version CURRENT names); the
version CURRENT names is never overwritten. A killed job leaves a marker
``<D>/.refresh/<run_id>/<name>/<version>`` from which ``refresh-db-cleanup`` removes the
partial version.

The spec (JSON, one database; the workflow passes one Map item)::

    {"name": "uniref90", "version": "2024_01",
     "source": "https://ftp.example.org/uniref90/2024_01",   # base: https://, s3://, file://, /abs/dir
     "files": {"uniref90.fasta.gz": "<sha256>"},             # expected checksums, or
     "checksums": "SHA256SUMS",                              # a sha256sum-format file (URI, or
                                                             #   a name relative to source)
     "unpack": true,                     # gunzip *.gz after verification (manifest lists the result)
     "role": "uniref90", "sequences": "uniref90.fasta", "max_hits": 10000,
     "license": "CC BY 4.0", "description": "..."}

Each file is fetched from ``<source>/<relative path>``. A checksum file is itself not
trusted for anything but the list of names and digests; fetch it over a channel you
trust (s3:// in your account, https from the publisher).

The step runs under the step contract (:func:`foldstack.steps.common.run_step`) with
``target = name``, so it leaves ``<scratch>/<run_id>/refresh_db/<name>/refresh_db.done.json``
(timings, for cost) and ``published.json`` (what was published, and the previous version).
Exit codes: 0 published (or already current), 2 bad spec / checksum mismatch / missing
file (never retried), anything else a crash.

Modules: this one is the step (entry points, dispatch); the spec, fetching and
verification are :mod:`foldstack.steps.refresh_db_source`; publishing, ``CURRENT`` and
the cleanup of leftovers are :mod:`foldstack.steps.refresh_db_publish`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.steps.common import StepContext, log, run_step, write_json
from foldstack.steps.refresh_db_publish import cleanup_partials, is_s3, refresh_local, refresh_s3
from foldstack.steps.refresh_db_source import STEP, DatabaseSpec, parse_spec

CLEANUP_STEP = "refresh_db_cleanup"
STAGING_ENV = "FOLDSTACK_DB_STAGING_DIR"  # S3 destination: where to download first (default: scratch)


def refresh_database(spec: DatabaseSpec, db_root: Path | str, run_id: str, ctx: StepContext | None = None,
                     *, staging_root: Path | str | None = None) -> dict[str, Any]:
    """Fetch, verify and publish one database version; return what happened.

    ``db_root`` is a local directory (staged and renamed on the same file system) or
    ``s3://bucket/prefix`` (staged under ``staging_root``, then uploaded: see
    :func:`foldstack.steps.refresh_db_publish.refresh_s3`)."""
    if is_s3(db_root):
        if staging_root is None:
            raise BadInputError("publishing to S3 needs a local staging directory (the step passes its scratch)")
        return refresh_s3(spec, str(db_root), run_id, Path(staging_root), ctx)
    return refresh_local(spec, Path(db_root), run_id, ctx)


def run_refresh_db(run_id: str, scratch: Path | str, db: Path | str, raw_spec: str) -> Path:
    """The Batch step: refresh one database under the step contract."""
    spec = parse_spec(raw_spec)

    def body(ctx: StepContext) -> None:
        ctx.tool_versions["foldstack"] = _foldstack_version()
        staging = os.environ.get(STAGING_ENV) or (Path(scratch) / run_id / STEP)
        outcome = refresh_database(spec, db if is_s3(db) else Path(db), run_id, ctx, staging_root=staging)
        write_json(ctx.work_dir / "published.json", {**outcome, "spec": spec.model_dump(mode="json")})

    return run_step(STEP, run_id, spec.name, scratch, body)


def run_cleanup(run_id: str, db: Path | str) -> list[str]:
    from foldstack.steps.common import check_ids

    check_ids(run_id, "cleanup")
    if is_s3(db):
        db = str(db)
    removed = cleanup_partials(db, run_id)
    log(CLEANUP_STEP, run_id, f"removed {len(removed)} partial download(s): {removed}")
    return removed


def _foldstack_version() -> str:
    from foldstack import __version__

    return __version__
