"""The geometric core of the warp engine (issue 15, item 4): the thin-plate spline, its limits, the
expression templates, and the template warp of a real photo."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT
from faceprot.canonical import CANONICAL_SIZE as S
from faceprot.disguise.warp import (
    EMOTIONS, MAX_MOVE, MIN_DET, border_anchors, cap_displacements, eye_frame, identity_grid,
    interocular_distance, jacobian_determinant, landmark_spline, limit_displacements, sample,
    template_displacements, to_normalised, to_pixels, warp_face, warp_grid, warp_photo,
)

pytestmark = pytest.mark.usefixtures("faceprot_threads")

ARTIFACTS = ROOT / "test-artifacts"


def _spread_points(n=68, seed=0, lo=40.0, hi=216.0):
    """(1, n, 2) float64 points inside the square, no two closer than 6 px (a well-posed spline)."""
    gen = np.random.default_rng(seed)
    pts = []
    while len(pts) < n:
        p = gen.uniform(lo, hi, 2)
        if all(np.hypot(*(p - q)) >= 6 for q in pts):
            pts.append(p)
    return torch.tensor(np.array(pts))[None]


def _random_moves(shape, scale, seed=1):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


@pytest.fixture(scope="module")
def lfw_face(lfw_manifest):
    """(picture, Face, canonical face (1, 3, S, S), canonical landmarks (1, 68, 2) float64)."""
    from faceprot.canonical import align
    from faceprot.faces import find_faces
    from faceprot.io import load_image

    picture = load_image(lfw_manifest[0]["path"])
    face = find_faces(picture.rgb)[0]
    return picture, face, align(picture.rgb, face.transform), torch.from_numpy(face.canonical_landmarks)[None]


# ------------------------------------------------------------------------------------------------
# The spline and its grid
# ------------------------------------------------------------------------------------------------


def test_border_anchors_ring_the_square():
    a = border_anchors()
    assert a.shape == (64, 2)
    assert len({tuple(p) for p in a.tolist()}) == 64  # each once, corners included
    on_edge = (a == 0) | (a == S - 1)
    assert on_edge.any(-1).all()
    for corner in ([0, 0], [S - 1, 0], [S - 1, S - 1], [0, S - 1]):
        assert (a == torch.tensor(corner, dtype=a.dtype)).all(-1).any()


def test_grid_convention_matches_the_canonical_square():
    """Pixel centres are integers (cv2.warpAffine's convention, in which align puts the landmarks);
    grids use align_corners=False: the identity grid reads every pixel exactly."""
    g = identity_grid(dtype=torch.float64)
    assert torch.allclose(to_pixels(g)[0, 5, 7], torch.tensor([7.0, 5.0], dtype=torch.float64))
    assert float(to_normalised(torch.tensor(-0.5))) == -1.0 and float(to_normalised(torch.tensor(S - 0.5))) == 1.0
    x = torch.rand(1, 3, S, S, dtype=torch.float64)
    assert torch.allclose(sample(x, g), x, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_displacement_is_the_identity(dtype):
    p = _spread_points().to(dtype)
    grid = warp_grid(p, torch.zeros_like(p))
    assert grid.dtype == dtype and grid.shape == (1, S, S, 2)
    assert torch.equal(grid, identity_grid(dtype=dtype))
    x = torch.rand(1, 3, S, S, generator=torch.Generator().manual_seed(0)).to(dtype)
    assert float((warp_face(x, p, torch.zeros_like(p)) - x).abs().max()) < 1e-5


def test_each_control_point_lands_where_it_should():
    """Backward map: the spline takes each displaced landmark back to its original place (the
    output pixel there reads the landmark's input pixel), and each anchor to itself."""
    p = _spread_points()
    d = _random_moves(p.shape, 3.0)
    spline = landmark_spline(p, d)
    assert float((spline(p + d) - p).abs().max()) < 1e-3
    a = border_anchors()[None]
    assert float((spline(a) - a).abs().max()) < 1e-3
    # the grid is exact at its nodes (every other pixel) and at every pixel with step=1
    exact = to_pixels(spline.grid(step=1))
    assert float((to_pixels(spline.grid())[:, ::2, ::2] - exact[:, ::2, ::2]).abs().max()) < 1e-9


def test_the_warp_moves_image_content_with_the_landmarks():
    """A bright spot on a landmark ends up where the landmark was sent."""
    p = _spread_points(20, seed=3)
    d = torch.zeros_like(p)
    d[0, 0] = torch.tensor([4.0, -3.0], dtype=torch.float64)
    yy, xx = torch.meshgrid(torch.arange(S, dtype=torch.float64), torch.arange(S, dtype=torch.float64), indexing="ij")
    cx, cy = p[0, 0]
    spot = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5**2))[None, None]
    out = warp_face(spot, p, d, limit=False)[0, 0]
    w = out / out.sum()
    centroid = torch.stack([(w * xx).sum(), (w * yy).sum()])
    assert float((centroid - (p[0, 0] + d[0, 0])).norm()) < 0.15


def test_anchors_hold_the_border(lfw_face):
    """With the happy template on a real face, the anchors stay put and no pixel within 2 px of
    the square's edge moves more than 0.2 px (the most, 0.13 px, is beside the cheek points, 15 px
    from the edge, that the template lifts; paste-back's feather weighs those pixels under 0.05),
    while the face itself moves several pixels."""
    *_, pts = lfw_face
    d = limit_displacements(pts, template_displacements(pts, "happy")).displacements
    move = (to_pixels(warp_grid(pts, d)) - to_pixels(identity_grid(dtype=torch.float64)))[0].norm(dim=-1)
    ring = torch.ones(S, S, dtype=torch.bool)
    ring[2:-2, 2:-2] = False
    assert float(move[ring].max()) < 0.2
    assert float(move.max()) > 3.0
    a = border_anchors()[None]
    assert float((landmark_spline(pts, d)(a) - a).abs().max()) < 1e-3


def test_the_spline_is_differentiable():
    """gradcheck through the solve, the grid (exact, and interpolated between nodes) and
    grid_sample, on a 12 px square."""
    n = 12
    p = torch.tensor([[[4.0, 4.0], [8.0, 5.0], [5.0, 8.0]]], dtype=torch.float64)
    img = torch.rand(1, 1, n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = (0.7 * torch.tensor([[[0.3, -0.2], [-0.1, 0.4], [0.2, 0.1]]], dtype=torch.float64)).requires_grad_()

    def grid(disp, step):
        return landmark_spline(p, disp, size=n).grid(step)

    assert torch.autograd.gradcheck(lambda x: grid(x, 1), (d,))
    assert torch.autograd.gradcheck(lambda x: sample(img, grid(x, 2)), (d,))


def test_gradient_of_a_loss_on_the_warped_face_matches_finite_differences(lfw_face):
    _, _, x, pts = lfw_face
    x = x.double()
    d0 = template_displacements(pts, "happy")
    target = torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(d):
        return ((warp_face(x, pts, d, limit=False) - target) ** 2).mean()

    d = d0.clone().requires_grad_()
    g, = torch.autograd.grad(loss(d), d)
    for i in (48, 54, 19):  # a lip corner each side, a brow point
        for k in (0, 1):
            e = torch.zeros_like(d0)
            e[0, i, k] = 1e-3
            numeric = (loss(d0 + e) - loss(d0 - e)) / 2e-3
            assert float(g[0, i, k]) == pytest.approx(float(numeric), rel=0.02, abs=1e-9)


def test_docstring_example_runs():
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module("faceprot.disguise.warp"))
    assert result.attempted >= 3 and result.failed == 0


def test_jacobian_determinant_of_known_maps():
    """Of the backward map, in pixel units: 1 for the identity, the product of scales for a
    stretch, negative for a mirror."""
    g = identity_grid(dtype=torch.float64)
    assert torch.allclose(jacobian_determinant(g), torch.ones(1, S, S, dtype=torch.float64))
    px = to_pixels(g)
    stretched = to_normalised(torch.stack([1.5 * px[..., 0] + 3, 0.8 * px[..., 1] - 2], -1))
    assert torch.allclose(jacobian_determinant(stretched), torch.full((1, S, S), 1.2, dtype=torch.float64))
    mirrored = to_normalised(torch.stack([px[..., 1], px[..., 0]], -1))  # x <-> y
    assert torch.allclose(jacobian_determinant(mirrored), -torch.ones(1, S, S, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------
# The limits
# ------------------------------------------------------------------------------------------------


def test_the_cap_clamps_each_point_norm_wise(lfw_face):
    *_, pts = lfw_face
    cap = MAX_MOVE * float(interocular_distance(pts))
    d = torch.zeros_like(pts)
    d[0, 48] = torch.tensor([3.0, -4.0])  # 5 px: under the cap, unchanged
    d[0, 54] = torch.tensor([30.0, 40.0])  # 50 px: scaled to the cap, direction kept
    out = cap_displacements(pts, d)
    assert torch.equal(out[0, 48], d[0, 48])
    assert float(out[0, 54].norm()) == pytest.approx(cap)
    assert torch.allclose(out[0, 54] / out[0, 54].norm(), torch.tensor([0.6, 0.8], dtype=torch.float64))
    edge = pts.clone()
    edge[0, 8] = torch.tensor([128.0, S - 3.0])  # a chin at the square's edge is held still
    assert torch.equal(cap_displacements(edge, torch.ones_like(edge))[0, 8], torch.zeros(2, dtype=torch.float64))


def test_large_random_moves_come_out_within_the_limits(lfw_face):
    *_, pts = lfw_face
    iod = float(interocular_distance(pts))
    two = torch.cat([pts, pts + 3.0])  # a batch: each face gets its own back-off
    d = torch.cat([_random_moves(pts.shape, 0.5 * iod, seed) for seed in range(2)])
    lim = limit_displacements(two, d)
    assert float(lim.displacements.norm(dim=-1).max()) <= MAX_MOVE * iod + 1e-9
    det = jacobian_determinant(warp_grid(two, lim.displacements))  # measured again, on the output grid
    assert (det.amin((1, 2)) > MIN_DET).all() and (det.amax((1, 2)) < 1 / MIN_DET).all()
    assert torch.allclose(lim.min_det, det.amin((1, 2)))
    assert ((lim.factor > 0) & (lim.factor <= 1)).all()



def test_a_folding_field_is_backed_off_until_it_no_longer_folds(lfw_face):
    """Two neighbouring lip points swapped: the capped field folds; the back-off shrinks it until
    the determinant stays above 0.3, and no further than needed."""
    *_, pts = lfw_face
    d = torch.zeros_like(pts)
    d[0, 49], d[0, 50] = pts[0, 50] - pts[0, 49], pts[0, 49] - pts[0, 50]
    capped = cap_displacements(pts, d)
    assert float(jacobian_determinant(warp_grid(pts, capped)).min()) < 0  # it folds
    lim = limit_displacements(pts, d)
    assert float(lim.factor) < 1
    assert float(jacobian_determinant(warp_grid(pts, lim.displacements)).min()) > MIN_DET
    a_bit_more = jacobian_determinant(warp_grid(pts, capped * min(1.0, float(lim.factor) + 0.01)))
    assert float(a_bit_more.min()) < MIN_DET + 0.05  # the factor is close to the largest allowed
    assert torch.equal(limit_displacements(pts, torch.zeros_like(pts)).factor, torch.ones(1, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------
# The templates
# ------------------------------------------------------------------------------------------------


def _in_frame(points, d):
    """Displacements in the eye-line frame, IOD units (x towards the image-right eye, y down)."""
    return d @ eye_frame(points) / interocular_distance(points)[..., None, None]


def test_templates_move_the_right_points_the_right_way(lfw_face):
    *_, pts = lfw_face
    happy = _in_frame(pts, template_displacements(pts, "happy"))[0]
    assert happy[48, 0] < -0.03 and happy[54, 0] > 0.03  # lip corners out
    assert happy[48, 1] < -0.05 and happy[54, 1] < -0.05  # and up
    assert (happy[[2, 14, 31, 35], 1] < -0.01).all()  # cheeks, nostril wings up
    assert (happy[list(range(17, 27)), :] == 0).all()  # brows stay
    surprise = _in_frame(pts, template_displacements(pts, "surprise"))[0]
    assert (surprise[17:27, 1] < -0.069).all()  # brows up
    assert (surprise[[37, 38, 43, 44], 1] < -0.03).all() and (surprise[[40, 41, 46, 47], 1] > 0).all()
    assert (surprise[list(range(0, 17)) + list(range(48, 68))] == 0).all()  # no jaw drop, mouth still
    for emotion in EMOTIONS:
        moves = _in_frame(pts, template_displacements(pts, emotion))[0].norm(dim=-1)
        assert float(moves.max()) <= MAX_MOVE  # every template is within the cap as it is
    with pytest.raises(ValueError, match="happy"):
        template_displacements(pts, "smug")


def test_templates_follow_the_face_rotation_and_scale(lfw_face):
    *_, pts = lfw_face
    c, s = math.cos(0.4), math.sin(0.4)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    moved = 1.7 * pts @ rot.T + torch.tensor([5.0, -9.0], dtype=torch.float64)
    for emotion in EMOTIONS:
        d = template_displacements(pts, emotion)
        assert torch.allclose(template_displacements(moved, emotion), 1.7 * d @ rot.T, atol=1e-9)
        assert torch.allclose(template_displacements(pts, emotion, amount=0.5), 0.5 * d)
        assert torch.allclose(template_displacements(pts[0], emotion), d[0])  # one face, unbatched


# ------------------------------------------------------------------------------------------------
# A real photo
# ------------------------------------------------------------------------------------------------


def _mouth_corners_in_frame(landmarks68: np.ndarray) -> np.ndarray:
    """(2, 2): points 48 and 54 in the eye-line frame, IOD units, from the eye centres' midpoint."""
    p = torch.from_numpy(landmarks68)[None]
    mid = (p[0, 36:42].mean(0) + p[0, 42:48].mean(0)) / 2
    return (((p[0, [48, 54]] - mid) @ eye_frame(p)[0]) / interocular_distance(p)[0]).numpy()


def _save_before_after(before: np.ndarray, after: np.ndarray, face, name: str) -> None:
    """Side-by-side photos, and the mouth enlarged 2x, before | after, to test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    cv2.imwrite(str(ARTIFACTS / f"{name}.png"), np.concatenate([before, after], 1)[..., ::-1])
    m = face.landmarks68[48:68]
    iod = np.linalg.norm(face.landmarks68[42:48].mean(0) - face.landmarks68[36:42].mean(0))
    x0, y0 = (m.min(0) - 0.35 * iod).astype(int).clip(0)
    x1, y1 = (m.max(0) + 0.35 * iod).astype(int)
    crops = [cv2.resize(np.ascontiguousarray(im[y0:y1, x0:x1]), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
             for im in (before, after)]
    gap = np.full((crops[0].shape[0], 4, 3), 255, np.uint8)
    cv2.imwrite(str(ARTIFACTS / f"{name}-mouth-2x.png"), np.concatenate([crops[0], gap, crops[1]], 1)[..., ::-1])


def test_warp_photo_happy_on_a_real_face(lfw_face):
    """The template smile on a real LFW photo, pasted back: only the face square changes, the
    photo keeps its size, and dlib finds the mouth corners higher on the result."""
    from faceprot.canonical import region_mask
    from faceprot.faces import find_faces

    from faceprot.canonical import to_pictures

    picture, face, x, _ = lfw_face
    result = warp_photo(picture, "happy")
    before, after = picture.rgb, result.picture.rgb
    assert after.shape == before.shape and after.dtype == np.uint8
    outside = ~region_mask(before.shape[:2], face.transform)
    assert outside.any() and np.array_equal(after[outside], before[outside])
    assert not np.array_equal(after, before)
    found = find_faces(after)[0]
    rise = _mouth_corners_in_frame(face.landmarks68)[:, 1] - _mouth_corners_in_frame(found.landmarks68)[:, 1]
    print(f"mouth corners rose {rise.round(3)} IOD (the template asks 0.06)")
    _save_before_after(before, after, face, "warp-happy")
    canonical = np.concatenate(list(to_pictures(torch.cat([x, x + result.deltas[0][None]]))), 1)
    cv2.imwrite(str(ARTIFACTS / "warp-happy-canonical-2x.png"),  # the face as the warp saw it
                cv2.resize(canonical[..., ::-1], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))
    assert rise.mean() > 0.01
