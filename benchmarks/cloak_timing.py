"""The apply-time figure of the cloak benchmark (``cloak.py``'s full mode, shard 1 only).

Enrollment is timed per person in the run itself; ``timing`` measures what applying a mask adds
to face detection per face, on the real-size photos of ../shared resized to about 1 MP. The
figure lands in ``timing.json`` beside the shards and in the report.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from PIL import Image

from _common import SHARED_FACES
from faceprot.cloak.apply import apply_mask
from faceprot.cloak.enroll import enroll
from faceprot.datasets import load_faceset
from faceprot.errors import NoFaceError
from faceprot.faces import detect_faces, find_faces
from faceprot.io import load_image


def timing(args) -> dict:
    """Enrollment is timed per person in run_person; here: apply cost per face on ~1 MP photos."""
    photos = load_faceset(SHARED_FACES / "photos")
    added = []
    en = None
    for e in photos[:12]:
        rgb = load_image(e["path"]).rgb
        f = np.sqrt(1e6 / (rgb.shape[0] * rgb.shape[1]))
        rgb = np.array(Image.fromarray(rgb).resize((round(rgb.shape[1] * f), round(rgb.shape[0] * f)), Image.LANCZOS))
        try:
            faces = find_faces(rgb)
        except NoFaceError:
            continue
        if en is None:
            en = enroll(rgb, preset="medium", seed=0)
        for _ in range(2):  # warm
            apply_mask(rgb, en.mask)
        t_det, t_app = [], []
        for _ in range(5):
            t = time.perf_counter(); detect_faces(rgb); t_det.append(time.perf_counter() - t)
            t = time.perf_counter(); apply_mask(rgb, en.mask); t_app.append(time.perf_counter() - t)
        added.append((statistics.median(t_app) - statistics.median(t_det)) / len(faces))
    return {"apply_added_ms_per_face_median": 1000 * statistics.median(added),
            "apply_added_ms_per_face_max": 1000 * max(added), "photos": len(added)}

