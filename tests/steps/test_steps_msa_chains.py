"""The run's chain search phase (``foldstack step msa-chains``): every distinct chain of a
run is searched once, across its shards; the per-target msa jobs then only featurise.

Searches are counted by wrapping the search functions (jackhmmer per database, the
batched MMseqs2 search), so "searched once" is observed."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from foldstack.steps.features import load_features
from tests.steps.conftest import DEMO_SEQ, copy_demo_dbs, invoke, stage

B = "MTKILVKDKEDWLKLVNNLSKLRKEKGINQTDLGRMVGVSRQTISLIERGDYNPSVMVALSLAKVFAVSVEDIF"
C = "MSTNPKPQRKTKRNTNRRPQDVKFPGGGQIVGGVYLLPRRGPRLGVRATRKTSERSQPRGRRQPIPKA"
# A occurs as a monomer, in a heteromer and in a homomer; B in the heteromer and alone; C twice alone
TARGETS = {"a": DEMO_SEQ, "ab": f"{DEMO_SEQ}:{B}", "b": B, "aa": f"{DEMO_SEQ}:{DEMO_SEQ}", "c1": C, "c2": C}


def stage_run(scratch, run_id):
    for tid, seq in TARGETS.items():
        stage(scratch, run_id, tid, seq)
    listing = scratch / run_id / "input" / "targets.json"
    listing.write_text(json.dumps([{"id": tid} for tid in TARGETS]))


@pytest.fixture
def jackhmmer_calls(monkeypatch) -> Counter:
    import foldstack.steps.msa_search as search

    calls: Counter = Counter()
    real = search.jackhmmer_stockholm

    def counted(sequence, name, db, *args, **kwargs):
        calls[(db.name, sequence)] += 1
        return real(sequence, name, db, *args, **kwargs)

    monkeypatch.setattr(search, "jackhmmer_stockholm", counted)
    return calls


def test_work_is_one_search_per_distinct_chain_and_cache_label():
    from foldstack.steps.msa_chains import contexts_of, work_items

    targets = [(tid, seq.split(":")) for tid, seq in TARGETS.items()]
    assert contexts_of(targets)[DEMO_SEQ] == {(False, False), (True, True), (True, False)}
    # no UniProt, no pdb70: every context has the same label and alignments -> one search per chain
    same = work_items(targets, lambda context: ("jackhmmer-reduced_dbs", ["u", "s", "m"]))
    assert sorted(chain for _, chain in same) == sorted({DEMO_SEQ, B, C})
    # with UniProt the heteromer context needs one more alignment: it serves A's other contexts
    pairing = work_items(targets, lambda c: ("jackhmmer-reduced_dbs", ["u", "s", "m"] + (["uniprot"] if c[1] else [])))
    assert dict((chain, c) for c, chain in pairing)[DEMO_SEQ] == (True, True)
    # hhsearch templates for monomers: another label, so a monomer and a multimer search each
    split = work_items(targets, lambda c: ("x.hhsearch" if not c[0] else "x", ["u"]))
    assert Counter(chain for _, chain in split)[DEMO_SEQ] == 2
    # shards deal the same ordered list: each search in exactly one shard
    shards = [same[i::3] for i in range(3)]
    assert sorted(x for s in shards for x in s) == sorted(same)


def test_shards_search_each_chain_once_and_targets_then_only_featurise(tmp_path, db_root, jackhmmer_calls):
    from foldstack.steps.msa import run_msa
    from foldstack.steps.msa_chains import run_msa_chains

    root = copy_demo_dbs(db_root, tmp_path / "db")
    scratch, cache = tmp_path / "scratch", tmp_path / "cache"
    stage_run(scratch, "r")
    for shard in range(2):
        out = run_msa_chains("r", scratch, root, cache=str(cache), shard=shard, shards=2)
        report = json.loads((out / "chains.json").read_text())
        assert report["run_searches"] == 3 and report["store"] == str(cache)
    uniref = {seq: n for (db, seq), n in jackhmmer_calls.items() if db == "demo_uniref"}
    assert uniref == {DEMO_SEQ: 1, B: 1, C: 1}  # three distinct chains, each searched once
    assert len(list(cache.rglob("chain.json"))) == 3

    jackhmmer_calls.clear()
    for tid in TARGETS:
        info = json.loads((run_msa("r", tid, scratch, root, cache=str(cache)) / "features.json").read_text())
        assert {c["cache"] for c in info["chain_cache"]["chains"]} == {"hit"}, tid
    assert jackhmmer_calls == Counter()  # featurisation only

    # the same features as a target searched from scratch
    stage(tmp_path / "ref", "ref", "ab", TARGETS["ab"])
    ref = run_msa("ref", "ab", tmp_path / "ref", root)
    got, want = load_features(scratch / "r" / "msa" / "ab" / "features.npz"), load_features(ref / "features.npz")
    assert sorted(got) == sorted(want)
    for key in set(want) - {"domain_name"}:
        assert np.array_equal(got[key], want[key]), key

    # a shard run again (a retried job) finds everything stored and searches nothing
    jackhmmer_calls.clear()
    shutil.rmtree(scratch / "r" / "msa_chains")
    run_msa_chains("r", scratch, root, cache=str(cache), shard=0, shards=2)
    assert jackhmmer_calls == Counter()


def test_without_a_cache_the_run_store_serves_the_targets(tmp_path, db_root, jackhmmer_calls):
    """reuse_msa off (or no cache configured): the phase keeps its searches in the run's
    scratch (chains/), and the per-target jobs read them from there."""
    from foldstack.steps.msa import run_msa

    root = copy_demo_dbs(db_root, tmp_path / "db")
    scratch = tmp_path / "scratch"
    stage_run(scratch, "r")
    result = invoke(["msa-chains", "--run-id", "r", "--scratch", str(scratch), "--db", str(root), "--shard", "0",
                     "--shards", "1", "--cache", ""])
    assert result.exit_code == 0, result.output
    assert len(list((scratch / "r" / "chains").rglob("chain.json"))) == 3
    jackhmmer_calls.clear()
    info = json.loads((run_msa("r", "ab", scratch, root) / "features.json").read_text())
    assert [c["cache"] for c in info["chain_cache"]["chains"]] == ["run", "run"]
    assert info["chain_cache"]["status"].startswith("off")  # no MSA cache: nothing kept beyond the run
    assert jackhmmer_calls == Counter()


def test_bad_shard_is_bad_input(tmp_path, db_root):
    stage_run(tmp_path, "r")
    result = invoke(["msa-chains", "--run-id", "r", "--scratch", str(tmp_path), "--db", str(db_root),
                     "--shard", "2", "--shards", "2"])
    assert result.exit_code == 2


@pytest.mark.slow  # builds three real MMseqs2 indexes (~17 s each): `make test` only
def test_mmseqs2_searches_the_runs_chains_in_one_batched_search(tmp_path, db_root, monkeypatch):
    if shutil.which("mmseqs") is None:
        pytest.skip("Debian mmseqs2 not installed")
    import foldstack.steps.mmseqs as mmseqs
    from foldstack.steps.msa import run_msa
    from foldstack.steps.msa_chains import run_msa_chains

    batches: list[tuple[str, int]] = []
    real = mmseqs.search_many_a3m

    def counted(queries, db, *args, **kwargs):
        batches.append((db.name, len(queries)))
        return real(queries, db, *args, **kwargs)

    monkeypatch.setattr(mmseqs, "search_many_a3m", counted)
    root = copy_demo_dbs(db_root, tmp_path / "db")
    scratch, cache = tmp_path / "scratch", tmp_path / "cache"
    stage_run(scratch, "r")
    run_msa_chains("r", scratch, root, "mmseqs2", cache=str(cache), shard=0, shards=1)
    # one search per database, all three distinct chains in it
    assert sorted(batches) == [("demo_mgnify", 3), ("demo_small_bfd", 3), ("demo_uniref", 3)]
    batches.clear()
    for tid in ("a", "ab", "c2"):
        info = json.loads((run_msa("r", tid, scratch, root, "mmseqs2", str(cache)) / "features.json").read_text())
        assert {c["cache"] for c in info["chain_cache"]["chains"]} == {"hit"}
    assert batches == []
    # a batched search gives each chain the alignment a search of it alone gives
    stage(tmp_path / "ref", "ref", "b", B)
    alone = run_msa("ref", "b", tmp_path / "ref", root, "mmseqs2")
    batched = run_msa("r", "b", scratch, root, "mmseqs2", str(cache))
    assert (alone / "msa.a3m").read_text() == (batched / "msa.a3m").read_text()
