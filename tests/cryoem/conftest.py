"""Shared CryoEM fixtures: the small simulated dataset of the chain test (test_chain.SMALL)."""

from __future__ import annotations

import pytest

from tests.cryoem.test_chain import SMALL


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """4 movies, 144 particles of 7DDO at 4 Å/px, box 40 (with its reference and truth)."""
    from foldstack.cryoem.simulate import simulate

    root = tmp_path_factory.mktemp("cryoem-small") / "data"
    simulate(root, SMALL)
    return root
