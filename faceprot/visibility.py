"""How visible a protection is: face-region PSNR and SSIM, and colour shift as CIEDE2000.

Every function compares a clean photo with its protected version, both ``(H, W, 3)`` uint8 RGB at
the photo's own resolution, over a region given as an ``(H, W)`` bool mask:

* :func:`psnr`, :func:`ssim`: the benchmarks' face-region quality (SSIM over the whole photo, its
  map averaged inside the region);
* :func:`ciede2000`: the per-pixel colour difference (``skimage.color.deltaE_ciede2000`` on
  sRGB -> CIELAB, D65), and :func:`colour_shift`: its mean and 95th percentile in a region;
* :func:`eye_region`: the two eye polygons of dlib's 68 points (36-41, 42-47), dilated;
* :func:`visibility`: all of them for one protected face, with the face region the one the
  protection may change (:func:`faceprot.canonical.region_mask`).

A CIEDE2000 of about 1 is a just-noticeable colour difference side by side; 2-3 is noticeable at a
glance on flat areas (Sharma, Wu & Dalal 2005 give the formula; the thresholds are the usual rule
of thumb). Issue 16 bounds the eye region's mean at 2.0 and its 95th percentile at 5.
"""

from __future__ import annotations

import cv2
import numpy as np

from .canonical import region_mask
from .faces import Face

#: dlib 68-point indices of the two eye outlines (image-left eye, image-right eye)
EYE_POLYGONS = (tuple(range(36, 42)), tuple(range(42, 48)))
#: the eye region of issue 16: the eye polygons on the clean photo, dilated by 3 photo pixels
EYE_DILATE_PX = 3


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of two uint8 pictures, over ``mask``'s pixels (all channels) or the whole picture."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = d[mask].mean() if mask is not None else d.mean()
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM (skimage, per channel then averaged) over ``mask``'s pixels or the whole picture.

    The SSIM map is computed on the whole picture, so pixels at the region's edge see their real
    neighbours."""
    from skimage.metrics import structural_similarity

    _, full = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    full = full.mean(-1)
    return float(full[mask].mean() if mask is not None else full.mean())


def ciede2000(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W) float64 CIEDE2000 between two (H, W, 3) uint8 sRGB pictures (CIELAB under D65)."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    return deltaE_ciede2000(rgb2lab(a), rgb2lab(b), channel_axis=-1)


def colour_shift(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """CIEDE2000 between ``a`` and ``b`` inside ``mask``: {"mean", "p95"} (NaNs for an empty mask).

    Only the mask's bounding box is converted to CIELAB, so a small region of a large photo is cheap."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return {"mean": float("nan"), "p95": float("nan")}
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    de = ciede2000(a[y0:y1, x0:x1], b[y0:y1, x0:x1])[mask[y0:y1, x0:x1]]
    return {"mean": float(de.mean()), "p95": float(np.percentile(de, 95))}


def eye_region(shape: tuple[int, int], landmarks68: np.ndarray, dilate_px: int = EYE_DILATE_PX) -> np.ndarray:
    """(H, W) bool: the two eye polygons of dlib's 68 points, filled, dilated by ``dilate_px``.

    Args:
        shape: (H, W) of the photo.
        landmarks68: (68, 2) dlib points in the photo's pixels (of the clean photo).
        dilate_px: dilation radius in photo pixels (a disc; 0 = the polygons alone).
    """
    h, w = shape[:2]
    m = np.zeros((h, w), np.uint8)
    pts = np.asarray(landmarks68, np.float64)
    for idx in EYE_POLYGONS:
        # 4 fractional bits: the polygon follows the landmarks to 1/16 px
        cv2.fillPoly(m, [np.round(pts[list(idx)] * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    if dilate_px > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        m = cv2.dilate(m, k)
    return m.astype(bool)


def visibility(clean: np.ndarray, protected: np.ndarray, face: Face) -> dict[str, float]:
    """Face-region PSNR and SSIM, and CIEDE2000 over the face region and the eye region.

    Args:
        clean, protected: (H, W, 3) uint8 RGB, the same photo before and after protection.
        face: the protected face as found in the clean photo (its transform gives the face
            region, its 68 points the eyes).
    Returns:
        {"psnr_face", "ssim_face", "de_face_mean", "de_face_p95", "de_eye_mean", "de_eye_p95"}.
    """
    face_px = region_mask(clean.shape[:2], face.transform)
    eyes = eye_region(clean.shape[:2], face.landmarks68)
    out = {"psnr_face": psnr(clean, protected, face_px), "ssim_face": ssim(clean, protected, face_px)}
    for name, m in (("face", face_px), ("eye", eyes)):
        s = colour_shift(clean, protected, m)
        out[f"de_{name}_mean"], out[f"de_{name}_p95"] = s["mean"], s["p95"]
    return out


__all__ = ["psnr", "ssim", "ciede2000", "colour_shift", "eye_region", "visibility", "EYE_POLYGONS", "EYE_DILATE_PX"]
