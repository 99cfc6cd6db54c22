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
