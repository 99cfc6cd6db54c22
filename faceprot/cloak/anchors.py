"""The anchor gallery: identities the cloak steers toward (far anchor) and away from (near anchor).

FaceCloak picks a near and a far anchor identity from a gallery. faceprot's shipped gallery uses
no fetched photos and steers nobody toward one real, named person: every anchor is a **mixture**
of three different faces (a per-pixel blend of aligned faces, no face weighing more than half),
made at run time from the few face pictures that installed packages ship (insightface's sample
pictures, scikit-image's astronaut). A GPU generator can add fully synthetic anchors
(:meth:`AnchorGallery.from_images`).

Anchors that any surrogate would match to the person are dropped: the gallery holds no photo of
the person.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..attack import similarity
from ..canonical import align, to_pictures, to_tensor
from ..errors import FaceprotError
from ..faces import detect_faces
from ..io import load_image

#: Face pictures shipped by installed packages: (package, relative path).
PACKAGE_FACE_SOURCES = [
    ("insightface", "data/images/t1.jpg"),
    ("insightface", "data/images/Tom_Hanks_54745.png"),
    ("skimage", "data/astronaut.png"),
]
N_MIXTURES = 24
FACES_PER_MIXTURE = 3
MAX_WEIGHT = 0.5


def _package_file(package: str, rel: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / rel
    return p if p.is_file() else None


@functools.lru_cache(maxsize=1)
def package_faces() -> tuple[np.ndarray, ...]:
    """Aligned canonical faces (256, 256, 3) uint8 from pictures that installed packages ship."""
    faces = []
    for pkg, rel in PACKAGE_FACE_SOURCES:
        p = _package_file(pkg, rel)
        if p is None:
            continue
        rgb = load_image(p).rgb
        for f in detect_faces(rgb):
            if f.width >= 50:
                faces.append(to_pictures(align(rgb, f.transform))[0])
    return tuple(faces)


def mixtures(faces: tuple[np.ndarray, ...], n: int = N_MIXTURES, k: int = FACES_PER_MIXTURE,
             seed: int = 0) -> np.ndarray:
    """(n, 256, 256, 3) uint8 blends of k distinct faces with Dirichlet weights, each <= MAX_WEIGHT."""
    if len(faces) < k + 1:
        raise FaceprotError(
            f"The anchor gallery needs at least {k + 1} package faces, found {len(faces)}: "
            "reinstall insightface and scikit-image (see requirements.txt)."
        )
    rng = np.random.default_rng(seed)
    stack = np.stack(faces).astype(np.float32)
    seen, out = set(), []
    while len(out) < n:
        idx = tuple(sorted(rng.choice(len(faces), k, replace=False)))
        w = rng.dirichlet(np.full(k, 2.0))
        if w.max() > MAX_WEIGHT or (idx in seen and len(seen) < _n_choose_k(len(faces), k)):
            continue
        seen.add(idx)
        out.append(np.tensordot(w, stack[list(idx)], axes=1))
    return np.clip(np.rint(np.stack(out)), 0, 255).astype(np.uint8)


def _n_choose_k(n: int, k: int) -> int:
    from math import comb

    return comb(n, k)


@dataclass
class AnchorGallery:
    """Canonical anchor faces and their embeddings per surrogate."""

    images: np.ndarray  # (N, 256, 256, 3) uint8

    @classmethod
    @functools.lru_cache(maxsize=1)
    def shipped(cls) -> "AnchorGallery":
        return cls(mixtures(package_faces()))

    @classmethod
    def from_images(cls, images: np.ndarray) -> "AnchorGallery":
        """A gallery from canonical faces, e.g. synthetic identities from a generator."""
        return cls(np.asarray(images, np.uint8))

    def embeddings(self, surrogate) -> torch.Tensor:
        """(N, D) embeddings of the anchors for one surrogate (cached per surrogate)."""
        cache = self.__dict__.setdefault("_emb", {})
        key = (surrogate.name, str(surrogate.device))
        if key not in cache:
            x = to_tensor(self.images)
            with torch.no_grad():
                cache[key] = torch.cat([surrogate(x[i:i + 16].to(surrogate.device)) for i in range(0, len(x), 16)])
        return cache[key]


@dataclass
class Anchors:
    """The chosen anchors: per surrogate name, the near and far anchor embeddings (D,)."""

    near: dict[str, torch.Tensor]
    far: dict[str, torch.Tensor]
    near_index: int
    far_index: int
    excluded: int  # anchors dropped because a surrogate matched them to the person


def choose_anchors(person: dict[str, torch.Tensor], surrogates: list, gallery: AnchorGallery | None = None) -> Anchors:
    """Pick the near (most similar) and far (least similar) anchor to the person.

    Args:
        person: per surrogate name, (D,) the person's clean embedding (mean over views).
        surrogates: surrogate modules.
    Similarities are z-scored per surrogate and averaged, so no model dominates by its scale.
    """
    gallery = gallery or AnchorGallery.shipped()
    zs, matched = [], None
    for s in surrogates:
        emb = gallery.embeddings(s)
        ref = person[s.name].to(emb.device)[None]
        sim = similarity(s, emb, ref).cpu()
        z = (sim - sim.mean()) / (sim.std() + 1e-12)
        zs.append(z)
        m = torch.tensor([s.is_match(float(v)) for v in s.score(emb, ref)])
        matched = m if matched is None else matched | m
    score = torch.stack(zs).mean(0)
    keep = ~matched
    if keep.sum() < 2:
        raise FaceprotError("Every anchor in the gallery looks like this person; cannot choose anchors.")
    idx = torch.arange(len(score))[keep]
    near = int(idx[score[keep].argmax()])
    far = int(idx[score[keep].argmin()])
    return Anchors(
        near={s.name: gallery.embeddings(s)[near] for s in surrogates},
        far={s.name: gallery.embeddings(s)[far] for s in surrogates},
        near_index=near, far_index=far, excluded=int(matched.sum()),
    )
