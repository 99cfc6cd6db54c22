"""Canonical face space: alignment, the recognizers' fixed crops, and paste-back."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from faceprot.canonical import (
    CANONICAL_POINTS, CANONICAL_SIZE, FaceTransform, align, estimate_similarity, paste_back, region_mask,
)
from faceprot.faces import find_faces
from faceprot.io import encode_png, load_image
from faceprot.recognizers.base import DlibChip, arcface_crop


def test_estimate_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    a, s, t = 0.3, 1.7, np.array([12.0, -5.0])
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = estimate_similarity(src, src @ rot.T + t)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_estimate_similarity_never_reflects():
    src = np.random.default_rng(3).uniform(0, 100, (5, 2))
    m = estimate_similarity(src, src * [-1, 1])  # a mirror image has no exact similarity fit
    assert np.linalg.det(m[:, :2]) > 0


def _umeyama_reference(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The hand-written least-squares similarity (Umeyama 1991) that faceprot used before
    scikit-image's: the oracle that keeps every alignment, and so the cloak, unchanged."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    m = np.zeros((2, 3))
    m[:, :2] = (sig * sign).sum() / ((s**2).sum() / len(src)) * (u @ np.diag(sign) @ vt)
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def test_estimate_similarity_matches_umeyama_on_lfw_points(lfw_manifest):
    """scikit-image's estimate equals the hand-written one on real five points (measured: 1.1e-13
    at most on 300 LFW faces), and the aligned faces and pasted-back deltas are bit-identical.
    (cv2.estimateAffinePartial2D is no substitute: robust, not least squares; 4e-4 off even with
    every point an inlier and refinement on.)"""
    rng = np.random.default_rng(0)
    worst, n = 0.0, 0
    for e in lfw_manifest[::10]:
        rgb = load_image(e["path"]).rgb
        faces = find_faces(rgb)
        if not faces:
            continue
        pts = np.asarray(faces[0].points5, np.float64)
        ours, ref = estimate_similarity(pts, CANONICAL_POINTS), _umeyama_reference(pts, CANONICAL_POINTS)
        worst, n = max(worst, float(np.abs(ours - ref).max())), n + 1
        if n <= 40:
            a, b = FaceTransform(ours), FaceTransform(ref)
            assert np.array_equal(align(rgb, a), align(rgb, b))
            delta = rng.uniform(-8, 8, (CANONICAL_SIZE, CANONICAL_SIZE, 3))
            assert np.array_equal(paste_back(rgb, a, delta), paste_back(rgb, b, delta))
    print(f"\nsimilarity: scikit-image vs Umeyama reference on {n} LFW faces: max abs {worst:.1e}")
    assert n >= 140 and worst < 1e-12


def test_estimate_similarity_refuses_degenerate_points():
    with pytest.raises(ValueError, match="no similarity transform"):
        estimate_similarity(np.ones((5, 2)), CANONICAL_POINTS)


def _photos(photos_manifest, n):
    seen, out = set(), []
    for e in photos_manifest:  # several people, several sizes
        if e["identity"] in seen:
            continue
        seen.add(e["identity"])
        out.append(load_image(e["path"]).rgb)
        if len(out) == n:
            break
    return out


def test_alignment_puts_the_five_points_on_the_template(lfw_manifest):
    errs, moved = [], []
    for e in lfw_manifest[:100:10]:
        rgb = load_image(e["path"]).rgb
        face = find_faces(rgb)[0]
        p = np.hstack([face.points5, np.ones((5, 1))]) @ face.transform.matrix.T
        errs.append(np.linalg.norm(p - CANONICAL_POINTS, axis=1).mean())
        canon = align(rgb, face.transform)
        assert canon.shape == (CANONICAL_SIZE, CANONICAL_SIZE, 3) and canon.dtype == np.uint8
        # the aligned image really has the face where the transform says: its landmarks, found
        # again by the detector in the aligned picture, sit where the transform maps the photo's
        again = find_faces(canon)[0].points5
        moved.append(np.linalg.norm(again - p, axis=1).mean())
    # a similarity cannot fit 5 real points exactly, but the fit should be a few pixels at most
    assert np.median(errs) < 6.0, errs
    # measured: a median 0.8 px; an image shifted by 3 px against its transform gives about 3
    assert np.median(moved) < 1.5, moved


def test_align_matches_a_direct_warp_and_shrinks_big_faces_without_aliasing(photos_manifest):
    rgb = load_image(photos_manifest[0]["path"]).rgb  # obama.jpg, a big face
    face = find_faces(rgb)[0]
    assert face.transform.scale < 0.7  # exercises the pre-shrink path
    direct = cv2.warpAffine(rgb, face.transform.matrix, (CANONICAL_SIZE, CANONICAL_SIZE), flags=cv2.INTER_AREA)
    ours = align(rgb, face.transform).astype(float)
    # same geometry: mean difference small (the two resample differently, never by a shift);
    # measured 1.7 levels overall and 1.9 in the centre, where half a pixel's shift gives 3.9
    err = np.abs(ours - direct)
    assert err.mean() < 2.5 and err[64:192, 64:192].mean() < 2.5
    half = face.transform.matrix.copy()
    half[:, 2] += 0.5  # the same warp, half a pixel off on both axes
    shifted = cv2.warpAffine(rgb, half, (CANONICAL_SIZE, CANONICAL_SIZE), flags=cv2.INTER_AREA)
    assert err[64:192, 64:192].mean() < 0.75 * np.abs(ours - shifted)[64:192, 64:192].mean()


def test_arcface_crop_is_an_exact_pool_of_the_template_region():
    x = torch.rand(2, 3, CANONICAL_SIZE, CANONICAL_SIZE, dtype=torch.float64)
    c = arcface_crop(x)
    assert c.shape == (2, 3, 112, 112)
    # pixel (i, j) of the crop averages canonical rows 8+2i..9+2i, cols 16+2j..17+2j
    i, j = 40, 71
    want = x[:, :, 8 + 2 * i:10 + 2 * i, 16 + 2 * j:18 + 2 * j].mean((-1, -2))
    torch.testing.assert_close(c[:, :, i, j], want)
    # the template points in the crop are exactly the ArcFace 112 template
    assert np.allclose((CANONICAL_POINTS - [16, 8]) / 2,
                       [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]])


def test_dlib_chip_crop_is_differentiable_and_inside_canonical_space():
    chip = DlibChip().double()
    x0 = torch.rand(1, 3, CANONICAL_SIZE, CANONICAL_SIZE, dtype=torch.float64)
    u = torch.randn(3, 3 * CANONICAL_SIZE * CANONICAL_SIZE, dtype=torch.float64)

    def f(z):
        return chip(x0 + (z @ u).view_as(x0))[:, :, ::15, ::15]

    assert torch.autograd.gradcheck(f, (torch.zeros(1, 3, dtype=torch.float64, requires_grad=True),))
    g = chip.grid
    assert g.shape == (1, 150, 150, 2)
    assert g.abs().max() <= 1.0  # the whole chip is read from inside the square, no padding


def test_zero_delta_is_the_identity_bit_for_bit(photos_manifest):
    for rgb in _photos(photos_manifest, 4):
        face = find_faces(rgb)[0]
        out = paste_back(rgb, face.transform, np.zeros((CANONICAL_SIZE, CANONICAL_SIZE, 3), np.float32))
        assert np.array_equal(out, rgb)


def _polygon_mask(shape, corners, grow=1.5):
    """Pixels within ``grow`` px of the canonical square mapped into the photo (independent of paste_back)."""
    h, w = shape
    c = corners.mean(0)
    grown = c + (corners - c) * (1 + grow / np.linalg.norm(corners - c, axis=1, keepdims=True))
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(grown * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


@pytest.mark.parametrize("eps_levels", [8.0, 16.0])
def test_bounded_delta_stays_in_the_face_region_and_in_budget(photos_manifest, eps_levels):
    rng = np.random.default_rng(1)
    sizes = set()
    for rgb in _photos(photos_manifest, 5):
        sizes.add(rgb.shape[:2])
        face = find_faces(rgb)[0]
        delta = rng.uniform(-eps_levels, eps_levels, (CANONICAL_SIZE, CANONICAL_SIZE, 3)).astype(np.float32)
        out = paste_back(rgb, face.transform, delta)
        diff = np.abs(out.astype(int) - rgb.astype(int))
        changed = diff.max(-1) > 0
        assert changed.sum() > 1000  # it did do something
        # no pixel outside the face region changes, by two independent definitions of it
        assert not (changed & ~region_mask(rgb.shape[:2], face.transform)).any()
        assert not (changed & ~_polygon_mask(rgb.shape[:2], face.transform.region_corners())).any()
        # and none by more than eps plus one level
        assert diff.max() <= eps_levels + 1
        # a PNG round trip keeps the protected pixels exactly
        back = np.array(Image.open(io.BytesIO(encode_png(out))).convert("RGB"))
        assert np.array_equal(back, out)
    assert len(sizes) >= 3, sizes


def test_paste_back_reaches_the_photo_at_its_own_resolution(photos_manifest):
    """The delta is resampled to the photo's pixels, not pasted as a 256x256 block."""
    rgb = _photos(photos_manifest, 1)[0]
    face = find_faces(rgb)[0]
    delta = np.zeros((CANONICAL_SIZE, CANONICAL_SIZE, 3), np.float32)
    delta[100:156, 100:156] = 10.0
    out = paste_back(rgb, face.transform, delta)
    changed = np.argwhere((out != rgb).any(-1))
    extent = changed.max(0) - changed.min(0)
    # 56 canonical px -> 56 / scale photo px
    expect = 56 / face.transform.scale
    assert 0.8 * expect < extent.max() < 1.6 * expect
