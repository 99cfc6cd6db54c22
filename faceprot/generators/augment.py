"""Realistic augmentations of one selfie: the CPU view generator.

Pose, scale and shift jitter, a small yaw, mirroring, lighting, gamma, colour temperature, blur,
noise and JPEG, each drawn from a seeded generator. Works on the photo's face region resized to
near canonical scale, so it is fast.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from ..faces import Face


def _face_crop(rgb: np.ndarray, face: Face, target_scale: float = 1.1) -> np.ndarray:
    """The face's region with a margin, resized so the face is near canonical scale (fast to augment)."""
    t = face.transform
    c = t.region_corners()
    centre = c.mean(0)
    half = np.abs(c - centre).max() * 1.35
    x0, y0 = (centre - half).astype(int)
    x1, y1 = (centre + half).astype(int)
    pad = max(0, -x0, -y0, x1 - rgb.shape[1], y1 - rgb.shape[0])
    src = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REFLECT_101) if pad else rgb
    crop = src[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    f = t.scale * target_scale
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    return cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))),
                      interpolation=interp)


class AugmentViews:
    """Realistic augmentations of the selfie (the CPU generator)."""

    name = "augment"

    def __init__(self, max_rotate: float = 12.0, max_yaw: float = 0.10, scale: tuple = (0.85, 1.15),
                 max_shift: float = 0.05, mirror_prob: float = 0.5, low_res_prob: float = 0.0,
                 low_res: tuple = (0.3, 0.6)):
        self.mirror_prob = mirror_prob
        self.max_rotate = max_rotate
        self.max_yaw = max_yaw
        self.scale = scale
        self.max_shift = max_shift
        #: with this probability a view is shrunk to a random share in ``low_res`` of its side
        #: and enlarged back (a small, soft photo, as a web crop or an old camera gives)
        self.low_res_prob = low_res_prob
        self.low_res = low_res

    @classmethod
    def wide(cls) -> "AugmentViews":
        """"augment-wide": more diverse views (issue 16, transfer): twice the pose range (rotation,
        yaw, scale, shift) and, in four views of ten, a low-resolution round trip."""
        gen = cls(max_rotate=20.0, max_yaw=0.25, scale=(0.75, 1.25), max_shift=0.08, low_res_prob=0.4)
        gen.name = "augment-wide"
        return gen

    def _one(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        # pose: in-plane rotation, scale, shift, and a perspective squeeze of one side (a small yaw)
        ang = rng.uniform(-self.max_rotate, self.max_rotate)
        s = rng.uniform(*self.scale)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, s)
        m[:, 2] += rng.uniform(-self.max_shift, self.max_shift, 2) * (w, h)
        out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        yaw = rng.uniform(-self.max_yaw, self.max_yaw)
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        dy = abs(yaw) * h / 2
        dst = src.copy()
        side = [1, 2] if yaw > 0 else [0, 3]  # the side turning away gets shorter
        dst[side[0], 1] += dy
        dst[side[1], 1] -= dy
        out = cv2.warpPerspective(out, cv2.getPerspectiveTransform(src, dst), (w, h),
                                  borderMode=cv2.BORDER_REFLECT_101)
        if rng.random() < self.mirror_prob:
            out = out[:, ::-1]
        x = out.astype(np.float32) / 255
        # lighting: exposure, contrast, a directional light ramp, gamma, colour temperature
        x = x * rng.uniform(0.75, 1.25)
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.75, 1.25) + mean
        theta = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        ramp = ((xx / w - 0.5) * np.cos(theta) + (yy / h - 0.5) * np.sin(theta))
        x = x * (1 + rng.uniform(0, 0.5) * ramp)[..., None]
        x = np.clip(x, 0, 1) ** rng.uniform(0.7, 1.4)
        temp = rng.uniform(-0.08, 0.08)
        x = x * np.array([1 + temp, 1.0, 1 - temp], np.float32)
        if rng.random() < 0.4:
            x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.5))
        if rng.random() < 0.4:
            x = x + rng.normal(0, rng.uniform(1, 6) / 255, x.shape).astype(np.float32)
        out = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
        if self.low_res_prob > 0 and rng.random() < self.low_res_prob:
            f = rng.uniform(*self.low_res)
            small = cv2.resize(out, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
            out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            buf = io.BytesIO()
            Image.fromarray(out).save(buf, "JPEG", quality=int(rng.integers(40, 96)))
            out = np.array(Image.open(buf).convert("RGB"))
        return np.ascontiguousarray(out)

    def generate(self, rgb: np.ndarray, face: Face, n: int, seed: int) -> list[np.ndarray]:
        crop = _face_crop(rgb, face)
        rng = np.random.default_rng(seed)
        return [self._one(crop, rng) for _ in range(n)]
