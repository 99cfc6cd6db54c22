"""Issue 16's acceptance bars, read off a frontier run (``cloak.py --frontier --acceptance --report``).

Every bar the run itself can answer, computed the same way each time so that the write-up is not
done by hand: v2 against v1 at equal face PSNR, the new medium's visibility, top-1 PSR and JPEG
re-save, and leave-one-out transfer at equal face PSNR. Where a bar can be read two ways the
stricter reading decides: both refine settings (as the app applies, and the mask alone), both
comparison PSNRs, and for the visibility limits the photos one by one as well as their mean. The
blind look and the enrollment time come from elsewhere (``cloak_blind_look.py``, CI's quick run)
and are listed as such.
"""

from __future__ import annotations

import numpy as np

from cloak_frontier import COMPARE_AT, EVALUATORS, LEAVE_ONE_OUT
from faceprot.cloak.enroll import PRESETS
from faceprot.cloak.perceptual import PerceptualBudget
from faceprot.runtime import DEFAULT_REFINE

#: the medium preset's scale on v2's frontier (its flat-skin budget over the rule's default)
MEDIUM_SCALE = round(PRESETS["medium"]["luma_flat"] / PerceptualBudget().luma_flat, 6)
#: issue 16's bars
GAIN = 0.10  # v2 over v1 at equal face PSNR, every evaluator
PSNR_MIN, EYE_MEAN_MAX, EYE_P95_MAX = 34.0, 2.0, 5.0
PSR_MIN, JPEG_MIN = 0.75, 0.65


def along(points: list[dict], method: str, setting: str, refine: int, ev: str, db: float) -> float | None:
    """Top-1 PSR of one frontier (method, surrogate setting, refine) for one evaluator, linearly
    interpolated at face PSNR ``db``; None outside the PSNRs measured or with fewer than 2 points."""
    xy = sorted((p["psnr_face"], p["top1"][ev]["psr"]) for p in points
                if (p["method"], p["setting"], p["refine"]) == (method, setting, refine)
                and ev in p["top1"] and p["top1"][ev]["psr"] is not None)
    if len(xy) < 2 or not xy[0][0] <= db <= xy[-1][0]:
        return None
    return float(np.interp(db, [x for x, _ in xy], [y for _, y in xy]))


def _point(points, method, scale, setting, refine):
    return next((p for p in points if (p["method"], p["scale"], p["setting"], p["refine"]) ==
                 (method, scale, setting, refine)), None)


def _rows(records, method, scale, setting, refine) -> list[dict]:
    return [row for r in records for e in r.get("frontier", [])
            if (e["method"], float(e["scale"]), e["setting"], int(e["refine"])) == (method, scale, setting, refine)
            for row in e["rows"]]


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _verdict(checks: list[bool | None]) -> bool | None:
    """False when any measured check fails, None when none fails but one could not be measured
    (a frontier that does not reach that PSNR), True when every check was measured and passed."""
    if any(c is False for c in checks):
        return False
    return None if any(c is None for c in checks) or not checks else True


def acceptance_bars(records: list[dict], s: dict) -> list[dict]:
    """One row per bar: ``bar``, ``measured`` (text) and ``met``: True, False, or None where a
    figure it needs was not measured (see :func:`_verdict`)."""
    pts, out = s["points"], []
    refines = sorted({p["refine"] for p in pts}, reverse=True)

    # v2 beats v1 by >= 10 points on every evaluator at equal face PSNR (two PSNRs in 32-38 dB)
    for refine in refines:
        parts, checks = [], []
        for db in COMPARE_AT:
            d = []
            for ev in EVALUATORS:
                a, b = along(pts, "v2", "both", refine, ev, db), along(pts, "v1", "both", refine, ev, db)
                d.append(None if a is None or b is None else a - b)
                checks.append(None if d[-1] is None else bool(d[-1] >= GAIN - 1e-9))
            parts.append(f"at {db:g} dB: " + " / ".join("outside" if x is None else f"{100 * x:+.1f}" for x in d))
        out.append(dict(bar=f"v2 - v1, top-1 PSR points at equal face PSNR, refine {refine} (>= +10 on every evaluator)",
                        measured="; ".join(parts), met=_verdict(checks)))

    # the new medium, as the app applies it
    med = _point(pts, "v2", MEDIUM_SCALE, "both", DEFAULT_REFINE)
    rows = _rows(records, "v2", MEDIUM_SCALE, "both", DEFAULT_REFINE)
    if med is None or not rows:
        out.append(dict(bar=f"medium (v2 at {MEDIUM_SCALE:g}, refine {DEFAULT_REFINE})", measured="not in this run",
                        met=None))
        return out + _loo(pts, refines)
    psnr = np.array([r["vis"]["psnr_face"] for r in rows])
    eye_mean = np.array([r["vis"]["de_eye_mean"] for r in rows])
    eye_p95 = np.array([r["vis"]["de_eye_p95"] for r in rows])
    out.append(dict(bar=f"medium: face PSNR >= {PSNR_MIN:g} dB (mean; and every photo)",
                    measured=f"{psnr.mean():.2f} dB over {len(rows)} photos; lowest photo {psnr.min():.2f}",
                    met=bool(psnr.mean() >= PSNR_MIN and psnr.min() >= PSNR_MIN)))
    out.append(dict(bar=f"medium: eye-region CIEDE2000 mean <= {EYE_MEAN_MAX:g}, 95th percentile <= {EYE_P95_MAX:g} "
                        "(over photos; and every photo)",
                    measured=f"mean {eye_mean.mean():.2f} (largest photo {eye_mean.max():.2f}), p95 {eye_p95.mean():.2f} "
                             f"(largest photo {eye_p95.max():.2f})",
                    met=bool(eye_mean.max() <= EYE_MEAN_MAX and eye_p95.max() <= EYE_P95_MAX)))
    psr = [med["top1"][ev]["psr"] for ev in EVALUATORS]
    out.append(dict(bar=f"medium: top-1 PSR >= {100 * PSR_MIN:g}% on every evaluator ({' / '.join(EVALUATORS)})",
                    measured=" / ".join(map(_pct, psr)),
                    met=_verdict([None if v is None else bool(v >= PSR_MIN) for v in psr])))
    jp = [med.get("top1_jpeg75", {}).get(ev) for ev in EVALUATORS]
    out.append(dict(bar=f"medium: top-1 PSR >= {100 * JPEG_MIN:g}% after a JPEG q75 re-save",
                    measured=" / ".join(map(_pct, jp)),
                    met=_verdict([None if v is None else bool(v >= JPEG_MIN) for v in jp])))
    return out + _loo(pts, refines)


def _loo(pts: list[dict], refines: list[int]) -> list[dict]:
    """Leave-one-out at equal face PSNR, at medium's PSNR and at the comparison PSNRs: dlib-resnet
    only -> MobileFaceNet at least twice v1's (and above zero: twice nothing is nothing), and
    MobileFaceNet only -> dlib-cpp no worse than v1's."""
    out = []
    for setting, factor, rule in (("dlib-resnet", 2.0, "at least twice v1's, and above 0"),
                                  ("mobilefacenet", 1.0, "no worse than v1's")):
        (ev,) = LEAVE_ONE_OUT[setting]
        for refine in refines:
            med = _point(pts, "v2", MEDIUM_SCALE, setting, refine)
            at = ([("medium", med["psnr_face"], med["top1"][ev]["psr"])] if med else []) + \
                 [(f"{db:g} dB", db, along(pts, "v2", setting, refine, ev, db)) for db in COMPARE_AT]
            parts, checks = [], [] if med else [None]
            for name, db, v2 in at:
                v1 = along(pts, "v1", setting, refine, ev, db)
                checks.append(None if v2 is None or v1 is None else
                              bool(v2 >= factor * v1 - 1e-9 and (factor == 1 or v2 > 0)))
                parts.append(f"{name} ({db:.2f} dB): v2 {_pct(v2)}, v1 " + ("not measured at this PSNR" if v1 is None
                                                                           else _pct(v1)))
            out.append(dict(bar=f"leave-one-out, {setting} only -> {ev}, refine {refine}: v2 {rule} at equal face PSNR",
                            measured="; ".join(parts + ([] if med else ["medium: not in this run"])),
                            met=_verdict(checks)))
    return out


def acceptance_markdown(bars: list[dict], meta: dict) -> str:
    lines = [f"# Issue 16's acceptance bars: `{meta.get('run', '')}`", "",
             f"- measured at commit {meta.get('commit', '')}, {meta.get('date', '')}, {meta.get('machine', '')}",
             f"- people: {meta.get('people_range', '')}", "",
             "Not from this run: the blind look (`cloak_blind_look.py`, BENCHMARKS.md) and the enrollment time "
             "(CI's quick run).", "", "| bar | measured | met |", "|---|---|---|"]
    said = {True: "yes", False: "**no**", None: "not measured (a figure it needs is missing)"}
    lines += [f"| {b['bar']} | {b['measured']} | {said[b['met']]} |" for b in bars]
    return "\n".join(lines) + "\n"
