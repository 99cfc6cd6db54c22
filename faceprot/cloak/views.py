"""Views of the person: several varied pictures from ONE selfie (FaceCloak stage 1).

Generators sit behind one interface, :class:`ViewGenerator`: ``generate(rgb, face, n, seed)``
returns up to ``n`` photos of the person, which :func:`make_views` re-detects and aligns into
canonical space. The real selfie is always the first view.

* ``augment`` (CPU default): realistic pose, scale and shift jitter, lighting, gamma, colour
  temperature, blur, JPEG, noise and mirroring, applied to the selfie.
* ``arc2face`` (GPU): Arc2Face images conditioned on the selfie's ArcFace embedding
  (:mod:`faceprot.generators.arc2face`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..canonical import align, stack, to_pictures
from ..errors import FaceprotError, NoFaceError
from ..faces import Face, find_faces
from ..generators import ViewGenerator, get_generator


@dataclass
class Views:
    """Aligned views of one person.

    images: (V, 3, 256, 256) float32 canonical faces in [0, 1]; images[0] is the real selfie.
    landmarks: (V, 68, 2) landmarks in canonical coordinates.
    generator: name of the generator that made views 1..V-1.
    """

    images: torch.Tensor
    landmarks: np.ndarray
    generator: str

    def pictures(self) -> np.ndarray:
        """(V, 256, 256, 3) uint8: the views as 8-bit pictures (for display and 8-bit filters)."""
        return to_pictures(self.images)


def make_views(rgb: np.ndarray, face: Face, generator: str | ViewGenerator = "augment", n: int = 8,
               seed: int = 0, max_tries: int = 3) -> Views:
    """The selfie plus ``n`` generated views, each re-detected and aligned into canonical space.

    A generated picture in which no face is found is replaced (up to ``max_tries`` rounds).
    """
    gen = get_generator(generator)
    images = [align(rgb, face.transform)]
    marks = [face.canonical_landmarks]
    round_seed = seed
    for _ in range(max_tries):
        need = n - (len(images) - 1)
        if need <= 0:
            break
        for pic in gen.generate(rgb, face, need, round_seed):
            try:
                f = find_faces(pic)[0]
            except NoFaceError:
                continue
            images.append(align(pic, f.transform))
            marks.append(f.canonical_landmarks)
        round_seed += 7919  # a fresh draw for the replacements
    if len(images) < 2:
        raise FaceprotError("Could not make any varied view of this face; try a clearer, more frontal selfie.")
    return Views(stack(images[: n + 1]), np.stack(marks[: n + 1]), gen.name)
