"""The geometric core of the warp engine (issue 15, item 4): a thin-plate spline warp of the
canonical face driven by displacements of its 68 landmarks, its hard limits, and hand-set
expression templates.

Conventions:

* **Coordinates** are canonical pixels (:mod:`faceprot.canonical`), x right and y down, with pixel
  ``(row i, column j)``'s centre at ``(x, y) = (j, i)``: the convention of ``cv2.warpAffine``, which
  :func:`faceprot.canonical.align` uses, so ``Face.transform.matrix`` maps a face's 68 points to
  exactly where they are in the aligned face (``Face.canonical_landmarks``).
* **Grids** are ``torch.nn.functional.grid_sample`` grids ``(B, H, W, 2)`` with
  ``align_corners=False``, as everywhere else in the package (``faceprot.recognizers.base``):
  pixel ``x`` is normalised to ``(2 x + 1) / S - 1``; sampling is bilinear with
  ``padding_mode="border"``.
* **Backward mapping.** The warp moves landmark ``s_i`` to ``s_i + d_i``. Output pixel ``p`` samples
  the input at ``T^-1(p)``, so the spline is fitted from the *displaced* landmarks to the
  *original* ones (``s_i + d_i -> s_i``) and evaluated on the output's pixel grid: the grid is the
  spline itself, no inversion needed. Anchors map to themselves.
* **Anchors**: 64 points on the square's border, every 16 px (:func:`border_anchors`), that never
  move, so the warp fades to nothing at the edge of the face square and the paste-back shows no seam.
* **Units of the limits and templates**: the inter-ocular distance (IOD), between the two eye
  centres (the means of points 36-41 and 42-47), in the face's eye-line frame (x along the eye line
  towards the image-right eye, y perpendicular to it, pointing down the face).

Everything between displacements and the image is differentiable torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..canonical import CANONICAL_SIZE

#: Each landmark moves at most this many inter-ocular distances (issue 15, item 4).
MAX_MOVE = 0.12
#: The warp's Jacobian determinant stays above this everywhere, so it never folds (issue 15, item 4).
MIN_DET = 0.3
#: Tikhonov term added to the spline's kernel matrix (points in units of the square's side), so that
#: landmarks that coincide (the inner lips of a closed mouth) do not make the system singular. At
#: 1e-9 a control point lands within 1e-4 px of its target (3e-5 px measured on random points;
#: 3e-3 px at 1e-7).
REGULARISATION = 1e-9
#: The spline is evaluated on a lattice of nodes this many pixels apart and interpolated
#: bilinearly in between (exact at the nodes). On 256 px, 129 x 129 nodes instead of 65,536 pixels:
#: the spline costs one kernel value per node and control point, and the back-off evaluates it a
#: dozen times. On real faces' template warps the interpolated grid is within 0.05 px of the exact
#: one (0.15 px with 4 px between nodes); the limits are checked on the interpolated grid, the one
#: that is sampled.
GRID_STEP = 2
#: Spacing of the fixed anchors along the square's border, in canonical pixels.
ANCHOR_STEP = 16
#: Landmarks closer than this to the square's edge (or outside it) are held still: the border
#: anchors hold the pixels there, and a landmark moving against them would fold the field.
EDGE_MARGIN = 8.0


# ------------------------------------------------------------------------------------------------
# Coordinates
# ------------------------------------------------------------------------------------------------


def border_anchors(size: int = CANONICAL_SIZE, step: int = ANCHOR_STEP) -> torch.Tensor:
    """(4 * ceil((size - 1) / step), 2) float64 points on the square's border (the outermost pixel
    centres, 0 and size - 1), ``step`` px apart, corners included, each once."""
    ticks = np.arange(0, size - 1, step, dtype=np.float64)
    ticks = np.append(ticks, size - 1.0) if ticks[-1] != size - 1 else ticks
    last = size - 1.0
    top = [(t, 0.0) for t in ticks[:-1]]
    right = [(last, t) for t in ticks[:-1]]
    bottom = [(last - t, last) for t in ticks[:-1]]
    left = [(0.0, last - t) for t in ticks[:-1]]
    return torch.tensor(top + right + bottom + left, dtype=torch.float64)


def to_normalised(pixels: torch.Tensor, size: int = CANONICAL_SIZE) -> torch.Tensor:
    """Canonical pixel coordinates -> ``grid_sample`` coordinates (``align_corners=False``)."""
    return (2 * pixels + 1) / size - 1


def to_pixels(grid: torch.Tensor, size: int = CANONICAL_SIZE) -> torch.Tensor:
    """``grid_sample`` coordinates (``align_corners=False``) -> canonical pixel coordinates."""
    return ((grid + 1) * size - 1) / 2


def identity_grid(batch: int = 1, size: int = CANONICAL_SIZE, dtype=torch.float32, device=None) -> torch.Tensor:
    """(batch, size, size, 2) grid that samples every pixel at its own centre."""
    r = torch.arange(size, dtype=torch.float64, device=device)
    y, x = torch.meshgrid(r, r, indexing="ij")
    g = to_normalised(torch.stack([x, y], -1), size).to(dtype)
    return g.expand(batch, -1, -1, -1)


def eye_centres(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 68, 2) -> the image-left and image-right eye centres, each (..., 2)."""
    return points[..., 36:42, :].mean(-2), points[..., 42:48, :].mean(-2)


def interocular_distance(points: torch.Tensor) -> torch.Tensor:
    """(..., 68, 2) -> (...): the distance between the eye centres (the limits' and templates' unit)."""
    left, right = eye_centres(points)
    return (right - left).norm(dim=-1)


def eye_frame(points: torch.Tensor) -> torch.Tensor:
    """(..., 68, 2) -> (..., 2, 2) rotation whose columns are the eye-line frame's axes in pixel
    coordinates: x along the eye line (towards the image-right eye), y perpendicular, down the face.
    A vector v in the frame is ``frame @ v`` in pixels."""
    left, right = eye_centres(points)
    ex = (right - left) / (right - left).norm(dim=-1, keepdim=True)
    ey = torch.stack([-ex[..., 1], ex[..., 0]], -1)  # x rotated by +90 degrees: down, in y-down pixels
    return torch.stack([ex, ey], -1)


# ------------------------------------------------------------------------------------------------
# The thin-plate spline
# ------------------------------------------------------------------------------------------------


def _kernel(d2: torch.Tensor) -> torch.Tensor:
    """The thin-plate kernel r^2 log r, of squared distances. The 1e-30 keeps its gradient finite
    at r = 0 (a control point with itself) and changes the value by less than 1e-30."""
    return 0.5 * d2 * torch.log(d2 + 1e-30)


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, M, 2), (B, N, 2) -> (B, M, N) squared distances, without a (B, M, N, 2) intermediate."""
    d2 = (a * a).sum(-1)[..., :, None] + (b * b).sum(-1)[..., None, :] - 2 * a @ b.transpose(-1, -2)
    return d2.clamp_min(0)


class ThinPlateSpline:
    """A 2-D thin-plate spline ``f(p) = p + A [1, p] + sum_i w_i U(|p - c_i|)`` through
    ``f(c_i) = v_i`` (up to the regulariser), fitted on the offsets ``v_i - c_i`` so that
    ``v = c`` gives exactly the identity.

    Args:
        control: (B, N, 2) control points c_i, canonical pixels (N >= 3, not all on one line).
        values: (B, N, 2) where f takes them, canonical pixels.
        size: the side of the square; points are divided by it for the solve, which keeps the
            system's scale (and the meaning of ``regularisation``) independent of resolution.
        regularisation: added to the kernel matrix's diagonal (smoothing; see ``REGULARISATION``).

    The solve and the evaluation run in float64 (close control points give large opposite weights
    that cancel) and are differentiable w.r.t. ``control`` and ``values``; results come back in
    the inputs' dtype.
    """

    def __init__(self, control: torch.Tensor, values: torch.Tensor, size: int = CANONICAL_SIZE,
                 regularisation: float = REGULARISATION):
        if control.shape != values.shape or control.dim() != 3 or control.shape[-1] != 2:
            raise ValueError(f"control and values must both be (B, N, 2), got {tuple(control.shape)} "
                             f"and {tuple(values.shape)}")
        self.size, self.dtype = size, control.dtype
        c = control.double() / size
        offsets = (values.double() - control.double()) / size
        b, n, _ = c.shape
        k = _kernel(_squared_distances(c, c)) + regularisation * torch.eye(n, dtype=c.dtype, device=c.device)
        p = torch.cat([torch.ones_like(c[..., :1]), c], -1)  # (B, N, 3)
        top = torch.cat([k, p], -1)
        bottom = torch.cat([p.transpose(-1, -2), torch.zeros(b, 3, 3, dtype=c.dtype, device=c.device)], -1)
        rhs = torch.cat([offsets, torch.zeros(b, 3, 2, dtype=c.dtype, device=c.device)], -2)
        solution = torch.linalg.solve(torch.cat([top, bottom], -2), rhs)
        self.control, self.weights, self.affine = c, solution[:, :n], solution[:, n:]

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """(B, M, 2) canonical pixels -> (B, M, 2) canonical pixels, f at each point."""
        q = points.double() / self.size
        offset = _kernel(_squared_distances(q, self.control)) @ self.weights
        offset = offset + self.affine[:, 0:1] + q @ self.affine[:, 1:]
        return (points.double() + offset * self.size).to(points.dtype)

    def grid(self, step: int = GRID_STEP) -> torch.Tensor:
        """(B, S, S, 2) ``grid_sample`` grid (``align_corners=False``) of f on the square's pixels.

        f is evaluated exactly on the pixel centres whose x and y are multiples of ``step`` (plus
        one row and column of nodes just past the last pixel when S - 1 is not a multiple) and
        interpolated bilinearly between them; ``step=1`` evaluates it at every pixel.
        """
        s, b = self.size, self.control.shape[0]
        n = -(-(s - 1) // step) + 1  # nodes per side, 0 .. (n - 1) * step >= s - 1
        r = torch.arange(n, dtype=torch.float64, device=self.control.device) * step
        y, x = torch.meshgrid(r, r, indexing="ij")
        nodes = torch.stack([x, y], -1).reshape(1, -1, 2).expand(b, -1, -1)
        mapped = self(nodes).reshape(b, n, n, 2)  # float64: self() keeps its input's dtype
        if step > 1:
            full = (n - 1) * step + 1  # node k lands exactly on pixel k * step
            mapped = F.interpolate(mapped.permute(0, 3, 1, 2), size=(full, full), mode="bilinear",
                                   align_corners=True).permute(0, 2, 3, 1)[:, :s, :s]
        return to_normalised(mapped, s).to(self.dtype)


def landmark_spline(points: torch.Tensor, displacements: torch.Tensor, size: int = CANONICAL_SIZE,
                    regularisation: float = REGULARISATION) -> ThinPlateSpline:
    """The backward map of a landmark warp: from the displaced landmarks to the original ones, with
    the border anchors fixed.

    Args:
        points: (B, K, 2) landmarks (the 68 points, or any others), canonical pixels.
        displacements: (B, K, 2) how far each one moves in the output, canonical pixels.
    """
    anchors = border_anchors(size).to(points.device, points.dtype).expand(points.shape[0], -1, -1)
    control = torch.cat([points + displacements, anchors], 1)
    values = torch.cat([points, anchors], 1)
    return ThinPlateSpline(control, values, size, regularisation)


def warp_grid(points: torch.Tensor, displacements: torch.Tensor, size: int = CANONICAL_SIZE,
              regularisation: float = REGULARISATION, step: int = GRID_STEP) -> torch.Tensor:
    """(B, S, S, 2) backward sampling grid that moves ``points`` by ``displacements`` (see
    :func:`landmark_spline`, :meth:`ThinPlateSpline.grid`), for ``grid_sample(..., align_corners=False)``.

    Example (three points; the third moves 4 px up)::

        >>> p = torch.tensor([[[100.0, 120.0], [156.0, 120.0], [128.0, 170.0]]])
        >>> d = torch.zeros_like(p); d[0, 2, 1] = -4.0
        >>> warp_grid(p, d).shape
        torch.Size([1, 256, 256, 2])
        >>> bool((landmark_spline(p, d)(p + d) - p).abs().max() < 1e-3)  # output pixel at p + d reads p
        True
        >>> bool(torch.equal(warp_grid(p, torch.zeros_like(p)), identity_grid()))
        True
    """
    return landmark_spline(points, displacements, size, regularisation).grid(step)


def sample(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) image read at a grid: bilinear, border padding, ``align_corners=False``."""
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def jacobian_determinant(grid: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 2) ``grid_sample`` grid -> (B, H, W) determinant of its map's Jacobian, in pixel
    units (1 for the identity; <= 0 where the map folds). Central differences inside, one-sided
    at the edges. Of the backward map, output -> input: 0.5 means the warp magnifies that spot
    2 times in area, 2 means it shrinks it 2 times."""
    h, w = grid.shape[1:3]
    x = ((grid[..., 0] + 1) * w - 1) / 2
    y = ((grid[..., 1] + 1) * h - 1) / 2
    x_y, x_x = torch.gradient(x, dim=(1, 2))
    y_y, y_x = torch.gradient(y, dim=(1, 2))
    return x_x * y_y - x_y * y_x


# ------------------------------------------------------------------------------------------------
# The limits
# ------------------------------------------------------------------------------------------------


@dataclass
class Limited:
    """Displacements after :func:`limit_displacements`.

    displacements: (B, K, 2) within the limits.  factor: (B,) the global back-off applied after the
    per-point cap (1 = none).  min_det, max_det: (B,) the Jacobian determinant's extremes of the
    resulting warp.
    """

    displacements: torch.Tensor
    factor: torch.Tensor
    min_det: torch.Tensor
    max_det: torch.Tensor


def cap_displacements(points68: torch.Tensor, displacements: torch.Tensor, max_move: float = MAX_MOVE,
                      size: int = CANONICAL_SIZE) -> torch.Tensor:
    """Each landmark's displacement clamped, norm-wise, to ``max_move`` times the face's IOD, and
    landmarks within ``EDGE_MARGIN`` of the square's edge (or outside it) held still.
    Differentiable (a clamp).

    Args:
        points68: (B, 68, 2) canonical pixels.  displacements: (B, 68, 2) canonical pixels.
    """
    cap = (max_move * interocular_distance(points68))[:, None, None]
    norm = displacements.norm(dim=-1, keepdim=True)
    scale = torch.where(norm > cap, cap / norm.clamp_min(1e-12), torch.ones_like(norm))
    inside = ((points68 >= EDGE_MARGIN) & (points68 <= size - 1 - EDGE_MARGIN)).all(-1, keepdim=True)
    return displacements * scale * inside


def _det_range(points, displacements, size, regularisation):
    det = jacobian_determinant(warp_grid(points, displacements, size, regularisation))
    return det.amin((1, 2)), det.amax((1, 2))


def limit_displacements(points68: torch.Tensor, displacements: torch.Tensor, *, max_move: float = MAX_MOVE,
                        min_det: float = MIN_DET, size: int = CANONICAL_SIZE, steps: int = 12,
                        regularisation: float = REGULARISATION) -> Limited:
    """The hard limits, enforced: a per-point cap, then a global back-off against folding.

    1. :func:`cap_displacements`: every landmark moves at most ``max_move`` IOD.
    2. Where the warp's Jacobian determinant leaves (min_det, 1 / min_det) somewhere (it folds, or
       magnifies or shrinks some area more than 1 / min_det times), all of that face's
       displacements are scaled by one factor, the largest that keeps it inside, found by
       bisection to 2^-steps (factor 0 is the identity, determinant 1 everywhere).

    The cap is differentiable; the factor is a constant for autograd.

    Args:
        points68: (B, 68, 2) landmarks, canonical pixels.  displacements: (B, 68, 2), canonical pixels.
    """
    capped = cap_displacements(points68, displacements, max_move, size)
    b = points68.shape[0]
    with torch.no_grad():
        p, d = points68.detach(), capped.detach()
        lo, hi = _det_range(p, d, size, regularisation)
        ok = (lo > min_det) & (hi < 1 / min_det)
        factor = torch.ones(b, dtype=torch.float64, device=p.device)
        for i in torch.nonzero(~ok).flatten().tolist():
            good, bad = 0.0, 1.0
            for _ in range(steps):
                mid = (good + bad) / 2
                lo_i, hi_i = _det_range(p[i:i + 1], mid * d[i:i + 1], size, regularisation)
                if float(lo_i) > min_det and float(hi_i) < 1 / min_det:
                    good = mid
                else:
                    bad = mid
            factor[i] = good
        if not bool(ok.all()):
            lo, hi = _det_range(p, d * factor.to(d.dtype)[:, None, None], size, regularisation)
    return Limited(capped * factor.to(capped.dtype)[:, None, None], factor, lo, hi)


# ------------------------------------------------------------------------------------------------
# Expression templates
# ------------------------------------------------------------------------------------------------

MOUTH = list(range(48, 68))


def _symmetric(moves: dict[tuple[int, int], tuple[float, float]]) -> np.ndarray:
    """(68, 2) template from {(image-left point, image-right point): (outward, up)} in IOD units:
    the image-left point moves (-outward, -up), its mirror (+outward, -up), in the eye-line frame
    (x towards the image-right eye, y down). A pair (i, i) is one point on the midline."""
    t = np.zeros((68, 2))
    for (left, right), (out, up) in moves.items():
        t[left] = (-out, -up)
        t[right] = (out, -up)
        if left == right:
            t[left] = (0.0, -up)
    return t


#: Hand-set templates, in IOD units, eye-line frame; the mouth's 20 points are set by
#: :func:`_mouth_follows` from the corners'. Sizes are first guesses to be replaced by learned
#: action-unit directions (issue 15: free displacements look like caricatures; these stay anatomical).
#: Each entry: (fixed points, mouth corners (outward, up), mouth centre up).
TEMPLATES = {
    # happy (AU12 lip corner puller, AU6 cheek raiser): lip corners up 0.06 and out 0.04; the upper
    # cheek (jaw points 1-3 / 13-15) up 0.02-0.03, the nostril wings (31, 35) up 0.02 and out 0.01,
    # the lower eyelids (40, 41 / 46, 47) up 0.01, pushed by the cheeks.
    "happy": (_symmetric({(1, 15): (0.0, 0.02), (2, 14): (0.0, 0.03), (3, 13): (0.0, 0.02),
                          (31, 35): (0.01, 0.02), (41, 46): (0.0, 0.01), (40, 47): (0.0, 0.01)}),
              (0.04, 0.06), 0.01),
    # surprise (AU1+2 brow raisers, AU5 upper lid raiser): brows up 0.07 (outer ends) to 0.09
    # (middle); upper eyelids (37, 38 / 43, 44) up 0.04; lower ones (40, 41 / 46, 47) down 0.01; the
    # jaw and mouth stay (no jaw drop).
    "surprise": (_symmetric({(17, 26): (0.0, 0.07), (18, 25): (0.0, 0.085), (19, 24): (0.0, 0.09),
                             (20, 23): (0.0, 0.085), (21, 22): (0.0, 0.08),
                             (37, 44): (0.0, 0.04), (38, 43): (0.0, 0.04),
                             (41, 46): (0.0, -0.01), (40, 47): (0.0, -0.01)}),
                 (0.0, 0.0), 0.0),
    # sad (AU1 inner brow raiser, AU15 lip corner depressor): inner brow ends (21, 22) up 0.05 and
    # (20, 23) up 0.03, outer ends (17, 26) down 0.01; lip corners down 0.04 and in 0.01.
    "sad": (_symmetric({(21, 22): (0.0, 0.05), (20, 23): (0.0, 0.03), (17, 26): (0.0, -0.01)}),
            (-0.01, -0.04), 0.0),
    # angry (AU4 brow lowerer, AU7 lid tightener): brows down, 0.05 at the inner ends (21, 22, which
    # also move 0.02 towards each other) falling to 0.01 at the outer ends; upper eyelids down 0.01.
    "angry": (_symmetric({(21, 22): (-0.02, -0.05), (20, 23): (-0.01, -0.04), (19, 24): (0.0, -0.03),
                          (18, 25): (0.0, -0.02), (17, 26): (0.0, -0.01),
                          (37, 44): (0.0, -0.01), (38, 43): (0.0, -0.01)}),
              (0.0, 0.0), 0.0),
}
EMOTIONS = tuple(TEMPLATES)


def _mouth_follows(points_frame: torch.Tensor, corners: tuple[float, float], centre_up: float) -> torch.Tensor:
    """(B, 68, 2) in the eye-line frame (IOD units) -> (B, 20, 2) displacements of the mouth's
    points 48-67. Each point's place across the mouth, t in [-1, 1] (-1 at corner 48, 1 at 54),
    sets its move: outward ``t * out``, up ``centre_up + (up - centre_up) * t^2``. Upper and lower
    lip points at the same t move alike, so a closed mouth's touching lips stay together."""
    out, up = corners
    mouth = points_frame[:, MOUTH]
    left, right = points_frame[:, 48:49, 0], points_frame[:, 54:55, 0]
    t = ((2 * mouth[..., 0] - left - right) / (right - left)).clamp(-1, 1)
    return torch.stack([t * out, -(centre_up + (up - centre_up) * t * t)], -1)


def template_displacements(points68: torch.Tensor, emotion: str, amount: float = 1.0) -> torch.Tensor:
    """An expression template as displacements for one face's own landmarks.

    Args:
        points68: (B, 68, 2) or (68, 2) landmarks, canonical (or any) pixels.
        emotion: one of ``EMOTIONS``.
        amount: scales the template (1 = as documented in ``TEMPLATES``).
    Returns:
        displacements shaped like ``points68``, in its pixels: the template scaled by the face's
        inter-ocular distance and rotated into its eye-line frame. Not yet limited (see
        :func:`limit_displacements`).
    """
    if emotion not in TEMPLATES:
        raise ValueError(f"Unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}.")
    single = points68.dim() == 2
    p = points68[None] if single else points68
    fixed, corners, centre_up = TEMPLATES[emotion]
    t = torch.as_tensor(fixed, dtype=p.dtype, device=p.device).expand(p.shape[0], -1, -1).clone()
    frame = eye_frame(p)  # (B, 2, 2), columns = axes
    iod = interocular_distance(p)[:, None, None]
    in_frame = (p - eye_centres(p)[0][:, None]) @ frame / iod  # frame coordinates, IOD units
    t[:, MOUTH] = _mouth_follows(in_frame, corners, centre_up)
    d = amount * iod * (t @ frame.transpose(-1, -2))
    return d[0] if single else d


# ------------------------------------------------------------------------------------------------
# Faces and photos
# ------------------------------------------------------------------------------------------------


def warp_face(canonical: torch.Tensor, points68: torch.Tensor, displacements: torch.Tensor, *,
              limit: bool = True, max_move: float = MAX_MOVE, min_det: float = MIN_DET) -> torch.Tensor:
    """Warp canonical faces so that their landmarks move by ``displacements``.

    Args:
        canonical: (B, 3, S, S) float in [0, 1].
        points68: (B, 68, 2) the faces' landmarks in canonical pixels (``Face.canonical_landmarks``).
        displacements: (B, 68, 2) canonical pixels.
        limit: enforce the hard limits first (:func:`limit_displacements`).
    Returns:
        (B, 3, S, S), same dtype; differentiable w.r.t. ``canonical`` and ``displacements``.
    """
    if limit:
        displacements = limit_displacements(points68, displacements, max_move=max_move, min_det=min_det,
                                            size=canonical.shape[-1]).displacements
    return sample(canonical, warp_grid(points68, displacements, canonical.shape[-1]))


def warp_photo(photo, emotion: str, amount: float = 1.0, faces="largest", detector=None):
    """The template expression, capped, on a photo's face(s): no optimisation (a first end-to-end
    path for the warp engine).

    photo -> faces (:func:`faceprot.protect.locate`) -> canonical face and its 68 points -> the
    template's displacements, limited -> warp -> delta = warped - original -> paste back at the
    photo's own resolution (:func:`faceprot.protect.protect_faces`).

    Args:
        photo: a path, bytes, PIL image, array, :class:`~faceprot.io.Picture`.
        emotion: one of ``EMOTIONS``.  amount: scales the template.
        faces, detector: as :func:`faceprot.protect.locate`.
    Returns:
        :class:`~faceprot.protect.Protected`: ``.picture`` is the warped photo, its size and alpha
        the input's; ``.deltas`` the canonical deltas.
    """
    from ..protect import locate, protect_faces

    located = locate(photo, faces, detector)

    def edit(x: torch.Tensor, i: int) -> torch.Tensor:
        pts = torch.from_numpy(located.chosen[i].canonical_landmarks).to(x.dtype)[None]
        with torch.no_grad():
            warped = warp_face(x, pts, template_displacements(pts, emotion, amount))
        return (warped - x)[0]

    return protect_faces(located, edit)


__all__ = ["MAX_MOVE", "MIN_DET", "EMOTIONS", "TEMPLATES", "ThinPlateSpline", "Limited", "border_anchors",
           "to_normalised", "to_pixels", "identity_grid", "eye_frame",
           "interocular_distance", "landmark_spline", "warp_grid", "sample", "jacobian_determinant",
           "cap_displacements", "limit_displacements", "template_displacements", "warp_face", "warp_photo"]
