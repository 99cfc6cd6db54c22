"""Close-ups of what each cloak strength looks like, for the app's strength help.

Enrolls from one photo at every strength preset, ``paper`` included (seed 0, as the app does by
default), applies the mask to that photo as the Protect tab does (with the default per-photo
refinement), and saves the same square around
the eyes and nose at 100% (photo pixels, no resampling): ``original.png`` and ``<strength>.png``.

    python benchmarks/strength_closeups.py                       # examples/strengths/ from the example selfie
    python benchmarks/strength_closeups.py --photo me.jpg --out /tmp/looks
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceprot.cloak import PRESETS, apply_mask, enroll  # noqa: E402
from faceprot.io import encode_png  # noqa: E402
from faceprot.protect import locate  # noqa: E402
from faceprot.runtime import DEFAULT_REFINE, configure_threads  # noqa: E402


def eye_square(face, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): a square centred between the eyes and the nose tip, 0.9 face widths wide."""
    p = face.points5
    cx, cy = (p[0] + p[1] + p[2]) / 3
    half = int(round(0.45 * face.width))
    h, w = shape
    x0, y0 = max(0, int(cx) - half), max(0, int(cy) - half)
    return x0, y0, min(w, x0 + 2 * half), min(h, y0 + 2 * half)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", default=str(ROOT / "examples" / "obama-selfie.jpg"))
    ap.add_argument("--out", default=str(ROOT / "examples" / "strengths"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    configure_threads()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    located = locate(args.photo, "largest")
    face = located.chosen[0]
    x0, y0, x1, y1 = eye_square(face, located.picture.rgb.shape[:2])

    def save(name: str, rgb: np.ndarray) -> None:
        (out / f"{name}.png").write_bytes(encode_png(np.ascontiguousarray(rgb[y0:y1, x0:x1])))
        print(f"{out / name}.png  ({x1 - x0}x{y1 - y0} px at 100%)")

    save("original", located.picture.rgb)
    for preset in PRESETS:
        mask = enroll(located.picture, face=face, preset=preset, seed=args.seed).mask
        save(preset, apply_mask(located, mask, refine=DEFAULT_REFINE, seed=args.seed).picture.rgb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
