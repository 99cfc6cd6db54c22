"""The mask-reuse study of the cloak benchmark (``cloak.py``'s full and ``--reuse-only`` modes).

One universal mask protects every photo of a person, so whoever holds a clean/protected pair can
estimate it and subtract it from the person's other protected photos. ``mask_reuse`` measures
that attack (and two stronger attackers: the average of several pairs' estimates, and the exact
mask), with the cross-photo correlation of the estimates, for each apply setting of
``reuse_setting``; ``edge_correlation`` is how much |delta| follows the selfie's edges;
``run_reuse`` is one person's ``--reuse-only`` record.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from cloak_protocol import SETTINGS, score_probe
from faceprot.canonical import align, paste_back, to_pictures
from faceprot.cloak.apply import apply_mask
from faceprot.cloak.enroll import enroll
from faceprot.cloak.focus import HighPassMask
from faceprot.faces import find_faces
from faceprot.io import load_image

#: mask-reuse settings of a full run: "N" = apply with refine=N and strip_weight 0 (the only
#: refinement until 2026-12-04; runs up to lfw-full-v4 measured "0" and "3"), "Ns" = with the
#: strip-resistant loss (strip_weight 1, apply_mask's default); --reuse-settings changes them
REUSE_SETTINGS = ("0", "3s", "10s")


def reuse_setting(key: str) -> tuple[int, float]:
    """'3' -> (3 refine steps, strip weight 0); '3s' -> (3, 1.0)."""
    return (int(key[:-1]), 1.0) if key.endswith("s") else (int(key), 0.0)



def _delta_levels(clean: np.ndarray, prot: np.ndarray, face) -> np.ndarray:
    """(S, S, 3) float32 in 8-bit levels: what the protection changed in canonical space, as an
    attacker who holds the two 8-bit photos measures it (align both, subtract). Kept in levels
    and in this layout so that the delta correlation is computed exactly as the stored runs did."""
    before, after = to_pictures(torch.cat([align(clean, face.transform), align(prot, face.transform)]))
    return after.astype(np.float32) - before.astype(np.float32)


def _as_delta(levels: np.ndarray) -> np.ndarray:
    """(S, S, 3) levels -> (3, S, S) in the canonical units that paste_back takes."""
    return levels.transpose(2, 0, 1) / 255


def _canonical_delta(clean: np.ndarray, prot: np.ndarray, face) -> np.ndarray:
    """(3, S, S) float32 in canonical units: the attacker's estimate of the mask from one pair."""
    return _as_delta(_delta_levels(clean, prot, face))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def mask_reuse(en, probes, p, entries, ids, gallery, settings=REUSE_SETTINGS) -> dict:
    """The subtraction attack and cross-photo delta correlation, per apply setting (see
    :func:`reuse_setting`; by default refine=0 and a small refine).

    The attacker has one clean/protected pair of the person (the first probe), estimates the mask
    in canonical space (align both, subtract), and subtracts it from the person's other protected
    photos through each photo's own alignment. Two more attackers: "averaged" has a pair for
    every other photo of the person and subtracts the mean of those estimates (the same as
    "after" for someone with two probes); "oracle" subtracts the universal mask itself (a leaked
    mask file gives it outright).
    """
    out = {}
    faces = [(i, clean, find_faces(clean)[0]) for i, clean in probes]
    if len(faces) < 2:
        return out
    exact = en.mask.delta  # the universal mask, (3, S, S) canonical units
    for key in settings:
        refine, strip = reuse_setting(key)
        t = time.perf_counter()
        prot = [apply_mask(clean, en.mask, refine=refine, seed=k, strip_weight=strip).picture.rgb
                for k, (_, clean, _) in enumerate(faces)]
        seconds = (time.perf_counter() - t) / len(faces)
        ests = [_delta_levels(clean, pr, f) for (_, clean, f), pr in zip(faces, prot)]
        est = _as_delta(ests[0])  # the attacker's one pair: the first probe
        corr = _corr(ests[0], ests[1])
        rows = []
        for k, ((i, _, f), pr) in enumerate(zip(faces, prot)):
            if k == 0:
                continue
            attacked = paste_back(pr, f.transform, -est)
            averaged = _as_delta(np.mean([e for j, e in enumerate(ests) if j != k], axis=0))
            rows.append({"probe": entries[i]["file"], "before": score_probe(pr, i, p["identity"], ids, gallery),
                         "after": score_probe(attacked, i, p["identity"], ids, gallery),
                         "averaged": score_probe(paste_back(pr, f.transform, -averaged), i, p["identity"], ids, gallery),
                         "oracle": score_probe(paste_back(pr, f.transform, -exact), i, p["identity"], ids, gallery)})
        name = f"refine{refine}" + (f"-strip{strip:g}" if strip else "")
        out[name] = {"delta_correlation": corr, "seconds_per_photo": seconds, "probes": rows}
    return out


def edge_correlation(en) -> float:
    """Correlation between |delta| and the selfie's high-pass edge map, over the face."""
    face = en.focus.face
    hp = HighPassMask().zscore(en.views.pictures()[0], face)
    mag = np.abs(en.mask.delta).mean(0)
    return _corr(mag[face], hp[face])



def run_reuse(p, entries, ids, gallery, args) -> dict:
    """The mask-reuse study alone: the medium mask of both surrogates, each --reuse-settings."""
    selfie = load_image(entries[p["selfie"]]["path"]).rgb
    probes = [(i, load_image(entries[i]["path"]).rgb) for i in p["probes"]]
    t = time.perf_counter()
    en = enroll(selfie, preset="medium", seed=args.seed, surrogates=SETTINGS["both"])
    return {"identity": p["identity"], "selfie": entries[p["selfie"]]["file"],
            "probes": [entries[i]["file"] for i in p["probes"]], "methods": {},
            "times": {"enroll/medium/both": time.perf_counter() - t},
            "reuse": mask_reuse(en, probes, p, entries, ids, gallery, args.reuse_settings)}

