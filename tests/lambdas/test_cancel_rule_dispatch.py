"""The event the stopped-execution rule (terraform/modules/workflow/cancel_cleanup.tf) sends
the shared cleanup Lambda names the workflow of the stopped execution, and the Lambda's
dispatch (foldstack.workflows.dispatch) hands it to that workflow's cleanup: fold's takes it
with the `workflow` field stripped (its CleanupEvent forbids unknown keys), cryoem's gets it
as is. The template is read from the Terraform source, so a change there shows up here."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from tests.conftest import REPO
from tests.lambdas.test_cleanup_attempts import KEPT, RUN, leave_a_failed_attempt, local_files
from tests.lambdas.test_handlers import load_handler

from foldstack.core.errors import InputValidationError

RULE = REPO / "terraform" / "modules" / "workflow" / "cancel_cleanup.tf"
cleanup = load_handler("cleanup")


def rule_event(workflow: str, name: str, status: str, stopped_ms: int) -> dict:
    """What the rule's input transformer sends for a status change of `workflow`'s
    execution `name`: Terraform fills ${var.workflow_name}, EventBridge the <paths>."""
    text = RULE.read_text()
    paths = dict(re.findall(r'(\w+)\s*=\s*"\$\.detail\.(\w+)"', text))
    template = json.loads(re.search(r"input_template = (\".*\")\n", text).group(1))
    assert "${var.workflow_name}" in template, "the rule's event names its workflow"
    detail = {"name": name, "status": status, "stopDate": stopped_ms}
    template = template.replace("${var.workflow_name}", workflow)
    for var, field in paths.items():
        template = template.replace(f"<{var}>", str(detail[field]))
    return json.loads(template)


def test_the_rule_event_names_the_workflow_and_the_stopped_execution():
    event = rule_event("cryoem", f"{RUN}-a2", "TIMED_OUT", 1551225151881)
    assert event == {"workflow": "cryoem", "execution_name": f"{RUN}-a2", "status": "TIMED_OUT",
                     "stopped_at": 1551225151881, "failed": True}


def test_a_fold_rule_event_reaches_folds_cleanup_without_its_workflow_field(local_env):
    root = str(local_env["scratch"])
    leave_a_failed_attempt(root)
    stopped = time.time() + 1
    later = local_env["scratch"] / RUN / "input" / "targets" / "b.fasta"  # a retry staged it after the stop
    later.write_text(">b\nMKV\n")
    os.utime(later, (stopped + 5, stopped + 5))

    result = cleanup(rule_event("fold", f"{RUN}-a2", "ABORTED", int(stopped * 1000)))
    # fold's CleanupEvent forbids unknown keys: this result means `workflow` was stripped,
    # the run id came from the execution name and stopped_at kept the later attempt's file
    assert result["run_id"] == RUN and result["kept_targets"] == 3
    assert local_files(local_env) == sorted([*KEPT, "input/targets/b.fasta"])


def test_a_rule_event_of_an_unknown_workflow_is_refused_not_sent_to_fold(local_env):
    leave_a_failed_attempt(str(local_env["scratch"]))
    with pytest.raises(InputValidationError):
        cleanup(rule_event("no_such_workflow", f"{RUN}-a2", "ABORTED", int(time.time() * 1000)))
    assert "input/request.json" in local_files(local_env)  # nothing was cleaned


def test_a_cryoem_rule_event_reaches_cryoems_cleanup(local_env):
    run = "em-1-0123456789abcdef"
    (local_env["scratch"] / run / "input").mkdir(parents=True)
    (local_env["scratch"] / run / "input" / "run.json").write_text("{}")
    result = cleanup(rule_event("cryoem", f"{run}-a2", "ABORTED", int((time.time() + 1) * 1000)))
    assert result["run_id"] == run and result["scratch_deleted"] >= 1
