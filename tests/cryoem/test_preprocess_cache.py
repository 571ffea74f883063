"""The per-micrograph preprocessing cache (foldstack.cryoem.cache): its key holds every
preprocessing input and nothing downstream; a second run of a dataset is all hits, runs no
RELION program and writes byte-identical outputs; a damaged entry is a miss and is
rewritten; an entry's paths cannot leave it; a cache that cannot be written never fails
the step."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from foldstack.cryoem import cache as C
from foldstack.cryoem import preprocess, refine
from foldstack.cryoem.knobs import Knobs
from foldstack.cryoem.request import CryoemRequest, Optics, load_request
from foldstack.cryoem.simulate import SimParams, simulate

TOOLS = {"relion": "3.1.3", "ctf_estimator": "foldstack", "ctffind_sha256": "", "foldstack": "0.1.0",
         "preprocess_code_sha256": "c0de"}
TINY = SimParams(micrographs=3, particles_per_micrograph=12, box=40, pixel_size=4.0, frames=4, seed=4)
needs_relion = pytest.mark.skipif(shutil.which("relion_preprocess") is None, reason="Debian relion not installed")


def _request(tmp_path: Path, **changes) -> CryoemRequest:
    movie = tmp_path / "mic_000.mrc"
    if not movie.exists():
        movie.write_bytes(b"movie")
    base = CryoemRequest(movies=[movie], optics=Optics(4.0, 300.0, 2.7, 0.1, 1.5), particle_diameter=120.0,
                         box_size=40, frames=4)
    return dataclasses.replace(base, **changes)


def _key(request: CryoemRequest, knobs: Knobs, name: str = "mic_000.mrc", sha: str = "ab" * 32,
         tools: dict[str, str] = TOOLS) -> str:
    return C.key_of(C.key_material(request, knobs, movie_name=name, movie_sha256=sha, tools=tools))


def test_every_knob_is_classified_once():
    names = {f.name for f in dataclasses.fields(Knobs)}
    assert set(C.PREPROCESS_KNOBS) | set(C.DOWNSTREAM_KNOBS) == names
    assert not set(C.PREPROCESS_KNOBS) & set(C.DOWNSTREAM_KNOBS)


def _changed(value):
    return value + 1 if isinstance(value, int) else value * 1.5 + 1.0


def test_key_changes_with_every_preprocessing_input(tmp_path):
    request, knobs = _request(tmp_path), Knobs()
    base = _key(request, knobs)
    assert base == _key(_request(tmp_path), Knobs())  # stable
    for name in C.PREPROCESS_KNOBS:
        value = getattr(knobs, name)
        special = {"ctf_estimator": 1, "ctf_defocus_min": 4000.0, "ctffind_min_resolution": 40.0}
        other = special.get(name, _changed(value))
        assert _key(request, Knobs.with_overrides({name: other})) != base, name
    for field in dataclasses.fields(Optics):
        optics = dataclasses.replace(request.optics, **{field.name: getattr(request.optics, field.name) * 1.1})
        assert _key(dataclasses.replace(request, optics=optics), knobs) != base, field.name
    for name, value in {"particle_diameter": 130.0, "box_size": 48, "frames": 8}.items():
        assert _key(dataclasses.replace(request, **{name: value}), knobs) != base, name
    assert _key(request, knobs, sha="cd" * 32) != base  # the movie's bytes
    assert _key(request, knobs, name="mic_001.mrc") != base  # its name (the STAR rows hold it)
    for tool in TOOLS:
        assert _key(request, knobs, tools={**TOOLS, tool: "other"}) != base, tool


def test_key_ignores_downstream_settings(tmp_path):
    request, knobs = _request(tmp_path), Knobs()
    base = _key(request, knobs)
    for name in C.DOWNSTREAM_KNOBS:
        value = getattr(knobs, name)
        other = {"guard_denovo": 1, "fast_subsets_2d": 1}.get(name, _changed(value))
        assert _key(request, Knobs.with_overrides({name: other})) == base, name
    assert _key(dataclasses.replace(request, symmetry="C2"), knobs) == base
    assert _key(dataclasses.replace(request, reference=tmp_path / "ref.pdb"), knobs) == base


def test_unsafe_entry_paths_are_refused_and_an_escaping_entry_is_a_miss(tmp_path):
    for bad in ("../x", "/etc/passwd", "a/../../b", "a\\b", "", "."):
        with pytest.raises(ValueError):
            C.check_relpath(bad)
    assert C.check_relpath("Particles/MotionCorr/Movies/mic_000.mrcs")
    logs: list[str] = []
    store = C.PreprocessCache(str(tmp_path / "cache"), TOOLS, logs.append)
    key = "ab" * 32
    folder = tmp_path / "cache" / "cryoem" / "preprocess" / key
    folder.mkdir(parents=True)
    (folder / C.MARKER).write_text(json.dumps({
        "schema_version": 1, "key": key, "micrograph": "mic_000", "files": {"../../../escaped": "00"},
        "columns": [], "rows": [], "optics": {"columns": [], "rows": []}, "qc": {}}))
    assert store.get(key, "mic_000") is None
    assert "unsafe path" in logs[-1]


@pytest.mark.parametrize("reuse", [True, False])
def test_stage_inputs_hands_the_cache_root_on_unless_the_request_turns_it_off(local_env, tmp_path, monkeypatch, reuse):
    from foldstack.cryoem.mrc import write_mrc
    from tests.conftest import load_handler
    from tests.cryoem.test_workflow_tasks import request_for, validate

    monkeypatch.setenv("FOLDSTACK_CACHE_ROOT", str(tmp_path / "cache"))
    movies = local_env["inputs"] / "movies"
    movies.mkdir()
    for i in range(2):
        write_mrc(movies / f"m{i}.mrcs", np.zeros((4, 160, 192), np.float32), 2.5)
    request = request_for(local_env, movies, reuse_cache=reuse)
    run_id = validate(local_env, request)["run_id"]
    result = load_handler("stage_inputs")({"workflow": "cryoem", "run_id": run_id, "request": request})
    assert result["cache_root"] == (str(tmp_path / "cache") if reuse else "")


# -- with RELION: the batch's four stages, twice --------------------------------------------

class _Counter:
    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        real = preprocess.run_relion

        def counting(args, **kwargs):
            self.calls.append(Path(args[0]).name)
            return real(args, **kwargs)

        monkeypatch.setattr(preprocess, "run_relion", counting)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cryoem-cache") / "data"
    simulate(root, TINY)
    return root


def _run(dataset: Path, scratch: Path, run_id: str, cache_root: Path | None, knobs: Knobs | None = None) -> Path:
    request = load_request(dataset)
    ran = preprocess.preprocess_movies(scratch, run_id, "batch-000", request, request.movies, knobs or Knobs(),
                                       str(cache_root) if cache_root else None)
    return ran["extract"]


def _outputs(folder: Path) -> dict[str, bytes]:
    """What later stages read from a batch (logs, done record and cache record apart)."""
    skip = {"extract.log", "extract.done.json", "cache.json"}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in skip}


def _unstamped(outputs: dict[str, bytes]) -> dict[str, bytes]:
    """The outputs less RELION's time stamp: it writes the time into every MRC header's
    labels (bytes 224-1023), the one thing two fresh runs of the same movies differ in."""
    return {k: v[:224] + bytes(800) + v[1024:] if k.endswith((".mrc", ".mrcs")) else v for k, v in outputs.items()}


def _statuses(folder: Path) -> dict[str, str]:
    return json.loads((folder / "cache.json").read_text())["micrographs"]


@needs_relion
def test_second_run_is_all_hits_runs_no_relion_and_matches_a_fresh_run(dataset, tmp_path, monkeypatch):
    counter = _Counter(monkeypatch)
    cache, scratch = tmp_path / "cache", tmp_path / "scratch"
    first = _run(dataset, scratch, "first", cache)
    assert counter.calls.count("relion_preprocess") == 1 and counter.calls.count("relion_run_motioncorr") == 1
    assert set(_statuses(first).values()) == {"miss"}
    assert len(list((cache / "cryoem" / "preprocess").glob("*/entry.json"))) == TINY.micrographs

    counter.calls.clear()
    second = _run(dataset, scratch, "second", cache, Knobs(classes_2d=7, max_drift_px=5.0))  # downstream knobs
    assert counter.calls == []  # every micrograph a hit: no RELION program ran
    assert set(_statuses(second).values()) == {"hit"}
    assert not (scratch / "second" / "motioncorr").exists()
    assert _outputs(second) == _outputs(first)
    assert _run(dataset, scratch, "second", cache) == second and counter.calls == []  # resumed: done, no lookups

    off = _run(dataset, scratch, "off", None)  # no cache: a fresh run, the same bytes
    assert set(_statuses(off).values()) == {"off"}
    assert _outputs(off) != _outputs(first)  # RELION's time stamps (if equal, the mask below is moot)
    assert _unstamped(_outputs(off)) == _unstamped(_outputs(first))

    # the QC record carries it on: curate's decisions (the manifest's micrographs)
    request = load_request(dataset)
    curated = refine.curate(scratch, "second", ["batch-000"], request, Knobs())
    decisions = json.loads((curated / "curation.json").read_text())["micrographs"]
    assert [d["cache"] for d in decisions] == ["hit"] * TINY.micrographs

    # another preprocessing knob: all misses
    counter.calls.clear()
    third = _run(dataset, scratch, "third", cache, Knobs(pick_threshold=2.5))
    assert set(_statuses(third).values()) == {"miss"} and "relion_autopick" in counter.calls


@needs_relion
def test_a_damaged_entry_is_a_miss_and_is_rewritten(dataset, tmp_path, monkeypatch):
    cache, scratch = tmp_path / "cache", tmp_path / "scratch"
    first = _run(dataset, scratch, "first", cache)
    entries = sorted((cache / "cryoem" / "preprocess").glob("*/entry.json"))
    marker = json.loads(entries[0].read_text())
    stack = entries[0].parent / "files" / f"Particles/MotionCorr/Movies/{marker['micrograph']}.mrcs"
    stack.write_bytes(stack.read_bytes()[:-100])  # cut short
    partial = json.loads(entries[1].read_text())
    entries[1].unlink()  # a writer that died before entry.json: partial

    counter = _Counter(monkeypatch)
    second = _run(dataset, scratch, "second", cache)
    statuses = _statuses(second)
    assert statuses[marker["micrograph"]] == "miss" and statuses[partial["micrograph"]] == "miss"
    assert list(statuses.values()).count("hit") == TINY.micrographs - 2
    assert counter.calls.count("relion_run_motioncorr") == 1  # on the two misses only
    assert len(json.loads((scratch / "second" / "motioncorr" / "batch-000" / "motion_qc.json").read_text())) == 2
    assert _unstamped(_outputs(second)) == _unstamped(_outputs(first))  # a mixed batch: the same bytes

    counter.calls.clear()
    third = _run(dataset, scratch, "third", cache)  # both entries were rewritten
    assert counter.calls == [] and set(_statuses(third).values()) == {"hit"}


@needs_relion
def test_a_cache_that_cannot_be_written_never_fails_the_step(dataset, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache root should be")
    folder = _run(dataset, tmp_path / "scratch", "run", blocker)
    assert set(_statuses(folder).values()) == {"miss"}
    assert capsys.readouterr().err.count("preprocess cache write failed") == 1  # logged once


def test_the_definition_hands_stage_inputs_cache_root_to_every_preprocess_job():
    import yaml

    repo = Path(__file__).resolve().parents[2]
    definition = json.loads((repo / "statemachines" / "rendered" / "cryoem.asl.json").read_text())
    stage = definition["States"]["StageInputs"]["ResultSelector"]
    assert stage["cache_root.$"] == "$.Payload.cache_root"
    batches = definition["States"]["PreprocessBatches"]
    assert batches["ItemSelector"]["cache.$"] == "$.staged.cache_root"
    jobs = [s for name, s in batches["ItemProcessor"]["States"].items() if name.startswith("Preprocess")
            and s.get("Type") == "Task"]
    assert jobs and all(s["Parameters"]["Parameters"]["cache.$"] == "$.cache" for s in jobs)
    spec = yaml.safe_load((repo / "statemachines" / "cryoem" / "jobs.yaml").read_text())["jobs"]["cryoem_preprocess"]
    assert spec["command"][spec["command"].index("--cache") + 1] == "Ref::cache" and spec["parameters"]["cache"] == ""
