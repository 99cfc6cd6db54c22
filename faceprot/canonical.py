"""The canonical face space: one aligned square that every recognizer crops from.

A face is mapped into a ``CANONICAL_SIZE`` x ``CANONICAL_SIZE`` square by a similarity transform
estimated from its five points (eye centres, nose tip, mouth corners). The five points land on the
InsightFace/ArcFace 112x112 template scaled by 2 and shifted by ``ARCFACE_OFFSET`` (FACTS.md
section 3), so:

* the ArcFace-style 112x112 crop (MobileFaceNet, ArcFace R100) is an exact 2x2 average pool of
  ``canonical[:, 8:232, 16:240]``;
* dlib's 150x150 chip (``get_face_chip(size=150, padding=0.25)``) is a fixed bilinear resample whose
  affine map was fitted on real faces (see ``DLIB_CHIP_FROM_CANONICAL``);

and both crops lie inside the square, so a perturbation made in canonical space reaches every
recognizer. Masks and disguises live in this space; :func:`paste_back` maps them into the photo at
the photo's own resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Sequence

import cv2
import numpy as np
import torch
from skimage.transform import SimilarityTransform

CANONICAL_SIZE = 256

#: InsightFace 112x112 template (x, y): left eye, right eye, nose tip, left/right mouth corner.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_SCALE = 2
#: (x, y) of the 224x224 ArcFace region inside the canonical square. 16 centres it horizontally;
#: 8 leaves room below for dlib's chip, which reaches lower than the ArcFace crop.
ARCFACE_OFFSET = (16, 8)
CANONICAL_POINTS = ARCFACE_TEMPLATE_112 * ARCFACE_SCALE + np.array(ARCFACE_OFFSET, dtype=np.float64)

#: Affine map (2x3) from canonical pixel coordinates to dlib's 150x150 chip (padding 0.25).
#: Fitted by ``benchmarks/fit_dlib_chip.py`` on 286 LFW faces in ../shared (2026-11-22): least
#: squares between dlib's own 5-point chip and our 68-point alignment; the per-face residual is
#: 3.7 chip px (median), because the two align on different points.
DLIB_CHIP_SIZE = 150
DLIB_CHIP_FROM_CANONICAL = np.array(
    [
        [0.7552, 0.0000, -23.10],
        [0.0000, 0.7552, -39.22],
    ],
    dtype=np.float64,
)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation; no reflection).

    scikit-image's Umeyama estimate; on 300 real LFW faces it agrees with the hand-written one it
    replaced to 1.1e-13 (tests/test_canonical.py::test_estimate_similarity_matches_umeyama_on_lfw_points).

    Args:
        src: (N, 2) points; dst: (N, 2) points, N >= 2.
    Returns:
        (2, 3) float64 matrix M with dst ~= M @ [x, y, 1].
    Raises:
        ValueError: degenerate points (e.g. all the same), which have no similarity fit.
    """
    fit = SimilarityTransform.from_estimate(np.asarray(src, np.float64), np.asarray(dst, np.float64))
    if not fit:  # a FailedEstimation, falsy, says why
        raise ValueError(f"no similarity transform fits these points: {fit}")
    return fit.params[:2].copy()


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix."""
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def compose_affine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(2, 3) matrix of ``a after b``: x -> a(b(x))."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


@dataclass(frozen=True)
class FaceTransform:
    """The similarity transform between a photo and the canonical square.

    matrix: (2, 3) float64 mapping photo (x, y) to canonical (x, y).
    """

    matrix: np.ndarray

    @classmethod
    def from_points(cls, points5: np.ndarray) -> "FaceTransform":
        return cls(estimate_similarity(points5, CANONICAL_POINTS))

    @property
    def inverse(self) -> np.ndarray:
        """(2, 3) matrix mapping canonical (x, y) to photo (x, y)."""
        return invert_affine(self.matrix)

    @property
    def scale(self) -> float:
        """Canonical pixels per photo pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def region_corners(self) -> np.ndarray:
        """(4, 2) corners of the canonical square in photo coordinates."""
        n = CANONICAL_SIZE
        c = np.array([[0, 0, 1], [n, 0, 1], [n, n, 1], [0, n, 1]], dtype=np.float64)
        return c @ self.inverse.T

    def region_bbox(self, width: int, height: int, margin: int = 2) -> tuple[int, int, int, int]:
        """Integer (x0, y0, x1, y1) photo box, clipped to the photo, that holds the face region."""
        c = self.region_corners()
        x0 = max(int(np.floor(c[:, 0].min())) - margin, 0)
        y0 = max(int(np.floor(c[:, 1].min())) - margin, 0)
        x1 = min(int(np.ceil(c[:, 0].max())) + margin, width)
        y1 = min(int(np.ceil(c[:, 1].max())) + margin, height)
        return x0, y0, x1, y1


def _warp_into_canonical(rgb: np.ndarray, transform: FaceTransform) -> np.ndarray:
    """(CANONICAL_SIZE, CANONICAL_SIZE, 3) uint8: one face warped into canonical space."""
    m = transform.matrix.copy()
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = transform.region_bbox(w, h, margin=4)
    src = rgb[y0:y1, x0:x1]
    m[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)  # work on the crop only
    s = transform.scale
    if s < 0.7 and src.size:
        # Shrinking a big face by bilinear warping aliases; pre-shrink with area averaging so the
        # warp itself runs near scale 1.
        f = min(1.0, s * 1.25)
        sw, sh = max(1, round(src.shape[1] * f)), max(1, round(src.shape[0] * f))
        fx, fy = src.shape[1] / sw, src.shape[0] / sh
        src = cv2.resize(src, (sw, sh), interpolation=cv2.INTER_AREA)
        # pixel centres: x_orig = (x_small + 0.5) * fx - 0.5
        pre = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5]])
        m = compose_affine(m, pre)
    if src.size == 0:
        return np.zeros((CANONICAL_SIZE, CANONICAL_SIZE, 3), np.uint8)
    return cv2.warpAffine(
        np.ascontiguousarray(src), m, (CANONICAL_SIZE, CANONICAL_SIZE),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
    )


# --------------------------------------------------------------------------------------------
# The canonical boundary. Inside canonical space everything is a float tensor (B, 3, S, S), RGB
# in [0, 1]; deltas use the same units. These functions are the only conversions between
# that convention and 8-bit pictures (H, W, 3) uint8.
# --------------------------------------------------------------------------------------------


def to_tensor(pictures: np.ndarray) -> torch.Tensor:
    """8-bit canonical pictures -> the canonical tensor convention.

    Args:
        pictures: (S, S, 3) or (B, S, S, 3) uint8.
    Returns:
        (B, 3, S, S) float32 in [0, 1], channels-last in memory (a view of the stacked pictures'
        layout, which every recognizer has always been run on: the same layout gives the same
        floating-point results).
    """
    a = np.asarray(pictures)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"Expected (B, S, S, 3) uint8 canonical pictures, got {a.shape} {a.dtype}.")
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255


def to_pictures(x: torch.Tensor) -> np.ndarray:
    """The canonical tensor convention -> 8-bit pictures (for display and 8-bit image filters).

    Args:
        x: (B, 3, S, S) or (3, S, S) float in [0, 1] (values outside are clipped).
    Returns:
        (B, S, S, 3) uint8 (rounded to the nearest level; exact for tensors from :func:`to_tensor`).
    """
    x = x.detach().cpu()
    if x.dim() == 3:
        x = x[None]
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def stack(faces: Sequence[torch.Tensor]) -> torch.Tensor:
    """Canonical tensors (B_i, 3, S, S) joined into one batch, in :func:`to_tensor`'s memory layout."""
    return torch.cat(list(faces)).contiguous(memory_format=torch.channels_last)


def align(rgb: np.ndarray, transforms: FaceTransform | Sequence[FaceTransform]) -> torch.Tensor:
    """Warp faces of a photo into canonical space.

    Args:
        rgb: (H, W, 3) uint8 photo.
        transforms: one photo -> canonical transform, or several (one per face).
    Returns:
        (B, 3, CANONICAL_SIZE, CANONICAL_SIZE) float32 in [0, 1], B = number of transforms. Each
        face is warped bilinearly at 8 bits, as a recognizer's own aligner would see it. Area
        outside the photo is replicated from its border.
    """
    ts = [transforms] if isinstance(transforms, FaceTransform) else list(transforms)
    return to_tensor(np.stack([_warp_into_canonical(rgb, t) for t in ts]))


#: Width (canonical pixels) of the feathered edge of the face region.
FEATHER = 12


def region_weight(size: int = CANONICAL_SIZE, feather: int = FEATHER) -> np.ndarray:
    """(size, size) float32 in [0, 1]: 1 inside, ramping to 0 over ``feather`` px at the edge."""
    r = np.arange(size, dtype=np.float32) + 0.5
    edge = np.minimum(r, size - r)  # distance of each pixel centre to the nearest border
    ramp = np.clip(edge / feather, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no visible seam
    return np.outer(ramp, ramp).astype(np.float32)


def paste_back(rgb: np.ndarray, transform: FaceTransform, delta: torch.Tensor | np.ndarray,
               gamut: str = "clip") -> np.ndarray:
    """Add a canonical-space delta to a photo at the photo's own resolution.

    The delta is warped through the inverse transform with bilinear interpolation and multiplied
    by the feathered face-region weight (:func:`to_photo`), so no pixel outside the face region
    changes and none changes by more than max|delta| (plus rounding to 8 bits). A zero delta
    returns the input bit for bit.

    Args:
        rgb: (H, W, 3) uint8 photo.
        transform: photo -> canonical.
        delta: (3, S, S) or (1, 3, S, S) float in the canonical convention's units ([0, 1] is the
            full 8-bit range), as a tensor or an array.
        gamut: where a pixel would leave [0, 255]: "clip" clips each channel on its own (an
            RGB box budget still holds); "scale" shortens the pixel's whole change until it fits,
            so any budget that is a symmetric convex set of colour changes (a luminance/chroma
            box) still holds, where clipping one channel would turn a luminance change into a
            colour one.
    Returns:
        (H, W, 3) uint8 photo.
    """
    if gamut not in ("clip", "scale"):
        raise ValueError(f"gamut must be 'clip' or 'scale', got {gamut!r}")
    d = delta.detach().cpu().numpy() if isinstance(delta, torch.Tensor) else np.asarray(delta)
    if d.ndim == 4:
        if d.shape[0] != 1:
            raise ValueError(f"paste_back takes one face's delta, got a batch of {d.shape[0]}.")
        d = d[0]
    if d.shape != (3, CANONICAL_SIZE, CANONICAL_SIZE):
        raise ValueError(f"Expected a (3, {CANONICAL_SIZE}, {CANONICAL_SIZE}) delta, got {d.shape}.")
    out = rgb.copy()
    box, warped = to_photo(rgb.shape[:2], transform, d * 255.0)  # 8-bit pixel levels
    if box is None:
        return out
    x0, y0, x1, y1 = box
    clean = rgb[y0:y1, x0:x1].astype(np.float32)
    if gamut == "scale":
        # the largest t <= 1 with clean + t * warped inside [0, 255] in every channel
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where(warped > 0, (255 - clean) / warped, np.where(warped < 0, clean / -warped, np.inf))
        warped = warped * np.clip(room.min(-1, keepdims=True), 0, 1)
    patch = clean + warped
    out[y0:y1, x0:x1] = np.clip(np.rint(patch), 0, 255).astype(np.uint8)
    return out


def to_photo(shape: tuple[int, int], transform: FaceTransform, planes: np.ndarray):
    """Canonical planes as the photo's pixels get them in :func:`paste_back`: weighted by the
    feathered face region, then warped bilinearly into the photo (zero outside the region).

    Warping is linear with non-negative weights, so a per-pixel bound |d| <= b in canonical space
    becomes |to_photo(d)| <= to_photo(b) in the photo: this is the bound a protected photo keeps.

    Args:
        shape: (H, W) of the photo.
        planes: (C, S, S) float.
    Returns:
        ((x0, y0, x1, y1), (y1 - y0, x1 - x0, C) float32) for the face region's box, or
        (None, None) when the box is empty.
    """
    h, w = shape[:2]
    x0, y0, x1, y1 = transform.region_bbox(w, h)
    if x1 <= x0 or y1 <= y0:
        return None, None
    weighted = np.asarray(planes).transpose(1, 2, 0).astype(np.float32) * region_weight()[..., None]
    # canonical -> photo crop: sample canonical at M(photo pixel) (WARP_INVERSE_MAP), zero outside.
    m = transform.matrix.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)
    warped = cv2.warpAffine(
        weighted, m, (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    return (x0, y0, x1, y1), warped.reshape(y1 - y0, x1 - x0, -1)


def region_mask(shape: tuple[int, int], transform: FaceTransform) -> np.ndarray:
    """(H, W) bool: photo pixels that paste_back may change for this face."""
    h, w = shape
    x0, y0, x1, y1 = transform.region_bbox(w, h)
    mask = np.zeros((h, w), bool)
    if x1 <= x0 or y1 <= y0:
        return mask
    m = transform.matrix.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)
    warped = cv2.warpAffine(
        region_weight(), m, (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    mask[y0:y1, x0:x1] = warped > 0
    return mask
