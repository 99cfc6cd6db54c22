"""The landmark measure of expression (issue 15, item 1): features, rules and verdicts."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from conftest import ROOT, load_manifest
from faceprot.disguise.measure import (EMOTION_RULES, FEATURES, NO_FACE, RULE_FEATURES, expression_change,
                                       expression_features, eye_frame, landmark_verdict, photo_landmarks)

IOD = 60.0  # the synthetic face's eye centres are 60 px apart


def _neutral_face() -> np.ndarray:
    """A plausible neutral face in dlib's 68-point layout, photo pixels, eyes level at y = 100."""
    jaw = [(100 + 60 * math.cos(a), 100 + 90 * math.sin(a)) for a in np.linspace(math.pi, 0, 17)]
    brows = [(50 + 10 * i, 82 - (4 if i in (1, 2, 3) else 0)) for i in range(5)]
    brows += [(200 - x, y) for x, y in reversed(brows)]
    nose = [(100, 100 + 13 * i) for i in range(4)] + [(88 + 6 * i, 145 + (2 if i == 2 else 0)) for i in range(5)]

    def eye(cx):
        return [(cx - 12, 100), (cx - 5, 96), (cx + 5, 96), (cx + 12, 100), (cx + 5, 104), (cx - 5, 104)]

    outer = [(80, 165), (87, 160), (94, 158), (100, 159), (106, 158), (113, 160), (120, 165),
             (113, 171), (106, 173), (100, 174), (94, 173), (87, 171)]
    inner = [(83, 165), (94, 164), (100, 164), (106, 164), (117, 165), (106, 166), (100, 166), (94, 166)]
    p = np.array(jaw + brows + nose + eye(70) + eye(130) + outer + inner, dtype=np.float64)
    assert p.shape == (68, 2)
    return p


def _moved(p: np.ndarray, moves: dict[int, tuple[float, float]]) -> np.ndarray:
    """A copy with points moved by (right, up) in IODs (the face is upright: up is -y)."""
    q = p.copy()
    for i, (dx, dy) in moves.items():
        q[i] += (dx * IOD, -dy * IOD)
    return q


def _similarity(p: np.ndarray, degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = math.radians(degrees)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return scale * p @ r.T + np.array(shift)


def test_eye_frame_puts_the_eyes_at_minus_and_plus_one_half():
    q = eye_frame(_similarity(_neutral_face(), 30, 2.5, (7, -3)))
    assert np.allclose(q[36:42].mean(0), (-0.5, 0), atol=1e-12)
    assert np.allclose(q[42:48].mean(0), (0.5, 0), atol=1e-12)
    assert q[17:27, 1].min() > 0 > q[48:68, 1].max()  # brows above the eye line, mouth below it
    with pytest.raises(ValueError, match="68, 2"):
        eye_frame(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="coincide"):
        eye_frame(np.zeros((68, 2)))


@pytest.mark.parametrize("degrees, scale, shift", [(0, 1, (0, 0)), (17, 0.3, (400, -20)), (-40, 3.0, (-5, 9)),
                                                   (180, 1.7, (1, 1))])
def test_features_are_unchanged_by_rotation_scale_and_translation(degrees, scale, shift):
    rng = np.random.default_rng(0)
    p = _neutral_face() + rng.normal(0, 1.5, (68, 2))  # an irregular face, not a symmetric one
    a = expression_features(p)
    b = expression_features(_similarity(p, degrees, scale, shift))
    assert list(a) == list(FEATURES)
    for f in FEATURES:
        assert b[f] == pytest.approx(a[f], abs=1e-9), f


def test_features_of_the_synthetic_face_are_in_inter_ocular_units():
    f = expression_features(_neutral_face())
    assert f["mouth_width"] == pytest.approx(40 / IOD)
    assert f["eye_opening"] == pytest.approx(8 / IOD)
    assert f["mouth_corner_lift"] == pytest.approx(0.0)  # corners at the mouth centre's height
    assert f["brow_raise"] == pytest.approx((100 - np.mean([82, 78, 78, 78, 82])) / IOD)
    assert f["inner_brow_lowering"] == pytest.approx(-18 / IOD)
    assert f["lip_press"] == pytest.approx(-15 / IOD)  # minus the height from 51 to 57
    assert f["lip_corner_depression"] == pytest.approx(-9 / IOD)  # 57 is 9 px below the corners


def test_a_synthetic_smile_is_happy_and_a_neutral_copy_is_not():
    clean = _neutral_face()
    smile = _moved(clean, {48: (-0.1, 0.1), 54: (0.1, 0.1)})  # corners up and out by 0.1 IOD
    change = expression_change(clean, smile)
    assert change["mouth_corner_lift"] == pytest.approx(0.1)
    assert change["mouth_width"] == pytest.approx(0.2)
    shown, details = landmark_verdict(clean, smile, "happy")
    assert shown and details["face"] and all(details["passed"].values())
    shown, details = landmark_verdict(clean, clean.copy(), "happy")
    assert not shown and not any(details["passed"].values())
    # the same smile on a photo taken turned and closer is still a smile
    assert landmark_verdict(clean, _similarity(smile, 12, 1.8, (30, 5)), "happy")[0]


@pytest.mark.parametrize("moves, feature", [
    ({48: (0, 0.1), 54: (0, 0.1)}, "mouth_corner_lift"),
    ({48: (-0.1, 0), 54: (0.1, 0)}, "mouth_width"),
    ({i: (0, 0.1) for i in range(17, 27)}, "brow_raise"),
    ({37: (0, 0.03), 38: (0, 0.03), 43: (0, 0.03), 44: (0, 0.03),
      40: (0, -0.03), 41: (0, -0.03), 46: (0, -0.03), 47: (0, -0.03)}, "eye_opening"),
    ({21: (0, -0.1), 22: (0, -0.1)}, "inner_brow_lowering"),
    ({**{i: (0, -0.05) for i in (50, 51, 52)}, **{i: (0, 0.05) for i in (56, 57, 58)},
      **{i: (0, -0.01) for i in (61, 62, 63)}, **{i: (0, 0.01) for i in (65, 66, 67)}}, "lip_press"),
    ({48: (0, -0.1), 54: (0, -0.1)}, "lip_corner_depression"),
])
def test_each_expression_movement_raises_its_feature(moves, feature):
    clean = _neutral_face()
    change = expression_change(clean, _moved(clean, moves))
    assert change[feature] >= 0.05, change
    assert change[feature] == max(change.values())  # the largest rise of all features


def test_each_emotion_rule_names_the_issues_features():
    assert RULE_FEATURES == {"happy": ("mouth_corner_lift", "mouth_width"),
                             "surprise": ("brow_raise", "eye_opening"),
                             "angry": ("inner_brow_lowering", "lip_press"),
                             "sad": ("lip_corner_depression",)}
    for emotion, rule in EMOTION_RULES.items():
        assert rule.features == RULE_FEATURES[emotion]
        if rule.supported:
            assert set(rule.thresholds) == set(rule.features)
            assert all(t > 0 for t in rule.thresholds.values())  # movement is asked for, never nothing
        else:
            assert rule.why


def test_happy_needs_both_lift_and_width():
    clean = _neutral_face()
    wide_only = _moved(clean, {48: (-0.1, 0), 54: (0.1, 0)})
    lifted_only = _moved(clean, {48: (0, 0.1), 54: (0, 0.1)})
    frown = _moved(clean, {48: (-0.1, -0.1), 54: (0.1, -0.1)})
    for points in (wide_only, lifted_only, frown):
        assert not landmark_verdict(clean, points, "happy")[0]


def test_unsupported_or_unknown_emotions_get_no_verdict():
    clean = _neutral_face()
    for emotion, rule in EMOTION_RULES.items():
        if not rule.supported:
            with pytest.raises(ValueError, match="does not support"):
                landmark_verdict(clean, clean, emotion)
    with pytest.raises(ValueError, match="no landmark rule"):
        landmark_verdict(clean, clean, "disgust")


def test_no_face_on_the_edited_photo_is_not_shown():
    assert photo_landmarks(np.full((120, 120, 3), 128, np.uint8)) is None
    shown, details = landmark_verdict(_neutral_face(), None, "happy")
    assert not shown and details["face"] is False and details["reason"] == NO_FACE


def test_a_real_photo_against_a_turned_and_resized_copy_shows_no_emotion():
    """Tuning-split LFW photos (people 150 on): the landmarks re-detected on a copy turned by 6
    degrees and enlarged 1.3 times are the photo's own expression, so no rule may fire."""
    from faceprot.io import load_image

    entries = load_manifest("lfw")
    ids = list(dict.fromkeys(e["identity"] for e in entries))
    tuning = set(ids[150:300])
    photos = [e["path"] for e in entries if e["identity"] in tuning][:: 25][:8]
    checked = 0
    for path in photos:
        rgb = load_image(path).rgb
        clean = photo_landmarks(rgb)
        assert clean is not None, path
        h, w = rgb.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 6, 1.3)
        turned = cv2.warpAffine(rgb, m, (int(w * 1.3), int(h * 1.3)), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)
        again = photo_landmarks(turned)
        assert again is not None, path
        assert landmark_verdict(clean, clean, "happy")[0] is False
        for emotion, rule in EMOTION_RULES.items():
            if rule.supported:
                shown, details = landmark_verdict(clean, again, emotion)
                assert not shown, (path, emotion, details)
        checked += 1
    assert checked == 8


def test_the_threshold_fit_keeps_neutral_pairs_under_the_cap():
    """benchmarks/expression_thresholds.py's choice on made-up changes: emotion pairs whose lift and
    width rise by about 0.1, neutral pairs spread about zero."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from expression_thresholds import MAX_FPR, fit_rule

    rng = np.random.default_rng(1)
    pos = [{"mouth_corner_lift": a, "mouth_width": b} for a, b in rng.normal(0.1, 0.05, (200, 2))]
    neg = [{"mouth_corner_lift": a, "mouth_width": b} for a, b in rng.normal(0.0, 0.05, (200, 2))]
    fit = fit_rule("happy", pos, neg)
    chosen = fit["chosen"]
    assert chosen["fpr"] <= MAX_FPR and chosen["tpr"] > 0.5 and fit["supported"]
    t = chosen["thresholds"]
    fpr = np.mean([c["mouth_corner_lift"] >= t["mouth_corner_lift"] and c["mouth_width"] >= t["mouth_width"]
                   for c in neg])
    assert fpr == pytest.approx(chosen["fpr"], abs=1e-3)
    assert fit_rule("happy", neg, neg)["supported"] is False  # nothing to tell apart
