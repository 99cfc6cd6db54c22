"""Applying a saved mask to any photo of the person (FaceCloak stage 3), at the photo's resolution.

    photo -> faces (:func:`faceprot.protect.locate`) -> the mask, optionally refined on this face
    -> paste back (:func:`faceprot.protect.protect_faces`) -> protected photo

A perceptual mask (format 2) makes each face's budget again from that face (its texture, its
eyes: :class:`~faceprot.cloak.perceptual.PerceptualBudget`), keeps the mask inside it, and pastes
back with the whole pixel's change shortened at the gamut's edge, so the luminance/chroma box
holds on the output photo.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..attack import project
from ..canonical import align, paste_back, to_pictures
from ..errors import FaceprotError, NoFaceError
from ..faces import Face, Selection, select_faces
from ..io import Picture
from ..protect import Located, Protected, as_picture, locate, protect_faces
from ..recognizers import load_surrogate
from ..runtime import DEFAULT_REFINE, resolve_device
from .maskfile import PersonalMask
from .optimizer import refine_delta


def faces_that_are_me(rgb: np.ndarray, faces: list[Face], mask: PersonalMask) -> list[Face]:
    """Faces that any of the mask's stored identity embeddings matches (needs the opt-in)."""
    if not mask.identity:
        raise FaceprotError(
            "This mask does not store your identity, so it cannot pick your face out of a group. "
            "Make a new mask with your face embedding stored (the opt-in), or choose the faces another way."
        )
    x = align(rgb, [f.transform for f in faces])
    mine = np.zeros(len(faces), bool)
    with torch.no_grad():
        for name, ident in mask.identity.items():
            s = load_surrogate(name)
            scores = s.score(s(x), torch.from_numpy(ident)[None])
            mine |= np.array([s.is_match(float(v)) for v in scores])
    return [f for f, m in zip(faces, mine) if m]


def apply_mask(photo, mask: PersonalMask, faces: Selection | Sequence[Face] = "largest", refine: int = 0,
               detector=None, seed: int = 0, device: str | None = None,
               strip_weight: float = 1.0) -> Protected:
    """Protect the chosen faces of a photo with a personal mask.

    Args:
        photo: path, bytes, PIL image, array, :class:`Picture`, or a :class:`~faceprot.protect.Located`
            photo whose faces were found already (then nothing is read or detected again).
        mask: from :func:`enroll` or :meth:`PersonalMask.load`.
        faces: "largest" (default), "all", "me" (faces matching the mask's stored identity), face
            indices (0 = leftmost), or :class:`Face` records already found in this photo.
        refine: per-photo PGD steps from the mask inside its budget (0 = the universal mask as is).
            A universal mask is the same on every photo: from one clean/protected pair of the
            person it can be estimated and subtracted from all their other photos. Refinement
            makes each photo's delta its own and, with ``strip_weight``, keeps it protective
            after that subtraction. On 20-person LFW slices (BENCHMARKS.md, "Mask reuse"), with
            10 steps 77-100% of photos stayed protected after the subtraction with ``paper``
            masks, and at medium about three fifths of those it protected (32 / 51 / 9% of
            photos after the attack, from 55 / 75 / 16%; dlib-cpp / dlib-resnet /
            mobilefacenet), against 0-2% with no refinement; about 1.1 s per face on one CPU
            thread.
        strip_weight: weight of the "mask subtracted" copy in the refinement loss (see
            :func:`~faceprot.cloak.optimizer.refine_delta`); 0 refines the photo as posted only.
        seed: seeds the refinement's random start (face i uses seed + i).
        device: where refinement runs ("auto"/None: a GPU when there is one; "cpu"; "cuda").
    Returns:
        :class:`Protected`; only pixels in the chosen faces' regions change, each by at most the
        mask's budget (plus rounding): the mask's RGB box, or for a perceptual mask each face's
        own Y/Cb/Cr budget.
    """
    if isinstance(photo, Located):
        located = photo
    elif faces == "me":
        pic = as_picture(photo)
        everyone = locate(pic, "all", detector, min_px=0).found
        mine = select_faces(faces_that_are_me(pic.rgb, everyone, mask) if everyone else [], "all")
        located = locate(pic, mine, found=everyone)
    else:
        located = locate(photo, faces, detector)
    base = torch.from_numpy(mask.delta)
    if mask.perceptual is not None:
        return _apply_perceptual(located, mask, base, refine, seed, device, strip_weight)
    if refine <= 0:
        return protect_faces(located, base)
    dev = resolve_device(device)
    models = [load_surrogate(n, dev) for n in mask.surrogates]
    alpha = float(mask.extra.get("alpha", mask.eps / 4))
    budget = torch.from_numpy(mask.budget)
    return protect_faces(located, lambda x, i: refine_delta(x, base, budget, models, refine, alpha,
                                                            seed=seed + i, strip_weight=strip_weight))


def _apply_perceptual(located: Located, mask: PersonalMask, base: torch.Tensor, refine: int, seed: int,
                      device: str | None, strip_weight: float) -> Protected:
    """apply_mask for a perceptual mask: each face gets its own budget, the mask is kept inside
    it (and refined there), and the paste-back keeps the box at the gamut's edge."""
    rule, space = mask.budget_rule(), mask.space()
    models = [load_surrogate(n, resolve_device(device)) for n in mask.surrogates] if refine > 0 else []

    def edit(x: torch.Tensor, i: int) -> torch.Tensor:
        budget = torch.from_numpy(rule(to_pictures(x)[0], located.chosen[i].canonical_landmarks))
        if refine <= 0:
            return space.to_rgb(project(space.from_rgb(base), budget))
        return refine_delta(x, base, budget, models, refine, budget * rule.step_fraction, seed=seed + i,
                            strip_weight=strip_weight, space=space)

    return protect_faces(located, edit,
                         paste=lambda out, i, d: paste_back(out, located.chosen[i].transform, d, gamut="scale"))


__all__ = ["apply_mask", "DEFAULT_REFINE", "Protected", "faces_that_are_me", "NoFaceError", "Picture"]
