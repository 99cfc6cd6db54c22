"""The gallery re-scoring of benchmarks/cloak_gallery.py: top-1 is decided by the nearest kept,
face-bearing gallery photo, and a distractor nearer than the person's own photos protects."""

from __future__ import annotations

import sys

import numpy as np

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from cloak_gallery import nearest_is_other  # noqa: E402


def test_nearest_is_other_follows_the_nearest_kept_photo():
    gallery = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [np.nan, np.nan]])
    gids = np.array(["me", "me", "other", "other"])
    probe = np.array([0.1, 0.0])
    keep = np.array([False, True, True, True])  # row 0 is the probe's own original
    # own photo at distance 0.9, the other person at about 3: still found
    assert nearest_is_other(probe, gallery, gids, "me", keep, "l2") is False
    # a distractor nearer than every own photo protects; a NaN row (no face) never counts
    g2 = np.vstack([gallery, [[0.2, 0.0]], [[np.nan, np.nan]]])
    ids2 = np.append(gids, ["distractor:x", "distractor:y"])
    keep2 = np.append(keep, [True, True])
    assert nearest_is_other(probe, g2, ids2, "me", keep2, "l2") is True
    # dropping the distractor from the kept rows undoes it
    keep2[4] = False
    assert nearest_is_other(probe, g2, ids2, "me", keep2, "l2") is False
    # cosine: direction, not length
    assert nearest_is_other(np.array([5.0, 0.1]), gallery, gids, "me", keep, "cosine") is False
    assert nearest_is_other(np.array([0.1, 5.0]), gallery, gids, "me", keep, "cosine") is True
