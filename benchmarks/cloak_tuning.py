"""Tuning the cloak optimiser: top-1 PSR of one setting on a slice of the benchmark's people.

A lighter loop than ``cloak.py``: a strength preset (``--preset``, medium by default) with both
surrogates, protected probes saved as PNG and re-read, each evaluator searching the whole folder
(same gallery, protocol and cache as ``cloak.py``), PNG condition only. Each run appends one JSON
line to ``benchmarks/results/cloak/tuning.jsonl`` (``--out`` names another file).

    python benchmarks/cloak_tuning.py --name default
    python benchmarks/cloak_tuning.py --name no-eot --set use_eot=false
    python benchmarks/cloak_tuning.py --name paper --set p_bound=1 grad_smooth_sigma=0 mirror_gradient=false
    python benchmarks/cloak_tuning.py --name jitter2x --chain max_rotate_deg=6 max_scale=0.08 max_shift_px=6
    python benchmarks/cloak_tuning.py --name no-mirror-views --mirror-prob 0 --start 20
    python benchmarks/cloak_tuning.py --name photos-yaw --faces ../shared/assets/faces/photos --views max_yaw=0.2
    python benchmarks/cloak_tuning.py --name low --preset low
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

import cloak_protocol as bench
from _common import RESULTS, SHARED_FACES
from faceprot.canonical import region_mask
from faceprot.cloak import optimizer
from faceprot.cloak.apply import apply_mask
from faceprot.eot import RealLifeChain
from faceprot.cloak.enroll import enroll
from faceprot.generators import AugmentViews
from faceprot.datasets import load_faceset
from faceprot.faces import find_faces
from faceprot.io import encode_png, load_image
from faceprot.runtime import configure_threads


def _pairs(items: list[str]) -> dict:
    """["a=1", "b=false"] -> {"a": 1, "b": False} (values parsed as JSON where they can be)."""
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--faces", default=str(SHARED_FACES / "lfw"))
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--start", type=int, default=0, help="first person of the slice (0 = the --quick people)")
    ap.add_argument("--preset", default="medium", help="strength preset the overrides start from (low, medium, high)")
    ap.add_argument("--set", nargs="*", default=[], help="CloakConfig / enroll overrides, key=value")
    ap.add_argument("--chain", nargs="*", default=[], help="RealLifeChain overrides, key=value")
    ap.add_argument("--mirror-prob", type=float, default=None, help="mirroring probability of the augment views")
    ap.add_argument("--views", nargs="*", default=[], help="AugmentViews overrides, key=value (lists for tuples)")
    ap.add_argument("--out", default=str(RESULTS / "cloak" / "tuning.jsonl"), help="the JSON-lines file to append to")
    args = ap.parse_args(argv)
    threads = configure_threads()
    overrides, chain = _pairs(args.set), _pairs(args.chain)
    if chain:  # the chain is built by the optimiser; give it these settings
        init = optimizer.UniversalCloak.__init__

        def patched(self, surrogates, config=None):
            init(self, surrogates, config)
            self.chain = RealLifeChain(enabled=self.config.use_eot, **chain)

        optimizer.UniversalCloak.__init__ = patched
    views = _pairs(args.views)
    if args.mirror_prob is not None:
        views["mirror_prob"] = args.mirror_prob
    views = {k: tuple(v) if isinstance(v, list) else v for k, v in views.items()}
    generator = AugmentViews(**views) if views else "augment"

    entries = load_faceset(args.faces)
    ids = np.array([e["identity"] for e in entries])
    gallery, n_faces = bench.gallery_embeddings(entries, RESULTS / "cache")
    plan = bench.plan_people(entries, n_faces, 0)[args.start:args.start + args.people]
    hits = {ev: [] for ev in bench.EVALUATORS}
    seconds, psnr = [], []
    for p in plan:
        selfie = load_image(entries[p["selfie"]]["path"]).rgb
        t = time.perf_counter()
        en = enroll(selfie, preset=args.preset, seed=0, surrogates=bench.SETTINGS["both"], generator=generator,
                    **overrides)
        seconds.append(time.perf_counter() - t)
        for i in p["probes"]:
            clean = load_image(entries[i]["path"]).rgb
            prot = load_image(encode_png(apply_mask(clean, en.mask).picture.rgb)).rgb
            region = region_mask(clean.shape[:2], find_faces(clean)[0].transform)
            psnr.append(bench._psnr(clean, prot, region))
            for ev, r in bench.score_probe(prot, i, p["identity"], ids, gallery).items():
                if r["found"]:
                    hits[ev].append(r["top1"])
    row = {"name": args.name, "faces": Path(args.faces).name, "preset": args.preset, "set": overrides, "chain": chain,
           "mirror_prob": args.mirror_prob, "views": {k: list(v) if isinstance(v, tuple) else v for k, v in views.items()},
           "people": len(plan), "start": args.start, "probes": len(psnr),
           **{f"top1_{ev}": round(100 * float(np.mean(v)), 1) for ev, v in hits.items()},
           "psnr_face": round(float(np.mean(psnr)), 2), "enroll_median_s": round(float(np.median(seconds)), 2),
           "machine": f"{platform.node()}, {threads} torch thread(s)", "date": datetime.date.today().isoformat()}
    print(json.dumps(row))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
