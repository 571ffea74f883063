"""The offline deployment fixtures of tests/client, for the cloud commands, and a local
mode whose Batch jobs are `tests/client/fake_step.py` (milliseconds), for the CLI."""

from __future__ import annotations

import pytest
from tests.client.conftest import aws, deployed, deployed_plain, deployed_toy, fake_local_client  # noqa: F401


@pytest.fixture
def fake_local(tmp_path, monkeypatch):
    """Every local-mode client the CLI makes (`run --local`, `--env local`) runs the real
    workflow with fake steps, under `tmp_path/home` (fake weights installed) or under the
    `--home` given (installed as the test made it)."""
    from foldstack.cli import local, runs

    real = runs.make_client

    def make_client(env, home=None, **_local):
        return fake_local_client(tmp_path, home=home, install=home is None) if env == "local" else real(env, home)

    monkeypatch.setattr(local, "make_local_client", lambda home, output: fake_local_client(
        tmp_path, home=home, output=output, install=home is None))
    monkeypatch.setattr(runs, "make_client", make_client)
    return tmp_path / "home"


@pytest.fixture
def cli(deployed, monkeypatch):  # noqa: F811 - `deployed` is the fixture imported above
    """The cloud commands against the offline deployment (`--env test`): ``cli(*args)`` ->
    ``(exit code, stdout, stderr)``."""
    from typer.testing import CliRunner

    from foldstack.cli import app, runs

    runner = CliRunner()
    monkeypatch.setattr(runs, "make_client", lambda env, home=None, **_: deployed.client())

    def invoke(*args):
        result = runner.invoke(app, [*args, "--env", "test"])
        return result.exit_code, result.stdout, result.stderr

    return invoke
