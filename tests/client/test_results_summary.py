"""A partial run's summary, everywhere a scientist reads it: `summary.tsv`, `Run.summary_tsv()`
(read on its own, nothing else downloaded), `Run.metrics()` and `index.html` all have one row
per target, the failed one included, with what is known of it (engine, length, chains, size
class) and its failure code. Local client over the rendered fold workflow, fake steps."""

from __future__ import annotations

import csv
import io

import pytest

from foldstack.core.manifest import SUMMARY_COLUMNS
from tests.client.conftest import SEQ, fake_local_client


def test_failed_targets_are_in_summary_metrics_and_index(tmp_path, monkeypatch):
    monkeypatch.setenv("FOLDSTACK_TEST_FAIL", "predict:zz")
    client = fake_local_client(tmp_path)
    # one Predict batch, aa (shorter) first: aa is done before zz fails the job
    run = client.submit([("aa", SEQ[:20]), ("zz", SEQ)], engine="esmfold", max_failed_fraction=0.5)
    assert run.wait(timeout=60) == "SUCCEEDED" and run.outcome() == "partial"

    root = tmp_path / "out" / run.run_id
    published = (root / "summary.tsv").read_text()
    assert run.summary_tsv() == published
    rows = {r["target"]: r for r in csv.DictReader(io.StringIO(published), delimiter="\t")}
    assert list(rows) == ["aa", "zz"]
    failed = rows["zz"]
    assert (failed["status"], failed["engine"], failed["length"], failed["chains"]) == (
        "failed", "esmfold", str(len(SEQ)), "1")
    assert failed["size_class"] and failed["failure_code"] and failed["mean_plddt"] == ""
    assert rows["aa"]["status"] == "succeeded" and rows["aa"]["failure_code"] == ""

    metrics = run.metrics()
    assert [r["id"] for r in metrics] == ["aa", "zz"]
    for row in metrics:
        assert tuple(row)[:2 + len(SUMMARY_COLUMNS)] == ("run_id", "id", *SUMMARY_COLUMNS)
    m = {r["id"]: r for r in metrics}["zz"]
    assert (m["status"], m["engine"], m["length"], m["chains"], m["size_class"], m["failure_code"]) == (
        "failed", "esmfold", len(SEQ), 1, failed["size_class"], failed["failure_code"])

    page = (root / "index.html").read_text()
    assert "<td>zz</td>" in page and '<span class="failed">failed</span>' in page
    assert f"<td>{failed['failure_code']}</td>" in page
    assert 'href="aa/report.html"' in page and 'href="zz/report.html"' not in page
    assert "2 target(s), 1 failed" in page


def test_summary_tsv_refuses_a_file_that_does_not_match_the_manifest(tmp_path):

    from foldstack.core.errors import OutputIntegrityError

    client = fake_local_client(tmp_path)
    run = client.submit([("aa", SEQ)], engine="esmfold")
    assert run.wait(timeout=60) == "SUCCEEDED"
    (tmp_path / "out" / run.run_id / "summary.tsv").write_text("target\nnot what was published\n")
    with pytest.raises(OutputIntegrityError):
        run.summary_tsv()


@pytest.mark.slow
def test_a_manifest_from_before_the_summary_file_still_loads_and_summarises(tmp_path, monkeypatch):
    """A manifest written before summary.tsv was listed in run_files and before failures
    carried engine/length/chains/size_class: it loads, `Run.summary_tsv()` rebuilds the rows
    from it (the failed one with what it has), and `Run.metrics()` has every column."""
    import json

    monkeypatch.setenv("FOLDSTACK_TEST_FAIL", "predict:zz")
    client = fake_local_client(tmp_path)
    run = client.submit([("aa", SEQ[:20]), ("zz", SEQ)], engine="esmfold", max_failed_fraction=0.5)
    assert run.wait(timeout=60) == "SUCCEEDED"
    path = tmp_path / "out" / run.run_id / "manifest.json"
    old = json.loads(path.read_text())
    del old["run_files"]["summary.tsv"]
    old["failures"] = [{k: v for k, v in f.items() if k not in ("engine", "length", "chains", "size_class")}
                       for f in old["failures"]]
    path.write_text(json.dumps(old))

    again = client.run(run.run_id)
    rows = list(csv.DictReader(io.StringIO(again.summary_tsv()), delimiter="\t"))
    assert tuple(rows[0]) == SUMMARY_COLUMNS and [r["target"] for r in rows] == ["aa", "zz"]
    assert (rows[1]["status"], rows[1]["engine"], rows[1]["length"]) == ("failed", "", "")
    assert rows[1]["failure_code"] == old["failures"][0]["code"]
    zz = {r["id"]: r for r in again.metrics()}["zz"]
    assert zz["status"] == "failed" and zz["engine"] is None and set(SUMMARY_COLUMNS) <= set(zz)
