"""Local mode as a durable engine: a driver stopped by SIGINT, SIGTERM or SIGKILL
during MSA or Predict leaves no RUNNING run, no job process and no scratch but the
finished targets' step outputs, and running
the same request again resumes from finished work; one execution per run id across
processes; cancel from another process; paths that would destroy data, and inputs
that are not regular files, refused with a code at once; corrupt records; a full disk.

Real driver processes run real local runs; the jobs are `durable_step.py` (milliseconds,
with a hook that holds a step so the signal lands while its job runs)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import time

import pytest
from typer.testing import CliRunner

from foldstack.core.errors import InputValidationError
from foldstack.core.request import RunRequest
from foldstack.local import records
from foldstack.local.driver import DriverIdentity
from tests.conftest import files_under
from tests.local.conftest import live_group_members, until

# (signal, phase, driver): every signal in both phases, foreground (`foldstack run --local`)
# and detached (`submit(detach=True)`) drivers both covered
CASES = [
    ("SIGINT", "msa", "foreground"),
    ("SIGTERM", "msa", "detached"),
    ("SIGKILL", "msa", "detached"),
    ("SIGINT", "predict", "detached"),
    ("SIGTERM", "predict", "foreground"),
    ("SIGKILL", "predict", "foreground"),
]


def _events(local, run_id):
    return records.read_events(local.home / "runs" / run_id / "events.jsonl")


def _pgids(procs):
    """The process groups of the run's live jobs (``procs/<pid>.json``); a job that ends
    between the listing and the read removes its record, and is no longer one of them."""
    groups = []
    for record in procs.glob("*.json"):
        try:
            groups.append(json.loads(record.read_text())["pgid"])
        except FileNotFoundError:
            continue
    return groups


@pytest.fixture
def sigint_as_at_a_terminal():
    """The drivers this test starts get SIGINT's default disposition, as a command typed at a
    terminal does. Started from a shell's background job (`.ci/run &`), the test process
    inherits SIGINT ignored, every child would too, and the driver rightly leaves an ignored
    SIGINT alone (driver._install)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(("signame", "phase", "mode"), CASES, ids=["-".join(c) for c in CASES])
@pytest.mark.slow
def test_driver_stopped_during_a_step_leaves_nothing_running_and_resumes(local, signame, phase, mode,
                                                                          sigint_as_at_a_terminal):
    sleep = "msa:b" if phase == "msa" else "predict:*"
    proc = None
    if mode == "foreground":
        proc = local.foreground(sleep)
        run_id = until(lambda: proc.stdout.readline(), 60, "the driver's run id")
        run_id = json.loads(run_id)["run_id"]
    else:
        run = local.runner(sleep).submit(local.request, detach=True)
        run_id = run.run_id
        assert not run.existed

    # the held job is running (its process group recorded), and the history shows the state
    held = "msa-b" if phase == "msa" else "predict-a"
    until(lambda: local.started(held), 60, f"the {held} job")
    if phase == "msa":
        until(lambda: local.done("msa-a"), 30, "msa of a")
    state = "Msa" if phase == "msa" else "Predict_"  # (Predict_<size class>)
    until(lambda: any(e["type"] == "TaskStateEntered" and e["state"].startswith(state)
                      for e in _events(local, run_id)), 10, f"{state} in the history")
    record = local.record(run_id)
    assert record["status"] == "RUNNING"
    identity = DriverIdentity.from_record(record["driver"])
    assert identity.pid != os.getpid() and identity.start_time and identity.alive()
    procs = local.home / "runs" / run_id / "procs"
    pgids = until(lambda: _pgids(procs), 10, "job groups")
    assert live_group_members(pgids)

    os.kill(identity.pid, getattr(signal, signame))
    if proc is not None:
        proc.wait(60)
        stderr = proc.stderr.read()
    else:
        until(lambda: not identity.alive(), 60, "the driver to exit")
        stderr = (local.home / "runs" / run_id / "driver.log").read_text()

    raw = local.record(run_id)
    reader = local.runner()
    if signame == "SIGKILL":
        assert raw["status"] == "RUNNING"  # nobody could record anything: the next read finds it
        if phase == "msa":
            assert reader.cancel(run_id) == "ABORTED"  # (cancel no longer refuses a dead driver's run)
        else:
            assert reader.attach(run_id).wait(timeout=30) == "ABORTED"  # wait returns
        final = local.record(run_id)
        assert final["cause"].startswith("interrupted: driver exited")
    else:
        final = raw  # recorded by the stopping driver itself
        assert final["cause"] == f"interrupted: {signame}"
        assert "To resume, run the same command again" in stderr
    assert final["status"] == "ABORTED" and final["error"] == "Interrupted"
    assert final["cleanup"]["msa_cached"] == (1 if phase == "msa" else 2)  # finished MSAs kept
    assert live_group_members(pgids) == [] and list(procs.glob("*.json")) == []
    # scratch cleaned: only the finished targets' step outputs stay, for the next attempt
    scratch = local.home / "scratch" / run_id
    kept = {"/".join(p.relative_to(scratch).parts[:2]) for p in files_under(scratch)}
    assert kept == ({"msa/a"} if phase == "msa" else {"msa/a", "msa/b"})
    assert not (local.out / run_id).exists()
    assert [r["status"] for r in reader.list_runs()] == ["ABORTED"]

    # the same request again: a new execution that does not recompute finished MSAs
    again = local.runner().submit(local.request, detach=mode == "detached")
    assert again.run_id == run_id and not again.existed
    assert again.wait(60) == "SUCCEEDED", local.record(run_id)
    record = local.record(run_id)
    assert record["execution"] == 2 and record["previous"][-1]["status"] == "ABORTED"
    if phase == "msa":
        assert local.starts() == {"msa-a": 1, "msa-b": 2, "predict-a": 1, "predict-b": 1}
    else:
        assert local.starts() == {"msa-a": 1, "msa-b": 1, "predict-a": 2, "predict-b": 2}
    assert not (local.home / "scratch" / run_id).exists()
    assert json.loads((local.out / run_id / "manifest.json").read_text())["run_id"] == run_id


@pytest.mark.slow
def test_two_processes_submitting_the_same_request_make_one_execution(local):
    first, second = local.foreground("msa:*:2"), local.foreground("msa:*:2")
    outs = []
    for proc in (first, second):
        stdout, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 0, stderr
        lines = [json.loads(line) for line in stdout.splitlines()]
        outs.append({**lines[0], **lines[1]})
    assert [o["status"] for o in outs] == ["SUCCEEDED", "SUCCEEDED"]
    assert outs[0]["run_id"] == outs[1]["run_id"]
    assert sorted(o["existed"] for o in outs) == [False, True]  # one drove it, the other followed
    assert local.starts() == {"msa-a": 1, "msa-b": 1, "predict-a": 1, "predict-b": 1}
    record = local.record(outs[0]["run_id"])
    assert record["execution"] == 1 and record["previous"] == []
    driver = next(o["pid"] for o in outs if not o["existed"])
    assert record["driver"]["pid"] == driver


@pytest.mark.slow
def test_cancel_from_another_process_stops_and_cleans_up(local):
    run = local.runner("msa:*").submit(local.request, detach=True)
    until(lambda: local.started("msa-a") and local.started("msa-b"), 60, "the msa jobs")
    pgids = _pgids(local.home / "runs" / run.run_id / "procs")
    assert local.runner().cancel(run.run_id, "enough") == "ABORTED"
    record = local.record(run.run_id)
    assert (record["error"], record["cause"]) == ("Cancelled", "enough")
    assert live_group_members(pgids) == [] and not (local.home / "scratch" / run.run_id).exists()


@pytest.mark.slow
def test_in_process_run_logs_tasks_to_a_file_and_records_its_driver(local, capfd):
    log = logging.getLogger("foldstack.task")
    before = (list(log.handlers), log.propagate)
    runner = local.runner()
    run = runner.submit(local.request)
    assert run.wait(60) == "SUCCEEDED"
    out, err = capfd.readouterr()
    assert '"task"' not in out + err  # the Lambda tasks' JSON lines are not on the terminal ...
    tasks = (local.home / "runs" / run.run_id / "logs" / "tasks.log").read_text()
    assert '"task": "validate_input"' in tasks and '"task": "cleanup"' in tasks  # ... but in tasks.log
    assert (list(log.handlers), log.propagate) == before
    record = run.record()
    assert DriverIdentity.from_record(record["driver"]) == DriverIdentity.current()
    # the same runner again: the same run; another runner: the recorded run, nothing runs
    assert runner.submit(local.request).existed and local.runner().submit(local.request).existed
    assert local.starts() == {"msa-a": 1, "msa-b": 1, "predict-a": 1, "predict-b": 1}


# ------------------------------------------------------------------ paths and inputs


@pytest.mark.parametrize("where", ["scratch", "runs", "home", "cache/x", "link-to-scratch"])
def test_an_output_inside_the_home_is_refused_before_anything_is_written(local, tmp_path, where):
    home = local.home
    if where == "link-to-scratch":
        (home / "scratch").mkdir(parents=True, exist_ok=True)
        out = tmp_path / "innocent"
        out.symlink_to(home / "scratch")
    else:
        out = home if where == "home" else home / where
    runner = local.runner()
    request = local.request.model_copy(update={"output_uri": str(out)})
    with pytest.raises(InputValidationError) as info:
        runner.submit(request)
    assert info.value.code == "output_inside_home" and "\n" not in str(info.value)
    assert files_under(home / "runs") == [] and files_under(home / "inputs") == []


@pytest.mark.parametrize("kind", ["fifo", "directory", "missing", "dangling-link"])
def test_inputs_that_are_not_regular_files_are_refused_at_once(local, tmp_path, kind):
    path = tmp_path / f"in-{kind}.fasta"
    code = "input_not_regular"
    if kind == "fifo":
        os.mkfifo(path)  # opening it would block forever
    elif kind == "directory":
        path.mkdir()
    elif kind == "missing":
        code = "input_not_found"
    else:
        path.symlink_to(tmp_path / "gone.fasta")
        code = "input_not_found"
    runner = local.runner()
    request = local.request.model_copy(update={"inputs": (str(local.fasta), str(path))})
    started = time.monotonic()
    with pytest.raises(InputValidationError) as info:
        runner.submit(request)
    assert time.monotonic() - started < 1.0
    assert info.value.code == code and str(path) in str(info.value)
    assert files_under(local.home / "runs") == [] and files_under(local.home / "inputs") == []


def test_the_cli_rejects_them_with_exit_2(tmp_path):
    from foldstack.cli import app
    from tests.client.conftest import install_fake_data

    # Only the installed check's files: both inputs are refused before a run starts, so the
    # real demo data (a session build of tens of seconds) would add nothing here.
    demo_home = install_fake_data(tmp_path / "home")
    fifo = tmp_path / "pipe.fasta"
    os.mkfifo(fifo)
    ok = tmp_path / "ok.fasta"
    ok.write_text(">a\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ\n")
    cases = [([str(fifo)], tmp_path / "out", "input_not_regular"),
             ([str(ok)], demo_home / "scratch", "output_inside_home")]
    for inputs, out, code in cases:
        started = time.monotonic()
        result = CliRunner().invoke(app, ["run", "--local", *inputs, "--engine", "esmfold", "--home", str(demo_home),
                                          "--out", str(out)])
        assert time.monotonic() - started < 1.0
        assert result.exit_code == 2 and code in " ".join(result.output.split()), result.output


# ------------------------------------------------------------------ records


@pytest.mark.slow
def test_a_corrupt_record_is_reported_for_that_run_only(local):
    from foldstack.client import Client

    runner = local.runner()
    run = runner.submit(local.request)
    assert run.wait(60) == "SUCCEEDED"
    bad = local.home / "runs" / "zz-1-0123456789abcdef"
    bad.mkdir()
    (bad / "run.json").write_text('{"run_id": "zz-1-0123456789abcdef", "status": "RUN')  # torn
    listed = {r["run_id"]: r for r in local.runner().list_runs()}
    assert listed[run.run_id]["status"] == "SUCCEEDED"
    assert listed[bad.name]["status"] == "UNKNOWN" and "not valid JSON" in listed[bad.name]["cause"]
    client = Client.local(runner=local.runner())
    assert sorted((r.run_id, r.status) for r in client.runs()) == sorted(
        [(run.run_id, "SUCCEEDED"), (bad.name, "UNKNOWN")])


@pytest.mark.slow
def test_a_full_disk_at_the_end_never_leaves_the_run_running(local, monkeypatch):
    from foldstack import storage

    real = storage.write_pointer
    failures = {"left": 3}

    def full_disk(uri, text):
        if '"status": "RUNNING"' not in text and uri.endswith("run.json") and failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(uri, text)

    monkeypatch.setattr(storage, "write_pointer", full_disk)
    monkeypatch.setattr(records, "_sleep", lambda s: None)
    run = local.runner().submit(local.request)
    assert run.wait(60) == "SUCCEEDED"
    assert failures["left"] == 0 and local.record(run.run_id)["status"] == "SUCCEEDED"  # retried until written
    assert [p.name for p in (local.home / "runs" / run.run_id).glob(".*")] == []  # no temp file left

    # the disk stays full past every retry: the last good record stays; reads report the truth
    other = RunRequest(inputs=(str(local.fasta),), output_uri=str(local.out), engine="esmfold")
    failures["left"] = 10**6
    run = local.runner().submit(other)
    assert run.wait(60) == "SUCCEEDED"  # what this process knows
    assert local.record(run.run_id)["status"] == "RUNNING"  # (still the last good record on disk)
    failures["left"] = 0  # space again: the next read writes the end
    assert run.status == "SUCCEEDED" and local.record(run.run_id)["status"] == "SUCCEEDED"

    # and a driver that gave up and exited: the next reader elsewhere records the run
    third = RunRequest(inputs=(str(local.fasta),), output_uri=str(local.out / "3"), engine="esmfold")
    failures["left"] = 10**6
    run = local.runner().submit(third)
    run._drive.wait(60)
    assert local.record(run.run_id)["status"] == "RUNNING"
    failures["left"] = 0
    recorded = local.runner().describe(run.run_id)  # another runner: the lock is free, nobody drives it
    assert recorded["status"] == "SUCCEEDED" and "results published" in recorded["note"]
    assert local.record(run.run_id)["status"] == "SUCCEEDED"
