"""MAP's Laplacian smoothness term on the 68 landmarks (FACTS.md section 7).

The Laplacian of a landmark is the landmark minus the mean of its neighbours along its facial
contour; it describes the contour's local shape (its bends), not where the contour is. Keeping each
landmark's Laplacian close to the original's lets an expression edit move a contour (raise a brow,
open the mouth) while keeping it a brow or a mouth, instead of dragging single points out of line.

Points are dlib's 68-point layout (:mod:`faceprot.faces`), ``(..., 68, 2)`` in any units (photo or
canonical pixels), float; everything is differentiable torch.
"""

from __future__ import annotations

import numpy as np
import torch

#: The contours of dlib's 68-point layout: (name, first index, last index, closed).
CONTOURS = (
    ("jaw", 0, 16, False),
    ("right brow", 17, 21, False),  # the image's left brow: dlib names by the subject's side
    ("left brow", 22, 26, False),
    ("nose bridge", 27, 30, False),
    ("nostrils", 31, 35, False),
    ("right eye", 36, 41, True),
    ("left eye", 42, 47, True),
    ("outer lips", 48, 59, True),
    ("inner lips", 60, 67, True),
)

#: Outer eye corners, whose distance makes the loss scale-free.
OUTER_EYE_CORNERS = (36, 45)


def neighbours(i: int) -> tuple[int, ...]:
    """Landmark ``i``'s neighbours along its contour. Closed contours (eyes, lips) wrap around. The
    end of an open contour (jaw, brows, nose) has its one neighbour, so its Laplacian is the last
    segment of the contour: the end is held in line too (a brow's outer tip cannot drift off alone),
    where leaving it out would let it move freely."""
    for _, a, b, closed in CONTOURS:
        if a <= i <= b:
            n = b - a + 1
            if closed:
                return (a + (i - a - 1) % n, a + (i - a + 1) % n)
            return tuple(j for j in (i - 1, i + 1) if a <= j <= b)
    raise ValueError(f"landmark index {i} is not in the 68-point layout")


def _build_operator() -> np.ndarray:
    """(68, 68) L with laplacian(P) = L @ P: the identity minus the mean over each row's neighbours."""
    op = np.eye(68)
    for i in range(68):
        nb = neighbours(i)
        op[i, list(nb)] -= 1.0 / len(nb)
    return op


_OPERATOR = _build_operator()


def _operator(dtype: torch.dtype, device) -> torch.Tensor:
    return torch.as_tensor(_OPERATOR, dtype=dtype, device=device)


def laplacian(points: torch.Tensor) -> torch.Tensor:
    """Each landmark minus the mean of its contour neighbours.

    Args:
        points: (..., 68, 2) float landmarks.
    Returns:
        (..., 68, 2), same dtype and device. Unchanged by a translation of all points (or of one
        contour), scaled and rotated with them.

    Example::

        >>> p = torch.rand(2, 68, 2)
        >>> laplacian(p).shape
        torch.Size([2, 68, 2])
        >>> bool(torch.allclose(laplacian(p + torch.tensor([5.0, -3.0])), laplacian(p), atol=1e-5))
        True
    """
    if points.shape[-2:] != (68, 2):
        raise ValueError(f"expected (..., 68, 2) landmarks, got {tuple(points.shape)}")
    return _operator(points.dtype, points.device) @ points


def laplacian_loss(points: torch.Tensor, original: torch.Tensor, normalise: bool = True,
                   reduction: str = "mean") -> torch.Tensor:
    """MAP's smoothness loss: the mean squared difference between the Laplacians of ``points`` and
    of ``original`` over the 68 landmarks and both coordinates.

    Args:
        points: (..., 68, 2) the edited landmarks (differentiable).
        original: (..., 68, 2) the original landmarks (broadcast against ``points``).
        normalise: divide the differences by the original's inter-ocular distance (outer eye corners
            36 and 45), so the loss is the same in photo and canonical pixels.
        reduction: ``"mean"`` (one scalar) or ``"none"`` (one value per face, shape ``(...)``).
    """
    diff = laplacian(points) - laplacian(original)
    if normalise:
        i, j = OUTER_EYE_CORNERS
        iod = torch.linalg.vector_norm(original[..., i, :] - original[..., j, :], dim=-1)
        diff = diff / iod.detach()[..., None, None]
    per_face = diff.pow(2).mean(dim=(-2, -1))
    if reduction == "none":
        return per_face
    if reduction == "mean":
        return per_face.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', not {reduction!r}")


__all__ = ["CONTOURS", "OUTER_EYE_CORNERS", "neighbours", "laplacian", "laplacian_loss"]
