"""View generators: several varied photos of one person from ONE selfie.

Every generator has one method, ``generate(rgb, face, n, seed)``, which returns up to ``n`` RGB
photos (H, W, 3) uint8 of the person in ``face`` of ``rgb``. Methods re-detect and align them
(for the cloak, :func:`faceprot.cloak.views.make_views`).

* ``augment`` (CPU default, :mod:`.augment`): realistic edits of the selfie.
* ``augment-wide`` (CPU): the same with twice the pose range and low-resolution round trips
  (measured for transfer, issue 16; not the default).
* ``arc2face`` (GPU, :mod:`.arc2face`): Arc2Face images conditioned on the selfie's ArcFace
  embedding.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from ..canonical import align
from ..errors import FaceprotError
from ..faces import Face
from .augment import AugmentViews


class ViewGenerator(Protocol):
    name: str

    def generate(self, rgb: np.ndarray, face: Face, n: int, seed: int) -> list[np.ndarray]:
        """Up to n RGB photos (H, W, 3) uint8 of the person in ``face`` of ``rgb``."""
        ...


class Arc2FaceViews:
    """Arc2Face synthetic images of the person (GPU). Defaults follow the paper: 25 steps, guidance 3."""

    name = "arc2face"

    def __init__(self, steps: int = 25, guidance: float = 3.0, progress: Callable | None = None):
        self.steps = steps
        self.guidance = guidance
        self.progress = progress

    def generate(self, rgb: np.ndarray, face: Face, n: int, seed: int) -> list[np.ndarray]:
        import torch

        from ..recognizers import load_surrogate
        from .arc2face import load_arc2face

        arcface = load_surrogate("arcface-r100")
        with torch.no_grad():
            emb = arcface(align(rgb, face.transform))[0]
        return load_arc2face().generate(emb, n=n, steps=self.steps, guidance=self.guidance,
                                                seed=seed, progress=self.progress)


GENERATORS = {"augment": AugmentViews, "augment-wide": AugmentViews.wide, "arc2face": Arc2FaceViews}


def get_generator(name: str | ViewGenerator) -> ViewGenerator:
    """A generator by name ("augment", "augment-wide" or "arc2face"), or the object itself."""
    if not isinstance(name, str):
        return name
    try:
        return GENERATORS[name]()
    except KeyError:
        raise FaceprotError(f"Unknown view generator {name!r}; choose {', '.join(GENERATORS)}.") from None


__all__ = ["ViewGenerator", "AugmentViews", "Arc2FaceViews", "GENERATORS", "get_generator"]
