"""How far another photo's landmarks sit from the selfie's, in canonical space.

For the first ``--people`` people of a faces folder, every photo's 68 landmarks (faceprot's
detection and 5-point alignment) against the person's first photo, per facial part: the spread
that ``CloakConfig.view_warp_px`` models.

    python benchmarks/landmark_spread.py --people 15
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from _common import SHARED_FACES
from faceprot.datasets import load_faceset
from faceprot.errors import NoFaceError
from faceprot.faces import find_faces
from faceprot.io import load_image

PARTS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
         "mouth": range(48, 68)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default=str(SHARED_FACES / "lfw"))
    ap.add_argument("--people", type=int, default=15)
    args = ap.parse_args(argv)
    by = defaultdict(list)
    for e in load_faceset(args.faces):
        by[e["identity"]].append(e["path"])
    dists = []
    for paths in list(by.values())[: args.people]:
        marks = []
        for path in paths:
            try:
                f = find_faces(load_image(path).rgb)[0]
            except NoFaceError:
                continue
            marks.append(f.canonical_landmarks)
        if len(marks) >= 2:
            m = np.array(marks)
            dists.append(np.linalg.norm(m[1:] - m[0], axis=-1))
    d = np.concatenate(dists)
    print(f"{len(d)} photos of {len(dists)} people, canonical px from the person's first photo")
    print("part   median  90th pct")
    for part, ix in PARTS.items():
        v = d[:, list(ix)]
        print(f"{part:6} {np.median(v):6.2f}  {np.percentile(v, 90):6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
