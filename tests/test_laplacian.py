"""MAP's Laplacian smoothness term on the 68 landmarks (issue 15, item 3)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT
from faceprot.disguise.smoothness import CONTOURS, laplacian, laplacian_loss, neighbours


pytestmark = pytest.mark.usefixtures("faceprot_threads")


BROWS = list(range(17, 27))


def _random_points(*batch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*batch, 68, 2, generator=gen, dtype=torch.float64) * 200


def test_neighbourhoods_follow_the_68_point_contours():
    assert sorted(i for _, a, b, _ in CONTOURS for i in range(a, b + 1)) == list(range(68))
    assert neighbours(8) == (7, 9)  # chin, inside the jaw
    assert neighbours(0) == (1,) and neighbours(16) == (15,)  # ends of open contours: one neighbour
    assert neighbours(17) == (18,) and neighbours(21) == (20,) and neighbours(22) == (23,)
    assert neighbours(30) == (29,) and neighbours(31) == (32,)  # bridge and nostrils are apart
    assert neighbours(36) == (41, 37) and neighbours(41) == (40, 36)  # eyes and lips are loops
    assert neighbours(48) == (59, 49) and neighbours(60) == (67, 61) and neighbours(67) == (66, 60)
    for i in range(68):  # symmetric: i's neighbour has i as a neighbour
        assert all(i in neighbours(j) for j in neighbours(i))


def test_laplacian_is_each_point_minus_its_neighbours_mean():
    p = _random_points(3)
    lap = laplacian(p)
    assert lap.shape == (3, 68, 2) and lap.dtype == torch.float64
    for i in (0, 8, 16, 17, 21, 30, 36, 41, 48, 59, 60, 67):
        nb = list(neighbours(i))
        assert torch.allclose(lap[:, i], p[:, i] - p[:, nb].mean(1))


def test_translation_rotation_and_scale():
    p = _random_points(2, 4)
    shift = torch.tensor([13.0, -7.0], dtype=torch.float64)
    assert torch.allclose(laplacian(p + shift), laplacian(p))
    moved = p.clone()
    moved[..., 17:22, :] += shift  # one whole contour moved: its shape, so its Laplacian, is the same
    assert torch.allclose(laplacian(moved), laplacian(p))
    c, s = math.cos(0.3), math.sin(0.3)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    assert torch.allclose(laplacian(2.5 * p @ rot.T), 2.5 * laplacian(p) @ rot.T)
    # The loss: zero for the original, unchanged when the whole face moves, scale-free normalised.
    q = p + torch.randn(p.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert float(laplacian_loss(p, p)) == 0.0
    assert float(laplacian_loss(moved, p)) == pytest.approx(0.0, abs=1e-20)
    assert torch.allclose(laplacian_loss(q + shift, p + shift, reduction="none"), laplacian_loss(q, p, reduction="none"))
    assert float(laplacian_loss(3 * q, 3 * p)) == pytest.approx(float(laplacian_loss(q, p)))
    assert float(laplacian_loss(3 * q, 3 * p, normalise=False)) == pytest.approx(9 * float(laplacian_loss(q, p, normalise=False)))
    assert laplacian_loss(q, p[0, 0], reduction="none").shape == (2, 4)  # one original broadcast
    with pytest.raises(ValueError, match="68, 2"):
        laplacian(torch.zeros(5, 2))


def test_laplacian_loss_gradient():
    p = _random_points(1, seed=2)
    q = (p + torch.randn(p.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: laplacian_loss(x, p), (q,))
    g, = torch.autograd.grad(laplacian_loss(q.float(), p.float()), q)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def _draw(rgb: np.ndarray, curves: dict, path) -> None:
    """The brows, enlarged 4x, each set of brow points as a polyline, with a legend strip below."""
    pts = np.concatenate([c for c, _ in curves.values()])
    x0, y0 = (pts.min(0) - 16).astype(int).clip(0)
    x1, y1 = (pts.max(0) + 16).astype(int)
    k = 4
    img = cv2.resize(np.ascontiguousarray(rgb[y0:y1, x0:x1, ::-1]), None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    legend = np.full((24 * len(curves) + 8, img.shape[1], 3), 255, np.uint8)
    for row, (name, (c, colour)) in enumerate(curves.items()):
        for brow in (c[:5], c[5:10]):
            xy = ((brow - [x0, y0]) * k).round().astype(np.int32)
            cv2.polylines(img, [xy], False, colour, 2, cv2.LINE_AA)
            for q in xy:
                cv2.circle(img, tuple(int(v) for v in q), 4, colour, -1, cv2.LINE_AA)
        cv2.putText(legend, name, (8, 22 + 24 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2, cv2.LINE_AA)
    path.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(path), np.concatenate([img, legend]))


def test_without_the_laplacian_term_the_brows_erode(lfw_manifest):
    """An expression-like objective that pulls only the inner brow points up (AU1, "inner brow
    raiser": points 21 and 22, 0.2 inter-ocular distances), on a real LFW face's dlib landmarks, 100
    fixed gradient steps. Alone, it drags two points out of each brow; with MAP's Laplacian term the
    brows rise as brows."""
    from faceprot.faces import find_faces
    from faceprot.io import load_image

    picture = load_image(lfw_manifest[0]["path"])
    original = torch.tensor(find_faces(picture.rgb)[0].landmarks68)
    iod = float((original[36] - original[45]).norm())
    inner = [21, 22]
    target = original[inner] - torch.tensor([0.0, 0.2 * iod], dtype=torch.float64)

    def raise_inner_brows(p):
        return (((p[inner] - target) / iod) ** 2).sum(-1).mean()

    def brow_shape_change(p):  # rms change of the brow points' Laplacians, in inter-ocular distances
        return float(((laplacian(p) - laplacian(original))[BROWS] ** 2).sum(-1).mean().sqrt()) / iod

    def optimise(weight: float) -> torch.Tensor:
        p = original.clone().requires_grad_()
        for _ in range(100):
            loss = raise_inner_brows(p) + weight * laplacian_loss(p, original)
            g, = torch.autograd.grad(loss, p)
            with torch.no_grad():
                p -= 0.2 * iod**2 * g  # 0.2 in inter-ocular units, where both losses are measured
        return p.detach()

    without, with_term = optimise(0.0), optimise(100.0)
    start = float(raise_inner_brows(original))
    numbers = {"objective": (start, float(raise_inner_brows(without)), float(raise_inner_brows(with_term))),
               "brow shape change": (brow_shape_change(without), brow_shape_change(with_term)),
               "brow mean rise": tuple(float((original[BROWS, 1] - p[BROWS, 1]).mean()) / iod for p in (without, with_term))}
    print(numbers)
    _draw(picture.rgb, {"without the Laplacian term": (without[BROWS].numpy(), (0, 0, 255)),
                        "with it (weight 100)": (with_term[BROWS].numpy(), (255, 120, 0)),
                        "original": (original[BROWS].numpy(), (0, 170, 0))},
          ROOT / "test-artifacts" / "brow-erosion.png")
    assert brow_shape_change(without) > 5 * brow_shape_change(with_term)
    assert float(raise_inner_brows(with_term)) < 0.02 * start  # the expression objective still gets there
    rise_without, rise_with = numbers["brow mean rise"]
    assert rise_with > 2.5 * rise_without  # the whole brow rose, not just its two inner points


def test_docstring_example_runs():
    import doctest
    import importlib

    # by name: the package's attribute `laplacian` is the function, which hides the module
    result = doctest.testmod(importlib.import_module("faceprot.disguise.smoothness"))
    assert result.attempted >= 2 and result.failed == 0
