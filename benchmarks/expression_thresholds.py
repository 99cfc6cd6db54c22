"""Thresholds of the landmark measure of expression, fixed on real photos (issue 15, item 1).

For each person in a range of a faces folder (default LFW people 150-299: the tuning split; people
0-149 are the acceptance probes and must never be used here), the ``expression`` model classifies
each photo's aligned face and dlib's 68 points give its landmark features
(:mod:`faceprot.disguise.measure`). Pairs of the same person are then:

* emotion pairs: (a photo the model calls neutral, a photo it calls happy / surprise / angry / sad);
* neutral pairs: two different photos it calls neutral, in both orders (so their changes are
  symmetric about zero).

For each emotion with at least ``--min-pairs`` pairs, its rule's features get thresholds on their
changes (see :func:`fit_rule`: the most emotion pairs confirmed while at most 10% of neutral pairs
are); an emotion whose rule then confirms fewer than half its pairs is "unsupported", as is one
with too few pairs. The result is written as JSON.

    python benchmarks/expression_thresholds.py                  # LFW people 150-299
    python benchmarks/expression_thresholds.py --people 150-152 --out /tmp/t.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED_FACES
from faceprot.datasets import load_faceset
from faceprot.disguise.measure import FEATURES, RULE_FEATURES, expression_change, expression_features

EMOTIONS_JUDGED = ("happy", "surprise", "angry", "sad")


def people_range(text: str) -> range:
    """"150-299" -> range(150, 300) (both ends included)."""
    a, _, b = text.partition("-")
    return range(int(a), int(b or a) + 1)


def collect(faces: str | Path, people: range) -> list[dict]:
    """One record per photo of the chosen people: identity, file, the model's top class and
    probabilities, and the 68 points (None where no face was found)."""
    import torch

    from faceprot.canonical import align
    from faceprot.errors import NoFaceError
    from faceprot.expression import EMOTIONS, load_expression_model
    from faceprot.faces import find_faces
    from faceprot.io import load_image
    from faceprot.runtime import configure_threads

    configure_threads()
    model = load_expression_model("expression")
    entries = load_faceset(faces)
    ids = list(dict.fromkeys(e["identity"] for e in entries))
    chosen = {ids[i] for i in people if i < len(ids)}
    records = []
    for e in entries:
        if e["identity"] not in chosen:
            continue
        rec = {"identity": e["identity"], "file": e["file"], "label": None, "points68": None}
        rgb = load_image(e["path"]).rgb
        try:
            face = find_faces(rgb)[0]
        except NoFaceError:
            records.append(rec)
            continue
        with torch.no_grad():
            probs = model(align(rgb, face.transform))[0].numpy()
        rec.update(label=EMOTIONS[int(probs.argmax())], probs=[round(float(p), 4) for p in probs],
                   points68=np.round(face.landmarks68, 2).tolist())
        records.append(rec)
    return records


def pairs(records: list[dict]) -> dict[str, list[dict[str, float]]]:
    """Feature changes of same-person pairs: {"neutral": [...], "happy": [...], ...}."""
    by: dict[str, list[dict]] = {}
    for r in records:
        if r["points68"] is not None:
            by.setdefault(r["identity"], []).append(r)
    out: dict[str, list] = {k: [] for k in ("neutral", *EMOTIONS_JUDGED)}
    for photos in by.values():
        for a, b in itertools.permutations(photos, 2):
            if a["label"] != "neutral":
                continue
            if b["label"] == "neutral" or b["label"] in EMOTIONS_JUDGED:
                out[b["label"]].append(expression_change(np.array(a["points68"]), np.array(b["points68"])))
    return out


MAX_FPR = 0.10  # the most neutral pairs a rule may call changed
MIN_TPR = 0.50  # the least of the model's own emotion pairs a rule must confirm to be offered


def _candidates(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Threshold candidates for one feature: 0 and every 2nd percentile of the observed changes
    that is above 0 (a rule asks for movement in its direction, never against it)."""
    c = np.percentile(np.concatenate([pos, neg]), np.arange(0, 101, 2))
    return np.unique(np.concatenate([[0.0], c[c > 0]]))


def fit_rule(emotion: str, pos: list[dict], neg: list[dict], max_fpr: float = MAX_FPR) -> dict:
    """Thresholds for ``emotion``'s features (RULE_FEATURES), chosen together: the rule is "every
    feature's change >= its threshold"; among all threshold combinations (see :func:`_candidates`)
    whose rate on neutral pairs (FPR) is at most ``max_fpr``, the one that confirms the most
    emotion pairs (TPR), ties to the larger thresholds. The balanced-accuracy optimum, with no FPR
    cap, and each feature's neutral 90th percentile are reported beside it."""
    feats = RULE_FEATURES[emotion]
    P = np.array([[c[f] for f in feats] for c in pos])
    N = np.array([[c[f] for f in feats] for c in neg])
    grid = np.array(list(itertools.product(*(_candidates(P[:, i], N[:, i]) for i in range(len(feats))))))
    tpr = (P[None] >= grid[:, None]).all(-1).mean(1)
    fpr = (N[None] >= grid[:, None]).all(-1).mean(1)
    order = np.lexsort((grid.sum(1), tpr))  # by TPR, then by the thresholds' sum
    ok = [i for i in order if fpr[i] <= max_fpr]
    best = ok[-1]
    ba = int(np.argmax(tpr - fpr))

    def row(i):
        return {"thresholds": {f: round(float(t), 4) for f, t in zip(feats, grid[i])},
                "tpr": round(float(tpr[i]), 3), "fpr": round(float(fpr[i]), 3)}

    return {"chosen": row(best), "balanced_accuracy_optimum": row(ba),
            "supported": bool(tpr[best] >= MIN_TPR),
            "per_feature": {f: {"median_change_emotion": round(float(np.median(P[:, i])), 4),
                                "median_change_neutral": round(float(np.median(N[:, i])), 4),
                                "neutral_p90": round(float(np.percentile(N[:, i], 90)), 4),
                                "tpr_at_neutral_p90": round(float((P[:, i] >= np.percentile(N[:, i], 90)).mean()), 3)}
                            for i, f in enumerate(feats)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default=str(SHARED_FACES / "lfw"))
    ap.add_argument("--people", default="150-299", help="people (manifest order) a-b, both included")
    ap.add_argument("--min-pairs", type=int, default=15)
    ap.add_argument("--out", default=str(RESULTS / "expression_thresholds.json"))
    args = ap.parse_args(argv)
    t0 = time.time()
    records = collect(args.faces, people_range(args.people))
    changes = pairs(records)
    labels = [r["label"] for r in records]
    report = {
        "command": "python benchmarks/expression_thresholds.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": date.today().isoformat(),
        "faces": str(args.faces), "people": args.people,
        "photos": len(records), "no_face": labels.count(None),
        "labels": {k: labels.count(k) for k in sorted(set(labels) - {None})},
        "pairs": {k: len(v) for k, v in changes.items()},
        "min_pairs": args.min_pairs,
        "rules": {}, "unsupported": {},
    }
    for emotion in EMOTIONS_JUDGED:
        if len(changes[emotion]) < args.min_pairs or len(changes["neutral"]) < args.min_pairs:
            report["unsupported"][emotion] = f"{len(changes[emotion])} pairs (< {args.min_pairs})"
            continue
        report["rules"][emotion] = rule = fit_rule(emotion, changes[emotion], changes["neutral"])
        if not rule["supported"]:
            report["unsupported"][emotion] = (f"TPR {rule['chosen']['tpr']} < {MIN_TPR} at FPR <= {MAX_FPR}: "
                                              "the landmarks do not confirm the model's labels")
    report["seconds"] = round(time.time() - t0, 1)
    report["records"] = [{k: v for k, v in r.items() if k != "points68"}
                         | {"features": None if r["points68"] is None else
                            {f: round(v, 4) for f, v in expression_features(np.array(r["points68"])).items()}}
                         for r in records]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps({k: v for k, v in report.items() if k != "records"}, indent=1)
    rows = ",\n  ".join(json.dumps(r) for r in report["records"])  # one photo a line
    out.write_text(head[:-2] + ',\n "records": [\n  ' + rows + "\n ]\n}\n")
    print(json.dumps({k: v for k, v in report.items() if k != "records"}, indent=1))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
