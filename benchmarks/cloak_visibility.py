"""How visible the cloak is, v1's box ("paper") beside the perceptual budget: a first look (issue 16).

Per person (LFW, people in the manifest's identity order, the tuning split 100-199 by default):
enroll from the first photo in which a face is found, with the ``paper`` preset (today's medium)
and with the perceptual budget; apply each mask to the person's next photo as the app does
(refine 10 by default), save it as a PNG and read it back; then print face-region PSNR and SSIM,
CIEDE2000 over the face and the eye region (mean and 95th percentile, :mod:`faceprot.visibility`),
and whether dlib-resnet and MobileFaceNet still match the protected photo to the clean selfie at
their thresholds (:func:`faceprot.evaluators.compare_photos`). Close-ups of the eyes and the
forehead at 3x (nearest neighbour: every photo pixel is a 3x3 block) go to ``--out``: clean,
paper, perceptual side by side.

    python benchmarks/cloak_visibility.py --people 5                    # people 100-104
    python benchmarks/cloak_visibility.py --people 5 --luma-texture 12  # another perceptual setting
    python benchmarks/cloak_visibility.py --quick                       # smoke: 1 person, tiny settings

This is a look, not the acceptance: it has no gallery search (PSR) and no frontier.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import SHARED_FACES, git_commit  # noqa: E402
from faceprot.cloak import apply_mask, enroll  # noqa: E402
from faceprot.errors import NoFaceError  # noqa: E402
from faceprot.evaluators import compare_photos  # noqa: E402
from faceprot.faces import find_faces  # noqa: E402
from faceprot.io import encode_png, load_image  # noqa: E402
from faceprot.runtime import configure_threads  # noqa: E402
from faceprot.visibility import visibility  # noqa: E402

EVALUATORS = ["dlib-resnet", "mobilefacenet"]
#: people 0-99 are the acceptance split (issue 16, item 6): a look never uses them
TUNING_START = 100


def people(manifest: Path, start: int, n: int) -> list[tuple[str, list[str]]]:
    """(identity, photo paths) of ``n`` people from the ``start``-th, in the manifest's identity order."""
    entries = json.loads(manifest.read_text())
    ids = list(dict.fromkeys(e["identity"] for e in entries))
    return [(k, [str(manifest.parent / e["file"]) for e in entries if e["identity"] == k]) for k in ids[start:start + n]]


def selfie_and_probe(paths: list[str]):
    """The first two photos in which faceprot finds a face: ((rgb, face), (rgb, face)), or None."""
    found = []
    for p in paths:
        rgb = load_image(p).rgb
        try:
            found.append((p, rgb, find_faces(rgb)[0]))
        except NoFaceError:
            continue
        if len(found) == 2:
            return found
    return None


def closeups(face, shape) -> dict[str, tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) boxes in photo pixels: both eyes with a margin, and the forehead above the brows."""
    lm = face.landmarks68
    h, w = shape[:2]
    eyes, brows = lm[36:48], lm[17:27]
    d = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))  # eye distance
    def clip(x0, y0, x1, y1):
        return max(int(x0), 0), max(int(y0), 0), min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
    return {
        "eyes": clip(eyes[:, 0].min() - 0.25 * d, eyes[:, 1].min() - 0.3 * d, eyes[:, 0].max() + 0.25 * d,
                     eyes[:, 1].max() + 0.3 * d),
        "forehead": clip(brows[:, 0].min(), brows[:, 1].min() - 0.7 * d, brows[:, 0].max(), brows[:, 1].min()),
    }


def panel(crops: list[tuple[str, np.ndarray]], zoom: int = 3) -> np.ndarray:
    """Crops side by side, each enlarged ``zoom`` times by pixel repetition, labelled above."""
    tiles = []
    for label, c in crops:
        big = np.repeat(np.repeat(c, zoom, 0), zoom, 1)
        head = np.full((18, big.shape[1], 3), 255, np.uint8)
        cv2.putText(head, label, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([head, big]))
        tiles.append(np.full((tiles[-1].shape[0], 6, 3), 255, np.uint8))
    return np.hstack(tiles[:-1])


def matches(selfie: np.ndarray, photo: np.ndarray, face_a, face_b) -> dict:
    """Per evaluator: its score of (clean selfie, photo) and whether that is a match at its threshold."""
    return {s.evaluator: {"score": s.score, "match": s.match}
            for s in compare_photos(selfie, photo, EVALUATORS, face_a=face_a, face_b=face_b)}


def run(args) -> list[dict]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    perceptual = dict(budget="perceptual", luma_flat=args.luma_flat / 255, luma_texture=args.luma_texture / 255,
                      chroma_ratio=args.chroma_ratio, eye_luma=args.eye_luma / 255, eye_chroma=args.eye_chroma / 255)
    variants = {"paper": dict(preset="paper"), "perceptual": dict(preset="medium", **perceptual)}
    small = dict(n_views=args.views, iterations=args.iterations) if args.quick else {}
    rows = []
    for k, (who, paths) in enumerate(people(Path(args.faces) / "manifest.json", args.start, args.people)):
        pair = selfie_and_probe(paths)
        if pair is None:
            print(f"{who}: fewer than two photos with a face; skipped")
            continue
        (_, selfie, sface), (probe_path, clean, pface) = pair
        row = {"person": args.start + k, "identity": who, "probe": Path(probe_path).name,
               "clean": matches(selfie, clean, sface, pface), "variants": {}}
        crops = {name: [("clean", clean[y0:y1, x0:x1])] for name, (x0, y0, x1, y1) in closeups(pface, clean.shape).items()}
        for name, kw in variants.items():
            t = time.perf_counter()
            mask = enroll(selfie, face=sface, seed=args.seed, **kw, **small).mask
            t_enroll = time.perf_counter() - t
            prot = load_image(apply_mask(clean, mask, faces=[pface], refine=args.refine, seed=0).png()).rgb
            row["variants"][name] = {**visibility(clean, prot, pface), "match": matches(selfie, prot, sface, pface),
                                     "enroll_s": t_enroll}
            for c, (x0, y0, x1, y1) in closeups(pface, clean.shape).items():
                crops[c].append((name, prot[y0:y1, x0:x1]))
        slug = f"{args.start + k:03d}-{who}"
        for c, tiles in crops.items():
            (out / f"{slug}-{c}.png").write_bytes(encode_png(panel(tiles)))
        rows.append(row)
        print_row(row)
    return rows


def print_row(row: dict) -> None:
    clean = " ".join(f"{e}={'match' if v['match'] else 'no'}" for e, v in row["clean"].items())
    print(f"\n#{row['person']} {row['identity']} ({row['probe']}); clean probe vs selfie: {clean}")
    print(f"  {'variant':<11} {'PSNR':>6} {'SSIM':>6} {'dE face':>13} {'dE eye':>13}  still matches (score)")
    for name, v in row["variants"].items():
        m = "  ".join(f"{e}: {'YES' if s['match'] else 'no'} ({s['score']:.3f})" if s["score"] is not None
                      else f"{e}: no face" for e, s in v["match"].items())
        print(f"  {name:<11} {v['psnr_face']:6.2f} {v['ssim_face']:6.4f} {v['de_face_mean']:5.2f} / {v['de_face_p95']:5.2f}"
              f" {v['de_eye_mean']:5.2f} / {v['de_eye_p95']:5.2f}  {m}")


def summary(rows: list[dict]) -> dict:
    out = {}
    for name in ("paper", "perceptual"):
        vs = [r["variants"][name] for r in rows if name in r["variants"]]
        if not vs:
            continue
        s = {k: float(np.mean([v[k] for v in vs])) for k in
             ("psnr_face", "ssim_face", "de_face_mean", "de_face_p95", "de_eye_mean", "de_eye_p95", "enroll_s")}
        for e in EVALUATORS:
            s[f"{e}_still_matches"] = f"{sum(bool(v['match'][e]['match']) for v in vs)}/{len(vs)}"
        out[name] = s
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default=str(SHARED_FACES / "lfw"))
    ap.add_argument("--people", type=int, default=5)
    ap.add_argument("--start", type=int, default=TUNING_START, help="first person (manifest identity order)")
    ap.add_argument("--acceptance", action="store_true", help="allow people 0-99 (the acceptance split)")
    ap.add_argument("--refine", type=int, default=10, help="refinement steps at apply (the app's default: 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/v2look")
    ap.add_argument("--quick", action="store_true", help="smoke: 1 person, --views views, --iterations iterations, refine 1")
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=1)
    # the perceptual setting, in 8-bit levels (see faceprot.cloak.perceptual)
    ap.add_argument("--luma-flat", type=float, default=3.0)
    ap.add_argument("--luma-texture", type=float, default=10.0)
    ap.add_argument("--chroma-ratio", type=float, default=0.2)
    ap.add_argument("--eye-luma", type=float, default=2.0)
    ap.add_argument("--eye-chroma", type=float, default=0.5)
    args = ap.parse_args(argv)
    if args.start < TUNING_START and not args.acceptance:
        ap.error(f"people 0-{TUNING_START - 1} are the acceptance split; choose --start >= {TUNING_START}")
    if args.quick:
        args.people, args.refine = 1, 1
    configure_threads()
    t = time.perf_counter()
    rows = run(args)
    s = summary(rows)
    meta = {"command": " ".join(sys.argv), "commit": git_commit(), "machine": platform.node(),
            "seconds": time.perf_counter() - t}
    print("\nmeans over", len(rows), "people:")
    for name, v in s.items():
        print(f"  {name:<11} " + ", ".join(f"{k}={x:.3f}" if isinstance(x, float) else f"{k}={x}" for k, x in v.items()))
    (Path(args.out) / "results.json").write_text(json.dumps({"meta": meta, "summary": s, "rows": rows}, indent=1))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
