"""End-to-end benchmark of the emotion disguise (issue 15, item 6) on identity-labelled faces (LFW).

Splits (people sorted by folder name, as the cloak benchmark does): the acceptance probes are the
first usable photo (a face found and landmarks the warp can use, ``check_landmarks``) of each of
people 0-149; people 150-299 are the tuning split (only ``--tune`` and ``--look``'s real faces read
them); the gallery is every other photo of the folder (1,499 on LFW). With a target (``--targets
next``) a probe impersonates the next acceptance person, whose probe photo is the target photo.

Per probe, emotion (``--emotions``), target mode (``--targets``) and row (``--rows``), the photo is
disguised, the output saved as PNG and re-read, and judged:

* identity, on dlib-cpp, dlib-resnet and mobilefacenet, each white- or black-box for the row's
  surrogates: dodging top-1 (none of the person's photos is the nearest gallery photo; an output
  in which a judge finds no face counts as NOT protected) and, with a target, impersonation (the
  target identity is the nearest, or the output verifies against the target photo at the judge's
  FAR 1e-3 threshold on this folder);
* expression, on the probes whose clean face the white-box ``expression`` model does not already
  call the emotion: (a) ``expression`` on the output; (b) ``expression-heldout`` on the output and
  on the warp-only photo after a JPEG q75 re-save, over the probes it does not call the emotion
  either; (c) the landmark measure (the output's re-detected 68 points against the clean photo's;
  happy only: other emotions are reported as not measurable);
* joint success (same probes): dodged top-1 on every judge AND the landmark measure passes;
* face-region PSNR / SSIM and the seconds per photo.

Rows: ``warp`` (eps=0: the warp alone), ``perturbation`` (warp=False), ``both`` (the default:
warp + perturbation, GradVac), ``sum`` (the naive sum, its identity_weight chosen by ``--tune``),
``only-dlib-resnet`` and ``only-mobilefacenet`` (``both`` with one surrogate: leave-one-out). The
report compares ``both`` and ``sum`` on joint success over the same probes (exact McNemar test).

    python benchmarks/disguise.py --quick                        # CI: 8 people, happy, dodging, both
    python benchmarks/disguise.py --tune --shard 1/4 --resume    # tuning split: the sum's weight grid
    python benchmarks/disguise.py --tune --report                # choose it: lfw-tune/tuned.json
    python benchmarks/disguise.py --shard 1/4 --resume           # acceptance: 150 people, every row
    python benchmarks/disguise.py --report                       # merge the shards: report.md, .json
    python benchmarks/disguise.py --people 2 --rows both,sum --targets none --emotions happy,sad
    python benchmarks/disguise.py --caricatures 20               # free-landmark caricatures, for --look
    python benchmarks/disguise.py --look                         # same-size crops + a private key
    python benchmarks/disguise.py --look-score answers.json      # the reviewer's answers against the key
    python benchmarks/disguise.py --faces ../shared/assets/faces/photos --people 2 --steps 10

Results go to ``benchmarks/results/disguise/<run>/`` (``<faces>-full``, ``-quick`` or ``-tune``
unless ``--run`` names it): one JSON per shard with every probe's record (so the McNemar test and
any later analysis can be redone), the outputs as PNG under ``images/`` (git-ignored), and the
report. The report's tables are in ``disguise_report.py``; ``--caricatures`` and ``--look`` in
``disguise_look.py``. The held-out expression model and dlib-cpp only judge: ``--tune`` reads
neither.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import cloak_protocol as bench
from _common import RESULTS, SHARED_FACES, git_commit
from cloak_gallery import nearest_is_other
from disguise_report import choose_weight, markdown, quick_checks, summarise, summarise_tuning, tuning_markdown
from lfw_verification import verification_report
from faceprot.canonical import align, region_mask
from faceprot.datasets import load_faceset
from faceprot.disguise import disguise
from faceprot.disguise.engine import OFFERED, DisguiseConfig, check_landmarks, paste_warp
from faceprot.disguise.measure import EMOTION_RULES, landmark_verdict, photo_landmarks
from faceprot.disguise.warp import EMOTIONS as TEMPLATED
from faceprot.disguise.warp import limit_displacements, template_displacements
from faceprot.errors import NoFaceError
from faceprot.evaluators import get_evaluator, role_of
from faceprot.expression import expression_model_available, load_expression_model
from faceprot.faces import Face, find_faces
from faceprot.io import load_image
from faceprot.metrics import similarity_matrix, to_similarity
from faceprot.runtime import configure_threads

#: Where each split's people are in the folder's sorted list of identities.
ACCEPTANCE = range(0, 150)
TUNING = range(150, 300)
#: The rows: disguise() overrides (and surrogates, for leave-one-out) of each.
ROWS: dict[str, dict] = {
    "warp": {"eps": 0.0},
    "perturbation": {"warp": False},
    "both": {},
    "sum": {"projection": "sum"},  # identity_weight: the tuned one
    "only-dlib-resnet": {"surrogates": ["dlib-resnet"]},
    "only-mobilefacenet": {"surrogates": ["mobilefacenet"]},
}
TARGETS = ("none", "next")
#: The naive sum's identity_weight grid for --tune (the issue's "small grid").
GRID = (0.25, 0.5, 1.0, 2.0, 4.0)
#: What --tune may look at: the surrogates (white-box) and the white-box expression model.
TUNE_JUDGES = ("dlib-resnet", "mobilefacenet")
FAR = 1e-3


@dataclass
class Probe:
    """A person's first usable photo: its place in the sorted identities, gallery index and face."""

    position: int
    identity: str
    index: int
    file: str
    rgb: np.ndarray
    face: Face


@dataclass
class Context:
    """What every probe's judging shares."""

    entries: list[dict]
    ids: np.ndarray
    gallery: dict[str, np.ndarray]
    thresholds: dict[str, float]  # FAR 1e-3, in each judge's own units (L2 distance or cosine)
    judges: tuple[str, ...]  # identity evaluators
    models: dict  # expression models by name (the held-out one only when it is available)
    images: Path
    sum_weight: float = 1.0
    steps: int | None = None
    seed: int = 0
    probes: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Who is probed
# ------------------------------------------------------------------------------------------------


def people(entries: list[dict]) -> list[str]:
    """The folder's identities, sorted by folder name."""
    return sorted({e["identity"] for e in entries})


def first_usable(entries: list[dict], identity: str, position: int) -> Probe | None:
    """The person's first photo (manifest order) with a face whose landmarks the warp can use."""
    for i, e in enumerate(entries):
        if e["identity"] != identity:
            continue
        rgb = load_image(e["path"]).rgb
        try:
            face = find_faces(rgb)[0]
            check_landmarks(face)
        except NoFaceError:  # LandmarkError is one
            continue
        return Probe(position, identity, i, e["file"], rgb, face)
    return None


def probe_at(ctx: Context, names: list[str], position: int) -> Probe | None:
    if position not in ctx.probes:
        ctx.probes[position] = first_usable(ctx.entries, names[position], position)
    return ctx.probes[position]


def next_probe(ctx: Context, names: list[str], split: range, position: int) -> Probe | None:
    """The target of the person at ``position``: the next person of the split with a usable photo
    (cyclically: the last one's is the first's)."""
    order = [p for p in split if p < len(names)]
    k = order.index(position)
    for p in order[k + 1:] + order[:k]:
        t = probe_at(ctx, names, p)
        if t is not None:
            return t
    return None


# ------------------------------------------------------------------------------------------------
# Judging one output
# ------------------------------------------------------------------------------------------------


def read_expression(rgb: np.ndarray, models: dict) -> dict:
    """Each expression model's reading of the photo's largest face (re-detected and aligned):
    {"found", "top", "probs"} per model; found False where no face is."""
    try:
        face = find_faces(rgb)[0]
    except NoFaceError:
        return {name: {"found": False} for name in models}
    x = align(rgb, face.transform)
    out = {}
    with torch.no_grad():
        for name, m in models.items():
            p = m(x)[0].numpy()
            out[name] = {"found": True, "top": m.emotions[int(p.argmax())], "probs": [round(float(v), 4) for v in p]}
    return out


def judge_identity(rgb: np.ndarray, probe: Probe, target: Probe | None, ctx: Context, surrogates) -> dict:
    """Each judge's verdict on an output photo: dodging (``bench.score_embedding``) and, with a
    target, impersonation (``target_top1``: the target's identity is the nearest gallery photo;
    ``target_verified``: the output matches the target photo at the FAR 1e-3 threshold)."""
    out = {}
    for name in ctx.judges:
        e = bench._embed(name, rgb)
        v = bench.score_embedding(name, e, probe.index, probe.identity, ctx.ids, ctx.gallery)
        v["role"] = role_of(name, surrogates)[0]
        if target is not None and v["found"]:
            metric = get_evaluator(name).metric
            keep = np.ones(len(ctx.ids), bool)
            keep[probe.index] = False
            t = ctx.gallery[name][target.index]
            sim = float(similarity_matrix(e[None], t[None], metric)[0, 0]) if np.isfinite(t).all() else float("nan")
            v["target_top1"] = not nearest_is_other(e, ctx.gallery[name], ctx.ids, target.identity, keep, metric)
            v["target_verified"] = bool(sim >= to_similarity(ctx.thresholds[name], metric))  # NaN: False
            v["target_similarity"] = round(sim, 4) if np.isfinite(sim) else None
        out[name] = v
    return out


def judge_landmarks(clean_points: np.ndarray, rgb: np.ndarray, emotion: str) -> dict:
    """The landmark measure on an output photo: {"measurable", "passed", ...}; emotions the measure
    has no thresholds for are not measurable (``why`` says why)."""
    rule = EMOTION_RULES.get(emotion)
    if rule is None or not rule.supported:
        return {"measurable": False, "passed": None, "why": rule.why if rule else "no landmark rule"}
    ok, details = landmark_verdict(clean_points, photo_landmarks(rgb), emotion)
    changes = {k: round(v, 4) for k, v in details.get("changes", {}).items()}
    return {"measurable": True, "passed": bool(ok), "face": details["face"], "changes": changes}


def clean_record(probe: Probe, ctx: Context) -> dict:
    """The clean face's readings: each expression model's probabilities and top class, the 68 points."""
    read = read_expression(probe.rgb, ctx.models)
    return {"top": {n: r.get("top") for n, r in read.items()},
            "probs": {n: r.get("probs") for n, r in read.items()},
            "points68": np.round(probe.face.landmarks68, 2).tolist()}


# ------------------------------------------------------------------------------------------------
# One probe
# ------------------------------------------------------------------------------------------------


def run_row(row: str, emotion: str, probe: Probe, target: Probe | None, ctx: Context,
            identity_weight: float | None = None) -> dict:
    """Disguise one probe as ``row`` says, save the output as PNG, read it back and judge it."""
    kw = dict(ROWS[row])
    surrogates = kw.pop("surrogates", None)
    if row == "sum":
        kw["identity_weight"] = ctx.sum_weight if identity_weight is None else identity_weight
    elif identity_weight is not None:
        kw["identity_weight"] = identity_weight
    tmode = "next" if target is not None else "none"
    rec = {"row": row, "emotion": emotion, "target": tmode,  # the settings, in case it fails
           "projection": kw.get("projection", DisguiseConfig.projection),
           "identity_weight": kw.get("identity_weight", DisguiseConfig.identity_weight)}
    t = time.perf_counter()
    try:
        res = disguise(probe.rgb, emotion, target=None if target is None else target.rgb, seed=ctx.seed,
                       surrogates=surrogates, offered_only=False, steps=ctx.steps, **kw)
    except NoFaceError as e:  # counted as a failure on every measure
        return rec | {"error": str(e)}
    seconds = time.perf_counter() - t
    f, cfg = res.faces[0], res.config
    slug = probe.identity.replace("/", "_")
    suffix = f"-w{identity_weight:g}" if identity_weight is not None else ""
    out = bench.save_and_reread(res.picture.rgb, ctx.images / f"{row}{suffix}__{tmode}__{emotion}" / f"{slug}.png")
    rec |= {"surrogates": res.surrogates, "projection": cfg.projection, "identity_weight": cfg.identity_weight,
            "eps": cfg.eps, "warp": cfg.warp, "steps": cfg.steps,
            "seconds": round(seconds, 3), "engine_seconds": {k: round(v, 3) for k, v in res.seconds.items()},
            "max_move_iod": round(f.max_move_iod, 4), "min_det": round(f.min_det, 3),
            "additive_linf": round(f.additive_linf * 255, 3), "p_emotion": f.p_emotion, "similarity": f.similarity,
            "quality": bench.quality(probe.rgb, out, region_mask(probe.rgb.shape[:2], probe.face.transform)),
            "identity": judge_identity(out, probe, target, ctx, res.surrogates)}
    expr = read_expression(out, ctx.models)
    if "expression-heldout" in ctx.models:  # the expression the geometry alone carries, after JPEG
        warp_jpeg = bench.degrade(res.warp_only.rgb, "jpeg75")
        held = {"expression-heldout": ctx.models["expression-heldout"]}
        expr["heldout_warp_jpeg75"] = read_expression(warp_jpeg, held)["expression-heldout"]
    if "expression-heldout" in ctx.models:
        expr["heldout_warp"] = read_expression(res.warp_only.rgb, held)["expression-heldout"]
    rec["expression"] = expr
    rec["landmark"] = judge_landmarks(probe.face.landmarks68, out, emotion)
    if row == "both" and emotion in TEMPLATED:
        rec["template"] = judge_template(probe, f, emotion, ctx)
    return rec


def judge_template(probe: Probe, f, emotion: str, ctx: Context) -> dict:
    """The hand-set template of the loss, scaled to the optimised warp's mean landmark move and
    held by the same limits, pasted into the photo as the disguise pastes its warp (no additive
    part): the issue's baseline for "the optimised warp beats the template". Judged like the
    optimised warp-only photo: each expression model, the held-out one after JPEG q75 too, and the
    landmark measure."""
    pts = f.points[None].double()
    opt = f.displacements[None].double()
    template = template_displacements(pts, emotion)
    scale = float(opt.norm(dim=-1).mean() / template.norm(dim=-1).mean().clamp(min=1e-9))
    moves = limit_displacements(pts, scale * template).displacements[0]
    rgb = paste_warp(probe.rgb, f.face.transform, f.points, moves)
    out = {"scale": round(scale, 4), "mean_move_px": round(float(moves.norm(dim=-1).mean()), 4),
           "optimised_mean_move_px": round(float(opt.norm(dim=-1).mean()), 4),
           "expression": read_expression(rgb, ctx.models), "landmark": judge_landmarks(probe.face.landmarks68, rgb, emotion)}
    if "expression-heldout" in ctx.models:
        held = {"expression-heldout": ctx.models["expression-heldout"]}
        out["expression"]["heldout_jpeg75"] = read_expression(bench.degrade(rgb, "jpeg75"), held)["expression-heldout"]
    return out


def run_probe(probe: Probe, target: Probe | None, args, ctx: Context) -> dict:
    """Every emotion, target mode and row for one acceptance probe."""
    rec = {"identity": probe.identity, "position": probe.position, "probe": probe.file,
           "target": None if target is None else {"identity": target.identity, "file": target.file},
           "clean": clean_record(probe, ctx), "runs": []}
    for emotion in args.emotions:
        for tmode in args.targets:
            if tmode == "next" and target is None:
                continue
            for row in args.rows:
                rec["runs"].append(run_row(row, emotion, probe, target if tmode == "next" else None, ctx))
    return rec


def tune_probe(probe: Probe, args, ctx: Context) -> dict:
    """One tuning probe: the naive sum at each weight of the grid, and GradVac at its default for
    reference; happy, dodging; judged by the surrogates and the white-box model only."""
    rec = {"identity": probe.identity, "position": probe.position, "probe": probe.file,
           "clean": clean_record(probe, ctx), "runs": []}
    for w in args.grid:
        rec["runs"].append(run_row("sum", "happy", probe, None, ctx, identity_weight=w))
    rec["runs"].append(run_row("both", "happy", probe, None, ctx))
    return rec


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------


def _csv(text: str, allowed, what: str, ap, cast=str) -> list:
    items = [cast(k.strip()) for k in text.split(",") if k.strip()]
    bad = [k for k in items if allowed is not None and k not in allowed]
    if bad or not items:
        ap.error(f"{what}: {', '.join(map(str, bad)) or 'nothing given'} (choose from {', '.join(map(str, allowed))})")
    return items


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default=str(SHARED_FACES / "lfw"))
    ap.add_argument("--people", type=int, default=150, help="people of the split to run (0 = all of it)")
    ap.add_argument("--start", type=int, default=0, help="skip this many people of the split first")
    ap.add_argument("--emotions", default=",".join(OFFERED), help="comma list (default: the offered ones)")
    ap.add_argument("--targets", default="none,next", help="none (dodging), next (impersonate the next person)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma list of {', '.join(ROWS)}")
    ap.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the engine's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="CI: 8 people, happy, no target, the both row")
    ap.add_argument("--tune", action="store_true", help="the tuning split: the naive sum's identity_weight grid")
    ap.add_argument("--grid", default=",".join(f"{w:g}" for w in GRID), help="--tune's identity_weight grid")
    ap.add_argument("--tuned", default=None, help="the tuning's JSON that the sum row reads "
                                                  "(default benchmarks/results/disguise/<faces>-tune/tuned.json)")
    ap.add_argument("--caricatures", type=int, default=0, metavar="N", help="make N free-landmark caricatures")
    ap.add_argument("--look", action="store_true", help="write blind same-size crops and their private key")
    ap.add_argument("--look-score", default=None, metavar="ANSWERS",
                    help="score a reviewer's answers (JSON: crop name -> {look, expression}) with the run's key")
    ap.add_argument("--look-count", type=int, default=20, help="--look: outputs and real faces to crop")
    ap.add_argument("--shard", default="1/1", help="i/n: this process runs every n-th person from i")
    ap.add_argument("--resume", action="store_true", help="skip people already in this shard's JSON")
    ap.add_argument("--report", action="store_true", help="merge all shards of the run and write the report")
    ap.add_argument("--run", default=None, help="run name (default from the faces folder and mode)")
    args = ap.parse_args(argv)
    if args.quick:
        args.people, args.emotions, args.targets, args.rows = 8, "happy", "none", "both"
    args.emotions = _csv(args.emotions, TEMPLATED, "--emotions", ap)
    args.targets = _csv(args.targets, TARGETS, "--targets", ap)
    args.rows = _csv(args.rows, ROWS, "--rows", ap)
    args.grid = _csv(args.grid, None, "--grid", ap, float)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    faces = Path(args.faces)
    if not (faces / "manifest.json").is_file():
        print(f"benchmarks/disguise.py: no faces folder with a manifest.json at {faces} (../shared is "
              "absent?); nothing to run.")
        return 0
    mode = "quick" if args.quick else "tune" if args.tune else "full"
    run = args.run or f"{faces.name}-{mode}"
    out = RESULTS / "disguise" / run
    out.mkdir(parents=True, exist_ok=True)
    threads = configure_threads()
    meta = {"run": run, "mode": mode, "faces": str(faces), "machine": f"{platform.node()}, {threads} torch thread(s)",
            "date": datetime.date.today().isoformat(), "commit": git_commit(),
            "command": " ".join(["python", "benchmarks/disguise.py"] + (sys.argv[1:] if argv is None else list(argv)))}

    if args.look or args.caricatures or args.look_score:
        import disguise_look

        if args.look_score:
            disguise_look.score_look(out, Path(args.look_score))
            return 0
        if args.caricatures:
            disguise_look.make_caricatures(args, faces, out, meta)
        if args.look:
            disguise_look.look(args, faces, out, meta)
        return 0
    if args.report:
        return report(out, meta, args.tune)

    heldout, why = expression_model_available("expression-heldout")
    models = {"expression": load_expression_model("expression")}
    if args.tune:
        meta["heldout"] = "not read by --tune (it only judges)"
    elif heldout:
        models["expression-heldout"] = load_expression_model("expression-heldout")
        meta["heldout"] = "available"
    else:
        print(f"expression-heldout is not available ({why}): its columns are skipped.")
        meta["heldout"] = f"not available: {why}"
    entries = load_faceset(faces)
    ids = np.array([e["identity"] for e in entries])
    gallery, _ = bench.gallery_embeddings(entries, RESULTS / "cache")
    judges = TUNE_JUDGES if args.tune else tuple(bench.EVALUATORS)
    rep = verification_report({k: gallery[k] for k in judges}, list(ids), FAR)
    thresholds = {k: r["threshold"] for k, r in rep.items()}
    ctx = Context(entries, ids, gallery, thresholds, judges, models, out / "images", steps=args.steps, seed=args.seed)
    if not args.tune and "sum" in args.rows:
        tuned = Path(args.tuned) if args.tuned else RESULTS / "disguise" / f"{faces.name}-tune" / "tuned.json"
        if tuned.is_file():
            ctx.sum_weight = float(json.loads(tuned.read_text())["identity_weight"])
            meta["sum_weight"] = {"identity_weight": ctx.sum_weight, "from": str(tuned)}
        else:
            print(f"No tuning at {tuned} (run --tune first): the sum row uses identity_weight 1, untuned.")
            meta["sum_weight"] = {"identity_weight": ctx.sum_weight, "from": "untuned default (no --tune file)"}
    meta |= {"split": "tuning (people 150-299)" if args.tune else "acceptance (people 0-149)", "start": args.start,
             "emotions": ["happy"] if args.tune else args.emotions, "targets": ["none"] if args.tune else args.targets,
             "rows": ["sum", "both"] if args.tune else args.rows, "steps": args.steps, "seed": args.seed,
             "far": FAR, "thresholds": thresholds, "gallery_photos": int(len(ids) - 1)}
    if args.tune:
        meta["grid"] = args.grid

    names = people(entries)
    split = TUNING if args.tune else ACCEPTANCE
    plan = [p for p in split if p < len(names)][args.start:]
    plan = plan[: args.people] if args.people else plan
    i, n = (int(v) for v in args.shard.split("/"))
    mine = plan[i - 1::n]
    kind = "tune" if args.tune else "shard"
    shard_file = out / f"{kind}-{i}-of-{n}.json"
    done = json.loads(shard_file.read_text())["people"] if (args.resume and shard_file.exists()) else []
    have = {r["identity"] for r in done}
    skipped = []
    for pos in tqdm(mine, desc=f"people (shard {args.shard})", file=sys.stderr):
        if names[pos] in have:
            continue
        probe = probe_at(ctx, names, pos)
        if probe is None:
            skipped.append(names[pos])
            continue
        if args.tune:
            rec = tune_probe(probe, args, ctx)
        else:
            rec = run_probe(probe, next_probe(ctx, names, split, pos) if "next" in args.targets else None, args, ctx)
        done.append(rec)
        shard_file.write_text(json.dumps({"meta": meta | {"no_usable_photo": skipped}, "people": done}))
    if skipped:
        print(f"No usable photo (face and landmarks) for {len(skipped)} people: {', '.join(skipped)}")
        shard_file.write_text(json.dumps({"meta": meta | {"no_usable_photo": skipped}, "people": done}))
    if args.tune:
        if n == 1:
            return report(out, meta, tune=True)
        return 0
    s = summarise(done, judges)
    if args.quick:  # its one shard is the run: the report is written now
        write_report(out, meta, s)
        return quick_checks(s)
    print(markdown(s, meta))
    return 0


def write_report(out: Path, meta: dict, s: dict) -> None:
    md = markdown(s, meta)
    (out / "report.json").write_text(json.dumps({"meta": meta, "summary": s}, indent=1))
    (out / "report.md").write_text(md)
    print(md)


def report(out: Path, meta: dict, tune: bool = False) -> int:
    """Merge the run's shards; write report.md and report.json (with --tune: tune.md and tuned.json,
    the chosen weight that the acceptance run's sum row reads)."""
    records, metas = [], []
    for f in sorted(out.glob(("tune" if tune else "shard") + "-*.json")):
        d = json.loads(f.read_text())
        records += d["people"]
        metas.append(d["meta"])
    if not metas:
        print(f"{out} holds no {'tune' if tune else 'shard'}-*.json to report on.")
        return 1
    keep = {"run": meta["run"], "report_date": meta["date"], "report_commit": meta["commit"]}
    meta = metas[0] | {"date": ", ".join(sorted({m["date"] for m in metas})),
                       "commit": ", ".join(sorted({m["commit"] for m in metas})),
                       "command": "; ".join(m["command"] for m in metas),
                       "no_usable_photo": sorted({p for m in metas for p in m.get("no_usable_photo", [])})} | keep
    if tune:
        s = summarise_tuning(records)
        w = choose_weight(s)
        (out / "tuned.json").write_text(json.dumps({"identity_weight": w, "meta": meta, "summary": s}, indent=1))
        md = tuning_markdown(s, w, meta)
        (out / "tune.md").write_text(md)
        print(md)
        return 0
    write_report(out, meta, summarise(records, tuple(bench.EVALUATORS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
