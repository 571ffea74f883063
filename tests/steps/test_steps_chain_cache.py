"""The msa step's per-chain cache: a chain searched in one target is not
searched again in another, monomer or complex, and the features come out the same.

Searches are counted by wrapping the step's jackhmmer and template search functions, so
"not searched" is observed, not inferred from timings.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from foldstack.demo_data import template_cif_files
from foldstack.steps.features import load_features
from tests.steps.conftest import DEMO_SEQ, invoke, stage

OTHER = "MTKILVKDKEDWLKLVNNLSKLRKEKGINQTDLGRMVGVSRQTISLIERGDYNPSVMVALSLAKVFAVSVEDIF"
needs_templates = pytest.mark.skipif(template_cif_files() is None,
                                     reason="Debian python-biopython-doc (1A7G/2XHE mmCIF fixtures) not installed")


@pytest.fixture
def searches(monkeypatch) -> Counter:
    """Counts jackhmmer searches of the UniRef90-role database (one per chain searched; the
    preset searches small BFD and MGnify alongside) and template searches, per sequence."""
    import foldstack.steps.msa_search as msa
    import foldstack.steps.templates as templates

    counts: Counter = Counter()
    real_jackhmmer, real_templates = msa.jackhmmer_stockholm, templates.search_templates

    def jackhmmer(sequence, name, db, *args, **kwargs):
        if db.name == "demo_uniref":
            counts[("jackhmmer", sequence)] += 1
        return real_jackhmmer(sequence, name, db, *args, **kwargs)

    def search_templates(query, *args, **kwargs):
        counts[("templates", query)] += 1
        return real_templates(query, *args, **kwargs)

    monkeypatch.setattr(msa, "jackhmmer_stockholm", jackhmmer)
    monkeypatch.setattr(templates, "search_templates", search_templates)
    return counts


def _run(scratch, run_id, target, sequence, db, cache):
    from foldstack.steps.msa import run_msa

    stage(scratch, run_id, target, sequence)
    out = run_msa(run_id, target, scratch, db, "jackhmmer", str(cache) if cache else None)
    return out, json.loads((out / "features.json").read_text())


def _assert_same_features(out, ref):
    """Every feature array and the A3M of two msa outputs are identical."""
    cached, fresh = load_features(out / "features.npz"), load_features(ref / "features.npz")
    assert sorted(cached) == sorted(fresh)
    for key in fresh:
        assert np.array_equal(cached[key], fresh[key]), key
    assert (out / "msa.a3m").read_text() == (ref / "msa.a3m").read_text()


def _entries(cache):
    return sorted(p.parent for p in cache.rglob("chain.json"))


@pytest.mark.slow
def test_complex_reuses_the_chain_a_monomer_searched(tmp_path, template_root, chain_e, searches):
    cache, scratch = tmp_path / "cache", tmp_path / "scratch"

    _, mono = _run(scratch, "r1", "mono", chain_e, template_root, cache)
    assert searches[("jackhmmer", chain_e)] == 1
    assert [c["cache"] for c in mono["chain_cache"]["chains"]] == ["miss"]
    (entry,) = _entries(cache)
    assert entry.parent.name == "chains" and entry.name == mono["chain_cache"]["chains"][0]["sha256"]
    assert entry.parent.parent.name == mono["chain_cache"]["db_version"]
    marker = json.loads((entry / "chain.json").read_text())
    assert marker["source_run"] == "r1" and marker["alignments"] == [
        {"database": name, "fmt": "sto"} for name in ("demo_uniref", "demo_small_bfd", "demo_mgnify")]
    if template_cif_files() is not None:  # the template features are kept with the alignments
        assert "templates.npz" in marker["files"] and marker["template_info"]["templates"]

    searches.clear()
    out, cx = _run(scratch, "r2", "cx", f"{chain_e}:{OTHER}", template_root, cache)
    assert searches == Counter({("jackhmmer", OTHER): 1, **({("templates", OTHER): 1} if template_cif_files() else {})})
    assert [c["cache"] for c in cx["chain_cache"]["chains"]] == ["hit", "miss"]
    assert cx["hits"]["demo_uniref"][0] == mono["hits"]["demo_uniref"][0]
    assert cx["templates"]["per_chain"][:1] == mono["templates"]["per_chain"][:1]
    assert len(_entries(cache)) == 2

    # the same complex, computed from scratch without any cache: the same features and A3M
    ref, _ = _run(tmp_path / "scratch-ref", "r3", "cx", f"{chain_e}:{OTHER}", template_root, None)
    _assert_same_features(out, ref)

    # both chains known, in the other order and another target: nothing is searched
    searches.clear()
    out, swapped = _run(scratch, "r4", "swapped", f"{OTHER}:{chain_e}", template_root, cache)
    assert searches == Counter()
    assert [c["cache"] for c in swapped["chain_cache"]["chains"]] == ["hit", "hit"]
    assert not any(k.startswith("jackhmmer_") for k in swapped["timings"])
    assert [c["source_run"] for c in swapped["chain_cache"]["chains"]] == ["r2", "r1"]
    ref, _ = _run(tmp_path / "scratch-ref", "r5", "swapped", f"{OTHER}:{chain_e}", template_root, None)
    _assert_same_features(out, ref)


@pytest.mark.slow
def test_homomer_searches_its_chain_once_and_without_cache_reports_off(tmp_path, template_root, searches):
    _, info = _run(tmp_path / "s", "r", "homo", f"{OTHER}:{OTHER}", template_root, None)
    assert searches[("jackhmmer", OTHER)] == 1
    assert info["chain_cache"]["status"].startswith("off")
    assert [c["cache"] for c in info["chain_cache"]["chains"]] == ["off", "off"]


def test_damaged_entry_is_searched_again_and_repaired(tmp_path, template_root, searches):
    cache, scratch = tmp_path / "cache", tmp_path / "scratch"
    _run(scratch, "r1", "a", OTHER, template_root, cache)
    (entry,) = _entries(cache)
    alignment = entry / "demo_uniref.sto.gz"
    alignment.write_bytes(alignment.read_bytes()[:-8])  # truncated object

    searches.clear()
    _, info = _run(scratch, "r2", "b", OTHER, template_root, cache)
    assert searches[("jackhmmer", OTHER)] == 1 and info["chain_cache"]["chains"][0]["cache"] == "miss"
    marker = json.loads((entry / "chain.json").read_text())
    assert hashlib.sha256(alignment.read_bytes()).hexdigest() == marker["files"]["demo_uniref.sto.gz"]
    assert marker["source_run"] == "r2"


@needs_templates
@pytest.mark.slow
def test_another_template_date_cut_off_is_a_miss(tmp_path, template_root, chain_e, searches, monkeypatch):
    cache, scratch = tmp_path / "cache", tmp_path / "scratch"
    _run(scratch, "r1", "a", chain_e, template_root, cache)
    monkeypatch.setenv("FOLDSTACK_MAX_TEMPLATE_DATE", "1990-01-01")  # before 1A7G's release
    searches.clear()
    _, info = _run(scratch, "r2", "b", chain_e, template_root, cache)
    assert searches[("jackhmmer", chain_e)] == 1
    assert info["templates"]["n_templates"] == 0


def test_cache_write_failure_never_fails_the_step(tmp_path, template_root, monkeypatch):
    import foldstack.storage as storage

    real = storage.write_bytes

    def failing(uri, *args, **kwargs):
        if "/chains/" in uri:
            raise OSError("disk full")
        return real(uri, *args, **kwargs)

    monkeypatch.setattr(storage, "write_bytes", failing)
    out, info = _run(tmp_path / "s", "r", "a", OTHER, template_root, tmp_path / "cache")
    assert (out / "msa.done.json").is_file() and info["chain_cache"]["chains"][0]["cache"] == "miss"
    assert _entries(tmp_path / "cache") == []


def test_cache_is_off_when_a_database_is_not_at_its_current_version(tmp_path, template_root):
    from types import SimpleNamespace

    from foldstack.steps.chain_cache import ChainCache

    current = (template_root / "demo_uniref" / "CURRENT").read_text().strip()
    ok, why = ChainCache.open(str(tmp_path), "jackhmmer", str(template_root),
                              [SimpleNamespace(name="demo_uniref", version=current)], None, {}, print)
    assert ok is not None and why == "ok"
    stale, why = ChainCache.open(str(tmp_path), "jackhmmer", str(template_root),
                                 [SimpleNamespace(name="demo_uniref", version="older")], None, {}, print)
    assert stale is None and "demo_uniref@older" in why


def test_bad_cache_uri_is_bad_input(tmp_path, db_root):
    stage(tmp_path, "r", "t", OTHER)
    result = invoke(["msa", "--run-id", "r", "--target", "t", "--scratch", str(tmp_path),
                     "--db", str(db_root), "--cache", "http://example.org/cache"])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "r" / "msa" / "t").exists()


def test_s3_cache_round_trip_and_damage(monkeypatch):
    """The cloud's cache root is s3://<database bucket>/cache: same layout, same checks."""
    import boto3
    from moto import mock_aws

    from foldstack.steps.chain_cache import Alignment, ChainCache, ChainSearch
    from foldstack.steps.features import empty_template_features

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="db-bucket")
        cache = ChainCache("s3://db-bucket/cache", "jackhmmer", "demo_uniref@v1.p1", {"demo_uniref": "v1"},
                           "2021-01-01", {"pyhmmer": "0.11"}, print)
        templates = empty_template_features(OTHER)
        templates["template_all_atom_masks"][0, 0, 0] = 1.0  # one "real" template, so it is kept
        search = ChainSearch.build([Alignment("uniref", "sto", f"# STOCKHOLM 1.0\nquery {OTHER}\n//\n"),
                                    Alignment("mgnify", "a3m", f">query\n{OTHER}\n")], templates,
                                   {"templates": ["x"], "errors": []})
        assert cache.put(OTHER, search, source_run="r1")
        key = cache.key(OTHER).removeprefix("s3://db-bucket/")
        assert key.startswith("cache/msa/jackhmmer/demo_uniref@v1.p1/chains/")
        names = sorted(o["Key"].rsplit("/", 1)[1] for o in s3.list_objects_v2(Bucket="db-bucket")["Contents"])
        assert names == ["chain.json", "mgnify.a3m.gz", "templates.npz", "uniref.sto.gz"]

        got = cache.get(OTHER, ["uniref", "mgnify"])
        assert got is not None and got.cached and got.alignments == search.alignments
        assert got.origin["source_run"] == "r1" and got.template_info["templates"] == ["x"]
        assert [m.sequences for m in got.msas] == [m.sequences for m in search.msas]
        for name, value in templates.items():
            assert np.array_equal(got.templates[name], value), name
        assert cache.get(DEMO_SEQ, ["uniref", "mgnify"]) is None  # another chain: a miss, not an error
        assert cache.get(OTHER, ["uniref", "uniprot"]) is None  # lacks an alignment this job needs
        subset = cache.get(OTHER, ["mgnify"])  # an entry with more alignments serves a job needing fewer
        assert subset is not None and [a.database for a in subset.alignments] == ["mgnify"]
        newer = ChainCache(**{**cache.__dict__, "tool_versions": {"pyhmmer": "0.12"}})
        assert newer.get(OTHER, ["uniref", "mgnify"]) is None  # another search tool version

        s3.put_object(Bucket="db-bucket", Key=f"{key}/uniref.sto.gz", Body=b"tampered")
        assert cache.get(OTHER, ["uniref", "mgnify"]) is None


def _rewrite(entry, name, data: bytes, **marker_changes):
    """Replace one file of an entry and re-sign chain.json, as a buggy writer would."""
    (entry / name).write_bytes(data)
    marker = json.loads((entry / "chain.json").read_text())
    marker["files"][name] = hashlib.sha256(data).hexdigest()
    marker.update(marker_changes)
    (entry / "chain.json").write_text(json.dumps(marker))


@pytest.mark.parametrize("garbage", [b"not a stockholm file\n", b"# STOCKHOLM 1.0\n//\n",
                                     b"# STOCKHOLM 1.0\nquery MKV\n//\n"])
def test_entry_that_matches_its_checksums_but_does_not_parse_is_searched_again(
        garbage, tmp_path, template_root, searches):
    cache, scratch = tmp_path / "cache", tmp_path / "scratch"
    _run(scratch, "r1", "a", OTHER, template_root, cache)
    (entry,) = _entries(cache)
    _rewrite(entry, "demo_uniref.sto.gz", gzip.compress(garbage))
    searches.clear()
    out, info = _run(scratch, "r2", "b", OTHER, template_root, cache)
    assert searches[("jackhmmer", OTHER)] == 1 and info["chain_cache"]["chains"][0]["cache"] == "miss"
    assert json.loads((entry / "chain.json").read_text())["source_run"] == "r2"  # repaired
    searches.clear()
    _run(scratch, "r3", "c", OTHER, template_root, cache)
    assert searches == Counter()


def test_entry_naming_files_outside_itself_or_made_by_other_tools_is_a_miss(tmp_path, template_root, searches):
    cache, scratch = tmp_path / "cache", tmp_path / "scratch"
    _run(scratch, "r1", "a", OTHER, template_root, cache)
    (entry,) = _entries(cache)
    marker = json.loads((entry / "chain.json").read_text())
    assert set(marker["tool_versions"]) == {"pyhmmer", "alphafold-colabfold"}
    (tmp_path / "secret").write_text("x")
    for changes in ({"files": {**marker["files"], "../../../../../../secret": "0" * 64}},
                    {"tool_versions": {**marker["tool_versions"], "pyhmmer": "0.0.1"}}):
        (entry / "chain.json").write_text(json.dumps({**marker, **changes}))
        searches.clear()
        _, info = _run(scratch, f"r-{len(changes)}-{sorted(changes)[0]}", "b", OTHER, template_root, cache)
        assert searches[("jackhmmer", OTHER)] == 1 and info["chain_cache"]["chains"][0]["cache"] == "miss"


@needs_templates
def test_template_featurisation_errors_are_not_cached(tmp_path, template_root, chain_e, monkeypatch):
    import foldstack.steps.templates as templates

    real = templates.search_templates

    def failing_kalign(*args, **kwargs):
        result = real(*args, **kwargs)
        result.errors.append("kalign: returned non-zero exit status 1")
        return result

    monkeypatch.setattr(templates, "search_templates", failing_kalign)
    out, info = _run(tmp_path / "s", "r", "a", chain_e, template_root, tmp_path / "cache")
    assert info["chain_cache"]["chains"][0]["cache"] == "miss" and _entries(tmp_path / "cache") == []
