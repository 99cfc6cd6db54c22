"""The CelebA-HQ framing of a face, and its map to and from the canonical square.

The diffusion engine (:mod:`.diffusion`) inverts the face with a DDPM trained on CelebA-HQ, so it
inverts the face **in CelebA-HQ's framing**: the whole head, hair and chin included. The canonical
square (:mod:`faceprot.canonical`) is tighter: it is made for recognisers, which read the inner face.

CelebA-HQ's framing (Karras et al. 2018, "Progressive Growing of GANs", appendix C; the same rule
makes FFHQ's crops) is a square built from five points: with ``e`` the mean of the eye centres,
``m`` the mean of the mouth corners, ``x`` the direction ``(eye-to-eye) - rot90(eye-to-mouth)``
scaled to ``max(2 |eye-to-eye|, 1.8 |eye-to-mouth|)`` and ``y = rot90(x)``, the square has centre
``e + 0.1 (m - e)`` and half-axes ``x`` and ``y``. Applied to the canonical template's five points it
is a fixed square of side 293 canonical pixels, centred at (127.9, 119.3): it reaches 18 to 27 px
beyond the canonical square on every side. :data:`CELEBAHQ_FROM_CANONICAL` is that square as an
affine map onto a 256 x 256 image.

Coordinates follow :mod:`faceprot.canonical` (cv2's convention: pixel (row i, column j) has its
centre at (x, y) = (j, i)), so a square's edges are at -0.5 and S - 0.5. Resampling is bilinear
``grid_sample`` (``align_corners=False``, the package's convention), differentiable.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..canonical import CANONICAL_POINTS, CANONICAL_SIZE, FaceTransform, compose_affine, invert_affine

#: The diffusion model's image side (google/ddpm-ema-celebahq-256).
CELEBAHQ_SIZE = 256


def celebahq_square(points5: np.ndarray) -> np.ndarray:
    """(4, 2) corners (top-left, top-right, bottom-left, bottom-right) of the CelebA-HQ square of a
    face, in the coordinates of its five points (eye centres, nose tip, mouth corners)."""
    p = np.asarray(points5, dtype=np.float64)
    eye_left, eye_right, mouth_left, mouth_right = p[0], p[1], p[3], p[4]
    eyes = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eyes

    def rot90(v: np.ndarray) -> np.ndarray:  # (x, y) -> (-y, x): a quarter turn, y pointing down
        return np.array([-v[1], v[0]])

    x = eye_to_eye - rot90(eye_to_mouth)
    x = x / np.hypot(*x) * max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    y = rot90(x)
    c = eyes + 0.1 * eye_to_mouth
    return np.stack([c - x - y, c + x - y, c - x + y, c + x + y])


def _square_onto_image(corners: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) affine taking a square's corners to an image's outer edges (-0.5 and size - 0.5)."""
    lo, hi = -0.5, size - 0.5
    dst = np.array([[lo, lo], [hi, lo], [lo, hi]], dtype=np.float32)
    return cv2.getAffineTransform(corners[:3].astype(np.float32), dst).astype(np.float64)


#: (2, 3): canonical pixel (x, y) -> CelebA-HQ-framed pixel (x, y) (a similarity; scale 0.874).
CELEBAHQ_FROM_CANONICAL = _square_onto_image(celebahq_square(CANONICAL_POINTS), CELEBAHQ_SIZE)
#: (2, 3): its inverse, CelebA-HQ-framed pixel -> canonical pixel.
CANONICAL_FROM_CELEBAHQ = invert_affine(CELEBAHQ_FROM_CANONICAL)


def affine_resample(image: torch.Tensor, out_to_in: np.ndarray, size: int,
                    padding_mode: str = "border") -> torch.Tensor:
    """Bilinear resampling of images through an affine map, differentiable.

    Args:
        image: (B, C, H, W) float.
        out_to_in: (2, 3) map from an output pixel (x, y) to the input pixel it reads.
        size: the output side S.
        padding_mode: ``grid_sample``'s, for output pixels that read outside the input: "border"
            (the edge repeated), "zeros" or "reflection".
    Returns:
        (B, C, S, S), same dtype and device.
    """
    b, _, h, w = image.shape
    m = torch.as_tensor(out_to_in, dtype=torch.float64)
    r = torch.arange(size, dtype=torch.float64)
    ys, xs = torch.meshgrid(r, r, indexing="ij")
    src_x = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    src_y = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    grid = torch.stack([(2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1], -1)
    grid = grid.to(image.dtype).to(image.device).expand(b, -1, -1, -1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def to_celebahq(canonical: torch.Tensor) -> torch.Tensor:
    """Canonical faces (B, 3, 256, 256) -> their CelebA-HQ framing (B, 3, 256, 256).

    The 18 to 27 px that the framing shows beyond the canonical square are the square's edge
    repeated. Where the photo is at hand, :func:`celebahq_transform` frames it with the photo's
    own pixels instead (what the engine inverts).
    """
    return affine_resample(canonical, CANONICAL_FROM_CELEBAHQ, CELEBAHQ_SIZE)


def from_celebahq(framed: torch.Tensor) -> torch.Tensor:
    """CelebA-HQ-framed images (B, C, 256, 256) -> the canonical square (B, C, 256, 256).

    Linear in the image, so it maps an edit's difference as it maps the images.
    """
    return affine_resample(framed, CELEBAHQ_FROM_CANONICAL, CANONICAL_SIZE)


def celebahq_transform(transform: FaceTransform) -> FaceTransform:
    """The photo -> CelebA-HQ framing transform of a face, from its photo -> canonical one, so that
    ``faceprot.canonical.align(rgb, celebahq_transform(face.transform))`` frames it from the photo."""
    return FaceTransform(compose_affine(CELEBAHQ_FROM_CANONICAL, transform.matrix))


__all__ = ["CELEBAHQ_SIZE", "CELEBAHQ_FROM_CANONICAL", "CANONICAL_FROM_CELEBAHQ", "celebahq_square",
           "affine_resample", "to_celebahq", "from_celebahq", "celebahq_transform"]
