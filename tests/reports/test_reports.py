"""Published layout (every model, ranking_debug.json, structures/, reports), demo markers,
and the HTML reports checked in headless Chromium: no console errors, no network request
(every request goes to a recording proxy, tests/reports/chromium.py), a 3D canvas with
non-blank pixels. Screenshots are kept under tests/artifacts/reports/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from foldstack.steps.common import run_step
from foldstack.steps.outputs import Prediction, base_metrics, msa_coverage, write_prediction
from tests.conftest import REPO
from tests.lambdas.test_handlers import collect, event_for, publish_batch, stage, validate
from tests.reports.chromium import console_problems as _console_problems
from tests.reports.chromium import load

pytest.importorskip("gemmi")
pytest.importorskip("alphafold.common.residue_constants")

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
ARTIFACTS = REPO / "tests" / "artifacts" / "reports"


def _prediction(lengths: list[int], *, name: str, plddt: float, seed: int, complex_: bool) -> Prediction:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    pos = np.zeros((n, 37, 3))
    mask = np.zeros((n, 37))
    chain_index = np.concatenate([np.full(k, c) for c, k in enumerate(lengths)])
    residue_index = np.concatenate([np.arange(1, k + 1) for k in lengths])
    for i in range(n):  # an alpha helix per chain, chains side by side
        c, t = chain_index[i], residue_index[i] * 100 / 180 * np.pi
        axis = np.array([residue_index[i] * 1.5, c * 15.0, 0.0])  # across the screen
        for j, (r, dx) in zip((0, 1, 2, 4), ((1.5, -0.5), (2.3, 0.0), (1.6, 0.5), (1.4, 0.9)), strict=True):
            pos[i, j] = axis + [dx, r * np.cos(t + j * 0.3), r * np.sin(t + j * 0.3)]
            mask[i, j] = 1
    pae = rng.uniform(1, 20, (n, n))
    return Prediction(aatype=rng.integers(0, 20, n), atom_positions=pos, atom_mask=mask,
                      residue_index=residue_index, chain_index=chain_index,
                      plddt=np.clip(rng.normal(plddt, 8, n), 0, 100), model_name=name, pae=pae,
                      max_pae=31.75, ptm=0.5 + seed / 100,
                      iptm=0.4 + seed / 100 if complex_ else None,
                      ranking_confidence=0.45 + seed / 100 if complex_ else None)


def _fake_predict(scratch: Path, run_id: str, target: str, lengths: list[int], *, demo: bool, n_models: int):
    complex_ = len(lengths) > 1
    models = [_prediction(lengths, name=f"model_{k + 1}", plddt=85 - 10 * k, seed=n_models - k, complex_=complex_)
              for k in range(n_models)]

    def body(ctx):
        metrics = base_metrics(models[0], engine="alphafold2", preset="multimer" if complex_ else "monomer",
                               demo=demo, warnings=[], timings={}, n_chains=len(lengths))
        metrics["models"] = [{"model_name": p.model_name, "mean_plddt": round(p.mean_plddt, 2),
                              "ptm": p.ptm, "ranking_confidence": p.ranking_confidence} for p in models]
        msa = np.random.default_rng(1).integers(0, 22, (40, sum(lengths)))
        msa[0] = models[0].aatype
        metrics.update(msa_coverage(ctx.work_dir / "plots", msa, target=target))
        write_prediction(ctx.work_dir, models[0], target=target, metrics=metrics, models=models)

    run_step("predict", run_id, target, scratch, body)


def _run(dirs: dict[str, Path], fasta_text: str, preset: str, fold) -> Path:
    fasta = dirs["inputs"] / f"{preset}.fasta"
    fasta.write_text(fasta_text)
    event = event_for(str(fasta), str(dirs["outputs"]), fasta_text, preset=preset)
    validated = validate(event)
    stage({**event, "targets": validated["targets"]})
    fold(event["run_id"])
    publish_batch(event, validated["targets"])  # each batch publishes its targets, then Collect
    collect({**event, "targets": validated["targets"]})
    return dirs["outputs"] / event["run_id"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, size_classes):
    """Two collected runs: t1 a demo-weight monomer (5 models), t2 a two-chain complex (3 models)."""
    tmp = tmp_path_factory.mktemp("reports")
    dirs = {name: tmp / name for name in ("inputs", "outputs", "scratch")}
    for d in dirs.values():
        d.mkdir()
    env = {"FOLDSTACK_SCRATCH_ROOT": str(dirs["scratch"]), "FOLDSTACK_ALLOWED_INPUT_PREFIXES": str(dirs["inputs"]),
           "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES": str(dirs["outputs"]),
           "FOLDSTACK_SIZE_CLASSES": json.dumps({k: v.model_dump() for k, v in size_classes.items()})}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    try:
        mono = _run(dirs, f">t1\n{SEQ}\n", "monomer",
                    lambda rid: _fake_predict(dirs["scratch"], rid, "t1", [len(SEQ)], demo=True, n_models=5))
        multi = _run(dirs, f">t2\n{SEQ[:20]}:{SEQ[5:30]}\n", "multimer",
                     lambda rid: _fake_predict(dirs["scratch"], rid, "t2", [20, 25], demo=False, n_models=3))
    finally:
        mp.undo()
    return {"t1": mono, "t2": multi}


@pytest.fixture(scope="module")
def published(runs):
    """Path of each target's run: ``published[tid] / tid`` is the target's folder."""
    return runs


@pytest.mark.slow
def test_every_model_in_alphafold_layout(published):
    for tid, n in (("t1", 5), ("t2", 3)):
        run = published[tid]
        manifest = json.loads((run / "manifest.json").read_text())
        (entry,) = manifest["targets"]
        files = entry["files"]
        for rank in range(n):
            for name in (f"ranked_{rank}.pdb", f"ranked_{rank}.cif", f"ranked_{rank}.metrics.json",
                         f"ranked_{rank}.pae.json"):
                assert (run / tid / name).is_file() and name in files
        assert not (run / tid / f"ranked_{n}.pdb").exists()
        debug = json.loads((run / tid / "ranking_debug.json").read_text())
        assert debug["order"] == [f"model_{k + 1}" for k in range(n)]
        assert "report.html" in files and "plots/msa_coverage.png" in files
        assert (run / "structures" / f"{tid}.cif").read_bytes() == (run / tid / "ranked_0.cif").read_bytes()
        per_model = json.loads((run / tid / "ranked_1.metrics.json").read_text())
        assert per_model["rank"] == 1 and per_model["model_name"] == "model_2"
        assert {"mean_plddt", "ptm", "max_pae"} <= set(per_model)
        assert set(manifest["run_files"]) >= {"index.html", f"structures/{tid}.cif"}
        assert entry["metrics"]["msa_depth"] == 40
    t2 = published["t2"] / "t2"
    assert set(json.loads((t2 / "ranking_debug.json").read_text())) == {"iptm+ptm", "order"}  # by ipTM+pTM
    assert "iptm" in json.loads((t2 / "ranked_0.metrics.json").read_text())


@pytest.mark.slow
def test_demo_markers_in_structure_files(published):
    pdb = (published["t1"] / "t1" / "ranked_3.pdb").read_text()
    assert "REMARK 250 FOLDSTACK DEMO WEIGHTS" in pdb
    assert pdb.index("REMARK 250") < pdb.index("ATOM ")
    cif = (published["t1"] / "structures" / "t1.cif").read_text()
    assert re.search(r"^_foldstack\.demo_weights\s+yes$", cif, re.M)
    import gemmi

    assert gemmi.read_structure(str(published["t1"] / "t1" / "ranked_0.pdb")).name  # still a valid PDB
    block = gemmi.cif.read(str(published["t1"] / "t1" / "ranked_0.cif")).sole_block()
    assert block.find_value("_foldstack.demo_weights") == "yes"
    assert "DEMO" not in (published["t2"] / "t2" / "ranked_0.pdb").read_text()
    assert "_foldstack" not in (published["t2"] / "t2" / "ranked_0.cif").read_text()


@pytest.mark.slow
def test_reports_reference_nothing_remote(published):
    for page in (published["t1"] / "index.html", published["t2"] / "index.html",
                 published["t1"] / "t1" / "report.html", published["t2"] / "t2" / "report.html"):
        text = page.read_text()
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), page
    assert 'id="demo-banner"' in (published["t1"] / "t1" / "report.html").read_text()
    assert 'id="demo-banner"' in (published["t1"] / "index.html").read_text()
    assert 'id="demo-banner"' not in (published["t2"] / "t2" / "report.html").read_text()
    assert "ipTM" in (published["t2"] / "t2" / "report.html").read_text()


def test_report_without_viewer_script_says_so(tmp_path):
    from foldstack.reports import target_report

    page = target_report({"id": "x", "metrics": {}, "files": {}}, structure_pdb="ATOM\n", plddt_tsv=None,
                         run_id="r", viewer_src=None)
    assert "3D view unavailable" in page and "<script src" not in page


# --------------------------------------------------------------------------- Chromium

def _load(page: Path, shot: Path, tmp_path: Path) -> str:
    """Open `page` in headless Chromium (tests/reports/chromium.py); fail on any network
    request it made; return its log (console messages included)."""
    loaded = load(page, shot, tmp_path)
    assert loaded.requests == [], f"{page.name} made network requests: {loaded.requests}"
    return loaded.log


@pytest.mark.slow  # headless Chromium loads the page (seconds): `make test` only
def test_chromium_checks_catch_remote_requests_and_console_errors(tmp_path):
    """The negative control: a page that loads a remote image and script, fetches a URL and
    logs an error is caught by each check; a page that asks for nothing makes no request."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><p>remote</p><img src="https://example.com/x.png">'
                   '<script src="http://example.org/a.js"></script>'
                   '<script>fetch("https://example.net/data.json").catch(function() {});'
                   'console.error("boom");</script></body></html>')
    loaded = load(bad, tmp_path / "bad.png", tmp_path / "a")
    assert {r.split(" ")[:2][1] for r in loaded.requests} >= {"example.com:443", "http://example.org/a.js",
                                                               "example.net:443"}, loaded.requests
    assert any("boom" in line for line in _console_problems(loaded.log))
    clean = tmp_path / "clean.html"
    clean.write_text("<!DOCTYPE html><html><body><p>nothing remote</p></body></html>")
    loaded = load(clean, tmp_path / "clean.png", tmp_path / "b")
    assert loaded.requests == [] and _console_problems(loaded.log) == []


def _viewer_box(img: np.ndarray) -> tuple[int, int, int, int] | None:
    """The viewer div (640×480, a 1px #ccc border; the canvas covers the right and bottom
    edges): (top, bottom, left, right) in the screenshot, from its top border."""
    grey = np.all(np.abs(img[:, :, :3] - 204 / 255) < 0.01, axis=2)
    rows = [r for r in range(grey.shape[0]) if grey[r].sum() >= 600]
    if not rows:
        return None
    top = rows[0]
    cols = np.nonzero(grey[top])[0]
    left = int(cols.min())
    return top, min(img.shape[0], top + 480), left, min(img.shape[1], left + 640)


def _coloured_pixels(img: np.ndarray, box: tuple[int, int, int, int]) -> int:
    top, bottom, left, right = box
    region = img[top + 2:bottom - 1, left + 2:right - 1, :3]
    saturation = region.max(axis=2) - region.min(axis=2)
    return int((saturation > 0.2).sum())


@pytest.mark.slow  # headless Chromium renders the page (seconds each): `make test` only
@pytest.mark.parametrize("target", ["t1", "t2"])
def test_target_report_in_chromium(published, target, tmp_path):
    import matplotlib.image

    shot = ARTIFACTS / f"report_{target}.png"
    log = _load(published[target] / target / "report.html", shot, tmp_path)
    assert _console_problems(log) == []
    img = matplotlib.image.imread(shot)
    box = _viewer_box(img)
    assert box is not None, "viewer not found in the screenshot"
    assert _coloured_pixels(img, box) > 2000, "the 3D canvas is blank"


@pytest.mark.slow  # headless Chromium renders the page (seconds each): `make test` only
@pytest.mark.parametrize("target", ["t1", "t2"])
def test_index_in_chromium(published, target, tmp_path):
    import matplotlib.image

    shot = ARTIFACTS / f"index_{target}.png"
    log = _load(published[target] / "index.html", shot, tmp_path)
    assert _console_problems(log) == []
    img = matplotlib.image.imread(shot)
    assert (img[:, :, :3].max(axis=2) - img[:, :, :3].min(axis=2) > 0.2).sum() > 500  # banner and charts drawn


@pytest.mark.slow
def test_summary_tsv_columns(published):
    from foldstack.core.manifest import SUMMARY_COLUMNS, load_manifest

    for tid in ("t1", "t2"):
        lines = (published[tid] / "summary.tsv").read_text().splitlines()
        assert tuple(lines[0].split("\t")) == SUMMARY_COLUMNS == (
            "target", "status", "engine", "length", "chains", "size_class", "mean_plddt", "ptm", "iptm",
            "ranking_confidence", "max_pae", "msa_depth", "runtime_s", "cost_usd", "failure_code")
        (row,) = [dict(zip(SUMMARY_COLUMNS, line.split("\t"), strict=True)) for line in lines[1:]]
        assert row["target"] == tid and row["status"] == "succeeded" and row["engine"] == "alphafold2"
        assert row["msa_depth"] == "40" and row["failure_code"] == "" and float(row["mean_plddt"]) > 0
        manifest = load_manifest((published[tid] / "manifest.json").read_bytes())
        assert "summary.tsv" in manifest.run_files
        assert manifest.summary_rows()[0]["target"] == tid
    assert (published["t2"] / "summary.tsv").read_text().splitlines()[1].split("\t")[8] == "0.43"  # ipTM


def test_report_provenance_shows_weights_image_commit_and_job_definition():
    from foldstack.reports import target_report

    build = {"foldstack_version": "0.9.1", "git_commit": "c0ffee1234", "image": "123.dkr.ecr/foldstack-predict:c0ffee",
             "image_digest": "sha256:" + "ab" * 32, "job_definition": "arn:aws:batch:eu-west-1:1:job-definition/p:7",
             "weights": {"engine": "alphafold2", "digest": "de" * 32, "origin": "s3://weights/af2", "revision": "v2"}}
    page = target_report({"id": "x", "metrics": {"engine": "alphafold2"}, "files": {},
                          "provenance": {"predict": {"tool_versions": {"jax": "0.4"}, "build": build},
                                         "msa": {"build": {"foldstack_version": "0.9.1", "git_commit": "c0ffee1234"}}}},
                         structure_pdb=None, plddt_tsv=None, run_id="r")
    table = page[page.index('id="provenance"'):]
    for shown in ("foldstack 0.9.1, git commit c0ffee1234", "123.dkr.ecr/foldstack-predict:c0ffee (sha256:" + "ab" * 32,
                  "job-definition/p:7", "sha256 " + "de" * 32 + " (origin s3://weights/af2, revision v2)"):
        assert shown in table, shown
    assert "msa: image</th><td>– (local run: no container image)" in table  # a local run says so
