"""Real faces already aligned into canonical space, for tests that need no detector.

The GPU tests run the optimiser on real LFW faces. A GPU machine may lack dlib's 68-point
landmark model (100 MB), so they can also read the faces from an ``.npz`` that this module
exports where detection works:

    python tests/aligned_faces.py aligned.npz        # then FACEPROT_ALIGNED_FACES=aligned.npz
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ENV = "FACEPROT_ALIGNED_FACES"
PEOPLE, PER_PERSON = 8, 3


def aligned_people(manifest: list[dict] | None = None, people: int = PEOPLE, per_person: int = PER_PERSON) -> dict:
    """{identity: (faces (k, 256, 256, 3) uint8, landmarks (k, 68, 2) canonical px)} of the first
    ``people`` LFW people with ``per_person`` single-face photos (from ``$FACEPROT_ALIGNED_FACES``
    when it is set, else detected and aligned from ``manifest``)."""
    path = os.environ.get(ENV)
    if path:
        d = np.load(path)
        return {str(i): (d["faces"][d["identity"] == i], d["landmarks"][d["identity"] == i])
                for i in dict.fromkeys(d["identity"].tolist())}
    from faceprot.canonical import align, to_pictures
    from faceprot.faces import detect_faces
    from faceprot.io import load_image

    out: dict = {}
    for e in manifest:
        got = out.setdefault(e["identity"], ([], []))
        if len(got[0]) >= per_person:
            continue
        rgb = load_image(e["path"]).rgb
        found = detect_faces(rgb)
        if len(found) == 1:
            got[0].append(to_pictures(align(rgb, found[0].transform))[0])
            got[1].append(found[0].canonical_landmarks)
        full = [k for k, v in out.items() if len(v[0]) >= per_person]
        if len(full) >= people:
            break
    return {k: (np.stack(v[0]), np.stack(v[1])) for k, v in out.items() if len(v[0]) >= per_person}


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import load_manifest  # noqa: E402  (../shared, as the tests find it)

    os.environ.pop(ENV, None)
    people = aligned_people(load_manifest("lfw"))
    ids = [k for k, (f, _) in people.items() for _ in range(len(f))]
    np.savez_compressed(argv[0], faces=np.concatenate([f for f, _ in people.values()]),
                        landmarks=np.concatenate([m for _, m in people.values()]), identity=np.array(ids))
    print(f"{len(ids)} faces of {len(people)} people -> {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
