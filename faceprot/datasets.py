"""Identity-labelled face folders (the ``manifest.json`` format of ../shared/assets/faces) and
batch embedding of their photos, for benchmarks and tests.

A manifest is a JSON list of objects with at least ``identity`` and ``file`` (relative to the
folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .canonical import align, stack
from .errors import FaceprotError, NoFaceError
from .evaluators import get_evaluator
from .faces import find_faces
from .io import load_image


def load_faceset(folder: str | Path) -> list[dict]:
    """Entries of ``<folder>/manifest.json``, each with an absolute ``path`` added."""
    folder = Path(folder)
    mf = folder / "manifest.json"
    if not mf.is_file():
        raise FaceprotError(f"{folder} has no manifest.json (a list of {{identity, file}} objects).")
    entries = json.loads(mf.read_text())
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "identity" in e and "file" in e
                                                 for e in entries):
        raise FaceprotError(f"{mf} must be a JSON list of objects with 'identity' and 'file'.")
    for e in entries:
        e["path"] = str(folder / e["file"])
    return entries


def embed_photos(paths: Iterable[str | Path], evaluators: list[str], batch: int = 32,
                 progress=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Embed the largest face of each photo with every evaluator.

    Pipeline evaluators share one detection and alignment per photo; dlib-cpp runs its own.

    Returns:
        ({evaluator: (N, D) float32, NaN rows where no face}, found (N,) bool for faceprot's
        detector).
    """
    paths = list(paths)
    n = len(paths)
    pipeline = [e for e in evaluators if e != "dlib-cpp"]
    out: dict[str, list] = {e: [None] * n for e in evaluators}
    found = np.zeros(n, bool)
    pending: list[tuple[int, torch.Tensor]] = []

    def flush():
        if not pending:
            return
        x = stack([c for _, c in pending])
        with torch.no_grad():
            for name in pipeline:
                emb = get_evaluator(name).model(x).numpy()
                for (i, _), e in zip(pending, emb):
                    out[name][i] = e
        pending.clear()

    it = range(n) if progress is None else progress(range(n))
    for i in it:
        rgb = load_image(paths[i]).rgb
        try:
            face = find_faces(rgb)[0]
            found[i] = True
            pending.append((i, align(rgb, face.transform)))
        except NoFaceError:
            pass
        if "dlib-cpp" in evaluators:
            try:
                out["dlib-cpp"][i] = get_evaluator("dlib-cpp").embed(rgb)
            except NoFaceError:
                pass
        if len(pending) >= batch:
            flush()
    flush()
    result = {}
    for name, rows in out.items():
        dim = next((len(r) for r in rows if r is not None), 1)
        result[name] = np.stack([np.full(dim, np.nan, np.float32) if r is None else np.asarray(r, np.float32)
                                 for r in rows])
    return result, found
