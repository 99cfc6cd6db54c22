"""Verification on LFW: ROC AUC, the threshold at FAR = 1e-3, and TAR there.

Every same-person and different-person pair of the faces folder is scored with faceprot's own
detection and alignment. The thresholds it prints are the ones recorded in
``faceprot/recognizers/__init__.py``.

    python benchmarks/lfw_verification.py [--faces ../shared/assets/faces/lfw] [--far 1e-3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from _common import RESULTS, SHARED_FACES
from faceprot.datasets import embed_photos, load_faceset
from faceprot.evaluators import get_evaluator
from faceprot.metrics import from_similarity, pair_similarities, rate_at, roc_auc, threshold_at_far
from faceprot.runtime import configure_threads

DEFAULT_FACES = SHARED_FACES / "lfw"


def verification_report(emb: dict[str, np.ndarray], ids: list[str], far: float) -> dict:
    rows = {}
    for name, e in emb.items():
        ok = ~np.isnan(e).any(1)
        metric = get_evaluator(name).metric
        pos, neg = pair_similarities(e[ok], [i for i, k in zip(ids, ok) if k], metric)
        t = threshold_at_far(neg, far)
        rows[name] = {
            "metric": metric,
            "photos_embedded": int(ok.sum()),
            "genuine_pairs": int(len(pos)),
            "impostor_pairs": int(len(neg)),
            "roc_auc": roc_auc(pos, neg),
            "threshold": from_similarity(t, metric),
            "tar": rate_at(pos, t),
            "far": rate_at(neg, t),
        }
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default=str(DEFAULT_FACES))
    ap.add_argument("--far", type=float, default=1e-3)
    ap.add_argument("--evaluators", default="dlib-resnet,mobilefacenet")
    ap.add_argument("--out", default=str(RESULTS / "lfw_verification.json"))
    args = ap.parse_args(argv)
    configure_threads()
    entries = load_faceset(args.faces)
    t0 = time.time()
    emb, found = embed_photos([e["path"] for e in entries], args.evaluators.split(","), progress=tqdm)
    report = {
        "faces": args.faces, "photos": len(entries), "detected": int(found.sum()), "far": args.far,
        "date": datetime.date.today().isoformat(), "machine": platform.node(),
        "seconds": round(time.time() - t0, 1),
        "results": verification_report(emb, [e["identity"] for e in entries], args.far),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"{report['detected']}/{report['photos']} photos with a face, {report['seconds']} s")
    print(f"{'evaluator':<14} {'AUC':>7} {'threshold':>10} {'TAR':>7} {'FAR':>9}")
    for name, r in report["results"].items():
        op = "<" if r["metric"] == "l2" else ">="
        print(f"{name:<14} {r['roc_auc']:7.4f} {op:>3}{r['threshold']:7.4f} {r['tar']:7.4f} {r['far']:9.2e}")


if __name__ == "__main__":
    main()
