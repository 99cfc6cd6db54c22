"""The sweeps of the cloak benchmark (``cloak.py``): top-1 PSR as one setting of the medium
preset (both surrogates) moves: the budget (eps), the iterations, the number of views, and an
ablation of the focusing parts (stickers, attention, high-pass). PNG condition only; run for the
first ``--sweep-people`` people of a full run, or alone with ``--sweeps-only``.
"""

from __future__ import annotations

from cloak_protocol import SETTINGS, score_probe
from faceprot.cloak.apply import apply_mask
from faceprot.cloak.enroll import enroll
from faceprot.io import encode_png, load_image

SWEEPS = {
    "eps": [dict(eps=e / 255, eps_high=2 * e / 255, alpha=max(e / 4, 0.5) / 255, label=f"{e}/255") for e in (2, 4, 8, 12, 16)],
    "iterations": [dict(iterations=n, label=str(n)) for n in (2, 4, 8, 10, 16)],
    "views": [dict(n_views=n, label=str(n)) for n in (2, 4, 8, 16, 32)],
    "ablation": [
        dict(use_stickers=False, use_high_pass=False, use_attention=False, label="base"),
        dict(use_stickers=True, use_high_pass=False, use_attention=False, label="+stickers"),
        dict(use_stickers=True, use_high_pass=False, use_attention=True, label="+attention"),
        dict(use_stickers=True, use_high_pass=True, use_attention=True, label="+high-pass (full)"),
    ],
}


def run_sweeps(p, entries, ids, gallery, args) -> dict:
    selfie = load_image(entries[p["selfie"]]["path"]).rgb
    probes = [(i, load_image(entries[i]["path"]).rgb) for i in p["probes"]]
    out = {}
    for sweep, points in SWEEPS.items():
        for pt in points:
            kw = {k: v for k, v in pt.items() if k != "label"}
            en = enroll(selfie, preset="medium", seed=args.seed, surrogates=SETTINGS["both"], **kw)
            rows = []
            for i, clean in probes:
                prot = apply_mask(clean, en.mask).picture.rgb
                prot = load_image(encode_png(prot)).rgb
                rows.append(score_probe(prot, i, p["identity"], ids, gallery))
            out[f"{sweep}={pt['label']}"] = rows
    return out

