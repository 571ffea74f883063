"""ColabFold's prebuilt expandable profile databases (UniRef30, the environmental DB),
searched as ``colabfold_search`` searches them.

ColabFold ships UniRef30 and its env DB not as FASTA but as MMseqs2 databases
(``setup_databases.sh``: ``uniref30_2302.db.tar.gz`` / ``colabfold_envdb_202108.db.tar.gz``,
or the older ``.tsv`` archives turned into the same layout by ``mmseqs tsv2exprofiledb``)::

    <prefix>          cluster representatives, the search target (+ .index, .dbtype; _h: headers)
    <prefix>_seq      every cluster member's sequence (+ _seq_h: their headers)
    <prefix>_aln      per representative, the alignments to its members
    <prefix>.idx      the index ``createindex <prefix>`` writes next to it (holds _seq and _aln too)

A version's ``manifest.json`` names the prefix as ``mmseqs_db`` (no ``sequences``); the
refresh workflow unpacks the archive and runs ``createindex`` once
(:func:`build_profile_index`), recording the MMseqs2 version in
``mmseqs/<version>/BUILD.json`` like a FASTA index. The search never copies the database:
with an index built by this MMseqs2 version it reads ``<prefix>.idx`` (``--db-load-mode``
as the preset says), without one it reads ``_seq``/``_aln`` with ``--db-load-mode 0`` and
``MMSEQS_IGNORE_INDEX=1``, exactly ColabFold's two cases.

Per database (colabfold/mmseqs/search.py, ``mmseqs_search_monomer``): ``search`` (3
profile iterations against the representatives) → ``expandaln`` (hits on representatives
become alignments to their members) → ``align`` (realigned with the query profile) →
``filterresult`` → ``result2msa`` (A3M, ColabFold's filter). The env DB search starts from
the UniRef30 search's last profile. The parameters are
:data:`foldstack.steps.presets.COLABFOLD_PROFILE_DB`. A FASTA-built database in the
other role is searched by :func:`foldstack.steps.mmseqs.colabfold_fasta_search`, the one
path :func:`foldstack.steps.mmseqs.colabfold_search_a3m` uses too (GPU-aware);
:func:`colabfold_search` picks between the two for the msa step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess  # nosec B404 - fixed argv, no shell
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.core.hashing import sha256_file
from foldstack.steps.databases import Database
from foldstack.steps.mmseqs import (
    BUILD_MARKER,
    Log,
    _entries,
    _filter_args,
    colabfold_fasta_search,
    colabfold_search_a3m,
    gpu_search,
    index_dir,
    index_record,
    mmseqs_binary,
    mmseqs_version,
    paired_a3ms,
    seed_profile,
    split_memory_limit,
)
from foldstack.steps.presets import COLABFOLD_PROFILE_DB

#: the MMseqs2 databases an expandable profile DB is made of (each with .index and .dbtype)
PROFILE_PARTS = ("", "_h", "_seq", "_seq_h", "_aln")


def missing_profile_parts(prefix: Path) -> list[str]:
    """The parts of the expandable profile DB at `prefix` that are missing (empty: complete)."""
    return [f"{prefix.name}{part}{ext}" for part in PROFILE_PARTS for ext in (".dbtype", ".index")
            if not Path(f"{prefix}{part}{ext}").is_file()]


#: result DBs as one data file, as setup_databases.sh exports it (for every module here)
_MERGE = {"MMSEQS_FORCE_MERGE": "1"}


def _run(binary: str, *args: str | Path, ignore_index: bool = False) -> None:
    """One MMseqs2 module, with :data:`_MERGE`; ``MMSEQS_IGNORE_INDEX=1`` when the search must not
    pick up a ``<prefix>.idx`` this MMseqs2 did not build (colabfold_search's no-index case)."""
    env = {**os.environ, **_MERGE, **({"MMSEQS_IGNORE_INDEX": "1"} if ignore_index else {})}
    proc = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, env=env)  # nosec B603
    if proc.returncode:
        tail = (proc.stderr or proc.stdout)[-2000:]
        if "out of memory" in tail.lower() or proc.returncode in (-9, 137):
            raise MemoryError(f"mmseqs {args[0]} ran out of memory: {tail}")
        raise RuntimeError(f"mmseqs {args[0]} failed (exit {proc.returncode}): {tail}")


def build_profile_index(prefix: Path, dest: Path, *, binary: str | None = None, threads: int = 1,
                        log: Log = lambda msg: None) -> dict[str, Any]:
    """``createindex <prefix>`` (MMseqs2 writes ``<prefix>.idx*`` next to the database, where
    every later module finds it), then ``dest/BUILD.json`` recording the MMseqs2 version.
    Run when the version is refreshed, in its staging directory."""
    lacking = missing_profile_parts(prefix)
    if lacking:
        raise BadInputError(f"{prefix} is not an expandable MMseqs2 profile database: missing {', '.join(lacking)}")
    binary = binary or mmseqs_binary(False)
    t = time.perf_counter()
    limit = split_memory_limit()
    tmp = prefix.parent / f".idx_tmp-{uuid.uuid4().hex[:8]}"
    try:
        _run(binary, "createindex", prefix, tmp, "--remove-tmp-files", "1", "--threads", str(threads),
             *(["--split-memory-limit", limit] if limit else []), "-v", "1")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    build = {
        "schema_version": 1, "kind": "profile", "mmseqs_version": mmseqs_version(binary), "gpu": False,
        "source": prefix.name, "index": f"{prefix.name}.idx",
        "source_sha256": sha256_file(Path(f"{prefix}.index")),  # the DB's own index: names its entries
        "commands": ["createindex"], "seconds": round(time.perf_counter() - t, 2),
    }
    (dest / BUILD_MARKER).write_text(json.dumps(build, indent=2, sort_keys=True) + "\n")
    log(f"mmseqs index of the profile database {prefix.name} built in {build['seconds']:.1f}s")
    return build


@dataclass
class ProfileTarget:
    """How one search reads a profile database: the search target, the member sequences
    and alignments (the index, or ``_seq``/``_aln``), the load mode and what features.json says."""

    search: Path
    seq: Path
    aln: Path
    db_load_mode: int
    ignore_index: bool
    info: dict[str, Any] = field(default_factory=dict)


def profile_target(db: Database, binary: str, db_load_mode: int, log: Log = lambda msg: None) -> ProfileTarget:
    prefix = db.mmseqs_db
    assert prefix is not None
    lacking = missing_profile_parts(prefix)
    if lacking:
        raise BadInputError(f"database {db.name} version {db.version}: its profile database {prefix} lacks "
                            f"{', '.join(lacking)}; republish it with the refresh_databases workflow")
    built = index_dir(db, binary)
    if (built / BUILD_MARKER).is_file() and Path(f"{prefix}.idx").is_file():
        idx = Path(f"{prefix}.idx")
        return ProfileTarget(prefix, idx, idx, db_load_mode, False,
                             {"target_db": "index", "profile_db": str(prefix), **index_record(built)})
    # colabfold_search without an index: the member DBs themselves, read (not mmapped) per module
    log(f"database {db.name}/{db.version}: no profile index for mmseqs {mmseqs_version(binary)} ({built} is "
        "missing); searching its _seq/_aln databases without one (slower; the refresh workflow builds it)")
    return ProfileTarget(prefix, Path(f"{prefix}_seq"), Path(f"{prefix}_aln"), 0, True,
                         {"target_db": "no-index", "profile_db": str(prefix), "index": None,
                          "mmseqs_version": mmseqs_version(binary)})


def colabfold_search(queries: list[tuple[str, str]], uniref: Database, envdb: Database, *, cpus: int,
                     work_dir: Path, params: dict[str, Any], binary: str | None = None,
                     log: Log = lambda msg: None) -> tuple[dict[str, tuple[str, str]], dict[str, Any]]:
    """db_preset colabfold's search, as ``colabfold_search`` runs it: on ColabFold's prebuilt
    profile databases (either role) :func:`colabfold_profile_search`, on FASTA-built ones
    :func:`foldstack.steps.mmseqs.colabfold_search_a3m`. ({name: (uniref A3M, env A3M)}, run info)."""
    if uniref.mmseqs_db is None and envdb.mmseqs_db is None:
        return colabfold_search_a3m(queries, uniref, envdb, cpus=cpus, work_dir=work_dir, params=params,
                                    binary=binary, log=log)
    return colabfold_profile_search(queries, uniref, envdb, cpus=cpus, work_dir=work_dir, params=params,
                                    binary=binary, log=log)


def colabfold_profile_search(queries: list[tuple[str, str]], uniref: Database, envdb: Database, *, cpus: int,
                             work_dir: Path, params: dict[str, Any], binary: str | None = None,
                             log: Log = lambda msg: None) -> tuple[dict[str, tuple[str, str]], dict[str, Any]]:
    """:func:`foldstack.steps.mmseqs.colabfold_search_a3m` when UniRef30 or the env DB (or
    both) is a prebuilt profile database: ({name: (uniref A3M, env A3M)}, run info)."""
    if gpu_search():
        raise BadInputError("GPU search of ColabFold's prebuilt profile databases is not supported: run the "
                            "colabfold preset on a CPU MSA class (FOLDSTACK_MMSEQS_GPU unset)")
    binary = binary or mmseqs_binary(False)
    p = dict(params)
    prof = {**COLABFOLD_PROFILE_DB, **(p.get("profile_db") or {})}
    expand, realign, filt = prof["expand"], prof["realign"], prof["filterresult"]
    tmp = work_dir / f".colabfold-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    info: dict[str, Any] = {"queries": len(queries)}

    def search(query: Path, db: Database, res: str, scratch: str, *, uniref_role: bool,
               ) -> tuple[Path, int, bool, str]:
        """search `query` (the queries for UniRef30, its last profile for the env DB) against
        `db`: (the DB result2msa reads, its load mode, ignore_index, the result for the A3M)."""
        if db.mmseqs_db is None:  # FASTA-built: the one path colabfold_search_a3m searches it by
            target, record = colabfold_fasta_search(binary, query, db, tmp / res, tmp / scratch, params=p,
                                                    cpus=cpus, work_dir=work_dir, log=log, env=_MERGE)
            info[db.name] = {**record, "profile_db": None}
            return target, int(p["db_load_mode"]), False, res
        # a profile DB is searched on the CPU only (checked above), so always with -s
        common = ["--num-iterations", str(p["num_iterations"]), "-a", "-e", str(p["evalue"]),
                  "--max-seqs", str(p["max_seqs"]), "-s", f"{float(p['sensitivity']):.1f}",
                  "--threads", str(cpus), "-v", "1"]
        t = profile_target(db, binary, int(p["db_load_mode"]), log)
        info[db.name] = {**t.info, "expandaln": "run"}
        load = ["--db-load-mode", str(t.db_load_mode)]
        _run(binary, "search", query, t.search, tmp / res, tmp / scratch, *load, *common, ignore_index=t.ignore_index)
        profile_query = tmp / "prof_res" if uniref_role else tmp / scratch / "latest" / "profile_1"
        if uniref_role:  # its last profile realigns the members here and seeds the env search
            seed_profile(binary, tmp, scratch, env=_MERGE)
        # expandaln: UniRef30 with cluster filtering and max-seq-id; the env DB with MMseqs2's defaults
        cluster = (["--expand-filter-clusters", str(expand["expand_filter_clusters"]), "--max-seq-id",
                    str(expand["max_seq_id"])] if uniref_role else [])
        _run(binary, "expandaln", query, t.seq, tmp / res, t.aln, tmp / f"{res}_exp", *load,
             "--expansion-mode", str(expand["expansion_mode"]), "-e", str(expand["expand_eval"]), *cluster,
             "--threads", str(cpus), "-v", "1", ignore_index=t.ignore_index)
        _run(binary, "align", profile_query, t.seq, tmp / f"{res}_exp", tmp / f"{res}_realign", *load,
             "-e", str(realign["align_eval"]), "--max-accept", str(realign["max_accept"]),
             "--alt-ali", str(realign["alt_ali"]), "-a", "--threads", str(cpus), "-v", "1",
             ignore_index=t.ignore_index)
        _run(binary, "filterresult", tmp / "qdb", t.seq, tmp / f"{res}_realign", tmp / f"{res}_filter", *load,
             "--qid", str(filt["qid"]), "--qsc", str(filt["qsc"]), "--diff", str(filt["diff"]),
             "--max-seq-id", str(filt["max_seq_id"]), "--filter-min-enable", str(filt["filter_min_enable"]),
             "--threads", str(cpus), "-v", "1", ignore_index=t.ignore_index)
        return t.seq, t.db_load_mode, t.ignore_index, f"{res}_filter"

    def to_a3m(target: Path, load: int, ignore: bool, res: str, out: str) -> dict[str, bytes]:
        _run(binary, "result2msa", tmp / "qdb", target, tmp / res, tmp / out, "--msa-format-mode", "6",
             "--db-load-mode", str(load), *_filter_args(p.get("filter")), "--threads", str(cpus), "-v", "1",
             ignore_index=ignore)
        return _entries(tmp / out, tmp / "qdb")

    try:
        (tmp / "query.fasta").write_text("".join(f">{n}\n{s}\n" for n, s in queries))
        _run(binary, "createdb", tmp / "query.fasta", tmp / "qdb", "-v", "1")
        *u_read, u_res = search(tmp / "qdb", uniref, "res", "tmp", uniref_role=True)
        if uniref.mmseqs_db is None:
            seed_profile(binary, tmp, "tmp", env=_MERGE)
        uniref_entries = to_a3m(*u_read, u_res, "uniref.a3m")
        *e_read, e_res = search(tmp / "prof_res", envdb, "res_env", "tmp_env", uniref_role=False)
        env_entries = to_a3m(*e_read, e_res, "env.a3m")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    out = paired_a3ms(queries, uniref_entries, env_entries)
    info["expandaln"] = ", ".join(f"{d.name}: {'run' if d.mmseqs_db is not None else 'not run (FASTA-built)'}"
                                  for d in (uniref, envdb))
    info["profile_db_params"] = prof
    return out, info

