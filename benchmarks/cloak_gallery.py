"""Re-score a finished cloak run against a different gallery: how much top-1 PSR owes to its size.

Top-1 PSR counts a protected probe as protected when the nearest gallery photo is someone else's,
so it depends on the gallery as much as on the mask: a small gallery has few other people to be
nearest. This script re-reads the protected PNGs that ``cloak.py`` saved for a run, embeds them
with every evaluator, and ranks them against

* the run's own gallery (every clean photo of the folder except the probe's original): this must
  reproduce the run's shard JSON exactly, and the script fails if it does not;
* that gallery plus every photo of a ``--distractors`` folder (other people only);
* that gallery cut to the probe's own photos plus ``--cut-people - 1`` other people drawn at
  random, ``--draws`` times.

The clean probe is scored too ("clean"): the share that an evaluator misses without any mask,
so that a bigger gallery is not mistaken for protection.

    python benchmarks/cloak_gallery.py --run photos-full-v4 --faces ../shared/assets/faces/photos \\
        --distractors ../shared/assets/faces/lfw
    python benchmarks/cloak_gallery.py --run lfw-full-v4 --cut-people 19

The saved PNGs are git-ignored, so this runs where the run was made. Writes
``benchmarks/results/cloak/<run>/gallery-<variant>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

import cloak_protocol as bench
from _common import RESULTS, SHARED_FACES
from faceprot.datasets import load_faceset
from faceprot.evaluators import get_evaluator
from faceprot.io import load_image
from faceprot.metrics import similarity_matrix
from faceprot.runtime import configure_threads

METHODS = ["medium/both", "high/both", "baseline-noise", "baseline-released"]


def nearest_is_other(emb: np.ndarray, gallery: np.ndarray, gids: np.ndarray, identity: str,
                     keep: np.ndarray, metric: str) -> bool:
    """True when the nearest kept gallery row (NaN rows skipped) is not ``identity``'s: top-1 protected."""
    ok = keep & ~np.isnan(gallery).any(1)
    sims = similarity_matrix(emb[None], gallery[ok], metric)[0]
    return bool(gids[ok][int(np.argmax(sims))] != identity)


def _load_run(run_dir: Path) -> list[dict]:
    people = []
    for f in sorted(run_dir.glob("shard-*.json")):
        people += [p for p in json.loads(f.read_text())["people"] if "methods" in p]
    if not people:
        raise SystemExit(f"{run_dir} holds no shard-*.json with main-table results")
    return people


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder under benchmarks/results/cloak/")
    ap.add_argument("--faces", default=str(SHARED_FACES / "lfw"), help="the faces folder the run used")
    ap.add_argument("--distractors", default=None, help="a faces folder whose photos join the gallery")
    ap.add_argument("--cut-people", type=int, default=0, help="cut the gallery to this many people")
    ap.add_argument("--draws", type=int, default=10, help="random draws of the cut gallery per probe")
    ap.add_argument("--methods", nargs="*", default=METHODS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if bool(args.distractors) == bool(args.cut_people):
        ap.error("give exactly one of --distractors and --cut-people")
    threads = configure_threads()
    run_dir = RESULTS / "cloak" / args.run
    people = _load_run(run_dir)
    entries = load_faceset(args.faces)
    ids = np.array([e["identity"] for e in entries])
    index = {e["file"]: i for i, e in enumerate(entries)}
    gallery, _ = bench.gallery_embeddings(entries, RESULTS / "cache")
    if args.distractors:
        d_entries = load_faceset(args.distractors)
        d_ids = np.array(["distractor:" + e["identity"] for e in d_entries])  # never the probe's identity
        d_gallery, _ = bench.gallery_embeddings(d_entries, RESULTS / "cache")
        variant = f"plus-{Path(args.distractors).name}"
    else:
        variant = f"cut-{args.cut_people}-people"
    everyone = np.unique(ids)
    rng = np.random.default_rng(args.seed)
    methods = [m for m in args.methods if any(m in p["methods"] for p in people)]
    hits = {(m, ev, g): [] for m in ["clean"] + methods for ev in bench.EVALUATORS for g in ("own", variant)}
    mismatches = []
    for p in tqdm(people, desc="people", file=sys.stderr):
        slug = p["identity"].replace("/", "_")
        for m in ["clean"] + methods:
            for row in p["methods"].get(m if m != "clean" else methods[0], []):
                i = index[row["probe"]]
                if m == "clean":
                    embs = {ev: gallery[ev][i] for ev in bench.EVALUATORS}
                else:
                    png = run_dir / "images" / slug / f"{m}__{Path(row['probe']).stem}.png"
                    rgb = load_image(png).rgb
                    embs = {ev: bench._embed(ev, rgb) for ev in bench.EVALUATORS}
                keep = np.ones(len(ids), bool)
                keep[i] = False
                for ev, e in embs.items():
                    if np.isnan(e).any():
                        continue
                    metric = get_evaluator(ev).metric
                    own = nearest_is_other(e, gallery[ev], ids, p["identity"], keep, metric)
                    hits[(m, ev, "own")].append(own)
                    if m != "clean" and own != row["png"][ev]["top1"]:
                        mismatches.append((m, ev, row["probe"]))
                    if args.distractors:
                        g = np.concatenate([gallery[ev], d_gallery[ev]])
                        gids = np.concatenate([ids, d_ids])
                        k = np.concatenate([keep, np.ones(len(d_ids), bool)])
                        hits[(m, ev, variant)].append(nearest_is_other(e, g, gids, p["identity"], k, metric))
                    else:
                        for _ in range(args.draws):
                            others = rng.choice(everyone[everyone != p["identity"]], args.cut_people - 1,
                                                replace=False)
                            k = keep & np.isin(ids, np.append(others, p["identity"]))
                            hits[(m, ev, variant)].append(nearest_is_other(e, gallery[ev], ids, p["identity"], k, metric))
    table = {m: {ev: {g: (100 * float(np.mean(hits[(m, ev, g)])) if hits[(m, ev, g)] else None)
                      for g in ("own", variant)} for ev in bench.EVALUATORS} for m in ["clean"] + methods}
    meta = {"run": args.run, "faces": args.faces, "variant": variant, "draws": args.draws if args.cut_people else None,
            "gallery_photos": int(len(ids)), "gallery_people": int(len(everyone)),
            "distractor_photos": int(len(d_ids)) if args.distractors else 0,
            "machine": f"{platform.node()}, {threads} torch thread(s)", "date": datetime.date.today().isoformat(),
            "command": " ".join(["python", "benchmarks/cloak_gallery.py"] + (argv or sys.argv[1:]))}
    (run_dir / f"gallery-{variant}.json").write_text(json.dumps({"meta": meta, "top1_psr": table,
                                                                "mismatches": mismatches}, indent=1))
    print(f"Run `{args.run}`, top-1 PSR (%) with its own gallery ({len(ids)} photos, {len(everyone)} people) "
          f"and with {variant}. Command: `{meta['command']}`\n")
    print("| method | " + " | ".join(f"{ev} own | {ev} {variant}" for ev in bench.EVALUATORS) + " |")
    print("|---|" + "---|---|" * len(bench.EVALUATORS))
    for m, row in table.items():
        cells = [f"{row[ev][g]:.1f}" if row[ev][g] is not None else "-" for ev in bench.EVALUATORS for g in ("own", variant)]
        print(f"| {m} | " + " | ".join(cells) + " |")
    if mismatches:
        print(f"\n{len(mismatches)} probes scored differently from the run's JSON with the same gallery, "
              f"e.g. {mismatches[:3]}: the saved PNGs are not the run's.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
