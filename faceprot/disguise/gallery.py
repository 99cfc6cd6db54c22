"""Built-in impersonation targets: blends of three or more faces, never one real person.

On a public demo, a target that is one real person (an upload, or a package's sample photo of a
famous actor) would let anyone make photos that face recognition matches to that person: a tool
to frame someone. The app therefore offers only these targets. Each is the mean of the face
embeddings of three or more different people, for each recognizer, so FR matches an impersonating
photo to nobody who exists. Only the embeddings ship (``faceprot/weights/targets/targets.npz``):
no face photo.

They are made once from the MIT-licensed photos in ``../shared/assets/faces/photos`` (the
face_recognition and deepface projects' test photos):

    python -m faceprot.disguise.gallery build ../shared/assets/faces/photos

and a test rebuilds them where those photos are present. Each member's embedding is the mean over
all their photos in which faceprot finds a face; the target's is the mean of its members'.

The CLI and the Python API may still take a target photo (:func:`faceprot.disguise.disguise`).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import FaceprotError, NoFaceError

#: Where the built-in targets' embeddings ship.
TARGETS_FILE = Path(__file__).resolve().parent.parent / "weights" / "targets" / "targets.npz"

#: Each target's members: folders of ``../shared/assets/faces/photos``, three or more different
#: people each. The names shown to users say only how many faces are blended.
MEMBERS: dict[str, tuple[str, ...]] = {
    "blend A": ("deepface_id00", "deepface_id01", "deepface_id02"),
    "blend B": ("deepface_id03", "deepface_id04", "deepface_id05", "deepface_id06"),
    "blend C": ("kit_harington", "rose_leslie", "alex_lacamoire", "lin_manuel_miranda"),
}

#: The recognizers whose embeddings the targets carry: the ones that run everywhere.
RECOGNIZERS = ("dlib-cpp", "dlib-resnet", "mobilefacenet")

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def label(name: str) -> str:
    """What the app shows for a target: "blend A (3 faces)"."""
    return f"{name} ({len(MEMBERS[name])} faces)"


def member_embeddings(folder: Path, recognizers=RECOGNIZERS) -> tuple[dict[str, np.ndarray], int]:
    """One person's mean embedding per recognizer, over the photos of ``folder`` where every
    recognizer finds a face; and how many photos that was."""
    from ..evaluators import get_evaluator
    from ..faces import find_faces
    from ..io import load_image

    sums: dict[str, list[np.ndarray]] = {r: [] for r in recognizers}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES):
        rgb = load_image(path, max_side=1600).rgb
        try:
            face = find_faces(rgb)[0]
            one = {r: get_evaluator(r).embed(rgb, face) for r in recognizers}
        except NoFaceError:
            continue
        for r, e in one.items():
            sums[r].append(np.asarray(e, np.float64))
    n = len(sums[recognizers[0]])
    if not n:
        raise NoFaceError(f"No photo in {folder} has a face every recognizer finds.")
    return {r: np.mean(v, 0) for r, v in sums.items()}, n


def build(photos: Path, dest: Path = TARGETS_FILE) -> dict:
    """Compute every target from the photos folder and write ``dest`` (npz: ``<target>/<recognizer>``
    arrays, and a JSON ``meta`` with the members and photo counts). Returns the meta."""
    arrays, meta = {}, {"members": {}, "photos": {}, "recognizers": list(RECOGNIZERS)}
    for name, members in MEMBERS.items():
        per = {}
        for m in members:
            per[m], meta["photos"][m] = member_embeddings(Path(photos) / m)
        for r in RECOGNIZERS:
            arrays[f"{name}/{r}"] = np.mean([per[m][r] for m in members], 0).astype(np.float32)
        meta["members"][name] = list(members)
    dest.parent.mkdir(parents=True, exist_ok=True)
    np.savez(dest, meta=np.array(json.dumps(meta)), **arrays)
    return meta


@functools.lru_cache(maxsize=None)
def _load(path: str) -> dict[str, dict[str, np.ndarray]]:
    with np.load(path) as z:
        out: dict[str, dict[str, np.ndarray]] = {}
        for key in z.files:
            if key != "meta":
                name, rec = key.split("/")
                out.setdefault(name, {})[rec] = z[key]
    return out


def names() -> list[str]:
    """The built-in targets, in order."""
    return list(MEMBERS)


def load_target(name: str) -> dict[str, np.ndarray]:
    """A built-in target's embeddings by recognizer name (a ``target`` for
    :func:`faceprot.disguise.disguise`, which uses the attacked recognizers' ones; the scores use
    every one). Accepts the name or its :func:`label`."""
    by_label = {label(n): n for n in MEMBERS}
    key = by_label.get(name, name)
    if key not in MEMBERS:
        raise FaceprotError(f"Unknown target {name!r}; the built-in targets are {', '.join(MEMBERS)}.")
    return dict(_load(str(TARGETS_FILE))[key])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "build":
        print("usage: python -m faceprot.disguise.gallery build PHOTOS_FOLDER", file=sys.stderr)
        return 2
    meta = build(Path(argv[1]))
    print(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["MEMBERS", "RECOGNIZERS", "TARGETS_FILE", "build", "load_target", "names", "label", "member_embeddings"]
