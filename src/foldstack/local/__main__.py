"""The detached driver: ``python -m foldstack.local drive HOME RUN_ID LOCK_FD``.

Started by ``LocalRunner.submit(request, detach=True)`` in its own session, with the
run's lock already held on ``LOCK_FD`` (inherited) and the run's spec in
``runs/<run_id>/driver.json``; it drives the execution to its end (SIGINT/SIGTERM stop
it cleanly, like a foreground run) and exits. Its output goes to ``runs/<run_id>/driver.log``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from foldstack.local.driver import RunLock
from foldstack.local.paths import LocalPaths
from foldstack.local.records import now, write_record


def drive(home: Path, run_id: str, lock_fd: int) -> int:
    from foldstack.core.fasta import FastaLimits
    from foldstack.local.runner import LocalRun, LocalRunner
    from foldstack.workflows.specs import Workflow

    paths = LocalPaths(home.resolve())
    lock = RunLock.adopt(paths.lock(run_id), lock_fd)
    try:
        spec = json.loads(paths.driver_spec(run_id).read_text())
        runner = LocalRunner(home, workflow=Workflow(directory=Path(spec["workflow"])),
                             wait_scale=float(spec["wait_scale"]), job_env=dict(spec["job_env"]),
                             limits=FastaLimits(**spec["limits"]), grace=float(spec["grace"]))
        ids = tuple(tuple(t) if isinstance(t, list) else t for t in spec["target_ids"])
        run = LocalRun(run_id, runner, runner.parse_request(spec["request"]), ids)  # type: ignore[arg-type]
        runner._start(run, lock, record=spec["record"])
    except Exception as exc:  # noqa: BLE001 - recorded on the run, which nobody else drives
        print(f"foldstack: the detached driver of {run_id} could not start: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)
        record = json.loads(paths.record(run_id).read_text())
        write_record(paths.record(run_id), {**record, "status": "FAILED", "stopped_at": now(),
                                            "error": "DriverError", "cause": f"{type(exc).__name__}: {exc}"})
        lock.release()
        return 1
    print(f"foldstack: driving {run_id}", flush=True)
    status = run.wait()
    print(f"foldstack: {run_id} {status}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m foldstack.local")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("drive", help="drive one run (started by LocalRunner.submit(detach=True))")
    d.add_argument("home", type=Path)
    d.add_argument("run_id")
    d.add_argument("lock_fd", type=int)
    args = parser.parse_args(argv)
    return drive(args.home, args.run_id, args.lock_fd)


if __name__ == "__main__":
    sys.exit(main())
