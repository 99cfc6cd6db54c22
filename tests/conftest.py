"""Shared test fixtures.

Real data and weights come from ``../shared`` beside the project root. Where it is absent the
tests that need it skip with a printed reason, except when ``FACEPROT_REQUIRE_SHARED=1`` (the
default when ``CI=true``): then a missing asset FAILS the run, so CI cannot pass by skipping.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_MODELS = SHARED / "assets" / "models"
SHARED_FACES = SHARED / "assets" / "faces"


def _require_shared() -> bool:
    flag = os.environ.get("FACEPROT_REQUIRE_SHARED")
    if flag is not None:
        return flag.strip().lower() in ("1", "true", "yes")
    return os.environ.get("CI", "").strip().lower() == "true"


def shared_path(*parts: str) -> Path:
    """Path of a ../shared asset; skip (or fail under CI) with a reason when it is missing."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        msg = f"needs ../shared asset {'/'.join(parts)}, which is missing at {p}"
        if _require_shared():
            pytest.fail(msg + " (FACEPROT_REQUIRE_SHARED / CI=true: missing assets fail the run)")
        pytest.skip(msg)
    return p


def load_manifest(folder: str) -> list[dict]:
    """Entries of ../shared/assets/faces/<folder>/manifest.json, each with an absolute 'path'."""
    base = shared_path("assets", "faces", folder)
    entries = json.loads((base / "manifest.json").read_text())
    for e in entries:
        e["path"] = str(base / e["file"])
    return entries


# Examples the app caches lazily go to a fresh folder per test run, never the developer's
# .gradio/cached_examples (a stale cache would show outputs of older code).
os.environ.setdefault("GRADIO_EXAMPLES_CACHE", tempfile.mkdtemp(prefix="faceprot-examples-cache-"))

# Uploads and results of the app go to a fresh folder per test process: a server that starts
# deletes the folders of servers that are gone, and must never see another worker's as gone.
os.environ.setdefault("FACEPROT_DATA_DIR", tempfile.mkdtemp(prefix="faceprot-data-"))

# The models in ../shared stand in for Hub downloads: point the registry's local mirror at them.
if "FACEPROT_MODEL_DIR" not in os.environ and SHARED_MODELS.is_dir():
    os.environ["FACEPROT_MODEL_DIR"] = str(SHARED_MODELS)


@pytest.fixture(scope="session")
def lfw_manifest() -> list[dict]:
    return load_manifest("lfw")


@pytest.fixture(scope="session")
def photos_manifest() -> list[dict]:
    return load_manifest("photos")


@pytest.fixture
def faceprot_threads():
    """torch at faceprot's own thread count for the test (1 on 2 cores: many small ops on 2 busy
    cores ran 5 to 100 times slower with 2 threads), restored afterwards."""
    import torch

    from faceprot.runtime import default_threads

    before = torch.get_num_threads()
    torch.set_num_threads(default_threads())
    yield
    torch.set_num_threads(before)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    """The real app (app.py's Blocks), served on a free local port for one test module."""
    pytest.importorskip("gradio")
    import app

    app.serve(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield app.demo.local_url
    finally:
        app.demo.close()
