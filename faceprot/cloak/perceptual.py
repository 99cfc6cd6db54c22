"""The perceptual budget (cloak v2, issue 16): a per-pixel box in luminance and chroma, not in RGB.

The paper's budget is an L-inf box in R, G and B (8/255, 16/255 on the eyes, nose, mouth and
edges). Measured on real photos (issue 16) it shows: the eye budget goes into colour, where the
eye is most sensitive (teal irises), and flat skin gets blotchy reddish texture. This budget is:

* in YCbCr (:class:`faceprot.attack.BudgetSpace`): a luminance budget and a much smaller chroma
  budget (``chroma_ratio`` of it), since the eye resolves colour changes far worse than
  brightness changes at fine scale but notices a colour cast on flat skin at once;
* scaled by local texture (contrast masking): the local standard deviation of the face's
  luminance, normalised by its ``texture_percentile``-th percentile over the face and clipped to
  [0, 1], takes the luminance budget from ``luma_flat`` (flat skin) to ``luma_texture`` (hair,
  brows, skin texture, edges);
* low in the eyes: inside the eye polygons of dlib's 68 points (36-41, 42-47), dilated by
  ``eye_dilate`` canonical px, at most ``eye_luma`` and ``eye_chroma`` (irises and sclera);
* on the head only (``head_margin``): the background beside the head is not touched.

It is computed in canonical space from a face and its 68 canonical points: at enrollment from the
selfie, and at application again from each photo's own face, so the texture and the eyes the
budget follows are that photo's. The perturbation lives in YCbCr coordinates, clipped there, and
:func:`faceprot.canonical.paste_back` with ``gamut="scale"`` keeps the box on the output photo.

Budgets are in [0, 1] image units of Y, Cb and Cr (8/255 = 8 levels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from ..attack import YCBCR_FROM_RGB
from ..canonical import CANONICAL_SIZE
from ..visibility import eye_region
from .focus import face_hull

#: the space the perturbation and the budget live in (a :class:`faceprot.attack.BudgetSpace` name)
SPACE = "ycbcr"


@dataclass(frozen=True)
class PerceptualBudget:
    """The rule that makes a (3, S, S) Y/Cb/Cr budget from a face: its parameters are all a v2
    mask needs to make the budget again on another photo."""

    luma_flat: float = 3 / 255  # luminance budget on flat skin
    luma_texture: float = 10 / 255  # luminance budget in full texture
    chroma_ratio: float = 0.2  # Cb and Cr budget, as a share of the luminance budget
    eye_luma: float = 2 / 255  # at most this luminance budget in the eyes
    eye_chroma: float = 0.5 / 255  # at most this chroma budget in the eyes
    texture_sigma: float = 2.0  # canonical px: the Gaussian window of the local standard deviation
    texture_percentile: float = 90.0  # local std at this percentile over the face counts as full texture
    #: canonical px around the eye polygons: issue 16's eye region (3 photo px) is 5-6 canonical px
    #: on LFW faces (1.6-1.9 canonical px per photo px); wider on real-size photos, where it is < 1
    eye_dilate: int = 6
    step_fraction: float = 0.25  # PGD step as a share of each pixel's budget (as paper's: 2/255 of its 8/255)
    #: > 0: texture is absolute fine detail, not relative contrast: the local RMS (over the
    #: texture_sigma window) of the luminance minus its Gaussian blur (sigma 1 canonical px), over
    #: this level ([0, 1] units), clipped. Smooth shading then counts as flat, and a blurry face
    #: gets a small budget. 0: the local standard deviation over its percentile on the face.
    texture_detail: float = 0.0
    #: > 0: the head only. The budget is zero outside the head, and fades to it over this many
    #: canonical px: the hull of the 68 points and of the brows raised by 0.6 of the brow-to-chin
    #: height (forehead and hair), dilated by this margin. The background beside the head is left
    #: as it is: on large photos, a faint cue in blind looks (16 of 20 picked with it, 3 of 10
    #: without), for 0-3 points of top-1 PSR on LFW (6-8 on dlib after a JPEG re-save at medium;
    #: 2-9 for high on the real-size photos; BENCHMARKS.md, "Cloak v2"). 0: the whole canonical
    #: square, as every v2 mask made before it (their files read as 0).
    head_margin: float = 16.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PerceptualBudget":
        """From :meth:`to_dict`'s output; raises ValueError on an unknown or missing field."""
        names = {f.name for f in fields(cls)}
        d = {"texture_detail": 0.0, "head_margin": 0.0, **d}  # v2 files written before these had none
        if set(d) != names:
            raise ValueError(f"perceptual budget fields {sorted(d)} are not {sorted(names)}")
        return cls(**{k: (int(v) if k == "eye_dilate" else float(v)) for k, v in d.items()})

    def texture(self, canonical_rgb: np.ndarray, face: np.ndarray) -> np.ndarray:
        """(S, S) float32 in [0, 1]: local luminance std, over its percentile on the face, clipped
        (or, with ``texture_detail``, the local fine detail over that absolute level).

        Args:
            canonical_rgb: (S, S, 3) uint8 aligned face.
            face: (S, S) bool, the face's pixels (the normalisation's reference).
        """
        y = canonical_rgb.astype(np.float32) @ np.asarray(YCBCR_FROM_RGB[0], np.float32)
        if self.texture_detail > 0:
            d = y - cv2.GaussianBlur(y, (0, 0), 1.0)
            rms = np.sqrt(np.maximum(cv2.GaussianBlur(d * d, (0, 0), self.texture_sigma), 0))
            return np.clip(rms / (self.texture_detail * 255), 0, 1).astype(np.float32)
        mu = cv2.GaussianBlur(y, (0, 0), self.texture_sigma)
        var = cv2.GaussianBlur(y * y, (0, 0), self.texture_sigma) - mu * mu
        std = np.sqrt(np.maximum(var, 0))
        ref = float(np.percentile(std[face], self.texture_percentile)) if face.any() else float(std.max())
        return np.clip(std / max(ref, 1e-6), 0, 1).astype(np.float32)

    def eyes(self, landmarks: np.ndarray, size: int = CANONICAL_SIZE) -> np.ndarray:
        """(size, size) bool: the two eye polygons of the 68 canonical points, dilated (the same
        region :func:`faceprot.visibility.eye_region` measures, here in canonical pixels)."""
        return eye_region((size, size), landmarks, int(self.eye_dilate))

    def head(self, landmarks: np.ndarray, size: int = CANONICAL_SIZE) -> np.ndarray:
        """(size, size) float32 in [0, 1]: 1 on the head (face, forehead, hair above the brows),
        0 beyond ``head_margin`` px from it, a smooth ramp between."""
        pts = np.asarray(landmarks, np.float64)
        brows = pts[17:27]
        lift = 0.6 * (pts[8, 1] - brows[:, 1].mean())  # the brow-to-chin height, 0.6 of it up
        hull = face_hull(np.concatenate([pts, brows - [0.0, lift]]), size).astype(np.float32)
        m = max(1, int(round(self.head_margin)))
        inside = cv2.distanceTransform((hull == 0).astype(np.uint8), cv2.DIST_L2, 5)  # px to the hull
        ramp = np.clip(1 - inside / m, 0, 1)
        return (ramp * ramp * (3 - 2 * ramp)).astype(np.float32)  # smoothstep: no visible edge

    def __call__(self, canonical_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(3, S, S) float32 budget for Y, Cb, Cr, in [0, 1] units.

        Args:
            canonical_rgb: (S, S, 3) uint8 aligned face.
            landmarks: (68, 2) its dlib points in canonical coordinates.
        """
        t = self.texture(canonical_rgb, face_hull(landmarks, canonical_rgb.shape[0]))
        luma = self.luma_flat + (self.luma_texture - self.luma_flat) * t
        chroma = self.chroma_ratio * luma
        eyes = self.eyes(landmarks, canonical_rgb.shape[0])
        luma[eyes] = np.minimum(luma[eyes], self.eye_luma)
        chroma[eyes] = np.minimum(chroma[eyes], self.eye_chroma)
        if self.head_margin > 0:
            keep = self.head(landmarks, canonical_rgb.shape[0])
            luma, chroma = luma * keep, chroma * keep
        return np.stack([luma, chroma, chroma]).astype(np.float32)


__all__ = ["PerceptualBudget", "SPACE"]
