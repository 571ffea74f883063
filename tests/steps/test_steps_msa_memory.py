"""The msa step's memory does not grow with the database: jackhmmer streams it.

The step runs as a Batch job would (``foldstack step msa`` in its own process) against two
UniRef90-role databases of real sequences — the demo's, mutated and repeated to ~8 MB
and ~80 MB — and the peak RSS its done record reports must stay flat. Loading the
database whole (``read_block()``, ~3× the FASTA) would add over 200 MB.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from tests.steps.conftest import DEMO_SEQ, stage

AA = "ACDEFGHIKLMNPQRSTVWY"


def _mutated_db(root, db_root, target_bytes: int):
    """<root>/big_uniref (role uniref90): the demo sequences, each copy with 30 % of its
    residues substituted, until the FASTA reaches `target_bytes`; plus the demo's small_bfd
    and mgnify databases, so the reduced_dbs preset has every role."""
    import shutil

    from foldstack.demo_data import _demo_records
    from foldstack.steps.databases import write_manifest

    rng = random.Random(7)
    records = _demo_records()
    version = root / "big_uniref" / "v1"
    version.mkdir(parents=True)
    written, copy = 0, 0
    with open(version / "big.fasta", "w") as f:
        while written < target_bytes:
            for rid, _, seq in records:
                mutated = "".join(rng.choice(AA) if rng.random() < 0.3 else c for c in seq)
                line = f">{rid}_c{copy}\n{mutated}\n"
                f.write(line)
                written += len(line)
            copy += 1
    write_manifest(version, name="big_uniref", version="v1", role="uniref90", sequences="big.fasta", max_hits=10000,
                   source="demo sequences, mutated and repeated (test)", license="CC BY 4.0")
    (root / "big_uniref" / "CURRENT").write_text("v1\n")
    for name in ("demo_small_bfd", "demo_mgnify"):
        shutil.copytree(db_root / name, root / name)
    return root


def _peak(tmp_path, db, run_id):
    stage(tmp_path / "scratch", run_id, "t", DEMO_SEQ)
    env = {**os.environ, "FOLDSTACK_CPUS": "2", "FOLDSTACK_DB_VERIFY_MAX_BYTES": "0"}
    proc = subprocess.run([sys.executable, "-m", "foldstack", "step", "msa", "--run-id", run_id, "--target", "t",
                           "--scratch", str(tmp_path / "scratch"), "--db", str(db), "--cache", ""],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "scratch" / run_id / "msa" / "t"
    done = json.loads((out / "msa.done.json").read_text())
    info = json.loads((out / "features.json").read_text())
    return done["resources"], info


@pytest.mark.e2e
def test_peak_rss_does_not_grow_with_the_database(tmp_path, db_root):
    small = _mutated_db(tmp_path / "small", db_root, 8 << 20)
    large = _mutated_db(tmp_path / "large", db_root, 80 << 20)
    small_res, small_info = _peak(tmp_path, small, "r-small")
    large_res, large_info = _peak(tmp_path, large, "r-large")
    sizes = [info["databases"][0]["files"]["big.fasta"]["bytes"] for info in (small_info, large_info)]
    assert sizes[1] - sizes[0] > 70 << 20
    streams = [info["streamed"]["big_uniref"][0] for info in (small_info, large_info)]
    assert streams[1]["sequences"] > 9 * streams[0]["sequences"]  # the large DB was searched, whole
    assert streams[1]["z"] == streams[1]["sequences"] and streams[1]["z_source"] == "database manifest sequence_count"
    growth = large_res["peak_rss_mib"] - small_res["peak_rss_mib"]
    print(f"peak RSS {small_res['peak_rss_mib']} MiB ({sizes[0] >> 20} MB DB) vs "
          f"{large_res['peak_rss_mib']} MiB ({sizes[1] >> 20} MB DB): {growth:+.1f} MiB")
    assert growth < 40, (small_res, large_res)
    assert large_res["cpu_seconds"] > small_res["cpu_seconds"]  # the work grew, the memory did not
