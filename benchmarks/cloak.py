"""End-to-end benchmark of the personal cloak (FaceCloak) on identity-labelled faces.

Protocol (per person): enroll from the first photo with exactly one detected face; the probes are
their other single-face photos. Every protected probe is saved as a PNG, and each evaluator
re-reads it and runs its own detection and alignment. The gallery is every clean photo of the
folder except the probe's own original. A probe is protected at top-n when no photo of its own
identity is among its n nearest gallery photos (OPOM protocol); verification PSR is the share of
(protected probe, clean photo of the same person) pairs that no longer match at the evaluator's
threshold. Probes in which an evaluator finds no face are counted separately.

    python benchmarks/cloak.py --quick                      # CI: 20 people, asserts the bar
    python benchmarks/cloak.py --people 100 --shard 1/4 --resume
    python benchmarks/cloak.py --people 100 --report        # merge shards, write tables + plots
    python benchmarks/cloak.py --faces ../shared/assets/faces/photos --people 0
    python benchmarks/cloak.py --frontier --people 10 --shard 1/2 --resume   # LFW tuning people 100-109
    python benchmarks/cloak.py --frontier --leave-one-out --report           # frontier.md, .json, .png
    python benchmarks/cloak.py --frontier --acceptance --start 0 --people 100 --leave-one-out \
        --scales 0.5,0.75,1,1.5,2 --shard 1/2 --resume --run lfw-acceptance   # issue 16's, clean checkouts only
    python benchmarks/cloak.py --frontier --acceptance --report --run lfw-acceptance  # + acceptance.md: the bars
    python benchmarks/cloak.py --frontier --methods v2 --scales 1 --settings dlib-resnet,mobilefacenet \
        --set input_diversity=0.5 --run lfw-loo-di --people 20               # one transfer technique

Results go to ``benchmarks/results/cloak/<run>/`` (JSON per shard, report.md, report.json, plots).

This file is the command line and one person's run (``run_person``); the parts sit beside it:
``cloak_protocol.py`` (gallery cache, people, scoring, image quality), ``cloak_baselines.py``
(noise, the released code, per-image PGD), ``cloak_reuse.py`` (the mask-reuse study),
``cloak_sweeps.py``, ``cloak_timing.py`` (apply cost), ``cloak_report.py`` (summary, tables,
plots, the ``--quick`` bar) and ``cloak_frontier.py`` (``--frontier``: top-1 PSR against face
PSNR and CIEDE2000 per method and budget scale, issue 16; on LFW it runs on the tuning people
100-199 unless ``--acceptance``), with ``cloak_acceptance.py`` (issue 16's bars, read off an
acceptance run by ``--frontier --acceptance --report``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from _common import RESULTS, SHARED_FACES, git_commit, level
from cloak_acceptance import acceptance_bars, acceptance_markdown
from cloak_frontier import LEAVE_ONE_OUT, METHODS, REFINES, SCALES, TUNING_START, frontier_markdown, frontier_plot, \
    run_frontier, summarise_frontier
from cloak_baselines import ReleasedCodeCloak, noise_baseline, per_image_pgd
from cloak_protocol import SETTINGS, degrade, gallery_embeddings, plan_people, quality, save_and_reread, score_probe
from cloak_report import markdown, plots, quick_checks, summarise
from cloak_reuse import REUSE_SETTINGS, edge_correlation, mask_reuse, reuse_setting, run_reuse
from cloak_sweeps import run_sweeps
from cloak_timing import timing
from cloak_tuning import _pairs
from faceprot.canonical import region_mask
from faceprot.cloak.apply import apply_mask
from faceprot.cloak.enroll import enroll
from faceprot.cloak.perceptual import PerceptualBudget
from faceprot.datasets import load_faceset
from faceprot.errors import NoFaceError
from faceprot.faces import find_faces
from faceprot.io import load_image
from faceprot.runtime import DEFAULT_REFINE, configure_threads
from faceprot.visibility import visibility


def run_person(p: dict, entries, ids, gallery, args, img_dir: Path) -> dict:
    """All methods, conditions and studies for one person."""
    selfie_path = entries[p["selfie"]]["path"]
    selfie = load_image(selfie_path).rgb
    probes = [(i, load_image(entries[i]["path"]).rgb) for i in p["probes"]]
    rec = {"identity": p["identity"], "selfie": entries[p["selfie"]]["file"],
           "probes": [entries[i]["file"] for i in p["probes"]], "methods": {}, "times": {}}
    rng = np.random.default_rng(args.seed)
    slug = p["identity"].replace("/", "_")

    def evaluate(method: str, protect, conditions=("png", "jpeg75", "half")):
        rows = []
        for i, clean in probes:
            try:
                face = find_faces(clean)[0]
            except NoFaceError:
                continue
            prot = protect(clean, face)
            prot = save_and_reread(prot, img_dir / slug / f"{method}__{Path(entries[i]['file']).stem}.png")
            row = {"probe": entries[i]["file"], "quality": quality(clean, prot, region_mask(clean.shape[:2], face.transform)),
                   "vis": visibility(clean, prot, face)}
            for c in conditions:
                row[c] = score_probe(degrade(prot, c), i, p["identity"], ids, gallery)
            rows.append(row)
        rec["methods"][method] = rows

    masks = {}
    for preset, setting in args.variants:
        t = time.perf_counter()
        en = enroll(selfie, preset=preset, seed=args.seed, surrogates=SETTINGS[setting])
        rec["times"][f"enroll/{preset}/{setting}"] = time.perf_counter() - t
        masks[(preset, setting)] = en
        evaluate(f"{preset}/{setting}", lambda rgb, f, m=en.mask: apply_mask(rgb, m, faces=[f], refine=args.refine,
                                                                          seed=args.seed).picture.rgb)

    main = masks.get(("medium", "both")) or next(iter(masks.values()))
    evaluate("baseline-noise", lambda rgb, f: noise_baseline(rgb, f, main.mask.budget, rng, main.mask.space()))
    if not args.quick:
        views = list(main.views.pictures()[1:])  # canonical views stand in as photos of the person
        rc = ReleasedCodeCloak(SETTINGS["both"], seed=args.seed).enroll(selfie, views)
        evaluate("baseline-released", lambda rgb, f: rc.apply(rgb, f))
        evaluate("reference-per-image", lambda rgb, f: per_image_pgd(rgb, f, SETTINGS["both"], "medium", args.seed),
                 conditions=("png",))
        rec["reuse"] = mask_reuse(main, probes, p, entries, ids, gallery, args.reuse_settings)
        rec["edge_correlation"] = edge_correlation(main)
    return rec



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default=str(SHARED_FACES / "lfw"))
    ap.add_argument("--people", type=int, default=100, help="people to enroll (0 = all with >= 2 photos)")
    ap.add_argument("--start", type=int, default=None,
                    help=f"skip this many people first (a held-out slice; default 0, {TUNING_START} with --frontier "
                         "on LFW)")
    ap.add_argument("--quick", action="store_true", help="CI mode: 20 LFW people from #100, medium and high (both "
                    "surrogates) + noise baseline, asserts the bar")
    ap.add_argument("--sweep-people", type=int, default=30)
    ap.add_argument("--no-sweeps", action="store_true")
    ap.add_argument("--sweeps-only", action="store_true",
                    help="run only the sweeps, on the first --sweep-people people (shardable, resumable)")
    ap.add_argument("--shard", default="1/1", help="i/n: this process runs every n-th person from i")
    ap.add_argument("--resume", action="store_true", help="skip people already in this shard's JSON")
    ap.add_argument("--report", action="store_true", help="merge all shards of the run and write the report")
    ap.add_argument("--run", default=None, help="run name (default from the faces folder and mode)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refine", type=int, default=DEFAULT_REFINE,
                    help=f"per-photo refinement steps when a mask is applied (default {DEFAULT_REFINE}: as the app's Apply tab "
                         "and the CLI apply; 0 = the universal mask alone)")
    ap.add_argument("--reuse-only", action="store_true",
                    help="only the mask-reuse study (medium, both surrogates), per person (shardable, resumable)")
    ap.add_argument("--reuse-settings", default=",".join(REUSE_SETTINGS),
                    help="apply settings of the mask-reuse study: N = refine N steps, Ns = with the "
                         "strip-resistant loss (default %(default)s)")
    fr = ap.add_argument_group("frontier (issue 16): top-1 PSR against face PSNR and CIEDE2000")
    fr.add_argument("--frontier", action="store_true", help="the frontier mode (shardable, resumable, --report)")
    fr.add_argument("--methods", default=",".join(METHODS), help="frontier methods (default %(default)s)")
    fr.add_argument("--scales", default=",".join(f"{s:g}" for s in SCALES), help="budget scales (default %(default)s)")
    fr.add_argument("--refines", default=",".join(map(str, REFINES)), help="apply refinements (default %(default)s)")
    fr.add_argument("--settings", default="both", help="surrogate settings: both, dlib-resnet, mobilefacenet "
                    "(a single surrogate is scored on the held-out evaluator only)")
    fr.add_argument("--leave-one-out", action="store_true", help="add the leave-one-out settings: "
                    + "; ".join(f"{k} only scored on {', '.join(v)}" for k, v in LEAVE_ONE_OUT.items()))
    fr.add_argument("--set", nargs="*", default=[], help="enroll / CloakConfig overrides for every frontier "
                    "enrollment, key=value (a transfer technique: input_diversity=0.5, model_dropout=0.1, ...)")
    fr.add_argument("--v2", nargs="*", default=[], help="v2's perceptual budget at scale 1, key=value in place of "
                    "its defaults (budgets in [0, 1] units or as N/255; the budgets are scaled by each scale)")
    fr.add_argument("--acceptance", action="store_true", help="allow LFW people 0-99 (issue 16's acceptance split); "
                    "with --report, also acceptance.md: issue 16's bars read off the run")
    fr.add_argument("--merge", default="", help="with --report: other runs whose frontier shards join this report "
                    "(comma-separated run names; e.g. v1 at lower budgets, measured at the same commit)")
    args = ap.parse_args(argv)
    if args.frontier:
        args.methods = [m for m in args.methods.split(",") if m]
        args.scales = [float(v) for v in args.scales.split(",") if v]
        args.refines = [int(v) for v in args.refines.split(",") if v]
        args.settings = [k for k in args.settings.split(",") if k]
        if args.leave_one_out:
            args.settings += [k for k in LEAVE_ONE_OUT if k not in args.settings]
        args.overrides = _pairs(args.set)
        args.v2 = {k: level(v) for k, v in _pairs(args.v2).items()}
        unknown = set(args.v2) - {f.name for f in dataclasses.fields(PerceptualBudget)}
        if unknown:
            ap.error(f"--v2: {', '.join(sorted(unknown))} not a PerceptualBudget field")
        for m in args.methods:
            if m not in METHODS:
                ap.error(f"--methods: {m!r} is not one of {', '.join(METHODS)}")
        for k in args.settings:
            if k not in SETTINGS:
                ap.error(f"--settings: {k!r} is not one of {', '.join(SETTINGS)}")
        if args.start is None:  # LFW's tuning people; other folders have no split and start at 0
            args.start = TUNING_START if Path(args.faces).name == "lfw" else 0
        if Path(args.faces).name == "lfw" and args.start < TUNING_START and not args.acceptance and not args.report:
            ap.error(f"LFW people 0-{TUNING_START - 1} are issue 16's acceptance split; choose --start >= {TUNING_START}")
        here = git_commit() if args.acceptance and not args.report else ""
        if here == "unknown" or here.endswith("+dirty"):
            ap.error(f"--acceptance measures one named commit, and this checkout is {here}: commit first, "
                     "or run it from a clean worktree (git worktree add /tmp/acceptance <commit>)")
    args.start = args.start or 0
    args.reuse_settings = [k.strip() for k in args.reuse_settings.split(",") if k.strip()]
    for k in args.reuse_settings:
        try:
            reuse_setting(k)
        except ValueError:
            ap.error(f"--reuse-settings: {k!r} is not N or Ns")
    if args.quick:
        args.people = 20
        args.no_sweeps = True
        if Path(args.faces).name == "lfw" and not args.start:
            args.start = TUNING_START  # the acceptance split (people 0-99) is not looked at before its run
    args.variants = [("medium", "both"), ("high", "both")] if args.quick else [
        ("medium", "both"), ("medium", "dlib-resnet"), ("medium", "mobilefacenet"), ("high", "both")]
    faces = Path(args.faces)
    mode = 'quick' if args.quick else 'reuse' if args.reuse_only else 'frontier' if args.frontier else 'full'
    run = args.run or f"{faces.name}-{mode}"
    out = RESULTS / "cloak" / run
    out.mkdir(parents=True, exist_ok=True)
    meta = {"run": run, "faces": str(faces), "machine": f"{platform.node()} ({platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads)", "date": datetime.date.today().isoformat(),
            "command": " ".join(["python", "benchmarks/cloak.py"] + (argv or sys.argv[1:]))}
    threads = configure_threads()
    meta["machine"] = f"{platform.node()}, {threads} torch thread(s)"
    if not args.frontier and not args.report:
        meta.update(commit=git_commit(), apply_refine=args.refine)

    if args.report and args.frontier:
        extra = [RESULTS / "cloak" / r for r in args.merge.split(",") if r]
        for d in extra:
            if not any(d.glob("frontier-*-of-*.json")):
                ap.error(f"--merge: {d} holds no frontier shards")
        return frontier_report(out, meta, acceptance=args.acceptance, merge=extra)
    if args.report:
        records, metas = [], []
        for f in sorted(out.glob("shard-*.json")) + sorted(out.glob("sweeps-*.json")) + sorted(out.glob("reuse-*.json")):
            d = json.loads(f.read_text())
            records += d["people"]
            metas.append(d["meta"])
        if metas:  # the report describes the runs that made the shards, not this merge
            meta.update(faces=metas[0]["faces"], machine=metas[0]["machine"],
                        date=", ".join(sorted({m["date"] for m in metas})),
                        command="; ".join(m["command"] for m in metas))
        s = summarise(records)
        tfile = out / "timing.json"
        if tfile.exists():
            meta["timing"] = json.loads(tfile.read_text())
        (out / "report.json").write_text(json.dumps({"meta": meta, "summary": s}, indent=1))
        (out / "report.md").write_text(markdown(s, meta))
        plots(s, out)
        print(markdown(s, meta))
        return 0

    entries = load_faceset(faces)
    ids = np.array([e["identity"] for e in entries])
    gallery, n_faces = gallery_embeddings(entries, RESULTS / "cache")
    plan = plan_people(entries, n_faces, args.people, args.start)
    i, n = (int(v) for v in args.shard.split("/"))
    mine = plan[i - 1::n]
    sweep_ids = {p["identity"] for p in plan[: args.sweep_people]}
    kind = "sweeps" if args.sweeps_only else "reuse" if args.reuse_only else "frontier" if args.frontier else "shard"
    if args.frontier:
        ident = list(dict.fromkeys(e["identity"] for e in entries))  # the manifest's identity order
        rank = sorted(ident.index(p["identity"]) for p in mine)
        where = "LFW" if Path(args.faces).name == "lfw" else Path(args.faces).name
        meta.update(commit=git_commit(), people_range=f"{where} #{rank[0]}-{rank[-1]} in the manifest's identity order, "
                    f"{len(mine)} people" if rank else "none",
                    methods=args.methods, scales=args.scales, refines=args.refines, settings=args.settings,
                    overrides=args.overrides, v2=args.v2)
        if Path(args.faces).name == "lfw" and not args.acceptance:
            assert all(ident.index(p["identity"]) >= TUNING_START for p in mine), "an acceptance person in a tuning run"
    if args.sweeps_only:
        mine = plan[: args.sweep_people][i - 1::n]
    shard_file = out / f"{kind}-{i}-of-{n}.json"
    saved = json.loads(shard_file.read_text()) if (args.resume and shard_file.exists()) else {"people": []}
    done = saved["people"]
    if done and args.frontier:
        before = saved["meta"].get("commit")
        if before != meta["commit"]:
            if args.acceptance:  # issue 16: the acceptance run happens once, with its commit named
                ap.error(f"{shard_file} was measured at commit {before}, and this checkout is {meta['commit']}: resume it "
                         f"from a worktree of {before} (git worktree add /tmp/acceptance {before})")
            print(f"warning: {shard_file.name} holds people measured at commit {before}; new people are measured at "
                  f"{meta['commit']} (each record says which)", file=sys.stderr)
            meta["commit"] = f"{before}; {meta['commit']}"
    have = {r["identity"] for r in done}
    for p in tqdm(mine, desc=f"people (shard {args.shard})", file=sys.stderr):
        if p["identity"] in have:
            continue
        if args.sweeps_only:
            done.append({"identity": p["identity"], "sweeps": run_sweeps(p, entries, ids, gallery, args)})
            shard_file.write_text(json.dumps({"meta": meta, "people": done}))
            continue
        if args.reuse_only:
            done.append(run_reuse(p, entries, ids, gallery, args))
            shard_file.write_text(json.dumps({"meta": meta, "people": done}))
            continue
        if args.frontier:
            done.append({**run_frontier(p, entries, ids, gallery, args, out / "images"), "commit": git_commit()})
            shard_file.write_text(json.dumps({"meta": meta, "people": done}))
            continue
        rec = run_person(p, entries, ids, gallery, args, out / "images")
        if not args.no_sweeps and p["identity"] in sweep_ids:
            rec["sweeps"] = run_sweeps(p, entries, ids, gallery, args)
        done.append(rec)
        shard_file.write_text(json.dumps({"meta": meta, "people": done}))
    if args.sweeps_only:
        return 0
    if args.frontier:
        print(frontier_markdown(summarise_frontier(done), meta))
        return 0
    if args.reuse_only:
        print(markdown(summarise(done), meta))
        return 0
    if i == 1 and not args.quick:
        (out / "timing.json").write_text(json.dumps(timing(args)))
    s = summarise(done)
    md = markdown(s, meta)
    print(md)
    if args.quick:
        (out / "report.md").write_text(md)
        (out / "report.json").write_text(json.dumps({"meta": meta, "summary": s}, indent=1))
        return quick_checks(s)
    return 0


def frontier_report(out: Path, meta: dict, acceptance: bool = False, merge: list[Path] = ()) -> int:
    """Merge the run's frontier shards (and those of the ``merge`` runs): frontier.json, frontier.md
    and frontier.png; with ``acceptance``, also acceptance.md: issue 16's bars read off the run
    (``cloak_acceptance``). A merged run adds points (other methods or budgets) for this run's
    people: its records of people this run has not measured (yet) are left out, and counted."""
    records, metas, seen = [], [], {}
    shards = {f: json.loads(f.read_text()) for f in sorted(out.glob("frontier-*-of-*.json"))}
    shards.update({f: json.loads(f.read_text()) for d in merge for f in sorted(d.glob("frontier-*-of-*.json"))})
    mine = {r["identity"] for f, d in shards.items() if f.parent == out for r in d["people"]}
    dropped = set()
    for f, d in shards.items():
        if f.parent != out:
            dropped |= {r["identity"] for r in d["people"]} - mine
            d["people"] = [r for r in d["people"] if r["identity"] in mine]
        for r in d["people"]:  # a point of a person measured twice would count twice: refused
            for e in r.get("frontier", []):
                k = (r["identity"], e["method"], float(e["scale"]), e["setting"], int(e["refine"]))
                if k in seen:
                    raise SystemExit(f"{k} is in both {seen[k]} and {f}: merge runs that measured different points")
                seen[k] = f
        records += d["people"]
        metas.append(d["meta"])
    if metas:  # the report describes the runs that made the shards, not this merge
        meta.update({k: "; ".join(sorted({str(m.get(k, "")) for m in metas}))
                     for k in ("faces", "machine", "date", "commit", "command", "people_range")})
    if dropped:
        print(f"--merge: {len(dropped)} people of the merged runs are not in {out.name} (yet), left out", file=sys.stderr)
        meta["merge_left_out"] = len(dropped)
    s = summarise_frontier(records)
    md = frontier_markdown(s, meta)
    (out / "frontier.json").write_text(json.dumps({"meta": meta, "summary": s}, indent=1))
    (out / "frontier.md").write_text(md)
    if not frontier_plot(s, out / "frontier.png"):
        print("matplotlib is not installed: no frontier.png", file=sys.stderr)
    print(md)
    if acceptance:
        overrides = "; ".join(sorted({json.dumps({**m.get("overrides", {}), **m.get("v2", {})}, sort_keys=True)
                                      for m in metas if m.get("overrides") or m.get("v2")}))
        bars = acceptance_markdown(acceptance_bars(records), meta, s["people"], overrides)
        (out / "acceptance.md").write_text(bars)
        print(bars)
    return 0


if __name__ == "__main__":
    sys.exit(main())
