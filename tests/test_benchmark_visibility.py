"""Smoke test of benchmarks/cloak_visibility.py: its --quick mode on one LFW tuning person."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import ROOT, shared_path

sys.path.insert(0, str(ROOT / "benchmarks"))
import cloak_visibility  # noqa: E402
from faceprot.io import load_image  # noqa: E402


def test_quick_look_writes_metrics_and_closeups(tmp_path, faceprot_threads):
    faces = shared_path("assets", "faces", "lfw")
    assert cloak_visibility.main(["--quick", "--faces", str(faces), "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    (row,) = res["rows"]
    assert row["person"] == 100  # the first person of the tuning split
    for name in ("paper", "perceptual"):
        v = row["variants"][name]
        assert 25 < v["psnr_face"] < 60 and 0.8 < v["ssim_face"] <= 1
        assert 0 < v["de_face_mean"] <= v["de_face_p95"] and 0 < v["de_eye_mean"] <= v["de_eye_p95"]
        assert set(v["match"]) == {"dlib-resnet", "mobilefacenet"}
    # the perceptual budget keeps the eyes' colour: even one step of paper's box shifts them more
    assert row["variants"]["perceptual"]["de_eye_p95"] < row["variants"]["paper"]["de_eye_p95"]
    for c in ("eyes", "forehead"):
        (png,) = tmp_path.glob(f"100-*-{c}.png")
        img = load_image(png).rgb
        assert img.shape[1] > 3 * 3 * 20  # three panels at 3x
        # the panels are 3x pixel repetition: rows come in identical threes below the label
        body = img[18:18 + 9]
        assert np.array_equal(body[0], body[1]) and np.array_equal(body[1], body[2])
    # the acceptance split is refused unless asked for
    with pytest.raises(SystemExit):
        cloak_visibility.main(["--quick", "--start", "5", "--out", str(tmp_path)])
