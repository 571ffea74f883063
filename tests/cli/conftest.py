"""The offline deployment fixtures of tests/client, for the cloud commands."""

from tests.client.conftest import aws, deployed, deployed_plain  # noqa: F401
