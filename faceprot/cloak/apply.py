"""Applying a saved mask to any photo of the person (FaceCloak stage 3), at the photo's resolution.

    photo -> faces -> (canonical refinement, optional) -> paste back -> protected photo
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..canonical import align, paste_back
from ..errors import FaceprotError, NoFaceError
from ..faces import Face, Selection, detect_faces, select_faces
from ..io import Picture, encode_png, load_image
from ..recognizers import load_surrogate
from ..runtime import resolve_device
from .maskfile import PersonalMask
from .optimizer import refine_delta


@dataclass
class Protected:
    """A protected photo and what was done to it."""

    picture: Picture
    faces: list[Face]
    deltas: list[np.ndarray] = field(default_factory=list)  # per face, (3, 256, 256) [0, 1] units
    notices: list[str] = field(default_factory=list)

    def png(self) -> bytes:
        return encode_png(self.picture)


def faces_that_are_me(rgb: np.ndarray, faces: list[Face], mask: PersonalMask) -> list[Face]:
    """Faces that any of the mask's stored identity embeddings matches (needs the opt-in)."""
    if not mask.identity:
        raise FaceprotError(
            "This mask does not store your identity, so it cannot pick your face out of a group. "
            "Make a new mask with your face embedding stored (the opt-in), or choose the faces another way."
        )
    x = torch.from_numpy(np.stack([align(rgb, f.transform) for f in faces])).permute(0, 3, 1, 2).float() / 255
    mine = np.zeros(len(faces), bool)
    with torch.no_grad():
        for name, ident in mask.identity.items():
            s = load_surrogate(name)
            scores = s.score(s(x), torch.from_numpy(ident)[None])
            mine |= np.array([s.is_match(float(v)) for v in scores])
    return [f for f, m in zip(faces, mine) if m]


def apply_mask(photo, mask: PersonalMask, faces: Selection = "largest", refine: int = 0,
               detector=None, seed: int = 0, device: str | None = None,
               strip_weight: float = 1.0) -> Protected:
    """Protect the chosen faces of a photo with a personal mask.

    Args:
        photo: path, bytes, PIL image, array or :class:`Picture`.
        mask: from :func:`enroll` or :meth:`PersonalMask.load`.
        faces: "largest" (default), "all", "me" (faces matching the mask's stored identity), or
            face indices (0 = leftmost).
        refine: per-photo PGD steps from the mask inside its budget (0 = the universal mask as is).
            A universal mask is the same on every photo: from one clean/protected pair of the
            person it can be estimated and subtracted from all their other photos. Refinement
            makes each photo's delta its own and, with ``strip_weight``, keeps it protective
            after that subtraction. On two 20-person LFW slices (BENCHMARKS.md, "Mask reuse"),
            10 steps kept 77-100% of photos protected after the subtraction, against 0-2% with no
            refinement, at about 1.1 s per face on one CPU thread.
        strip_weight: weight of the "mask subtracted" copy in the refinement loss (see
            :func:`~faceprot.cloak.optimizer.refine_delta`); 0 refines the photo as posted only.
        seed: seeds the refinement's random start.
        device: where refinement runs ("auto"/None: a GPU when there is one; "cpu"; "cuda").
    Returns:
        :class:`Protected`; only pixels in the chosen faces' regions change, each by at most the
        mask's budget (plus rounding).
    """
    pic = photo if isinstance(photo, Picture) else load_image(photo)
    rgb = pic.rgb
    found = detect_faces(rgb, detector)
    if faces == "me":
        chosen = select_faces(faces_that_are_me(rgb, found, mask) if found else [], "all")
    else:
        chosen = select_faces(found, faces)
    notices = list(pic.notices)
    if faces == "all" and len(chosen) < len(found):
        notices.append(f"{len(found) - len(chosen)} face(s) too small to protect were left as they are.")
    dev = resolve_device(device) if refine > 0 else None
    models = [load_surrogate(n, dev) for n in mask.surrogates] if refine > 0 else []
    alpha = float(mask.extra.get("alpha", mask.eps / 4))
    budget = torch.from_numpy(mask.budget)
    base = torch.from_numpy(mask.delta)
    out = rgb
    deltas = []
    for i, f in enumerate(chosen):
        d = base
        if refine > 0:
            x = torch.from_numpy(align(out, f.transform)).permute(2, 0, 1)[None].float() / 255
            d = refine_delta(x, base, budget, models, refine, alpha, seed=seed + i, strip_weight=strip_weight)
        deltas.append(d.numpy())
        out = paste_back(out, f.transform, d.numpy().transpose(1, 2, 0) * 255.0)
    return Protected(pic.with_rgb(out), chosen, deltas, notices)


__all__ = ["apply_mask", "Protected", "faces_that_are_me", "NoFaceError"]
