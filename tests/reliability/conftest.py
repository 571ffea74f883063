"""Fixtures of the reliability/security suite (helpers live in helpers.py)."""

from tests.reliability.helpers import moto_s3  # noqa: F401  (fixture)
