"""The surrogate interface: canonical-space faces in, embeddings out, differentiably.

Every recognizer takes the same input, a batch of canonical faces ``(B, 3, 256, 256)`` RGB in
[0, 1] (see :mod:`faceprot.canonical`), and makes its own input crop from it with a fixed,
differentiable resample. So one perturbation in canonical space can be optimised against, and
scored on, every recognizer at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..canonical import (
    ARCFACE_OFFSET, ARCFACE_SCALE, CANONICAL_SIZE, DLIB_CHIP_FROM_CANONICAL, DLIB_CHIP_SIZE, invert_affine,
)


def arcface_crop(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, 256, 256) canonical -> (B, 3, 112, 112) ArcFace-template crop (exact 2x2 average pool)."""
    ox, oy = ARCFACE_OFFSET
    n = 112 * ARCFACE_SCALE
    return F.avg_pool2d(x[..., oy:oy + n, ox:ox + n], ARCFACE_SCALE)


def _chip_grid() -> torch.Tensor:
    """(1, 150, 150, 2) grid_sample grid that reads dlib's chip out of canonical space."""
    inv = invert_affine(DLIB_CHIP_FROM_CANONICAL)  # chip -> canonical
    u, v = np.meshgrid(np.arange(DLIB_CHIP_SIZE), np.arange(DLIB_CHIP_SIZE))
    pts = np.stack([u, v, np.ones_like(u)], -1).astype(np.float64) @ inv.T
    # pixel centres -> normalised coordinates (align_corners=False)
    grid = (2 * pts + 1) / CANONICAL_SIZE - 1
    return torch.from_numpy(grid[None].astype(np.float32))


class DlibChip(nn.Module):
    """(B, 3, 256, 256) canonical -> (B, 3, 150, 150) dlib chip, bilinear."""

    def __init__(self):
        super().__init__()
        self.register_buffer("grid", _chip_grid(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(x, self.grid.expand(x.shape[0], -1, -1, -1).to(x.dtype),
                             mode="bilinear", padding_mode="border", align_corners=False)


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for a module with neither)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


@dataclass(frozen=True)
class Threshold:
    """A verification threshold in the recognizer's own metric, and where it came from."""

    value: float
    source: str


class Surrogate(nn.Module):
    """A differentiable face recognizer on canonical faces.

    Subclasses set ``name``, ``metric`` ("cosine": higher is more alike, match when >= threshold;
    or "l2": lower is more alike, match when < threshold) and ``threshold``, and implement
    :meth:`embed_crop`.
    """

    name: str = ""
    metric: str = "cosine"
    threshold: Threshold

    @property
    def device(self) -> torch.device:
        """Where the weights are; inputs must be moved there."""
        return module_device(self)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed_crop(self, crop: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 256, 256) canonical RGB in [0, 1] -> (B, D) embeddings (raw, not normalised)."""
        return self.embed_crop(self.crop(x))

    def score(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Score in the model's metric between embeddings (..., D): cosine or L2 distance."""
        if self.metric == "cosine":
            return F.cosine_similarity(a, b, dim=-1)
        return torch.linalg.vector_norm(a - b, dim=-1)

    def is_match(self, score: float) -> bool:
        t = self.threshold.value
        return score >= t if self.metric == "cosine" else score < t
