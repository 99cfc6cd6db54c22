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
    to_pictures, to_tensor,
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
            assert torch.equal(align(rgb, a), align(rgb, b))
            delta = rng.uniform(-8, 8, (3, CANONICAL_SIZE, CANONICAL_SIZE)) / 255
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
        x = align(rgb, face.transform)
        assert x.shape == (1, 3, CANONICAL_SIZE, CANONICAL_SIZE) and x.dtype == torch.float32
        assert 0 <= float(x.min()) and float(x.max()) <= 1
        canon = to_pictures(x)[0]
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
    ours = to_pictures(align(rgb, face.transform))[0].astype(float)
    # same geometry: mean difference small (the two resample differently, never by a shift);
    # measured 1.7 levels overall and 1.9 in the centre, where half a pixel's shift gives 3.9
    err = np.abs(ours - direct)
    assert err.mean() < 2.5 and err[64:192, 64:192].mean() < 2.5
    half = face.transform.matrix.copy()
    half[:, 2] += 0.5  # the same warp, half a pixel off on both axes
    shifted = cv2.warpAffine(rgb, half, (CANONICAL_SIZE, CANONICAL_SIZE), flags=cv2.INTER_AREA)
    assert err[64:192, 64:192].mean() < 0.75 * np.abs(ours - shifted)[64:192, 64:192].mean()


def test_arcface_crop_of_a_real_face_is_the_standard_112_alignment(lfw_manifest):
    """What an ArcFace-family recognizer receives from faceprot is what insightface's own
    alignment gives: the photo warped straight onto the 112x112 template. Checked on real faces,
    pixel by pixel and through MobileFaceNet's embedding."""
    from faceprot.canonical import ARCFACE_TEMPLATE_112
    from faceprot.recognizers import load_surrogate

    model = load_surrogate("mobilefacenet")
    errs, cos = [], []
    for e in lfw_manifest[:50:10]:
        rgb = load_image(e["path"]).rgb
        face = find_faces(rgb)[0]
        ours = arcface_crop(align(rgb, face.transform))
        m = estimate_similarity(face.points5, ARCFACE_TEMPLATE_112)
        direct = cv2.warpAffine(rgb, m, (112, 112), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        ref = to_tensor(direct)
        assert ours.shape == ref.shape == (1, 3, 112, 112)
        errs.append(float((ours - ref).abs().mean() * 255))
        with torch.no_grad():
            cos.append(float(torch.nn.functional.cosine_similarity(
                model.embed_crop(ours), model.embed_crop(ref))))
    # measured 2.0-2.45 levels apart on average (a bilinear warp then 2x2 pooling vs one warp);
    # the same direct warp half a pixel off is 5.8-7.0 levels away
    assert max(errs) < 3.5, errs
    assert min(cos) > 0.99, cos  # measured 0.997-0.998: the recognizer sees the same face


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
        out = paste_back(rgb, face.transform, torch.zeros(3, CANONICAL_SIZE, CANONICAL_SIZE))
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
        delta = rng.uniform(-eps_levels, eps_levels, (3, CANONICAL_SIZE, CANONICAL_SIZE)).astype(np.float32) / 255
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
    delta = torch.zeros(1, 3, CANONICAL_SIZE, CANONICAL_SIZE)
    delta[..., 100:156, 100:156] = 10 / 255
    out = paste_back(rgb, face.transform, delta)
    changed = np.argwhere((out != rgb).any(-1))
    extent = changed.max(0) - changed.min(0)
    # 56 canonical px -> 56 / scale photo px
    expect = 56 / face.transform.scale
    assert 0.8 * expect < extent.max() < 1.6 * expect


def test_the_canonical_boundary_round_trips_and_keeps_one_layout(lfw_manifest):
    """align gives (B, 3, S, S) float in [0, 1]; to_pictures/to_tensor convert exactly both ways,
    and every canonical batch has the same memory layout (the recognizers' float results depend
    on it, so the cloak's figures would drift with another one)."""
    from faceprot.canonical import stack

    rgbs = [load_image(e["path"]).rgb for e in lfw_manifest[:2]]
    xs = [align(r, find_faces(r)[0].transform) for r in rgbs]
    pics = to_pictures(torch.cat(xs))
    assert pics.shape == (2, CANONICAL_SIZE, CANONICAL_SIZE, 3) and pics.dtype == np.uint8
    back = to_tensor(pics)
    assert torch.equal(back, torch.cat(xs))  # 8-bit levels survive the round trip exactly
    joined = stack(xs)
    assert joined.stride() == back.stride()
    assert joined.is_contiguous(memory_format=torch.channels_last)
    # a face warped on its own and in a batch of two is the same face
    both = align(rgbs[0], [find_faces(rgbs[0])[0].transform] * 2)
    assert torch.equal(both[0], xs[0][0]) and torch.equal(both[1], xs[0][0])
    # paste_back takes the same units: a delta of 4/255 moves pixels by 4 levels inside the face
    face = find_faces(rgbs[0])[0]
    out = paste_back(rgbs[0], face.transform, torch.full((3, CANONICAL_SIZE, CANONICAL_SIZE), 4 / 255))
    assert np.abs(out.astype(int) - rgbs[0].astype(int)).max() == 4
    with pytest.raises(ValueError):
        paste_back(rgbs[0], face.transform, torch.zeros(CANONICAL_SIZE, CANONICAL_SIZE, 3))
