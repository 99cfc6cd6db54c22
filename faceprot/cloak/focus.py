"""The cloak's focusing functions (FaceCloak section III-B), all inside the optimisation.

* :class:`RegionStickers`: boxes on the eyes, nose and mouth, from the selfie's landmarks in
  canonical space, where identity leaks most; they get the larger budget.
* :class:`HighPassMask`: where the selfie has fine detail (Gaussian high-pass, z-scored over the
  face, above a threshold) a perturbation hides better; those pixels get the larger budget too.
* :func:`budget_map`: the per-pixel L-inf budget: base eps everywhere, the larger eps inside
  stickers or high-pass (the larger where they overlap), with at most ``max_high_fraction`` of the
  face's pixels on the high budget.
* :class:`LearnableAttention`: a per-pixel weight A in [0, 1] on the perturbation, updated by a
  z-scored gradient step, so the budget is spent where it moves the embedding.

All maps are (1, 256, 256) in canonical space. Budgets are in [0, 1] image units (8/255 = 8 levels).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..canonical import CANONICAL_SIZE

# dlib 68-point index groups
EYE_LEFT, EYE_RIGHT = list(range(36, 42)), list(range(42, 48))
NOSE = list(range(27, 36))
MOUTH = list(range(48, 68))


def face_hull(landmarks: np.ndarray, size: int = CANONICAL_SIZE) -> np.ndarray:
    """(size, size) bool: the convex hull of the 68 canonical landmarks (the face's pixels)."""
    hull = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(landmarks).astype(np.int32)), 1)
    return hull.astype(bool)


@dataclass
class RegionStickers:
    """Boxes on the eyes, nose and mouth.

    Margins are fractions of each part's landmark extent (x, y). The eye boxes reach up to the brows
    and down to the upper cheek; the mouth box covers the lips; the nose box the bridge and base.
    """

    eye_margin: tuple[float, float] = (0.25, 0.6)
    nose_margin: tuple[float, float] = (0.2, 0.05)
    mouth_margin: tuple[float, float] = (0.12, 0.25)

    def boxes(self, landmarks: np.ndarray, shrink: float = 1.0) -> list[tuple[int, int, int, int]]:
        out = []
        for idx, (mx, my) in [(EYE_LEFT, self.eye_margin), (EYE_RIGHT, self.eye_margin),
                              (NOSE, self.nose_margin), (MOUTH, self.mouth_margin)]:
            q = landmarks[idx]
            (x0, y0), (x1, y1) = q.min(0), q.max(0)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            hw = (x1 - x0) * (0.5 + mx) * shrink
            hh = (y1 - y0) * (0.5 + my) * shrink
            out.append((int(round(cx - hw)), int(round(cy - hh)), int(round(cx + hw)), int(round(cy + hh))))
        return out

    def mask(self, landmarks: np.ndarray, shrink: float = 1.0, size: int = CANONICAL_SIZE) -> np.ndarray:
        """(size, size) bool."""
        m = np.zeros((size, size), bool)
        for x0, y0, x1, y1 in self.boxes(landmarks, shrink):
            m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
        return m


@dataclass
class HighPassMask:
    """Pixels of fine detail: |gray - GaussianBlur(gray, sigma)|, z-scored over the face."""

    sigma: float = 3.0  # FACTS.md section 6: blur sigma 3
    threshold: float = 1.0  # in standard deviations

    def zscore(self, canonical_rgb: np.ndarray, face: np.ndarray) -> np.ndarray:
        """(256, 256, 3) uint8 aligned selfie, (256, 256) bool face -> (256, 256) float32 z-scores."""
        gray = cv2.cvtColor(canonical_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        hp = np.abs(gray - cv2.GaussianBlur(gray, (0, 0), self.sigma))
        vals = hp[face]
        return ((hp - vals.mean()) / (vals.std() + 1e-6)).astype(np.float32)

    def mask(self, canonical_rgb: np.ndarray, face: np.ndarray, threshold: float | None = None) -> np.ndarray:
        t = self.threshold if threshold is None else threshold
        return (self.zscore(canonical_rgb, face) > t) & face


@dataclass
class FocusMaps:
    """The budget and the maps it came from (all (256, 256))."""

    budget: np.ndarray  # float32, [0, 1] units
    stickers: np.ndarray  # bool
    high_pass: np.ndarray  # bool
    face: np.ndarray  # bool
    high_fraction: float  # share of face pixels on the high budget


def budget_map(canonical_rgb: np.ndarray, landmarks: np.ndarray, eps: float, eps_high: float,
               use_stickers: bool = True, use_high_pass: bool = True, max_high_fraction: float = 0.30,
               stickers: RegionStickers | None = None, high_pass: HighPassMask | None = None) -> FocusMaps:
    """Per-pixel L-inf budget for the selfie, fixed at enrollment.

    Args:
        canonical_rgb: (256, 256, 3) uint8 aligned selfie.
        landmarks: (68, 2) the selfie's landmarks in canonical coordinates.
        eps, eps_high: base and high budgets, [0, 1] units (paper: 8/255 and 16/255).
        max_high_fraction: cap on the share of face pixels with the high budget (paper: 30%).
            Stickers come first (shrunk if they alone exceed the cap); the high-pass threshold is
            raised until the union fits.
    """
    stickers = stickers or RegionStickers()
    high_pass = high_pass or HighPassMask()
    face = face_hull(landmarks)
    n_face = face.sum()
    cap = max_high_fraction * n_face
    st = np.zeros_like(face)
    if use_stickers:
        shrink = 1.0
        st = stickers.mask(landmarks) & face
        while st.sum() > cap and shrink > 0.2:
            shrink *= 0.95
            st = stickers.mask(landmarks, shrink) & face
    hp = np.zeros_like(face)
    if use_high_pass:
        z = high_pass.zscore(canonical_rgb, face)
        room = cap - st.sum()
        candidates = face & ~st
        hp = (z > high_pass.threshold) & candidates
        if hp.sum() > room:
            # the highest-detail pixels that fit in the remaining room
            k = int(max(room, 0))
            if k == 0:
                hp[:] = False
            else:
                t = np.partition(z[candidates], -k)[-k]
                hp = (z >= t) & candidates
                if hp.sum() > k:  # ties at the threshold
                    idx = np.flatnonzero(hp)
                    hp.flat[idx[k:]] = False
    high = st | hp
    budget = np.full(face.shape, eps, np.float32)
    budget[high] = max(eps, eps_high)
    return FocusMaps(budget, st, hp, face, float(high.sum() / max(n_face, 1)))


def zscore(t: torch.Tensor) -> torch.Tensor:
    return (t - t.mean()) / (t.std() + 1e-12)


class LearnableAttention:
    """A per-pixel weight A in [0, 1] on the perturbation: the forward pass sees x + Pi(A * P).

    Each step moves A against the z-scored gradient of the loss: A <- clip(A - lr * alpha * z(dL/dA)),
    where alpha is the PGD step size, so lr = 10 (FACTS.md section 6) with alpha = 2/255 moves A by
    0.08 per standard deviation of gradient per step: over 10 steps, pixels whose weight keeps
    hurting the objective fade out and the budget concentrates where it moves the embedding.
    """

    def __init__(self, size: int = CANONICAL_SIZE, lr: float = 10.0, alpha: float = 2 / 255,
                 enabled: bool = True, device: torch.device | str = "cpu"):
        self.enabled = enabled
        self.lr = lr
        self.alpha = alpha
        self.a = torch.ones(1, 1, size, size, device=device, requires_grad=enabled)

    def step(self, grad: torch.Tensor) -> None:
        """One update with dL/dA (1, 1, H, W)."""
        if not self.enabled:
            return
        with torch.no_grad():
            self.a -= self.lr * self.alpha * zscore(grad)
            self.a.clamp_(0.0, 1.0)

    def map(self) -> np.ndarray:
        return self.a.detach()[0, 0].cpu().numpy().copy()
