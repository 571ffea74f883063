#!/usr/bin/env python3
"""Find the local Terraform provider mirror and (optionally) write a CLI config for it.

Used by ``terraform/terraform.mk`` and by ``tests/terraform`` so the discovery lives in
one place. Lookup order:

1. ``$FOLDSTACK_TF_PLUGIN_DIR`` (must contain ``registry.terraform.io/``);
2. a search for ``terraform-provider-aws_*`` under a few usual roots, then the whole
   root file system (``-xdev``); the directory above ``registry.terraform.io`` wins.

Prints nothing and exits 1 when there is no mirror (CI then downloads from the
registry as usual).

    python3 scripts/tf_mirror.py                 # print the mirror dir
    python3 scripts/tf_mirror.py --cli-config F  # also write a CLI config file F
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ENV_VAR = "FOLDSTACK_TF_PLUGIN_DIR"
PROVIDER_GLOB = "terraform-provider-aws_*"
# Where provider mirrors usually live; a full search of / follows if none has one.
QUICK_ROOTS = ("/opt", "/usr/local/share", "/usr/share", str(Path.home() / ".terraform.d"))


def _mirror_of(binary: Path) -> Path | None:
    for parent in binary.parents:
        if parent.name == "registry.terraform.io":
            return parent.parent
    return None


def _search(root: str, maxdepth: int | None = None) -> Path | None:
    if not Path(root).is_dir():
        return None
    cmd = ["find", root, "-xdev"]
    if maxdepth is not None:
        cmd += ["-maxdepth", str(maxdepth)]
    cmd += ["-name", PROVIDER_GLOB, "-type", "f"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in sorted(out.splitlines()):
        mirror = _mirror_of(Path(line))
        if mirror is not None:
            return mirror
    return None


def find_mirror() -> Path | None:
    """Return the filesystem-mirror directory holding hashicorp/aws, or None."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if (path / "registry.terraform.io").is_dir():
            return path.resolve()
        print(f"{ENV_VAR}={override} has no registry.terraform.io/ folder", file=sys.stderr)
        return None
    for root in QUICK_ROOTS:
        found = _search(root, maxdepth=8)
        if found:
            return found
    return _search("/")


def cli_config(mirror: Path) -> str:
    """A CLI config that installs every provider from the mirror and nothing from the network."""
    return (
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/*/*"]\n'
        "  }\n"
        "}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cli-config", type=Path, help="write a Terraform CLI config file here")
    args = parser.parse_args(argv)
    mirror = find_mirror()
    if mirror is None:
        return 1
    if args.cli_config:
        args.cli_config.parent.mkdir(parents=True, exist_ok=True)
        args.cli_config.write_text(cli_config(mirror))
    print(mirror)
    return 0


if __name__ == "__main__":
    sys.exit(main())
