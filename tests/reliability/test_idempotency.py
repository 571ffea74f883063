"""Idempotent submission. 1,000 duplicate submissions of one request,
spelled differently (reordered JSON keys, other URIs and URL-encoded names for the same
content, CRLF/lowercase/wrapped FASTA, inline instead of file, defaults written out,
different tags) give exactly one run id, and exactly one execution on the local
engine and in local mode."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest

from foldstack.core.fasta import FastaLimits
from foldstack.tasks.validate import validate_run
from tests.reliability.helpers import REPO, SEQ

SEQ2 = "GSHMLEDPVDAFQLALRHAGSEGVKVTLVLAA"
N = 1000


def _size_classes():
    from foldstack.workflows.specs import load_workflow

    return load_workflow("fold", REPO / "statemachines").jobs.size_classes


def _fasta_spellings(rng: random.Random) -> bytes:
    recs = [("t1", SEQ, "first target"), ("t2", SEQ2, "")]
    rng.shuffle(recs)
    nl = rng.choice(["\n", "\r\n", "\r"])
    width = rng.choice([None, 7, 10, 60])
    out = "\ufeff" if rng.random() < 0.3 else ""
    for rid, seq, desc in recs:
        seq = seq.lower() if rng.random() < 0.5 else seq
        seq += "*" if rng.random() < 0.3 else ""
        w = width or len(seq)
        out += f">{rid} {desc}".rstrip() + nl + nl.join(seq[i:i + w] for i in range(0, len(seq), w)) + nl
        out += nl * rng.randrange(3)
    return out.encode()


def _variant(rng: random.Random, store: dict[str, bytes]) -> dict:
    """One spelling of the same request; files it names are put in `store`."""
    name = rng.choice(["a.fasta", "copy%20of%20a.fasta", "A.FASTA", "sub/dir/a.fasta", "a%2Bb.fa", "x y.fasta",
                       "%E2%9C%93.fasta", "a.fasta.txt"])
    kind = rng.choice(["one_file", "two_files", "inline", "file_and_inline"])
    inputs: list = []
    if kind == "one_file":
        uri = f"s3://lake/inputs/{rng.randrange(10**6)}/{name}"
        store[uri] = _fasta_spellings(rng)
        inputs = [uri]
    elif kind == "two_files":
        for rid, seq in (("t1", SEQ), ("t2", SEQ2)):
            uri = f"s3://lake/inputs/{rid}-{rng.randrange(10**6)}-{name}"
            store[uri] = f">{rid}\n{seq.lower() if rng.random() < 0.5 else seq}\n".encode()
            inputs.append(uri)
        rng.shuffle(inputs)
    elif kind == "inline":
        inputs = [{"sequence": SEQ2 if rid == "t2" else SEQ, "id": rid} for rid in ("t2", "t1")]
        rng.shuffle(inputs)
    else:
        uri = f"s3://lake/inputs/{rng.randrange(10**6)}/{name}"
        store[uri] = f">t1\r\n{SEQ.lower()}*\r\n".encode()
        inputs = [uri, {"id": "t2", "sequence": " ".join(SEQ2[i:i + 10] for i in range(0, len(SEQ2), 10))}]
    body: dict = {"inputs": inputs, "output_uri": rng.choice(["s3://lake/results", "s3://lake/results/"])}
    optional = {"engine": "alphafold2", "preset": "monomer", "msa_tool": "jackhmmer", "reuse_msa": True,
                "schema_version": 1}
    for key, value in optional.items():
        if rng.random() < 0.5:
            body[key] = value
    if rng.random() < 0.7:
        body["tags"] = {f"k{rng.randrange(100)}": f"v{rng.randrange(100)}" for _ in range(rng.randrange(4))}
    items = list(body.items())
    rng.shuffle(items)
    return json.loads(json.dumps(dict(items)))  # reordered keys, through JSON text


def test_a_thousand_spellings_of_one_request_give_one_run_id():
    rng = random.Random(6)
    store: dict[str, bytes] = {}
    classes = _size_classes()
    ids, texts = set(), set()
    for _ in range(N):
        body = _variant(rng, store)
        texts.add(json.dumps(body))
        _, records, targets, run_id = validate_run(
            body, allowed_input_prefixes=("s3://lake/inputs",), allowed_output_prefixes=("s3://lake/results",),
            size_classes=classes, limits=FastaLimits(), reader=lambda uri, _max: store[uri],
        )
        ids.add(run_id)
    print(f"\nidempotency: {N} submissions in {len(texts)} distinct spellings -> {len(ids)} run id(s): {ids}")
    assert len(texts) > 900
    assert len(ids) == 1


def test_what_changes_the_result_changes_the_run_id():
    """The control: the id is not a constant; everything that changes the results changes it."""
    kw = dict(allowed_input_prefixes=("s3://lake/inputs",), allowed_output_prefixes=("s3://lake/results",),
              size_classes=_size_classes(), limits=FastaLimits())
    base = {"inputs": [{"id": "t1", "sequence": SEQ}, {"id": "t2", "sequence": SEQ2}], "output_uri": "s3://lake/results"}
    changes = [
        {}, {"engine": "esmfold"}, {"owner": "alice"}, {"reuse_msa": False}, {"msa_tool": "mmseqs2"},
        {"output_uri": "s3://lake/results/other"},
        {"inputs": [{"id": "t1", "sequence": SEQ[:-1] + "A"}, {"id": "t2", "sequence": SEQ2}]},
        {"inputs": [{"id": "t3", "sequence": SEQ}, {"id": "t2", "sequence": SEQ2}]},
        {"inputs": [{"id": "t1", "sequence": SEQ}]},
        {"inputs": [{"id": "t1", "sequence": f"{SEQ}:{SEQ2}"}], "preset": "multimer"},
    ]
    ids = [validate_run({**base, **c}, **kw)[3] for c in changes]
    assert len(set(ids)) == len(changes), ids


# -- the local engine: one execution per name ----------------------------------------------------------

WAIT_DEFINITION = json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "End": True}}})


@pytest.mark.slow
def test_a_thousand_concurrent_starts_make_one_execution():
    from foldstack.local import ExecutionAlreadyExists, LocalEngine

    engine = LocalEngine(WAIT_DEFINITION)
    run_id = "t1-2-0123456789abcdef"
    rng = random.Random(5)
    request = {"b": 1, "a": [1, 2], "c": {"y": 1, "x": 2}}
    results, errors = [], []
    lock = threading.Lock()

    def submit(k: int) -> None:
        items = list(request.items())
        rng.shuffle(items)
        try:
            ex = engine.start_execution(run_id, {"run_id": run_id, "request": dict(items)})
            with lock:
                results.append(ex)
        except Exception as exc:  # pragma: no cover - reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=lambda i=i: [submit(i * 125 + j) for j in range(125)]) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == N and len({id(r) for r in results}) == 1
    assert len(engine.list_executions()) == 1
    assert results[0].wait(30) == "SUCCEEDED"
    # after it ended, the name stays taken: a resubmission is refused and names the run
    with pytest.raises(ExecutionAlreadyExists) as info:
        engine.start_execution(run_id, {"run_id": run_id, "request": request})
    assert info.value.execution is results[0]
    with pytest.raises(ExecutionAlreadyExists):
        engine.start_execution(run_id, {"run_id": run_id, "request": {**request, "tags": {"x": "y"}}})
    assert len(engine.list_executions()) == 1
    print(f"\nlocal engine: {N} concurrent starts of one run id -> {len(engine.list_executions())} execution")


class _CrashEveryJob:
    """Fault injector: every Batch attempt crashes at once (no subprocess), so the run
    fails fast through Cleanup without needing model weights."""

    def before_batch_attempt(self, job, attempt):
        return "crash"

    def before_lambda(self, name, event):
        return None


@pytest.mark.slow
def test_local_mode_deduplicates_a_thousand_submissions(tmp_path, monkeypatch):
    from foldstack.core.request import RunRequest
    from foldstack.local import LocalEngine
    from foldstack.local.runner import LocalRunner

    starts = []
    real_start = LocalEngine.start_execution

    def counting_start(self, name, *a, **k):
        starts.append(name)
        return real_start(self, name, *a, **k)

    monkeypatch.setattr(LocalEngine, "start_execution", counting_start)
    import foldstack.local.placeholders as ph
    import foldstack.local.runner as lm

    if not hasattr(__import__("foldstack.local", fromlist=["x"]), "placeholder_values"):
        monkeypatch.setattr(lm.LocalRunner, "placeholders", lambda self: ph.local_values(
            self.workflow.directory / "jobs.yaml", scratch_mount=self.paths.scratch, db_mount=self.paths.db,
            weights_dir=self.paths.weights))
    runner = LocalRunner(tmp_path / "home", injector=_CrashEveryJob())
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(7)
    spellings = []
    for i in range(20):
        p = src / f"copy {i}.fasta"
        p.write_bytes(_fasta_spellings(rng))
        spellings.append(p)
    out = tmp_path / "out"
    runs, errors = [], []
    lock = threading.Lock()

    def submit(k: int) -> None:
        r = random.Random(k)
        body = {"inputs": [str(r.choice(spellings))], "output_uri": r.choice([str(out), str(out) + "/"]),
                "engine": "esmfold", "tags": {"n": str(k % 7)}}
        items = list(body.items())
        r.shuffle(items)
        try:
            run = runner.submit(RunRequest.model_validate(json.loads(json.dumps(dict(items)))))
            with lock:
                runs.append(run.run_id)
        except Exception as exc:  # pragma: no cover - reported below
            with lock:
                errors.append(repr(exc))

    # The first 20 submissions go one by one (each spelling's upload happens once, see the
    # xfail below for why concurrent first uploads are unsafe), the other 980 from 7 threads.
    first = None
    for k in range(20):
        body = {"inputs": [str(spellings[k])], "output_uri": str(out), "engine": "esmfold"}
        run = runner.submit(RunRequest.model_validate(body))
        first = first or run
        runs.append(run.run_id)
    threads = [threading.Thread(target=lambda i=i: [submit(20 + i * 140 + j) for j in range(140)]) for i in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(runs) == N and len(set(runs)) == 1
    assert starts == [runs[0]]
    assert sorted(p.name for p in runner.paths.runs.iterdir()) == [runs[0]]
    assert first.wait(60) == "FAILED"  # every job crashed (injected); the run went through cleanup
    assert not (runner.paths.scratch / runs[0]).exists()
    print(f"\nlocal mode: {N} submissions -> {len(set(runs))} run id, {len(starts)} execution started")


def test_local_mode_file_scheme_output_is_the_same_location(tmp_path, monkeypatch):
    from foldstack.core.request import RunRequest
    from foldstack.local.runner import LocalRunner

    monkeypatch.chdir(tmp_path)
    fasta = tmp_path / "a.fasta"
    fasta.write_text(f">a\n{SEQ}\n")
    runner = LocalRunner(tmp_path / "home")
    out = tmp_path / "out"
    plain = runner.prepare(RunRequest(inputs=(str(fasta),), output_uri=str(out), engine="esmfold"))
    scheme = runner.prepare(RunRequest(inputs=(str(fasta),), output_uri=f"file://{out}", engine="esmfold"))
    assert scheme[0].output_uri == plain[0].output_uri and scheme[1] == plain[1]
    assert not Path(tmp_path / "file:").exists()


def test_local_mode_never_uses_a_truncated_input_copy(tmp_path):
    import hashlib

    from foldstack.core.request import RunRequest
    from foldstack.local.runner import LocalRunner

    runner = LocalRunner(tmp_path / "home")
    full = f">t1\n{SEQ}\n>t2\n{SEQ2}\n".encode()
    src = tmp_path / "two.fasta"
    src.write_bytes(full)
    copy = runner.paths.inputs / hashlib.sha256(full).hexdigest()[:16] / "two.fasta"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(full[: full.index(b">t2")])  # what an interrupted copy leaves behind
    request, _targets, run_id = runner.prepare(RunRequest(inputs=(str(src),), output_uri=str(tmp_path / "out"),
                                                engine="esmfold"))
    assert Path(request.inputs[0]).read_bytes() == full
