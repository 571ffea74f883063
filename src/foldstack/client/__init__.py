"""The foldstack SDK: submit, watch and fetch runs from a notebook or a script.

    from foldstack.client import Client

    client = Client("prod")                      # configuration from SSM /foldstack/prod/
    run = client.submit("proteins.fasta", engine="esmfold")
    run.wait(progress=True)
    run.download("results/"); run.metrics()
    run.retry()                                   # a failed run: the next attempt, finished targets reused

`Client.local()` runs the same workflow on this machine with the same API.
"""

from foldstack.client.aws import AwsApi, RetryPolicy
from foldstack.client.client import Client, parse_since
from foldstack.client.config import ClientConfig
from foldstack.client.errors import (
    AwsError,
    NotInstalledError,
    RunNotCompleteError,
    RunNotFoundError,
    RunStateError,
)
from foldstack.client.failure import Failure
from foldstack.client.history import StepState
from foldstack.client.ratelimit import FakeClock, RateLimiter
from foldstack.client.run import OutputFile, Rows, Run, RunSet

__all__ = [
    "AwsApi", "AwsError", "Client", "ClientConfig", "Failure", "FakeClock", "NotInstalledError", "OutputFile",
    "RateLimiter", "RetryPolicy", "Rows", "Run", "RunNotCompleteError", "RunNotFoundError", "RunSet", "RunStateError",
    "StepState",
    "parse_since",
]
