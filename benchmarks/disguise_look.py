"""The blind naturalness look of the disguise benchmark (``disguise.py --caricatures N`` and
``--look``): do the disguised faces look like real faces, or like the caricatures that free
landmark moves make?

* ``make_caricatures``: on the first N acceptance faces, free per-landmark displacements (68 x 2:
  no expression template, no Laplacian term) optimised by Adam against the white-box
  ``expression`` model's happy log-probability, held by the warp's own hard limits
  (:func:`faceprot.disguise.warp.limit_displacements`: 0.12 IOD per point, no folding), and
  pasted into the photo as the disguise pastes its warp (:func:`~faceprot.disguise.engine.paste_warp`).
  Writes ``<run>/caricatures/<person>.png`` and ``<run>/caricatures.json``.
* ``look``: same-size face crops (each image's largest face, re-detected and aligned into the
  256 px canonical square, so every kind goes through the same steps) of the first
  ``--look-count`` disguise outputs of the run (row ``both``, dodging, happy), as many real LFW
  faces of tuning people (their first usable photo) and every caricature, as PNGs with random
  names in ``<run>/look/``; the private key (name -> kind and source) is ``<run>/look-key.json``,
  beside the folder, not in it.
* ``score_look``: a reviewer's answers (crop name -> {"look": "natural" | "distorted",
  "expression": ...}) against the key, per kind, with the issue's rule: the look counts only if at
  least 80% of the caricatures are marked distorted; then at least 80% of the disguised faces must be
  marked natural and 70% named happy. Writes ``<run>/look-score.json`` and prints a table.
"""

from __future__ import annotations

import json
import random
import secrets
import sys
from pathlib import Path

import numpy as np
import torch

from disguise import ACCEPTANCE, TUNING, first_usable, people
from faceprot.canonical import align, to_pictures
from faceprot.datasets import load_faceset
from faceprot.disguise.engine import check_landmarks, paste_warp
from faceprot.disguise.warp import interocular_distance, jacobian_determinant, limit_displacements, sample, warp_grid
from faceprot.errors import NoFaceError
from faceprot.expression import load_expression_model
from faceprot.faces import find_faces
from faceprot.io import encode_png, load_image

#: Adam's step on the free displacements, canonical pixels (the 0.12 IOD cap is about 8 px).
CARICATURE_LR = 0.5
CARICATURE_STEPS = 40
#: The outputs --look crops: the default row, dodging, happy.
LOOK_OUTPUTS = "both__none__happy"


def caricature(x: torch.Tensor, points: torch.Tensor, model, steps: int, lr: float = CARICATURE_LR,
               emotion: str = "happy") -> tuple[torch.Tensor, dict]:
    """Free landmark displacements that raise the model's log-probability of ``emotion``.

    Args:
        x: (1, 3, 256, 256) canonical face in [0, 1].  points: (1, 68, 2) float64 its landmarks.
        model: the white-box expression model.
    Returns:
        ((68, 2) the limited displacements, canonical px; {"p_emotion", "max_move_iod", "min_det"}).
    """
    column = model.index(emotion)
    free = torch.zeros_like(points, requires_grad=True)
    adam = torch.optim.Adam([free], lr=lr)
    for _ in range(steps):
        d = limit_displacements(points, free).displacements
        loss = -model.log_probs(sample(x, warp_grid(points, d)))[0, column]
        adam.zero_grad()
        loss.backward()
        adam.step()
    with torch.no_grad():
        d = limit_displacements(points, free).displacements
        grid = warp_grid(points, d)
        p = {"clean": float(model(x)[0, column]), "caricature": float(model(sample(x, grid))[0, column])}
        move = float((d.norm(dim=-1) / interocular_distance(points)[:, None]).max())
        info = {"p_emotion": p, "max_move_iod": round(move, 4), "min_det": round(float(jacobian_determinant(grid).min()), 3)}
    return d[0], info


def make_caricatures(args, faces: Path, out: Path, meta: dict) -> list[dict]:
    entries = load_faceset(faces)
    names = people(entries)
    model = load_expression_model("expression")
    steps = args.steps if args.steps is not None else CARICATURE_STEPS
    folder = out / "caricatures"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for pos in ACCEPTANCE:
        if len(made) >= args.caricatures or pos >= len(names):
            break
        probe = first_usable(entries, names[pos], pos)
        if probe is None:
            continue
        points = torch.from_numpy(check_landmarks(probe.face))[None]
        d, info = caricature(align(probe.rgb, probe.face.transform), points, model, steps)
        photo = paste_warp(probe.rgb, probe.face.transform, points[0], d)
        png = folder / f"{probe.identity.replace('/', '_')}.png"
        png.write_bytes(encode_png(photo))
        made.append({"identity": probe.identity, "file": probe.file, "png": str(png.relative_to(out)), **info})
        print(json.dumps(made[-1]), flush=True)
    (out / "caricatures.json").write_text(json.dumps({"meta": meta | {"steps": steps, "lr_px": CARICATURE_LR},
                                                      "caricatures": made}, indent=1))
    return made


def crop(rgb: np.ndarray) -> np.ndarray | None:
    """The largest face, aligned into the canonical square: (256, 256, 3) uint8, or None."""
    try:
        face = find_faces(rgb)[0]
    except NoFaceError:
        return None
    return to_pictures(align(rgb, face.transform))[0]


def look(args, faces: Path, out: Path, meta: dict) -> dict:
    entries = load_faceset(faces)
    names = people(entries)
    n = args.look_count
    items = [("disguise", p) for p in sorted((out / "images" / LOOK_OUTPUTS).glob("*.png"))[:n]]
    real = 0
    for pos in TUNING:
        if real >= n or pos >= len(names):
            break
        probe = first_usable(entries, names[pos], pos)
        if probe is not None:
            items.append(("real", Path(probe.file)))
            real += 1
    items += [("caricature", p) for p in sorted((out / "caricatures").glob("*.png"))]
    folder = out / "look"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):  # a fresh look: no crop of an earlier one stays
        old.unlink()
    key = {"meta": meta, "crops": {}, "skipped": []}
    random.SystemRandom().shuffle(items)  # neither the names nor the files' order tell the kinds
    for kind, src in items:
        path = faces / src if kind == "real" else src
        c = crop(load_image(path).rgb)
        source = str(src) if kind == "real" else str(src.relative_to(out))
        if c is None:
            key["skipped"].append({"kind": kind, "source": source, "why": "no face found"})
            continue
        name = secrets.token_hex(6) + ".png"
        (folder / name).write_bytes(encode_png(c))
        key["crops"][name] = {"kind": kind, "source": source}
    (out / "look-key.json").write_text(json.dumps(key, indent=1))
    counts = {k: sum(v["kind"] == k for v in key["crops"].values()) for k in ("disguise", "real", "caricature")}
    print(f"{len(key['crops'])} crops in {folder} ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
          f"the key: {out / 'look-key.json'}" + (f"; {len(key['skipped'])} without a face" if key["skipped"] else ""),
          file=sys.stdout)
    return key


#: The issue's bars for the blind look.
CONTROL_DISTORTED, DISGUISE_NATURAL, DISGUISE_HAPPY = 0.8, 0.8, 0.7


def score_look(out: Path, answers_file: Path) -> dict:
    """The reviewer's answers against ``<run>/look-key.json``: counts per kind and the verdict."""
    key = json.loads((out / "look-key.json").read_text())["crops"]
    answers = json.loads(Path(answers_file).read_text())
    missing = sorted(set(key) - set(answers))
    if missing:
        raise SystemExit(f"the answers have no entry for {len(missing)} crop(s), e.g. {missing[0]}")
    kinds: dict[str, dict] = {}
    for name, k in key.items():
        a = answers[name]
        c = kinds.setdefault(k["kind"], {"crops": 0, "natural": 0, "distorted": 0, "expressions": {}})
        c["crops"] += 1
        c["natural" if a["look"] == "natural" else "distorted"] += 1
        c["expressions"][a["expression"]] = c["expressions"].get(a["expression"], 0) + 1
    car, dis = kinds.get("caricature"), kinds.get("disguise")
    counts = bool(car and car["distorted"] >= CONTROL_DISTORTED * car["crops"])
    verdict = {"control_holds": counts,
               "disguise_natural": bool(dis and dis["natural"] >= DISGUISE_NATURAL * dis["crops"]),
               "disguise_happy": bool(dis and dis["expressions"].get("happy", 0) >= DISGUISE_HAPPY * dis["crops"])}
    verdict["met"] = verdict["control_holds"] and verdict["disguise_natural"] and verdict["disguise_happy"]
    result = {"kinds": kinds, "verdict": verdict, "answers": str(answers_file)}
    (out / "look-score.json").write_text(json.dumps(result, indent=1))
    print("| kind | crops | marked natural | marked distorted | named happy |\n|---|---|---|---|---|")
    for kind in ("disguise", "real", "caricature"):
        if kind in kinds:
            c = kinds[kind]
            print(f"| {kind} | {c['crops']} | {c['natural']} | {c['distorted']} | {c['expressions'].get('happy', 0)} |")
    print(f"control (>= 80% of caricatures distorted): {'holds' if counts else 'fails: the look does not count'}; "
          f"disguised natural >= 80%: {verdict['disguise_natural']}; named happy >= 70%: {verdict['disguise_happy']}")
    return result
