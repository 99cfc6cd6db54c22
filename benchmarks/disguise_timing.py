"""Time of the emotion disguise's warp engine per photo, warm, at faceprot's thread count.

    python benchmarks/disguise_timing.py [--photos 3] [--lfw 3] [--steps 40]

Times ``faceprot.disguise.disguise(photo, "happy")`` (dodging, medium, default surrogates) on the
first real-size photos of ../shared/assets/faces/photos and the first LFW faces, after one warm-up
run; prints one JSON line per photo and the medians. The issue's target: <= 15 s per photo warm on
a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from _common import SHARED_FACES
from faceprot.datasets import load_faceset
from faceprot.disguise import disguise
from faceprot.errors import NoFaceError
from faceprot.io import load_image
from faceprot.runtime import configure_threads


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=3, help="real-size photos to time")
    ap.add_argument("--lfw", type=int, default=3, help="LFW faces to time")
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args(argv)
    threads = configure_threads()
    rows = []
    sets = [("photos", load_faceset(SHARED_FACES / "photos")[:args.photos]),
            ("lfw", load_faceset(SHARED_FACES / "lfw")[:args.lfw])]
    warm = False
    for name, entries in sets:
        for e in entries:
            pic = load_image(e["path"])
            try:
                if not warm:
                    disguise(pic, steps=args.steps)
                    warm = True
                t = time.perf_counter()
                r = disguise(pic, steps=args.steps)
                seconds = time.perf_counter() - t
            except NoFaceError:
                continue
            row = {"set": name, "file": e["file"], "size": list(pic.size), "seconds": round(seconds, 2),
                   "optimise": round(r.seconds["optimise"], 2), "locate": round(r.seconds["locate"], 2),
                   "max_move_iod": round(r.faces[0].max_move_iod, 3), "min_det": round(r.faces[0].min_det, 2),
                   "similarity": r.faces[0].similarity, "p_emotion": r.faces[0].p_emotion}
            print(json.dumps(row), flush=True)
            rows.append(row)
    summary = {name: statistics.median([r["seconds"] for r in rows if r["set"] == name])
               for name, _ in sets if any(r["set"] == name for r in rows)}
    summary |= {"threads": threads, "torch_threads": torch.get_num_threads(), "steps": args.steps}
    print(json.dumps({"median_seconds": summary}))
    return summary


if __name__ == "__main__":
    main()
