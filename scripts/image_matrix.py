#!/usr/bin/env python3
"""Print the step images CI builds: the JSON list of every image the registered workflows' jobs run.

The images are data, not a hand-kept list: every workflow in ``statemachines/workloads.yaml``
has ``statemachines/<name>/jobs.yaml``, and each of its jobs names an ``image`` built from
``containers/<image>/Dockerfile``. ``.github/workflows/images.yml`` builds this list (its
``matrix`` job) and ``deploy.yml`` promotes the same list to prod; Terraform makes one ECR
repository per image from the same files (modules/platform).

    python3 scripts/image_matrix.py            # ["cryoem-cpu", "cryoem-gpu", "msa", "predict"]
    python3 scripts/image_matrix.py --root DIR # another checkout

Exits 1 with a one-line error when the registry or a jobs.yaml cannot be read, or an image
has no Dockerfile (a job CI could never build an image for). Standard library + PyYAML only:
the CI job runs it before anything is installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
REGISTRY = Path("statemachines") / "workloads.yaml"


class MatrixError(Exception):
    """The registry, a jobs.yaml or a Dockerfile is missing or malformed."""


def _mapping(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MatrixError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise MatrixError(f"{path}: expected a mapping")
    return data


def images(root: Path = REPO) -> list[str]:
    """The sorted, distinct images named by the jobs of every registered workflow."""
    found: set[str] = set()
    for workflow in _mapping(root / REGISTRY):
        jobs_file = root / "statemachines" / workflow / "jobs.yaml"
        jobs = _mapping(jobs_file).get("jobs")
        if not isinstance(jobs, dict) or not jobs:
            raise MatrixError(f"{jobs_file}: no jobs")
        for name, job in jobs.items():
            image = job.get("image") if isinstance(job, dict) else None
            if not isinstance(image, str) or not image:
                raise MatrixError(f"{jobs_file}: job {name} names no image")
            found.add(image)
    missing = sorted(i for i in found if not (root / "containers" / i / "Dockerfile").is_file())
    if missing:
        raise MatrixError(f"no containers/<image>/Dockerfile for: {', '.join(missing)}")
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(images(args.root), separators=(",", ":")))
    except MatrixError as exc:
        print(f"image_matrix: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
