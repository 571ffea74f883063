"""Run moto's server on 127.0.0.1 with the estate's shims: `python server.py --port N`.

Started by the emulator fixture (``tests/terraform/emulator/__init__.py``) as its own
process, so moto's global state never mixes with the test process's in-process mocks.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# AWS managed policies (AWSBatchServiceRole, …) exist in moto only when it loads them.
os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import moto_shims  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    print("moto shims:", "; ".join(moto_shims.install()), flush=True)
    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", str(args.port)])  # loopback only, never another address


if __name__ == "__main__":
    main()
