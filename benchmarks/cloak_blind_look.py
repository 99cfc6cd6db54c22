"""The cloak's blind look (issue 16 item 4): can a person tell the protected photo of a pair?

``make`` builds the pairs as the app makes them: per person, a mask enrolled from one photo (the
Protect tab: largest face, seed 0, both surrogates, the preset's strength) and applied to another
photo of them (the Apply tab: largest face, 10 refinement steps). Each pair is that other photo
clean and protected. Both go through the same PNG writer (:func:`faceprot.io.encode_png`), under
random names, in a random order within the pair, with the pairs of every preset shuffled together;
then both files of each pair and view are padded to the same size (:func:`same_size`: a noisier
picture is a larger PNG) and every picture gets the same modification time.
Each photo is written twice: at 100% (a square around the face in the photo's own pixels, no
resampling, at most ``--crop`` px wide) and at page size (the whole photo fitted into ``--page`` px, area resampling; a photo
already smaller stays as it is). The reviewer's folder holds the pictures and ``sheet.md`` only;
the answer key goes to ``--key``, a folder the reviewer is not shown.

The reviewer answers twice: from the page-size pictures alone first, then after the 100% ones.
``score`` reads the answers (a JSON object {"page": {pair: 1 or 2}, "full": {pair: 1 or 2}}, the
version they think is altered; a flat {pair: 1 or 2} counts as "full") and writes the hit rate per
view, preset and source beside the key.

    python benchmarks/cloak_blind_look.py make --presets medium,paper --out /tmp/look --key /tmp/look-key
    python benchmarks/cloak_blind_look.py score --answers answers.json --key /tmp/look-key

Sources: ``--lfw`` LFW people per preset from ``--lfw-start`` (the first photo enrolls, the next is
the pair; each preset its own people) and ``--real`` people of the real-size photos folder, in its
manifest's order, with one photo more than there are presets (the first enrolls; preset k's pair
is photo k + 1). So no photo is in two pairs: a clean photo seen twice would give both away.
Where ``../shared`` is absent the source is skipped with the reason printed. A preset is a name
of :data:`faceprot.cloak.PRESETS` or ``v2x<scale>``, a candidate point on v2's frontier.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import SHARED_FACES, level  # noqa: E402
from faceprot.cloak import PRESETS, apply_mask, enroll  # noqa: E402
from faceprot.cloak.enroll import perceptual_preset  # noqa: E402
from faceprot.cloak.perceptual import PerceptualBudget  # noqa: E402
from faceprot.datasets import load_faceset  # noqa: E402
from faceprot.errors import FaceprotError  # noqa: E402
from faceprot.io import encode_png  # noqa: E402
from faceprot.protect import locate  # noqa: E402
from faceprot.runtime import DEFAULT_REFINE, configure_threads  # noqa: E402

SURROGATES = ["dlib-resnet", "mobilefacenet"]
#: the Apply tab's default refinement
REFINE = DEFAULT_REFINE


def pairs_of(folder: Path, people: int, start: int = 0, photos: int = 1) -> list[tuple[str, str, list[str]]]:
    """(identity, enroll photo, ``photos`` pair photos) for ``people`` identities with at least
    1 + ``photos`` photos, from the ``start``-th such identity."""
    by: dict[str, list[str]] = {}
    for e in load_faceset(folder):
        by.setdefault(e["identity"], []).append(e["path"])
    out = [(k, v[0], v[1:1 + photos]) for k, v in by.items() if len(v) >= 1 + photos][start:]
    return out[:people]


def preset_settings(name: str) -> dict:
    """enroll keywords of a preset name, or of ``v2x<scale>[:field=value;...]``: the perceptual
    budget at that scale of :class:`PerceptualBudget`'s defaults, or of the fields given (budgets
    in [0, 1] units or as N/255; the four budgets are scaled), a candidate point on a v2 frontier."""
    if name.startswith("v2x"):
        scale, _, rest = name[3:].partition(":")
        fields = {}
        for item in filter(None, rest.split(";")):
            k, _, v = item.partition("=")
            fields[k] = float(level(v))
        b = PerceptualBudget(**fields)
        return dict(preset="medium", **{**fields, **perceptual_preset(float(scale), base=b)})
    if name not in PRESETS:
        raise SystemExit(f"unknown preset {name!r}: one of {', '.join(PRESETS)} or v2x<scale>")
    return dict(preset=name)


def face_square(face, shape: tuple[int, int], scale: float = 1.6, most: int = 0) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): a square ``scale`` face widths wide around the face, inside the photo; at
    most ``most`` px wide (0: no limit), centred on the eyes and nose, so that an image viewer
    shows it at 100% instead of shrinking it."""
    cx, cy = face.points5[:3].mean(0)
    half = int(round(scale * face.width / 2))
    if most:
        half = min(half, most // 2)
    h, w = shape
    x0, y0 = max(0, int(cx) - half), max(0, int(cy) - half)
    return x0, y0, min(w, int(cx) + half), min(h, int(cy) + half)


def page_size(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return rgb
    return cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


#: the padding chunk's type: ancillary, private, safe to copy (PNG 1.2, 3.3); viewers skip it
PAD_CHUNK = b"paDd"
#: every picture's modification time (seconds since the epoch): a listing tells no version apart
STAMP = 1_700_000_000


def same_size(pngs: list[bytes]) -> list[bytes]:
    """The PNGs, each with one padding chunk before its IEND, so that all have the same length.

    A noisier picture compresses worse, so the protected version of a pair is the larger file and a
    file listing would give it away. Every PNG gets the chunk (the larger one a short one), so the
    two files of a pair differ only in their pixels; the pixels are untouched."""
    iend = 12  # the IEND chunk: length, type, CRC
    for b in pngs:
        if b[-iend:] != b"\x00\x00\x00\x00IEND\xaeB`\x82":
            raise ValueError("not a PNG that ends in its IEND chunk")
    target = max(len(b) for b in pngs) + 12 + 16  # the largest gets 16 bytes of padding
    out = []
    for b in pngs:
        data = bytes(target - len(b) - 12)
        chunk = struct.pack(">I", len(data)) + PAD_CHUNK + data + struct.pack(">I", zlib.crc32(PAD_CHUNK + data))
        out.append(b[:-iend] + chunk + b[-iend:])
    return out


def make(args) -> int:
    configure_threads()
    out, key_dir = Path(args.out), Path(args.key)
    if out.resolve() == key_dir.resolve() or key_dir.resolve().is_relative_to(out.resolve()):
        raise SystemExit("--key must be outside --out: the reviewer sees --out")
    out.mkdir(parents=True, exist_ok=True)
    key_dir.mkdir(parents=True, exist_ok=True)
    # No photo is in two pairs: a clean photo seen twice would give its pairs away. Each preset
    # gets its own LFW people, and its own photo of each real-size person.
    k = len(args.presets)
    sources: list[list[tuple]] = [[] for _ in args.presets]
    for name, folder, n in (("lfw", SHARED_FACES / "lfw", args.lfw), ("real-size", SHARED_FACES / "photos", args.real)):
        if not n:
            continue
        if not (folder / "manifest.json").is_file():
            print(f"skipping {name}: {folder} is absent (../shared holds the faces)")
            continue
        if name == "lfw":
            people = pairs_of(folder, n * k, args.lfw_start)
            for j in range(k):
                sources[j] += [(name, ident, first, pics[0]) for ident, first, pics in people[j * n:(j + 1) * n]]
        else:
            people = pairs_of(folder, n, 0, photos=k)
            if len(people) < n:
                print(f"{name}: only {len(people)} people have {k + 1} photos or more")
            for j in range(k):
                sources[j] += [(name, ident, first, pics[j]) for ident, first, pics in people]
    rng = np.random.default_rng(args.order_seed)
    items = []
    for preset, mine in zip(args.presets, sources):
        settings = preset_settings(preset)
        for source, identity, enroll_photo, photo in mine:
            try:
                mask = enroll(enroll_photo, seed=0, surrogates=SURROGATES, **settings).mask
                located = locate(photo, "largest")
            except FaceprotError as e:
                print(f"skipping {identity} ({preset}): {e}")
                continue
            clean = located.picture.rgb
            prot = apply_mask(located, mask, refine=REFINE, seed=0).picture.rgb
            items.append(dict(preset=preset, source=source, identity=identity, photo=Path(photo).name,
                              clean=clean, protected=prot,
                              square=face_square(located.chosen[0], clean.shape[:2], most=args.crop)))
            print(f"{preset:7s} {source:9s} {identity}")
    order = rng.permutation(len(items))
    key, page_lines, full_lines = {}, [], []
    for k, idx in enumerate(order, 1):
        it = items[idx]
        first_protected = bool(rng.integers(2))
        versions = [it["protected"], it["clean"]] if first_protected else [it["clean"], it["protected"]]
        names = {}
        x0, y0, x1, y1 = it["square"]
        for view in ("100%", "page"):
            pics = [rgb[y0:y1, x0:x1] if view == "100%" else page_size(rgb, args.page) for rgb in versions]
            # one PNG writer for both, then the same file size (a noisier picture is a larger file)
            for v, data in enumerate(same_size([encode_png(np.ascontiguousarray(pic)) for pic in pics]), 1):
                fname = f"{secrets.token_hex(6)}.png"
                (out / fname).write_bytes(data)
                names[(v, view)] = fname
        page_lines.append(f"- pair {k}: 1 = `{names[(1, 'page')]}`, 2 = `{names[(2, 'page')]}`")
        full_lines.append(f"- pair {k}: 1 = `{names[(1, '100%')]}`, 2 = `{names[(2, '100%')]}`")
        key[str(k)] = dict(protected=1 if first_protected else 2,
                           **{f: it[f] for f in ("preset", "source", "identity", "photo")})
    sheet = ["# Blind look", "",
             "Each pair is one photo in two versions, 1 and 2. In every pair one version has been altered "
             "by an image-processing tool and the other is untouched. Say which one is altered, 1 or 2, "
             "twice: first in part 1, from the pictures at page size (the whole photo as a web page might "
             "show it) alone, before you open anything of part 2; then in part 2, after looking at the "
             "pictures at 100% (a square around the face, in the photo's own pixels), with the page-size "
             "ones still at hand.", "", "## Part 1: page size", "", *page_lines, "",
             "## Part 2: at 100%", "", *full_lines]
    (out / "sheet.md").write_text("\n".join(sheet) + "\n")
    for f in out.glob("*.png"):  # nor do the files' times tell the order they were written in
        os.utime(f, (STAMP, STAMP))
    (key_dir / "key.json").write_text(json.dumps({"presets": args.presets, "refine": REFINE, "page": args.page,
                                                  "pairs": key}, indent=1))
    print(f"{len(items)} pairs: {out / 'sheet.md'}; key: {key_dir / 'key.json'}")
    return 0


def _answers(path: Path) -> dict[str, dict[str, int]]:
    """{"page": {pair: 1|2}, "full": {...}} from the reviewer's JSON: that object, or one flat
    {pair: 1|2} (a single answer per pair: taken as "full")."""
    raw = json.loads(path.read_text())
    if set(raw) <= {"page", "full"} and raw:
        return {view: {str(k): int(v) for k, v in raw[view].items()} for view in raw}
    return {"full": {str(k): int(v) for k, v in raw.items()}}


def score(args) -> int:
    """Hit rates per preset and source: "full" is the reviewer's last answer (page size and 100%
    both seen), the one the issue's bar reads; "page" the answer from page size alone."""
    key = json.loads((Path(args.key) / "key.json").read_text())
    answers = _answers(Path(args.answers))
    report = {}
    for view, given in sorted(answers.items()):
        missing = sorted(set(key["pairs"]) - set(given), key=int)
        if missing:
            raise SystemExit(f"no {view} answer for pairs {', '.join(missing)}")
        table: dict[tuple[str, str], list[int]] = {}
        for k, p in key["pairs"].items():
            hit = int(given[k] == p["protected"])
            for group in ((p["preset"], "all"), (p["preset"], p["source"])):
                table.setdefault(group, []).append(hit)
        for (preset, source), h in sorted(table.items()):
            report[f"{view}/{preset}/{source}"] = {"hits": sum(h), "pairs": len(h), "rate": sum(h) / len(h)}
    (Path(args.key) / "score.json").write_text(json.dumps(report, indent=1))
    for name, r in report.items():
        print(f"{name:28s} {r['hits']}/{r['pairs']} = {100 * r['rate']:.0f}% picked the protected photo")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="make the pairs, the reviewer's sheet and the key")
    m.add_argument("--presets", default="medium,paper", type=lambda s: [p for p in s.split(",") if p],
                   help="presets to compare (default medium,paper): names, or v2x<scale>")
    m.add_argument("--out", required=True, help="the reviewer's folder (pictures and sheet.md)")
    m.add_argument("--key", required=True, help="the answer key's folder (not shown to the reviewer)")
    m.add_argument("--lfw", type=int, default=10, help="LFW pairs per preset")
    m.add_argument("--lfw-start", type=int, default=0, help="the first LFW person (0-99: the acceptance split)")
    m.add_argument("--real", type=int, default=10, help="real-size pairs per preset")
    m.add_argument("--page", type=int, default=640, help="page size: the long side, px")
    m.add_argument("--crop", type=int, default=768,
                   help="the 100%% square's largest side, px (a bigger face gets its central part: image "
                        "viewers shrink large pictures; 0 = the whole 1.6 face widths, as looks 1-4 had)")
    m.add_argument("--order-seed", type=int, default=None, help="fix the shuffle (default: random)")
    s = sub.add_parser("score", help="score the reviewer's answers against the key")
    s.add_argument("--answers", required=True)
    s.add_argument("--key", required=True)
    args = ap.parse_args(argv)
    return make(args) if args.cmd == "make" else score(args)


if __name__ == "__main__":
    sys.exit(main())
