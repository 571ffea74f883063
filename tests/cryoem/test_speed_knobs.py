"""The 2D classification's and the de novo SGD's speed knobs as relion_refine options. Fast."""

from __future__ import annotations

import pytest

from foldstack.cryoem.knobs import Knobs
from foldstack.cryoem.refine import FAST_SUBSET_MIN_ITERATIONS, class2d_speed_args, denovo_args


def _opt(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_2d_defaults_bound_the_fine_pass_and_the_resolution_without_fast_subsets():
    args = class2d_speed_args(Knobs())
    assert _opt(args, "--maxsig") == "200" and _opt(args, "--strict_highres_exp") == "20"
    assert "--fast_subsets" not in args  # RELION refuses it under 20 iterations; default 10


@pytest.mark.parametrize(("iters", "expected"), [(FAST_SUBSET_MIN_ITERATIONS - 1, False),
                                                 (FAST_SUBSET_MIN_ITERATIONS, True)])
def test_fast_subsets_only_with_the_iterations_relion_demands(iters, expected):
    args = class2d_speed_args(Knobs.with_overrides({"fast_subsets_2d": 1, "iter_2d": iters}))
    assert ("--fast_subsets" in args) is expected


def test_zero_switches_a_2d_bound_off():
    args = class2d_speed_args(Knobs.with_overrides({"maxsig_2d": 0, "max_resolution_2d": 0}))
    assert "--maxsig" not in args and "--strict_highres_exp" not in args


def test_denovo_sgd_runs_at_one_resolution_with_one_mini_batch_size():
    args = denovo_args(Knobs.with_overrides({"denovo_iter": 5, "denovo_resolution": 30.0, "denovo_subset": 150}))
    assert [_opt(args, f"--sgd_{p}_iter") for p in ("ini", "inbetween", "fin")] == ["5", "5", "5"]
    assert _opt(args, "--sgd_ini_resol") == _opt(args, "--sgd_fin_resol") == "30"
    assert _opt(args, "--sgd_ini_subset") == _opt(args, "--sgd_fin_subset") == "150"
    assert _opt(args, "--offset_range") == "4"


def test_a_speed_knob_is_checked_like_the_others():
    with pytest.raises(ValueError, match="denovo_subset=2.5: expected a whole number"):
        Knobs.with_overrides({"denovo_subset": 2.5})
