"""Errors on the command line: one line `error: [code] message` on stderr (no markup eats
the code or user data), a JSON error object with `--json`, the documented exit code for
every command; the malformed-input corpus through `foldstack run --local`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.client.conftest import SEQ, fake_local_client
from tests.conftest import REPO, files_under
from tests.reliability.helpers import CORPUS, corpus_cases, request_case
from typer.testing import CliRunner

from foldstack.cli import app, local, main, runs
from foldstack.core.fasta import FastaLimits

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


# -- the malformed corpus through the CLI ------------------------------------------------------

# Request cases the `run`/`submit` command lines cannot express, with why.
NOT_ON_THE_COMMAND_LINE = {
    "inline": "inline records are an SDK/API input; the CLI takes FASTA files",
    "uri_outside": "local mode reads any file named on its command line: allowed prefixes are the cloud's rule",
    "uri_unsafe": "local mode reads any file named on its command line: URI rules are the cloud's",
    "uri_scheme": "local mode reads any file named on its command line: URI rules are the cloud's",
}
_FIELDS_WITHOUT_FLAG = {"schema_version", "unknown_field", "reuse_msa"}


def cli_args(case: dict, work: Path) -> list[str] | str:
    """The command line of a corpus case, or why it has none."""
    if case["kind"] == "fasta":
        path = work / "in" / Path(case["file"]).name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes((CORPUS / case["file"]).read_bytes())
        return ["run", "--local", str(path), "--engine", "esmfold", "--out", str(work / "out")]
    if case["category"] in NOT_ON_THE_COMMAND_LINE:
        return NOT_ON_THE_COMMAND_LINE[case["category"]]
    body = request_case(case)
    req = body["request"]
    if set(req) & _FIELDS_WITHOUT_FLAG:
        return f"no command-line flag for {sorted(set(req) & _FIELDS_WITHOUT_FLAG)}"
    if "output_uri" not in req:
        return "--out has a default: a request without output_uri cannot be spelled"
    if not isinstance(req["inputs"], list) or not req["inputs"]:
        return "FASTA arguments are a list of at least one (typer rejects none as a usage error)"
    if any(not isinstance(i, str) for i in req["inputs"]):
        return NOT_ON_THE_COMMAND_LINE["inline"]
    inputs = work / "req-inputs"
    inputs.mkdir(exist_ok=True)
    for name, text in body["files"].items():
        (inputs / name).write_text(text)
    files = [i.replace("{inputs}", str(inputs)) for i in req["inputs"]]
    options = []
    for key in ("engine", "preset", "msa_tool"):
        if key in req:
            options += [f"--{key.replace('_', '-')}", req[key]]
    if "owner" in req or "tags" in req:  # only `submit` has --owner/--tag; --env local is local mode
        extra = ["--owner", req["owner"]] if "owner" in req else []
        for key, value in (req.get("tags") or {}).items():
            extra += ["--tag", f"{key}={value}"]
        return ["submit", *files, "--env", "local", "--output", str(work / "out"), *options, *extra]
    return ["run", "--local", *files, "--out", str(work / "out"), *options]


@pytest.mark.slow
def test_every_corpus_case_shows_its_code_and_exits_2_writing_nothing(tmp_path, monkeypatch):
    """The whole corpus in one process: each case's `[code]` on stderr and exit 2, and the
    same code in the `--json` error object; nothing is written anywhere."""
    clients: dict[str, object] = {}
    home = tmp_path / "home"

    def client_for(limits: dict):
        key = json.dumps(limits, sort_keys=True)
        if key not in clients:
            clients[key] = fake_local_client(tmp_path, home=home, **limits)
        return clients[key]

    current: dict = {}
    monkeypatch.setattr(local, "make_local_client", lambda _home, _output: client_for(current["limits"]))
    monkeypatch.setattr(runs, "make_client", lambda env, _home=None, **_kw: client_for(current["limits"]))
    client_for({})  # the home, with its fake weights
    before = files_under(home)
    work = tmp_path / "work"
    work.mkdir()
    ran, skipped = 0, {}
    for case in corpus_cases():
        current["limits"] = case.get("limits", {})
        args = cli_args(case, work)
        if isinstance(args, str):
            skipped[case["file"]] = args
            continue
        code, stdout, stderr = invoke(*args)
        assert code == 2, (case, stdout, stderr)
        line = one_error_line(stderr)
        assert line.startswith(f"error: [{case['code']}] "), (case, stderr)
        if case["line"] is not None:
            assert f"line {case['line']}" in line, line
        code, stdout, stderr = invoke(*args, "--json")
        assert code == 2, (case, stdout, stderr)
        error = json.loads(stdout)
        assert error["code"] == case["code"] and error["error"] in ("InputValidationError", "AccessDeniedError")
        assert error["message"] and "error:" not in stderr
        ran += 1
    print(f"\ncorpus through the CLI: {ran} cases x 2 (text, --json); {len(skipped)} not expressible on a "
          f"command line: {sorted(set(skipped.values()))}")
    assert ran >= 280 and all(c["kind"] == "request" for c in corpus_cases() if c["file"] in skipped)
    assert files_under(home) == before  # only the fake weights: no input copy, run record or scratch
    assert not (work / "out").exists()


@pytest.mark.slow
def test_the_documented_check_gap_in_an_empty_home(tmp_path):
    """As a user types it, in a fresh process: an empty FOLDSTACK_HOME still gets the input's
    code (validation comes before the weights check), exit 2, nothing written."""
    (tmp_path / "in.fasta").write_text(">gapped\nMKT-AYIAKQRQISFVKSHFSRQLEERLGLIEV\n")
    env = {**os.environ, "FOLDSTACK_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "foldstack", "run", "--local", str(tmp_path / "in.fasta"),
                           "--engine", "esmfold", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: [gap_character] ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "line 1, record 'gapped'" in proc.stderr and "remove '-'" in proc.stderr
    assert files_under(tmp_path / "home") == [] and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_markup_like_user_data_is_printed_verbatim(fake_local, tmp_path):
    for header in ("[bold]x", "[red]y[/red]", "a[0]"):
        path = tmp_path / "m.fasta"
        path.write_text(f">{header} desc\n{SEQ}\n")
        code, _, stderr = invoke("run", "--local", str(path), "--engine", "esmfold", "--out", str(tmp_path / "o"))
        assert code == 2
        assert one_error_line(stderr).startswith(f"error: [unsafe_id] {path}, line 1: id '{header}' is not allowed")
    # ids are a safe alphabet, but tables and messages escape them anyway: a target named like a style
    path = tmp_path / "bold.fasta"
    path.write_text(f">bold\n{SEQ}\n>boom1\n{SEQ[::-1]}\n")
    code, stdout, stderr = invoke("run", "--local", str(path), "--engine", "esmfold", "--out", str(tmp_path / "o"))
    assert code == 1
    assert "targets bold,boom1" in one_error_line(stderr)


# -- option values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("option", "value", "allowed"), [
    ("--engine", "esmf", "alphafold2, esmfold"), ("--preset", "trimer", "monomer, multimer"),
    ("--msa-tool", "hhblits", "jackhmmer, mmseqs2")])
@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_wrong_option_value_is_one_line_with_the_allowed_values(fake_local, tmp_path, command, option, value,
                                                                    allowed):
    path = tmp_path / "a.fasta"
    path.write_text(f">a\n{SEQ}\n")
    args = ["run", "--local"] if command == "run" else ["submit", "--env", "local"]
    code, stdout, stderr = invoke(*args, str(path), option, value)
    assert code == 2
    assert one_error_line(stderr) == f"error: [invalid_request] {option} {value!r} is not one of: {allowed}"
    assert stderr.count("\n") == 1 and "pydantic" not in stderr and "validation error" not in stderr
    code, stdout, _ = invoke(*args, str(path), option, value, "--json")
    assert code == 2 and json.loads(stdout)["code"] == "invalid_request"


def test_request_model_errors_are_one_line_naming_the_field(fake_local, tmp_path):
    path = tmp_path / "a.fasta"
    path.write_text(f">a\n{SEQ}\n")
    code, _, stderr = invoke("submit", str(path), "--env", "local", "--engine", "esmfold", "--owner", "a b")
    assert code == 2
    line = one_error_line(stderr)
    assert line.startswith("error: [invalid_request] invalid run request: owner: ") and "\n" not in line.strip()


def test_usage_errors_found_before_a_command_runs_are_one_line_too(capsys):
    for argv, fragment in ((["run"], "Missing argument"), (["run", "x.fasta", "--bogus"], "No such option: --bogus")):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert one_error_line(err).startswith("error: [usage] ") and fragment in err
    with pytest.raises(SystemExit) as info:
        main(["logs", "--json"])
    out = capsys.readouterr().out
    assert info.value.code == 2 and json.loads(out)["code"] == "usage"


# -- exit codes, command by command ----------------------------------------------------------------


@pytest.mark.slow
def test_exit_codes_of_the_local_commands(fake_local, tmp_path):
    ok, boom = tmp_path / "ok.fasta", tmp_path / "boom.fasta"
    ok.write_text(f">a1\n{SEQ}\n>b2\n{SEQ[::-1]}\n")
    boom.write_text(f">boom1\n{SEQ}\n")
    out = ["--out", str(tmp_path / "out")]
    empty = tmp_path / "empty-home"

    # run --local: 0 ok, 1 failed run, 2 usage / input / not installed
    code, stdout, stderr = invoke("run", "--local", str(ok), "--engine", "esmfold", *out)
    assert code == 0, stderr
    assert "a1: mean pLDDT" in stdout and "results:" in stdout
    run_id = next(ln.split()[1] for ln in stderr.splitlines() if ln.startswith("run "))
    code, stdout, stderr = invoke("run", "--local", str(boom), "--engine", "esmfold", *out)
    assert code == 1
    line = one_error_line(stderr)
    assert line.startswith("error: [step_failed] run ")
    assert line.endswith("FAILED in predict of target boom1: out of luck")
    assert "\n  log: " in stderr and "\n  see: foldstack logs " in stderr
    assert '"JobId"' not in stderr and "Attempts" not in stderr  # never the Batch job description
    failed_id = line.split()[3]
    code, stdout, _ = invoke("run", "--local", str(boom), "--engine", "esmfold", *out, "--json")
    doc = json.loads(stdout)
    assert code == 1 and doc["status"] == "FAILED" and doc["code"] == "step_failed"
    assert doc["failure"]["message"] == "out of luck" and Path(doc["failure"]["log"]).is_file()
    for args, want in ((["run", str(ok)], "usage"),
                       (["run", "--local", str(ok), "--home", str(empty), "--engine", "esmfold", *out],
                        "weights_missing"),
                       (["run", "--local", str(tmp_path / "missing.fasta"), "--engine", "esmfold", *out], None)):
        code, _, stderr = invoke(*args)
        assert code == 2, stderr
        assert want is None or one_error_line(stderr).startswith(f"error: [{want}] ")
        code, stdout, _ = invoke(*args, "--json")
        assert code == 2 and (want is None or json.loads(stdout)["code"] == want)
    assert "foldstack demo-data --home" in invoke("run", "--local", str(ok), "--home", str(empty), *out)[2]

    env = ["--env", "local"]
    cases = [
        (["status", run_id], 0, None), (["status", "nope-1-0000"], 2, "run_not_found"),
        (["status", failed_id], 0, None),
        (["wait", run_id], 0, None), (["wait", failed_id], 1, "step_failed"), (["wait", "nope-1-0000"], 2, None),
        (["logs", run_id], 0, None), (["logs", run_id, "predict", "a1"], 0, None),
        (["logs", "nope-1-0000"], 2, "run_not_found"), (["logs", run_id, "msa"], 2, "run_not_found"),
        (["results", run_id, "--dir", str(tmp_path / "dl")], 0, None),
        # a failed run still publishes its manifest (and what folded: nothing here)
        (["results", failed_id, "--dir", str(tmp_path / "dl")], 0, None),
        (["cancel", "nope-1-0000"], 2, "run_not_found"),
        (["list"], 0, None), (["list", "--since", "yesterday"], 2, "invalid_request"),
        (["doctor"], 2, "invalid_request"),
        (["submit", str(tmp_path / "missing.fasta")], 2, None), (["submit", str(ok), "--tag", "novalue"], 2, None),
    ]
    for args, want, error_code in cases:
        code, stdout, stderr = invoke(*args, *env)
        assert code == want, (args, stdout, stderr)
        if error_code and want in (2, 3):
            assert one_error_line(stderr).startswith(f"error: [{error_code}] "), (args, stderr)
        if args[0] in ("wait", "status") and args[1] == failed_id:
            assert "out of luck" in one_error_line(stderr)
        code, stdout, _ = invoke(*args, *env, "--json")
        assert code == want, (args, stdout)
        doc = json.loads(stdout)
        if error_code:
            assert doc["code"] == error_code, (args, doc)
    code, stdout, _ = invoke("logs", run_id, *env)
    assert "fake predict for target b2" in stdout
    code, stdout, _ = invoke("list", *env)
    assert run_id in stdout and "esmfold" in stdout and str(fake_local) in " ".join(stdout.split())


@pytest.mark.slow
def test_wait_timeout_is_3_then_cancel(fake_local, tmp_path):
    slow = tmp_path / "slow.fasta"
    slow.write_text(f">slow1\n{SEQ}\n")
    client = fake_local_client(tmp_path)  # the same home the CLI's local clients use
    run = client.submit(str(slow), engine="esmfold")
    code, stdout, _ = invoke("wait", run.run_id, "--env", "local", "--timeout", "0.3", "--json")
    assert code == 3 and json.loads(stdout)["status"] == "RUNNING"
    code, stdout, _ = invoke("cancel", run.run_id, "--env", "local", "--json")
    assert code == 0 and json.loads(stdout)["status"] in ("ABORTED", "FAILED")
    code, stdout, stderr = invoke("wait", run.run_id, "--env", "local")
    assert code == 1


@pytest.mark.slow
def test_verbose_shows_the_task_log_lines_and_default_does_not(fake_local, tmp_path):
    path = tmp_path / "v.fasta"
    path.write_text(f">v1\n{SEQ}\n")
    args = ["run", "--local", str(path), "--engine", "esmfold", "--out", str(tmp_path / "o")]
    quiet = runner.invoke(app, args)
    assert quiet.exit_code == 0 and '{"task"' not in quiet.output
    loud = runner.invoke(app, [*args[:-1], str(tmp_path / "o2"), "-v"])
    assert loud.exit_code == 0 and '{"task": "validate_input"' in loud.stderr


# -- cloud without configuration -------------------------------------------------------------------

CLOUD_COMMANDS = [["submit", "x.fasta"], ["status", "r"], ["wait", "r"], ["logs", "r", "predict", "t"],
                  ["results", "r"], ["cancel", "r"], ["list"], ["config", "show"], ["doctor"]]


def _no_aws(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FOLDSTACK_ENV", raising=False)


@pytest.mark.parametrize("command", CLOUD_COMMANDS, ids=lambda c: c[0] if c[0] != "config" else "config-show")
@pytest.mark.slow
def test_cloud_commands_without_configuration_exit_4_at_once(command, tmp_path, monkeypatch):
    _no_aws(monkeypatch, tmp_path)
    (tmp_path / "x.fasta").write_text(f">a\n{SEQ}\n")
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    code, stdout, stderr = invoke(*command, "--env", "prod")
    assert time.monotonic() - started < 2
    assert code == 4, stderr
    line = one_error_line(stderr)
    assert line.startswith("error: [no_credentials] ") and "AWS_PROFILE" in line and "AWS_REGION" in line
    assert "--env local" in line
    code, stdout, _ = invoke(*command, "--env", "prod", "--json")
    assert code == 4 and json.loads(stdout)["code"] == "no_credentials"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    code, _, stderr = invoke(*command, "--env", "prod")
    assert code == 4 and one_error_line(stderr).startswith("error: [no_credentials] no AWS credentials were found")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    code, _, stderr = invoke(*command, "--env", "prod")
    assert code == 4 and one_error_line(stderr).startswith("error: [no_region] ")


@pytest.mark.slow
def test_cloud_without_configuration_in_a_fresh_process_is_under_2_seconds(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "PYTHONPATH": str(REPO / "src")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "foldstack", "status", "r-1-0", "--env", "prod"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    elapsed = time.monotonic() - started
    print(f"\nno AWS configuration: exit {proc.returncode} after {elapsed:.2f} s")
    assert proc.returncode == 4 and proc.stderr.startswith("error: [no_credentials] "), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert elapsed < 2


@pytest.mark.slow
def test_missing_ssm_configuration_is_4_too(aws):
    code, stdout, _ = invoke("config", "show", "--env", "nowhere", "--json")
    assert code == 4 and json.loads(stdout)["error"] == "ConfigurationError"
    code, _, stderr = invoke("status", "r", "--env", "nowhere")
    assert code == 4 and "missing SSM parameters" in one_error_line(stderr)


def test_limits_from_the_corpus_are_honoured_by_the_client(tmp_path):
    client = fake_local_client(tmp_path, max_records=2)
    assert client.limits == FastaLimits(max_records=2)


def test_an_unexpected_error_is_one_line_exit_1_and_the_traceback_on_request(monkeypatch):
    def broken(env, home=None, **_kw):
        raise RuntimeError("something [odd] happened")

    monkeypatch.setattr(runs, "make_client", broken)
    code, _, stderr = invoke("status", "r", "--env", "x")
    assert code == 1 and one_error_line(stderr) == (
        "error: [internal_error] RuntimeError: something [odd] happened "
        "(unexpected; FOLDSTACK_DEBUG=1 shows the traceback)")
    assert "Traceback" not in stderr
    code, stdout, _ = invoke("status", "r", "--env", "x", "--json")
    assert code == 1 and json.loads(stdout) == {"error": "RuntimeError", "code": "internal_error",
                                                "message": "something [odd] happened"}
    monkeypatch.setenv("FOLDSTACK_DEBUG", "1")
    code, _, stderr = invoke("status", "r", "--env", "x")
    assert code == 1 and "Traceback" in stderr
