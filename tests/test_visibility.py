"""Visibility metrics (faceprot.visibility) against answers worked out by hand, and on a real LFW face."""

from __future__ import annotations

import numpy as np
import pytest

from faceprot.faces import find_faces
from faceprot.io import load_image
from faceprot.visibility import ciede2000, colour_shift, eye_region, psnr, visibility


def _lightness(level: int) -> float:
    """CIE L* of a neutral sRGB grey, from the sRGB and CIELAB formulas (no library)."""
    c = level / 255
    y = ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92
    f = y ** (1 / 3) if y > (6 / 29) ** 3 else y / (3 * (6 / 29) ** 2) + 4 / 29
    return 116 * f - 16


def _de00_lightness_only(l1: float, l2: float) -> float:
    """CIEDE2000 of two neutral colours: only the lightness term is left, |dL| / S_L."""
    lbar = (l1 + l2) / 2
    s_l = 1 + 0.015 * (lbar - 50) ** 2 / np.sqrt(20 + (lbar - 50) ** 2)
    return abs(l2 - l1) / s_l


@pytest.mark.parametrize("a, b", [(118, 128), (30, 34), (200, 190)])
def test_a_uniform_grey_shift_gives_the_hand_computed_ciede2000(a, b):
    want = _de00_lightness_only(_lightness(a), _lightness(b))
    x = np.full((6, 7, 3), a, np.uint8)
    y = np.full((6, 7, 3), b, np.uint8)
    de = ciede2000(x, y)
    assert de.shape == (6, 7)
    np.testing.assert_allclose(de, want, atol=1e-3)
    s = colour_shift(x, y, np.ones((6, 7), bool))
    assert s["mean"] == pytest.approx(want, abs=1e-3) and s["p95"] == pytest.approx(want, abs=1e-3)


def test_pixels_outside_the_region_do_not_count_and_the_p95_is_a_percentile():
    want = _de00_lightness_only(_lightness(118), _lightness(128))
    clean = np.full((40, 40, 3), 118, np.uint8)
    prot = clean.copy()
    region = np.zeros((40, 40), bool)
    region[10:30, 10:30] = True
    region[18:22, 18:22] = False  # a hole: 384 pixels, and the box around them is not the region
    prot[region] = 128
    prot[~region] = [255, 0, 0]  # a huge colour change outside the region
    s = colour_shift(clean, prot, region)
    assert s["mean"] == pytest.approx(want, abs=1e-3) and s["p95"] == pytest.approx(want, abs=1e-3)
    # half the region unchanged: the mean halves, the 95th percentile is the changed pixels' value
    prot[10:20, 10:30] = 118
    s = colour_shift(clean, prot, region)
    assert s["mean"] == pytest.approx(want / 2, abs=1e-3) and s["p95"] == pytest.approx(want, abs=1e-3)
    # 5% + 1 pixel changed: the 95th percentile is still above zero; 5% - 1: it is zero
    prot[region] = 118
    idx = np.argwhere(region)
    for n, positive in ((21, True), (19, False)):
        p = prot.copy()
        p[tuple(idx[:n].T)] = 128
        assert (colour_shift(clean, p, region)["p95"] > 0.5) is positive
    assert np.isnan(colour_shift(clean, prot, np.zeros((40, 40), bool))["mean"])


def test_psnr_of_a_one_level_change_in_the_region():
    clean = np.full((20, 20, 3), 100, np.uint8)
    prot = clean.copy()
    region = np.zeros((20, 20), bool)
    region[5:10] = True
    prot[region] += 1
    prot[~region] = 0  # outside the region: does not count
    assert psnr(clean, prot, region) == pytest.approx(20 * np.log10(255), abs=1e-9)  # 48.13 dB


def test_eye_region_is_the_dilated_eye_polygons_on_a_real_lfw_face(lfw_manifest):
    path = lfw_manifest[100 * 5]["path"]  # a person of the tuning split
    rgb = load_image(path).rgb
    face = find_faces(rgb)[0]
    lm = face.landmarks68
    eyes = eye_region(rgb.shape[:2], lm)
    bare = eye_region(rgb.shape[:2], lm, dilate_px=0)
    assert bare.sum() < eyes.sum() and (eyes | bare).sum() == eyes.sum()  # dilation only grows it
    import cv2

    n, labels = cv2.connectedComponents(eyes.astype(np.uint8))
    assert n - 1 == 2  # two separate eyes
    for idx in (range(36, 42), range(42, 48)):
        cx, cy = lm[list(idx)].mean(0)
        # each eye's centre lies in the region, and so does every one of its six points
        assert eyes[int(round(cy)), int(round(cx))]
        for x, y in lm[list(idx)]:
            assert eyes[int(round(y)), int(round(x))]
        # 3 px of dilation: a point 2 px beyond the outer corner is in, one 6 px beyond is not
    left_corner, right_corner = lm[36], lm[45]
    assert eyes[int(round(left_corner[1])), int(round(left_corner[0] - 2))]
    assert not eyes[int(round(left_corner[1])), int(round(left_corner[0] - 6))]
    assert eyes[int(round(right_corner[1])), int(round(right_corner[0] + 2))]
    assert not eyes[int(round(right_corner[1])), int(round(right_corner[0] + 6))]
    # the region is in the upper half of the face box, and an eye is darker than the whole face
    ys = np.nonzero(eyes)[0]
    assert face.box[1] <= ys.min() and ys.max() < (face.box[1] + face.box[3]) / 2
    grey = rgb.mean(-1)
    x0, y0, x1, y1 = (int(v) for v in face.box)
    assert grey[bare].mean() < grey[max(y0, 0):y1, max(x0, 0):x1].mean()


def test_visibility_of_an_unchanged_and_of_a_shifted_face(lfw_manifest):
    rgb = load_image(lfw_manifest[100 * 5]["path"]).rgb
    face = find_faces(rgb)[0]
    same = visibility(rgb, rgb.copy(), face)
    assert same["de_face_mean"] == 0 and same["de_eye_p95"] == 0 and same["psnr_face"] > 100
    assert same["ssim_face"] == pytest.approx(1.0)
    # change only the eyes' pixels: the eye region's colour shift is larger than the face's
    eyes = eye_region(rgb.shape[:2], face.landmarks68)
    prot = rgb.copy()
    prot[eyes] = np.clip(prot[eyes].astype(int) + [0, 12, 12], 0, 255).astype(np.uint8)  # teal
    v = visibility(rgb, prot, face)
    assert v["de_eye_mean"] > 3 and v["de_eye_p95"] >= v["de_eye_mean"]
    assert 0 < v["de_face_mean"] < v["de_eye_mean"] / 5
