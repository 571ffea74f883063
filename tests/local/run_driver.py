"""A foreground local driver, as `foldstack run --local` is one, for the durability tests:
``python run_driver.py SPEC_JSON`` submits the request with a LocalRunner over the given
home and workflow, prints ``{"run_id", "existed", "pid"}``, waits, prints ``{"status"}``."""

import json
import os
import sys
from pathlib import Path

from foldstack.core.request import RunRequest
from foldstack.local.runner import LocalRunner
from foldstack.workflows.specs import Workflow

spec = json.loads(sys.argv[1])
runner = LocalRunner(spec["home"], workflow=Workflow(directory=Path(spec["workflow"])), job_env=spec["job_env"],
                     grace=1.0)
run = runner.submit(RunRequest.model_validate(spec["request"]))
print(json.dumps({"run_id": run.run_id, "existed": run.existed, "pid": os.getpid()}), flush=True)
print(json.dumps({"status": run.wait()}), flush=True)
