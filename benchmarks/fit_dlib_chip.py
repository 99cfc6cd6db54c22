"""Fit the fixed map from faceprot's canonical square to dlib's 150x150 face chip.

dlib aligns its chip from its own 5-point model (eye corners, nose base); faceprot aligns from
68-point eye centres, nose tip and mouth corners. Per face the two similarity transforms differ a
little; this script fits the one fixed scale+translation that best maps canonical space onto
dlib's chip, over one photo per LFW person, and prints the constant for
``faceprot.canonical.DLIB_CHIP_FROM_CANONICAL``.

    python benchmarks/fit_dlib_chip.py [--faces ../shared/assets/faces/lfw]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import dlib
import numpy as np

from faceprot.canonical import DLIB_CHIP_SIZE, compose_affine
from faceprot.faces import detect_faces
from faceprot.io import load_image
from faceprot.registry import resolve


def dlib_chip_matrix(cd) -> np.ndarray:
    """(2, 3) photo -> chip map of a dlib chip_details (dlib's get_mapping_to_chip)."""
    r, a = cd.rect, cd.angle
    c = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    corners = np.array([[r.left(), r.top()], [r.right(), r.top()], [r.right(), r.bottom()]])
    src = (corners - c) @ rot.T + c
    dst = np.array([[0, 0], [cd.cols - 1, 0], [cd.cols - 1, cd.rows - 1]], dtype=np.float64)
    a_ = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a_, dst).T


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default=str(Path(__file__).resolve().parents[2] / "shared/assets/faces/lfw"))
    args = ap.parse_args(argv)
    folder = Path(args.faces)
    manifest = json.loads((folder / "manifest.json").read_text())
    first = {}
    for e in manifest:
        first.setdefault(e["identity"], e)
    det = dlib.get_frontal_face_detector()
    sp5 = dlib.shape_predictor(str(resolve("dlib", "shape_predictor_5_face_landmarks.dat")))
    src_pts, dst_pts = [], []
    n = DLIB_CHIP_SIZE
    grid = np.array([[x, y] for x in np.linspace(0, n - 1, 5) for y in np.linspace(0, n - 1, 5)])
    for e in first.values():
        rgb = load_image(folder / e["file"]).rgb
        faces, rects = detect_faces(rgb), det(rgb, 1)
        if len(faces) != 1 or len(rects) != 1:
            continue
        to_chip = dlib_chip_matrix(dlib.get_face_chip_details(sp5(rgb, rects[0]), n, 0.25))
        canon_to_chip = compose_affine(to_chip, faces[0].transform.inverse)
        # correspondences: canonical points that this face's transform sends to a chip grid
        inv = np.linalg.inv(np.vstack([canon_to_chip, [0, 0, 1]]))[:2]
        src_pts.append(np.hstack([grid, np.ones((len(grid), 1))]) @ inv.T)
        dst_pts.append(grid)
    src, dst = np.concatenate(src_pts), np.concatenate(dst_pts)
    # scale + translation (no rotation: faces are upright on average), least squares
    a = np.zeros((2 * len(src), 3))
    a[0::2, 0], a[0::2, 1] = src[:, 0], 1
    a[1::2, 0], a[1::2, 2] = src[:, 1], 1
    s, tx, ty = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)[0]
    resid = np.abs(a @ np.array([s, tx, ty]) - dst.reshape(-1)).reshape(-1, 2)
    print(f"{len(src_pts)} faces; scale {s:.4f}, tx {tx:.2f}, ty {ty:.2f}; "
          f"median |residual| {np.median(np.linalg.norm(resid, axis=1)):.2f} chip px")


if __name__ == "__main__":
    main()
