"""The local engine over the ASL fixtures in ``asl_fixtures/`` (tiny Lambda handlers in
``asl_fixtures/lambdas``, Batch jobs from ``asl_fixtures/jobs.yaml``)."""

from __future__ import annotations

from pathlib import Path

from foldstack.local import LocalEngine
from foldstack.local.jobs import job_definition_arn

FIXTURES = Path(__file__).parent / "asl_fixtures"


def fixture_engine(name: str, tmp_path: Path, **kwargs) -> LocalEngine:
    """An engine for ``asl_fixtures/<name>.asl.json``, logging under ``tmp_path/logs``."""
    return LocalEngine(
        (FIXTURES / f"{name}.asl.json").read_text(),
        jobs_yaml=FIXTURES / "jobs.yaml",
        lambdas_dir=FIXTURES / "lambdas",
        log_dir=tmp_path / "logs",
        **kwargs,
    )


def batch_input(tmp_path: Path, job: str, params: dict, timeout: int = 30) -> dict:
    """Input of the ``batch`` fixture: run ``job`` of jobs.yaml with ``params``."""
    return {
        "run": "r1",
        "word": job,
        "job_definition": job_definition_arn(job),
        "params": params,
        "out": str(tmp_path / "out.txt"),
        "timeout": timeout,
    }
