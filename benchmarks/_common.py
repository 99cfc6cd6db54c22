"""Shared set-up for benchmark scripts: ../shared locations and the model mirror."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
SHARED_FACES = SHARED / "assets" / "faces"
RESULTS = HERE / "results"

# The models in ../shared stand in for Hub downloads (same as the tests do).
if "FACEPROT_MODEL_DIR" not in os.environ and (SHARED / "assets" / "models").is_dir():
    os.environ["FACEPROT_MODEL_DIR"] = str(SHARED / "assets" / "models")


def git_commit() -> str:
    """The checkout's commit (short hash, "+dirty" with uncommitted changes to tracked files), or
    "unknown" outside a git checkout: the code a benchmark's numbers came from."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def level(v):
    """A budget given as "N/255" (levels) or as a number in [0, 1] units, as a float (other values as given)."""
    if isinstance(v, str) and v.endswith("/255"):
        return float(v[:-4]) / 255
    return v
