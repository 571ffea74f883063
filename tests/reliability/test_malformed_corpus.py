"""Every malformed input in tests/fixtures/malformed/ is rejected with its
stable code (and, where the error is line-based, the line and record), by the parser,
by the Validate Input handler on local directories and on moto S3 (0 objects written),
by the workflow on the local engine (0 jobs submitted) and by local mode's runner
(0 executions started)."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from foldstack.core.errors import AccessDeniedError, FoldstackError, InputValidationError
from foldstack.core.fasta import FastaLimits, parse_fasta
from tests.conftest import files_under
from tests.reliability.helpers import (
    CORPUS,
    DUMMY_RUN_ID,
    all_keys,
    case_id,
    corpus_cases,
    empty_buckets,
    fasta_request,
    load_handler,
    load_manifest,
    request_case,
    substitute,
)

CASES = corpus_cases()
FASTA_CASES = corpus_cases("fasta")
validate = load_handler("validate_input")

# The categories of malformed input docs/reliability.md lists, mapped to the corpus categories that cover them.
REQUIRED = {
    "empty files": {"empty"},
    "no header": {"no_header"},
    "sequence before first header": {"sequence_before_header"},
    "empty records": {"empty_record", "empty_chain"},
    "duplicate or unsafe ids": {"duplicate_id", "unsafe_id", "empty_id", "reserved_id"},
    "gap characters": {"gap_character"},
    "internal stops": {"internal_stop"},
    "digits": {"digit_in_sequence"},
    "NUL and control bytes": {"control_character"},
    "binary data": {"binary_input"},
    "homoglyphs": {"non_ascii"},
    "over-limit lengths/records/bytes": {"too_long", "too_many_records", "too_large", "too_many_chains"},
    "gzip": {"compressed_input"},
    "wrong engine/preset": {"preset", "engine"},
    "URIs outside allowed prefixes": {"uri_outside", "uri_unsafe", "uri_scheme"},
}


def _print_counts() -> str:
    counts = Counter(c["category"] for c in CASES)
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


# -- the corpus itself ------------------------------------------------------------------------


def test_corpus_is_complete_small_and_reproducible():
    manifest = load_manifest()
    cases = manifest["cases"]
    print(f"\nmalformed corpus: {len(cases)} cases ({_print_counts()})")
    assert len(cases) >= 200
    categories = {c["category"] for c in cases}
    for need, have in REQUIRED.items():
        assert have & categories, f"no corpus case for {need}"
    names = {c["file"] for c in cases}
    assert len(names) == len(cases)
    on_disk = {f"{p.parent.name}/{p.name}" for sub in ("fasta", "requests") for p in (CORPUS / sub).iterdir()}
    assert on_disk == names, "corpus files and manifest disagree; run make_corpus.py"
    total = sum((CORPUS / n).stat().st_size for n in names)
    assert total < 2 * 1024 * 1024
    for c in cases:
        assert c["code"] and c["code"].replace("_", "").isalpha() and c["code"].islower()
    # the committed corpus is exactly what the committed generator makes
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert set(rendered) == names | {"manifest.json"}
    for name, data in rendered.items():
        assert (CORPUS / name).read_bytes() == data, f"{name} drifted from make_corpus.py"


# -- the parser -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", FASTA_CASES, ids=case_id)
def test_parser_rejects_with_stable_code_and_line(case):
    data = (CORPUS / case["file"]).read_bytes()
    with pytest.raises(InputValidationError) as info:
        parse_fasta(data, source="corpus.fasta", limits=FastaLimits(**case.get("limits", {})))
    err = info.value
    assert err.code == case["code"], str(err)
    assert err.details.get("line") == case["line"], str(err)
    assert err.details.get("record") == case["record"], str(err)
    assert err.details["source"] == "corpus.fasta"
    if case["line"] is not None:
        assert f"line {case['line']}" in str(err)
    assert err.to_dict()["error"] == "InputValidationError"
    json.dumps(err.to_dict())  # machine-readable as is


# -- the Validate Input handler, local directories ----------------------------------------------


def _expect(case, err: FoldstackError) -> None:
    assert err.code == case["code"], f"{case['file']}: {err.to_dict()}"
    expected_class = AccessDeniedError if case["code"] == "access_denied" else InputValidationError
    assert type(err) is expected_class
    if case["line"] is not None:
        assert err.details.get("line") == case["line"], err.to_dict()
    if case["record"] is not None:
        assert err.details.get("record") == case["record"], err.to_dict()


def _local_event(case, dirs, tmp_path):
    mapping = {"inputs": str(dirs["inputs"]), "outputs": str(dirs["outputs"]), "outside": str(tmp_path / "outside")}
    if case["kind"] == "fasta":
        path = dirs["inputs"] / Path(case["file"]).name
        path.write_bytes((CORPUS / case["file"]).read_bytes())
        return {"run_id": DUMMY_RUN_ID, "request": fasta_request(str(path), str(dirs["outputs"]))}
    body = request_case(case)
    for name, text in body["files"].items():
        (dirs["inputs"] / name).write_text(text)
    return {"run_id": DUMMY_RUN_ID, "request": substitute(body["request"], mapping)}


@pytest.mark.parametrize("case", [c for c in CASES if "local" in c.get("backends", ["local"])], ids=case_id)
def test_validate_handler_local_rejects_and_writes_nothing(case, local_env, tmp_path, monkeypatch):
    if case.get("limits"):
        monkeypatch.setenv("FOLDSTACK_LIMITS", json.dumps(case["limits"]))
    (tmp_path / "outside").mkdir()
    event = _local_event(case, local_env, tmp_path)
    inputs_before = {p: p.read_bytes() for p in files_under(local_env["inputs"])}
    with pytest.raises(FoldstackError) as info:
        validate(event)
    _expect(case, info.value)
    assert files_under(local_env["scratch"]) == []
    assert files_under(local_env["outputs"]) == []
    assert files_under(tmp_path / "outside") == []
    assert {p: p.read_bytes() for p in files_under(local_env["inputs"])} == inputs_before


# -- the Validate Input handler, moto S3 ----------------------------------------------------------


def _s3_params():
    out = []
    for c in CASES:
        if "s3" not in c.get("backends", ["s3"]):
            continue
        marks = []
        out.append(pytest.param(c, id=case_id(c), marks=marks))
    return out


@pytest.mark.parametrize("case", _s3_params())
@pytest.mark.slow
def test_validate_handler_s3_rejects_and_writes_nothing(case, moto_s3, monkeypatch):
    s3 = moto_s3
    if case.get("limits"):
        monkeypatch.setenv("FOLDSTACK_LIMITS", json.dumps(case["limits"]))
    mapping = {"inputs": "s3://lake/inputs", "outputs": "s3://lake/results", "outside": "s3://lake/other"}
    put: list[str] = []
    if case["kind"] == "fasta":
        key = f"inputs/{Path(case['file']).name}"
        s3.put_object(Bucket="lake", Key=key, Body=(CORPUS / case["file"]).read_bytes())
        put.append(key)
        event = {"run_id": DUMMY_RUN_ID, "request": fasta_request(f"s3://lake/{key}", "s3://lake/results")}
    else:
        body = request_case(case)
        for name, text in body["files"].items():
            s3.put_object(Bucket="lake", Key=f"inputs/{name}", Body=text.encode())
            put.append(f"inputs/{name}")
        event = {"run_id": DUMMY_RUN_ID, "request": substitute(body["request"], mapping)}
    try:
        try:
            validate(event)
        except FoldstackError as exc:
            _expect(case, exc)
        except Exception as exc:  # an untyped error is a failure of this test, not an error
            raise AssertionError(f"untyped {type(exc).__name__}: {exc}") from exc
        else:
            raise AssertionError(f"{case['file']} was accepted")
        # 0 objects written: the scratch bucket stays empty, the lake holds only the inputs
        assert all_keys(s3) == {"lake": sorted(put), "scratch": []}
    finally:
        for key in put:
            s3.delete_object(Bucket="lake", Key=key)


@pytest.mark.slow
def test_gzip_bomb_and_oversize_inputs_are_never_read_in_full(moto_s3):
    """A 64 MiB-inflating gzip and a 21 MB file: rejected from the first bytes / a ranged
    read, never decompressed or buffered whole."""
    import gzip

    s3 = moto_s3
    empty_buckets(s3)
    bomb = gzip.compress(b">a\n" + b"A" * (64 << 20), compresslevel=1, mtime=0)
    assert len(bomb) < 1 << 20
    s3.put_object(Bucket="lake", Key="inputs/bomb.fasta", Body=bomb)
    big = b">a\n" + (b"A" * 79 + b"\n") * (21 * 1024 * 1024 // 80)
    s3.put_object(Bucket="lake", Key="inputs/big.fasta", Body=big)
    for name, code in (("bomb.fasta", "compressed_input"), ("big.fasta", "too_large")):
        with pytest.raises(InputValidationError) as info:
            validate({"run_id": DUMMY_RUN_ID,
                      "request": fasta_request(f"s3://lake/inputs/{name}", "s3://lake/results")})
        assert info.value.code == code
    assert all_keys(s3)["scratch"] == []
    assert all_keys(s3)["lake"] == ["inputs/big.fasta", "inputs/bomb.fasta"]


# -- the workflow on the local engine: 0 jobs submitted, nothing written --------------------------


def _one_per_code(cases):
    seen, out = set(), []
    for c in cases:
        key = (c["code"], c["kind"])
        if key not in seen and "local" in c.get("backends", ["local"]):
            seen.add(key)
            out.append(c)
    return out


ENGINE_CASES = _one_per_code(CASES)


def _placeholders(runner) -> dict[str, str]:
    from foldstack.local.placeholders import local_values

    return local_values(runner.workflow.directory / "jobs.yaml", scratch_mount=runner.paths.scratch,
                        db_mount=runner.paths.db, weights_dir=runner.paths.weights)


@pytest.fixture(scope="module")
def engine_home(tmp_path_factory):
    from foldstack.local.runner import LocalRunner

    home = tmp_path_factory.mktemp("home")
    return LocalRunner(home)


@pytest.mark.slow
def test_workflow_rejects_before_any_job(engine_home, tmp_path):
    """Bypassing the client: the rendered fold ASL on the local engine fails in Validate
    Input for one case per error code, submits 0 Batch jobs and writes nothing."""
    from foldstack.local import LocalEngine

    runner = engine_home
    inputs, outputs, outside = runner.paths.inputs / "corpus", tmp_path / "out", tmp_path / "outside"
    inputs.mkdir(exist_ok=True)
    outputs.mkdir()
    outside.mkdir()
    engines: dict[str, LocalEngine] = {}
    jobs_submitted = 0
    codes, causes = [], []
    for n, case in enumerate(ENGINE_CASES):
        limits = json.dumps(case.get("limits", {}), sort_keys=True)
        if limits not in engines:
            env = runner.lambda_env(str(outputs))
            env["FOLDSTACK_LIMITS"] = FastaLimits(**json.loads(limits)).model_dump_json()
            env["FOLDSTACK_ALLOWED_INPUT_PREFIXES"] = str(inputs)
            engines[limits] = LocalEngine(
                runner._definition, jobs_yaml=runner.workflow.directory / "jobs.yaml", lambda_env=env,
                job_env={}, placeholders=_placeholders(runner), log_dir=tmp_path / "logs",
            )
        engine = engines[limits]
        event = _local_event(case, {"inputs": inputs, "outputs": outputs}, tmp_path)
        name = f"corpus-{n}"
        execution = engine.start_execution(name, {"run_id": name, "request": event["request"]})
        assert execution.wait(60) == "FAILED", case
        assert execution.error in ("InputValidationError", "AccessDeniedError"), (case, execution.error)
        message = json.loads(execution.cause)["errorMessage"]
        if case["line"] is not None:
            assert f"line {case['line']}" in message, message
        causes.append((case["code"], message))
        entered = [e.state_name for e in execution.history() if e.type == "TaskStateEntered"]
        assert "StageInputs" not in entered and "CleanupOnFailure" in entered, entered
        jobs_submitted += len(execution.batch_jobs())
        assert execution.runtime_errors == []
        codes.append(case["code"])
    print(f"\nlocal engine: {len(codes)} rejected executions, {jobs_submitted} Batch jobs submitted")
    assert jobs_submitted == 0
    assert files_under(runner.paths.scratch) == [] and files_under(outputs) == [] and files_under(outside) == []
    WORKFLOW_CAUSES.extend(causes)


WORKFLOW_CAUSES: list[tuple[str, str]] = []


@pytest.mark.slow
def test_workflow_failure_cause_carries_the_stable_code(engine_home, tmp_path):
    if not WORKFLOW_CAUSES:
        test_workflow_rejects_before_any_job(engine_home, tmp_path)
    missing = [(code, msg) for code, msg in WORKFLOW_CAUSES if code not in msg]
    assert missing == [], f"{len(missing)} of {len(WORKFLOW_CAUSES)} failure causes lack their code"


def test_local_runner_starts_no_execution(engine_home, tmp_path, monkeypatch):
    """`foldstack run --local` validates in the client: a bad input raises before any
    execution starts; no run record, no scratch, no output."""
    from foldstack.core.request import InlineRecord, RunRequest
    from foldstack.local import LocalEngine

    runner = engine_home
    started = []
    monkeypatch.setattr(LocalEngine, "start_execution", lambda self, *a, **k: started.append(a))
    monkeypatch.setattr(type(runner), "_start", lambda self, run: started.append(run))
    out = tmp_path / "out"
    n = 0
    for case in FASTA_CASES:
        if case.get("limits"):
            continue
        path = tmp_path / Path(case["file"]).name
        path.write_bytes((CORPUS / case["file"]).read_bytes())
        with pytest.raises(FoldstackError) as info:
            runner.submit(RunRequest(inputs=(str(path),), output_uri=str(out), engine="esmfold"))
        assert info.value.code == case["code"]
        n += 1
    with pytest.raises(InputValidationError):
        runner.submit(RunRequest(inputs=(InlineRecord(id="a", sequence="MKT-AYIAKQRQISF"),), output_uri=str(out),
                                 engine="esmfold"))
    print(f"\nlocal runner: {n + 1} rejected submissions, {len(started)} executions started")
    assert started == []
    assert files_under(runner.paths.runs) == [] and files_under(runner.paths.scratch) == []
    assert not out.exists()
