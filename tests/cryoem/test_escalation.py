"""Out-of-memory escalation between the cryoem GPU size classes: the rendered definition
(every GPU stage's class but the largest catches a memory failure and runs the stage again
on the next class, which the stages after it keep) and a local run in which the injector
kills the small class's 2D classification for memory, and the bias guard's two starts. The
jobs are stand-ins (a `foldstack` that does nothing): this tests the definition's routing,
not RELION. Seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from foldstack.cryoem.mrc import write_mrc
from foldstack.cryoem.submission import request_from_dataset
from foldstack.local.runner import LocalRunner
from foldstack.workflows.render import render_definition
from foldstack.workflows.specs import load_workflow
from tests.conftest import REPO
from tests.cryoem.test_workflow_tasks import OPTICS

GPU_STATES = ("Class2D", "InitialModelDeNovo", "Refine3D", "Refine3DGuard", "InitialModelGuardDeNovo")


@pytest.fixture(scope="module")
def definition():
    return render_definition(load_workflow("cryoem"))


@pytest.fixture(scope="module")
def classes():
    return list(yaml.safe_load((REPO / "statemachines" / "cryoem" / "jobs.yaml").read_text())["size_classes"])


@pytest.mark.parametrize("state", GPU_STATES)
def test_each_class_but_the_largest_escalates_on_out_of_memory(definition, classes, state):
    states = definition["States"]
    for c, bigger in zip(classes, classes[1:], strict=False):
        task = states[f"{state}_{c}"]
        assert task["Catch"][0] == {"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error",
                                    "Next": f"{state}Failure_{c}"}
        assert task["Catch"][-1]["Next"] == "CleanupOnFailure"
        parse = states[f"{state}Failure_{c}"]
        assert parse["Parameters"] == {"job.$": "States.StringToJson($.error.Cause)"}
        choice = states[parse["Next"]]
        assert choice["Default"] == "CleanupOnFailure" and choice["Choices"][0]["Next"] == f"{state}Escalate_{c}"
        text = json.dumps(choice["Choices"][0])
        for marker in ('"NumericEquals": 3', '"NumericEquals": 137', "*OutOfMemoryError*"):
            assert marker in text
        escalate = states[f"{state}Escalate_{c}"]
        assert escalate["Result"] == {"from": c, "to": bigger}
        use = states[escalate["Next"]]
        assert use["ResultPath"] == "$.validated.size_class" and use["Result"] == bigger
        assert use["Next"] == f"{state}_{bigger}"
    largest = states[f"{state}_{classes[-1]}"]
    assert all(c["Next"] == "CleanupOnFailure" for c in largest["Catch"])  # nothing bigger to go to


class KillFor2DMemory:
    """The first 2D classification on the small class is killed for memory."""

    def __init__(self):
        self.seen = []

    def before_batch_attempt(self, job, attempt):
        self.seen.append((job.job, job.size_class, job.parameters.get("stage"), attempt))
        if job.job == "cryoem_gpu" and job.size_class == "small" and job.parameters.get("stage") == "class2d":
            return "oom_kill"
        return None


def _stand_in_runner(tmp_path, injector=None) -> LocalRunner:
    """A local runner of the real cryoem definition whose jobs are stand-ins: a `foldstack`
    package first on the jobs' PYTHONPATH that does nothing (`python -m foldstack ...`
    exits 0), so every Batch job succeeds at once, overridden commands included."""
    shim = tmp_path / "shim" / "foldstack"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("")
    (shim / "__main__.py").write_text("# a stand-in job: succeeds, writes nothing\n")
    return LocalRunner(tmp_path / "home", workflow="cryoem", injector=injector,
                       job_env={"PYTHONPATH": str(tmp_path / "shim")})


def _dataset(tmp_path, **extra):
    dataset = tmp_path / "data"
    (dataset / "movies").mkdir(parents=True)
    for i in range(2):
        write_mrc(dataset / "movies" / f"m{i}.mrcs", np.zeros((4, 160, 192), np.float32), 2.5)
    (dataset / "request.json").write_text(json.dumps({"movies": "movies", "optics": OPTICS,
                                                      "particle_diameter": 130.0, "box_size": 64, **extra}))
    return dataset


def _entered(run):
    run.wait(120)
    return [e.get("state") for e in run.history() if str(e.get("type")).endswith("StateEntered")]


@pytest.mark.slow
def test_a_2d_job_killed_for_memory_moves_the_run_to_the_next_class(tmp_path):
    dataset = _dataset(tmp_path)
    injector = KillFor2DMemory()
    runner = _stand_in_runner(tmp_path, injector)
    entered = _entered(runner.submit(request_from_dataset(dataset, str(tmp_path / "out"))))
    assert entered.index("Class2D_small") < entered.index("Class2DEscalate_small") < entered.index("Class2D_medium")
    # the stages after it run on the class 2D escalated to
    assert "InitialModelDeNovo_medium" in entered and "Refine3D_medium" in entered
    assert not any(s in entered for s in ("InitialModelDeNovo_small", "Refine3D_small", "Class2D_large"))
    assert [s for s in injector.seen if s[2] == "class2d"] == [("cryoem_gpu", "small", "class2d", 1),
                                                               ("cryoem_gpu", "medium", "class2d", 1)]
    # the stand-in jobs wrote no results: the run fails at Collect Outputs, cleaned up
    assert "CleanupOnFailure" in entered


@pytest.mark.parametrize(("guard_denovo", "start", "other"), [
    (1, "InitialModelGuardDeNovo_small", "InitialModelGuard"),
    (0, "InitialModelGuard", "InitialModelGuardDeNovo"),
])
@pytest.mark.slow
def test_the_guard_starts_de_novo_on_the_gpu_class_only_when_the_knob_asks(tmp_path, guard_denovo, start, other):
    dataset = _dataset(tmp_path, reference="ref.mrc", knobs={"guard_denovo": guard_denovo})
    (dataset / "ref.mrc").write_bytes(b"a reference (the stand-in jobs do not read it)")
    runner = _stand_in_runner(tmp_path)
    entered = _entered(runner.submit(request_from_dataset(dataset, str(tmp_path / "out"))))
    assert "InitialModelFromReference" in entered and start in entered and other not in entered, entered
    assert entered.index(start) < entered.index("Refine3DGuard_small") < entered.index("PostProcess")
